//! The fake virtio-pci device: configuration space with a capability list, and BAR 4 holding
//! the common configuration, ISR, device configuration and notification areas.

use alloc::{vec, vec::Vec};

use super::{
    FakeNotification, FakeQueue, Hostility,
    device::{DeviceState, QueueReg, register_block_via_access},
    std::sync::{Arc, Mutex, MutexGuard, PoisonError},
};
use crate::transport::{
    ConfigSpace, PciPlatform, TransportError,
    pci_caps::{CAP_COMMON, CAP_DEVICE, CAP_ISR, CAP_NOTIFY},
};

/// The BAR that holds every structure of the fake.
pub const FAKE_BAR: u8 = 4;
/// Size of [`FAKE_BAR`].
pub const FAKE_BAR_SIZE: u64 = 0x4000;
/// Where the common configuration lives in the BAR.
pub const COMMON_OFFSET: u32 = 0x0000;
/// Where the ISR byte lives in the BAR.
pub const ISR_OFFSET: u32 = 0x1000;
/// Where the device configuration lives in the BAR.
pub const DEVICE_OFFSET: u32 = 0x2000;
/// Where the notification area lives in the BAR.
pub const NOTIFY_OFFSET: u32 = 0x3000;
/// Length of each of the four areas.
pub const AREA_LEN: u32 = 0x1000;
/// The default `notify_off_multiplier`.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// Offset of the first capability in configuration space.
pub const FIRST_CAP: u8 = 0x40;

/// One vendor capability as [`FakePci::set_caps`] writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeCap {
    /// Capability id (0x09 for virtio's vendor capabilities).
    pub cap_id: u8,
    /// `cap_len`.
    pub cap_len: u8,
    /// `cfg_type`.
    pub cfg_type: u8,
    /// `bar`.
    pub bar: u8,
    /// `offset`.
    pub offset: u32,
    /// `length`.
    pub length: u32,
    /// `notify_off_multiplier` (written for every capability with `cap_len >= 20`).
    pub notify_off_multiplier: u32,
}

impl FakeCap {
    /// A well-formed virtio capability of `cfg_type` at `offset` in [`FAKE_BAR`].
    pub fn virtio(cfg_type: u8, offset: u32, length: u32) -> Self {
        Self {
            cap_id: 0x09,
            cap_len: if cfg_type == CAP_NOTIFY { 20 } else { 16 },
            cfg_type,
            bar: FAKE_BAR,
            offset,
            length,
            notify_off_multiplier: if cfg_type == CAP_NOTIFY {
                NOTIFY_MULTIPLIER
            } else {
                0
            },
        }
    }

    /// The capabilities of a well-behaved device: common, notify, ISR, device (config of `len`).
    pub fn standard(device_config_len: u32) -> Vec<Self> {
        vec![
            Self::virtio(CAP_COMMON, COMMON_OFFSET, AREA_LEN),
            Self::virtio(CAP_NOTIFY, NOTIFY_OFFSET, AREA_LEN),
            Self::virtio(CAP_ISR, ISR_OFFSET, AREA_LEN),
            Self::virtio(CAP_DEVICE, DEVICE_OFFSET, device_config_len),
        ]
    }
}

#[derive(Debug)]
struct State {
    config: [u8; 256],
    device: DeviceState,
    device_config: Vec<u8>,
    bar_size: u64,
    strict: bool,
}

/// The fake device; clones share it. Tests use it to configure and inspect the device, and
/// [`platform`](Self::platform) to give a transport access to it.
#[derive(Clone, Debug)]
pub struct FakePci(Arc<Mutex<State>>);

impl FakePci {
    /// A well-behaved modern device of `device_type` offering `device_features`, with one queue
    /// per entry of `queue_max_sizes` and the given device configuration bytes.
    pub fn new(
        device_type: u16,
        device_features: u128,
        queue_max_sizes: &[u16],
        device_config: &[u8],
    ) -> Self {
        let mut state = State {
            config: [0; 256],
            device: DeviceState::new(device_features, queue_max_sizes),
            device_config: device_config.to_vec(),
            bar_size: FAKE_BAR_SIZE,
            strict: true,
        };
        state.config[0..2].copy_from_slice(&0x1af4u16.to_le_bytes());
        state.config[2..4].copy_from_slice(&(0x1040 + device_type).to_le_bytes());
        state.config[6] = 0x10; // status: capability list
        let fake = Self(Arc::new(Mutex::new(state)));
        let len = u32::try_from(device_config.len()).expect("small device config");
        fake.set_caps(&FakeCap::standard(len));
        fake
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rewrites the capability list: `caps` in order from [`FIRST_CAP`], 20 bytes apart.
    pub fn set_caps(&self, caps: &[FakeCap]) {
        let mut s = self.state();
        s.config[0x40..].fill(0);
        s.config[0x34] = if caps.is_empty() { 0 } else { FIRST_CAP };
        for (i, cap) in caps.iter().enumerate() {
            let at = usize::from(FIRST_CAP) + 20 * i;
            let next = if i + 1 == caps.len() { 0 } else { at + 20 };
            let mut bytes = [0u8; 20];
            bytes[0] = cap.cap_id;
            bytes[1] = u8::try_from(next).expect("caps fit in config space");
            bytes[2] = cap.cap_len;
            bytes[3] = cap.cfg_type;
            bytes[4] = cap.bar;
            bytes[8..12].copy_from_slice(&cap.offset.to_le_bytes());
            bytes[12..16].copy_from_slice(&cap.length.to_le_bytes());
            bytes[16..20].copy_from_slice(&cap.notify_off_multiplier.to_le_bytes());
            s.config[at..at + 20].copy_from_slice(&bytes);
        }
    }

    /// Writes one byte of configuration space (e.g. to make the capability list loop).
    pub fn poke_config(&self, offset: u8, value: u8) {
        self.state().config[usize::from(offset)] = value;
    }

    /// Whether an access to the common configuration at an offset or width that is no register
    /// panics (the default, to catch transport bugs) or is ignored (reads 0), as a real device
    /// would do when a lying capability sends the driver to the wrong place.
    pub fn set_strict(&self, strict: bool) {
        self.state().strict = strict;
    }

    /// Sets the size the platform reports for [`FAKE_BAR`].
    pub fn set_bar_size(&self, size: u64) {
        self.state().bar_size = size;
    }

    /// Changes how the device misbehaves.
    pub fn set_hostility(&self, hostility: Hostility) {
        self.state().device.hostility = hostility;
    }

    /// Sets `queue_notify_off` of queue `index`.
    pub fn set_queue_notify_off(&self, index: u16, notify_off: u16) {
        self.state().device.queues[usize::from(index)].notify_off = notify_off;
    }

    /// Sets `queue_notify_data` of queue `index`.
    pub fn set_queue_notify_data(&self, index: u16, notify_data: u16) {
        self.state().device.queues[usize::from(index)].notify_data = notify_data;
    }

    /// Raises interrupt causes in the ISR byte (bit 0 queue, bit 1 configuration).
    pub fn raise_isr(&self, bits: u8) {
        self.state().device.interrupt |= u32::from(bits);
    }

    /// Queue `index`'s registers.
    pub fn queue(&self, index: u16) -> FakeQueue {
        self.state().device.queues[usize::from(index)]
    }

    /// The device status register.
    pub fn status(&self) -> u8 {
        self.state().device.status
    }

    /// The 128 feature bits the driver wrote.
    pub fn driver_features(&self) -> u128 {
        self.state().device.driver_features
    }

    /// `config_msix_vector`.
    pub fn config_msix_vector(&self) -> u16 {
        self.state().device.config_msix_vector
    }

    /// The device configuration bytes.
    pub fn device_config(&self) -> Vec<u8> {
        self.state().device_config.clone()
    }

    /// Replaces the device configuration bytes, as a device does when its configuration changes:
    /// the generation counter moves and the configuration-change ISR bit is raised.
    pub fn set_device_config(&self, bytes: &[u8]) {
        let mut s = self.state();
        s.device_config = bytes.to_vec();
        s.device.generation = s.device.generation.wrapping_add(1);
        s.device.interrupt |= 2;
    }

    /// Takes the notification writes recorded so far.
    pub fn take_notifications(&self) -> Vec<FakeNotification> {
        core::mem::take(&mut self.state().device.notifications)
    }

    /// A platform that maps this device's BAR.
    pub fn platform(&self) -> FakePlatform {
        FakePlatform {
            config: FakeConfig(self.clone()),
        }
    }
}

impl State {
    fn read_common(&mut self, offset: usize, width: usize) -> u32 {
        let d = &mut self.device;
        let q = d.selected_copy();
        match (offset, width) {
            (0, 4) => d.device_feature_select,
            (4, 4) => d.device_feature_window(),
            (8, 4) => d.driver_feature_select,
            (12, 4) => d.driver_feature_window(),
            (16, 2) => d.config_msix_vector.into(),
            (18, 2) => u32::try_from(d.queues.len()).expect("few queues"),
            (20, 1) => d.read_status().into(),
            // Truncation intended: PCI's generation is 8 bits wide.
            (21, 1) => u32::from(d.read_generation() as u8),
            // Truncation intended: PCI's queue select is 16 bits wide.
            (22, 2) => u32::from(d.queue_select as u16),
            (24, 2) => q.size.into(),
            (26, 2) => q.msix_vector.into(),
            (28, 2) => q.enable.into(),
            (30, 2) => q.notify_off.into(),
            (32 | 36 | 40 | 44 | 48 | 52, 4) => {
                let v = match offset {
                    32 | 36 => q.desc,
                    40 | 44 => q.driver,
                    _ => q.device,
                };
                (if offset.is_multiple_of(8) { v } else { v >> 32 }) as u32
            }
            (56, 2) => q.notify_data.into(),
            (58, 2) => d.read_queue_reset(),
            _ => {
                assert!(
                    !self.strict,
                    "fake: bad common-config read at {offset} width {width}"
                );
                0
            }
        }
    }

    fn write_common(&mut self, offset: usize, width: usize, value: u32) {
        let d = &mut self.device;
        let refuse = d.hostility.refuse_vectors;
        // Truncation intended: 16-bit registers.
        let v16 = value as u16;
        let high = !offset.is_multiple_of(8);
        let queue_reg = match (offset, width) {
            (0, 4) => return d.device_feature_select = value,
            (8, 4) => return d.driver_feature_select = value,
            (12, 4) => return d.write_driver_feature_window(value),
            (16, 2) => return d.config_msix_vector = if refuse { 0xffff } else { v16 },
            // Truncation intended: the status is 8 bits wide.
            (20, 1) => return d.write_status(value as u8),
            (22, 2) => return d.queue_select = value & 0xffff,
            (24, 2) => QueueReg::Size,
            (26, 2) => {
                if let Some(q) = d.selected() {
                    q.msix_vector = if refuse { 0xffff } else { v16 };
                }
                return;
            }
            (28, 2) => QueueReg::Enable,
            (32 | 36, 4) => QueueReg::Desc(high),
            (40 | 44, 4) => QueueReg::Driver(high),
            (48 | 52, 4) => QueueReg::Device(high),
            (58, 2) => QueueReg::Reset,
            _ => {
                assert!(
                    !self.strict,
                    "fake: bad common-config write at {offset} width {width}"
                );
                return;
            }
        };
        d.write_queue(queue_reg, value);
    }

    /// Dispatches an access at `at` (offset in the BAR) to the area it falls in.
    fn access(&mut self, at: usize, width: usize, write: Option<u32>) -> u32 {
        let area = |base: u32| {
            at.checked_sub(base as usize)
                .filter(|&o| o < AREA_LEN as usize)
        };
        if let Some(o) = area(COMMON_OFFSET) {
            match write {
                Some(v) => self.write_common(o, width, v),
                None => return self.read_common(o, width),
            }
        } else if let Some(o) = area(ISR_OFFSET) {
            if write.is_none() && o == 0 {
                return core::mem::take(&mut self.device.interrupt);
            }
        } else if let Some(o) = area(DEVICE_OFFSET) {
            let cfg = &mut self.device_config;
            if let Some(v) = write {
                for (i, b) in v.to_le_bytes()[..width].iter().enumerate() {
                    if let Some(slot) = cfg.get_mut(o + i) {
                        *slot = *b;
                    }
                }
            } else {
                let mut bytes = [0u8; 4];
                for (i, b) in bytes[..width].iter_mut().enumerate() {
                    *b = cfg.get(o + i).copied().unwrap_or(0);
                }
                return u32::from_le_bytes(bytes);
            }
        } else if let Some(o) = area(NOTIFY_OFFSET) {
            if let Some(v) = write {
                self.device.notifications.push((o, width, v));
            }
        } else {
            panic!("fake: access outside the BAR at {at:#x}");
        }
        0
    }
}

/// The fake's configuration space.
#[derive(Clone, Debug)]
pub struct FakeConfig(FakePci);

impl FakeConfig {
    fn read(&self, offset: u16, width: usize) -> u32 {
        let s = self.0.state();
        let at = usize::from(offset);
        assert!(
            at.is_multiple_of(width) && at + width <= 256,
            "fake: bad config read"
        );
        let mut bytes = [0u8; 4];
        bytes[..width].copy_from_slice(&s.config[at..at + width]);
        u32::from_le_bytes(bytes)
    }
}

impl ConfigSpace for FakeConfig {
    fn read_u8(&self, offset: u16) -> u8 {
        self.read(offset, 1) as u8
    }
    fn read_u16(&self, offset: u16) -> u16 {
        self.read(offset, 2) as u16
    }
    fn read_u32(&self, offset: u16) -> u32 {
        self.read(offset, 4)
    }
    fn write_u8(&self, _offset: u16, _value: u8) {}
    fn write_u16(&self, _offset: u16, _value: u16) {}
    fn write_u32(&self, _offset: u16, _value: u32) {}
}

/// A mapped range of the fake's BAR.
#[derive(Clone, Debug)]
pub struct FakeRegs {
    device: FakePci,
    base: usize,
    len: usize,
}

impl FakeRegs {
    fn block_len(&self) -> usize {
        self.len
    }

    fn access(&self, offset: usize, width: usize, write: Option<u32>) -> u32 {
        assert!(
            offset.is_multiple_of(width) && offset + width <= self.len,
            "fake: register access at {offset} width {width} outside a block of {}",
            self.len
        );
        let at = self.base + offset;
        self.device.state().access(at, width, write)
    }
}

register_block_via_access!(FakeRegs);

/// The [`PciPlatform`] of a [`FakePci`]: only [`FAKE_BAR`] is implemented.
#[derive(Clone, Debug)]
pub struct FakePlatform {
    config: FakeConfig,
}

impl PciPlatform for FakePlatform {
    type Regs = FakeRegs;
    type Config = FakeConfig;

    fn config(&self) -> &FakeConfig {
        &self.config
    }

    fn bar_size(&self, bar: u8) -> Option<u64> {
        (bar == FAKE_BAR).then(|| self.config.0.state().bar_size)
    }

    fn map_bar(&self, bar: u8, offset: u64, len: u64) -> Result<FakeRegs, TransportError> {
        let size = self.bar_size(bar).ok_or(TransportError::MapFailed)?;
        let end = offset.checked_add(len).ok_or(TransportError::MapFailed)?;
        if end > size {
            return Err(TransportError::MapFailed);
        }
        Ok(FakeRegs {
            device: self.config.0.clone(),
            base: usize::try_from(offset).map_err(|_| TransportError::MapFailed)?,
            len: usize::try_from(len).map_err(|_| TransportError::MapFailed)?,
        })
    }
}
