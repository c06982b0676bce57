//! What a log shows of the queue layer. Every queue, feature and transport error says what a
//! user can do about it: the errors a misconfigured or misbehaving device produces at bring-up
//! carry the hint that names the fix. Every error's message tells the variants apart and
//! carries the values a device reported; a failed dispatch prints its reason and its token; a
//! DMA buffer prints its size, never its contents.

use vireo_virtio::{
    AvailBufferToken, BufferType, DmaBuffer, FeatureError, Notifier, QueueError, SplitVq, Virtq,
    mock::GuestDma,
    negotiate,
    transport::{
        Device, MmioTransport, TransportError, WaitBudget,
        fake::{FakeClock, FakeMmio, Hostility},
    },
    virtio_spec::F,
};

const BLK: u16 = 2;

fn hint(e: TransportError) -> &'static str {
    e.hint().unwrap_or_else(|| panic!("{e}: no hint"))
}

/// Brings up a fake block device offering `features` with queues of `sizes`, misbehaving as
/// `hostility` says, and creates its first queue.
fn bring_up(features: F, sizes: &[u16], hostility: Hostility) -> TransportError {
    let fake = FakeMmio::new(BLK, features.bits().to_ne(), sizes, &[0; 60]);
    fake.set_hostility(hostility);
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, 1_000_000);
    let transport = MmioTransport::new(fake).expect("a version-2 window");
    let mut device = match Device::init(transport, BLK, F::empty(), &mut budget) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let dma = vireo_virtio::mock::GuestDma::new(1 << 20);
    match device.create_queue(0, 64, dma, Some(1)) {
        Ok(_) => panic!("the device came up"),
        Err(e) => e,
    }
}

#[test]
fn a_legacy_device_is_told_to_turn_modern() {
    let e = bring_up(F::empty(), &[64], Hostility::default());
    assert_eq!(
        e,
        TransportError::Features(FeatureError::Version1NotOffered)
    );
    let h = hint(e);
    assert!(h.contains("disable-legacy=on"), "{h}");
    assert!(h.contains("virtio-mmio.force-legacy=false"), "{h}");
}

#[test]
fn a_refused_feature_set_names_iommu_platform() {
    let hostility = Hostility {
        reject_features: true,
        ..Hostility::default()
    };
    let e = bring_up(F::VERSION_1, &[64], hostility);
    assert_eq!(e, TransportError::FeaturesRejected);
    assert!(hint(e).contains("iommu_platform=on"), "{}", hint(e));
}

#[test]
fn a_reset_that_never_ends_suggests_another_accelerator() {
    let hostility = Hostility {
        reset_polls: None,
        ..Hostility::default()
    };
    let e = bring_up(F::VERSION_1, &[64], hostility);
    assert_eq!(e, TransportError::Timeout);
    assert!(hint(e).contains("--accel tcg"), "{}", hint(e));
}

#[test]
fn a_missing_queue_names_the_queue_properties() {
    let e = bring_up(F::VERSION_1, &[0], Hostility::default());
    assert_eq!(e, TransportError::QueueUnavailable);
    assert!(hint(e).contains("queue-size="), "{}", hint(e));
}

#[test]
fn a_queue_error_inside_a_transport_error_keeps_its_hint() {
    for q in [QueueError::ChainTooLong, QueueError::AllocFailed] {
        assert_eq!(TransportError::Queue(q).hint(), q.hint());
    }
    assert!(
        QueueError::ChainTooLong
            .hint()
            .unwrap()
            .contains("vireo.blk.queue_size=")
    );
    assert!(QueueError::AllocFailed.hint().unwrap().contains("-m"));
}

#[test]
fn protocol_violations_say_the_device_is_broken() {
    // The variants from `UsedIdOutOfRange` on.
    let violations = &all_queue_errors()[8..];
    for v in violations {
        let h = v.hint().unwrap();
        assert!(h.contains("broke the virtio protocol"), "{v}: {h}");
    }
    for e in [
        TransportError::ConfigOutOfRange,
        TransportError::ConfigUnstable,
    ] {
        assert!(hint(e).contains("report a bug"), "{e}");
    }
    // A driver bug is not blamed on the device.
    let h = QueueError::EmptyToken.hint().unwrap();
    assert!(h.contains("driver bug"), "{h}");
}

#[test]
fn every_transport_error_has_a_hint() {
    let all = [
        TransportError::Timeout,
        TransportError::BadCapability,
        TransportError::MapFailed,
        TransportError::NotVirtio,
        TransportError::Features(FeatureError::Version1NotOffered),
        TransportError::FeaturesRejected,
        TransportError::DeviceNeedsReset,
        TransportError::VectorRejected,
        TransportError::QueueUnavailable,
        TransportError::ConfigOutOfRange,
        TransportError::ConfigUnstable,
        TransportError::WrongDeviceType,
        TransportError::Queue(QueueError::InvalidQueueSize),
    ];
    for e in all {
        assert!(!hint(e).is_empty(), "{e}");
    }
    // The messages tell every error apart.
    let messages: Vec<String> = all.iter().map(ToString::to_string).collect();
    for (i, m) in messages.iter().enumerate() {
        assert!(m.len() >= 10 && !messages[..i].contains(m), "`{m}`");
    }
    assert!(hint(TransportError::BadCapability).contains("disable-modern=on"));
    assert!(hint(TransportError::VectorRejected).contains("polled=on"));
}

/// The dispatch below fails before any notification.
struct NoKicks;

impl Notifier for NoKicks {
    fn notify(&self, _: u16, _: Option<u32>) {}
}

/// Every `QueueError`, with the values a device-reported one carries.
fn all_queue_errors() -> [QueueError; 13] {
    [
        QueueError::EmptyToken,
        QueueError::EmptyElement,
        QueueError::ElementTooLarge,
        QueueError::ChainTooLong,
        QueueError::QueueFull,
        QueueError::IndirectNotNegotiated,
        QueueError::AllocFailed,
        QueueError::InvalidQueueSize,
        QueueError::UsedIdOutOfRange { id: 70_001 },
        QueueError::UsedIdNotInFlight { id: 70_002 },
        QueueError::WrittenLenTooLarge {
            len: 70_003,
            capacity: 70_004,
        },
        QueueError::UsedIndexAhead {
            used_idx: 60_005,
            last_used_idx: 60_006,
        },
        QueueError::UsedWithoutInFlight,
    ]
}

#[test]
fn queue_error_messages_are_distinct_and_carry_the_device_values() {
    let messages: Vec<String> = all_queue_errors().iter().map(|e| e.to_string()).collect();
    for (i, m) in messages.iter().enumerate() {
        assert!(m.len() >= 10, "{:?}: `{m}`", all_queue_errors()[i]);
        assert!(
            !messages[..i].contains(m),
            "two variants print the same message `{m}`"
        );
    }
    for (e, values) in [
        (QueueError::UsedIdOutOfRange { id: 70_001 }, &["70001"][..]),
        (QueueError::UsedIdNotInFlight { id: 70_002 }, &["70002"]),
        (
            QueueError::WrittenLenTooLarge {
                len: 70_003,
                capacity: 70_004,
            },
            &["70003", "70004"],
        ),
        (
            QueueError::UsedIndexAhead {
                used_idx: 60_005,
                last_used_idx: 60_006,
            },
            &["60005", "60006"],
        ),
    ] {
        let m = e.to_string();
        for v in values {
            assert!(m.contains(v), "`{m}` lacks {v}");
        }
    }
    // The ones a user meets first name what is wrong.
    assert!(
        QueueError::QueueFull
            .to_string()
            .contains("free descriptors")
    );
    assert!(
        QueueError::IndirectNotNegotiated
            .to_string()
            .contains("VIRTIO_F_INDIRECT_DESC")
    );
}

#[test]
fn feature_error_names_the_missing_feature() {
    assert!(
        FeatureError::Version1NotOffered
            .to_string()
            .contains("VIRTIO_F_VERSION_1")
    );
}

#[test]
fn a_failed_dispatch_prints_its_reason_and_its_token() {
    let dma = GuestDma::new(1 << 20);
    let features = negotiate(F::VERSION_1, F::empty()).unwrap();
    let mut vq = SplitVq::new(0, 2, features, dma.clone(), NoKicks).unwrap();
    let token = AvailBufferToken::new(vec![dma.buffer(&[1, 2, 3])], Vec::new()).with_tag(4242);
    let err = vq.dispatch(token, BufferType::Indirect).unwrap_err();
    assert_eq!(
        err.to_string(),
        QueueError::IndirectNotNegotiated.to_string()
    );
    let debug = format!("{err:?}");
    for part in ["IndirectNotNegotiated", "tag: 4242", "readable_bytes: 3"] {
        assert!(debug.contains(part), "`{part}` missing from {debug}");
    }
}

#[test]
fn a_dma_buffer_prints_its_size_not_its_contents() {
    let dma = GuestDma::new(1 << 20);
    let mut buffer = DmaBuffer::from_slice_in(&[0xEE; 40], dma).unwrap();
    assert!(buffer.set_len(24));
    let debug = format!("{buffer:?}");
    for part in ["DmaBuffer", "len: 24", "capacity: 40"] {
        assert!(debug.contains(part), "`{part}` missing from {debug}");
    }
    assert!(!debug.contains("238"), "contents printed: {debug}");
}
