//! Malformed frames for the `garbage` directive: a burst of Ethernet frames, each broken in one
//! known way, written to a test's tap (so QEMU hands them to the guest's virtio-net device),
//! followed by one well-formed UDP datagram that tells the guest the burst is over.
//!
//! Every frame is addressed to the guest's MAC, so QEMU's receive filter passes it, and carries
//! the tap's own MAC and addresses that are not the host's as its source, so no frame can teach
//! the guest a wrong neighbour for the host: what the guest's stack does with them afterwards is
//! only its own business. The frames are the same in every run (a fixed seed).

use std::{mem, net::Ipv4Addr, thread, time::Duration};

use crate::netns::NetNs;

/// Where the frames go.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The guest's MAC.
    pub mac: [u8; 6],
    /// The guest's IPv4 address.
    pub ip: Ipv4Addr,
    /// A UDP port the guest listens on: the end-of-burst datagram goes there.
    pub port: u16,
}

impl Target {
    /// Reads `MAC IP:PORT`.
    pub fn parse(mac: &str, addr: &str) -> Result<Self, String> {
        let mac = parse_mac(mac)?;
        let (ip, port) = addr
            .split_once(':')
            .ok_or_else(|| format!("`{addr}` is not IP:PORT"))?;
        Ok(Self {
            mac,
            ip: ip.parse().map_err(|_| format!("bad address `{ip}`"))?,
            port: port.parse().map_err(|_| format!("bad port `{port}`"))?,
        })
    }
}

/// Reads a MAC address written `52:54:00:12:34:56`.
pub fn parse_mac(mac: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad MAC `{mac}`"))?;
    bytes.try_into().map_err(|_| format!("bad MAC `{mac}`"))
}

/// The ways a frame is broken, one per frame in turn.
pub const KINDS: [&str; 14] = [
    "random bytes",
    "IPv4 header cut short",
    "IPv4 header length below 20",
    "IPv4 header length beyond the frame",
    "IPv4 total length beyond the frame",
    "IPv4 total length below its header",
    "IPv4 header checksum wrong",
    "UDP checksum wrong",
    "UDP length field wrong",
    "TCP checksum wrong",
    "TCP header cut short",
    "IPv6 payload length beyond the frame",
    "ARP cut short or with bad lengths",
    "IPv4 fragment with a bad offset",
];

/// A source address on the tap's subnet that no one has: the malformed packets come from there.
const STRANGER: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 77);

/// `count` malformed frames for `to`, sent from `src_mac`: frame `i` is broken the way
/// `KINDS[i % KINDS.len()]` says.
pub fn frames(count: usize, to: Target, src_mac: [u8; 6]) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_0f6a_4ba6_e001);
    (0..count)
        .map(|i| frame(i % KINDS.len(), &mut rng, to, src_mac))
        .collect()
}

/// The well-formed datagram `garbage-done COUNT` from `from`:4001 to the target's port.
pub fn done_marker(count: usize, to: Target, src_mac: [u8; 6], from: Ipv4Addr) -> Vec<u8> {
    let payload = format!("garbage-done {count}");
    let udp = udp(from, to.ip, 4001, to.port, payload.as_bytes(), true);
    ethernet(to.mac, src_mac, 0x0800, &ipv4(from, to.ip, 17, &udp))
}

fn frame(kind: usize, rng: &mut Rng, to: Target, src: [u8; 6]) -> Vec<u8> {
    let payload = [&[0x5a][..], &rng.bytes_below(200)].concat();
    let good_udp = udp(STRANGER, to.ip, 5000, to.port, &payload, true);
    let good_ip = ipv4(STRANGER, to.ip, 17, &good_udp);
    let ip_frame = |ip: &[u8]| ethernet(to.mac, src, 0x0800, ip);
    match kind {
        0 => {
            // Any ethertype but ARP's (a random ARP packet could name a real address).
            let ethertype = match rng.next() as u16 {
                0x0806 => 0x0807,
                t => t,
            };
            ethernet(to.mac, src, ethertype, &rng.bytes_below(1500))
        }
        1 => ip_frame(&good_ip[..1 + rng.below(19)]),
        2 => {
            let mut ip = good_ip;
            ip[0] = 0x40 | rng.below(5) as u8;
            fix_ip_checksum(&mut ip);
            ip_frame(&ip)
        }
        3 => {
            let mut ip = good_ip[..20].to_vec();
            ip[0] = 0x4f;
            fix_ip_checksum(&mut ip);
            ip_frame(&ip)
        }
        4 => {
            let mut ip = good_ip;
            let beyond = ip.len() + 1 + rng.below(1000);
            ip[2..4].copy_from_slice(&(beyond as u16).to_be_bytes());
            fix_ip_checksum(&mut ip);
            ip_frame(&ip)
        }
        5 => {
            let mut ip = good_ip;
            ip[2..4].copy_from_slice(&(rng.below(20) as u16).to_be_bytes());
            fix_ip_checksum(&mut ip);
            ip_frame(&ip)
        }
        6 => {
            let mut ip = good_ip;
            ip[10] ^= 1 + rng.below(255) as u8;
            ip_frame(&ip)
        }
        7 => {
            let bad = udp(STRANGER, to.ip, 5000, to.port, &payload, false);
            ip_frame(&ipv4(STRANGER, to.ip, 17, &bad))
        }
        8 => {
            let mut bad = good_udp;
            let len = if rng.below(2) == 0 {
                bad.len() + 1 + rng.below(100)
            } else {
                rng.below(8)
            };
            bad[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            ip_frame(&ipv4(STRANGER, to.ip, 17, &bad))
        }
        9 => {
            let mut seg = tcp(STRANGER, to.ip, 5000, 80 + rng.below(2000) as u16, &payload);
            seg[16] ^= 1 + rng.below(255) as u8;
            ip_frame(&ipv4(STRANGER, to.ip, 6, &seg))
        }
        10 => {
            let mut seg = tcp(STRANGER, to.ip, 5000, 80, &[]);
            // The data offset says 60 bytes of header; 8 to 19 bytes follow the IP header.
            seg[12] = 0xf0;
            seg.truncate(8 + rng.below(12));
            ip_frame(&ipv4(STRANGER, to.ip, 6, &seg))
        }
        11 => {
            let mut ip6 = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
            ip6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77]);
            ip6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02]);
            ip6.extend_from_slice(&payload);
            let claimed = payload.len() + 1 + rng.below(1000);
            ip6[4..6].copy_from_slice(&(claimed as u16).to_be_bytes());
            ethernet(
                to.mac,
                src,
                0x86dd,
                &ip6[..ip6.len() - rng.below(20).min(ip6.len())],
            )
        }
        12 => {
            // Hardware type Ethernet, protocol IPv4, then lengths that do not fit.
            let mut arp = vec![
                0,
                1,
                8,
                0,
                6 + rng.below(3) as u8,
                4 + rng.below(3) as u8,
                0,
                1,
            ];
            arp.extend_from_slice(&src);
            arp.extend_from_slice(&STRANGER.octets());
            arp.extend_from_slice(&[0; 6]);
            arp.extend_from_slice(&to.ip.octets());
            arp.truncate(rng.below(arp.len() + 1));
            ethernet(to.mac, src, 0x0806, &arp)
        }
        _ => {
            let mut ip = good_ip;
            // More fragments, and an offset (in 8-byte units) near the end of the 64 KiB space.
            let offset = 0x1f00 | rng.below(0xff) as u16;
            ip[6..8].copy_from_slice(&(0x2000 | offset).to_be_bytes());
            fix_ip_checksum(&mut ip);
            ip_frame(&ip)
        }
    }
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet with a correct header checksum.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    fix_ip_checksum(&mut ip);
    ip.extend_from_slice(payload);
    ip
}

/// Writes the header checksum of the IPv4 packet `ip` (as far as its header length and the
/// buffer allow).
fn fix_ip_checksum(ip: &mut [u8]) {
    ip[10..12].fill(0);
    let hl = (usize::from(ip[0] & 0x0f) * 4).clamp(20, ip.len());
    let sum = checksum(&[&ip[..hl]]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// A UDP datagram; its checksum is right when `good`, off by one otherwise.
fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8], good: bool) -> Vec<u8> {
    let len = (8 + data.len()) as u16;
    let mut d = Vec::with_capacity(usize::from(len));
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(data);
    let mut sum = checksum(&[&pseudo(src, dst, 17, len), &d]);
    if sum == 0 {
        sum = 0xffff;
    }
    if !good {
        sum = if sum == 0xffff { 1 } else { sum + 1 };
    }
    d[6..8].copy_from_slice(&sum.to_be_bytes());
    d
}

/// A TCP SYN with a correct checksum.
fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + data.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&[
        0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    s.extend_from_slice(data);
    let sum = checksum(&[&pseudo(src, dst, 6, s.len() as u16), &s]);
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&len.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071) of the concatenated parts, each of even length but the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// xorshift64: the same frames in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Between 0 and `max - 1` random bytes.
    fn bytes_below(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Writes `frames` out of the namespace's tap, in order, through a packet socket that bypasses
/// the tap's queueing discipline (a fair-queueing one would reorder them). Paced at a few tens
/// of thousands of frames a second; a full queue is waited out, not dropped.
pub fn inject(ns: &NetNs, frames: &[Vec<u8>]) -> Result<(), String> {
    let index = ns.tap_index()?;
    ns.run_inside(|| {
        let socket = PacketSocket::open()?;
        for (i, f) in frames.iter().enumerate() {
            let mut tries = 0;
            while let Err(e) = socket.send(index, f) {
                tries += 1;
                if e.raw_os_error() != Some(libc::ENOBUFS) || tries > 1000 {
                    return Err(format!("sending frame {i}: {e}"));
                }
                thread::sleep(Duration::from_millis(1));
            }
            if i % 64 == 63 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    })
}

/// An `AF_PACKET` socket that only sends.
struct PacketSocket(libc::c_int);

impl PacketSocket {
    fn open() -> Result<Self, String> {
        // SAFETY: plain system call; protocol 0 receives nothing.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(format!(
                "packet socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        let socket = Self(fd);
        let on: libc::c_int = 1;
        // SAFETY: `on` is a live c_int and its size is passed with it.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const on).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(format!(
                "PACKET_QDISC_BYPASS: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(socket)
    }

    fn send(&self, ifindex: u32, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: all-zero is a valid `sockaddr_ll`.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` and `addr` are live for the call, with their lengths.
        let n = unsafe {
            libc::sendto(
                self.0,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: Target = Target {
        mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        ip: Ipv4Addr::new(10, 0, 9, 2),
        port: 4000,
    };
    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn every_frame_is_for_the_guest_and_broken_as_labelled() {
        let all = frames(KINDS.len() * 20, TO, SRC);
        assert_eq!(all, frames(KINDS.len() * 20, TO, SRC), "deterministic");
        for (i, f) in all.iter().enumerate() {
            assert_eq!(&f[..6], &TO.mac, "frame {i}");
            assert!(
                f.len() >= 14 && f.len() <= 1514,
                "frame {i}: {} bytes",
                f.len()
            );
            let ip = &f[14..];
            let total = |ip: &[u8]| usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let kind = i % KINDS.len();
            match kind {
                1 => assert!(ip.len() < 20),
                2 => assert!(ip[0] & 0x0f < 5),
                3 => assert!(usize::from(ip[0] & 0x0f) * 4 > ip.len()),
                4 => assert!(total(ip) > ip.len()),
                5 => assert!(total(ip) < 20),
                6 => assert_ne!(checksum(&[&ip[..20]]), 0, "header checksum wrong"),
                7 => {
                    let len = u16::from_be_bytes([ip[24], ip[25]]);
                    let src: [u8; 4] = ip[12..16].try_into().unwrap();
                    let dst: [u8; 4] = ip[16..20].try_into().unwrap();
                    let sum = checksum(&[&pseudo(src.into(), dst.into(), 17, len), &ip[20..]]);
                    assert_ne!(sum, 0, "UDP checksum wrong");
                    assert_eq!(checksum(&[&ip[..20]]), 0, "the IP header itself is fine");
                }
                8 => {
                    let len = usize::from(u16::from_be_bytes([ip[24], ip[25]]));
                    assert!(len < 8 || len > ip.len() - 20);
                }
                10 => assert!(ip.len() - 20 < 60),
                11 => assert!(usize::from(u16::from_be_bytes([ip[4], ip[5]])) + 40 > ip.len()),
                _ => {}
            }
        }
    }

    #[test]
    fn the_marker_is_a_well_formed_datagram() {
        let m = done_marker(10_000, TO, SRC, Ipv4Addr::new(10, 0, 9, 1));
        let ip = &m[14..];
        assert_eq!(checksum(&[&ip[..20]]), 0);
        let len = u16::from_be_bytes([ip[24], ip[25]]);
        let sum = checksum(&[
            &pseudo(Ipv4Addr::new(10, 0, 9, 1), TO.ip, 17, len),
            &ip[20..],
        ]);
        assert_eq!(sum, 0);
        assert_eq!(&ip[28..], b"garbage-done 10000");
    }

    #[test]
    fn targets_parse() {
        let t = Target::parse("52:54:00:12:34:56", "10.0.9.2:4000").unwrap();
        assert_eq!(t.mac, TO.mac);
        assert_eq!(t.port, 4000);
        assert!(Target::parse("52:54:00", "10.0.9.2:4000").is_err());
        assert!(Target::parse("52:54:00:12:34:56", "10.0.9.2").is_err());
    }
}
