//! Notifications in both directions (virtio 1.2 §2.7.10, §2.8.10): `kicks()` counts exactly the
//! notifications the device received from submissions, `renotify` sends one more without
//! counting it, and `disable_notifications` / `enable_notifications` decide whether the device
//! may interrupt the driver.

mod support;

use std::collections::VecDeque;

use support::*;
use vireo_drivers::blk::{BlkOptions, Request};

fn notifications(sim: &Sim) -> usize {
    sim.state.lock().unwrap().notifications.len()
}

#[test]
fn kicks_counts_the_notifications_the_device_received() {
    for options in matrix() {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options);
        assert_eq!(drv.kicks(), 0);
        for round in 0..5 {
            drv.submit(0, Request::Flush).unwrap();
            if round % 2 == 0 {
                sim.serve(0);
                while drv.poll(0).unwrap().is_some() {}
            }
        }
        let mut batch: VecDeque<_> = (0..3).map(|_| Request::Flush).collect();
        let mut ids = Vec::new();
        drv.submit_batch(0, &mut batch, &mut ids).unwrap();
        assert_eq!(ids.len(), 3);
        let kicks = drv.kicks();
        assert_eq!(kicks, notifications(&sim) as u64, "{options:?}");
        if !options.event_idx {
            // Nothing suppresses them: one per submit, one per batch.
            assert_eq!(kicks, 6, "{options:?}");
        }
        assert!(kicks > 0, "{options:?}");
        // A forced notification reaches the device but is not a submission's kick.
        drv.renotify(0).unwrap();
        assert_eq!(notifications(&sim), kicks as usize + 1, "{options:?}");
        assert_eq!(drv.kicks(), kicks);
    }
}

#[test]
fn disabled_notifications_ask_the_device_not_to_interrupt() {
    for options in matrix() {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options);
        let complete_one = |sim: &mut Sim, drv: &mut Driver| {
            drv.submit(0, Request::Flush).unwrap();
            assert_eq!(sim.serve(0), 1);
            let wants = sim.wants_interrupt(0);
            assert!(drv.poll(0).unwrap().is_some());
            wants
        };
        assert!(!drv.enable_notifications(0).unwrap(), "nothing pending");
        assert!(complete_one(&mut sim, &mut drv), "{options:?}: enabled");
        drv.disable_notifications(0).unwrap();
        assert!(!complete_one(&mut sim, &mut drv), "{options:?}: disabled");
        assert!(!drv.enable_notifications(0).unwrap(), "nothing pending");
        assert!(
            complete_one(&mut sim, &mut drv),
            "{options:?}: enabled again"
        );
    }
}

#[test]
fn ack_interrupt_reports_and_clears_what_the_device_raised() {
    let sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    check_interrupt_acks(&sim.state, || drv.ack_interrupt());
}
