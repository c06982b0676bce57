//! virtio-net against the simulated device: bring-up, receive and transmit on both ring
//! layouts, merged rx buffers, refill under pressure, checksum flags, link changes.

mod support;

use support::{check_interrupt_acks, net::*};
use vireo_drivers::net::{
    HEADER_LEN, MAX_MAC_FILTERS, NetDriverError, NetOptions, TxChecksum, default_multicast,
};
use vireo_virtio::{
    transport::TransportError,
    virtio_spec::{F, net},
};

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

/// The queues as the device sees them (virtio 1.2 §5.1.2): receiveq1 at index 0 and
/// transmitq1 at 1, of the size asked for, and with `VIRTIO_NET_F_CTRL_VQ` the control queue
/// at 2 × `max_virtqueue_pairs` = 2 (`VIRTIO_NET_F_MQ` is not negotiated: one pair) with its
/// 8 descriptors; each with the MSI-X vector given for its index, nothing beyond.
#[test]
fn bring_up_lays_out_one_queue_pair_then_the_control_queue() {
    for packed in [false, true] {
        for ctrl_vq in [true, false] {
            let net = Net::standard();
            let _drv = net.driver(NetOptions {
                packed,
                ctrl_vq,
                queue_size: 32,
                ..NetOptions::default()
            });
            let dev = net.dev.borrow();
            let layout: Vec<_> = dev
                .state()
                .queues
                .iter()
                .map(|q| q.map(|q| (q.size, q.vector)))
                .collect();
            let ctrl = ctrl_vq.then_some((8, Some(3)));
            assert_eq!(
                layout,
                [Some((32, Some(1))), Some((32, Some(2))), ctrl, None]
            );
        }
    }
}

/// A device with a control queue but without `VIRTIO_NET_F_CTRL_RX`: the queue is set up, but
/// no receive-filter command goes to it (virtio 1.2 §5.1.6.5.1 and §5.1.6.5.2 need
/// `CTRL_RX`), at bring-up or when asked for; the calls say there is no filtering.
#[test]
fn without_ctrl_rx_no_filter_command_reaches_the_control_queue() {
    let net = Net::new(
        all_net() - F::from(net::F::CTRL_RX),
        net_config(MAC, true, 1500),
    );
    let mut drv = net.driver(NetOptions::default());
    assert!(drv.features().contains(net::F::CTRL_VQ.into()));
    assert!(net.dev.borrow().state().queues[2].is_some());
    let budget = &mut net.budget();
    assert_eq!(
        [
            drv.set_promiscuous(true, budget),
            drv.set_all_multicast(true, budget),
            drv.set_mac_table(&[], &[], budget),
        ],
        [Err(NetDriverError::NoControlQueue); 3]
    );
    assert!(net.dev.borrow().ctrl_log.is_empty());
}

/// Configuration changes are signalled on the MSI-X entry asked for (`config_msix_vector`,
/// virtio 1.2 §4.1.4.3), or on none; a vector the device refuses is reported, and a device
/// reset forgets the vector (set it again after `reset_and_reinit`).
#[test]
fn config_change_notifications_go_to_the_vector_asked_for() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    let routed = || net.dev.borrow().state().config_vector;
    assert_eq!(routed(), None);
    drv.set_config_vector(Some(4)).unwrap();
    assert_eq!(routed(), Some(4));
    drv.reset_and_reinit(&mut net.budget(), &[]).unwrap();
    assert_eq!(routed(), None);
    drv.set_config_vector(Some(5)).unwrap();
    drv.set_config_vector(None).unwrap();
    assert_eq!(routed(), None);
    net.set_hostile(|s| s.refuse_config_vector = true);
    assert_eq!(
        drv.set_config_vector(Some(6)),
        Err(NetDriverError::Transport(TransportError::VectorRejected))
    );
    assert_eq!(routed(), None);
}

#[test]
fn ack_interrupt_reports_and_clears_what_the_device_raised() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    let state = net.dev.borrow().sim.state.clone();
    check_interrupt_acks(&state, || drv.ack_interrupt());
}

/// Receive interrupts as the device sees them (virtio 1.2 §2.7.10, §2.8.10), on both ring
/// layouts with and without `VIRTIO_F_EVENT_IDX`: a frame delivered after
/// `disable_rx_notifications` asks for none, one after `enable_rx_notifications` does.
#[test]
fn rx_notifications_are_suppressed_as_the_device_sees_it() {
    for packed in [false, true] {
        for event_idx in [false, true] {
            let net = Net::standard();
            let mut drv = net.driver(NetOptions {
                packed,
                event_idx,
                ..net_matrix()[0]
            });
            let frame = eth_frame(MAC, 100, 3);
            let interrupts = |drv: &mut NetDrv| {
                let mut dev = net.dev.borrow_mut();
                assert!(dev.deliver(&frame));
                let wanted = dev.sim.wants_interrupt(0);
                drop(dev);
                assert_eq!(drain(drv), std::slice::from_ref(&frame));
                wanted
            };
            let case = format!("packed {packed}, event_idx {event_idx}");
            assert!(!drv.enable_rx_notifications().unwrap());
            assert!(interrupts(&mut drv), "{case}: enabled");
            drv.disable_rx_notifications().unwrap();
            assert!(!interrupts(&mut drv), "{case}: disabled");
            assert!(!interrupts(&mut drv), "{case}: still disabled");
            assert!(!drv.enable_rx_notifications().unwrap());
            assert!(interrupts(&mut drv), "{case}: enabled again");
        }
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

/// Receive buffers go back to the device in batches (`NetOptions::refill_batch`, one kick
/// each): a spare buffer waits until a batch has gathered while at least a batch stays posted,
/// and the spares are all posted as soon as fewer are.
#[test]
fn rx_buffers_are_posted_again_a_batch_at_a_time() {
    for refill_batch in 1..=8 {
        let net = Net::standard();
        let mut drv = net.driver(NetOptions {
            rx_buffers: 8,
            refill_batch,
            ..net_matrix()[0]
        });
        let batch = usize::from(refill_batch);
        let frame = eth_frame(MAC, 100, 1);
        let (mut posted, mut spare) = (8, 0);
        for step in 0..24 {
            assert!(net.dev.borrow_mut().deliver(&frame));
            // Each call posts the spares first when it is time…
            if spare > 0 && (posted < batch || spare >= batch) {
                (posted, spare) = (posted + spare, 0);
            }
            assert!(drv.receive(|_| ()).unwrap().is_some());
            // …then takes a frame, whose buffer is spare again.
            (posted, spare) = (posted - 1, spare + 1);
            let case = format!("batch {batch}, frame {step}");
            assert_eq!(drv.rx_buffers(), (posted, spare), "{case}");
        }
    }
}

/// The kick counters are the notifications the device received, queue by queue (with
/// `VIRTIO_F_EVENT_IDX` the device asks for fewer).
#[test]
fn kicks_count_the_notifications_the_device_received() {
    for options in net_matrix() {
        for event_idx in [false, true] {
            let net = Net::standard();
            let mut drv = net.driver(NetOptions {
                event_idx,
                ..options
            });
            let frame = eth_frame(MAC, 100, 1);
            for _ in 0..20 {
                assert!(net.dev.borrow_mut().deliver(&frame));
                assert_eq!(drain(&mut drv).len(), 1);
                drv.transmit(100, |b| b.copy_from_slice(&frame)).unwrap();
                drv.flush().unwrap();
                assert_eq!(net.dev.borrow_mut().take_tx().len(), 1);
            }
            let received = |q| {
                let dev = net.dev.borrow();
                dev.state()
                    .notifications
                    .iter()
                    .filter(|&&n| n == q)
                    .count() as u64
            };
            let s = drv.stats();
            assert!(s.rx_kicks >= 1 && s.tx_kicks >= 1, "{s:?}");
            assert_eq!((s.rx_kicks, s.tx_kicks), (received(0), received(1)));
        }
    }
}

/// What smoltcp is told of frame sizes and of the receive pool: the MTU in use as a frame
/// length (the device's, with `VIRTIO_NET_F_MTU`), and a burst of exactly as many full-sized
/// frames as the device can deliver back to back into the posted buffers.
#[test]
fn smoltcp_is_told_the_frame_size_and_the_burst_the_rx_pool_takes() {
    for (mtu, mrg_rxbuf, mrg_buffer_len) in [
        (1500, false, 2048),
        (1500, true, 2048),
        (1500, true, 512),
        (9000, true, 2048),
        (576, true, 256),
    ] {
        let net = Net::new(all_net(), net_config(MAC, true, mtu));
        let drv = net.driver(NetOptions {
            mrg_rxbuf,
            mrg_buffer_len,
            tso: false,
            queue_size: 64,
            rx_buffers: 64,
            ..NetOptions::default()
        });
        let caps = drv.capabilities();
        let frame_len = usize::from(mtu) + 14;
        assert_eq!(caps.max_transmission_unit, frame_len);
        let mut burst = 0;
        while net
            .dev
            .borrow_mut()
            .deliver(&eth_frame(MAC, frame_len, burst as u8))
        {
            burst += 1;
        }
        let case = format!("MTU {mtu}, merged buffers {mrg_rxbuf} of {mrg_buffer_len}");
        assert_eq!(caps.max_burst_size, Some(burst), "{case}");
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

/// `transmit_with_checksum` takes a checksum field anywhere inside the frame, up to its last
/// two bytes, and gives the device exactly the offsets asked for (virtio 1.2 §5.1.6.2); a
/// field reaching one byte past the frame is refused, and nothing of it sent.
#[test]
fn a_tx_checksum_field_may_lie_anywhere_inside_the_frame() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    let frame = eth_frame([0xff; 6], 60, 4);
    for start in 0..=58 {
        let last = TxChecksum {
            start,
            offset: 58 - start,
        };
        drv.transmit_with_checksum(60, last, |b| b.copy_from_slice(&frame))
            .unwrap();
        let past = TxChecksum {
            start,
            offset: 59 - start,
        };
        assert_eq!(
            drv.transmit_with_checksum(60, past, |_| ()),
            Err(NetDriverError::ChecksumOffload)
        );
        drv.flush().unwrap();
        let sent = net.dev.borrow_mut().take_tx();
        assert_eq!(sent, [(header(1, start, 58 - start, 0), frame.clone())]);
    }
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
