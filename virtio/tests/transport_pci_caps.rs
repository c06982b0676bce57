//! One virtio vendor capability read on its own ([`VirtioPciCap::read`]), as the kernel's PCI
//! listing uses it: fields, the notify multiplier, BAR bounds computed without wrapping, and
//! capabilities too short for their type refused. (Moved from the kernel's in-QEMU
//! `pci_caps` test when the kernel's own parser was retired.)

use vireo_virtio::transport::{
    PciPlatform, TransportError, VirtioCap, VirtioCapKind, VirtioPciCap,
    fake::{AREA_LEN, COMMON_OFFSET, FAKE_BAR, FIRST_CAP, FakeCap, FakePci},
    find_virtio_caps, pci_device_type,
};

/// A vendor capability with the given `cap_len`, `cfg_type`, BAR, offset and length.
fn cap(cap_len: u8, cfg_type: u8, bar: u8, offset: u32, length: u32, multiplier: u32) -> FakeCap {
    FakeCap {
        cap_id: 0x09,
        cap_len,
        cfg_type,
        bar,
        offset,
        length,
        notify_off_multiplier: multiplier,
    }
}

/// [`FakePci::set_caps`] puts capabilities 20 bytes apart from [`FIRST_CAP`].
const SECOND_CAP: u8 = FIRST_CAP + 20;

#[test]
fn virtio_capability_parses_and_checks_bounds() {
    let fake = FakePci::new(2, 0, &[], &[]);
    fake.set_caps(&[
        cap(20, 2, 4, 0x3000, 0x1000, 4),
        cap(16, 1, 4, 0xFFFF_FFFF, 2, 0),
    ]);
    let platform = fake.platform();
    let config = platform.config();
    let cap = VirtioPciCap::read(config, FIRST_CAP).unwrap();
    assert_eq!(cap.kind, VirtioCapKind::Notify);
    assert_eq!((cap.bar, cap.offset, cap.length), (4, 0x3000, 0x1000));
    assert_eq!(cap.notify_off_multiplier, Some(4));
    assert!(cap.fits_in(0x4000));
    assert!(!cap.fits_in(0x3FFF));
    let cap = VirtioPciCap::read(config, SECOND_CAP).unwrap();
    assert_eq!(cap.kind, VirtioCapKind::Common);
    assert_eq!(cap.notify_off_multiplier, None);
    // offset + length passes u32::MAX: computed without wrapping.
    assert!(!cap.fits_in(0xFFFF_FFFF));
    assert!(!cap.fits_in(0x1_0000_0000));
    assert!(cap.fits_in(0x1_0000_0001));
    // A notify capability too short for its multiplier, and a capability shorter than the
    // common layout, are refused.
    fake.poke_config(FIRST_CAP + 2, 16);
    assert!(VirtioPciCap::read(config, FIRST_CAP).is_err());
    fake.poke_config(SECOND_CAP + 2, 12);
    assert!(VirtioPciCap::read(config, SECOND_CAP).is_err());
}

#[test]
fn a_capability_may_not_run_past_configuration_space() {
    let fake = FakePci::new(2, 0, &[], &[]);
    let platform = fake.platform();
    // A 16-byte capability at 0xf4 would end at 0x104.
    for (i, byte) in [0x09, 0, 16, 1, 4].into_iter().enumerate() {
        fake.poke_config(0xf4 + i as u8, byte);
    }
    assert!(VirtioPciCap::read(platform.config(), 0xf4).is_err());
    fake.poke_config(0xf0 + 2, 16);
    fake.poke_config(0xf0 + 3, 1);
    assert!(VirtioPciCap::read(platform.config(), 0xf0).is_ok());
}

#[test]
fn kinds_are_named_for_logs() {
    let kinds = [1, 2, 3, 4, 5, 8, 9, 42].map(VirtioCapKind::from_cfg_type);
    let names = kinds.map(|k| format!("{k}"));
    assert_eq!(
        names,
        [
            "common", "notify", "isr", "device", "pci-cfg", "shm", "vendor", "type 42"
        ]
    );
    let fake = FakePci::new(2, 0, &[], &[]);
    fake.set_caps(&[cap(20, 2, 4, 0x3000, 0x1000, 4)]);
    let cap = VirtioPciCap::read(fake.platform().config(), FIRST_CAP).unwrap();
    assert_eq!(
        format!("{cap}"),
        "virtio notify at cfg 0x40: BAR4 0x3000+0x1000 multiplier 4"
    );
}

/// Shared memory regions are told apart by the capability's `id` (virtio 1.2 §4.1.4,
/// §4.1.4.7), which is read with the rest.
#[test]
fn a_shared_memory_capability_keeps_its_id() {
    let fake = FakePci::new(2, 0, &[], &[]);
    fake.set_caps(&[cap(24, 8, 2, 0x8000, 0x4000, 0)]);
    fake.poke_config(FIRST_CAP + 5, 3);
    let cap = VirtioPciCap::read(fake.platform().config(), FIRST_CAP).unwrap();
    assert_eq!(cap.kind, VirtioCapKind::SharedMemory);
    assert_eq!(
        (cap.bar, cap.id, cap.offset, cap.length),
        (2, 3, 0x8000, 0x4000)
    );
}

/// Transitional devices keep the fixed device ids of virtio 1.2 §4.1.2.1; the ids between and
/// around them name no virtio device.
#[test]
fn transitional_device_ids_follow_the_spec_table() {
    let not_virtio = Err(TransportError::NotVirtio);
    for (id, expected) in [
        (0x1000u16, Ok(1)), // network card
        (0x1001, Ok(2)),    // block device
        (0x1002, Ok(5)),    // memory ballooning (traditional)
        (0x1003, Ok(3)),    // console
        (0x1004, Ok(8)),    // SCSI host
        (0x1005, Ok(4)),    // entropy source
        (0x1009, Ok(9)),    // 9P transport
        (0x0fff, not_virtio),
        (0x1006, not_virtio),
        (0x1007, not_virtio),
        (0x1008, not_virtio),
        (0x100a, not_virtio),
        (0x103f, not_virtio),
    ] {
        let fake = FakePci::new(2, 0, &[], &[]);
        for (i, byte) in id.to_le_bytes().into_iter().enumerate() {
            fake.poke_config(2 + i as u8, byte);
        }
        assert_eq!(
            pci_device_type(fake.platform().config()),
            expected,
            "{id:#x}"
        );
    }
}

/// "The driver MUST ignore any vendor-specific capability structure which has a reserved bar
/// value" (virtio 1.2 §4.1.4): common configuration capabilities in BARs 6 and 255 before the
/// real one are skipped, and the real one is used.
#[test]
fn capabilities_in_reserved_bars_are_skipped() {
    let fake = FakePci::new(2, 0, &[], &[]);
    let mut caps = FakeCap::standard(16);
    for bar in [6, 0xff] {
        let mut reserved = FakeCap::virtio(1, 0, 0x1000);
        reserved.bar = bar;
        caps.insert(0, reserved);
    }
    fake.set_caps(&caps);
    let platform = fake.platform();
    let found = find_virtio_caps(platform.config(), |bar| platform.bar_size(bar)).unwrap();
    assert_eq!(
        found.common,
        Some(VirtioCap {
            bar: FAKE_BAR,
            offset: COMMON_OFFSET.into(),
            length: AREA_LEN.into(),
            notify_off_multiplier: 0
        })
    );
}

/// BAR 5 is the last valid BAR index (virtio 1.2 §4.1.4): structures there are found.
#[test]
fn the_last_bar_holds_structures_too() {
    let fake = FakePci::new(2, 0, &[], &[]);
    let mut caps = FakeCap::standard(16);
    caps.iter_mut().for_each(|c| c.bar = 5);
    fake.set_caps(&caps);
    let platform = fake.platform();
    let found = find_virtio_caps(platform.config(), |bar| (bar == 5).then_some(0x4000)).unwrap();
    let bars = [found.common, found.notify, found.isr, found.device].map(|c| c.map(|c| c.bar));
    assert_eq!(bars, [Some(5); 4]);
}
