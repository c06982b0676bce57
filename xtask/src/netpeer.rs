//! The host side of `cargo xtask bench net`: `xtask peer-serve JOB BIND-IP WARMUP SECS LIFETIME`,
//! a hidden subcommand that serves one benchmark job to one guest and exits. `bench net` runs it
//! as a child process — under `ip netns exec NS` for the tap backend, so it binds inside the
//! namespace — and reads its standard output:
//!
//! ```text
//! peer-port: 41234
//! peer-result: bytes=.. packets=.. ns=.. full=1
//! ```
//!
//! The sinks (`tcp_tx`, `udp64_tx`) count what arrives in their window: `WARMUP` seconds after
//! the first byte or datagram, for `SECS` seconds, and stop when it closes (`full=0` when the
//! stream stopped before that; `ns` is then the part seen). The sources (`tcp_rx`: a stream; `udp64_rx`:
//! 64-byte datagrams to whoever sent a datagram first) and the `tcp_rr` server report what they
//! sent. Every job ends after `LIFETIME` seconds whatever the guest does. [`Peer`] is the
//! handle `bench net` keeps on the child.

use std::{
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{IpAddr, TcpListener, TcpStream, UdpSocket},
    process::{Child, Command, ExitCode, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// How long a blocked read waits before the peer looks at its deadline.
const TICK: Duration = Duration::from_millis(100);
/// The payload of the UDP jobs.
const UDP_PAYLOAD: usize = 64;

/// What a job's window held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Bytes in the window (sinks) or sent (sources).
    pub bytes: u64,
    /// Datagrams or round trips in the window (sinks) or sent (sources).
    pub packets: u64,
    /// The window's length as seen.
    pub ns: u64,
    /// The window closed with data still arriving (sinks; always true for sources).
    pub full: bool,
}

impl Tally {
    /// The `peer-result:` line.
    pub fn line(&self) -> String {
        format!(
            "peer-result: bytes={} packets={} ns={} full={}",
            self.bytes,
            self.packets,
            self.ns,
            u8::from(self.full)
        )
    }

    /// Reads a `peer-result:` line.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("peer-result: ")?;
        let mut t = Tally::default();
        for (k, v) in rest.split_whitespace().filter_map(|w| w.split_once('=')) {
            let v: u64 = v.parse().ok()?;
            match k {
                "bytes" => t.bytes = v,
                "packets" => t.packets = v,
                "ns" => t.ns = v,
                "full" => t.full = v == 1,
                _ => {}
            }
        }
        Some(t)
    }
}

/// Counts arrivals into the window that opens `warmup` after the first one.
#[derive(Debug)]
struct Window {
    warmup: Duration,
    secs: Duration,
    /// The window's start and end, once the first arrival fixed them.
    span: Option<(Instant, Instant)>,
    /// The last arrival inside the window.
    last: Option<Instant>,
    tally: Tally,
}

impl Window {
    fn new(warmup: Duration, secs: Duration) -> Self {
        Self {
            warmup,
            secs,
            span: None,
            last: None,
            tally: Tally::default(),
        }
    }

    /// Records `bytes` in `packets` that arrived `now`; returns whether the window has closed.
    fn arrived(&mut self, now: Instant, bytes: usize, packets: u64) -> bool {
        let (from, until) = *self.span.get_or_insert_with(|| {
            let from = now + self.warmup;
            (from, from + self.secs)
        });
        if now >= until {
            self.tally.full = true;
            return true;
        }
        if now >= from {
            self.tally.bytes += bytes as u64;
            self.tally.packets += packets;
            self.last = Some(now);
        }
        false
    }

    /// The tally: the planned window when it closed, else the part up to the last arrival.
    fn tally(&self) -> Tally {
        let mut t = self.tally;
        t.ns = match (self.span, self.last) {
            _ if t.full => self.secs.as_nanos() as u64,
            (Some((from, _)), Some(last)) => last.duration_since(from).as_nanos() as u64,
            _ => 0,
        };
        t
    }
}

/// `peer-serve JOB BIND-IP WARMUP SECS LIFETIME`.
pub fn serve(args: &[String]) -> Result<ExitCode, String> {
    let [job, ip, warmup, secs, lifetime] = args else {
        return Err("usage: peer-serve JOB BIND-IP WARMUP SECS LIFETIME".into());
    };
    let ip: IpAddr = ip.parse().map_err(|e| format!("peer-serve: {e}"))?;
    let num = |s: &String| {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("peer-serve: {e}"))
    };
    let (warmup, secs, lifetime) = (num(warmup)?, num(secs)?, num(lifetime)?);
    let deadline = Instant::now() + lifetime;
    // Whatever the guest does, this process ends at its deadline.
    thread::spawn(move || {
        thread::sleep(lifetime + Duration::from_secs(1));
        std::process::exit(3);
    });
    let err = |e: std::io::Error| format!("peer-serve: {e}");
    let tally = match job.as_str() {
        "tcp_tx" | "tcp_rx" | "tcp_rr" => {
            let l = TcpListener::bind((ip, 0)).map_err(err)?;
            announce(l.local_addr().map_err(err)?.port());
            let (s, _) = l.accept().map_err(err)?;
            s.set_read_timeout(Some(TICK)).map_err(err)?;
            s.set_nodelay(true).map_err(err)?;
            match job.as_str() {
                "tcp_tx" => tcp_sink(s, Window::new(warmup, secs), deadline),
                "tcp_rx" => tcp_source(s, deadline),
                _ => tcp_rr(s, deadline),
            }
        }
        "udp64_tx" | "udp64_rx" => {
            let s = UdpSocket::bind((ip, 0)).map_err(err)?;
            s.set_read_timeout(Some(TICK)).map_err(err)?;
            announce(s.local_addr().map_err(err)?.port());
            if job == "udp64_tx" {
                udp_sink(&s, Window::new(warmup, secs), deadline)
            } else {
                udp_source(&s, deadline)
            }
        }
        _ => return Err(format!("peer-serve: unknown job `{job}`")),
    };
    println!("{}", tally.line());
    Ok(ExitCode::SUCCESS)
}

fn announce(port: u16) {
    println!("peer-port: {port}");
    let _ = std::io::stdout().flush();
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Reads until the window closes (the guest keeps sending a little longer) or the stream ends.
fn tcp_sink(mut s: TcpStream, mut w: Window, deadline: Instant) -> Tally {
    let mut buf = vec![0u8; 256 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if w.arrived(Instant::now(), n, 0) {
                    break;
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
    w.tally()
}

/// Streams until the guest closes the connection.
fn tcp_source(mut s: TcpStream, deadline: Instant) -> Tally {
    let buf = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut t = Tally {
        full: true,
        ..Tally::default()
    };
    while Instant::now() < deadline {
        match s.write(&buf) {
            Ok(n) => t.bytes += n as u64,
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
    t.ns = start.elapsed().as_nanos() as u64;
    t
}

/// Answers each byte with itself until the guest closes the connection.
fn tcp_rr(mut s: TcpStream, deadline: Instant) -> Tally {
    let start = Instant::now();
    let mut t = Tally {
        full: true,
        ..Tally::default()
    };
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
                t.bytes += n as u64;
                t.packets += n as u64;
            }
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
    t.ns = start.elapsed().as_nanos() as u64;
    t
}

/// Counts datagrams until the window closes.
fn udp_sink(s: &UdpSocket, mut w: Window, deadline: Instant) -> Tally {
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        match s.recv_from(&mut buf) {
            Ok((n, _)) => {
                if w.arrived(Instant::now(), n, 1) {
                    break;
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(_) => thread::sleep(TICK),
        }
    }
    w.tally()
}

/// Waits for the guest's hello, then sends it 64-byte datagrams as fast as the host can until
/// the deadline or until the guest is gone (its port refuses).
fn udp_source(s: &UdpSocket, deadline: Instant) -> Tally {
    let mut buf = [0u8; 2048];
    let mut t = Tally {
        full: true,
        ..Tally::default()
    };
    let to = loop {
        if Instant::now() >= deadline {
            return t;
        }
        match s.recv_from(&mut buf) {
            Ok((_, from)) => break from,
            Err(_) => continue,
        }
    };
    let start = Instant::now();
    let payload = [0xa5u8; UDP_PAYLOAD];
    let (mut refused, mut tries) = (0u32, 0u64);
    while refused < 100 {
        tries += 1;
        if tries.is_multiple_of(1024) && Instant::now() >= deadline {
            break;
        }
        match s.send_to(&payload, to) {
            Ok(_) => {
                t.packets += 1;
                t.bytes += UDP_PAYLOAD as u64;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused += 1,
            Err(_) => {}
        }
    }
    t.ns = start.elapsed().as_nanos() as u64;
    t
}

/// A running `peer-serve` child and the lines it prints.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The port it listens on.
    pub port: u16,
}

impl Peer {
    /// Starts `cmd` (a `peer-serve` command line) and reads the port it announces.
    pub fn start(cmd: Command) -> Result<Self, String> {
        let mut cmd = cmd;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the peer: {e}"))?;
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = Self {
            child,
            lines,
            port: 0,
        };
        let line = peer
            .lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the peer did not say its port".to_string())?;
        peer.port = line
            .strip_prefix("peer-port: ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("the peer said `{line}`, not its port"))?;
        Ok(peer)
    }

    /// Its result, waiting at most `wait`; then it is stopped.
    pub fn finish(self, wait: Duration) -> Option<Tally> {
        let until = Instant::now() + wait;
        let mut tally = None;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(t) = Tally::parse(&line) {
                        tally = Some(t);
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        tally
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_only_its_span() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(1), Duration::from_secs(2));
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(!w.arrived(at(0), 100, 1)); // opens the warm-up
        assert!(!w.arrived(at(999), 100, 1));
        assert!(!w.arrived(at(1000), 10, 1));
        assert!(!w.arrived(at(2999), 10, 1));
        assert_eq!(
            w.tally().ns,
            1_999_000_000,
            "not full yet: up to the last arrival"
        );
        assert!(!w.tally().full);
        assert!(w.arrived(at(3000), 100, 1));
        let t = w.tally();
        assert_eq!(
            (t.bytes, t.packets, t.ns, t.full),
            (20, 2, 2_000_000_000, true)
        );
        assert_eq!(Tally::parse(&t.line()), Some(t));
        assert_eq!(Tally::parse("noise"), None);
    }

    #[test]
    fn the_rr_server_answers_and_counts() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(TICK)).unwrap();
            tcp_rr(s, Instant::now() + Duration::from_secs(10))
        });
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut b = [7u8];
        for _ in 0..10 {
            s.write_all(&b).unwrap();
            s.read_exact(&mut b).unwrap();
        }
        drop(s);
        let t = server.join().unwrap();
        assert_eq!((t.packets, t.bytes), (10, 10));
    }
}
