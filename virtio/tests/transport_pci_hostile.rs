//! The virtio-pci transport against a hostile fake device: every bad answer is a typed error,
//! never a panic or a hang (waits use a clock that advances per reading, so they end at once).

mod support;

use support::GuestDma;
use vireo_virtio::{
    transport::{
        Device, PciTransport, Transport, TransportError, WaitBudget,
        fake::{
            AREA_LEN, COMMON_OFFSET, DEVICE_OFFSET, FAKE_BAR, FAKE_BAR_SIZE, FIRST_CAP, FakeCap,
            FakeClock, FakePci, FakePlatform, Hostility, ISR_OFFSET, NOTIFY_OFFSET,
        },
    },
    virtio_spec::F,
};

const BLK: u16 = 2;
const COMMON: u8 = 1;
const NOTIFY: u8 = 2;
const ISR: u8 = 3;
const DEVICE: u8 = 4;

fn fake(features: F) -> FakePci {
    FakePci::new(BLK, features.bits().to_ne(), &[64, 64], &[0; 16])
}

fn init(fake: &FakePci, wanted: F) -> Result<Device<PciTransport<FakePlatform>>, TransportError> {
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, 1_000_000);
    let transport = PciTransport::new(fake.platform())?;
    Device::init(transport, BLK, wanted, &mut budget)
}

fn hostile(hostility: Hostility) -> FakePci {
    let fake = fake(F::VERSION_1);
    fake.set_hostility(hostility);
    fake
}

#[test]
fn reset_that_never_completes_times_out() {
    let fake = hostile(Hostility {
        reset_polls: None,
        ..Hostility::default()
    });
    assert_eq!(init(&fake, F::empty()).err(), Some(TransportError::Timeout));
    // Reset past the budget: 1 ms budget, 1 µs per clock reading.
    let fake = hostile(Hostility {
        reset_polls: Some(10_000),
        ..Hostility::default()
    });
    assert_eq!(init(&fake, F::empty()).err(), Some(TransportError::Timeout));
}

#[test]
fn features_ok_cleared_is_rejection() {
    let fake = hostile(Hostility {
        reject_features: true,
        ..Hostility::default()
    });
    assert_eq!(
        init(&fake, F::empty()).err(),
        Some(TransportError::FeaturesRejected)
    );
    assert_eq!(fake.status() & 0x80, 0x80, "FAILED set");
}

#[test]
fn config_generation_that_never_settles_is_unstable() {
    let fake = fake(F::VERSION_1);
    let device = init(&fake, F::empty()).unwrap();
    fake.set_hostility(Hostility {
        generation_changes: u32::MAX,
        ..Hostility::default()
    });
    let mut buf = [0u8; 8];
    assert_eq!(
        device.read_config(0, &mut buf),
        Err(TransportError::ConfigUnstable)
    );
}

#[test]
fn refused_msix_vectors_are_reported() {
    let fake = hostile(Hostility {
        refuse_vectors: true,
        ..Hostility::default()
    });
    let mut device = init(&fake, F::empty()).unwrap();
    let dma = GuestDma::new(1 << 20);
    assert_eq!(
        device.create_queue(0, 64, dma.clone(), Some(1)).err(),
        Some(TransportError::VectorRejected)
    );
    assert_eq!(fake.queue(0).enable, 0, "not enabled after a refusal");
    assert_eq!(
        device.transport_mut().set_config_vector(Some(0)),
        Err(TransportError::VectorRejected)
    );
    // Without a vector there is nothing to refuse.
    device.transport_mut().set_config_vector(None).unwrap();
    device.create_queue(1, 64, dma, None).unwrap();
}

#[test]
fn queue_reset_that_never_completes_times_out() {
    let fake = fake(F::VERSION_1 | F::RING_RESET);
    fake.set_hostility(Hostility {
        queue_reset_polls: None,
        ..Hostility::default()
    });
    let mut device = init(&fake, F::RING_RESET).unwrap();
    let dma = GuestDma::new(1 << 20);
    let _vq = device.create_queue(0, 64, dma, None).unwrap();
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, 1_000_000);
    assert_eq!(
        device.transport_mut().reset_queue(0, &mut budget),
        Err(TransportError::Timeout)
    );
}

#[test]
fn huge_notify_off_is_a_bad_capability() {
    let fake = fake(F::VERSION_1);
    fake.set_queue_notify_off(0, u16::MAX);
    let mut device = init(&fake, F::empty()).unwrap();
    let dma = GuestDma::new(1 << 20);
    assert_eq!(
        device.create_queue(0, 64, dma, None).err(),
        Some(TransportError::BadCapability)
    );
}

#[test]
fn notify_register_must_fit_and_align_for_notification_data() {
    // Multiplier 2, notify_off 0x7ff: offset 0xffe holds a 16-bit register but not a 32-bit one.
    let caps = with(NOTIFY, |c| c.notify_off_multiplier = 2);
    for (wanted, expected) in [
        (F::empty(), Ok(0xffe)),
        (F::NOTIFICATION_DATA, Err(TransportError::BadCapability)),
    ] {
        let fake = fake(F::VERSION_1 | F::NOTIFICATION_DATA);
        fake.set_caps(&caps);
        fake.set_queue_notify_off(0, 0x7ff);
        let mut device = init(&fake, wanted).unwrap();
        let offset = device.transport_mut().notifier(0).map(|n| n.offset());
        assert_eq!(offset, expected);
    }
    // Offset 2 is aligned for 16 bits only.
    let fake = fake(F::VERSION_1 | F::NOTIFICATION_DATA);
    fake.set_caps(&caps);
    fake.set_queue_notify_off(0, 1);
    let mut device = init(&fake, F::NOTIFICATION_DATA).unwrap();
    let offset = device.transport_mut().notifier(0).map(|n| n.offset());
    assert_eq!(offset, Err(TransportError::BadCapability));
}

/// The standard capabilities with the one of `cfg_type` changed by `change`.
fn with(cfg_type: u8, change: impl Fn(&mut FakeCap)) -> Vec<FakeCap> {
    let mut caps = FakeCap::standard(16);
    caps.iter_mut()
        .filter(|c| c.cfg_type == cfg_type)
        .for_each(change);
    caps
}

fn transport_with_caps(caps: &[FakeCap]) -> Result<PciTransport<FakePlatform>, TransportError> {
    let fake = fake(F::VERSION_1);
    fake.set_caps(caps);
    PciTransport::new(fake.platform())
}

#[test]
fn bad_capabilities_are_rejected() {
    let cases: Vec<(&str, Vec<FakeCap>)> = vec![
        ("no capabilities", vec![]),
        ("no common", without(COMMON)),
        ("no notify", without(NOTIFY)),
        ("no isr", without(ISR)),
        (
            "common past the BAR",
            with(COMMON, |c| c.offset = (FAKE_BAR_SIZE as u32) - 0x800),
        ),
        (
            "device past the BAR",
            with(DEVICE, |c| c.length = FAKE_BAR_SIZE as u32),
        ),
        (
            "notify far past the BAR (offset near 4 GiB)",
            with(NOTIFY, |c| {
                c.offset = 0xffff_f000;
                c.length = 0x2000;
            }),
        ),
        ("common too short", with(COMMON, |c| c.length = 55)),
        ("notify too short", with(NOTIFY, |c| c.length = 1)),
        ("isr empty", with(ISR, |c| c.length = 0)),
        ("common misaligned", with(COMMON, |c| c.offset = 2)),
        (
            "notify misaligned",
            with(NOTIFY, |c| c.offset = NOTIFY_OFFSET + 1),
        ),
        (
            "device misaligned",
            with(DEVICE, |c| c.offset = DEVICE_OFFSET + 2),
        ),
        (
            "odd notify multiplier",
            with(NOTIFY, |c| c.notify_off_multiplier = 3),
        ),
        ("cap_len too short", with(ISR, |c| c.cap_len = 15)),
        (
            "notify cap without multiplier",
            with(NOTIFY, |c| c.cap_len = 16),
        ),
        ("unimplemented BAR", with(COMMON, |c| c.bar = 0)),
        // A reserved BAR index makes the capability ignored (§4.1.4): then common is missing.
        ("reserved BAR", with(COMMON, |c| c.bar = 6)),
        ("BAR 0xff", with(NOTIFY, |c| c.bar = 0xff)),
    ];
    for (name, caps) in cases {
        assert_eq!(
            transport_with_caps(&caps).err(),
            Some(TransportError::BadCapability),
            "{name}"
        );
    }
}

fn without(cfg_type: u8) -> Vec<FakeCap> {
    FakeCap::standard(16)
        .into_iter()
        .filter(|c| c.cfg_type != cfg_type)
        .collect()
}

#[test]
fn malformed_capability_lists_are_rejected() {
    let second = FIRST_CAP + 20;
    let last = FIRST_CAP + 2 * 20; // the third and last one
    let pokes: [(&str, &[(u8, u8)]); 8] = [
        ("no capability-list bit", &[(0x06, 0)]),
        ("first pointer in the header", &[(0x34, 0x3c)]),
        ("first pointer misaligned", &[(0x34, FIRST_CAP + 1)]),
        ("loop to itself", &[(FIRST_CAP + 1, FIRST_CAP)]),
        ("loop back to the start", &[(last + 1, FIRST_CAP)]),
        ("next pointer misaligned", &[(second + 1, 0x42)]),
        // A capability in the last dword: even its `bar` byte is past config space.
        (
            "capability in the last dword",
            &[
                (last + 1, 0xfc),
                (0xfc, 0x09),
                (0xfd, 0),
                (0xfe, 16),
                (0xff, DEVICE),
            ],
        ),
        // A capability at 0xf8 cannot hold 16 bytes.
        (
            "capability past config space",
            &[
                (last + 1, 0xf8),
                (0xf8, 0x09),
                (0xf9, 0),
                (0xfa, 16),
                (0xfb, DEVICE),
            ],
        ),
    ];
    for (name, pokes) in pokes {
        let fake = fake(F::VERSION_1);
        // Without the device capability, so a truncated one at 0xf8 is the first of its type.
        fake.set_caps(&without(DEVICE));
        for &(offset, value) in pokes {
            fake.poke_config(offset, value);
        }
        assert_eq!(
            PciTransport::new(fake.platform()).err(),
            Some(TransportError::BadCapability),
            "{name}"
        );
    }
}

#[test]
fn a_long_chain_of_foreign_capabilities_is_walked_and_bounded() {
    // 48 non-virtio capabilities fill 0x40..0x100 (4 bytes each) and end the list: the virtio
    // ones are unreachable, so the transport reports missing capabilities rather than looping.
    let fake = fake(F::VERSION_1);
    for i in 0..48u8 {
        let at = 0x40 + 4 * i;
        fake.poke_config(at, 0x05); // MSI
        fake.poke_config(at + 1, if i == 47 { 0 } else { at + 4 });
    }
    assert_eq!(
        PciTransport::new(fake.platform()).err(),
        Some(TransportError::BadCapability)
    );
}

#[test]
fn first_capability_of_each_type_is_used() {
    // A second, broken common capability after the good one is ignored; a broken one before it
    // is not (the driver uses the first it can support, and a malformed one is an error).
    let mut caps = FakeCap::standard(16);
    let mut broken = FakeCap::virtio(COMMON, 0x3ffc, 0x1000);
    broken.bar = FAKE_BAR;
    caps.push(broken);
    let fake = fake(F::VERSION_1);
    fake.set_caps(&caps);
    assert!(PciTransport::new(fake.platform()).is_ok());
    caps.insert(0, broken);
    caps.pop();
    fake.set_caps(&caps);
    assert_eq!(
        PciTransport::new(fake.platform()).err(),
        Some(TransportError::BadCapability)
    );
    // Other capability types (PCI cfg access 5, shared memory 8) are skipped.
    let mut caps = FakeCap::standard(16);
    caps.insert(0, FakeCap::virtio(5, 0, 4));
    caps.insert(0, FakeCap::virtio(8, 0xffff_0000, 0xffff));
    fake.set_caps(&caps);
    assert!(PciTransport::new(fake.platform()).is_ok());
}

#[test]
fn missing_device_config_is_an_empty_one() {
    let fake = fake(F::VERSION_1);
    fake.set_caps(&without(DEVICE));
    let t = PciTransport::new(fake.platform()).unwrap();
    assert_eq!(t.config_len(), 0);
    assert_eq!(
        t.read_config_raw(0, &mut [0u8; 1]),
        Err(TransportError::ConfigOutOfRange)
    );
    t.read_config_raw(0, &mut []).unwrap();
}

#[test]
fn identity_is_checked() {
    let foreign = fake(F::VERSION_1);
    foreign.poke_config(0, 0x86); // vendor 0x1a86
    assert_eq!(
        PciTransport::new(foreign.platform()).err(),
        Some(TransportError::NotVirtio)
    );
    for (id, expected) in [
        (0x1001u16, Ok(2)),
        (0x1000, Ok(1)),
        (0x1041, Ok(1)),
        (0x107f, Ok(0x3f)),
        (0x1040, Err(TransportError::NotVirtio)),
        (0x1006, Err(TransportError::NotVirtio)),
        (0x1080, Err(TransportError::NotVirtio)),
        (0xffff, Err(TransportError::NotVirtio)),
    ] {
        let fake = fake(F::VERSION_1);
        fake.poke_config(2, id as u8);
        fake.poke_config(3, (id >> 8) as u8);
        let ty = PciTransport::new(fake.platform()).map(|t| t.device_type());
        assert_eq!(ty, expected, "{id:#x}");
    }
}

#[test]
fn areas_are_where_the_capabilities_say() {
    // Sanity check of the fake's layout constants the other tests rely on.
    let caps = FakeCap::standard(16);
    let offsets: Vec<_> = caps.iter().map(|c| (c.cfg_type, c.offset)).collect();
    assert_eq!(
        offsets,
        [
            (COMMON, COMMON_OFFSET),
            (NOTIFY, NOTIFY_OFFSET),
            (ISR, ISR_OFFSET),
            (DEVICE, DEVICE_OFFSET)
        ]
    );
    assert!(caps.iter().all(|c| c.length <= AREA_LEN));
}
