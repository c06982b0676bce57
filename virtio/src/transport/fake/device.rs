//! The device side both fakes share: status and reset, feature windows, the selected queue and
//! its registers, the configuration generation and queue resets, each with its [`Hostility`].
//! The PCI and MMIO fakes only decode their register offsets onto it.

use alloc::vec::Vec;

use super::{FakeNotification, FakeQueue, Hostility};

/// `FEATURES_OK` in the device status.
const FEATURES_OK: u8 = 0x08;
/// `DRIVER_OK` in the device status.
const DRIVER_OK: u8 = 0x04;
/// `DEVICE_NEEDS_RESET` in the device status.
const DEVICE_NEEDS_RESET: u8 = 0x40;

/// A register of the selected queue, as both transports have it.
#[derive(Clone, Copy, Debug)]
pub(super) enum QueueReg {
    /// The size the driver chose.
    Size,
    /// `queue_enable` / `QueueReady`.
    Enable,
    /// Low (`false`) or high (`true`) half of the descriptor area address.
    Desc(bool),
    /// Low or high half of the driver area address.
    Driver(bool),
    /// Low or high half of the device area address.
    Device(bool),
    /// `queue_reset` / `QueueReset`.
    Reset,
}

/// The state of a fake device, whatever its transport.
#[derive(Debug)]
pub(super) struct DeviceState {
    pub(super) hostility: Hostility,
    pub(super) device_features: u128,
    pub(super) driver_features: u128,
    pub(super) device_feature_select: u32,
    pub(super) driver_feature_select: u32,
    pub(super) config_msix_vector: u16,
    pub(super) status: u8,
    reset_pending: Option<Option<u32>>,
    pub(super) generation: u32,
    pub(super) queue_select: u32,
    pub(super) queues: Vec<FakeQueue>,
    /// Interrupt causes not yet acknowledged (PCI's ISR byte, MMIO's `InterruptStatus`).
    pub(super) interrupt: u32,
    pub(super) notifications: Vec<FakeNotification>,
    /// Every value the driver wrote to the device status, in order.
    pub(super) status_writes: Vec<u8>,
}

impl DeviceState {
    /// A well-behaved device offering `device_features`, with one queue per entry of
    /// `queue_max_sizes`.
    pub(super) fn new(device_features: u128, queue_max_sizes: &[u16]) -> Self {
        Self {
            hostility: Hostility::default(),
            device_features,
            driver_features: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            config_msix_vector: 0xffff,
            status: 0,
            reset_pending: None,
            generation: 0,
            queue_select: 0,
            queues: (0u16..)
                .zip(queue_max_sizes)
                .map(|(index, &max)| FakeQueue::new(max, index))
                .collect(),
            interrupt: 0,
            notifications: Vec::new(),
            status_writes: Vec::new(),
        }
    }

    fn reset_device(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.config_msix_vector = 0xffff;
        self.queue_select = 0;
        self.interrupt = 0;
        self.queues.iter_mut().for_each(FakeQueue::reset);
    }

    /// The selected queue, if it exists.
    pub(super) fn selected(&mut self) -> Option<&mut FakeQueue> {
        let index = usize::try_from(self.queue_select).ok()?;
        self.queues.get_mut(index)
    }

    /// The selected queue's registers (all zero when it does not exist).
    pub(super) fn selected_copy(&mut self) -> FakeQueue {
        self.selected().copied().unwrap_or_default()
    }

    /// The selected window of the device's features (0 past the fourth).
    pub(super) fn device_feature_window(&self) -> u32 {
        window(self.device_features, self.device_feature_select)
    }

    /// The selected window of the driver's features.
    pub(super) fn driver_feature_window(&self) -> u32 {
        window(self.driver_features, self.driver_feature_select)
    }

    /// Writes the selected window of the driver's features (ignored past the fourth).
    pub(super) fn write_driver_feature_window(&mut self, value: u32) {
        let select = self.driver_feature_select;
        if select < 4 {
            let shift = 32 * select;
            self.driver_features = (self.driver_features & !(u128::from(u32::MAX) << shift))
                | (u128::from(value) << shift);
        }
    }

    /// Reads the status; a pending reset completes after its polls (or never).
    pub(super) fn read_status(&mut self) -> u8 {
        match self.reset_pending {
            None => self.status,
            Some(Some(0)) => {
                self.reset_pending = None;
                self.reset_device();
                0
            }
            Some(Some(n)) => {
                self.reset_pending = Some(Some(n - 1));
                self.status.max(1)
            }
            Some(None) => self.status.max(1),
        }
    }

    /// Writes the status: 0 starts a reset; `FEATURES_OK` sticks only for offered features
    /// (and a device that does not reject them).
    ///
    /// # Panics
    ///
    /// If the driver clears a bit the status holds: virtio 1.2 §2.1.2 forbids it (0 is the
    /// reset, not a clear; `DEVICE_NEEDS_RESET` is the device's to set, and a reset clears it).
    pub(super) fn write_status(&mut self, value: u8) {
        self.status_writes.push(value);
        let held = self.status & !DEVICE_NEEDS_RESET;
        assert!(
            value == 0 || self.reset_pending.is_some() || value & held == held,
            "fake: the driver cleared status bits {:#x} by writing {value:#x} (§2.1.2)",
            held & !value
        );
        if value == 0 {
            match self.hostility.reset_polls {
                Some(0) => self.reset_device(),
                polls => self.reset_pending = Some(polls),
            }
            return;
        }
        let mut value = value;
        let offered_only = self.driver_features & !self.device_features == 0;
        if value & FEATURES_OK != 0 && (self.hostility.reject_features || !offered_only) {
            value &= !FEATURES_OK;
        }
        if value & DRIVER_OK != 0 && self.hostility.needs_reset_at_driver_ok {
            value |= DEVICE_NEEDS_RESET;
        }
        self.status = value;
    }

    /// Reads the configuration generation, which moves while the device is told to keep
    /// changing it.
    pub(super) fn read_generation(&mut self) -> u32 {
        let h = &mut self.hostility;
        if h.generation_changes > 0 {
            if h.generation_changes != u32::MAX {
                h.generation_changes -= 1;
            }
            self.generation = self.generation.wrapping_add(1);
        }
        self.generation
    }

    /// Reads the selected queue's reset register: 1 while a reset is under way.
    pub(super) fn read_queue_reset(&mut self) -> u32 {
        let Some(q) = self.selected() else { return 0 };
        match q.reset_pending {
            None => 0,
            Some(Some(0)) => {
                q.reset();
                0
            }
            Some(Some(n)) => {
                q.reset_pending = Some(Some(n - 1));
                1
            }
            Some(None) => 1,
        }
    }

    /// Writes a register of the selected queue (ignored when no queue is selected).
    pub(super) fn write_queue(&mut self, reg: QueueReg, value: u32) {
        let reset_polls = self.hostility.queue_reset_polls;
        let Some(q) = self.selected() else { return };
        // Truncations intended: 16-bit registers, and the halves of the addresses.
        let half = |area: &mut u64, high: bool| {
            *area = if high {
                (*area & 0xffff_ffff) | (u64::from(value) << 32)
            } else {
                (*area & !0xffff_ffff) | u64::from(value)
            };
        };
        match reg {
            QueueReg::Size => q.size = value as u16,
            QueueReg::Enable => q.enable = value as u16,
            QueueReg::Desc(high) => half(&mut q.desc, high),
            QueueReg::Driver(high) => half(&mut q.driver, high),
            QueueReg::Device(high) => half(&mut q.device, high),
            QueueReg::Reset if value == 1 => q.reset_pending = Some(reset_polls),
            QueueReg::Reset => {}
        }
    }
}

/// 32-bit window `select` of 128 feature bits (0 past the fourth).
fn window(bits: u128, select: u32) -> u32 {
    if select < 4 {
        // Truncation intended: one window.
        (bits >> (32 * select)) as u32
    } else {
        0
    }
}

/// Implements [`RegisterBlock`](crate::transport::RegisterBlock) for a fake whose
/// `access(offset, width, write)` does the work (`write: None` reads).
macro_rules! register_block_via_access {
    ($ty:ty) => {
        impl crate::transport::RegisterBlock for $ty {
            fn len(&self) -> usize {
                self.block_len()
            }
            fn read_u8(&self, offset: usize) -> u8 {
                self.access(offset, 1, None) as u8
            }
            fn read_u16(&self, offset: usize) -> u16 {
                self.access(offset, 2, None) as u16
            }
            fn read_u32(&self, offset: usize) -> u32 {
                self.access(offset, 4, None)
            }
            fn write_u8(&self, offset: usize, value: u8) {
                self.access(offset, 1, Some(value.into()));
            }
            fn write_u16(&self, offset: usize, value: u16) {
                self.access(offset, 2, Some(value.into()));
            }
            fn write_u32(&self, offset: usize, value: u32) {
                self.access(offset, 4, Some(value));
            }
        }
    };
}
pub(super) use register_block_via_access;
