//! virtio-blk request headers, status bytes and element lists are pooled: steady-state requests
//! allocate no DMA memory, and nothing a reused block held can leak into a later answer.

mod support;

use support::*;
use vireo_drivers::blk::{BlkDriverError, BlkOptions, Output, PoolStats, Request, RequestKind};

fn options(packed: bool, indirect: bool) -> BlkOptions {
    BlkOptions {
        packed,
        indirect,
        ..BlkOptions::default()
    }
}

#[test]
fn steady_state_requests_allocate_no_dma_memory() {
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options(packed, false));
        let mut buffers = vec![pattern(&sim.dma, 1024, 7)];
        // Warm-up: the first requests fill the pool.
        for round in 0..2 {
            let c = run(&mut sim, &mut drv, 0, Request::Flush);
            assert_eq!(c.result, Ok(Output::Done));
            let c = run(
                &mut sim,
                &mut drv,
                0,
                Request::Write {
                    sector: round,
                    buffers,
                },
            );
            assert_eq!(c.result, Ok(Output::Done));
            buffers = c.buffers;
        }
        let before = sim.dma.allocations();
        for round in 0..50u64 {
            let sector = round * 2 % 2000;
            let c = run(&mut sim, &mut drv, 0, Request::Write { sector, buffers });
            assert_eq!(c.result, Ok(Output::Done));
            let c = run(
                &mut sim,
                &mut drv,
                0,
                Request::Read {
                    sector,
                    buffers: c.buffers,
                },
            );
            assert_eq!(c.result, Ok(Output::Done));
            assert_eq!(c.buffers.len(), 1);
            buffers = c.buffers;
            // Every reused header carried this request's type and sector.
            let seen = sim.seen();
            let (w, r) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
            assert_eq!((w.ty, w.sector, r.ty, r.sector), (1, sector, 0, sector));
        }
        assert_eq!(
            sim.dma.allocations(),
            before,
            "packed={packed}: steady-state requests allocated DMA memory"
        );
        assert_eq!(buffers[0][..], pattern(&sim.dma, 1024, 7)[..]);
    }
}

#[test]
fn indirect_requests_allocate_only_their_table() {
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options(packed, true));
        // Three segments: five descriptors, too long to go direct.
        let mut buffers: Vec<_> = (0..3).map(|i| buf(&sim.dma, 512, i)).collect();
        let c = run(&mut sim, &mut drv, 0, Request::Read { sector: 0, buffers });
        buffers = c.buffers;
        let (before, live) = (sim.dma.allocations(), sim.dma.live());
        for sector in 0..10 {
            let c = run(&mut sim, &mut drv, 0, Request::Read { sector, buffers });
            assert_eq!(c.result, Ok(Output::Done));
            buffers = c.buffers;
        }
        assert_eq!(sim.dma.allocations() - before, 10, "packed={packed}");
        assert!(sim.seen().iter().all(|s| s.indirect));
        assert_eq!(sim.dma.live(), live, "packed={packed}: tables are freed");
    }
}

#[test]
fn a_reused_status_byte_never_carries_an_old_answer() {
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options(packed, true));
        let dma = sim.dma.clone();
        let read = || Request::Read {
            sector: 0,
            buffers: vec![buf(&dma, 512, 0)],
        };
        // The first request leaves S_OK in its status byte, which goes back to the pool.
        assert_eq!(run(&mut sim, &mut drv, 0, read()).result, Ok(Output::Done));
        // The device claims the whole length but never writes the (reused) status byte.
        sim.state.lock().unwrap().skip_status = true;
        let c = run(&mut sim, &mut drv, 0, read());
        assert_eq!(c.result, Err(BlkDriverError::BadStatus(0xff)));
        assert_eq!(c.buffers.len(), 1);
        sim.state.lock().unwrap().skip_status = false;
        assert_eq!(run(&mut sim, &mut drv, 0, read()).result, Ok(Output::Done));
    }
}

#[test]
fn every_request_kind_gives_its_header_and_status_byte_back() {
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options(packed, true));
        let dma = sim.dma.clone();
        assert_eq!(drv.pool_stats(), PoolStats::default());
        // Two requests in flight at once need two of each block.
        let first = drv.submit(0, Request::Flush).unwrap();
        let second = drv.submit(0, Request::Flush).unwrap();
        assert_eq!(sim.serve(0), 2);
        let done: Vec<_> = std::iter::from_fn(|| drv.poll(0).unwrap()).collect();
        assert_eq!(
            done.iter().map(|c| c.id).collect::<Vec<_>>(),
            [first, second]
        );
        let warm = PoolStats {
            allocated: 4,
            reused: 0,
            list_allocations: 4,
        };
        assert_eq!(drv.pool_stats(), warm, "packed={packed}");
        // From now on every request, of every kind, reuses a header and a status byte.
        let mut reused = 0;
        for _ in 0..3 {
            for request in KINDS.map(|kind| request_of(kind, &dma)) {
                let kind = request.kind();
                let data = usize::from(matches!(kind, RequestKind::Read | RequestKind::Write));
                let c = run(&mut sim, &mut drv, 0, request);
                assert!(c.result.is_ok(), "packed={packed} {kind:?}: {:?}", c.result);
                // Only the caller's own buffers come back to the caller.
                assert_eq!(c.buffers.len(), data, "packed={packed} {kind:?}");
                assert!(c.buffers.iter().all(|b| b.len() == 512));
                reused += 2;
                assert_eq!(
                    drv.pool_stats(),
                    PoolStats { reused, ..warm },
                    "packed={packed} {kind:?}"
                );
            }
        }
    }
}

#[test]
fn the_pool_keeps_at_most_1024_spares_of_each_kind() {
    const IN_FLIGHT: u64 = 1100;
    const LIMIT: u64 = 1024;
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        sim.state.lock().unwrap().max_queue_size = 4096;
        let mut drv = sim.driver(BlkOptions {
            queue_size: 4096,
            ..options(packed, false)
        });
        // More requests in flight at once than the pool keeps spares for.
        let mut burst = || {
            for _ in 0..IN_FLIGHT {
                drv.submit(0, Request::Flush).unwrap();
            }
            assert_eq!(sim.serve(0) as u64, IN_FLIGHT);
            let done = std::iter::from_fn(|| drv.poll(0).unwrap())
                .inspect(|c| assert_eq!(c.result, Ok(Output::Done)))
                .count();
            assert_eq!(done as u64, IN_FLIGHT);
            drv.pool_stats()
        };
        let fresh = 2 * IN_FLIGHT;
        assert_eq!(
            burst(),
            PoolStats {
                allocated: fresh,
                reused: 0,
                list_allocations: fresh,
            },
            "packed={packed}"
        );
        // The second burst finds 1024 spare headers, 1024 status bytes and 1024 lists (one kind
        // of spare for both sides of a request); the rest is new: what went back beyond the
        // limit when the first burst completed was freed.
        assert_eq!(
            burst(),
            PoolStats {
                allocated: fresh + 2 * (IN_FLIGHT - LIMIT),
                reused: 2 * LIMIT,
                list_allocations: fresh + (2 * IN_FLIGHT - LIMIT),
            },
            "packed={packed}"
        );
    }
}
