//! What the network test images share: the echo tests against `xtask`'s host peers (see
//! `xtask/src/peer.rs`), reached through QEMU user networking or a tap.

#![allow(dead_code, reason = "each test image uses the part it needs")]

use alloc::{vec, vec::Vec};
use core::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use sha2::{Digest, Sha256};
use vireo::{
    net::{self, NetError, TcpStream, UdpSocket},
    println,
    testing::work_percent,
    time::Instant,
};

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The word `peer.KEY=VALUE` of the command line, parsed.
fn peer_arg<T: core::str::FromStr>(key: &str) -> Option<T> {
    vireo::boot_info()
        .cmdline()
        .split_ascii_whitespace()
        .find_map(|a| {
            a.strip_prefix("peer.")?
                .strip_prefix(key)?
                .strip_prefix('=')
        })
        .and_then(|v| v.parse().ok())
}

/// The host peer given on the command line as `peer.KIND=PORT`, at `peer.host=A.B.C.D`
/// (QEMU user networking's host, 10.0.2.2, unless given).
pub fn peer(kind: &str) -> SocketAddr {
    let port = peer_arg(kind).unwrap_or_else(|| panic!("peer.{kind}= missing"));
    let host: Ipv4Addr = peer_arg("host").unwrap_or(Ipv4Addr::new(10, 0, 2, 2));
    SocketAddr::from((host, port))
}

/// `full` under TCG; under this machine's nested KVM, whose instruction emulator moves a few tens
/// of kilobytes a second through the stack, a 400th of it (`work_percent` is 5 there).
pub fn scaled(full: usize) -> usize {
    match work_percent() {
        100 => full,
        p => full * p as usize / 2000,
    }
}

/// Fills `buf` with stream bytes from offset `at`.
pub fn fill(buf: &mut [u8], at: usize) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = ((at + k) as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17) as u8;
    }
}

/// Writes `total` stream bytes to `stream` (`produce(chunk, offset)` makes them, and every byte
/// made is sent) while reading the echo back (`consume(bytes, offset)`), until all of it came
/// back; sleeps on the device when neither way moves.
pub fn pump(
    stream: &mut TcpStream,
    total: usize,
    mut produce: impl FnMut(&mut [u8], usize),
    mut consume: impl FnMut(&[u8], usize),
) {
    let dev = net::default_device().expect("a virtio-net device");
    let (mut sent, mut received) = (0usize, 0usize);
    let mut out = vec![0u8; 32 * 1024];
    let mut filled = (0, 0); // the range of `out` holding unsent stream bytes
    let mut inb = vec![0u8; 64 * 1024];
    while received < total {
        let mut progress = false;
        if sent < total {
            if filled.0 == filled.1 {
                let n = out.len().min(total - sent);
                produce(&mut out[..n], sent);
                filled = (0, n);
            }
            match stream.try_write(&out[filled.0..filled.1]) {
                Ok(n) => {
                    filled.0 += n;
                    sent += n;
                    progress |= n > 0;
                }
                Err(NetError::WouldBlock) => {}
                Err(e) => panic!("write after {sent} bytes: {e}"),
            }
        }
        match stream.try_read(&mut inb) {
            Ok(0) => panic!("the echo closed after {received} of {total} bytes"),
            Ok(n) => {
                consume(&inb[..n], received);
                received += n;
                progress = true;
            }
            Err(NetError::WouldBlock) => {}
            Err(e) => panic!("read after {received} bytes: {e}"),
        }
        if !progress {
            dev.wait_any(Some(TIMEOUT)).expect("the echo keeps coming");
        }
    }
}

/// Streams 100 MiB (scaled) to the TCP echo peer while reading the echo, and compares the
/// SHA-256 of both directions.
pub fn tcp_100_mib_each_way() {
    let dev = net::default_device().expect("a virtio-net device");
    dev.wait_for_address(TIMEOUT).expect("an address");
    let total = scaled(100 << 20);
    let mut s = TcpStream::connect(peer("tcp"), Some(TIMEOUT)).expect("connect to the host echo");
    let (mut sent_hash, mut recv_hash) = (Sha256::new(), Sha256::new());
    let start = Instant::now();
    pump(
        &mut s,
        total,
        |chunk, at| {
            fill(chunk, at);
            sent_hash.update(&*chunk);
        },
        |bytes, _| recv_hash.update(bytes),
    );
    let secs = start.elapsed().as_secs_f64();
    let (a, b) = (sent_hash.finalize(), recv_hash.finalize());
    println!(
        "{total} bytes each way in {secs:.2} s ({:.1} MB/s each way); sha256 {:02x?}",
        total as f64 / secs / 1e6,
        &a[..8]
    );
    assert_eq!(a, b, "SHA-256 of what came back differs from what was sent");
}

/// Sends 10,000 (scaled) UDP datagrams of varied lengths to the echo peer, at most 32 in
/// flight, and checks every echo; at most 1 % may be lost.
pub fn udp_10000_datagrams() {
    let dev = net::default_device().unwrap();
    dev.wait_for_address(TIMEOUT).unwrap();
    let total = scaled(10_000) as u32;
    let window = 32u32;
    let mut sock = UdpSocket::bind(0).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)));
    let to = peer("udp");
    let mut seen = vec![false; total as usize];
    // `settled`: datagrams echoed or written off after a silence; at most `window` are open.
    let (mut next, mut settled, mut bad) = (0u32, 0u32, 0u32);
    let mut buf = vec![0u8; 2048];
    let mut silences = 0;
    while (next < total || settled < next) && silences < 10 {
        while next < total && next - settled < window {
            let len = 8 + (next as usize * 37) % 1400;
            let mut d: Vec<u8> = vec![0; len];
            d[..4].copy_from_slice(&next.to_le_bytes());
            fill(&mut d[4..], next as usize);
            sock.send_to(&d, to).expect("send");
            next += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                silences = 0;
                let id = u32::from_le_bytes(buf[..4].try_into().unwrap());
                let mut want = vec![0u8; n.saturating_sub(4)];
                fill(&mut want, id as usize);
                let ok = from == to
                    && id < total
                    && n == 8 + (id as usize * 37) % 1400
                    && buf[4..n] == want[..]
                    && !core::mem::replace(&mut seen[id as usize], true);
                if ok {
                    settled = (settled + 1).min(next);
                } else {
                    bad += 1;
                }
            }
            Err(NetError::TimedOut) => {
                silences += 1;
                settled = next;
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
    let got = seen.iter().filter(|&&s| s).count();
    let lost = total as usize - got;
    println!("UDP: {total} sent, {got} echoed intact, {lost} lost, {bad} bad");
    assert_eq!(bad, 0, "an echoed datagram came back wrong");
    assert!(
        lost * 100 <= total as usize,
        "more than 1 % of the datagrams were lost"
    );
}
