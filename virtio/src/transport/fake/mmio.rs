//! A register-level fake virtio-mmio (version 2) device, with the same [`Hostility`] knobs as the
//! PCI fake.

use super::std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use alloc::vec::Vec;

use super::{FakeNotification, FakeQueue, Hostility};
use crate::transport::RegisterBlock;

/// Offset of the device configuration in the window.
const CONFIG: usize = 0x100;

#[derive(Debug)]
struct State {
    magic: u32,
    version: u32,
    device_id: u32,
    hostility: Hostility,
    device_features: u128,
    driver_features: u128,
    device_features_sel: u32,
    driver_features_sel: u32,
    status: u32,
    reset_pending: Option<Option<u32>>,
    generation: u32,
    queue_sel: u32,
    queues: Vec<FakeQueue>,
    interrupt_status: u32,
    config: Vec<u8>,
    notifications: Vec<FakeNotification>,
}

/// The fake MMIO device; clones share it. It is its own register window ([`RegisterBlock`]),
/// `0x100 + config.len()` bytes long.
#[derive(Clone, Debug)]
pub struct FakeMmio(Arc<Mutex<State>>);

impl FakeMmio {
    /// A well-behaved version-2 device of `device_type` offering `device_features`, with one
    /// queue per entry of `queue_max_sizes` (a 0 entry ends the queues, as probing sees them).
    pub fn new(
        device_type: u16,
        device_features: u128,
        queue_max_sizes: &[u16],
        config: &[u8],
    ) -> Self {
        Self(Arc::new(Mutex::new(State {
            magic: crate::transport::mmio::VIRTIO_MMIO_MAGIC,
            version: 2,
            device_id: device_type.into(),
            hostility: Hostility::default(),
            device_features,
            driver_features: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            status: 0,
            reset_pending: None,
            generation: 0,
            queue_sel: 0,
            queues: (0u16..)
                .zip(queue_max_sizes)
                .map(|(i, &max)| FakeQueue::new(max, i))
                .collect(),
            interrupt_status: 0,
            config: config.to_vec(),
            notifications: Vec::new(),
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Overrides the identification registers (magic value, version, device id).
    pub fn set_identity(&self, magic: u32, version: u32, device_id: u32) {
        let mut s = self.state();
        (s.magic, s.version, s.device_id) = (magic, version, device_id);
    }

    /// Changes how the device misbehaves.
    pub fn set_hostility(&self, hostility: Hostility) {
        self.state().hostility = hostility;
    }

    /// Raises interrupt causes (bit 0 used buffer, bit 1 configuration change).
    pub fn raise_interrupt(&self, bits: u32) {
        self.state().interrupt_status |= bits;
    }

    /// The interrupt status bits not yet acknowledged.
    pub fn interrupt_status(&self) -> u32 {
        self.state().interrupt_status
    }

    /// Queue `index`'s registers (`enable` is `QueueReady`).
    pub fn queue(&self, index: u16) -> FakeQueue {
        self.state().queues[usize::from(index)]
    }

    /// The status register.
    pub fn status(&self) -> u32 {
        self.state().status
    }

    /// The 128 feature bits the driver wrote.
    pub fn driver_features(&self) -> u128 {
        self.state().driver_features
    }

    /// The device configuration bytes.
    pub fn device_config(&self) -> Vec<u8> {
        self.state().config.clone()
    }

    /// Takes the `QueueNotify` writes recorded so far.
    pub fn take_notifications(&self) -> Vec<FakeNotification> {
        core::mem::take(&mut self.state().notifications)
    }
}

impl State {
    fn reset_device(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.interrupt_status = 0;
        self.queues.iter_mut().for_each(FakeQueue::reset);
    }

    fn selected(&mut self) -> Option<&mut FakeQueue> {
        let index = usize::try_from(self.queue_sel).ok()?;
        self.queues.get_mut(index)
    }

    fn read(&mut self, offset: usize) -> u32 {
        let window = |bits: u128, sel: u32| {
            if sel < 4 {
                (bits >> (32 * sel)) as u32
            } else {
                0
            }
        };
        let q = self.selected().copied();
        match offset {
            0x000 => self.magic,
            0x004 => self.version,
            0x008 => self.device_id,
            0x00c => 0x554d_4551, // "QEMU"
            0x010 => window(self.device_features, self.device_features_sel),
            0x034 => q.map_or(0, |q| q.max_size.into()),
            0x044 => q.map_or(0, |q| q.enable.into()),
            0x060 => self.interrupt_status,
            0x070 => match self.reset_pending {
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
            },
            0x0c0 => {
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
            0x0fc => {
                let h = &mut self.hostility;
                if h.generation_changes > 0 {
                    if h.generation_changes != u32::MAX {
                        h.generation_changes -= 1;
                    }
                    self.generation = self.generation.wrapping_add(1);
                }
                self.generation
            }
            _ => panic!("fake mmio: read of {offset:#x}"),
        }
    }

    fn write(&mut self, offset: usize, value: u32) {
        let half = |reg: &mut u64| {
            *reg = if offset.is_multiple_of(8) {
                (*reg & !0xffff_ffff) | u64::from(value)
            } else {
                (*reg & 0xffff_ffff) | (u64::from(value) << 32)
            };
        };
        match offset {
            0x014 => self.device_features_sel = value,
            0x024 => self.driver_features_sel = value,
            0x020 => {
                let sel = self.driver_features_sel;
                if sel < 4 {
                    let shift = 32 * sel;
                    self.driver_features = (self.driver_features
                        & !(u128::from(u32::MAX) << shift))
                        | (u128::from(value) << shift);
                }
            }
            0x030 => self.queue_sel = value,
            0x050 => self.notifications.push((offset, 4, value)),
            0x064 => self.interrupt_status &= !value,
            0x070 => self.write_status(value),
            0x038 | 0x044 | 0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 | 0x0c0 => {
                let reset_polls = self.hostility.queue_reset_polls;
                let Some(q) = self.selected() else { return };
                match offset {
                    0x038 => q.size = value as u16,
                    0x044 => q.enable = value as u16,
                    0x080 | 0x084 => half(&mut q.desc),
                    0x090 | 0x094 => half(&mut q.driver),
                    0x0a0 | 0x0a4 => half(&mut q.device),
                    _ if value == 1 => q.reset_pending = Some(reset_polls),
                    _ => {}
                }
            }
            _ => panic!("fake mmio: write of {offset:#x}"),
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            match self.hostility.reset_polls {
                Some(0) => self.reset_device(),
                polls => self.reset_pending = Some(polls),
            }
            return;
        }
        let features_ok = 0x08;
        let offered_only = self.driver_features & !self.device_features == 0;
        let mut value = value;
        if value & features_ok != 0 && (self.hostility.reject_features || !offered_only) {
            value &= !features_ok;
        }
        self.status = value;
    }

    fn config_access(&mut self, offset: usize, width: usize, write: Option<u32>) -> u32 {
        let at = offset - CONFIG;
        if let Some(v) = write {
            self.config[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            return 0;
        }
        let mut bytes = [0u8; 4];
        bytes[..width].copy_from_slice(&self.config[at..at + width]);
        u32::from_le_bytes(bytes)
    }
}

impl FakeMmio {
    fn access(&self, offset: usize, width: usize, write: Option<u32>) -> u32 {
        let mut s = self.state();
        assert!(
            offset.is_multiple_of(width) && offset + width <= CONFIG + s.config.len(),
            "fake mmio: access at {offset:#x} width {width}"
        );
        if offset >= CONFIG {
            return s.config_access(offset, width, write);
        }
        assert_eq!(width, 4, "fake mmio: registers are 32-bit");
        match write {
            Some(v) => {
                s.write(offset, v);
                0
            }
            None => s.read(offset),
        }
    }
}

impl RegisterBlock for FakeMmio {
    fn len(&self) -> usize {
        CONFIG + self.state().config.len()
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
