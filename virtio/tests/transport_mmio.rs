//! The virtio-mmio (version 2) transport against the register-level fake device, well-behaved
//! and hostile.

mod support;

use support::GuestDma;
use vireo_virtio::{
    Notifier,
    transport::{
        Device, MmioTransport, RegisterBlock, Transport, TransportError, VIRTIO_MMIO_MAGIC,
        WaitBudget,
        fake::{FakeClock, FakeMmio, Hostility},
    },
    virtio_spec::F,
};

const NET: u16 = 1;

fn bits(f: F) -> u128 {
    f.bits().to_ne()
}

fn fake(features: F) -> FakeMmio {
    let config: Vec<u8> = (0..12).collect();
    FakeMmio::new(NET, bits(features), &[256, 100, 0, 32], &config)
}

fn init(fake: &FakeMmio, wanted: F) -> Result<Device<MmioTransport<FakeMmio>>, TransportError> {
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, 1_000_000);
    Device::init(MmioTransport::new(fake.clone())?, NET, wanted, &mut budget)
}

#[test]
fn init_queues_and_driver_ok() {
    let fake = fake(F::VERSION_1 | F::EVENT_IDX);
    let mut device = init(&fake, F::EVENT_IDX).unwrap();
    assert_eq!(fake.driver_features(), bits(F::VERSION_1 | F::EVENT_IDX));
    // Probing stops at the first queue whose QueueNumMax reads 0.
    assert_eq!(device.transport().queue_count(), 2);
    let dma = GuestDma::new(4 << 20);
    let vq0 = device.create_queue(0, 1024, dma.clone(), None).unwrap();
    let vq1 = device.create_queue(1, 1024, dma.clone(), None).unwrap();
    for (index, vq, size) in [(0, &vq0, 256), (1, &vq1, 64)] {
        let q = fake.queue(index);
        let a = vq.ring_addresses();
        assert_eq!((vq.size(), q.size, q.enable), (size, size, 1));
        assert_eq!(
            (q.desc, q.driver, q.device),
            (a.descriptor_area, a.driver_area, a.device_area)
        );
    }
    assert_eq!(
        device.create_queue(2, 64, dma, None).err(),
        Some(TransportError::QueueUnavailable)
    );
    device.driver_ok().unwrap();
    assert_eq!(fake.status(), 0x0f);
}

/// §3.1.1 as the device sees it: reset, ACKNOWLEDGE, DRIVER, FEATURES_OK, then DRIVER_OK, each
/// write keeping the bits before it (the fake panics on a cleared bit, §2.1.2).
#[test]
fn initialisation_sets_the_status_bits_in_order() {
    let fake = fake(F::VERSION_1 | F::EVENT_IDX);
    let mut device = init(&fake, F::EVENT_IDX).unwrap();
    assert_eq!(fake.take_status_writes(), [0, 0x01, 0x03, 0x0b]);
    device.driver_ok().unwrap();
    assert_eq!(fake.take_status_writes(), [0x0f]);
    assert_eq!(fake.status(), 0x0f);
    assert!(!device.needs_reset());
}

/// A device that sets DEVICE_NEEDS_RESET as it is told DRIVER_OK (§2.1.1), keeping every other
/// bit, is not used.
#[test]
fn a_device_needing_a_reset_at_driver_ok_is_refused() {
    let fake = fake(F::VERSION_1);
    fake.set_hostility(Hostility {
        needs_reset_at_driver_ok: true,
        ..Hostility::default()
    });
    let mut device = init(&fake, F::empty()).unwrap();
    assert_eq!(device.driver_ok(), Err(TransportError::DeviceNeedsReset));
    assert_eq!(fake.status(), 0x4f);
    assert!(device.needs_reset());
    // Giving up sets FAILED on top of what the status holds, however often the driver says so.
    device.fail();
    device.fail();
    assert_eq!(fake.status(), 0xcf);
}

/// What the window says about the device: its type and how long its configuration is.
#[test]
fn the_window_tells_the_device_type_and_configuration_length() {
    let window = fake(F::VERSION_1);
    assert_eq!((window.len(), window.is_empty()), (0x100 + 12, false));
    let transport = MmioTransport::new(window).unwrap();
    assert_eq!(transport.config_len(), 12);
    let debug = format!("{transport:?}");
    for field in [format!("device_type: {NET}"), "window_len: 268".to_string()] {
        assert!(debug.contains(&field), "`{field}` missing from {debug}");
    }
}

/// A wait budget ends at its deadline on the clock it was made with, and says so in a log.
#[test]
fn a_wait_budget_expires_at_its_deadline() {
    // Each reading advances the clock by 1 µs: the budget is made at 0, read at 1, 2, ... µs.
    let clock = FakeClock::new(1_000);
    let budget = WaitBudget::new(&clock, 3_000);
    assert!(
        format!("{budget:?}").contains("deadline_ns: 3000"),
        "{budget:?}"
    );
    let expired: Vec<bool> = (0..4).map(|_| budget.expired()).collect();
    assert_eq!(expired, [false, false, true, true]);
    assert!(WaitBudget::new(&FakeClock::new(0), 0).expired());
}

/// A queue is programmed only with a size from 1 to the device's maximum, and only while it is
/// disabled (§4.2.3.2); otherwise nothing is written and the queue stays as it was.
#[test]
fn a_queue_is_programmed_only_with_a_valid_size() {
    let fake = fake(F::VERSION_1);
    let mut device = init(&fake, F::empty()).unwrap();
    let dma = GuestDma::new(1 << 20);
    let vq = device.create_queue(1, 64, dma, None).unwrap();
    let addresses = vq.ring_addresses();
    let before = fake.queue(0);
    for size in [0, before.max_size + 1] {
        assert_eq!(
            device.transport_mut().setup_queue(0, size, addresses, None),
            Err(TransportError::QueueUnavailable),
            "size {size}"
        );
        let q = fake.queue(0);
        assert_eq!(
            (q.size, q.enable, q.desc),
            (before.size, 0, 0),
            "size {size}"
        );
    }
    // Queue 1 is enabled already: not programmed again.
    assert_eq!(
        device.transport_mut().setup_queue(1, 64, addresses, None),
        Err(TransportError::QueueUnavailable)
    );
}

#[test]
fn packed_queue_on_mmio() {
    let fake = fake(F::VERSION_1 | F::RING_PACKED);
    let mut device = init(&fake, F::RING_PACKED).unwrap();
    let dma = GuestDma::new(4 << 20);
    let vq = device.create_queue(1, 1024, dma, None).unwrap();
    assert_eq!((vq.size(), fake.queue(1).size), (100, 100));
    assert_eq!(fake.queue(1).device, vq.ring_addresses().device_area);
}

#[test]
fn vectors_are_refused_on_mmio() {
    let fake = fake(F::VERSION_1);
    let mut device = init(&fake, F::empty()).unwrap();
    let dma = GuestDma::new(1 << 20);
    assert_eq!(
        device.create_queue(0, 64, dma, Some(1)).err(),
        Some(TransportError::VectorRejected)
    );
    assert_eq!(fake.queue(0).enable, 0);
    let t = device.transport_mut();
    assert_eq!(
        t.set_config_vector(Some(0)),
        Err(TransportError::VectorRejected)
    );
    assert_eq!(t.set_config_vector(None), Ok(()));
}

#[test]
fn feature_windows_round_trip() {
    let pattern = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
    let fake = FakeMmio::new(NET, pattern, &[8], &[]);
    let mut t = MmioTransport::new(fake.clone()).unwrap();
    assert_eq!(bits(t.device_features()), pattern);
    t.set_driver_features(F::from_bits_retain((!pattern).into()));
    assert_eq!(fake.driver_features(), !pattern);
}

#[test]
fn notifications_and_interrupts() {
    let fake = fake(F::VERSION_1 | F::NOTIFICATION_DATA);
    let mut device = init(&fake, F::NOTIFICATION_DATA).unwrap();
    let t = device.transport_mut();
    let n1 = t.notifier(1).unwrap();
    n1.notify(1, Some(0x8000_0001 | (5 << 16)));
    n1.notify(1, None);
    assert_eq!(
        fake.take_notifications(),
        [(0x50, 4, 0x8005_0001), (0x50, 4, 1)]
    );
    let debug = format!("{n1:?}");
    assert!(
        debug.contains("queue: 1") && debug.contains("data: true"),
        "{debug}"
    );
    assert_eq!(t.notifier(2).err(), Some(TransportError::QueueUnavailable));

    // Without VIRTIO_F_NOTIFICATION_DATA the register takes the queue index only (§4.2.3.3),
    // whatever a caller passes.
    let plain = self::fake(F::VERSION_1);
    let mut plain_device = init(&plain, F::empty()).unwrap();
    let n0 = plain_device.transport_mut().notifier(0).unwrap();
    n0.notify(0, Some(0x8005_0000));
    assert_eq!(plain.take_notifications(), [(0x50, 4, 0)]);

    fake.raise_interrupt(3);
    let cause = t.ack_interrupt();
    assert!(cause.queue && cause.config);
    assert_eq!(fake.interrupt_status(), 0, "acknowledged");
    assert_eq!(t.ack_interrupt(), Default::default());
}

/// §4.2.2.2 (and §4.1.3.1 for PCI): 8-bit accesses for 8-bit fields, 16-bit aligned ones for
/// 16-bit fields, 32-bit aligned ones for 32- and 64-bit fields. The transport does not know
/// the fields, so it reads a range with the widest aligned access that fits at each position.
#[test]
fn device_config_accesses_have_natural_widths() {
    let fake = fake(F::VERSION_1);
    let mut device = init(&fake, F::empty()).unwrap();
    fake.take_config_accesses();
    // (offset, length) → (offset, width) of each access.
    type Accesses = &'static [(usize, usize)];
    let reads: [(usize, usize, Accesses); 6] = [
        (0, 1, &[(0, 1)]),
        (2, 2, &[(2, 2)]),
        (4, 4, &[(4, 4)]),
        (0, 8, &[(0, 4), (4, 4)]),
        (1, 6, &[(1, 1), (2, 2), (4, 2), (6, 1)]),
        (6, 6, &[(6, 2), (8, 4)]),
    ];
    for (offset, len, expected) in reads {
        device.read_config(offset, &mut vec![0; len]).unwrap();
        let got = fake.take_config_accesses();
        let want: Vec<_> = expected.iter().map(|&(o, w)| (o, w, false)).collect();
        assert_eq!(got, want, "read of {len} at {offset}");
    }
    device
        .transport_mut()
        .write_config_raw(1, &[0xa1, 0xa2, 0xa3, 0xa4])
        .unwrap();
    assert_eq!(
        fake.take_config_accesses(),
        [(1, 1, true), (2, 2, true), (4, 1, true)]
    );
}

#[test]
fn device_config_is_bounded_by_the_window() {
    let fake = fake(F::VERSION_1);
    let mut device = init(&fake, F::empty()).unwrap();
    let mut buf = [0u8; 7];
    device.read_config(5, &mut buf).unwrap();
    assert_eq!(buf, [5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(
        device.read_config(6, &mut [0u8; 7]),
        Err(TransportError::ConfigOutOfRange)
    );
    assert_eq!(
        device.read_config(usize::MAX, &mut [0u8; 1]),
        Err(TransportError::ConfigOutOfRange)
    );
    device
        .transport_mut()
        .write_config_raw(1, &[0xa1, 0xa2, 0xa3, 0xa4])
        .unwrap();
    assert_eq!(&fake.device_config()[..6], &[0, 0xa1, 0xa2, 0xa3, 0xa4, 5]);
}

#[test]
fn ring_reset_on_mmio() {
    let fake = fake(F::VERSION_1 | F::RING_RESET);
    fake.set_hostility(Hostility {
        queue_reset_polls: Some(2),
        ..Hostility::default()
    });
    let mut device = init(&fake, F::RING_RESET).unwrap();
    let dma = GuestDma::new(1 << 20);
    let mut vq = device.create_queue(0, 64, dma, None).unwrap();
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, 1_000_000);
    assert_eq!(device.transport_mut().reset_queue(0, &mut budget), Ok(true));
    assert_eq!(fake.queue(0).enable, 0);
    let _ = vq.reset();
    device
        .transport_mut()
        .setup_queue(0, vq.size(), vq.ring_addresses(), None)
        .unwrap();
    assert_eq!((fake.queue(0).enable, fake.queue(0).size), (1, 64));

    fake.set_hostility(Hostility {
        queue_reset_polls: None,
        ..Hostility::default()
    });
    let mut budget = WaitBudget::new(&clock, 1_000_000);
    assert_eq!(
        device.transport_mut().reset_queue(0, &mut budget),
        Err(TransportError::Timeout)
    );
}

#[test]
fn hostile_mmio_device() {
    let cases = [
        (
            Hostility {
                reset_polls: None,
                ..Hostility::default()
            },
            TransportError::Timeout,
        ),
        (
            Hostility {
                reject_features: true,
                ..Hostility::default()
            },
            TransportError::FeaturesRejected,
        ),
    ];
    for (hostility, expected) in cases {
        let fake = fake(F::VERSION_1);
        fake.set_hostility(hostility);
        assert_eq!(init(&fake, F::empty()).err(), Some(expected));
    }
    let fake = fake(F::VERSION_1);
    let device = init(&fake, F::empty()).unwrap();
    fake.set_hostility(Hostility {
        generation_changes: u32::MAX,
        ..Hostility::default()
    });
    assert_eq!(
        device.read_config(0, &mut [0u8; 4]),
        Err(TransportError::ConfigUnstable)
    );
}

#[test]
fn identity_is_checked() {
    for (magic, version, id) in [
        (0x7472_6975, 2, 1),
        (VIRTIO_MMIO_MAGIC, 1, 1),
        (VIRTIO_MMIO_MAGIC, 3, 1),
        (VIRTIO_MMIO_MAGIC, 2, 0),
        (VIRTIO_MMIO_MAGIC, 2, 0x1_0001),
    ] {
        let fake = fake(F::VERSION_1);
        fake.set_identity(magic, version, id);
        assert_eq!(
            MmioTransport::new(fake).err(),
            Some(TransportError::NotVirtio),
            "{magic:#x} {version} {id}"
        );
    }
    let fake = fake(F::VERSION_1);
    assert_eq!(MmioTransport::new(fake).unwrap().device_type(), NET);
    // An empty window (a slot the platform describes with no registers) is read nowhere.
    assert!(NoRegisters.is_empty());
    assert_eq!(
        MmioTransport::new(NoRegisters).err(),
        Some(TransportError::NotVirtio)
    );
}

/// A register block of length 0: every access would be outside it.
#[derive(Clone)]
struct NoRegisters;

impl RegisterBlock for NoRegisters {
    fn len(&self) -> usize {
        0
    }
    fn read_u8(&self, offset: usize) -> u8 {
        panic!("read at {offset} of an empty block")
    }
    fn read_u16(&self, offset: usize) -> u16 {
        panic!("read at {offset} of an empty block")
    }
    fn read_u32(&self, offset: usize) -> u32 {
        panic!("read at {offset} of an empty block")
    }
    fn write_u8(&self, offset: usize, _: u8) {
        panic!("write at {offset} of an empty block")
    }
    fn write_u16(&self, offset: usize, _: u16) {
        panic!("write at {offset} of an empty block")
    }
    fn write_u32(&self, offset: usize, _: u32) {
        panic!("write at {offset} of an empty block")
    }
}
