//! Every queue, feature and transport error says what a user can do about it: the errors a
//! misconfigured or misbehaving device produces at bring-up carry the hint that names the fix.

use vireo_virtio::{
    FeatureError, QueueError,
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
    let violations = [
        QueueError::UsedIdOutOfRange { id: 9 },
        QueueError::UsedIdNotInFlight { id: 1 },
        QueueError::WrittenLenTooLarge {
            len: 10,
            capacity: 4,
        },
        QueueError::UsedIndexAhead {
            used_idx: 5,
            last_used_idx: 1,
        },
        QueueError::UsedWithoutInFlight,
    ];
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
    assert!(hint(TransportError::BadCapability).contains("disable-modern=on"));
    assert!(hint(TransportError::VectorRejected).contains("polled=on"));
}
