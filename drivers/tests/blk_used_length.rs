//! The used length decides what of a virtio-blk answer the driver may believe (virtio 1.2
//! §2.7.8, §5.2.6): a device that reports writing nothing did not write the status byte, so
//! whatever that byte holds — a stale value, or one the device put there without owning up to
//! it — is not an answer; and a request succeeds only when the reported length covers every byte
//! the device had to write (data, id string, status).

mod support;

use support::*;
use vireo_drivers::blk::{BlkDriverError, BlkOptions, Output, Request, RequestKind};
use vireo_virtio::mock::GuestDma;

/// Every request kind, with the device-writable length it posts (status byte, plus data or id).
fn requests(dma: &GuestDma) -> Vec<(Request<GuestDma>, u32)> {
    KINDS
        .iter()
        .map(|&kind| {
            let expected = match kind {
                RequestKind::Read => 513,
                RequestKind::GetId => 21,
                _ => 1,
            };
            (request_of(kind, dma), expected)
        })
        .collect()
}

fn device(packed: bool) -> (Sim, Driver) {
    let sim = Sim::new(ALL_BLK | ring_features(), &BlkConfig::default());
    let drv = sim.driver(BlkOptions {
        packed,
        ..BlkOptions::default()
    });
    (sim, drv)
}

#[test]
fn a_used_length_of_zero_is_never_an_answer() {
    for packed in [false, true] {
        let (mut sim, mut drv) = device(packed);
        // OK, IOERR, UNSUPP and an invalid value, each written to the status byte by a device
        // that then reports 0 bytes written.
        for status in [0u8, 1, 2, 0x7f] {
            for (request, expected) in requests(&sim.dma) {
                let kind = request.kind();
                {
                    let mut s = sim.state.lock().unwrap();
                    s.status_override = Some(status);
                    s.len_override = Some(0);
                }
                let c = run(&mut sim, &mut drv, 0, request);
                assert_eq!(
                    c.result,
                    Err(BlkDriverError::UsedLength { len: 0, expected }),
                    "packed={packed} {kind:?} status {status}"
                );
            }
        }
    }
}

#[test]
fn a_stale_ok_in_a_reused_status_byte_is_not_an_answer() {
    for packed in [false, true] {
        let (mut sim, mut drv) = device(packed);
        for (request, expected) in requests(&sim.dma) {
            let kind = request.kind();
            // A request answered OK leaves 0 (S_OK) in a status byte that goes back to the pool.
            assert_eq!(
                run(&mut sim, &mut drv, 0, Request::Flush).result,
                Ok(Output::Done)
            );
            // The next request reuses it; the device neither writes it nor claims to.
            {
                let mut s = sim.state.lock().unwrap();
                s.skip_status = true;
                s.len_override = Some(0);
            }
            let c = run(&mut sim, &mut drv, 0, request);
            assert_eq!(
                c.result,
                Err(BlkDriverError::UsedLength { len: 0, expected }),
                "packed={packed} {kind:?}"
            );
            let mut s = sim.state.lock().unwrap();
            s.skip_status = false;
            s.len_override = None;
        }
    }
}

#[test]
fn an_ok_needs_every_byte_the_device_had_to_write() {
    for packed in [false, true] {
        let (mut sim, mut drv) = device(packed);
        // For each request: 1 (the status byte alone) and one byte short of the status.
        for (request_len, short) in [(513u32, [1u32, 512]), (21, [1, 20])] {
            for len in short {
                let request = if request_len == 513 {
                    Request::Read {
                        sector: 0,
                        buffers: vec![buf(&sim.dma, 512, 0)],
                    }
                } else {
                    Request::GetId
                };
                let kind = request.kind();
                sim.state.lock().unwrap().len_override = Some(len);
                let c = run(&mut sim, &mut drv, 0, request);
                assert_eq!(
                    c.result,
                    Err(BlkDriverError::UsedLength {
                        len,
                        expected: request_len
                    }),
                    "packed={packed} {kind:?} len {len}"
                );
            }
        }
        // The full length is an answer, and a get-id answer carries the id.
        sim.state.lock().unwrap().len_override = None;
        match run(&mut sim, &mut drv, 0, Request::GetId).result {
            Ok(Output::Id(id)) => assert_eq!(id.as_str(), "VIREO-SERIAL"),
            other => panic!("packed={packed}: get-id answered {other:?}"),
        }
    }
}

#[test]
fn an_error_status_with_only_the_status_byte_written_is_the_answer() {
    // A device that fails a read writes no data: a used length of 1 with IOERR or UNSUPP is
    // its answer, and the caller's buffer comes back.
    for packed in [false, true] {
        let (mut sim, mut drv) = device(packed);
        for (status, error) in [
            (1u8, BlkDriverError::IoError),
            (2, BlkDriverError::DeviceUnsupported),
        ] {
            {
                let mut s = sim.state.lock().unwrap();
                s.status_override = Some(status);
                s.len_override = Some(1);
            }
            let buffers = vec![buf(&sim.dma, 512, 0)];
            let c = run(&mut sim, &mut drv, 0, Request::Read { sector: 0, buffers });
            assert_eq!(c.result, Err(error), "packed={packed}");
            assert_eq!(c.buffers.len(), 1);
        }
    }
}
