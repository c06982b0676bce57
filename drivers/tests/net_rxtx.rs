//! virtio-net against the simulated device: bring-up, receive and transmit on both ring
//! layouts, merged rx buffers, refill under pressure, checksum flags, link changes.

mod support;

use support::net::*;
use vireo_drivers::net::{
    HEADER_LEN, MAX_MAC_FILTERS, NetDriverError, NetOptions, TxChecksum, default_multicast,
};
use vireo_virtio::virtio_spec::{F, net};

#[test]
fn bring_up_negotiates_and_turns_filtering_on() {
    for options in net_matrix() {
        let net = Net::standard();
        let drv = net.driver(options);
        let f = drv.features();
        assert_eq!(f.contains(F::RING_PACKED), options.packed);
        assert_eq!(f.contains(net::F::MRG_RXBUF.into()), options.mrg_rxbuf);
        assert!(f.contains((net::F::CTRL_VQ | net::F::CTRL_RX | net::F::CSUM).into()));
        assert_eq!(drv.mac(), MAC);
        assert!(drv.link_up());
        assert_eq!(drv.info().mtu, 1500);
        assert_eq!(drv.info().max_frame_len, 1514);
        let expected_len = if options.mrg_rxbuf { 2048 } else { 12 + 1514 };
        assert_eq!(drv.info().rx_buffer_len, expected_len);
        assert_eq!(drv.rx_buffers(), (32, 0));
        let dev = net.dev.borrow();
        let log = &dev.ctrl_log;
        assert_eq!(log.len(), 3);
        assert_eq!(
            (log[0].class, log[0].command, &log[0].data[..]),
            (0, 0, &[0][..])
        );
        assert_eq!(
            (log[1].class, log[1].command, &log[1].data[..]),
            (0, 1, &[0][..])
        );
        let mut table = vec![0, 0, 0, 0, 2, 0, 0, 0];
        table.extend(default_multicast(MAC).concat());
        assert_eq!((log[2].class, log[2].command, &log[2].data), (1, 0, &table));
    }
}

#[test]
fn features_can_be_refused() {
    let net = Net::standard();
    let drv = net.driver(NetOptions {
        mrg_rxbuf: false,
        csum: false,
        ctrl_vq: false,
        mtu: false,
        event_idx: false,
        indirect: false,
        ring_reset: false,
        ..NetOptions::default()
    });
    let wanted = F::VERSION_1 | F::from(net::F::MAC | net::F::STATUS);
    assert_eq!(drv.features(), wanted);
    assert!(net.dev.borrow().ctrl_log.is_empty());
}

#[test]
fn frames_round_trip_on_every_ring() {
    for options in net_matrix() {
        let net = Net::standard();
        let mut drv = net.driver(options);
        let allocations = net.dma.allocations();
        for round in 0..5u8 {
            // More frames than buffers over the rounds: buffers are reposted and reused.
            let sent: Vec<_> = (0..10)
                .map(|i| eth_frame(MAC, 60 + 140 * usize::from(i), round ^ i))
                .collect();
            for f in &sent {
                assert!(net.dev.borrow_mut().deliver(f));
            }
            assert_eq!(drain(&mut drv), sent);
            for f in &sent {
                drv.transmit(f.len(), |buf| buf.copy_from_slice(f)).unwrap();
            }
            assert_eq!(drv.tx_outstanding(), 10);
            assert!(
                net.dev.borrow_mut().take_tx().is_empty(),
                "nothing before flush"
            );
            drv.flush().unwrap();
            let got = net.dev.borrow_mut().take_tx();
            assert_eq!(got.len(), 10);
            for ((h, frame), f) in got.iter().zip(&sent) {
                assert_eq!(h, &[0; 12]);
                assert_eq!(frame, f);
            }
            assert_eq!(drv.reclaim_tx().unwrap(), 10);
        }
        assert_eq!(
            net.dma.allocations(),
            allocations,
            "no DMA allocation per frame"
        );
        let stats = drv.stats();
        assert_eq!((stats.rx_frames, stats.tx_frames), (50, 50));
        assert_eq!(stats.rx_dropped(), 0);
        assert!(stats.tx_kicks <= 5, "one kick per flush at most");
    }
}

#[test]
fn merged_frames_are_reassembled_and_single_ones_stay_in_place() {
    for packed in [false, true] {
        let net = Net::standard();
        let mut drv = net.driver(NetOptions {
            packed,
            tso: false,
            mrg_buffer_len: 256,
            queue_size: 64,
            rx_buffers: 32,
            ..NetOptions::default()
        });
        assert_eq!(drv.info().rx_buffer_len, 256);
        let big = eth_frame(MAC, 1514, 3);
        let small = eth_frame(MAC, 200, 4);
        assert!(net.dev.borrow_mut().deliver(&big));
        assert!(net.dev.borrow_mut().deliver(&small));
        assert!(net.dev.borrow_mut().deliver(&big));
        assert_eq!(drain(&mut drv), [big.clone(), small, big]);
        let stats = drv.stats();
        assert_eq!((stats.rx_frames, stats.rx_merged), (3, 2));
    }
}

#[test]
fn merged_buffers_hold_the_header_and_a_byte_at_least() {
    // With MRG_RXBUF each buffer must hold at least the net header (virtio 1.2 §5.1.6.3.1);
    // the driver's floor (`NetOptions::mrg_buffer_len`) is one frame byte more.
    for (asked, len) in [
        (0, HEADER_LEN + 1),
        (1, 13),
        (11, 13),
        (12, 13),
        (13, 13),
        (14, 14),
    ] {
        let net = Net::standard();
        let mut drv = net.driver(NetOptions {
            mrg_buffer_len: asked,
            tso: false,
            queue_size: 64,
            rx_buffers: 64,
            ..NetOptions::default()
        });
        assert_eq!(drv.info().rx_buffer_len, len, "asked for {asked}");
        assert_eq!(net.dev.borrow_mut().rx_buffer_len(), len);
        let frame = eth_frame(MAC, 60, 1);
        assert!(net.dev.borrow_mut().deliver(&frame));
        assert_eq!(drain(&mut drv), [frame]);
    }
}

#[test]
fn rx_pool_exhausted_then_refilled_in_batches() {
    for options in net_matrix() {
        let net = Net::standard();
        let mut drv = net.driver(NetOptions {
            rx_buffers: 8,
            refill_batch: 4,
            ..options
        });
        let frame = eth_frame(MAC, 100, 9);
        for _ in 0..8 {
            assert!(net.dev.borrow_mut().deliver(&frame));
        }
        assert!(!net.dev.borrow_mut().deliver(&frame), "pool exhausted");
        let kicks = drv.stats().rx_kicks;
        // Three frames taken: the buffers wait as spares (below the batch of 4)…
        for _ in 0..3 {
            assert!(drv.receive(|_| ()).unwrap().is_some());
        }
        assert!(net.dev.borrow_mut().rx_available() == 0);
        // …until the ring runs low: every call refills once the pool is short.
        assert_eq!(drain(&mut drv).len(), 5);
        let (posted, spare) = drv.rx_buffers();
        assert_eq!(posted + spare, 8);
        assert!(drv.enable_rx_notifications().is_ok());
        assert_eq!(drv.rx_buffers(), (8, 0));
        assert!(drv.stats().rx_kicks - kicks <= 3);
        assert_eq!(net.dev.borrow_mut().rx_available(), 8);
        assert!(net.dev.borrow_mut().deliver(&frame));
        assert!(drv.enable_rx_notifications().unwrap(), "a frame is pending");
        drv.disable_rx_notifications().unwrap();
        assert_eq!(drain(&mut drv), std::slice::from_ref(&frame));
        assert!(!drv.enable_rx_notifications().unwrap());
    }
}

#[test]
fn tx_buffers_are_reclaimed_lazily() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions {
        tx_buffers: 4,
        ..NetOptions::default()
    });
    let frame = eth_frame([0xff; 6], 64, 1);
    for _ in 0..4 {
        drv.transmit(64, |b| b.copy_from_slice(&frame)).unwrap();
    }
    assert_eq!(drv.transmit(64, |_| ()), Err(NetDriverError::TxFull));
    drv.flush().unwrap();
    assert_eq!(drv.transmit(64, |_| ()), Err(NetDriverError::TxFull));
    assert_eq!(net.dev.borrow_mut().take_tx().len(), 4);
    // The next transmit reclaims what the device used.
    drv.transmit(64, |b| b.copy_from_slice(&frame)).unwrap();
    assert_eq!(drv.tx_outstanding(), 1);
    let too_big = drv.transmit(1515, |_| ());
    assert_eq!(
        too_big,
        Err(NetDriverError::FrameTooLarge {
            len: 1515,
            max: 1514
        })
    );
}

#[test]
fn checksum_flags() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    // A partial checksum over bytes 14.. stored at 14 + 16: delivered as the device wrote it
    // (the device validated what precedes it; nothing is computed).
    let mut frame = eth_frame(MAC, 80, 5);
    frame[30..32].copy_from_slice(&[0, 0]);
    assert!(net.dev.borrow_mut().deliver_with(&frame, 1, (14, 16)));
    assert_eq!(drv.receive(|f| f.to_vec()).unwrap().unwrap(), frame);
    // DATA_VALID is counted and the frame delivered as it is.
    assert!(net.dev.borrow_mut().deliver_with(&frame, 2, (0, 0)));
    assert_eq!(drv.receive(|f| f.to_vec()).unwrap().unwrap(), frame);
    let stats = drv.stats();
    assert_eq!((stats.rx_needs_csum, stats.rx_data_valid), (1, 1));
    // Transmit with offload: NEEDS_CSUM and the offsets in the header.
    let csum = TxChecksum {
        start: 34,
        offset: 16,
    };
    drv.transmit_with_checksum(80, csum, |b| b.copy_from_slice(&frame))
        .unwrap();
    let bad = TxChecksum {
        start: 70,
        offset: 16,
    };
    assert_eq!(
        drv.transmit_with_checksum(80, bad, |_| ()),
        Err(NetDriverError::ChecksumOffload)
    );
    drv.flush().unwrap();
    let (h, _) = net.dev.borrow_mut().take_tx().pop().unwrap();
    assert_eq!(h, header(1, 34, 16, 0));
    // Without CSUM negotiated, offload is refused.
    let plain = Net::standard();
    let mut drv = plain.driver(NetOptions {
        csum: false,
        ..NetOptions::default()
    });
    assert_eq!(
        drv.transmit_with_checksum(80, csum, |_| ()),
        Err(NetDriverError::ChecksumOffload)
    );
}

#[test]
fn link_and_mac_follow_config_changes_only() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    let other = [0x52, 0x54, 0, 9, 9, 9];
    net.dev.borrow_mut().set_config(other, false, 1500);
    // No configuration interrupt yet: the driver keeps what it read.
    assert_eq!((drv.mac(), drv.link_up()), (MAC, true));
    let change = drv.config_changed().unwrap();
    assert!(change.link_changed && change.mac_changed && !change.link_up);
    assert_eq!((drv.mac(), drv.link_up()), (other, false));
    net.dev.borrow_mut().set_config(other, true, 1500);
    let change = drv.config_changed().unwrap();
    assert!(change.link_up && change.link_changed && !change.mac_changed);
}

#[test]
fn control_commands() {
    for packed in [false, true] {
        control_commands_on(NetOptions {
            packed,
            ..NetOptions::default()
        });
    }
}

/// `VIRTIO_NET_CTRL_MAC_TABLE_SET` (virtio 1.2 §5.1.6.5.2) as the device must read it: the
/// unicast `struct virtio_net_ctrl_mac` (a `le32` count, the addresses), then the multicast one.
fn mac_table_command(unicast: &[[u8; 6]], multicast: &[[u8; 6]]) -> Vec<u8> {
    let mut data = Vec::new();
    for table in [unicast, multicast] {
        data.extend_from_slice(&(table.len() as u32).to_le_bytes());
        data.extend(table.iter().flatten());
    }
    data
}

/// Tables of up to [`MAX_MAC_FILTERS`] addresses in all, however split between unicast and
/// multicast, reach the device whole; a larger one, of any size, is refused before anything
/// is sent, and the queue serves on.
fn mac_tables_up_to_the_limit(net: &Net, drv: &mut NetDrv) {
    let addresses = |n: usize, first: u8| -> Vec<[u8; 6]> {
        (0..n).map(|i| [first, 0, 0, 0, i as u8, 1]).collect()
    };
    let max = MAX_MAC_FILTERS;
    for (uni, multi) in [
        (max, 0),
        (0, max),
        (1, max - 1),
        (max / 2 + 1, max / 2 - 1),
        (3, 2),
    ] {
        let (unicast, multicast) = (addresses(uni, 2), addresses(multi, 0x33));
        drv.set_mac_table(&unicast, &multicast, &mut net.budget())
            .unwrap();
        let sent = net.dev.borrow_mut().ctrl_log.pop().unwrap();
        assert_eq!((sent.class, sent.command), (1, 0));
        assert_eq!(
            sent.data,
            mac_table_command(&unicast, &multicast),
            "{uni} + {multi}"
        );
    }
    for (uni, multi) in [
        (max + 1, 0),
        (0, max + 1),
        (max, 1),
        (2 * max + 1, 0),
        (1000, 3),
    ] {
        let (unicast, multicast) = (addresses(uni, 2), addresses(multi, 0x33));
        let err = drv.set_mac_table(&unicast, &multicast, &mut net.budget());
        assert_eq!(err, Err(NetDriverError::CtrlTooLarge), "{uni} + {multi}");
    }
    assert!(net.dev.borrow().ctrl_log.is_empty());
    drv.set_mac_table(&[], &[], &mut net.budget()).unwrap();
    assert_eq!(net.dev.borrow_mut().ctrl_log.pop().unwrap().data, [0; 8]);
}

fn control_commands_on(options: NetOptions) {
    let net = Net::standard();
    let mut drv = net.driver(options);
    net.dev.borrow_mut().ctrl_log.clear();
    drv.set_promiscuous(true, &mut net.budget()).unwrap();
    drv.set_all_multicast(true, &mut net.budget()).unwrap();
    let uni = [[2, 0, 0, 0, 0, 7]];
    drv.set_mac_table(&uni, &[], &mut net.budget()).unwrap();
    let log = net.dev.borrow().ctrl_log.clone();
    assert_eq!(
        (log[0].class, log[0].command, &log[0].data[..]),
        (0, 0, &[1][..])
    );
    assert_eq!(
        (log[1].class, log[1].command, &log[1].data[..]),
        (0, 1, &[1][..])
    );
    assert_eq!(log[2].data, [1, 0, 0, 0, 2, 0, 0, 0, 0, 7, 0, 0, 0, 0]);
    net.dev.borrow_mut().ctrl_log.clear();
    mac_tables_up_to_the_limit(&net, &mut drv);
    net.dev.borrow_mut().ctrl_ack = 1;
    let err = drv.set_promiscuous(false, &mut net.budget());
    assert_eq!(err, Err(NetDriverError::CtrlRejected));
    net.dev.borrow_mut().ctrl_ack = 7;
    let err = drv.set_promiscuous(false, &mut net.budget());
    assert_eq!(err, Err(NetDriverError::CtrlBadAck(7)));
    // OK in the ack byte, but a used length of 0 says the device wrote nothing (§2.7.8): the
    // command is not confirmed, whatever the byte holds.
    net.dev.borrow_mut().ctrl_ack = 0;
    net.dev.borrow_mut().ctrl_used_len = 0;
    let err = drv.set_promiscuous(false, &mut net.budget());
    assert!(matches!(err, Err(NetDriverError::CtrlBadAck(_))), "{err:?}");
    net.dev.borrow_mut().ctrl_used_len = 1;
    assert_eq!(drv.set_promiscuous(false, &mut net.budget()), Ok(()));
    // Without the control queue.
    let plain = Net::standard();
    let mut drv = plain.driver(NetOptions {
        ctrl_vq: false,
        ..options
    });
    let err = drv.set_promiscuous(false, &mut plain.budget());
    assert_eq!(err, Err(NetDriverError::NoControlQueue));
}
