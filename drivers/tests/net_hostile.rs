//! virtio-net against a hostile simulated device: every malformed answer is a typed error or a
//! dropped, counted frame; no panic, and no byte the device did not write reaches the caller.

mod support;

use support::{frames::*, net::*};
use vireo_drivers::net::{NetDriverError, NetOptions};
use vireo_virtio::QueueError;

fn options(packed: bool, mrg_rxbuf: bool) -> NetOptions {
    NetOptions {
        packed,
        mrg_rxbuf,
        queue_size: 64,
        rx_buffers: 16,
        refill_batch: 4,
        ..NetOptions::default()
    }
}

fn each_ring(mut test: impl FnMut(bool, bool)) {
    for packed in [false, true] {
        for mrg in [false, true] {
            test(packed, mrg);
        }
    }
}

#[test]
fn used_length_shorter_than_the_header_drops_the_frame() {
    each_ring(|packed, mrg| {
        let net = Net::standard();
        let mut drv = net.driver(options(packed, mrg));
        assert!(net.dev.borrow_mut().deliver_raw(&[(vec![0xAA; 11], None)]));
        assert!(
            net.dev
                .borrow_mut()
                .deliver_raw(&[(vec![0xAA; 40], Some(0))])
        );
        let good = eth_frame(MAC, 70, 1);
        assert!(net.dev.borrow_mut().deliver(&good));
        assert_eq!(drain(&mut drv), [good]);
        assert_eq!(drv.stats().rx_short, 2);
    });
}

#[test]
fn used_length_beyond_the_buffer_is_a_queue_error() {
    each_ring(|packed, mrg| {
        let net = Net::standard();
        let mut drv = net.driver(options(packed, mrg));
        let cap = net.dev.borrow_mut().rx_buffer_len() as u32;
        assert!(
            net.dev
                .borrow_mut()
                .deliver_raw(&[(vec![0; 20], Some(cap + 1))])
        );
        let err = drv.receive(|_| ()).unwrap_err();
        assert!(matches!(
            err,
            NetDriverError::Queue(QueueError::WrittenLenTooLarge { .. })
        ));
        assert_eq!(drv.stats().rx_frames, 0);
    });
}

#[test]
fn stale_bytes_past_the_used_length_never_show() {
    each_ring(|packed, mrg| {
        let net = Net::standard();
        let mut drv = net.driver(NetOptions {
            rx_buffers: 1,
            ..options(packed, mrg)
        });
        let long = eth_frame(MAC, 1000, 1);
        assert!(net.dev.borrow_mut().deliver(&long));
        assert_eq!(drain(&mut drv), std::slice::from_ref(&long));
        // The same buffer, now with a short frame whose used length covers only part of it.
        let mut bytes = header(0, 0, 0, 1).to_vec();
        bytes.extend_from_slice(&long);
        assert!(net.dev.borrow_mut().deliver_raw(&[(bytes, Some(12 + 60))]));
        assert_eq!(drain(&mut drv), [long[..60].to_vec()]);
    });
}

#[test]
fn bad_num_buffers_drop_the_frame() {
    for packed in [false, true] {
        let net = Net::standard();
        let mut drv = net.driver(options(packed, true));
        let good = eth_frame(MAC, 64, 2);
        let with = |n: u16, frame: &[u8]| {
            let mut b = header(0, 0, 0, n).to_vec();
            b.extend_from_slice(frame);
            (b, None)
        };
        let mut dev = net.dev.borrow_mut();
        // 0 buffers; more buffers than the driver has posted; 3 announced but 2 used.
        assert!(dev.deliver_raw(&[with(0, &good)]));
        assert!(dev.deliver_raw(&[with(100, &good)]));
        assert!(dev.deliver_raw(&[with(3, &good), (vec![1; 30], None)]));
        drop(dev);
        assert_eq!(drain(&mut drv), Vec::<Vec<u8>>::new());
        assert_eq!(drv.stats().rx_bad_num_buffers, 3);
        // The pool is intact and later frames flow.
        assert!(net.dev.borrow_mut().deliver(&good));
        assert_eq!(drain(&mut drv), [good]);
        let (posted, spare) = drv.rx_buffers();
        assert_eq!(posted + spare, 16);
    }
}

#[test]
fn num_buffers_is_ignored_without_mrg_rxbuf() {
    for packed in [false, true] {
        let net = Net::standard();
        let mut drv = net.driver(options(packed, false));
        let good = eth_frame(MAC, 64, 2);
        let mut b = header(0, 0, 0, 9).to_vec();
        b.extend_from_slice(&good);
        assert!(net.dev.borrow_mut().deliver_raw(&[(b, None)]));
        assert_eq!(drain(&mut drv), [good]);
    }
}

#[test]
fn used_id_not_in_flight_is_a_queue_error() {
    each_ring(|packed, mrg| {
        let net = Net::standard();
        let mut drv = net.driver(options(packed, mrg));
        net.dev.borrow_mut().sim.push_used_id(0, 40, 20);
        let err = drv.receive(|_| ()).unwrap_err();
        assert!(matches!(err, NetDriverError::Queue(_)), "{err:?}");
        // Recovery: reset, and frames flow again.
        drv.reset_and_reinit(&mut net.budget(), &[]).unwrap();
        let good = eth_frame(MAC, 64, 3);
        assert!(net.dev.borrow_mut().deliver(&good));
        assert_eq!(drain(&mut drv), [good]);
    });
}

#[test]
fn oversized_frames_are_dropped() {
    each_ring(|packed, mrg| {
        // An MTU of 576: frames up to 590 bytes; buffers still hold 1500-byte ones.
        let net = Net::new(all_net(), net_config(MAC, true, 576));
        let mut drv = net.driver(NetOptions {
            mrg_buffer_len: 256,
            ..options(packed, mrg)
        });
        assert_eq!((drv.info().mtu, drv.info().max_frame_len), (576, 590));
        assert!(net.dev.borrow_mut().deliver(&eth_frame(MAC, 591, 1)));
        let fits = eth_frame(MAC, 590, 2);
        assert!(net.dev.borrow_mut().deliver(&fits));
        assert_eq!(drain(&mut drv), [fits]);
        assert_eq!(drv.stats().rx_oversize, 1);
        assert!(drv.transmit(591, |_| ()).is_err());
    });
}

#[test]
fn checksum_offsets_outside_the_frame_drop_it() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    let frame = eth_frame(MAC, 60, 1);
    assert!(net.dev.borrow_mut().deliver_with(&frame, 1, (50, 9)));
    assert!(net.dev.borrow_mut().deliver_with(&frame, 1, (61, 0)));
    assert!(
        net.dev
            .borrow_mut()
            .deliver_with(&frame, 1, (u16::MAX, u16::MAX))
    );
    assert_eq!(drain(&mut drv), Vec::<Vec<u8>>::new());
    assert_eq!(drv.stats().rx_bad_csum, 3);
}

#[test]
fn unusable_mtu_is_refused_or_clamped() {
    for (raw, mtu, rejected) in [
        (10, 1500, Some(10)),
        (65535, 9000, Some(65535)),
        (9000, 9000, None),
    ] {
        let net = Net::new(all_net(), net_config(MAC, true, raw));
        let drv = net.driver(NetOptions {
            mrg_rxbuf: false,
            ..NetOptions::default()
        });
        assert_eq!((drv.info().mtu, drv.info().mtu_rejected), (mtu, rejected));
        // Without merged buffers each buffer holds the largest frame.
        assert_eq!(drv.info().rx_buffer_len, 12 + 14 + usize::from(mtu));
    }
    // Without VIRTIO_NET_F_MTU negotiated the configuration's value is not read.
    let net = Net::new(all_net(), net_config(MAC, true, 10));
    let drv = net.driver(NetOptions {
        mtu: false,
        ..NetOptions::default()
    });
    assert_eq!((drv.info().mtu, drv.info().mtu_rejected), (1500, None));
}

#[test]
fn protocol_errors_inside_a_smoltcp_poll_are_kept_for_the_caller() {
    use smoltcp::{
        iface::{Config, Interface, SocketSet},
        time::Instant,
        wire::{EthernetAddress, HardwareAddress},
    };
    each_ring(|packed, mrg| {
        let net = Net::standard();
        let mut drv = net.driver(options(packed, mrg));
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(drv.mac())));
        let mut iface = Interface::new(config, &mut drv.phy(), Instant::ZERO);
        let mut sockets = SocketSet::new(Vec::new());
        net.dev.borrow_mut().sim.push_used_id(0, 40, 20);
        iface.poll(Instant::from_millis(1), &mut drv.phy(), &mut sockets);
        assert!(matches!(drv.take_error(), Some(NetDriverError::Queue(_))));
        assert_eq!(drv.take_error(), None);
        assert!(drv.stats().phy_errors >= 1);
    });
}

/// A device sending every kind of malformed frame among good ones: each dropped frame is
/// counted once, under its reason, `rx_dropped` is their sum, and every good frame arrives.
#[test]
fn every_dropped_frame_is_counted_once_under_its_reason() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    let good = eth_frame(MAC, 100, 7);
    let short = || vec![(vec![0xAA; 11], None)];
    let no_buffers = || {
        let mut b = header(0, 0, 0, 0).to_vec();
        b.extend_from_slice(&good);
        vec![(b, None)]
    };
    let l4 = L4::Tcp {
        port: 80,
        syn: true,
        seq: 1,
    };
    let mut wrong_sum = frame(MAC, false, l4, &[1, 2, 3]);
    wrong_sum[l4_start(false) + csum_offset(l4)] ^= 0x5a;
    let mut udp_gso = header(0, 0, 0, 1);
    udp_gso[1] = 3;
    let mut dev = net.dev.borrow_mut();
    let mut sent_good = 0;
    for (kind, count) in (0..6).zip(1..) {
        for _ in 0..count {
            let delivered = match kind {
                0 => dev.deliver_raw(&short()),
                1 => dev.deliver(&eth_frame(MAC, 1515, 1)),
                2 => dev.deliver_raw(&no_buffers()),
                3 => dev.deliver_with(&good, 1, (100, 0)),
                4 => dev.deliver(&wrong_sum),
                _ => dev.deliver_header(&good, udp_gso),
            };
            assert!(delivered && dev.deliver(&good));
            sent_good += 1;
        }
    }
    drop(dev);
    let received = drain(&mut drv);
    assert_eq!(received.len(), sent_good);
    assert!(received.iter().all(|f| *f == good));
    let s = drv.stats();
    let reasons = [
        s.rx_short,
        s.rx_oversize,
        s.rx_bad_num_buffers,
        s.rx_bad_csum,
        s.rx_csum_failed,
        s.rx_bad_gso,
    ];
    assert_eq!(reasons, [1, 2, 3, 4, 5, 6], "{s:?}");
    assert_eq!(s.rx_dropped(), 21);
    assert_eq!(s.rx_frames, sent_good as u64);
}
