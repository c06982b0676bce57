//! virtio-blk against the simulated device: Recovery and configuration: reset with requests in flight, failed re-initialisation, unusable configuration values.

mod support;

use support::*;
use vireo_drivers::blk::{BlkDriver, BlkDriverError, BlkOptions, Output, Request, RequestKind};
use vireo_virtio::virtio_spec::F;

#[test]
fn reset_and_reinit_completes_in_flight_requests() {
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(BlkOptions {
            packed,
            ..BlkOptions::default()
        });
        let dma = sim.dma.clone();
        let mut ids = Vec::new();
        for i in 0..3 {
            let buffers = vec![buf(&dma, 512, 0), buf(&dma, 1024, 0)];
            ids.push(
                drv.submit(
                    0,
                    Request::Read {
                        sector: i * 4,
                        buffers,
                    },
                )
                .unwrap(),
            );
        }
        ids.push(drv.submit(0, Request::Flush).unwrap());
        // The device takes all four, finishes the first (not yet polled), then fails.
        let chains = sim.pop(0);
        assert_eq!(chains.len(), 4);
        sim.complete(0, &chains[0]);
        sim.state.lock().unwrap().needs_reset = true;
        assert!(drv.needs_reset());
        assert_eq!(drv.config_changed(), Err(BlkDriverError::NeedsReset));

        // A device that never finishes its reset keeps the buffers (it may still use them).
        sim.state.lock().unwrap().reset_stuck = true;
        let mut done = Vec::new();
        let err = drv.reset_and_reinit(&mut sim.budget(), &[Some(7)], &mut done);
        assert!(matches!(err, Err(BlkDriverError::Transport(_))));
        assert!(done.is_empty());
        assert_eq!(drv.in_flight(0), 4);

        sim.state.lock().unwrap().reset_stuck = false;
        drv.reset_and_reinit(&mut sim.budget(), &[Some(7)], &mut done)
            .unwrap();
        let mut got: Vec<_> = done.iter().map(|c| c.id).collect();
        got.sort();
        assert_eq!(got, ids);
        // The finished one keeps its result; the others end with DeviceReset.
        assert_eq!(done[0].id, ids[0]);
        assert_eq!(done[0].result, Ok(Output::Done));
        for c in &done[1..] {
            assert_eq!(c.result, Err(BlkDriverError::DeviceReset));
            let lens: Vec<usize> = c.buffers.iter().map(|b| b.len()).collect();
            match c.kind {
                RequestKind::Read => assert_eq!(lens, [512, 1024]),
                RequestKind::Flush => assert!(lens.is_empty()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(drv.in_flight(0), 0);
        assert!(!drv.needs_reset());
        assert_eq!(
            sim.state.lock().unwrap().queues[0].unwrap().vector,
            Some(7),
            "vector re-routed"
        );
        // Works again; ids stay unique.
        let buffers = vec![pattern(&dma, 512, 4)];
        let c = run(&mut sim, &mut drv, 0, Request::Write { sector: 0, buffers });
        assert!(!ids.contains(&c.id));
        assert_eq!(
            read(&mut sim, &mut drv, 0, &[512]),
            &pattern(&dma, 512, 4)[..]
        );
    }
}

#[test]
fn failed_reinit_leaves_the_driver_not_ready() {
    let mut sim = Sim::new(ALL_BLK | F::INDIRECT_DESC, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    let id = drv.submit(0, Request::Flush).unwrap();
    // The device no longer offers a feature that was negotiated.
    sim.state.lock().unwrap().offered = F::VERSION_1;
    let mut done = Vec::new();
    let err = drv
        .reset_and_reinit(&mut sim.budget(), &[], &mut done)
        .unwrap_err();
    assert!(matches!(err, BlkDriverError::Transport(_)));
    assert_eq!(done.len(), 1, "in-flight requests are completed even so");
    assert_eq!(done[0].id, id);
    let err = drv.submit(0, Request::GetId).unwrap_err();
    assert_eq!(err.error, BlkDriverError::NotReady);
    assert_eq!(drv.poll(0).unwrap_err(), BlkDriverError::NotReady);
    // The device comes back: a second attempt succeeds.
    sim.state.lock().unwrap().offered = ALL_BLK | F::INDIRECT_DESC | F::VERSION_1;
    drv.reset_and_reinit(&mut sim.budget(), &[], &mut done)
        .unwrap();
    assert_eq!(
        run(&mut sim, &mut drv, 0, Request::Flush).result,
        Ok(Output::Done)
    );
}

#[test]
fn unusable_config_values() {
    // blk_size not a power of two: 512 is used, and the value is reported.
    let config = BlkConfig {
        blk_size: 3000,
        ..BlkConfig::default()
    };
    let sim = Sim::new(BLK_SIZE, &config);
    let drv = sim.driver(BlkOptions::default());
    assert_eq!(
        (drv.info().blk_size, drv.info().blk_size_rejected),
        (512, Some(3000))
    );
    // A capacity whose byte size overflows is an initialisation error.
    let sim = Sim::new(F::empty(), &BlkConfig::default());
    sim.state.lock().unwrap().config[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = BlkDriver::new(
        sim.transport(),
        sim.dma.clone(),
        BlkOptions::default(),
        &[],
        &mut sim.budget(),
    )
    .unwrap_err();
    assert_eq!(err, BlkDriverError::BadCapacity);
    assert_ne!(
        sim.state.lock().unwrap().status & 0x80,
        0,
        "device marked FAILED"
    );
}
