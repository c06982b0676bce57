//! What a log line shows of virtio-blk results: `{:?}` of a completion names the request, its
//! kind, how many buffers came back and the outcome (never the buffers' bytes, which may be
//! megabytes of disk data), and a device id prints as its text.

mod support;

use support::*;
use vireo_drivers::blk::{BlkOptions, Output, Request, SectorRange};

#[test]
fn a_completion_prints_its_outcome_not_its_data() {
    let mut sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    let buffers = vec![buf(&sim.dma, 512, 0xab), buf(&sim.dma, 512, 0xcd)];
    let c = run(&mut sim, &mut drv, 0, Request::Read { sector: 0, buffers });
    assert_eq!(
        format!("{c:?}"),
        format!(
            "Completion {{ id: {:?}, kind: Read, buffers: 2, result: Ok(Done) }}",
            c.id
        )
    );

    let c = run(&mut sim, &mut drv, 0, Request::GetId);
    let Ok(Output::Id(id)) = c.result else {
        panic!("get-id: {:?}", c.result);
    };
    assert_eq!(format!("{id:?}"), r#"DeviceId("VIREO-SERIAL")"#);
    assert_eq!(
        format!("{c:?}"),
        format!(
            r#"Completion {{ id: {:?}, kind: GetId, buffers: 0, result: Ok(Id(DeviceId("VIREO-SERIAL"))) }}"#,
            c.id
        )
    );
}

#[test]
fn a_driver_prints_its_options_and_what_it_knows() {
    let mut sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    run(&mut sim, &mut drv, 0, Request::Flush);
    let text = format!("{drv:?}");
    assert!(
        text.starts_with(&format!(
            "BlkDriver {{ options: {:?}, info: {:?}, queues: 1, buffer_type: ",
            BlkOptions::default(),
            drv.info()
        )),
        "{text}"
    );
    assert!(text.ends_with("next_id: 1, .. }"), "{text}");
}

#[test]
fn every_error_says_what_went_wrong_with_its_figures() {
    use vireo_drivers::blk::BlkDriverError::*;
    use vireo_virtio::transport::TransportError;
    let timeout = TransportError::Timeout.to_string();
    let errors = [
        (OutOfRange, &[][..]),
        (Misaligned, &[]),
        (ReadOnly, &[]),
        (EmptyBuffer, &[]),
        (TooManySegments { max: 17 }, &["17"]),
        (SegmentTooLarge { max: 4099 }, &["4099"]),
        (Unsupported, &[]),
        (NoSuchQueue, &[]),
        (QueueFull, &[]),
        (AllocFailed, &[]),
        (IoError, &[]),
        (DeviceUnsupported, &[]),
        (BadStatus(0x7f), &["0x7f"]),
        (
            UsedLength {
                len: 3,
                expected: 513,
            },
            &["3", "513"],
        ),
        (BadId, &[]),
        (DeviceReset, &[]),
        (BadCapacity, &[]),
        (NotReady, &[]),
        (NeedsReset, &[]),
        (Transport(TransportError::Timeout), &[timeout.as_str()]),
    ];
    check_error_messages(&errors);
}

#[test]
fn a_refused_request_says_why_and_shows_the_request() {
    let sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let mut drv = sim.driver(BlkOptions::default());
    let refused = drv
        .submit(
            0,
            Request::Read {
                sector: 1 << 40,
                buffers: vec![buf(&sim.dma, 512, 0)],
            },
        )
        .unwrap_err();
    assert_eq!(refused.to_string(), refused.error.to_string());
    assert_eq!(
        format!("{refused:?}"),
        format!(
            "SubmitError {{ error: OutOfRange, request: {:?} }}",
            refused.request
        )
    );
}

#[test]
fn a_request_prints_its_shape_not_its_data() {
    let sim = Sim::new(ALL_BLK, &BlkConfig::default());
    let range = SectorRange {
        sector: 8,
        num_sectors: 16,
    };
    let cases = [
        (
            Request::Read {
                sector: 8,
                buffers: vec![buf(&sim.dma, 512, 1), buf(&sim.dma, 1024, 2)],
            },
            "Read { sector: 8, segments: 2, bytes: 1536 }",
        ),
        (
            Request::Write {
                sector: 9,
                buffers: vec![buf(&sim.dma, 4096, 3)],
            },
            "Write { sector: 9, segments: 1, bytes: 4096 }",
        ),
        (Request::Flush, "Flush"),
        (Request::GetId, "GetId"),
        (
            Request::Discard {
                ranges: vec![range],
            },
            "Discard { ranges: [SectorRange { sector: 8, num_sectors: 16 }] }",
        ),
        (
            Request::WriteZeroes {
                ranges: vec![range],
                unmap: true,
            },
            "WriteZeroes { ranges: [SectorRange { sector: 8, num_sectors: 16 }], unmap: true }",
        ),
    ];
    for (request, text) in cases {
        assert_eq!(format!("{request:?}"), text);
    }
}
