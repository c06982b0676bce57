//! smoltcp over the driver: two simulated devices wired back to back, a TCP connection moving
//! 1 MiB each way, driven in a loop with a fake clock and a bounded number of iterations; the
//! wire leaves offloaded checksums partial, completes them, or corrupts some frames.

mod support;

use std::collections::VecDeque;

use smoltcp::{
    iface::{Config, Interface, SocketHandle, SocketSet},
    socket::tcp,
    time::Instant,
    wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr},
};
use support::{
    frames::complete_checksum,
    net::*,
    tso::{Framed, coalesce, segment},
};
use vireo_drivers::net::{NetDriverStats, NetOptions};

const MAC_B: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const TOTAL: usize = 1 << 20;
const PORT: u16 = 5000;

/// One end: device, driver, interface, socket, and its progress through the stream.
struct End {
    net: Net,
    drv: NetDrv,
    iface: Interface,
    sockets: SocketSet<'static>,
    socket: SocketHandle,
    sent: usize,
    received: usize,
    sent_hash: u64,
    received_hash: u64,
    seed: u64,
    /// Bytes queued at most per exchange.
    chunk: usize,
}

/// The address of end `host` (1 or 2).
fn address(host: u8, ipv6: bool) -> IpCidr {
    if ipv6 {
        let addr = IpAddress::v6(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(host));
        IpCidr::new(addr, 64)
    } else {
        IpCidr::new(IpAddress::v4(10, 0, 0, host), 24)
    }
}

/// Byte `i` of the stream an end with `seed` sends.
fn stream_byte(seed: u64, i: usize) -> u8 {
    let x = (i as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

/// FNV-1a over a stream, continued.
fn hash(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl End {
    /// End `host` (1 or 2) of the link: 10.0.0.`host`/24, or fe80::`host`/64 with `ipv6`.
    fn new(mac: [u8; 6], host: u8, ipv6: bool, options: NetOptions, seed: u64) -> Self {
        let net = Net::new(all_net(), net_config(mac, true, 1500));
        let mut drv = net.driver(options);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(drv.mac())));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut drv.phy(), Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            addrs.push(address(host, ipv6)).unwrap();
        });
        let mut sockets = SocketSet::new(Vec::new());
        let rx = tcp::SocketBuffer::new(vec![0; 64 * 1024]);
        let tx = tcp::SocketBuffer::new(vec![0; 64 * 1024]);
        let socket = sockets.add(tcp::Socket::new(rx, tx));
        Self {
            net,
            drv,
            iface,
            sockets,
            socket,
            sent: 0,
            received: 0,
            sent_hash: 0xcbf2_9ce4_8422_2325,
            received_hash: 0xcbf2_9ce4_8422_2325,
            seed,
            chunk: 16 * 1024,
        }
    }

    fn poll(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.drv.phy(), &mut self.sockets);
        assert_eq!(self.drv.take_error(), None);
    }

    /// Queues more of its stream and takes what arrived.
    fn exchange(&mut self, peer_seed: u64) {
        let socket = self.sockets.get_mut::<tcp::Socket>(self.socket);
        if socket.can_send() && self.sent < TOTAL {
            let chunk: Vec<u8> = (self.sent..TOTAL.min(self.sent + self.chunk))
                .map(|i| stream_byte(self.seed, i))
                .collect();
            let n = socket.send_slice(&chunk).unwrap();
            self.sent_hash = hash(self.sent_hash, &chunk[..n]);
            self.sent += n;
        }
        while socket.can_recv() {
            let (received, mut h) = (self.received, self.received_hash);
            let n = socket
                .recv(|data| {
                    for (k, &b) in data.iter().enumerate() {
                        assert_eq!(
                            b,
                            stream_byte(peer_seed, received + k),
                            "byte {}",
                            received + k
                        );
                    }
                    h = hash(h, data);
                    (data.len(), data.len())
                })
                .unwrap();
            self.received += n;
            self.received_hash = h;
        }
    }
}

/// What the wire between the two devices does with a checksum the sender left to its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    /// It stays partial, as between two guests on one Linux bridge: the header's `NEEDS_CSUM`
    /// and offsets go with the frame, and the receiving driver accepts it as it is.
    Partial,
    /// The sending device completes it and the frame arrives with no flags: the receiving
    /// driver verifies every TCP segment.
    Completed,
    /// As `Completed`, and one data-carrying frame in `n` has a payload byte flipped after
    /// its checksum was computed: the receiving driver must drop it, and TCP resend it.
    Corrupting(usize),
    /// As a host does for a receiver with `GUEST_TSO4`/`TSO6`: consecutive segments of the
    /// sender's batch are coalesced into one of up to 64 KiB, with a partial checksum.
    Coalescing,
}

/// One direction of the wire: frames in flight and what it did to them.
struct Link {
    wire: Wire,
    frames: VecDeque<Framed>,
    data_frames: usize,
    corrupted: u64,
    coalesced: u64,
    /// Frames the sender asked the device to cut (`HOST_TSO4`), and the frames cut from them.
    segmented: u64,
    cut: u64,
}

impl Link {
    fn new(wire: Wire) -> Self {
        Self {
            wire,
            frames: VecDeque::new(),
            data_frames: 0,
            corrupted: 0,
            coalesced: 0,
            segmented: 0,
            cut: 0,
        }
    }

    /// Moves frames the sender transmitted onto the wire, and from the wire into the
    /// receiver's rx buffers while it has some (the rest wait: nothing is dropped).
    fn carry(&mut self, from: &End, to: &End) {
        let taken = from.net.dev.borrow_mut().take_tx();
        // The sending device cuts what its driver asked it to (HOST_TSO4), as QEMU's tap
        // backend leaves to the host kernel's GSO.
        let mut sent = Vec::new();
        for (h, frame) in taken {
            let cut = segment(h, frame);
            if cut[0].0 != h {
                self.segmented += 1;
                self.cut += cut.len() as u64;
            }
            sent.extend(cut);
        }
        if self.wire == Wire::Coalescing {
            let (frames, coalesced) = coalesce(sent);
            self.coalesced += coalesced as u64;
            sent = frames;
        }
        for (h, mut frame) in sent {
            let csum = (
                u16::from_le_bytes([h[6], h[7]]),
                u16::from_le_bytes([h[8], h[9]]),
            );
            if matches!(self.wire, Wire::Partial | Wire::Coalescing) {
                self.frames.push_back((h, frame));
                continue;
            }
            if h[0] & 1 != 0 {
                complete_checksum(&mut frame, usize::from(csum.0), usize::from(csum.1));
            }
            if let Wire::Corrupting(n) = self.wire
                && frame.len() > 200
            {
                self.data_frames += 1;
                if self.data_frames.is_multiple_of(n) {
                    *frame.last_mut().unwrap() ^= 0x10;
                    self.corrupted += 1;
                }
            }
            self.frames.push_back(([0; 12], frame));
        }
        while let Some((h, frame)) = self.frames.front() {
            if !to.net.dev.borrow_mut().deliver_header(frame, *h) {
                break;
            }
            self.frames.pop_front();
        }
    }
}

fn transfer(options: NetOptions, wire: Wire) -> [NetDriverStats; 2] {
    transfer_over(options, wire, false)
}

fn transfer_over(options: NetOptions, wire: Wire, ipv6: bool) -> [NetDriverStats; 2] {
    let mut a = End::new(MAC, 1, ipv6, options, 1);
    let mut b = End::new(MAC_B, 2, ipv6, options, 2);
    if wire == Wire::Coalescing {
        // A whole window per poll: coalesced segments of up to 64 KiB.
        (a.chunk, b.chunk) = (64 * 1024, 64 * 1024);
    }
    a.sockets
        .get_mut::<tcp::Socket>(a.socket)
        .listen(PORT)
        .unwrap();
    let remote = (address(1, ipv6).address(), PORT);
    b.sockets
        .get_mut::<tcp::Socket>(b.socket)
        .connect(b.iface.context(), remote, 49152)
        .unwrap();
    let (mut ab, mut ba) = (Link::new(wire), Link::new(wire));
    let mut now = Instant::ZERO;
    let mut iterations = 0;
    while a.received < TOTAL || b.received < TOTAL {
        iterations += 1;
        assert!(
            iterations < 100_000,
            "stalled: a {} b {}; {:?} {:?}; a {:?}; b {:?}",
            a.received,
            b.received,
            a.drv.take_error(),
            b.drv.take_error(),
            a.drv.stats(),
            b.drv.stats()
        );
        now += smoltcp::time::Duration::from_millis(1);
        a.poll(now);
        b.poll(now);
        ab.carry(&a, &b);
        ba.carry(&b, &a);
        a.exchange(b.seed);
        b.exchange(a.seed);
    }
    assert_eq!((a.sent, b.sent), (TOTAL, TOTAL));
    assert_eq!(a.received_hash, b.sent_hash);
    assert_eq!(b.received_hash, a.sent_hash);
    for (end, link) in [(&a, &ba), (&b, &ab)] {
        let stats = end.drv.stats();
        assert_eq!(stats.rx_csum_failed, link.corrupted, "{stats:?}");
        assert_eq!(stats.rx_gso, link.coalesced, "{stats:?}");
        let sent = if std::ptr::eq(end, &a) { &ab } else { &ba };
        assert_eq!(stats.tx_tso, sent.segmented, "{stats:?}");
        assert_eq!(stats.rx_dropped(), link.corrupted);
        if !options.host_tso {
            // With transmit TSO a poll's data is one frame: nothing left to batch.
            assert!(stats.tx_kicks < stats.tx_frames, "batched: {stats:?}");
        }
        if wire != Wire::Coalescing {
            assert!(stats.rx_frames > 700);
        }
        // Every frame but address resolution (ARP, or NDP whose ICMPv6 checksum smoltcp
        // verifies) is a TCP segment.
        let tcp_frames = stats.rx_frames - 1;
        match (options.csum, wire) {
            (false, _) => assert_eq!(
                (stats.rx_needs_csum, stats.rx_csum_verified),
                (0, 0),
                "smoltcp verifies: {stats:?}"
            ),
            // The sender's device leaves the segments it cut complete and unflagged (the wire
            // coalesces some of them again).
            (true, _) if options.host_tso => assert_eq!(
                stats.rx_needs_csum + stats.rx_csum_verified,
                tcp_frames,
                "{stats:?}"
            ),
            (true, Wire::Partial | Wire::Coalescing) => {
                assert_eq!(stats.rx_needs_csum, tcp_frames, "{stats:?}")
            }
            (true, _) => assert_eq!(stats.rx_csum_verified, tcp_frames),
        }
    }
    if let Wire::Corrupting(_) = wire {
        assert!(ab.corrupted > 5 && ba.corrupted > 5);
    }
    if wire == Wire::Coalescing {
        assert!(
            ab.coalesced > 10 && ba.coalesced > 10,
            "{} {}",
            ab.coalesced,
            ba.coalesced
        );
    }
    [a.drv.stats(), b.drv.stats()]
}

#[test]
fn tcp_one_mebibyte_each_way_split() {
    for wire in [Wire::Partial, Wire::Completed] {
        transfer(
            NetOptions {
                queue_size: 64,
                rx_buffers: 64,
                tx_buffers: 32,
                host_tso: false,
                ..NetOptions::default()
            },
            wire,
        );
    }
}

/// Frames corrupted on the wire (after their checksum) never reach TCP: the driver drops
/// them, TCP resends, and both streams arrive intact.
#[test]
fn tcp_survives_corrupted_frames_on_every_ring() {
    for options in net_matrix() {
        transfer(
            NetOptions {
                rx_buffers: 64,
                tx_buffers: 32,
                ..options
            },
            Wire::Corrupting(61),
        );
    }
}

#[test]
fn tcp_one_mebibyte_each_way_packed_without_merged_buffers() {
    transfer(
        NetOptions {
            packed: true,
            mrg_rxbuf: false,
            csum: false,
            queue_size: 64,
            rx_buffers: 64,
            tx_buffers: 32,
            host_tso: false,
            ..NetOptions::default()
        },
        Wire::Completed,
    );
}

#[test]
fn tcp_one_mebibyte_each_way_over_small_merged_buffers() {
    for packed in [false, true] {
        let stats = transfer(
            NetOptions {
                packed,
                mrg_buffer_len: 512,
                queue_size: 64,
                rx_buffers: 64,
                tx_buffers: 32,
                host_tso: false,
                ..NetOptions::default()
            },
            Wire::Partial,
        );
        for s in stats {
            assert!(s.rx_merged > 600, "full frames span 3 buffers: {s:?}");
        }
    }
}

/// With `GUEST_TSO4`/`TSO6` the wire coalesces each batch of segments into segments of up to
/// 64 KiB, gathered from merged buffers: smoltcp takes them whole and both streams arrive
/// intact, over IPv4 and IPv6, on both ring layouts; over IPv4 also with `HOST_TSO4` (the
/// sender's 64 KiB segments cut, then coalesced again, as between two guests on one host).
#[test]
fn tcp_over_coalesced_segments() {
    for (ipv6, host_tso) in [(false, false), (true, false), (false, true)] {
        for packed in [false, true] {
            let stats = transfer_over(
                NetOptions {
                    packed,
                    tso: true,
                    host_tso,
                    queue_size: 128,
                    rx_buffers: 128,
                    tx_buffers: 64,
                    ..NetOptions::default()
                },
                Wire::Coalescing,
                ipv6,
            );
            for s in stats {
                assert!(s.rx_merged >= s.rx_gso, "{s:?}");
                assert!(s.rx_bytes / s.rx_gso > 40_000, "large segments: {s:?}");
                assert!(s.rx_oversize == 0 && s.rx_bad_gso == 0, "{s:?}");
            }
        }
    }
}

/// With `HOST_TSO4` smoltcp sends TCP segments of up to 64 KiB, which the sending device cuts
/// at the MSS smoltcp named (the wire checks the net header each carries): both streams
/// arrive intact, on both ring layouts, with and without merged buffers.
#[test]
fn tcp_with_host_tso() {
    for options in net_matrix() {
        let stats = transfer(
            NetOptions {
                host_tso: true,
                rx_buffers: 64,
                tx_buffers: 32,
                ..options
            },
            Wire::Completed,
        );
        for s in stats {
            assert!(s.tx_tso > 10, "{s:?}");
            assert!(s.tx_bytes / s.tx_frames > 8000, "large segments: {s:?}");
        }
    }
}
