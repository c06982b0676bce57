//! The modern virtio-pci transport against the register-level fake device: the whole
//! initialisation sequence, queue programming for both layouts, feature windows, notifications,
//! ISR, queue reset and device configuration access.

mod support;

use support::GuestDma;
use vireo_virtio::{
    Notifier,
    transport::{
        Device, PciTransport, Transport, TransportError, WaitBudget,
        fake::{AREA_LEN, FakeCap, FakeClock, FakePci, FakePlatform, Hostility, NOTIFY_MULTIPLIER},
    },
    virtio_spec::F,
};

const BLK: u16 = 2;
const BUDGET_NS: u64 = 1_000_000;

fn bits(f: F) -> u128 {
    f.bits().to_ne()
}

fn fake(features: F) -> FakePci {
    let config: Vec<u8> = (0..24).collect();
    FakePci::new(BLK, bits(features), &[256, 100, 0], &config)
}

fn transport(fake: &FakePci) -> PciTransport<FakePlatform> {
    PciTransport::new(fake.platform()).expect("transport")
}

fn init(fake: &FakePci, wanted: F) -> Result<Device<PciTransport<FakePlatform>>, TransportError> {
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, BUDGET_NS);
    Device::init(transport(fake), BLK, wanted, &mut budget)
}

#[test]
fn settle_drops_features_whose_requirements_are_missing() {
    let offered = F::VERSION_1 | F::EVENT_IDX | F::INDIRECT_DESC;
    let fake = fake(offered);
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, BUDGET_NS);
    let wanted = F::EVENT_IDX | F::INDIRECT_DESC | F::RING_PACKED;
    let mut seen = F::empty();
    // The driver drops INDIRECT_DESC and tries to add a bit the device does not offer, and to
    // drop VERSION_1: neither sticks.
    let device = Device::init_with(
        transport(&fake),
        BLK,
        wanted,
        |f| {
            seen = f;
            (f - F::INDIRECT_DESC - F::VERSION_1) | F::RING_PACKED
        },
        &mut budget,
    )
    .expect("init");
    assert_eq!(seen, offered, "settle sees what would be accepted");
    assert_eq!(device.features(), F::VERSION_1 | F::EVENT_IDX);
    assert_eq!(fake.driver_features(), bits(device.features()));
}

#[test]
fn init_create_split_queues_driver_ok() {
    let offered = F::VERSION_1 | F::EVENT_IDX | F::INDIRECT_DESC | F::ACCESS_PLATFORM;
    let fake = fake(offered);
    let mut device = init(&fake, F::EVENT_IDX | F::INDIRECT_DESC).expect("init");
    assert_eq!(
        device.features(),
        F::VERSION_1 | F::EVENT_IDX | F::INDIRECT_DESC
    );
    assert_eq!(fake.driver_features(), bits(device.features()));
    assert_eq!(fake.status(), 0x0b); // ACKNOWLEDGE | DRIVER | FEATURES_OK

    let dma = GuestDma::new(4 << 20);
    let vq0 = device.create_queue(0, 1024, dma.clone(), Some(1)).unwrap();
    let q0 = fake.queue(0);
    let addresses = vq0.ring_addresses();
    assert_eq!(
        (vq0.size(), q0.size, q0.enable, q0.msix_vector),
        (256, 256, 1, 1)
    );
    assert_eq!(
        (q0.desc, q0.driver, q0.device),
        (
            addresses.descriptor_area,
            addresses.driver_area,
            addresses.device_area
        )
    );
    assert_ne!(q0.desc >> 32, 0, "the fake's DMA addresses use both halves");

    // 100 is not a power of two: a split queue rounds down to 64.
    let vq1 = device.create_queue(1, 1024, dma.clone(), None).unwrap();
    let q1 = fake.queue(1);
    assert_eq!((vq1.size(), q1.size, q1.msix_vector), (64, 64, 0xffff));
    assert_eq!(q1.desc, vq1.ring_addresses().descriptor_area);
    // Queue 2 has size 0 (absent); queue 3 does not exist.
    let err = device.create_queue(2, 1024, dma.clone(), None).err();
    assert_eq!(err, Some(TransportError::QueueUnavailable));
    let err = device.create_queue(3, 1024, dma, None).err();
    assert_eq!(err, Some(TransportError::QueueUnavailable));

    device.driver_ok().unwrap();
    assert_eq!(fake.status(), 0x0f);
}

#[test]
fn packed_queue_keeps_its_size_and_addresses() {
    let fake = fake(F::VERSION_1 | F::RING_PACKED);
    let mut device = init(&fake, F::RING_PACKED).expect("init");
    let dma = GuestDma::new(4 << 20);
    let vq = device.create_queue(1, 1024, dma.clone(), Some(7)).unwrap();
    let q = fake.queue(1);
    let addresses = vq.ring_addresses();
    assert_eq!(
        (vq.size(), q.size, q.enable, q.msix_vector),
        (100, 100, 1, 7)
    );
    assert_eq!(
        (q.desc, q.driver, q.device),
        (
            addresses.descriptor_area,
            addresses.driver_area,
            addresses.device_area
        )
    );
    let vq0 = device.create_queue(0, 32, dma, None).unwrap();
    assert_eq!((vq0.size(), fake.queue(0).size), (32, 32));
    device.driver_ok().unwrap();
}

#[test]
fn second_setup_of_an_enabled_queue_is_refused() {
    let fake = fake(F::VERSION_1);
    let mut device = init(&fake, F::empty()).expect("init");
    let dma = GuestDma::new(4 << 20);
    let vq = device.create_queue(0, 16, dma, None).unwrap();
    let again = device
        .transport_mut()
        .setup_queue(0, 16, vq.ring_addresses(), None);
    assert_eq!(again, Err(TransportError::QueueUnavailable));
    let too_big = device
        .transport_mut()
        .setup_queue(1, 128, vq.ring_addresses(), None);
    assert_eq!(too_big, Err(TransportError::QueueUnavailable));
}

#[test]
fn feature_windows_round_trip_all_128_bits() {
    for pattern in [
        u128::MAX,
        0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        1 | (1 << 32) | (1 << 64) | (1 << 96) | (1 << 127),
    ] {
        let fake = FakePci::new(BLK, pattern, &[8], &[]);
        let mut t = transport(&fake);
        assert_eq!(bits(t.device_features()), pattern);
        t.set_driver_features(F::from_bits_retain(pattern.into()));
        assert_eq!(fake.driver_features(), pattern);
        t.set_driver_features(F::from_bits_retain((!pattern).into()));
        assert_eq!(fake.driver_features(), !pattern);
    }
}

#[test]
fn device_type_mismatch_leaves_device_alone() {
    let fake = fake(F::VERSION_1);
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, BUDGET_NS);
    let err = Device::init(transport(&fake), 1, F::empty(), &mut budget).err();
    assert_eq!(err, Some(TransportError::WrongDeviceType));
    assert_eq!(fake.status(), 0);
}

#[test]
fn legacy_only_device_fails_negotiation() {
    let fake = fake(F::EVENT_IDX);
    assert!(matches!(
        init(&fake, F::EVENT_IDX).err(),
        Some(TransportError::Features(_))
    ));
    assert_eq!(fake.status() & 0x80, 0x80, "FAILED set");
}

#[test]
fn reset_that_takes_a_few_polls_is_waited_for() {
    let fake = fake(F::VERSION_1);
    fake.set_hostility(Hostility {
        reset_polls: Some(5),
        ..Hostility::default()
    });
    init(&fake, F::empty()).expect("init after a slow reset");
}

#[test]
fn notifier_writes_queue_index_at_its_offset() {
    let fake = fake(F::VERSION_1);
    fake.set_queue_notify_off(1, 5);
    let mut device = init(&fake, F::empty()).expect("init");
    let n0 = device.transport_mut().notifier(0).unwrap();
    let n1 = device.transport_mut().notifier(1).unwrap();
    assert_eq!(n0.offset(), 0);
    assert_eq!(n1.offset(), 5 * NOTIFY_MULTIPLIER as usize);
    n1.notify(1, None);
    n0.notify(0, None);
    // Without VIRTIO_F_NOTIFICATION_DATA the data is never written, even if offered.
    n1.notify(1, Some(0x8003_0001));
    assert_eq!(
        fake.take_notifications(),
        [(20, 2, 1), (0, 2, 0), (20, 2, 1)]
    );
    let debug = format!("{n1:?}");
    for field in ["offset: 20", "wide: false", "queue_value: 1"] {
        assert!(debug.contains(field), "{debug} lacks {field}");
    }
}

/// `VIRTIO_F_NOTIF_CONFIG_DATA` is not implemented, so it is not accepted when offered: a
/// notification names its queue by index (in the low 16 bits of 32-bit notification data too),
/// whatever the device's `queue_notify_data` holds (virtio 1.2 §4.1.4.3, §4.1.5.2).
#[test]
fn notifications_name_the_queue_by_index_without_notif_config_data() {
    let offered = F::VERSION_1 | F::NOTIF_CONFIG_DATA | F::NOTIFICATION_DATA;
    for (wanted, expected) in [
        (F::empty(), [(12, 2, 1), (12, 2, 1)]),
        (
            F::NOTIF_CONFIG_DATA | F::NOTIFICATION_DATA,
            [(12, 4, 0x8003_0001), (12, 2, 1)],
        ),
    ] {
        let fake = fake(offered);
        fake.set_queue_notify_off(1, 3);
        fake.set_queue_notify_data(1, 0x0777);
        let mut device = init(&fake, wanted).expect("init");
        assert_eq!(fake.driver_features() & bits(F::NOTIF_CONFIG_DATA), 0);
        let n1 = device.transport_mut().notifier(1).unwrap();
        n1.notify(1, Some(0x8003_0001));
        n1.notify(1, None);
        assert_eq!(fake.take_notifications(), expected, "{wanted:?}");
    }
}

/// A common configuration structure of virtio 1.0's size (56 bytes) ends before
/// `queue_notify_data` and `queue_reset`: a queue reset is not attempted even with
/// `VIRTIO_F_RING_RESET` negotiated, and the queue keeps running.
#[test]
fn a_virtio_1_0_common_structure_has_no_queue_reset() {
    let fake = fake(F::VERSION_1 | F::RING_RESET);
    let mut caps = FakeCap::standard(24);
    caps[0].length = 56;
    fake.set_caps(&caps);
    let mut device = init(&fake, F::RING_RESET).expect("init");
    assert_ne!(fake.driver_features() & bits(F::RING_RESET), 0);
    let dma = GuestDma::new(4 << 20);
    let _vq = device.create_queue(0, 64, dma, None).unwrap();
    device.driver_ok().unwrap();
    let n0 = device.transport_mut().notifier(0).unwrap();
    n0.notify(0, None);
    assert_eq!(fake.take_notifications(), [(0, 2, 0)]);
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, BUDGET_NS);
    assert_eq!(
        device.transport_mut().reset_queue(0, &mut budget),
        Ok(false)
    );
    assert_eq!(fake.queue(0).enable, 1);
}

#[test]
fn notifier_writes_notification_data_when_negotiated() {
    let fake = fake(F::VERSION_1 | F::NOTIFICATION_DATA);
    fake.set_queue_notify_off(1, 3);
    let mut device = init(&fake, F::NOTIFICATION_DATA).expect("init");
    let n1 = device.transport_mut().notifier(1).unwrap();
    n1.notify(1, Some(0x8003_0001));
    n1.notify(1, None);
    assert_eq!(
        fake.take_notifications(),
        [(12, 4, 0x8003_0001), (12, 2, 1)]
    );
}

#[test]
fn notify_region_edge_is_checked_for_the_access_width() {
    // The notify area is 0x1000 bytes: the last 2-byte register is at 0xffe, the last 4-byte one
    // at 0xffc.
    let fake = fake(F::VERSION_1 | F::NOTIFICATION_DATA);
    fake.set_queue_notify_off(0, 0x400); // multiplier 4: offset 0x1000, just outside
    fake.set_queue_notify_off(1, 0x3ff); // offset 0xffc: the last 4-byte register
    let mut device = init(&fake, F::NOTIFICATION_DATA).expect("init");
    let t = device.transport_mut();
    assert_eq!(t.notifier(0).err(), Some(TransportError::BadCapability));
    assert_eq!(t.notifier(1).unwrap().offset(), 0xffc);
    assert_eq!(t.notifier(2).unwrap().offset(), 8);
    assert_eq!(t.notifier(3).err(), Some(TransportError::QueueUnavailable));
}

#[test]
fn isr_ack_reads_and_clears() {
    let fake = fake(F::VERSION_1);
    let mut t = transport(&fake);
    assert_eq!(t.ack_interrupt(), Default::default());
    fake.raise_isr(1);
    let cause = t.ack_interrupt();
    assert!(cause.queue && !cause.config);
    fake.raise_isr(3);
    let cause = t.ack_interrupt();
    assert!(cause.queue && cause.config);
    assert_eq!(t.ack_interrupt(), Default::default());
}

#[test]
fn config_vector_is_programmed() {
    let fake = fake(F::VERSION_1);
    let mut t = transport(&fake);
    t.set_config_vector(Some(9)).unwrap();
    assert_eq!(fake.config_msix_vector(), 9);
    t.set_config_vector(None).unwrap();
    assert_eq!(fake.config_msix_vector(), 0xffff);
}

#[test]
fn ring_reset_resets_and_reprograms_one_queue() {
    let fake = fake(F::VERSION_1 | F::RING_RESET);
    fake.set_hostility(Hostility {
        queue_reset_polls: Some(3),
        ..Hostility::default()
    });
    let mut device = init(&fake, F::RING_RESET).expect("init");
    let dma = GuestDma::new(4 << 20);
    let mut vq = device.create_queue(0, 64, dma, Some(2)).unwrap();
    device.driver_ok().unwrap();
    assert_eq!(fake.queue(0).enable, 1);

    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, BUDGET_NS);
    assert_eq!(device.transport_mut().reset_queue(0, &mut budget), Ok(true));
    let q = fake.queue(0);
    assert_eq!((q.enable, q.desc, q.size), (0, 0, 256));

    assert!(vq.reset().is_empty());
    device
        .transport_mut()
        .setup_queue(0, vq.size(), vq.ring_addresses(), Some(2))
        .unwrap();
    let q = fake.queue(0);
    assert_eq!((q.enable, q.size, q.msix_vector), (1, 64, 2));
    assert_eq!(q.desc, vq.ring_addresses().descriptor_area);
    assert_eq!(fake.status(), 0x0f, "the device itself was not reset");
}

#[test]
fn ring_reset_not_negotiated_is_not_attempted() {
    let fake = fake(F::VERSION_1 | F::RING_RESET);
    let mut device = init(&fake, F::empty()).expect("init");
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, BUDGET_NS);
    assert_eq!(
        device.transport_mut().reset_queue(0, &mut budget),
        Ok(false)
    );
}

/// The transport's `Debug` output (what the kernel's device listing prints) names the device
/// type and how much of each structure is mapped.
#[test]
fn debug_output_names_the_device_and_its_mapped_structures() {
    let fake = fake(F::VERSION_1);
    let debug = format!("{:?}", transport(&fake));
    for field in [
        format!("device_type: {BLK}"),
        format!("common_len: {AREA_LEN}"),
        format!("notify_len: {AREA_LEN}"),
        format!("notify_off_multiplier: {NOTIFY_MULTIPLIER}"),
        "device_cfg_len: Some(24)".to_string(),
    ] {
        assert!(debug.contains(&field), "{debug} lacks {field}");
    }
    // A device without configuration has none mapped.
    fake.set_caps(&FakeCap::standard(0));
    let debug = format!("{:?}", transport(&fake));
    assert!(debug.contains("device_cfg_len: None"), "{debug}");
}

#[test]
fn device_config_accesses_are_sized_and_bounded() {
    let fake = fake(F::VERSION_1);
    let mut device = init(&fake, F::empty()).expect("init");
    assert_eq!(device.transport().config_len(), 24);
    let mut b1 = [0u8; 1];
    let mut b2 = [0u8; 2];
    let mut b4 = [0u8; 4];
    let mut b8 = [0u8; 8];
    let mut b3 = [0u8; 3];
    device.read_config(1, &mut b1).unwrap();
    device.read_config(2, &mut b2).unwrap();
    device.read_config(4, &mut b4).unwrap();
    device.read_config(8, &mut b8).unwrap();
    device.read_config(5, &mut b3).unwrap();
    assert_eq!(b1, [1]);
    assert_eq!(b2, [2, 3]);
    assert_eq!(b4, [4, 5, 6, 7]);
    assert_eq!(b8, [8, 9, 10, 11, 12, 13, 14, 15]);
    assert_eq!(b3, [5, 6, 7]);
    let mut last = [0u8; 4];
    device.read_config(20, &mut last).unwrap();
    assert_eq!(last, [20, 21, 22, 23]);

    for (offset, len) in [(21, 4), (24, 1), (usize::MAX, 2), (0, 25)] {
        let mut buf = vec![0u8; len];
        assert_eq!(
            device.read_config(offset, &mut buf),
            Err(TransportError::ConfigOutOfRange)
        );
        assert_eq!(
            device.transport_mut().write_config_raw(offset, &buf),
            Err(TransportError::ConfigOutOfRange)
        );
    }
    device.read_config(24, &mut []).unwrap();

    let t = device.transport_mut();
    t.write_config_raw(3, &[0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5])
        .unwrap();
    t.write_config_raw(16, &0xdead_beef_u32.to_le_bytes())
        .unwrap();
    let config = fake.device_config();
    assert_eq!(&config[2..10], &[2, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 9]);
    assert_eq!(&config[16..20], &0xdead_beef_u32.to_le_bytes());
}

#[test]
fn config_generation_settling_after_a_few_changes_is_read() {
    let fake = fake(F::VERSION_1);
    let device = init(&fake, F::empty()).expect("init");
    fake.set_hostility(Hostility {
        generation_changes: 5,
        ..Hostility::default()
    });
    let mut buf = [0u8; 4];
    device.read_config(4, &mut buf).unwrap();
    assert_eq!(buf, [4, 5, 6, 7]);
}

#[test]
fn config_change_moves_generation_and_raises_isr() {
    let fake = fake(F::VERSION_1);
    let mut device = init(&fake, F::empty()).expect("init");
    let before = device.transport().config_generation();
    fake.set_device_config(&[0xaa; 8]);
    assert_ne!(device.transport().config_generation(), before);
    assert!(device.transport_mut().ack_interrupt().config);
    let mut buf = [0u8; 8];
    device.read_config(0, &mut buf).unwrap();
    assert_eq!(buf, [0xaa; 8]);
    assert_eq!(
        device.transport().config_len(),
        24,
        "the capability's length stays"
    );
}
