//! A lost transmit notification, as seen under QEMU with `VIRTIO_F_EVENT_IDX`: the device
//! misses one tx notification, and since with `EVENT_IDX` it asked to be notified only when
//! the position that notification covered is made available, the driver sends no other; the
//! tx ring fills and stays full. The kernel stack's `watch_tx` calls
//! [`NetDriver::renotify`](vireo_drivers::net::NetDriver::renotify) when the device holds
//! frames for two ticks without giving any back; these tests show that this alone recovers:
//! the device sends every frame, exactly once, in order.
//!
//! The simulated device here runs the tx queue only when notified, and asks for the next
//! notification as QEMU does (`serve_tx_notified`).

mod support;

use support::net::*;
use vireo_drivers::net::{NetDriverError, NetOptions};

/// Transmit buffers: a full ring is this many frames in flight.
const TX_BUFFERS: usize = 8;

fn options(packed: bool, event_idx: bool) -> NetOptions {
    NetOptions {
        packed,
        event_idx,
        queue_size: 64,
        rx_buffers: 16,
        tx_buffers: TX_BUFFERS as u16,
        ..NetOptions::default()
    }
}

/// The frames the tests send, each recognisable.
fn frames(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| eth_frame([0xff; 6], 60 + i, i as u8))
        .collect()
}

/// Writes `frames` into transmit buffers and flushes them; returns whether the driver notified.
fn send(drv: &mut NetDrv, frames: &[Vec<u8>]) -> bool {
    for f in frames {
        drv.transmit(f.len(), |b| b.copy_from_slice(f)).unwrap();
    }
    drv.flush().unwrap()
}

/// What the device sent, once it ran the tx queue (if it was notified).
fn serve(net: &Net) -> Vec<Vec<u8>> {
    let sent = net.dev.borrow_mut().serve_tx_notified();
    sent.into_iter().map(|(_, frame)| frame).collect()
}

/// Timer ticks with the ring full and the device waiting for a notification that was lost:
/// nothing moves, whatever the driver tries short of re-notifying.
fn assert_stalled(net: &Net, drv: &mut NetDrv) {
    for _ in 0..10 {
        assert_eq!(serve(net), Vec::<Vec<u8>>::new(), "the device sent frames");
        assert_eq!(drv.reclaim_tx(), Ok(0));
        assert_eq!(drv.tx_outstanding(), TX_BUFFERS);
        assert_eq!(drv.transmit(60, |_| ()), Err(NetDriverError::TxFull));
        assert_eq!(drv.flush(), Ok(false), "nothing batched, nothing notified");
    }
}

/// The kernel stack's transmit watchdog (`Stack::watch_tx`), one call per timer tick, with the
/// device running between ticks: re-notifies after two ticks with frames held and none given
/// back. Returns the ticks it took until the driver holds no frame (with a lost notification:
/// re-notified at the second, reclaimed at the third).
fn watch_until_idle(net: &Net, drv: &mut NetDrv, sent: &mut Vec<Vec<u8>>) -> usize {
    let mut ticks_without_progress = 0;
    for tick in 1..=10 {
        let reclaimed = drv.reclaim_tx().unwrap();
        if reclaimed > 0 || drv.tx_outstanding() == 0 {
            ticks_without_progress = 0;
        } else {
            ticks_without_progress += 1;
            if ticks_without_progress == 2 {
                drv.renotify().unwrap();
                ticks_without_progress = 0;
            }
        }
        sent.extend(serve(net));
        if drv.tx_outstanding() == 0 {
            return tick;
        }
    }
    panic!("the ring is still full after 10 ticks");
}

#[test]
fn renotify_recovers_a_tx_notification_lost_with_event_idx() {
    for packed in [false, true] {
        let net = Net::standard();
        let mut drv = net.driver(options(packed, true));
        let frames = frames(40);
        let mut sent = Vec::new();
        // Frames flow: each flush notifies, the device sends and asks for the next notification.
        assert!(send(&mut drv, &frames[0..3]));
        sent.extend(serve(&net));
        assert_eq!(drv.reclaim_tx(), Ok(3));

        // The device loses the next notification: the driver notified, the device never knew.
        net.set_hostile(|s| s.lose_next_notification.push(1));
        assert!(send(&mut drv, &frames[3..5]), "the driver notified");
        assert_eq!(net.dev.borrow().state().lost_notifications, [1]);
        assert_eq!(serve(&net), Vec::<Vec<u8>>::new());
        // EVENT_IDX: the device asked for a notification at the position the lost one covered,
        // so later frames raise none. The ring fills.
        assert!(
            !send(&mut drv, &frames[5..3 + TX_BUFFERS]),
            "no notification"
        );
        assert_stalled(&net, &mut drv);

        // The watchdog's re-notification: the device sends all it held.
        assert_eq!(watch_until_idle(&net, &mut drv, &mut sent), 3);
        assert_eq!(sent, frames[..3 + TX_BUFFERS]);
        // And frames flow again, notified as usual.
        for batch in frames[3 + TX_BUFFERS..].chunks(4) {
            assert!(send(&mut drv, batch));
            sent.extend(serve(&net));
            assert_eq!(drv.reclaim_tx(), Ok(batch.len()));
        }
        assert_eq!(sent, frames, "every frame once, in order");
        assert_eq!(drv.tx_outstanding(), 0);
    }
}

#[test]
fn renotify_recovers_a_lost_notification_on_a_full_ring() {
    for packed in [false, true] {
        for event_idx in [false, true] {
            let net = Net::standard();
            let mut drv = net.driver(options(packed, event_idx));
            let frames = frames(2 * TX_BUFFERS);
            let mut sent = Vec::new();
            // The notification of the batch that fills the ring is lost: no room, no later flush.
            net.set_hostile(|s| s.lose_next_notification.push(1));
            assert!(send(&mut drv, &frames[..TX_BUFFERS]));
            assert_eq!(net.dev.borrow().state().lost_notifications, [1]);
            assert_stalled(&net, &mut drv);
            assert_eq!(watch_until_idle(&net, &mut drv, &mut sent), 3);
            assert!(send(&mut drv, &frames[TX_BUFFERS..]));
            sent.extend(serve(&net));
            assert_eq!(sent, frames, "every frame once, in order");
        }
    }
}

#[test]
fn renotify_leaves_an_idle_tx_queue_alone() {
    let net = Net::standard();
    let mut drv = net.driver(options(false, true));
    let before = net.dev.borrow().state().notifications.len();
    drv.renotify().unwrap();
    let state = net.dev.borrow().state().notifications[before..].to_vec();
    assert_eq!(state, [0], "rx only: no tx frame is held");
    assert_eq!(serve(&net), Vec::<Vec<u8>>::new());
}
