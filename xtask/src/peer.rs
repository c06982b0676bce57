//! Host-side peers for network tests: echo servers on the loopback interface that a guest
//! reaches through QEMU's user networking (the guest's 10.0.2.2:PORT is the host's
//! 127.0.0.1:PORT), or on the host's side of a test's tap (in its network namespace); and, on
//! the tap only (it takes port 53), a DNS server for the names under `vireo.test`. A test image asks for them with `//! vireo-test: peer tcp-echo udp-echo` and
//! finds their ports where it wrote `{peer:tcp-echo}` / `{peer:udp-echo}` in its `qemu` or
//! `append` directives. They serve only while their boot runs, and never longer than
//! [`MAX_LIFETIME`]: every loop checks a stop flag and a deadline.

use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// The longest any peer serves, whatever its boot does.
const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// How often a blocked peer looks at its stop flag.
const TICK: Duration = Duration::from_millis(50);

/// Running peers; dropping them stops them.
#[derive(Debug, Default)]
pub struct Peers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// `(kind, port)` of each peer.
    ports: Vec<(String, u16)>,
}

impl Peers {
    /// Starts one peer of each kind in `kinds` (`tcp-echo`, `udp-echo`) on the address `ip`.
    pub fn start(kinds: &[String], ip: &str) -> Result<Self, String> {
        let mut peers = Self::default();
        let deadline = Instant::now() + MAX_LIFETIME;
        for kind in kinds {
            let stop = peers.stop.clone();
            let (port, thread) = match kind.as_str() {
                "tcp-echo" => {
                    let l = TcpListener::bind((ip, 0)).map_err(|e| format!("peer: {e}"))?;
                    l.set_nonblocking(true).map_err(|e| format!("peer: {e}"))?;
                    let port = l.local_addr().map_err(|e| format!("peer: {e}"))?.port();
                    (port, thread::spawn(move || tcp_echo(l, stop, deadline)))
                }
                "dns" => {
                    let s = UdpSocket::bind((ip, 53)).map_err(|e| format!("peer: dns: {e}"))?;
                    s.set_read_timeout(Some(TICK))
                        .map_err(|e| format!("peer: {e}"))?;
                    let answer: std::net::Ipv4Addr = ip
                        .parse()
                        .map_err(|_| format!("peer: dns: `{ip}` is not IPv4"))?;
                    (53, thread::spawn(move || dns(s, answer, stop, deadline)))
                }
                "udp-echo" => {
                    let s = UdpSocket::bind((ip, 0)).map_err(|e| format!("peer: {e}"))?;
                    s.set_read_timeout(Some(TICK))
                        .map_err(|e| format!("peer: {e}"))?;
                    let port = s.local_addr().map_err(|e| format!("peer: {e}"))?.port();
                    (port, thread::spawn(move || udp_echo(s, stop, deadline)))
                }
                _ => return Err(format!("unknown peer `{kind}` (tcp-echo, udp-echo or dns)")),
            };
            peers.threads.push(thread);
            peers.ports.push((kind.clone(), port));
        }
        Ok(peers)
    }

    /// `s` with each `{peer:KIND}` replaced by that peer's port.
    pub fn substitute(&self, s: &str) -> String {
        self.ports.iter().fold(s.to_string(), |s, (kind, port)| {
            s.replace(&format!("{{peer:{kind}}}"), &port.to_string())
        })
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn running(stop: &AtomicBool, deadline: Instant) -> bool {
    !stop.load(Ordering::Relaxed) && Instant::now() < deadline
}

/// Accepts connections and echoes each on its own thread until the peer closes it.
fn tcp_echo(listener: TcpListener, stop: Arc<AtomicBool>, deadline: Instant) {
    let mut conns = Vec::new();
    while running(&stop, deadline) {
        match listener.accept() {
            Ok((stream, _)) => {
                let stop = stop.clone();
                conns.push(thread::spawn(move || echo_stream(stream, &stop, deadline)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(_) => thread::sleep(TICK),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn echo_stream(mut stream: TcpStream, stop: &AtomicBool, deadline: Instant) {
    if stream.set_read_timeout(Some(TICK)).is_err() || stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    while running(stop, deadline) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// Sends every datagram back to where it came from.
fn udp_echo(socket: UdpSocket, stop: Arc<AtomicBool>, deadline: Instant) {
    let mut buf = vec![0u8; 65536];
    while running(&stop, deadline) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = socket.send_to(&buf[..n], from);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => thread::sleep(TICK),
        }
    }
}

/// The names the DNS peer knows: `echo.vireo.test` and `peer.vireo.test` are `answer` (the
/// host's side of the tap); every other name under `vireo.test` does not exist.
fn dns(socket: UdpSocket, answer: std::net::Ipv4Addr, stop: Arc<AtomicBool>, deadline: Instant) {
    let mut buf = [0u8; 512];
    while running(&stop, deadline) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(reply) = dns_reply(&buf[..n], answer) {
                    let _ = socket.send_to(&reply, from);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => thread::sleep(TICK),
        }
    }
}

/// The answer to one DNS query (RFC 1035 §4.1): an `A` record for a known name, "no such name"
/// for the others, nothing for what is not a standard query with one question.
fn dns_reply(query: &[u8], answer: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let (flags, questions) = (
        u16::from_be_bytes([header[2], header[3]]),
        u16::from_be_bytes([header[4], header[5]]),
    );
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || questions != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let name = labels.join(".");
    let known = matches!(name.as_str(), "echo.vireo.test" | "peer.vireo.test") && qtype == 1;
    let mut reply = Vec::with_capacity(question.len() + 28);
    reply.extend_from_slice(&header[..2]);
    // A response, recursion desired as asked, available; "no such name" when unknown.
    let rcode = if known { 0 } else { 3 };
    reply.extend_from_slice(&(0x8080 | (flags & 0x0100) | rcode).to_be_bytes());
    reply.extend_from_slice(&[0, 1, 0, u8::from(known), 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if known {
        // The name as a pointer to the question, type A, class IN, 60 s, 4 bytes.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&answer.octets());
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_peers_echo_and_stop() {
        let peers = Peers::start(&["tcp-echo".into(), "udp-echo".into()], "127.0.0.1").unwrap();
        let tcp: u16 = peers.substitute("{peer:tcp-echo}").parse().unwrap();
        let udp: u16 = peers.substitute("{peer:udp-echo}").parse().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
        s.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.send_to(b"ping", ("127.0.0.1", udp)).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = u.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        drop(s);
        let start = Instant::now();
        drop(peers);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "peers stop promptly"
        );
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn dns_answers_known_names_and_denies_the_rest() {
        let ip = std::net::Ipv4Addr::new(10, 0, 9, 1);
        let q = query("Echo.vireo.test", 1);
        let r = dns_reply(&q, ip).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34], "the query's id");
        assert_eq!(
            u16::from_be_bytes([r[2], r[3]]) & 0x800f,
            0x8000,
            "a response, no error"
        );
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[12..q.len()], &q[12..], "the question echoed");
        assert_eq!(&r[r.len() - 4..], &ip.octets());
        let nx = dns_reply(&query("nowhere.vireo.test", 1), ip).unwrap();
        assert_eq!(u16::from_be_bytes([nx[2], nx[3]]) & 0xf, 3, "no such name");
        assert_eq!(&nx[6..8], &[0, 0]);
        let aaaa = dns_reply(&query("echo.vireo.test", 28), ip).unwrap();
        assert_eq!(&aaaa[6..8], &[0, 0], "no AAAA record");
        assert!(dns_reply(&q[..10], ip).is_none(), "a cut header");
        assert!(dns_reply(&q[..q.len() - 1], ip).is_none(), "a cut question");
        let mut response = q.clone();
        response[2] |= 0x80;
        assert!(dns_reply(&response, ip).is_none(), "not a query");
    }

    #[test]
    fn unknown_peers_are_refused() {
        assert!(Peers::start(&["smtp".into()], "127.0.0.1").is_err());
    }
}
