//! The virtio-net benchmark application that `cargo xtask bench net` boots, once per job and run.
//!
//! It talks to a host-side peer that xtask runs (`peer=A.B.C.D:PORT` on the command line) and
//! runs one job: `warmup` seconds unmeasured, then a window of `secs` seconds:
//!
//! - `tcp_tx`: streams to the host's sink (the host counts the bytes; the guest's count is
//!   what it queued);
//! - `tcp_rx`: reads the host source's stream and counts the bytes;
//! - `udp64_tx`: sends 64-byte datagrams as fast as the send queue drains (the host counts);
//! - `udp64_rx`: asks the host to send 64-byte datagrams (a `hello` datagram, repeated until
//!   the first arrives) and counts those it receives;
//! - `tcp_rr`: 1-byte request, 1-byte response, counted round trips.
//!
//! The sending jobs keep sending for `tail` seconds after the window, so the host's window (it
//! starts at the first byte it sees) is full too. The guest then prints one line:
//!
//! ```text
//! vireo-bench: job=tcp_tx layout=split irq=msix bytes=.. units=.. ns=.. planned_ns=.. tx_frames=.. rx_frames=.. tx_kicks=.. rx_kicks=.. irqs=.. missed=.. renotified=..
//! ```
//!
//! `units` are datagrams (UDP), round trips (`tcp_rr`) or bytes (TCP streams) in the guest's
//! window; `ns` is that window's actual length (it ends at the first clock read past its
//! planned end, so a stall shows as `ns` above `planned_ns`). The counters are the device's
//! (`NetDevice::stats`) over the same window.
//!
//! Command line: `job=NAME secs=S warmup=S peer=A.B.C.D:PORT [tail=S] [sockbuf=BYTES]`, plus the
//! kernel's `vireo.net.*` options (xtask gives `vireo.net.ip=10.0.2.15/24`). `sockbuf` sizes the
//! socket's buffers each way: TCP's (default: the kernel's, 256 KiB receiving, 64 KiB sending),
//! or UDP's (`sockbuf / 64` datagrams; default: `UdpSocket::bind`'s 512 datagrams in 256 KiB receiving, 64 in 64 KiB sending).
//!
//! vireo-run: qemu -netdev user,id=n0 -device virtio-net-pci,netdev=n0,disable-legacy=on
//! vireo-run: append vireo.net.ip=10.0.2.15/24 job=tcp_rr secs=2 warmup=1 peer=10.0.2.2:7

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use core::{net::SocketAddr, time::Duration};

use vireo::{
    net::{self, Buffers, NetDevice, NetError, NetStats, TcpStream, UdpSocket},
    println,
    time::Instant,
};

vireo::main!(main);

/// How long connecting, the address and each blocking call may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The payload of the UDP jobs.
const UDP_PAYLOAD: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    TcpTx,
    TcpRx,
    Udp64Tx,
    Udp64Rx,
    TcpRr,
}

impl Job {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tcp_tx" => Self::TcpTx,
            "tcp_rx" => Self::TcpRx,
            "udp64_tx" => Self::Udp64Tx,
            "udp64_rx" => Self::Udp64Rx,
            "tcp_rr" => Self::TcpRr,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::TcpTx => "tcp_tx",
            Self::TcpRx => "tcp_rx",
            Self::Udp64Tx => "udp64_tx",
            Self::Udp64Rx => "udp64_rx",
            Self::TcpRr => "tcp_rr",
        }
    }
}

/// The job, from the command line.
#[derive(Debug, Clone, Copy)]
struct Args {
    job: Job,
    secs: u64,
    warmup: u64,
    tail: u64,
    peer: SocketAddr,
    /// Socket buffers each way in bytes (0: the kernel's default).
    sockbuf: usize,
}

impl Args {
    fn parse(cmdline: &str) -> Result<Self, &'static str> {
        let (mut job, mut secs, mut warmup, mut tail, mut peer) = (None, 5, 1, 1, None);
        let mut sockbuf = 0;
        for (key, value) in cmdline
            .split_ascii_whitespace()
            .filter_map(|w| w.split_once('='))
        {
            let num = || value.parse::<u64>().map_err(|_| "bad number");
            match key {
                "job" => job = Some(Job::parse(value).ok_or("unknown job")?),
                "secs" => secs = num()?,
                "warmup" => warmup = num()?,
                "tail" => tail = num()?,
                "sockbuf" => sockbuf = num()? as usize,
                "peer" => peer = Some(value.parse().map_err(|_| "peer= is not A.B.C.D:PORT")?),
                _ => {}
            }
        }
        Ok(Self {
            job: job.ok_or("job= missing")?,
            secs,
            warmup,
            tail,
            peer: peer.ok_or("peer= missing")?,
            sockbuf,
        })
    }
}

/// Counts what falls into the measured window and snapshots the device's counters at its ends.
struct Meter {
    dev: &'static NetDevice,
    /// The window's planned start and end.
    from: Instant,
    until: Instant,
    /// Where sending jobs stop.
    stop: Instant,
    begin: Option<(Instant, NetStats)>,
    end: Option<(Instant, NetStats)>,
    bytes: u64,
    units: u64,
}

impl Meter {
    /// A window that opens `warmup` seconds from now.
    fn start(dev: &'static NetDevice, a: &Args) -> Self {
        let now = Instant::now();
        let from = now + Duration::from_secs(a.warmup);
        let until = from + Duration::from_secs(a.secs);
        Self {
            dev,
            from,
            until,
            stop: until + Duration::from_secs(a.tail),
            begin: None,
            end: None,
            bytes: 0,
            units: 0,
        }
    }

    /// Records `bytes` in `units` just moved; returns whether the window has closed.
    fn count(&mut self, bytes: usize, units: u64) -> bool {
        let now = Instant::now();
        if self.begin.is_none() && now >= self.from {
            self.begin = Some((now, self.dev.stats()));
        }
        if self.end.is_none() && now >= self.until {
            self.end = Some((now, self.dev.stats()));
        }
        if self.begin.is_some() && self.end.is_none() {
            self.bytes += bytes as u64;
            self.units += units;
        }
        self.end.is_some()
    }

    /// Whether a sending job should stop (the tail after the window has passed).
    fn stopped(&self) -> bool {
        self.end.is_some() && Instant::now() >= self.stop
    }

    fn report(&self, a: &Args) -> Result<(), &'static str> {
        let ((t0, s0), (t1, s1)) = (
            self.begin.ok_or("the window never opened")?,
            self.end.ok_or("the window never closed")?,
        );
        let info = self.dev.info();
        let (d0, d1) = (s0.driver, s1.driver);
        println!(
            "vireo-bench: job={} layout={} irq={} bytes={} units={} ns={} planned_ns={} tx_frames={} rx_frames={} tx_kicks={} rx_kicks={} irqs={} missed={} renotified={}",
            a.job.name(),
            if info.packed { "packed" } else { "split" },
            if info.interrupts { "msix" } else { "polled" },
            self.bytes,
            self.units,
            (t1 - t0).as_nanos(),
            Duration::from_secs(a.secs).as_nanos(),
            d1.tx_frames - d0.tx_frames,
            d1.rx_frames - d0.rx_frames,
            d1.tx_kicks - d0.tx_kicks,
            d1.rx_kicks - d0.rx_kicks,
            s1.interrupts - s0.interrupts,
            s1.missed_wakeups - s0.missed_wakeups,
            s1.renotified - s0.renotified,
        );
        // How received frames were checked, and how many sent frames the device cut, over the
        // window (not parsed by xtask; for logs).
        println!(
            "netbench: over the window: needs_csum={} data_valid={} csum_verified={} csum_failed={} gso={} merged={} dropped={} tx_tso={}{}{}{}",
            d1.rx_needs_csum - d0.rx_needs_csum,
            d1.rx_data_valid - d0.rx_data_valid,
            d1.rx_csum_verified - d0.rx_csum_verified,
            d1.rx_csum_failed - d0.rx_csum_failed,
            d1.rx_gso - d0.rx_gso,
            d1.rx_merged - d0.rx_merged,
            d1.rx_dropped() - d0.rx_dropped(),
            d1.tx_tso - d0.tx_tso,
            if info.guest_csum { " guest-csum" } else { "" },
            if info.guest_tso { " guest-tso" } else { "" },
            if info.host_tso { " host-tso" } else { "" },
        );
        Ok(())
    }
}

/// Maps a network error to `what`, printing the error first, with the time and the device's
/// counters (a stuck queue shows there).
fn net_err(what: &'static str) -> impl Fn(NetError) -> &'static str {
    move |e| {
        let stats = net::default_device().map(NetDevice::stats);
        println!(
            "netbench: {what}: {e} at {:?} since boot; {stats:?}",
            Instant::now().since_start()
        );
        what
    }
}

fn connect(a: &Args) -> Result<TcpStream, &'static str> {
    let dev = net::default_device().map_err(|_| "no virtio-net device")?;
    let buffers = match a.sockbuf {
        0 => Buffers::default(),
        n => Buffers { rx: n, tx: n },
    };
    let mut s = TcpStream::connect_on(dev, a.peer, Some(TIMEOUT), buffers)
        .map_err(net_err("cannot connect"))?;
    s.set_read_timeout(Some(TIMEOUT));
    s.set_write_timeout(Some(TIMEOUT));
    Ok(s)
}

fn tcp_tx(dev: &'static NetDevice, a: &Args) -> Result<Meter, &'static str> {
    let mut s = connect(a)?;
    let buf = vec![0x5au8; 64 * 1024];
    let mut m = Meter::start(dev, a);
    while !m.stopped() {
        match s.write(&buf) {
            Ok(n) => {
                m.count(n, n as u64);
            }
            // The host's sink closes when its own window (which opened a little later) has.
            Err(_) if m.count(0, 0) => break,
            Err(e) => return Err(net_err("write failed")(e)),
        }
    }
    s.abort();
    Ok(m)
}

fn tcp_rx(dev: &'static NetDevice, a: &Args) -> Result<Meter, &'static str> {
    let mut s = connect(a)?;
    let mut buf = vec![0u8; 64 * 1024];
    // The window starts at the first byte: the host starts sending when it accepts.
    let n = s.read(&mut buf).map_err(net_err("no data from the host"))?;
    let mut m = Meter::start(dev, a);
    m.count(n, n as u64);
    loop {
        let n = s.read(&mut buf).map_err(net_err("read failed"))?;
        if n == 0 {
            return Err("the host closed the stream early");
        }
        if m.count(n, n as u64) {
            break;
        }
    }
    s.abort();
    Ok(m)
}

fn udp_socket(dev: &'static NetDevice, a: &Args) -> Result<UdpSocket, &'static str> {
    match a.sockbuf {
        0 => UdpSocket::bind(0),
        n => UdpSocket::bind_on(dev, 0, n / UDP_PAYLOAD, n),
    }
    .map_err(net_err("bind"))
}

fn udp64_tx(dev: &'static NetDevice, a: &Args) -> Result<Meter, &'static str> {
    let mut sock = udp_socket(dev, a)?;
    sock.set_write_timeout(Some(TIMEOUT));
    let payload = [0x5au8; UDP_PAYLOAD];
    let mut m = Meter::start(dev, a);
    while !m.stopped() {
        sock.send_to(&payload, a.peer)
            .map_err(net_err("send failed"))?;
        m.count(UDP_PAYLOAD, 1);
    }
    Ok(m)
}

fn udp64_rx(dev: &'static NetDevice, a: &Args) -> Result<Meter, &'static str> {
    let mut sock = udp_socket(dev, a)?;
    let mut buf = [0u8; 2048];
    // Say hello until the host's datagrams come (a hello may be lost).
    sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut first = None;
    for _ in 0..100 {
        sock.send_to(b"hello", a.peer)
            .map_err(net_err("send failed"))?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                first = Some(n);
                break;
            }
            Err(NetError::TimedOut) => {}
            Err(e) => return Err(net_err("receive failed")(e)),
        }
    }
    let n = first.ok_or("the host sent nothing")?;
    sock.set_read_timeout(Some(TIMEOUT));
    let mut m = Meter::start(dev, a);
    m.count(n, 1);
    loop {
        let (n, _) = sock
            .recv_from(&mut buf)
            .map_err(net_err("receive failed"))?;
        if m.count(n, 1) {
            break;
        }
    }
    Ok(m)
}

fn tcp_rr(dev: &'static NetDevice, a: &Args) -> Result<Meter, &'static str> {
    let mut s = connect(a)?;
    s.set_nodelay(true);
    let mut byte = [0u8; 1];
    let mut m = Meter::start(dev, a);
    loop {
        s.write_all(&byte).map_err(net_err("write failed"))?;
        if s.read(&mut byte).map_err(net_err("read failed"))? != 1 {
            return Err("the host closed the connection");
        }
        if m.count(2, 1) {
            break;
        }
    }
    s.abort();
    Ok(m)
}

fn main() -> Result<(), &'static str> {
    let args = Args::parse(vireo::boot_info().cmdline())?;
    let dev = net::default_device().map_err(|_| "no virtio-net device")?;
    println!("netbench: {dev}");
    dev.wait_for_address(TIMEOUT)
        .map_err(net_err("no IPv4 address"))?;
    let meter = match args.job {
        Job::TcpTx => tcp_tx(dev, &args)?,
        Job::TcpRx => tcp_rx(dev, &args)?,
        Job::Udp64Tx => udp64_tx(dev, &args)?,
        Job::Udp64Rx => udp64_rx(dev, &args)?,
        Job::TcpRr => tcp_rr(dev, &args)?,
    };
    meter.report(&args)
}
