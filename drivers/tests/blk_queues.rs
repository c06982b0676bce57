//! virtio-blk against the simulated device: Queue behaviour: full queues, out-of-order completion, batches, multi-queue, notifications, random traffic.

mod support;

use std::collections::VecDeque;

use support::*;
use vireo_drivers::blk::{BlkDriverError, BlkOptions, Output, Request};
use vireo_virtio::virtio_spec::F;

#[test]
fn queue_full_returns_the_request_and_its_buffers() {
    // Direct chains: header + data + status = 3 descriptors; a queue of 8 holds 2 reads.
    let sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions {
        indirect: false,
        queue_size: 8,
        ..BlkOptions::default()
    });
    for i in 0..2 {
        drv.submit(
            0,
            Request::Read {
                sector: i,
                buffers: vec![buf(&sim.dma, 512, 0)],
            },
        )
        .unwrap();
    }
    let seg = pattern(&sim.dma, 512, 9);
    let err = drv
        .submit(
            0,
            Request::Write {
                sector: 7,
                buffers: vec![seg],
            },
        )
        .unwrap_err();
    assert_eq!(err.error, BlkDriverError::QueueFull);
    match err.request {
        Request::Write { sector, buffers } => {
            assert_eq!(sector, 7);
            assert_eq!(&buffers[0][..], &pattern(&sim.dma, 512, 9)[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(drv.in_flight(0), 2);

    // Indirect: short requests go direct while they leave half the ring free, then one
    // descriptor each: 6 of these fit in 8 descriptors (3 direct + 5 indirect), and in general
    // at least two thirds of the ring size.
    let mut sim = Sim::new(ALL_BLK | F::INDIRECT_DESC, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions {
        queue_size: 8,
        ..BlkOptions::default()
    });
    for i in 0..6 {
        drv.submit(
            0,
            Request::Read {
                sector: i,
                buffers: vec![buf(&sim.dma, 512, 0)],
            },
        )
        .unwrap();
    }
    let err = drv.submit(0, Request::Flush).unwrap_err();
    assert_eq!(err.error, BlkDriverError::QueueFull);
    let seen_indirect = |sim: &Sim| sim.seen().iter().filter(|s| s.indirect).count();
    assert_eq!(sim.serve(0), 6);
    assert_eq!(seen_indirect(&sim), 5);
    let mut n = 0;
    while let Some(c) = drv.poll(0).unwrap() {
        assert_eq!(c.result, Ok(Output::Done));
        n += 1;
    }
    assert_eq!(n, 6);
    // Long requests are indirect from the start: one descriptor each, so 8 fit.
    for i in 0..8 {
        let buffers = (0..3).map(|_| buf(&sim.dma, 512, 0)).collect();
        drv.submit(
            0,
            Request::Read {
                sector: i * 3,
                buffers,
            },
        )
        .unwrap();
    }
    assert_eq!(
        drv.submit(0, Request::Flush).unwrap_err().error,
        BlkDriverError::QueueFull
    );
    assert_eq!(sim.serve(0), 8);
    assert_eq!(seen_indirect(&sim), 13);
    while let Some(c) = drv.poll(0).unwrap() {
        assert_eq!(c.result, Ok(Output::Done));
    }
}

#[test]
fn out_of_order_completion_matches_requests() {
    for options in matrix() {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(BlkOptions {
            queue_size: 32,
            ..options
        });
        // Fill sectors 0..8 with distinct patterns.
        for i in 0..8u8 {
            let buffers = vec![pattern(&sim.dma, 512, i)];
            drv.submit(
                0,
                Request::Write {
                    sector: u64::from(i),
                    buffers,
                },
            )
            .unwrap();
        }
        sim.serve(0);
        while drv.poll(0).unwrap().is_some() {}
        // Eight reads in flight, completed in a scrambled order.
        let mut sector_of = std::collections::HashMap::new();
        for i in 0..8u64 {
            let id = drv
                .submit(
                    0,
                    Request::Read {
                        sector: i,
                        buffers: vec![buf(&sim.dma, 512, 0)],
                    },
                )
                .unwrap();
            sector_of.insert(id, i);
        }
        assert_eq!(drv.in_flight(0), 8);
        let chains = sim.pop(0);
        let order = [5usize, 2, 7, 0, 1, 6, 3, 4];
        for &i in &order {
            sim.complete(0, &chains[i]);
        }
        let mut got = Vec::new();
        while let Some(c) = drv.poll(0).unwrap() {
            let sector = sector_of
                .remove(&c.id)
                .expect("known, not yet completed id");
            assert_eq!(&c.buffers[0][..], &pattern(&sim.dma, 512, sector as u8)[..]);
            got.push(sector as usize);
        }
        assert_eq!(got, order, "{options:?}");
        assert!(sector_of.is_empty());
        assert_eq!(drv.in_flight(0), 0);
    }
}

#[test]
fn batch_submit_notifies_once_and_keeps_the_rest() {
    let mut sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions {
        event_idx: false,
        ..BlkOptions::default()
    });
    let dma = sim.dma.clone();
    let mut requests: VecDeque<_> = (0..4)
        .map(|i| Request::Write {
            sector: i,
            buffers: vec![pattern(&dma, 512, i as u8)],
        })
        .collect();
    // The fourth is beyond capacity; the fifth is fine but after it.
    requests.insert(
        3,
        Request::Read {
            sector: 4096,
            buffers: vec![buf(&dma, 512, 0)],
        },
    );
    let mut ids = Vec::new();
    let err = drv.submit_batch(0, &mut requests, &mut ids).unwrap_err();
    assert_eq!(err, BlkDriverError::OutOfRange);
    assert_eq!(ids.len(), 3);
    assert_eq!(requests.len(), 2);
    assert!(matches!(requests[0], Request::Read { sector: 4096, .. }));
    assert_eq!(
        sim.state.lock().unwrap().notifications,
        [0],
        "one notification for the batch"
    );
    assert_eq!(sim.serve(0), 3);
    let mut done: Vec<_> = std::iter::from_fn(|| drv.poll(0).unwrap())
        .map(|c| c.id)
        .collect();
    done.sort();
    assert_eq!(done, ids);

    requests.pop_front();
    ids.clear();
    drv.submit_batch(0, &mut requests, &mut ids).unwrap();
    assert!(requests.is_empty());
    assert_eq!(ids.len(), 1);

    // A batch that overflows the queue: the ones that did not fit come back, in order.
    let mut sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions {
        indirect: false,
        queue_size: 8,
        ..BlkOptions::default()
    });
    let dma = sim.dma.clone();
    let mut requests: VecDeque<_> = (0..4)
        .map(|i| Request::Read {
            sector: i,
            buffers: vec![buf(&dma, 512, 0)],
        })
        .collect();
    let mut ids = Vec::new();
    assert_eq!(
        drv.submit_batch(0, &mut requests, &mut ids),
        Err(BlkDriverError::QueueFull)
    );
    assert_eq!(ids.len(), 2);
    let sectors: Vec<u64> = requests
        .iter()
        .map(|r| match r {
            Request::Read { sector, buffers } => {
                assert_eq!(buffers[0].len(), 512);
                *sector
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(sectors, [2, 3]);
    assert_eq!(sim.serve(0), 2);
}

#[test]
fn multi_queue() {
    let config = BlkConfig {
        num_queues: 3,
        ..BlkConfig::default()
    };
    for packed in [false, true] {
        let mut sim = Sim::new(ALL_BLK | MQ | ring_features(), &config);
        let mut drv = sim.driver(BlkOptions {
            packed,
            multi_queue: true,
            queues: 4,
            ..BlkOptions::default()
        });
        assert_eq!(
            (drv.queue_count(), drv.info().num_queues, drv.info().queues),
            (3, 3, 3)
        );
        for q in 0..3u16 {
            assert_eq!(
                sim.state.lock().unwrap().queues[usize::from(q)]
                    .unwrap()
                    .vector,
                Some(q + 1)
            );
        }
        assert!(sim.state.lock().unwrap().queues[3].is_none());
        let dma = sim.dma.clone();
        for q in 0..3u16 {
            let buffers = vec![pattern(&dma, 512, q as u8)];
            drv.submit(
                q,
                Request::Write {
                    sector: u64::from(q),
                    buffers,
                },
            )
            .unwrap();
        }
        assert_eq!(
            drv.submit(3, Request::Flush).unwrap_err().error,
            BlkDriverError::NoSuchQueue
        );
        for q in (0..3u16).rev() {
            assert_eq!(drv.in_flight(q), 1);
            assert_eq!(sim.serve(q), 1);
            assert_eq!(drv.poll(q).unwrap().unwrap().result, Ok(Output::Done));
        }
        let seen: Vec<(u16, u64)> = sim.seen().iter().map(|s| (s.queue, s.sector)).collect();
        assert_eq!(seen, [(2, 2), (1, 1), (0, 0)]);
        // Without the MQ option: one queue.
        let sim = Sim::new(ALL_BLK | MQ, &config);
        assert_eq!(sim.driver(BlkOptions::default()).queue_count(), 1);
    }
}

#[test]
fn notifications_and_config_change() {
    let mut sim = Sim::new(ALL_BLK | F::EVENT_IDX, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    drv.disable_notifications(0).unwrap();
    drv.submit(0, Request::Flush).unwrap();
    sim.serve(0);
    assert!(
        drv.enable_notifications(0).unwrap(),
        "a completion is pending"
    );
    assert!(drv.poll(0).unwrap().is_some());
    assert!(!drv.enable_notifications(0).unwrap());
    assert_eq!(
        drv.enable_notifications(9),
        Err(BlkDriverError::NoSuchQueue)
    );

    // The disk grows.
    let config = BlkConfig {
        capacity: 4096,
        ..BlkConfig::default()
    };
    {
        let mut s = sim.state.lock().unwrap();
        s.config = config.bytes();
        s.generation += 1;
        s.disk.resize(4096 * 512, 0);
    }
    assert_eq!(drv.config_changed(), Ok(true));
    assert_eq!(drv.info().capacity, 4096);
    assert_eq!(drv.config_changed(), Ok(false));
    assert_eq!(read(&mut sim, &mut drv, 4000, &[512]), vec![0; 512]);
}

/// Random reads and writes, many in flight, completed in random order, against a model disk;
/// long enough for the ring indices and packed wrap counters to wrap many times.
#[test]
fn random_traffic_matches_a_model_disk() {
    for options in matrix() {
        let config = BlkConfig {
            capacity: 256,
            size_max: 2048,
            seg_max: 4,
            ..BlkConfig::default()
        };
        let mut sim = Sim::new(ALL_BLK | ring_features(), &config);
        let mut drv = sim.driver(BlkOptions {
            queue_size: 16,
            ..options
        });
        let dma = sim.dma.clone();
        let mut model = vec![0u8; 256 * 512];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        // Writes in flight must not overlap anything else in flight, so that any completion order
        // gives the same result: each request owns sectors [24k, 24k + 24) for a distinct k.
        let mut busy = [false; 10];
        let mut pending = std::collections::HashMap::new();
        let mut chains = Vec::new();
        let mut completed = 0;
        for _ in 0..3000 {
            match rng.below(3) {
                0 | 1 => {
                    let free: Vec<usize> = (0..10).filter(|&k| !busy[k]).collect();
                    if free.is_empty() {
                        continue;
                    }
                    let k = free[rng.below(free.len() as u64) as usize];
                    let segs = 1 + rng.below(4) as usize;
                    let sector = (k * 24) as u64 + rng.below(4);
                    let lens: Vec<usize> = (0..segs)
                        .map(|_| 512 * (1 + rng.below(4) as usize))
                        .collect();
                    let write = rng.below(2) == 0;
                    let seed = rng.next() as u8;
                    let buffers: Vec<_> = lens
                        .iter()
                        .enumerate()
                        .map(|(i, &l)| {
                            if write {
                                pattern(&dma, l, seed ^ i as u8)
                            } else {
                                buf(&dma, l, 0xEE)
                            }
                        })
                        .collect();
                    let request = if write {
                        Request::Write { sector, buffers }
                    } else {
                        Request::Read { sector, buffers }
                    };
                    match drv.submit(0, request) {
                        Ok(id) => {
                            busy[k] = true;
                            pending.insert(id, (k, sector, write, seed, lens));
                        }
                        Err(e) => assert_eq!(e.error, BlkDriverError::QueueFull),
                    }
                }
                _ => {
                    chains.extend(sim.pop(0));
                    // Complete a random subset in random order.
                    let n = rng.below(chains.len() as u64 + 1) as usize;
                    for _ in 0..n {
                        let c = chains.swap_remove(rng.below(chains.len() as u64) as usize);
                        sim.complete(0, &c);
                    }
                    while let Some(c) = drv.poll(0).unwrap() {
                        let (k, sector, write, seed, lens) = pending.remove(&c.id).unwrap();
                        busy[k] = false;
                        completed += 1;
                        assert_eq!(c.result, Ok(Output::Done));
                        let got: Vec<usize> = c.buffers.iter().map(|b| b.len()).collect();
                        assert_eq!(got, lens);
                        let start = sector as usize * 512;
                        let data: Vec<u8> =
                            c.buffers.iter().flat_map(|b| b.iter().copied()).collect();
                        if write {
                            let expected: Vec<u8> = lens
                                .iter()
                                .enumerate()
                                .flat_map(|(i, &l)| pattern(&dma, l, seed ^ i as u8).to_vec())
                                .collect();
                            assert_eq!(data, expected);
                            model[start..start + data.len()].copy_from_slice(&data);
                        } else {
                            assert_eq!(data, model[start..start + data.len()], "{options:?}");
                        }
                    }
                }
            }
        }
        assert_eq!(drv.in_flight(0), pending.len());
        assert!(completed > 600, "{completed} completions");
    }
}

#[test]
fn a_full_queue_gives_back_every_kind_of_request_as_it_was() {
    use vireo_drivers::blk::SectorRange;
    let ranges = vec![
        SectorRange {
            sector: 8,
            num_sectors: 8,
        },
        SectorRange {
            sector: 32,
            num_sectors: 16,
        },
    ];
    let requests = [
        Request::Flush,
        Request::GetId,
        Request::Discard {
            ranges: ranges.clone(),
        },
        Request::WriteZeroes {
            ranges: ranges.clone(),
            unmap: false,
        },
        Request::WriteZeroes {
            ranges: ranges.clone(),
            unmap: true,
        },
    ];
    for request in requests {
        // Direct chains in a queue of 4: one read (3 descriptors) leaves room for none of these.
        let sim = Sim::new(ALL_BLK, &BlkConfig::default());
        let mut drv = sim.driver(BlkOptions {
            indirect: false,
            queue_size: 4,
            ..BlkOptions::default()
        });
        let buffers = vec![buf(&sim.dma, 512, 0)];
        drv.submit(0, Request::Read { sector: 0, buffers }).unwrap();
        let before = format!("{request:?}");
        let err = drv.submit(0, request).unwrap_err();
        assert_eq!(err.error, BlkDriverError::QueueFull, "{before}");
        let given_back = err.request;
        assert_eq!(format!("{given_back:?}"), before);
        match given_back {
            Request::Discard { ranges: r } => assert_eq!(r, ranges),
            Request::WriteZeroes { ranges: r, unmap } => {
                assert_eq!(r, ranges);
                assert_eq!(unmap, before.contains("unmap: true"), "{before}");
            }
            Request::Flush | Request::GetId => {}
            other => panic!("{other:?}"),
        }
    }
}
