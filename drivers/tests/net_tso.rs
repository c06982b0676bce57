//! `VIRTIO_NET_F_GUEST_TSO4`/`TSO6` against the simulated device: negotiated only with
//! `GUEST_CSUM` and merged buffers; a coalesced segment of up to 64 KiB is gathered from
//! merged buffers and delivered intact; a GSO type the device may not send, or one that does
//! not match the frame, drops the frame (all its buffers taken back) and is counted.
//! `VIRTIO_NET_F_HOST_TSO4`: negotiated only with `CSUM`, told to smoltcp, and a segment
//! smoltcp asks to have cut carries the GSO fields. (smoltcp over both: `net_smoltcp.rs`.)

mod support;

use support::{frames::*, net::*, tso::*};
use vireo_drivers::net::{MAX_GSO_FRAME_LEN, MAX_TSO_FRAME_LEN, NetDriverError, NetOptions};
use vireo_virtio::virtio_spec::{F, net};

fn tso() -> F {
    F::from(net::F::GUEST_TSO4 | net::F::GUEST_TSO6)
}

/// Options with TSO on and room for a 64 KiB frame in 2 KiB merged buffers (33 of them; the
/// simulated queues hold 64).
fn options(packed: bool) -> NetOptions {
    NetOptions {
        packed,
        tso: true,
        queue_size: 64,
        rx_buffers: 64,
        refill_batch: 8,
        ..NetOptions::default()
    }
}

#[test]
fn negotiated_only_with_guest_csum_and_merged_buffers() {
    let negotiated = |offered: F, options: NetOptions| {
        let net = Net::new(offered, net_config(MAC, true, 1500));
        net.driver(options).features() & tso()
    };
    let on = options(false);
    assert_eq!(negotiated(all_net(), on), tso());
    // On by default, with the default pool's 2 KiB buffers.
    assert_eq!(negotiated(all_net(), NetOptions::default()), tso());
    let net = Net::standard();
    assert_eq!(net.driver(NetOptions::default()).info().rx_buffer_len, 2048);
    assert_eq!(
        negotiated(all_net(), NetOptions { tso: false, ..on }),
        F::empty()
    );
    // Not asked for without the features it needs...
    for off in [
        NetOptions {
            mrg_rxbuf: false,
            ..on
        },
        NetOptions { csum: false, ..on },
    ] {
        assert_eq!(negotiated(all_net(), off), F::empty());
    }
    // ...nor kept when the device does not offer them.
    for missing in [net::F::MRG_RXBUF, net::F::GUEST_CSUM] {
        assert_eq!(negotiated(all_net() - F::from(missing), on), F::empty());
    }
    // One of the two alone.
    let only4 = all_net() - F::from(net::F::GUEST_TSO6);
    assert_eq!(negotiated(only4, on), net::F::GUEST_TSO4.into());
}

/// A coalesced TCP segment of `payload` bytes as a host delivers it: partial checksum,
/// `NEEDS_CSUM`, GSO fields.
fn coalesced(ipv6: bool, payload: usize) -> ([u8; 12], Vec<u8>) {
    let l4 = L4::Tcp {
        port: 80,
        syn: false,
        seq: 1,
    };
    let data: Vec<u8> = (0..payload).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut f = frame(MAC, ipv6, l4, &data);
    let (start, _) = make_partial(&mut f, ipv6, l4);
    let gso_type = if ipv6 { GSO_TCPV6 } else { GSO_TCPV4 };
    (gso_header(gso_type, start + 20, 1448, start), f)
}

#[test]
fn a_coalesced_64_kib_segment_is_delivered_intact() {
    for packed in [false, true] {
        for ipv6 in [false, true] {
            let net = Net::standard();
            let mut drv = net.driver(options(packed));
            // The largest IPv4 packet, and an IPv6 frame of the largest length taken.
            let payload = if ipv6 {
                MAX_GSO_FRAME_LEN - 74
            } else {
                65_535 - 40
            };
            let (h, f) = coalesced(ipv6, payload);
            assert!(f.len() > 65_500);
            assert!(net.dev.borrow_mut().deliver_header(&f, h));
            assert_eq!(drain(&mut drv), [f]);
            let s = drv.stats();
            assert_eq!((s.rx_gso, s.rx_merged, s.rx_needs_csum), (1, 1, 1));
            assert_eq!(s.rx_dropped(), 0);
            // One byte more than the driver takes (IPv6 only: IPv4 cannot say it).
            if ipv6 {
                let (h, f) = coalesced(true, payload + 1);
                assert!(net.dev.borrow_mut().deliver_header(&f, h));
                assert!(drain(&mut drv).is_empty());
                assert_eq!(drv.stats().rx_oversize, 1);
            }
            // A plain frame is still held to the MTU.
            let big = eth_frame(MAC, 1515, 1);
            assert!(net.dev.borrow_mut().deliver(&big));
            assert!(drain(&mut drv).is_empty());
        }
    }
}

#[test]
fn bad_gso_drops_the_frame_and_its_buffers_come_back() {
    for packed in [false, true] {
        let net = Net::standard();
        let mut drv = net.driver(options(packed));
        let pool = drv.rx_buffers().0;
        let (h4, f4) = coalesced(false, 20_000);
        let (h6, f6) = coalesced(true, 20_000);
        let with_type = |h: [u8; 12], t: u8| {
            let mut h = h;
            h[1] = t;
            h
        };
        let mut cases = Vec::new();
        // Types never negotiated: UDP (UFO), UDP_L4 (USO), TCPV4 with ECN, unknown.
        for t in [3, 5, 0x81, 0x7f] {
            cases.push((with_type(h4, t), f4.clone()));
        }
        // A type that does not match the frame: TCPV6 on IPv4 and back, TCPV4 on UDP.
        cases.push((with_type(h4, GSO_TCPV6), f4.clone()));
        cases.push((with_type(h6, GSO_TCPV4), f6.clone()));
        let udp = frame(MAC, false, L4::Udp { port: 53 }, &[9; 3000]);
        cases.push((with_type(header(0, 0, 0, 1), GSO_TCPV4), udp));
        // An IPv4 length short of the frame (bytes after the IP packet).
        let mut padded = f4.clone();
        padded.extend_from_slice(&[0; 100]);
        cases.push((h4, padded));
        let count = cases.len() as u64;
        for (h, f) in &cases {
            assert!(net.dev.borrow_mut().deliver_header(f, *h));
            assert!(drain(&mut drv).is_empty(), "{h:?}");
            drv.enable_rx_notifications().unwrap();
        }
        let s = drv.stats();
        assert_eq!(
            (s.rx_bad_gso, s.rx_dropped(), s.rx_frames),
            (count, count, 0)
        );
        // Every buffer came back, and good frames flow.
        let (posted, spare) = drv.rx_buffers();
        assert_eq!(posted + spare, pool);
        assert!(net.dev.borrow_mut().deliver_header(&f6, h6));
        assert_eq!(drain(&mut drv), std::slice::from_ref(&f6));
    }
}

#[test]
fn with_one_of_tso4_and_tso6_the_other_type_is_refused() {
    // A device sends GSO_TCPV4 only with GUEST_TSO4, GSO_TCPV6 only with GUEST_TSO6 (virtio
    // 1.2 §5.1.6.4.1): the other type is one not negotiated, however long its frame.
    for (only, ipv6_taken) in [(net::F::GUEST_TSO4, false), (net::F::GUEST_TSO6, true)] {
        let offered = (all_net() - tso()) | F::from(only);
        let net = Net::new(offered, net_config(MAC, true, 1500));
        let mut drv = net.driver(options(false));
        assert_eq!(drv.features() & tso(), only.into());
        for ipv6 in [false, true] {
            let (h, f) = coalesced(ipv6, 20_000);
            assert!(net.dev.borrow_mut().deliver_header(&f, h));
            let expected = if ipv6 == ipv6_taken { vec![f] } else { vec![] };
            assert_eq!(drain(&mut drv), expected, "ipv6 {ipv6}");
        }
        let s = drv.stats();
        assert_eq!((s.rx_gso, s.rx_bad_gso, s.rx_oversize), (1, 1, 0));
        assert_eq!(s.rx_dropped(), 1);
    }
}

#[test]
fn gso_without_the_feature_is_refused_on_every_ring() {
    for options in net_matrix() {
        let net = Net::standard();
        let mut drv = net.driver(NetOptions {
            tso: false,
            ..options
        });
        assert!(!drv.features().intersects(tso()));
        // A small coalesced frame that fits one buffer even without merged buffers.
        let (h, f) = coalesced(false, 1000);
        assert!(net.dev.borrow_mut().deliver_header(&f, h));
        assert!(drain(&mut drv).is_empty());
        assert_eq!(drv.stats().rx_bad_gso, 1);
        let good = eth_frame(MAC, 100, 3);
        assert!(net.dev.borrow_mut().deliver(&good));
        assert_eq!(drain(&mut drv), [good]);
    }
}

#[test]
fn a_small_pool_gets_buffers_long_enough_for_a_coalesced_frame() {
    for (rx_buffers, len) in [(64, 2048), (16, 4371), (2, 65_562), (1, 65_562)] {
        let net = Net::standard();
        let mut drv = net.driver(NetOptions {
            rx_buffers,
            ..options(false)
        });
        assert_eq!(drv.info().rx_buffer_len, len, "{rx_buffers} buffers");
        let (h, f) = coalesced(false, 65_000);
        assert!(net.dev.borrow_mut().deliver_header(&f, h));
        assert_eq!(drain(&mut drv), [f]);
    }
    // A device offering one of GUEST_TSO4 and GUEST_TSO6 coalesces frames of that type just
    // as long.
    for (only, ipv6) in [(net::F::GUEST_TSO4, false), (net::F::GUEST_TSO6, true)] {
        let other = tso() - F::from(only);
        let net = Net::new(all_net() - other, net_config(MAC, true, 1500));
        let mut drv = net.driver(NetOptions {
            rx_buffers: 16,
            ..options(false)
        });
        assert_eq!(drv.features() & tso(), only.into());
        assert_eq!(drv.info().rx_buffer_len, 4371, "{only:?} alone");
        let (h, f) = coalesced(ipv6, 65_000);
        assert!(net.dev.borrow_mut().deliver_header(&f, h));
        assert_eq!(drain(&mut drv), [f]);
    }
    // Without TSO the configured length stays.
    let net = Net::standard();
    let drv = net.driver(NetOptions {
        rx_buffers: 16,
        tso: false,
        ..options(false)
    });
    assert_eq!(drv.info().rx_buffer_len, 2048);
}

#[test]
fn host_tso4_is_negotiated_with_csum_and_told_to_smoltcp() {
    let caps = |offered: F, options: NetOptions| {
        let net = Net::new(offered, net_config(MAC, true, 1500));
        let drv = net.driver(options);
        let f = drv.features();
        let host = f & F::from(net::F::HOST_TSO4 | net::F::HOST_TSO6);
        (host, drv.capabilities().segmentation)
    };
    let on = NetOptions {
        host_tso: true,
        ..NetOptions::default()
    };
    let (host, seg) = caps(all_net(), on);
    assert_eq!(host, net::F::HOST_TSO4.into(), "never HOST_TSO6");
    assert_eq!(seg.tcpv4.map(|n| n.get()), Some(MAX_TSO_FRAME_LEN));
    assert_eq!(seg.tcpv6, None);
    assert_eq!(MAX_TSO_FRAME_LEN, 14 + 65_535);
    // On by default.
    assert_eq!(
        caps(all_net(), NetOptions::default()).0,
        net::F::HOST_TSO4.into()
    );
    for (offered, options) in [
        (
            all_net(),
            NetOptions {
                host_tso: false,
                ..on
            },
        ),
        (all_net(), NetOptions { csum: false, ..on }),
        (all_net() - F::from(net::F::CSUM), on),
    ] {
        let (host, seg) = caps(offered, options);
        assert_eq!((host, seg.tcpv4), (F::empty(), None));
    }
}

#[test]
fn a_segment_for_the_device_to_cut_carries_the_gso_fields() {
    for packed in [false, true] {
        let net = Net::standard();
        let mut drv = net.driver(NetOptions {
            packed,
            host_tso: true,
            ..NetOptions::default()
        });
        let l4 = L4::Tcp {
            port: 80,
            syn: false,
            seq: 1000,
        };
        let payload: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        let f = frame([2, 0, 0, 0, 0, 9], false, l4, &payload);
        assert!(f.len() > 1514);
        send_segmented(&mut drv, &f, 1448);
        assert_eq!(drv.take_error(), None);
        let sent = net.dev.borrow_mut().take_tx();
        assert_eq!(sent.len(), 1);
        let (h, wire) = sent[0].clone();
        // NEEDS_CSUM at 34 + 16, GSO_TCPV4, hdr_len 54, gso_size 1448 (`segment` checks the
        // pseudo-header sum too).
        assert_eq!(h[..2], [1, GSO_TCPV4]);
        let cut = segment(h, wire);
        assert_eq!(cut.len(), 60_000usize.div_ceil(1448));
        let mut joined = Vec::new();
        for (_, c) in &cut {
            assert!(c.len() <= 54 + 1448);
            joined.extend_from_slice(&c[54..]);
        }
        assert_eq!(joined, payload);
        assert_eq!(drv.stats().tx_tso, 1);
    }
}

#[test]
fn a_segment_the_device_cannot_cut_is_dropped_and_reported() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions {
        host_tso: true,
        ..NetOptions::default()
    });
    let tcp = L4::Tcp {
        port: 80,
        syn: false,
        seq: 1,
    };
    let data_offset_at = l4_start(false) + 12;
    let mut cases = Vec::new();
    // TCP over IPv6: HOST_TSO6 is never negotiated.
    cases.push(frame(MAC, true, tcp, &[3; 3000]));
    // A data offset below 5 words (RFC 9293 §3.1: the header is 20 bytes at least)…
    for words in 0..5 {
        let mut f = frame(MAC, false, tcp, &[3; 3000]);
        f[data_offset_at] = words << 4;
        cases.push(f);
    }
    // …or past the end of the segment (60 bytes of header in a 50-byte segment).
    let mut f = frame(MAC, false, tcp, &[3; 30]);
    f[data_offset_at] = 15 << 4;
    cases.push(f);
    // UDP, though its bytes where a data offset would lie say 5 words.
    cases.push(frame(MAC, false, L4::Udp { port: 53 }, &[5 << 4; 3000]));
    for f in &cases {
        // Taken out of the batch, its buffer free again.
        send_segmented(&mut drv, f, 1448);
        assert_eq!(drv.take_error(), Some(NetDriverError::ChecksumOffload));
    }
    // Longer than the largest IPv4 packet: refused before it is written.
    send_segmented(&mut drv, &vec![0; MAX_TSO_FRAME_LEN + 1], 1448);
    assert!(matches!(
        drv.take_error(),
        Some(NetDriverError::FrameTooLarge { .. })
    ));
    assert!(net.dev.borrow_mut().take_tx().is_empty());
    assert_eq!(drv.tx_outstanding(), 0);
    let s = drv.stats();
    let refused = cases.len() as u64 + 1;
    // Nothing of them counted as sent.
    assert_eq!(
        (s.tx_frames, s.tx_bytes, s.tx_tso, s.phy_errors),
        (0, 0, 0, refused)
    );
    // Without HOST_TSO4 a segmentation size is refused above the MTU.
    let net = Net::standard();
    let mut drv = net.driver(NetOptions {
        host_tso: false,
        ..NetOptions::default()
    });
    send_segmented(&mut drv, &frame(MAC, false, tcp, &[0; 3000]), 1448);
    assert!(matches!(
        drv.take_error(),
        Some(NetDriverError::FrameTooLarge { max: 1514, .. })
    ));
    // Within the MTU it is not handed over for cutting either (GSO fields without the
    // feature, §5.1.6.2): dropped and reported.
    send_segmented(&mut drv, &frame(MAC, false, tcp, &[0; 1000]), 536);
    assert_eq!(drv.take_error(), Some(NetDriverError::ChecksumOffload));
    assert!(net.dev.borrow_mut().take_tx().is_empty());
    assert_eq!(drv.stats().tx_tso, 0);
}

/// Segment buffers serve segments only, and come back to serve them again once the device
/// has read them, whatever the MTU (a jumbo frame's buffer is still no segment buffer).
#[test]
fn segments_have_their_own_buffers_and_tokens_wait_for_one() {
    use smoltcp::phy::Device;
    for mtu in [1500, 9000] {
        let net = Net::new(all_net(), net_config(MAC, true, mtu));
        let mut drv = net.driver(NetOptions {
            host_tso: true,
            tso_buffers: 2,
            ..NetOptions::default()
        });
        let l4 = L4::Tcp {
            port: 80,
            syn: false,
            seq: 1,
        };
        let big = frame([2, 0, 0, 0, 0, 9], false, l4, &[5; 20_000]);
        send_segmented(&mut drv, &big, 1448);
        send_segmented(&mut drv, &big, 1448);
        // Both segment buffers are with the device: smoltcp gets no token, though ordinary
        // buffers are free, and frames up to the MTU still go through the driver's own call.
        assert!(drv.phy().transmit(smoltcp::time::Instant::ZERO).is_none());
        let small = eth_frame([0xff; 6], 100, 1);
        drv.transmit(100, |b| b.copy_from_slice(&small)).unwrap();
        drv.flush().unwrap();
        assert_eq!(net.dev.borrow_mut().take_tx().len(), 3);
        // The device has read them: a token again, and the segment buffers serve again.
        for _ in 0..4 {
            assert!(
                drv.phy().transmit(smoltcp::time::Instant::ZERO).is_some(),
                "MTU {mtu}"
            );
            send_segmented(&mut drv, &big, 1448);
            assert_eq!(net.dev.borrow_mut().take_tx().len(), 1);
        }
        assert_eq!(drv.take_error(), None);
        assert_eq!(drv.stats().tx_tso, 6);
    }
}

/// With `HOST_TSO4` the tx ring is shared out: segment buffers as many as asked for up to half
/// the ring, each holding a whole segment of [`MAX_TSO_FRAME_LEN`] bytes, and ordinary buffers
/// the rest (`NetOptions::tx_buffers`, `tso_buffers`). The 32 segment buffers asked for here
/// take 2 MiB (4 MiB in the simulated guest's power-of-two blocks) of its 16 MiB.
#[test]
fn the_tx_ring_is_shared_between_segment_and_ordinary_buffers() {
    use smoltcp::phy::Device;
    let net = Net::standard();
    let mut drv = net.driver(NetOptions {
        host_tso: true,
        queue_size: 64,
        tx_buffers: 64,
        tso_buffers: 100,
        ..NetOptions::default()
    });
    let small = eth_frame([0xff; 6], 100, 1);
    let mut ordinary = 0;
    while drv.transmit(100, |b| b.copy_from_slice(&small)).is_ok() {
        ordinary += 1;
    }
    assert_eq!(ordinary, 32, "half the ring for ordinary frames");
    drv.flush().unwrap();
    assert_eq!(net.dev.borrow_mut().take_tx().len(), 32);
    let l4 = L4::Tcp {
        port: 80,
        syn: false,
        seq: 1,
    };
    let largest = frame([2, 0, 0, 0, 0, 9], false, l4, &vec![5; 65_535 - 40]);
    assert_eq!(largest.len(), MAX_TSO_FRAME_LEN);
    let mut segments = 0;
    while drv.phy().transmit(smoltcp::time::Instant::ZERO).is_some() {
        send_segmented(&mut drv, &largest, 1448);
        segments += 1;
        assert!(segments <= 64, "more segment buffers than the ring holds");
    }
    assert_eq!(drv.take_error(), None);
    assert_eq!(segments, 32, "the other half for segments");
    let sent = net.dev.borrow_mut().take_tx();
    assert_eq!(sent.len(), 32);
    // Whole, their checksum left to the device (the field holds the pseudo-header sum).
    assert!(
        sent.iter()
            .all(|(_, f)| f.len() == MAX_TSO_FRAME_LEN && f[54..] == largest[54..])
    );
}
