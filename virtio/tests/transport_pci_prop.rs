//! Random capability lists and configuration spaces: the virtio-pci transport never panics and
//! never touches a register outside what it mapped (the fake panics if it does), whatever the
//! device puts in its configuration space.

use proptest::prelude::*;
use vireo_virtio::{
    transport::{
        Device, PciTransport, Transport, TransportError, WaitBudget,
        fake::{FAKE_BAR_SIZE, FakeClock, FakePci},
    },
    virtio_spec::F,
};

/// One capability-shaped record: fields drawn mostly from values near the edges.
#[derive(Clone, Debug)]
struct RawCap {
    at: u8,
    cap_id: u8,
    next: u8,
    cap_len: u8,
    cfg_type: u8,
    bar: u8,
    offset: u32,
    length: u32,
    multiplier: u32,
}

fn edge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(56),
        Just(0x1000),
        Just(0x2000),
        Just(0x3000),
        Just(0x3ffc),
        Just(0x4000),
        Just(u32::MAX),
        Just(u32::MAX - 3),
        any::<u32>(),
    ]
}

fn raw_cap() -> impl Strategy<Value = RawCap> {
    (
        (0x10u8..0x40).prop_map(|d| d * 4),
        prop_oneof![Just(0x09u8), Just(0x05), Just(0x11), any::<u8>()],
        prop_oneof![Just(0u8), (0x10u8..0x40).prop_map(|d| d * 4), any::<u8>()],
        prop_oneof![Just(16u8), Just(20), Just(15), any::<u8>()],
        0u8..10,
        prop_oneof![Just(4u8), 0u8..8, any::<u8>()],
        edge_u32(),
        edge_u32(),
        edge_u32(),
    )
        .prop_map(
            |(at, cap_id, next, cap_len, cfg_type, bar, offset, length, multiplier)| RawCap {
                at,
                cap_id,
                next,
                cap_len,
                cfg_type,
                bar,
                offset,
                length,
                multiplier,
            },
        )
}

fn apply(fake: &FakePci, first: u8, caps: &[RawCap]) {
    fake.poke_config(0x34, first);
    for cap in caps {
        let mut bytes = [0u8; 20];
        bytes[0] = cap.cap_id;
        bytes[1] = cap.next;
        bytes[2] = cap.cap_len;
        bytes[3] = cap.cfg_type;
        bytes[4] = cap.bar;
        bytes[8..12].copy_from_slice(&cap.offset.to_le_bytes());
        bytes[12..16].copy_from_slice(&cap.length.to_le_bytes());
        bytes[16..20].copy_from_slice(&cap.multiplier.to_le_bytes());
        for (i, b) in bytes.iter().enumerate() {
            if let Some(offset) = cap.at.checked_add(i as u8) {
                fake.poke_config(offset, *b);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn random_capability_lists_never_panic(
        first in prop_oneof![Just(0x40u8), any::<u8>()],
        caps in proptest::collection::vec(raw_cap(), 0..10),
        bar_size in prop_oneof![Just(FAKE_BAR_SIZE), Just(0x1000u64), Just(u64::MAX)],
        notify_off in prop_oneof![Just(0u16), Just(1), any::<u16>()],
        data in any::<bool>(),
    ) {
        let fake = FakePci::new(
            2,
            (F::VERSION_1 | F::NOTIFICATION_DATA).bits().to_ne(),
            &[64],
            &[0; 8],
        );
        fake.set_caps(&[]);
        fake.set_strict(false); // a lying capability may send the driver anywhere in the BAR
        fake.set_bar_size(bar_size.min(FAKE_BAR_SIZE));
        apply(&fake, first, &caps);
        fake.set_queue_notify_off(0, notify_off);
        let transport = match PciTransport::new(fake.platform()) {
            Ok(t) => t,
            Err(e) => {
                prop_assert!(matches!(
                    e,
                    TransportError::BadCapability | TransportError::MapFailed
                ));
                return Ok(());
            }
        };
        // Whatever was accepted can be driven: registers are only reached through checked
        // ranges, and the fake panics on any access outside a mapped block.
        let clock = FakeClock::new(1_000);
        let mut budget = WaitBudget::new(&clock, 1_000_000);
        let wanted = if data { F::NOTIFICATION_DATA } else { F::empty() };
        if let Ok(mut device) = Device::init(transport, 2, wanted, &mut budget) {
            let t = device.transport_mut();
            let _ = t.notifier(0);
            let _ = t.ack_interrupt();
            let mut buf = [0u8; 8];
            let _ = device.read_config(0, &mut buf);
        }
    }
}

/// Drives whatever transport was accepted through init, a notifier, the ISR and a config read.
fn drive(fake: &FakePci, data: bool) -> Result<(), TransportError> {
    let transport = PciTransport::new(fake.platform())?;
    let clock = FakeClock::new(1_000);
    let mut budget = WaitBudget::new(&clock, 1_000_000);
    let wanted = if data {
        F::NOTIFICATION_DATA
    } else {
        F::empty()
    };
    let mut device = Device::init(transport, 2, wanted, &mut budget)?;
    let t = device.transport_mut();
    let _ = t.notifier(0);
    let _ = t.ack_interrupt();
    let mut buf = [0u8; 8];
    let _ = device.read_config(0, &mut buf);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// A few byte changes to a good capability list: mostly near-valid lists, which exercise
    /// each check on its own.
    #[test]
    fn mutated_standard_lists_never_panic(
        pokes in proptest::collection::vec(
            (prop_oneof![Just(0x34u8), 0x40u8..0x90], any::<u8>()),
            1..4,
        ),
        notify_off in prop_oneof![Just(0u16), Just(0x3ff), any::<u16>()],
        data in any::<bool>(),
    ) {
        let fake = FakePci::new(
            2,
            (F::VERSION_1 | F::NOTIFICATION_DATA).bits().to_ne(),
            &[64],
            &[0; 8],
        );
        fake.set_strict(false); // a lying capability may send the driver anywhere in the BAR
        for (offset, value) in pokes {
            fake.poke_config(offset, value);
        }
        fake.set_queue_notify_off(0, notify_off);
        // Any typed error is an acceptable answer to a lying device (a common configuration
        // moved onto another area times out or rejects features); a panic is not.
        // (About one case in ten is accepted and driven through init.)
        let _ = drive(&fake, data);
    }
}
