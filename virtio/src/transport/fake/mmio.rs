//! A register-level fake virtio-mmio (version 2) device, with the same [`Hostility`] knobs as the
//! PCI fake.

use alloc::vec::Vec;

use super::{
    FakeNotification, FakeQueue, Hostility,
    device::{DeviceState, QueueReg, register_block_via_access},
    std::sync::{Arc, Mutex, MutexGuard, PoisonError},
};

/// Offset of the device configuration in the window.
const CONFIG: usize = 0x100;

#[derive(Debug)]
struct State {
    magic: u32,
    version: u32,
    device_id: u32,
    device: DeviceState,
    config: Vec<u8>,
    /// Every access to the device configuration: offset in it, width in bytes, write or not.
    config_log: Vec<(usize, usize, bool)>,
}

/// The fake MMIO device; clones share it. It is its own register window
/// ([`RegisterBlock`](crate::transport::RegisterBlock)),
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
            magic: crate::transport::VIRTIO_MMIO_MAGIC,
            version: 2,
            device_id: device_type.into(),
            device: DeviceState::new(device_features, queue_max_sizes),
            config: config.to_vec(),
            config_log: Vec::new(),
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
        self.state().device.hostility = hostility;
    }

    /// Raises interrupt causes (bit 0 used buffer, bit 1 configuration change).
    pub fn raise_interrupt(&self, bits: u32) {
        self.state().device.interrupt |= bits;
    }

    /// The interrupt status bits not yet acknowledged.
    pub fn interrupt_status(&self) -> u32 {
        self.state().device.interrupt
    }

    /// Queue `index`'s registers (`enable` is `QueueReady`).
    pub fn queue(&self, index: u16) -> FakeQueue {
        self.state().device.queues[usize::from(index)]
    }

    /// The status register.
    pub fn status(&self) -> u32 {
        self.state().device.status.into()
    }

    /// The 128 feature bits the driver wrote.
    pub fn driver_features(&self) -> u128 {
        self.state().device.driver_features
    }

    /// The device configuration bytes.
    pub fn device_config(&self) -> Vec<u8> {
        self.state().config.clone()
    }

    /// Takes the values the driver wrote to the device status so far, in order.
    pub fn take_status_writes(&self) -> Vec<u8> {
        core::mem::take(&mut self.state().device.status_writes)
    }

    /// Takes the device-configuration accesses recorded so far: offset in the configuration,
    /// width in bytes, and whether it was a write.
    pub fn take_config_accesses(&self) -> Vec<(usize, usize, bool)> {
        core::mem::take(&mut self.state().config_log)
    }

    /// Takes the `QueueNotify` writes recorded so far.
    pub fn take_notifications(&self) -> Vec<FakeNotification> {
        core::mem::take(&mut self.state().device.notifications)
    }
}

impl State {
    fn read(&mut self, offset: usize) -> u32 {
        let d = &mut self.device;
        match offset {
            0x000 => self.magic,
            0x004 => self.version,
            0x008 => self.device_id,
            0x00c => 0x554d_4551, // "QEMU"
            0x010 => d.device_feature_window(),
            0x034 => d.selected_copy().max_size.into(),
            0x044 => d.selected_copy().enable.into(),
            0x060 => d.interrupt,
            0x070 => d.read_status().into(),
            0x0c0 => d.read_queue_reset(),
            0x0fc => d.read_generation(),
            _ => panic!("fake mmio: read of {offset:#x}"),
        }
    }

    fn write(&mut self, offset: usize, value: u32) {
        let d = &mut self.device;
        let high = !offset.is_multiple_of(8);
        match offset {
            0x014 => d.device_feature_select = value,
            0x024 => d.driver_feature_select = value,
            0x020 => d.write_driver_feature_window(value),
            0x030 => d.queue_select = value,
            0x050 => d.notifications.push((offset, 4, value)),
            0x064 => d.interrupt &= !value,
            // Truncation intended: the status is the low byte.
            0x070 => d.write_status(value as u8),
            0x038 => d.write_queue(QueueReg::Size, value),
            0x044 => d.write_queue(QueueReg::Enable, value),
            0x080 | 0x084 => d.write_queue(QueueReg::Desc(high), value),
            0x090 | 0x094 => d.write_queue(QueueReg::Driver(high), value),
            0x0a0 | 0x0a4 => d.write_queue(QueueReg::Device(high), value),
            0x0c0 => d.write_queue(QueueReg::Reset, value),
            _ => panic!("fake mmio: write of {offset:#x}"),
        }
    }

    fn config_access(&mut self, offset: usize, width: usize, write: Option<u32>) -> u32 {
        let at = offset - CONFIG;
        self.config_log.push((at, width, write.is_some()));
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
    fn block_len(&self) -> usize {
        CONFIG + self.state().config.len()
    }

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

register_block_via_access!(FakeMmio);
