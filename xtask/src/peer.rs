//! Host-side peers for network tests: echo servers on the loopback interface that a guest
//! reaches through QEMU's user networking (the guest's 10.0.2.2:PORT is the host's
//! 127.0.0.1:PORT), or on the host's side of a test's tap (in its network namespace). A test image asks for them with `//! vireo-test: peer tcp-echo udp-echo` and
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
                "udp-echo" => {
                    let s = UdpSocket::bind((ip, 0)).map_err(|e| format!("peer: {e}"))?;
                    s.set_read_timeout(Some(TICK))
                        .map_err(|e| format!("peer: {e}"))?;
                    let port = s.local_addr().map_err(|e| format!("peer: {e}"))?.port();
                    (port, thread::spawn(move || udp_echo(s, stop, deadline)))
                }
                _ => return Err(format!("unknown peer `{kind}` (tcp-echo or udp-echo)")),
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

    #[test]
    fn unknown_peers_are_refused() {
        assert!(Peers::start(&["smtp".into()], "127.0.0.1").is_err());
    }
}
