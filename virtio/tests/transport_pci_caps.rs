//! One virtio vendor capability read on its own ([`VirtioPciCap::read`]), as the kernel's PCI
//! listing uses it: fields, the notify multiplier, BAR bounds computed without wrapping, and
//! capabilities too short for their type refused. (Moved from the kernel's in-QEMU
//! `pci_caps` test when the kernel's own parser was retired.)

use vireo_virtio::transport::{
    PciPlatform, VirtioCapKind, VirtioPciCap,
    fake::{FIRST_CAP, FakeCap, FakePci},
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
