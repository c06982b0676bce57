//! virtio-blk device lifetime against the simulated device: a dropped driver, or one whose
//! bring-up fails once the device has its queues, resets the device before its rings and the
//! buffers of requests in flight go back to the allocator, and leaks them when the reset is not
//! confirmed.

mod support;

use support::*;
use vireo_drivers::blk::{BlkDriver, BlkDriverError, BlkOptions, Request};
use vireo_virtio::transport::TransportError;

fn options(packed: bool) -> BlkOptions {
    BlkOptions {
        packed,
        drop_reset_polls: 1_000,
        ..BlkOptions::default()
    }
}

/// Two request queues (MQ), so a bring-up can fail with one queue already handed over.
fn two_queues(packed: bool) -> (Sim, BlkOptions) {
    let config = BlkConfig {
        num_queues: 2,
        ..BlkConfig::default()
    };
    let sim = Sim::new(ALL_BLK | MQ | ring_features(), &config);
    let options = BlkOptions {
        multi_queue: true,
        queues: 2,
        ..options(packed)
    };
    (sim, options)
}

fn try_driver(sim: &Sim, options: BlkOptions) -> Result<Driver, BlkDriverError> {
    BlkDriver::new(
        sim.transport(),
        sim.dma.clone(),
        options,
        &[Some(1), Some(2)],
        &mut sim.budget(),
    )
}

/// Submits a read, a write and a get-id (the kernel's probe reads the serial right after
/// bring-up); the device takes them all and finishes only the first.
fn requests_in_flight(sim: &mut Sim, drv: &mut Driver) {
    let dma = sim.dma.clone();
    let buffers = vec![buf(&dma, 512, 0), buf(&dma, 1024, 0)];
    drv.submit(0, Request::Read { sector: 0, buffers }).unwrap();
    let buffers = vec![pattern(&dma, 512, 1)];
    drv.submit(0, Request::Write { sector: 8, buffers })
        .unwrap();
    drv.submit(0, Request::GetId).unwrap();
    let chains = sim.pop(0);
    assert_eq!(chains.len(), 3);
    sim.complete(0, &chains[0]);
    assert_eq!(drv.in_flight(0), 3);
}

/// The resets the driver asked for since `since` (an index into the reset log).
fn resets_since(sim: &Sim, since: usize) -> Vec<ResetWrite> {
    sim.reset_writes()[since..].to_vec()
}

#[test]
fn drop_resets_the_device_before_freeing_requests_in_flight() {
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let baseline = sim.dma.live();
        let mut drv = sim.driver(options(packed));
        requests_in_flight(&mut sim, &mut drv);
        let held = sim.dma.live();
        assert!(held > baseline);
        let (freed_before, log) = (freed(&sim.dma), sim.reset_writes().len());
        drop(drv);
        let resets = resets_since(&sim, log);
        assert_eq!(
            resets.first(),
            Some(&ResetWrite {
                done: true,
                freed_before,
                live: held,
            }),
            "the device was reset before any of its memory was freed"
        );
        assert_eq!(sim.state.lock().unwrap().status, 0);
        assert_eq!(
            sim.dma.live(),
            baseline,
            "then rings, headers and request buffers were all freed"
        );
    }
}

#[test]
fn drop_leaks_everything_when_the_reset_is_not_confirmed() {
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options(packed));
        requests_in_flight(&mut sim, &mut drv);
        let (held, freed_before) = (sim.dma.live(), freed(&sim.dma));
        let log = sim.reset_writes().len();
        sim.state.lock().unwrap().reset_stuck = true;
        drop(drv);
        let resets = resets_since(&sim, log);
        assert_eq!(resets.len(), 1, "a reset was asked for");
        assert!(!resets[0].done);
        assert_eq!(
            sim.dma.live(),
            held,
            "rings and buffers stay with the device"
        );
        assert_eq!(freed(&sim.dma), freed_before, "nothing was freed");
    }
}

#[test]
fn unconfirmed_recovery_keeps_the_requests_and_a_later_drop_leaks_them() {
    let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
    let mut drv = sim.driver(options(false));
    requests_in_flight(&mut sim, &mut drv);
    let (held, freed_before) = (sim.dma.live(), freed(&sim.dma));
    sim.state.lock().unwrap().reset_stuck = true;
    let mut done = Vec::new();
    let err = drv.reset_and_reinit(&mut sim.budget(), &[], &mut done);
    assert_eq!(err, Err(BlkDriverError::Transport(TransportError::Timeout)));
    assert!(done.is_empty());
    assert_eq!(drv.in_flight(0), 3);
    assert_eq!(freed(&sim.dma), freed_before);
    drop(drv);
    assert_eq!(sim.dma.live(), held);
    assert_eq!(freed(&sim.dma), freed_before, "nothing was freed");
}

#[test]
fn bring_up_failing_at_driver_ok_resets_before_freeing_the_queues() {
    for packed in [false, true] {
        let (sim, options) = two_queues(packed);
        let (baseline, freed_before) = (sim.dma.live(), freed(&sim.dma));
        sim.state.lock().unwrap().needs_reset_on_driver_ok = true;
        let err = try_driver(&sim, options).unwrap_err();
        assert_eq!(
            err,
            BlkDriverError::Transport(TransportError::DeviceNeedsReset)
        );
        // Device::init resets first (nothing held yet); the second reset comes after the
        // queues were handed over and DRIVER_OK set, and before they were freed.
        let resets = sim.reset_writes();
        assert_eq!(resets.len(), 2, "{resets:?}");
        assert!(resets[1].done);
        assert_eq!(resets[1].freed_before, freed_before);
        assert!(resets[1].live > baseline, "the queues were still allocated");
        assert_eq!(sim.dma.live(), baseline, "freed after the reset");
        let status = sim.state.lock().unwrap().status;
        assert_eq!(status, 0x80, "reset, then FAILED");
    }
}

#[test]
fn bring_up_failing_at_a_later_queue_resets_before_freeing_the_first() {
    let (sim, options) = two_queues(false);
    let baseline = sim.dma.live();
    sim.state.lock().unwrap().refuse_queue = Some(1);
    let err = try_driver(&sim, options).unwrap_err();
    assert_eq!(
        err,
        BlkDriverError::Transport(TransportError::QueueUnavailable)
    );
    let resets = sim.reset_writes();
    assert_eq!(resets.len(), 2, "{resets:?}");
    assert!(resets[1].done);
    // Queue 1's rings never reached the device and went at once; queue 0's waited.
    assert!(resets[1].live > baseline, "queue 0 was still allocated");
    assert_eq!(sim.dma.live(), baseline);
    assert_eq!(sim.state.lock().unwrap().queues[0].map(|q| q.size), None);
}

#[test]
fn bring_up_that_cannot_reset_leaks_the_queues() {
    let (sim, options) = two_queues(true);
    let freed_before = freed(&sim.dma);
    {
        let mut s = sim.state.lock().unwrap();
        s.needs_reset_on_driver_ok = true;
        s.stick_reset_on_setup = true;
    }
    let err = try_driver(&sim, options).unwrap_err();
    assert_eq!(
        err,
        BlkDriverError::Transport(TransportError::DeviceNeedsReset)
    );
    // Device::init's reset, then the teardown's: within the budget, then with status reads.
    let resets = sim.reset_writes();
    assert!(resets.len() >= 2, "{resets:?}");
    assert!(resets[1..].iter().all(|r| !r.done));
    assert_eq!(freed(&sim.dma), freed_before, "nothing was freed");
}

#[test]
fn probe_failing_after_bring_up_resets_before_freeing() {
    // The kernel's probe: new, then set_config_vector (refused here), and the driver dropped.
    let (sim, options) = two_queues(false);
    let baseline = sim.dma.live();
    sim.state.lock().unwrap().refuse_config_vector = true;
    let mut drv = try_driver(&sim, options).unwrap();
    let (held, freed_before) = (sim.dma.live(), freed(&sim.dma));
    let log = sim.reset_writes().len();
    assert_eq!(
        drv.set_config_vector(Some(0)),
        Err(BlkDriverError::Transport(TransportError::VectorRejected))
    );
    drop(drv);
    let resets = resets_since(&sim, log);
    let first = ResetWrite {
        done: true,
        freed_before,
        live: held,
    };
    assert_eq!(resets.first(), Some(&first));
    assert_eq!(sim.dma.live(), baseline);
}

#[test]
fn failed_reinit_resets_before_freeing_the_new_queues() {
    let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
    let mut drv = sim.driver(options(false));
    requests_in_flight(&mut sim, &mut drv);
    let log = sim.reset_writes().len();
    sim.state.lock().unwrap().needs_reset_on_driver_ok = true;
    let mut done = Vec::new();
    let err = drv.reset_and_reinit(&mut sim.budget(), &[], &mut done);
    assert_eq!(
        err,
        Err(BlkDriverError::Transport(TransportError::DeviceNeedsReset))
    );
    assert_eq!(done.len(), 3, "the requests in flight came back");
    // The recovery's reset, then the reset of the failed bring-up, with the new queues still
    // allocated; they were freed after it.
    let resets = resets_since(&sim, log);
    assert_eq!(resets.len(), 2, "{resets:?}");
    assert!(resets.iter().all(|r| r.done));
    assert!(resets[1].live > sim.dma.live());
    assert_eq!(drv.queue_count(), 0);
    assert_eq!(drv.poll(0).unwrap_err(), BlkDriverError::NotReady);
    sim.state.lock().unwrap().needs_reset_on_driver_ok = false;
    drv.reset_and_reinit(&mut sim.budget(), &[], &mut done)
        .unwrap();
    assert_eq!(drv.queue_count(), 1);
}
