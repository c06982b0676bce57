//! Register-level fake virtio devices for host tests (feature `test-utils`): [`FakePci`] (modern
//! virtio-pci) and [`FakeMmio`] (virtio-mmio version 2), with a [`FakeClock`] for bounded waits.
//!
//! Both fakes share [`Hostility`]: the ways a device misbehaves that a driver must survive (a
//! reset that never completes, `FEATURES_OK` cleared, a configuration generation that never holds
//! still, refused MSI-X vectors, a queue reset that never completes). The PCI fake also takes any
//! capability list ([`FakePci::set_caps`], [`FakePci::poke_config`]) and any `queue_notify_off`.
//!
//! They need `std` (shared state behind a mutex), so they are for host builds only.
//!
//! # Example
//!
//! A device whose reset never completes: initialisation gives up when its wait budget runs out
//! (the clock advances 1 µs per reading, so a 100 µs budget ends after about 100 status reads),
//! instead of spinning forever. See [`MmioTransport`](super::MmioTransport) and
//! [`PciTransport`](super::PciTransport) for well-behaved bring-ups.
//!
//! ```
//! use vireo_virtio::{
//!     transport::{
//!         Device, MmioTransport, TransportError, WaitBudget,
//!         fake::{FakeClock, FakeMmio, Hostility},
//!     },
//!     virtio_spec::F,
//! };
//!
//! let fake = FakeMmio::new(2, F::VERSION_1.bits().to_ne(), &[64], &[]);
//! fake.set_hostility(Hostility { reset_polls: None, ..Hostility::default() });
//! let clock = FakeClock::new(1_000);
//! let mut budget = WaitBudget::new(&clock, 100_000);
//! let transport = MmioTransport::new(fake.clone()).unwrap();
//! let err = Device::init(transport, 2, F::empty(), &mut budget).unwrap_err();
//! assert_eq!(err, TransportError::Timeout);
//! assert!(budget.expired());
//! ```

extern crate std;

mod device;
mod mmio;
mod pci;

use core::sync::atomic::{AtomicU64, Ordering};

pub use self::{
    mmio::FakeMmio,
    pci::{
        AREA_LEN, COMMON_OFFSET, DEVICE_OFFSET, FAKE_BAR, FAKE_BAR_SIZE, FIRST_CAP, FakeCap,
        FakeConfig, FakePci, FakePlatform, FakeRegs, ISR_OFFSET, NOTIFY_MULTIPLIER, NOTIFY_OFFSET,
    },
};
use super::Clock;

/// The ways the fake misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hostility {
    /// A device reset completes after this many status reads (`None`: never; the status then
    /// keeps reading non-zero).
    pub reset_polls: Option<u32>,
    /// The device clears `FEATURES_OK` whatever the driver wrote.
    pub reject_features: bool,
    /// The configuration generation changes on this many reads (`u32::MAX`: on every read).
    pub generation_changes: u32,
    /// The device refuses every MSI-X vector (reads back `VIRTIO_MSI_NO_VECTOR`).
    pub refuse_vectors: bool,
    /// A queue reset completes after this many `queue_reset` reads (`None`: never).
    pub queue_reset_polls: Option<u32>,
    /// The device sets `DEVICE_NEEDS_RESET` (virtio 1.2 §2.1.1) as the driver sets `DRIVER_OK`,
    /// keeping every other bit.
    pub needs_reset_at_driver_ok: bool,
}

impl Default for Hostility {
    fn default() -> Self {
        Self {
            reset_polls: Some(0),
            reject_features: false,
            generation_changes: 0,
            refuse_vectors: false,
            queue_reset_polls: Some(0),
            needs_reset_at_driver_ok: false,
        }
    }
}

/// One queue's registers as the fake holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeQueue {
    /// The largest size the device supports (what `queue_size` reads after a reset).
    pub max_size: u16,
    /// `queue_size`.
    pub size: u16,
    /// `queue_msix_vector`.
    pub msix_vector: u16,
    /// `queue_enable`.
    pub enable: u16,
    /// `queue_notify_off`.
    pub notify_off: u16,
    /// `queue_notify_data`.
    pub notify_data: u16,
    /// `queue_desc`.
    pub desc: u64,
    /// `queue_driver`.
    pub driver: u64,
    /// `queue_device`.
    pub device: u64,
    /// Reads of `queue_reset` left before an ongoing queue reset completes.
    reset_pending: Option<Option<u32>>,
}

impl FakeQueue {
    fn new(max_size: u16, index: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            msix_vector: 0xffff,
            notify_off: index,
            notify_data: index,
            ..Self::default()
        }
    }

    /// Back to the state after a device reset (the device-chosen fields stay).
    fn reset(&mut self) {
        *self = Self {
            notify_off: self.notify_off,
            notify_data: self.notify_data,
            ..Self::new(self.max_size, 0)
        };
    }
}

/// One write to the notification area: offset within the area, width in bytes, value.
pub type FakeNotification = (usize, usize, u32);

/// A clock that advances by a fixed step on every reading, so bounded waits end after a known
/// number of polls, instantly.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: AtomicU64,
    step: u64,
}

impl FakeClock {
    /// A clock starting at 0 that advances `step_ns` per reading.
    pub fn new(step_ns: u64) -> Self {
        Self {
            now: AtomicU64::new(0),
            step: step_ns,
        }
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.now.fetch_add(self.step, Ordering::Relaxed)
    }
    fn relax(&self) {}
}
