//! Received TCP and UDP checksums with `VIRTIO_NET_F_GUEST_CSUM`: the driver accepts a frame
//! on the device's flags or verifies it itself, and smoltcp verifies nothing more; without
//! `GUEST_CSUM` smoltcp keeps verifying. Each case on both ring layouts, with and without
//! merged buffers (small ones, so every frame spans several), into a smoltcp interface with
//! a listening TCP socket and a bound UDP socket: a segment that reaches TCP moves the
//! listener to SYN-RECEIVED. IP packets at the edges of their lengths, against the tests' own
//! reading. Transmitted checksums left to the device (`VIRTIO_NET_F_CSUM`).

mod support;

use smoltcp::{
    iface::{Config, Interface, SocketHandle, SocketSet},
    phy::Checksum,
    socket::{tcp, udp},
    time::Instant,
    wire::{EthernetAddress, HardwareAddress, IpCidr},
};
use support::{frames::*, net::*};
use vireo_drivers::net::{NetDriverStats, NetOptions};
use vireo_virtio::virtio_spec::{F, net};

const TCP_PORT: u16 = 80;
const UDP_PORT: u16 = 53;
const NEEDS_CSUM: u8 = 1;
const DATA_VALID: u8 = 2;

/// A driver under a smoltcp interface with one TCP listener and one UDP socket.
struct Host {
    net: Net,
    drv: NetDrv,
    iface: Interface,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
    udp: SocketHandle,
    now: Instant,
}

impl Host {
    fn new(offered: F, options: NetOptions) -> Self {
        let net = Net::new(offered, net_config(MAC, true, 1500));
        let mut drv = net.driver(options);
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(drv.mac())));
        let mut iface = Interface::new(config, &mut drv.phy(), Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(OURS_V4.into(), 24)).unwrap();
            addrs.push(IpCidr::new(OURS_V6.into(), 64)).unwrap();
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        socket.listen(TCP_PORT).unwrap();
        let tcp = sockets.add(socket);
        let meta = || vec![udp::PacketMetadata::EMPTY; 8];
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(meta(), vec![0; 8192]),
            udp::PacketBuffer::new(meta(), vec![0; 8192]),
        );
        socket.bind(UDP_PORT).unwrap();
        let udp = sockets.add(socket);
        Self {
            net,
            drv,
            iface,
            sockets,
            tcp,
            udp,
            now: Instant::ZERO,
        }
    }

    /// Delivers `frame` with header flags and checksum offsets, then lets smoltcp take it.
    fn receive(&mut self, frame: &[u8], flags: u8, csum: (u16, u16)) {
        assert!(self.net.dev.borrow_mut().deliver_with(frame, flags, csum));
        self.now += smoltcp::time::Duration::from_millis(1);
        self.iface
            .poll(self.now, &mut self.drv.phy(), &mut self.sockets);
        assert_eq!(self.drv.take_error(), None);
        // As the kernel does before it waits: every spare buffer goes back to the device.
        assert!(!self.drv.enable_rx_notifications().unwrap());
    }

    /// Whether a TCP segment reached the listener.
    fn tcp_reached(&self) -> bool {
        self.sockets.get::<tcp::Socket>(self.tcp).state() != tcp::State::Listen
    }

    /// The UDP payloads that reached the socket.
    fn udp_received(&mut self) -> Vec<Vec<u8>> {
        let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
        let mut out = Vec::new();
        while let Ok((data, _)) = socket.recv() {
            out.push(data.to_vec());
        }
        out
    }

    fn stats(&self) -> NetDriverStats {
        self.drv.stats()
    }
}

/// The four ring configurations; merged buffers of 64 bytes, so even a SYN spans two (guest
/// TSO off: it would lengthen them).
fn matrix() -> Vec<NetOptions> {
    net_matrix()
        .into_iter()
        .map(|o| NetOptions {
            mrg_buffer_len: 64,
            tso: false,
            ..o
        })
        .collect()
}

/// Runs `case` on every ring configuration with a device offering everything.
fn each_ring(mut case: impl FnMut(&mut Host)) {
    for options in matrix() {
        let mut host = Host::new(all_net(), options);
        case(&mut host);
        if options.mrg_rxbuf && host.stats().rx_frames > 0 {
            assert!(host.stats().rx_merged > 0, "frames spanned several buffers");
        }
    }
}

fn syn(ipv6: bool) -> (Vec<u8>, L4) {
    let l4 = L4::Tcp {
        port: TCP_PORT,
        syn: true,
        seq: 1000,
    };
    (frame(MAC, ipv6, l4, &[]), l4)
}

/// Flips the TCP or UDP checksum of a frame built by [`frame`].
fn corrupt(frame: &mut [u8], ipv6: bool, l4: L4) {
    frame[l4_start(ipv6) + csum_offset(l4)] ^= 0x5a;
}

#[test]
fn wrong_tcp_checksum_without_flags_is_dropped_and_counted() {
    for ipv6 in [false, true] {
        each_ring(|host| {
            let (mut f, l4) = syn(ipv6);
            corrupt(&mut f, ipv6, l4);
            host.receive(&f, 0, (0, 0));
            let s = host.stats();
            assert_eq!((s.rx_csum_failed, s.rx_frames), (1, 0), "{s:?}");
            assert_eq!(s.rx_dropped(), 1);
            assert!(!host.tcp_reached());
            // The same segment with its checksum right is verified and reaches TCP.
            let (good, _) = syn(ipv6);
            host.receive(&good, 0, (0, 0));
            let s = host.stats();
            assert_eq!((s.rx_csum_verified, s.rx_frames), (1, 1), "{s:?}");
            assert!(host.tcp_reached());
        });
    }
}

#[test]
fn data_valid_is_trusted_and_smoltcp_does_not_verify_again() {
    for ipv6 in [false, true] {
        each_ring(|host| {
            // A wrong checksum the device vouched for: smoltcp takes it as it is.
            let (mut f, l4) = syn(ipv6);
            corrupt(&mut f, ipv6, l4);
            host.receive(&f, DATA_VALID, (0, 0));
            let s = host.stats();
            assert_eq!(
                (s.rx_data_valid, s.rx_frames, s.rx_csum_verified),
                (1, 1, 0)
            );
            assert!(host.tcp_reached());
        });
    }
}

#[test]
fn needs_csum_is_delivered_without_computing() {
    for ipv6 in [false, true] {
        for l4 in [
            L4::Tcp {
                port: TCP_PORT,
                syn: true,
                seq: 1,
            },
            L4::Udp { port: UDP_PORT },
        ] {
            each_ring(|host| {
                let payload: &[u8] = match l4 {
                    L4::Tcp { .. } => &[],
                    L4::Udp { .. } => &[7; 300],
                };
                let mut f = frame(MAC, ipv6, l4, payload);
                let csum = make_partial(&mut f, ipv6, l4);
                host.receive(&f, NEEDS_CSUM, csum);
                let s = host.stats();
                assert_eq!(
                    (s.rx_needs_csum, s.rx_frames, s.rx_csum_verified),
                    (1, 1, 0)
                );
                match l4 {
                    L4::Tcp { .. } => assert!(host.tcp_reached()),
                    L4::Udp { .. } => assert_eq!(host.udp_received(), [payload.to_vec()]),
                }
                // The partial checksum a device completes is the real one.
                let mut completed = f.clone();
                complete_checksum(&mut completed, usize::from(csum.0), usize::from(csum.1));
                assert_eq!(completed, frame(MAC, ipv6, l4, payload));
            });
        }
    }
}

#[test]
fn udp_checksums_zero_over_ipv4_wrong_or_right() {
    let l4 = L4::Udp { port: UDP_PORT };
    let zero_at = |ipv6| l4_start(ipv6) + csum_offset(l4);
    each_ring(|host| {
        // Over IPv4 a zero checksum means none was computed (RFC 768): delivered.
        let mut f = frame(MAC, false, l4, b"unchecked");
        f[zero_at(false)..zero_at(false) + 2].copy_from_slice(&[0, 0]);
        host.receive(&f, 0, (0, 0));
        assert_eq!(host.udp_received(), [b"unchecked".to_vec()]);
        // Over IPv6 it is refused (RFC 8200 §8.1), as is a wrong one; a right one passes.
        let mut f = frame(MAC, true, l4, b"v6 zero");
        f[zero_at(true)..zero_at(true) + 2].copy_from_slice(&[0, 0]);
        host.receive(&f, 0, (0, 0));
        let big = vec![0x3c; 1200];
        for ipv6 in [false, true] {
            let mut f = frame(MAC, ipv6, l4, &big);
            corrupt(&mut f, ipv6, l4);
            host.receive(&f, 0, (0, 0));
        }
        assert!(host.udp_received().is_empty());
        let good = frame(MAC, true, l4, &big);
        host.receive(&good, 0, (0, 0));
        assert_eq!(host.udp_received(), std::slice::from_ref(&big));
        let s = host.stats();
        assert_eq!(
            (s.rx_csum_failed, s.rx_csum_verified, s.rx_frames),
            (3, 2, 2)
        );
    });
}

#[test]
fn frames_that_are_not_tcp_or_udp_pass_unchanged() {
    each_ring(|host| {
        let frames = [eth_frame(MAC, 60, 1), eth_frame(MAC, 1000, 2)];
        for f in &frames {
            assert!(host.net.dev.borrow_mut().deliver(f));
        }
        assert_eq!(drain(&mut host.drv), frames);
        let s = host.stats();
        assert_eq!((s.rx_csum_verified, s.rx_csum_failed), (0, 0));
    });
}

#[test]
fn without_guest_csum_smoltcp_verifies() {
    let offered = all_net() - F::from(net::F::GUEST_CSUM);
    for options in matrix() {
        for (offer, options) in [
            (offered, options),
            (
                all_net(),
                NetOptions {
                    csum: false,
                    ..options
                },
            ),
        ] {
            let mut host = Host::new(offer, options);
            // Handed over as the device delivered it (the driver checks nothing), dropped by
            // smoltcp, whatever the flags say.
            for flags in [0, DATA_VALID] {
                let (mut f, l4) = syn(false);
                corrupt(&mut f, false, l4);
                host.receive(&f, flags, (0, 0));
                assert!(!host.tcp_reached());
            }
            // A DATA_VALID a device sets even without GUEST_CSUM is counted, and only that
            // one (frames without the flag are not).
            let s = host.stats();
            assert_eq!(
                (
                    s.rx_frames,
                    s.rx_csum_failed,
                    s.rx_csum_verified,
                    s.rx_data_valid
                ),
                (2, 0, 0, 1)
            );
            let (good, _) = syn(false);
            host.receive(&good, 0, (0, 0));
            assert!(host.tcp_reached());
            assert_eq!(host.stats().rx_data_valid, 1);
        }
    }
}

#[test]
fn smoltcp_is_told_who_answers_for_each_direction() {
    let cases = [
        (all_net(), true, "None"),
        (all_net() - F::from(net::F::GUEST_CSUM), true, "Rx"),
        (all_net() - F::from(net::F::CSUM), true, "Tx"),
        (all_net(), false, "Both"),
    ];
    for (offered, csum, expected) in cases {
        let net = Net::new(offered, net_config(MAC, true, 1500));
        let drv = net.driver(NetOptions {
            csum,
            ..NetOptions::default()
        });
        let caps = drv.capabilities().checksum;
        for c in [caps.tcp, caps.udp] {
            assert_eq!(format!("{c:?}"), expected);
        }
        // IPv4 header and ICMP checksums always stay with smoltcp.
        assert!(matches!(caps.ipv4, Checksum::Both));
        assert!(matches!(caps.icmpv4, Checksum::Both));
    }
}

/// IP packets at the edges of their lengths, as a broken or hostile peer may send them:
/// every truncation of a frame (runts too short for their IP header), an IPv4 total length
/// one short of the header or equal to it, an IPv6 packet that is the fixed header alone or
/// whose extension header ends the payload, a small datagram behind extension headers. With
/// `GUEST_CSUM` and no flags the driver hands out exactly the frames whose TCP or UDP
/// checksum is not wrong by the tests' own reading (`checksum_verdict`, also the fuzz
/// target's), unchanged, and never panics.
#[test]
fn ip_lengths_at_their_edges_are_read_as_smoltcp_reads_them() {
    let tcp = L4::Tcp {
        port: TCP_PORT,
        syn: false,
        seq: 1,
    };
    let udp = L4::Udp { port: UDP_PORT };
    let mut cases = Vec::new();
    for ipv6 in [false, true] {
        for l4 in [tcp, udp] {
            let f = frame(MAC, ipv6, l4, b"x");
            cases.extend((0..f.len()).map(|len| (f[..len].to_vec(), None)));
            cases.push((f, Some(true)));
        }
    }
    // No room for a TCP header: the "segment" is empty, its checksum wrong.
    let set_len = |f: &mut Vec<u8>, at: usize, len: usize| {
        f[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
    };
    for (total, verdict) in [(19, None), (20, Some(false))] {
        let mut f = frame(MAC, false, tcp, &[]);
        set_len(&mut f, ETH + 2, total);
        cases.push((f, verdict));
    }
    let mut f = frame(MAC, true, tcp, &[]);
    f.truncate(ETH + 40);
    set_len(&mut f, ETH + 4, 0);
    cases.push((f, Some(false)));
    let mut f = with_ext_header(&frame(MAC, true, tcp, &[]), 0, 0);
    f.truncate(ETH + 48);
    set_len(&mut f, ETH + 4, 8);
    cases.push((f, Some(false)));
    // An empty datagram behind one, then two extension headers, right and wrong.
    let empty = frame(MAC, true, udp, &[]);
    for f in [
        with_ext_header(&empty, 0, 0),
        with_ext_header(&with_ext_header(&empty, 60, 1), 0, 0),
    ] {
        let mut bad = f.clone();
        bad[f.len() - 2] ^= 0x5a;
        cases.push((f, Some(true)));
        cases.push((bad, Some(false)));
    }
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    for (f, verdict) in cases {
        assert_eq!(checksum_verdict(&f), verdict, "{f:02x?}");
        assert!(net.dev.borrow_mut().deliver(&f));
        let expected = if verdict == Some(false) {
            vec![]
        } else {
            vec![f]
        };
        assert_eq!(drain(&mut drv), expected);
    }
}

/// With `VIRTIO_NET_F_CSUM` every TCP or UDP packet written through the smoltcp token, down
/// to a UDP header alone, goes with `NEEDS_CSUM` and offsets from which the device computes
/// the right checksum (virtio 1.2 §5.1.6.2); one cut short before its checksum field (a raw
/// socket may send it) goes as it was written, without the flag.
#[test]
fn transmitted_checksums_are_left_to_the_device_where_the_field_is() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    let mut send = |f: &[u8]| {
        send_segmented(&mut drv, f, 0);
        assert_eq!(drv.take_error(), None);
        let mut sent = net.dev.borrow_mut().take_tx();
        assert_eq!(sent.len(), 1);
        sent.pop().unwrap()
    };
    let tcp = L4::Tcp {
        port: TCP_PORT,
        syn: true,
        seq: 7,
    };
    for ipv6 in [false, true] {
        for l4 in [tcp, L4::Udp { port: UDP_PORT }] {
            for payload in [&[][..], &[1], &[0xa5; 301]] {
                let expected = frame(PEER_MAC, ipv6, l4, payload);
                let (start, offset) = (l4_start(ipv6), csum_offset(l4));
                let mut f = expected.clone();
                f[start + offset..start + offset + 2].copy_from_slice(&[0, 0]);
                let (h, mut wire) = send(&f);
                assert_eq!(h, header(NEEDS_CSUM, start as u16, offset as u16, 0));
                complete_checksum(&mut wire, start, offset);
                assert_eq!(wire, expected);
            }
        }
    }
    // TCP over IPv4 cut to 10 bytes, and to 17 over IPv6 (the field would end at 18); UDP
    // cut to 7; each also padded to Ethernet's 60 bytes.
    for (ipv6, l4, cut) in [
        (false, tcp, 10),
        (true, tcp, 17),
        (false, L4::Udp { port: 1 }, 7),
    ] {
        let mut f = frame(PEER_MAC, ipv6, l4, &[]);
        let start = l4_start(ipv6);
        f.truncate(start + cut);
        let (at, len) = if ipv6 {
            (ETH + 4, cut)
        } else {
            (ETH + 2, 20 + cut)
        };
        f[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        let mut padded = f.clone();
        padded.resize(60, 0);
        for f in [f, padded] {
            let (h, wire) = send(&f);
            assert_eq!((h, wire), ([0; 12], f));
        }
    }
}
