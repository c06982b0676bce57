//! virtio-net recovery and device lifetime: reset with buffers posted and frames in flight,
//! memory freed only after a confirmed reset (on drop, on failed bring-up), leaked otherwise.

mod support;

use support::net::*;
use vireo_drivers::net::{NetDriverError, NetOptions};
use vireo_virtio::{transport::TransportError, virtio_spec::DeviceStatus};

fn small(packed: bool) -> NetOptions {
    NetOptions {
        packed,
        queue_size: 64,
        rx_buffers: 16,
        tx_buffers: 8,
        drop_reset_polls: 1_000,
        ..NetOptions::default()
    }
}

#[test]
fn reset_and_reinit_reclaims_every_buffer() {
    for packed in [false, true] {
        let net = Net::standard();
        let mut drv = net.driver(small(packed));
        let live = net.dma.live();
        // Frames in flight both ways, one received frame not yet taken, a batch not flushed.
        let frame = eth_frame(MAC, 100, 1);
        assert!(net.dev.borrow_mut().deliver(&frame));
        for _ in 0..3 {
            drv.transmit(100, |b| b.copy_from_slice(&frame)).unwrap();
        }
        drv.flush().unwrap();
        drv.transmit(100, |b| b.copy_from_slice(&frame)).unwrap();
        assert!(!drv.needs_reset());
        net.set_hostile(|s| s.needs_reset = true);
        assert!(drv.needs_reset());
        assert_eq!(drv.config_changed(), Err(NetDriverError::NeedsReset));

        // A reset that never completes keeps everything (the device may still use it).
        net.set_hostile(|s| s.reset_stuck = true);
        let err = drv.reset_and_reinit(&mut net.budget(), &[]);
        assert_eq!(err, Err(NetDriverError::Transport(TransportError::Timeout)));
        assert_eq!(net.dma.live(), live);
        assert!(drv.is_ready());

        net.set_hostile(|s| s.reset_stuck = false);
        let frames_before = drv.stats().rx_frames;
        drv.reset_and_reinit(&mut net.budget(), &[]).unwrap();
        // Same memory footprint: the old rings and buffers went back before new ones came.
        assert_eq!(net.dma.live(), live);
        assert_eq!(drv.rx_buffers(), (16, 0));
        assert_eq!(drv.tx_outstanding(), 0);
        assert_eq!(drv.stats().rx_frames, frames_before, "counters kept");
        assert!(!drv.needs_reset());
        // The device is live again: filters set again, frames flow.
        assert_eq!(net.dev.borrow().ctrl_log.len(), 6);
        assert!(net.dev.borrow_mut().deliver(&frame));
        assert_eq!(drain(&mut drv), std::slice::from_ref(&frame));
        drv.transmit(100, |b| b.copy_from_slice(&frame)).unwrap();
        drv.flush().unwrap();
        assert_eq!(net.dev.borrow_mut().take_tx().len(), 1);
    }
}

#[test]
fn failed_reinit_leaves_the_driver_not_ready_until_a_later_success() {
    let net = Net::standard();
    let mut drv = net.driver(small(false));
    let live = net.dma.live();
    net.dev.borrow_mut().ctrl_ack = 1;
    let err = drv.reset_and_reinit(&mut net.budget(), &[]);
    assert_eq!(err, Err(NetDriverError::CtrlRejected));
    assert!(!drv.is_ready());
    assert_eq!(drv.receive(|_| ()), Err(NetDriverError::NotReady));
    assert_eq!(drv.transmit(10, |_| ()), Err(NetDriverError::NotReady));
    assert!(net.dev.borrow().state().status & DeviceStatus::FAILED.bits() != 0);
    net.dev.borrow_mut().ctrl_ack = 0;
    drv.reset_and_reinit(&mut net.budget(), &[]).unwrap();
    assert!(drv.is_ready());
    assert_eq!(net.dma.live(), live);
}

#[test]
fn drop_resets_the_device_before_freeing() {
    for packed in [false, true] {
        let net = Net::standard();
        let before = net.dma.live();
        let drv = net.driver(small(packed));
        assert!(net.dma.live() > before);
        let resets = net.dev.borrow().state().resets;
        drop(drv);
        assert_eq!(net.dev.borrow().state().resets, resets + 1);
        assert_eq!(net.dev.borrow().state().status, 0);
        assert_eq!(net.dma.live(), before);
    }
}

#[test]
fn drop_leaks_when_the_reset_is_not_confirmed() {
    let net = Net::standard();
    let before = net.dma.live();
    let drv = net.driver(small(false));
    let held = net.dma.live();
    net.set_hostile(|s| s.reset_stuck = true);
    drop(drv);
    assert_eq!(
        net.dma.live(),
        held,
        "rings and buffers stay with the device"
    );
    assert!(held > before);
}

#[test]
fn failed_bring_up_after_driver_ok_resets_before_freeing() {
    let net = Net::standard();
    let before = net.dma.live();
    net.dev.borrow_mut().ctrl_ack = 1;
    let err = net.try_driver(small(false)).unwrap_err();
    assert_eq!(err, NetDriverError::CtrlRejected);
    assert_eq!(net.dma.live(), before);
    let status = net.dev.borrow().state().status;
    assert_eq!(status, DeviceStatus::FAILED.bits(), "reset, then FAILED");
    assert!(net.dev.borrow().state().resets >= 2);

    // A control queue that never answers: a timeout, then a confirmed reset frees.
    let net = Net::standard();
    let before = net.dma.live();
    net.dev.borrow_mut().ctrl_silent = true;
    let err = net.try_driver(small(false)).unwrap_err();
    assert_eq!(err, NetDriverError::Transport(TransportError::Timeout));
    assert_eq!(net.dma.live(), before, "reset confirmed: freed");

    // The same, and the device stops finishing resets once it is live: leaked.
    let net = Net::standard();
    let before = net.dma.live();
    net.dev.borrow_mut().ctrl_silent = true;
    net.dev.borrow_mut().stick_reset_on_ctrl = true;
    let err = net.try_driver(small(false)).unwrap_err();
    assert_eq!(err, NetDriverError::Transport(TransportError::Timeout));
    assert!(net.dma.live() > before, "reset not confirmed: leaked");
}

#[test]
fn unanswered_command_keeps_the_control_queue_busy_until_reset() {
    let net = Net::standard();
    let mut drv = net.driver(small(true));
    net.dev.borrow_mut().ctrl_silent = true;
    let err = drv.set_promiscuous(true, &mut net.budget());
    assert_eq!(err, Err(NetDriverError::Transport(TransportError::Timeout)));
    net.dev.borrow_mut().ctrl_silent = false;
    let err = drv.set_promiscuous(true, &mut net.budget());
    assert_eq!(err, Err(NetDriverError::CtrlBusy));
    drv.reset_and_reinit(&mut net.budget(), &[]).unwrap();
    drv.set_promiscuous(true, &mut net.budget()).unwrap();
}
