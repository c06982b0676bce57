//! virtio-blk against the simulated device: Every request type, the device's error answers, hostile answers, and what validation refuses before the device sees anything.

mod support;

use support::*;
use vireo_drivers::blk::{BlkDriverError, BlkOptions, Output, Request, RequestKind, SectorRange};
use vireo_virtio::{QueueError, virtio_spec::F};

#[test]
fn every_request_round_trips_on_every_ring_configuration() {
    for options in matrix() {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options);
        assert_eq!(drv.features().contains(F::RING_PACKED), options.packed);
        assert_eq!(drv.features().contains(F::INDIRECT_DESC), options.indirect);
        let info = *drv.info();
        assert_eq!((info.capacity, info.blk_size, info.queues), (2048, 512, 1));
        assert!(info.flush && !info.read_only);
        assert_eq!(info.topology.unwrap().physical_block_exp, 3);
        assert_eq!(info.geometry, None, "GEOMETRY not offered");

        // Write three segments, read back with a different segmentation.
        let segs = vec![
            pattern(&sim.dma, 512, 1),
            pattern(&sim.dma, 1024, 2),
            pattern(&sim.dma, 512, 3),
        ];
        let expected: Vec<u8> = segs.iter().flat_map(|b| b.iter().copied()).collect();
        let c = run(
            &mut sim,
            &mut drv,
            0,
            Request::Write {
                sector: 10,
                buffers: segs,
            },
        );
        assert_eq!(c.result, Ok(Output::Done));
        assert_eq!(c.buffers.len(), 3, "write buffers come back");
        assert_eq!(read(&mut sim, &mut drv, 10, &[1536, 512]), expected);

        let c = run(&mut sim, &mut drv, 0, Request::Flush);
        assert_eq!((c.kind, c.result), (RequestKind::Flush, Ok(Output::Done)));

        let c = run(&mut sim, &mut drv, 0, Request::GetId);
        match c.result {
            Ok(Output::Id(id)) => assert_eq!(id.as_str(), "VIREO-SERIAL"),
            other => panic!("get-id: {other:?}"),
        }

        let range = |sector, num_sectors| SectorRange {
            sector,
            num_sectors,
        };
        let c = run(
            &mut sim,
            &mut drv,
            0,
            Request::Discard {
                ranges: vec![range(10, 1)],
            },
        );
        assert_eq!(c.result, Ok(Output::Done));
        let c = run(
            &mut sim,
            &mut drv,
            0,
            Request::WriteZeroes {
                ranges: vec![range(11, 2), range(13, 1)],
                unmap: true,
            },
        );
        assert_eq!(c.result, Ok(Output::Done));
        assert_eq!(read(&mut sim, &mut drv, 10, &[2048]), vec![0; 2048]);

        // The device saw the right headers and layouts.
        let seen = sim.seen();
        let types: Vec<u32> = seen.iter().map(|s| s.ty).collect();
        assert_eq!(
            types,
            [
                T_OUT,
                T_IN,
                T_FLUSH,
                T_GET_ID,
                T_DISCARD,
                T_WRITE_ZEROES,
                T_IN
            ]
        );
        assert_eq!(seen[0].readable, [16, 512, 1024, 512]);
        assert_eq!(seen[0].writable, [1]);
        assert_eq!(seen[1].writable, [1536, 512, 1]);
        assert_eq!(seen[3].writable, [20, 1]);
        assert_eq!(seen[5].readable, [16, 32]);
        // With INDIRECT_DESC, chains of more than 4 descriptors use a table; shorter ones go
        // direct while the ring has room (one request at a time here).
        assert!(
            seen.iter().all(
                |s| s.indirect == (options.indirect && s.readable.len() + s.writable.len() > 4)
            ),
            "{options:?}"
        );
        assert!(seen[0].indirect == options.indirect, "5 descriptors");
        assert_eq!(seen[0].sector, 10);
        assert_eq!(drv.in_flight(0), 0);
    }
}

#[test]
fn device_error_statuses_are_typed_errors_with_buffers() {
    for (status, error) in [
        (1u8, BlkDriverError::IoError),
        (2, BlkDriverError::DeviceUnsupported),
    ] {
        let mut sim = Sim::new(ALL_BLK, &BlkConfig::default());
        let mut drv = sim.driver(BlkOptions::default());
        sim.state.lock().unwrap().status_override = Some(status);
        let buffers = vec![buf(&sim.dma, 512, 0)];
        let c = run(&mut sim, &mut drv, 0, Request::Read { sector: 0, buffers });
        assert_eq!(c.result, Err(error));
        assert_eq!(c.buffers.len(), 1);
        assert_eq!(c.buffers[0].len(), 512);
    }
    // An unknown request type answered UNSUPP by the device itself: flush without FLUSH is
    // refused before, so use a device that offers FLUSH but then fails it.
    let mut sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    sim.state.lock().unwrap().offered = ALL_BLK.difference(FLUSH) | F::VERSION_1;
    let c = run(&mut sim, &mut drv, 0, Request::Flush);
    assert_eq!(c.result, Err(BlkDriverError::DeviceUnsupported));
}

#[test]
fn hostile_device_answers_are_typed_errors() {
    for packed in [false, true] {
        let options = BlkOptions {
            packed,
            ..BlkOptions::default()
        };
        let mut sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
        let mut drv = sim.driver(options);
        let dma = sim.dma.clone();
        let read_req = || Request::Read {
            sector: 0,
            buffers: vec![buf(&dma, 512, 0)],
        };

        // A status byte that is none of OK/IOERR/UNSUPP.
        sim.state.lock().unwrap().status_override = Some(0x7f);
        let c = run(&mut sim, &mut drv, 0, read_req());
        assert_eq!(c.result, Err(BlkDriverError::BadStatus(0x7f)));
        assert_eq!(c.buffers.len(), 1);
        sim.state.lock().unwrap().status_override = None;

        // A used length that does not even cover the status byte.
        sim.state.lock().unwrap().len_override = Some(0);
        let c = run(&mut sim, &mut drv, 0, read_req());
        assert_eq!(
            c.result,
            Err(BlkDriverError::UsedLength {
                len: 0,
                expected: 513
            })
        );
        // A read whose used length does not cover the data.
        sim.state.lock().unwrap().len_override = Some(100);
        let c = run(&mut sim, &mut drv, 0, read_req());
        assert_eq!(
            c.result,
            Err(BlkDriverError::UsedLength {
                len: 100,
                expected: 513
            })
        );
        // A get-id whose used length does not cover the id.
        sim.state.lock().unwrap().len_override = Some(1);
        let c = run(&mut sim, &mut drv, 0, Request::GetId);
        assert_eq!(
            c.result,
            Err(BlkDriverError::UsedLength {
                len: 1,
                expected: 21
            })
        );
        sim.state.lock().unwrap().len_override = None;

        // Id strings that are not NUL-padded ASCII; a full 20-byte id without NUL is valid.
        sim.state.lock().unwrap().serial = *b"ABC\0garbage-after-NU";
        let c = run(&mut sim, &mut drv, 0, Request::GetId);
        assert_eq!(c.result, Err(BlkDriverError::BadId));
        sim.state.lock().unwrap().serial = [0xC3; 20];
        let c = run(&mut sim, &mut drv, 0, Request::GetId);
        assert_eq!(c.result, Err(BlkDriverError::BadId));
        sim.state.lock().unwrap().serial = *b"01234567890123456789";
        let c = run(&mut sim, &mut drv, 0, Request::GetId);
        match c.result {
            Ok(Output::Id(id)) => assert_eq!(id.as_bytes(), b"01234567890123456789"),
            other => panic!("{other:?}"),
        }

        // A used length beyond the writable part is a queue protocol error: nothing is lost,
        // and a reset hands the request back.
        sim.state.lock().unwrap().len_override = Some(10_000);
        let id = drv.submit(0, read_req()).unwrap();
        sim.serve(0);
        assert!(matches!(
            drv.poll(0),
            Err(BlkDriverError::Queue(QueueError::WrittenLenTooLarge {
                len: 10_000,
                ..
            }))
        ));
        sim.state.lock().unwrap().len_override = None;
        let mut done = Vec::new();
        drv.reset_and_reinit(&mut sim.budget(), &[Some(1)], &mut done)
            .unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].id, done[0].result),
            (id, Err(BlkDriverError::DeviceReset))
        );
        assert_eq!(done[0].buffers.len(), 1);
        assert_eq!(read(&mut sim, &mut drv, 0, &[512]).len(), 512);
    }
}

#[test]
fn validation_errors_never_reach_the_device() {
    let config = BlkConfig {
        blk_size: 4096,
        size_max: 8192,
        seg_max: 2,
        ..BlkConfig::default()
    };
    let mut sim = Sim::new(SIZE_MAX | SEG_MAX | BLK_SIZE | DISCARD, &config);
    let mut drv = sim.driver(BlkOptions::default());
    let dma = sim.dma.clone();
    let info = *drv.info();
    assert_eq!(
        (info.blk_size, info.max_segments, info.max_request_bytes()),
        (4096, 2, 16384)
    );
    let b = |len| buf(&dma, len, 0);
    let range = |sector, num_sectors| SectorRange {
        sector,
        num_sectors,
    };
    let cases: Vec<(Request<GuestDma>, BlkDriverError)> = vec![
        (
            Request::Read {
                sector: 2048 - 8,
                buffers: vec![b(8192)],
            },
            BlkDriverError::OutOfRange,
        ),
        (
            Request::Read {
                sector: u64::MAX - 7,
                buffers: vec![b(4096)],
            },
            BlkDriverError::OutOfRange,
        ),
        (
            Request::Write {
                sector: 0,
                buffers: vec![b(512)],
            },
            BlkDriverError::Misaligned,
        ),
        (
            Request::Write {
                sector: 1,
                buffers: vec![b(4096)],
            },
            BlkDriverError::Misaligned,
        ),
        (
            Request::Read {
                sector: 0,
                buffers: vec![],
            },
            BlkDriverError::EmptyBuffer,
        ),
        (
            Request::Read {
                sector: 0,
                buffers: vec![b(4096), b(0)],
            },
            BlkDriverError::EmptyBuffer,
        ),
        (
            Request::Read {
                sector: 0,
                buffers: vec![b(4096), b(4096), b(4096)],
            },
            BlkDriverError::TooManySegments { max: 2 },
        ),
        (
            Request::Read {
                sector: 0,
                buffers: vec![b(16384)],
            },
            BlkDriverError::SegmentTooLarge { max: 8192 },
        ),
        (Request::Flush, BlkDriverError::Unsupported),
        (
            Request::WriteZeroes {
                ranges: vec![range(0, 8)],
                unmap: false,
            },
            BlkDriverError::Unsupported,
        ),
        (
            Request::Discard { ranges: vec![] },
            BlkDriverError::EmptyBuffer,
        ),
        (
            Request::Discard {
                ranges: vec![range(0, 0)],
            },
            BlkDriverError::EmptyBuffer,
        ),
        (
            Request::Discard {
                ranges: vec![range(4, 8)],
            },
            BlkDriverError::Misaligned,
        ),
        (
            Request::Discard {
                ranges: vec![range(2048, 8)],
            },
            BlkDriverError::OutOfRange,
        ),
        (
            Request::Discard {
                ranges: vec![range(0, 2048)],
            },
            BlkDriverError::SegmentTooLarge { max: 1024 },
        ),
        (
            Request::Discard {
                ranges: vec![range(0, 8); 5],
            },
            BlkDriverError::TooManySegments { max: 4 },
        ),
    ];
    for (req, error) in cases {
        let debug = format!("{req:?}");
        let lens: Vec<usize> = match &req {
            Request::Read { buffers, .. } | Request::Write { buffers, .. } => {
                buffers.iter().map(|b| b.len()).collect()
            }
            _ => vec![],
        };
        let err = drv.submit(0, req).unwrap_err();
        assert_eq!(err.error, error, "{debug}");
        assert_eq!(
            format!("{:?}", err.request),
            debug,
            "request comes back as given"
        );
        let back: Vec<usize> = err.request.into_buffers().iter().map(|b| b.len()).collect();
        assert_eq!(back, lens);
    }
    assert_eq!(drv.in_flight(0), 0);
    assert_eq!(sim.serve(0), 0);
    assert!(sim.seen().is_empty());
    assert!(sim.state.lock().unwrap().notifications.is_empty());

    // Read-only device: writes, discards and write-zeroes are refused; reads go through.
    let mut sim = Sim::new(RO | DISCARD | WRITE_ZEROES | FLUSH, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    assert!(drv.info().read_only);
    let dma = sim.dma.clone();
    for req in [
        Request::Write {
            sector: 0,
            buffers: vec![buf(&dma, 512, 1)],
        },
        Request::Discard {
            ranges: vec![range(0, 1)],
        },
        Request::WriteZeroes {
            ranges: vec![range(0, 1)],
            unmap: true,
        },
    ] {
        assert_eq!(
            drv.submit(0, req).unwrap_err().error,
            BlkDriverError::ReadOnly
        );
    }
    assert!(sim.seen().is_empty());
    assert_eq!(read(&mut sim, &mut drv, 0, &[512]), vec![0; 512]);
    assert_eq!(
        run(&mut sim, &mut drv, 0, Request::Flush).result,
        Ok(Output::Done)
    );
}

#[test]
fn size_max_and_seg_max_are_respected() {
    let config = BlkConfig {
        size_max: 4096,
        seg_max: 4,
        ..BlkConfig::default()
    };
    for options in matrix() {
        let mut sim = Sim::new(ALL_BLK | ring_features(), &config);
        let mut drv = sim.driver(options);
        let info = *drv.info();
        assert_eq!((info.max_segment_bytes(), info.max_segments), (4096, 4));
        assert_eq!(info.max_request_bytes(), 16384);
        let buffers = (0..4).map(|i| pattern(&sim.dma, 4096, i)).collect();
        let c = run(
            &mut sim,
            &mut drv,
            0,
            Request::Write {
                sector: 64,
                buffers,
            },
        );
        assert_eq!(c.result, Ok(Output::Done));
        let data = read(&mut sim, &mut drv, 64, &[4096; 4]);
        assert_eq!(&data[4096..8192], &pattern(&sim.dma, 4096, 1)[..]);
        for seen in sim.seen() {
            let data = if seen.ty == T_IN {
                &seen.writable
            } else {
                &seen.readable
            };
            assert!(data.iter().all(|&l| l <= 4096), "{seen:?}");
            assert!(data.len() <= 5, "{seen:?}");
        }
    }
    // Without SEG_MAX the driver assumes one data segment; the queue size also bounds it.
    let mut sim = Sim::new(F::empty(), &config);
    let drv = sim.driver(BlkOptions::default());
    assert_eq!(drv.info().max_segments, 1);
    let config = BlkConfig {
        seg_max: 1000,
        ..BlkConfig::default()
    };
    sim = Sim::new(SEG_MAX, &config);
    let drv = sim.driver(BlkOptions {
        queue_size: 16,
        ..BlkOptions::default()
    });
    assert_eq!(drv.info().max_segments, 14);
}

#[test]
fn boundary_ranges_are_accepted() {
    let mut sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    // The last sector, and the whole disk in one discard.
    assert_eq!(read(&mut sim, &mut drv, 2047, &[512]).len(), 512);
    let ranges = vec![SectorRange {
        sector: 1024,
        num_sectors: 1024,
    }];
    assert_eq!(
        run(&mut sim, &mut drv, 0, Request::Discard { ranges }).result,
        Ok(Output::Done)
    );
    let err = drv
        .submit(
            0,
            Request::Read {
                sector: 2047,
                buffers: vec![buf(&sim.dma, 1024, 0)],
            },
        )
        .unwrap_err();
    assert_eq!(err.error, BlkDriverError::OutOfRange);
}

#[test]
fn exactly_the_most_ranges_the_device_takes_are_accepted() {
    // max_discard_seg and max_write_zeroes_seg are 4 (§5.2.4: the most segments per request).
    let mut sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    let ranges = |n: u64| -> Vec<SectorRange> {
        (0..n)
            .map(|i| SectorRange {
                sector: 100 + 10 * i,
                num_sectors: 2,
            })
            .collect()
    };
    let c = run(
        &mut sim,
        &mut drv,
        0,
        Request::Discard { ranges: ranges(4) },
    );
    assert_eq!(c.result, Ok(Output::Done));
    let c = run(
        &mut sim,
        &mut drv,
        0,
        Request::WriteZeroes {
            ranges: ranges(4),
            unmap: false,
        },
    );
    assert_eq!(c.result, Ok(Output::Done));
    let refused = drv
        .submit(0, Request::Discard { ranges: ranges(5) })
        .unwrap_err();
    assert_eq!(refused.error, BlkDriverError::TooManySegments { max: 4 });
}
