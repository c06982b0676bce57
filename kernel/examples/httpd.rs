//! A small HTTP/1.1 server on port 80 serving the files of a tar archive on a virtio-blk disk.
//!
//! `cargo xtask run --example httpd` packs `kernel/examples/site/` into an ordinary tar archive,
//! attaches it read-only with serial `vireo-site`, and forwards the host's 127.0.0.1:8080 to the
//! guest's port 80 (QEMU user networking): open <http://localhost:8080/> while it runs, Ctrl-C
//! ends it. `cargo xtask test` boots it with a free host port instead and fetches every file of
//! the site (see `xtask/src/httpcheck.rs`).
//!
//! `GET` and `HEAD`, keep-alive (HTTP/1.1's default; `Connection: close` honoured), 404 for a
//! missing file, 405 for another method, 400 for a malformed request, 431 for a request head over
//! 8 KiB. Many connections at once on the one CPU: every connection is driven with the
//! non-blocking calls, and the server sleeps in `wait_any` when none made progress.
//!
//! vireo-test: http-check kernel/examples/site
//! vireo-test: timeout 120
//!
//! vireo-run: qemu -drive if=none,id=site,format=raw,readonly=on,file={tar:kernel/examples/site}
//! vireo-run: qemu -device virtio-blk-pci,drive=site,disable-legacy=on,serial=vireo-site
//! vireo-run: qemu -netdev user,id=n0,hostfwd=tcp:127.0.0.1:{hostport:8080}-:80 -device virtio-net-pci,netdev=n0,disable-legacy=on

#![no_std]
#![no_main]

extern crate alloc;

#[path = "httpd/http.rs"]
mod http;
#[path = "httpd/site.rs"]
mod site;

use alloc::vec::Vec;
use core::{fmt, time::Duration};

use vireo::{
    log,
    net::{self, NetError, TcpListener, TcpStream},
    println,
    time::Instant,
};

use self::{
    http::{MAX_REQUEST, Parsed, Response},
    site::Site,
};

vireo::main!(main);

/// The serial number of the disk that holds the site.
const SITE_SERIAL: &str = "vireo-site";
/// The port served.
const PORT: u16 = 80;
/// Connections served at once; more wait in the listener's backlog.
const MAX_CONNECTIONS: usize = 64;
/// Connections the stack accepts before the server takes them (each a listening socket with
/// its buffers): a burst of more connection attempts than this between two looks is refused.
const BACKLOG: usize = 32;
/// A connection that makes no progress for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// Steps (a write, a request answered, a read) one connection takes per look.
const ROUNDS: usize = 16;
/// How long the server sleeps at most when nothing happens (idle connections are checked then).
const TICK: Duration = Duration::from_secs(1);

/// Why the server could not start (shown when `main` returns it).
enum StartError {
    Site(site::SiteError),
    Net(NetError),
}

impl fmt::Debug for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Site(e) => write!(f, "{e}"),
            Self::Net(e) => write!(f, "network: {e}"),
        }
    }
}

fn main() -> Result<(), StartError> {
    let site = Site::load(SITE_SERIAL).map_err(StartError::Site)?;
    for (path, len) in site.files() {
        log::info!("site: /{path} ({len} bytes)");
    }
    let dev = net::default_device().map_err(StartError::Net)?;
    let mut listener =
        TcpListener::bind_on(dev, PORT, BACKLOG, Default::default()).map_err(StartError::Net)?;
    let cidr = dev
        .wait_for_address(Duration::from_secs(30))
        .map_err(StartError::Net)?;
    log::info!("{dev}: {cidr}, listening on port {PORT}");
    println!("serving http://localhost:8080/");
    serve(dev, &mut listener, &site)
}

/// Serves until QEMU is killed.
fn serve(dev: &'static net::NetDevice, listener: &mut TcpListener, site: &Site) -> ! {
    let mut conns: Vec<Connection> = Vec::with_capacity(MAX_CONNECTIONS);
    loop {
        let frames = dev.stats().driver.rx_frames;
        let mut progress = false;
        while conns.len() < MAX_CONNECTIONS {
            match listener.try_accept() {
                Ok((stream, peer)) => {
                    log::debug!("connection from {peer}");
                    conns.push(Connection::new(stream));
                    progress = true;
                }
                Err(NetError::WouldBlock) => break,
                Err(e) => {
                    log::warn!("accept: {e}");
                    break;
                }
            }
        }
        conns.retain_mut(|c| match c.step(site) {
            Step::Progress => {
                progress = true;
                true
            }
            Step::Idle => c.last_progress.elapsed() < IDLE,
            Step::Done => false,
        });
        // A frame that arrived during the sweep may belong to a connection already looked at:
        // look again rather than sleep past it.
        if !progress && dev.stats().driver.rx_frames == frames {
            match dev.wait_any(Some(TICK)) {
                Ok(()) | Err(NetError::TimedOut) => {}
                Err(e) => log::warn!("network: {e}"),
            }
        }
    }
}

/// What one look at a connection did.
enum Step {
    /// Bytes moved.
    Progress,
    /// Nothing to do now.
    Idle,
    /// The connection is finished (closed, reset, or answered with `Connection: close`).
    Done,
}

/// One client connection: the bytes of the request being received and the response being sent.
struct Connection {
    stream: TcpStream,
    /// Received bytes not yet answered (at most [`MAX_REQUEST`]).
    input: Vec<u8>,
    /// The response being sent and how much of its head and body is queued.
    output: Option<(Response, usize)>,
    last_progress: Instant,
}

impl Connection {
    fn new(stream: TcpStream) -> Self {
        stream.set_nodelay(true);
        Self {
            stream,
            input: Vec::with_capacity(MAX_REQUEST),
            output: None,
            last_progress: Instant::now(),
        }
    }

    /// Moves what can be moved without waiting: sends the pending response, then answers the
    /// next complete request, then reads.
    fn step(&mut self, site: &Site) -> Step {
        let mut progress = false;
        // Bounded, so that a client with many pipelined requests does not starve the others.
        for _ in 0..ROUNDS {
            if let Some((response, sent)) = &mut self.output {
                let (head, body) = (response.head.as_bytes(), response.body);
                let rest = if *sent < head.len() {
                    &head[*sent..]
                } else {
                    &body[*sent - head.len()..]
                };
                if !rest.is_empty() {
                    match self.stream.try_write(rest) {
                        Ok(0) | Err(NetError::WouldBlock) => break,
                        Ok(n) => {
                            *sent += n;
                            progress = true;
                            continue;
                        }
                        Err(_) => return Step::Done,
                    }
                }
                // All queued: the stack sends the rest, also after a close.
                if response.close {
                    self.stream.shutdown_write();
                    return Step::Done;
                }
                self.output = None;
            }
            if let Parsed::Done { len, response } = http::handle(&self.input, site) {
                self.input.drain(..len.min(self.input.len()));
                self.output = Some((response, 0));
                progress = true;
                continue;
            }
            let filled = self.input.len();
            self.input.resize(MAX_REQUEST, 0);
            let read = self.stream.try_read(&mut self.input[filled..]);
            self.input.truncate(filled + *read.as_ref().unwrap_or(&0));
            match read {
                // The peer closed (nothing is pending: an unfinished request is dropped).
                Ok(0) => return Step::Done,
                Ok(_) => progress = true,
                Err(NetError::WouldBlock) => break,
                Err(_) => return Step::Done,
            }
        }
        if progress {
            self.last_progress = Instant::now();
            Step::Progress
        } else {
            Step::Idle
        }
    }
}
