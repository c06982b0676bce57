//! What the PCI and MMIO transports share, written once: the registers both define (device
//! status, the feature windows, the queue registers, the configuration generation), the
//! device-configuration accesses and the queue programming sequence.
//!
//! A transport describes where those registers sit ([`Layout`]) and supplies the few operations
//! that really differ ([`Bus`]: queue counting, MSI-X vectors, notifiers, the interrupt status);
//! every [`Bus`] is a [`Transport`] through the blanket implementation below. [`Bus`] lives in a
//! private module, so no other crate can implement it (the trait is sealed).

use virtio_spec::{DeviceStatus, F};

use super::{InterruptCause, RegisterBlock, Transport, TransportError, WaitBudget};
use crate::{Notifier, RingAddresses};

/// One register: its offset in the block and its width in bytes (1, 2 or 4).
#[derive(Clone, Copy, Debug)]
pub struct Reg {
    offset: usize,
    width: u8,
}

impl Reg {
    /// An 8-bit register at `offset`.
    pub const fn u8(offset: usize) -> Self {
        Self { offset, width: 1 }
    }

    /// A 16-bit register at `offset`.
    pub const fn u16(offset: usize) -> Self {
        Self { offset, width: 2 }
    }

    /// A 32-bit register at `offset`.
    pub const fn u32(offset: usize) -> Self {
        Self { offset, width: 4 }
    }

    /// Reads the register, widened to 32 bits.
    pub fn read<R: RegisterBlock + ?Sized>(self, regs: &R) -> u32 {
        match self.width {
            1 => regs.read_u8(self.offset).into(),
            2 => regs.read_u16(self.offset).into(),
            _ => regs.read_u32(self.offset),
        }
    }

    /// Writes the register; `value` is truncated to its width.
    pub fn write<R: RegisterBlock + ?Sized>(self, regs: &R, value: u32) {
        // Truncations intended: the register's width.
        match self.width {
            1 => regs.write_u8(self.offset, value as u8),
            2 => regs.write_u16(self.offset, value as u16),
            _ => regs.write_u32(self.offset, value),
        }
    }
}

/// Where a transport keeps the registers both transports define: the common configuration
/// structure on PCI (virtio 1.2 §4.1.4.3), the register window on MMIO (§4.2.2).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Selects the 32-bit window of the device's features.
    pub device_feature_select: usize,
    /// The selected window of the device's features (32 bits).
    pub device_feature: usize,
    /// Selects the 32-bit window of the driver's features.
    pub driver_feature_select: usize,
    /// The selected window of the driver's features (32 bits).
    pub driver_feature: usize,
    /// The device status.
    pub status: Reg,
    /// The configuration generation counter.
    pub config_generation: Reg,
    /// Selects the queue the queue registers below refer to.
    pub queue_select: Reg,
    /// The largest size the device supports for the selected queue.
    pub queue_size_max: Reg,
    /// The size the driver chose for the selected queue.
    pub queue_size: Reg,
    /// Whether the selected queue is enabled (`queue_enable`, `QueueReady`).
    pub queue_enable: Reg,
    /// Resets the selected queue (`VIRTIO_F_RING_RESET`).
    pub queue_reset: Reg,
    /// The descriptor area address (64 bits, as two 32-bit halves).
    pub queue_desc: usize,
    /// The driver area address (64 bits, as two 32-bit halves).
    pub queue_driver: usize,
    /// The device area address (64 bits, as two 32-bit halves).
    pub queue_device: usize,
}

/// The state every transport keeps: the block holding the [`Layout`]'s registers, the device
/// type and the features the driver wrote.
#[derive(Clone, Debug)]
pub struct Common<R> {
    /// The block the [`Layout`] describes.
    pub regs: R,
    /// The virtio device type.
    pub device_type: u16,
    /// The features last written to the device (cleared by a reset).
    pub driver_features: F,
}

impl<R> Common<R> {
    /// The state of a transport over `regs`, before any feature is written.
    pub fn new(regs: R, device_type: u16) -> Self {
        Self {
            regs,
            device_type,
            driver_features: F::empty(),
        }
    }
}

/// What differs between the transports; the rest of [`Transport`] is written once over it.
pub trait Bus {
    /// A block of the device's registers.
    type Regs: RegisterBlock;
    /// Sends the notifications of one queue.
    type Notifier: Notifier;

    /// Where the shared registers sit in [`Common::regs`].
    const LAYOUT: Layout;

    /// The shared state.
    fn common(&self) -> &Common<Self::Regs>;

    /// The shared state, mutably.
    fn common_mut(&mut self) -> &mut Common<Self::Regs>;

    /// The block holding the device-specific configuration and where in it the configuration
    /// starts (`None`: the device has none).
    fn device_config(&self) -> Option<(&Self::Regs, usize)>;

    /// [`Transport::queue_count`].
    fn queue_count(&self) -> u16;

    /// Whether queue `index` may exist, before its registers are read.
    fn queue_in_range(&self, index: u16) -> bool;

    /// Routes the selected queue's notifications to MSI-X `vector` while it is programmed.
    ///
    /// # Errors
    /// [`TransportError::VectorRejected`] if the device (or the transport) refuses the vector.
    fn set_queue_vector(&self, vector: Option<u16>) -> Result<(), TransportError>;

    /// [`Transport::set_config_vector`].
    ///
    /// # Errors
    /// [`TransportError::VectorRejected`] if the device (or the transport) refuses the vector.
    fn config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError>;

    /// [`Transport::notifier`].
    ///
    /// # Errors
    /// As [`Transport::notifier`].
    fn queue_notifier(&mut self, index: u16) -> Result<Self::Notifier, TransportError>;

    /// Reads (and acknowledges) the interrupt status: bit 0 a queue, bit 1 the configuration.
    fn interrupt_status(&mut self) -> u32;

    /// Whether the device has the queue reset register.
    fn has_queue_reset(&self) -> bool {
        true
    }

    /// The length of the device-specific configuration (0 when the device has none).
    fn device_config_len(&self) -> usize {
        self.device_config()
            .map_or(0, |(regs, start)| regs.len().saturating_sub(start))
    }

    /// Selects queue `index` for the queue registers.
    fn select_queue(&self, index: u16) {
        Self::LAYOUT
            .queue_select
            .write(&self.common().regs, index.into());
    }

    /// Writes a 64-bit queue address as two 32-bit halves, low first (virtio 1.2 §4.1.3.1).
    fn write_u64(&self, offset: usize, value: u64) {
        let regs = &self.common().regs;
        // Truncations intended: the two halves.
        regs.write_u32(offset, value as u32);
        regs.write_u32(offset + 4, (value >> 32) as u32);
    }

    /// Runs `access(block, position, width)` over `[offset, offset + len)` of the device
    /// configuration after checking the range, with the widest naturally aligned access that fits
    /// at each step (so a 1-, 2- or 4-byte field is one access of its width, and 8 bytes are two
    /// 32-bit ones). `position` is relative to the configuration's start.
    fn config_accesses(
        &self,
        offset: usize,
        len: usize,
        mut access: impl FnMut(&Self::Regs, usize, usize, usize),
    ) -> Result<(), TransportError> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.device_config_len())
            .ok_or(TransportError::ConfigOutOfRange)?;
        let Some((regs, start)) = self.device_config() else {
            return Ok(()); // len == 0
        };
        let mut pos = offset;
        while pos < end {
            let width = match (pos % 4, end - pos) {
                (0, 4..) => 4,
                (0 | 2, 2..) => 2,
                _ => 1,
            };
            access(regs, start + pos, pos - offset, width);
            pos += width;
        }
        Ok(())
    }
}

impl<B: Bus> Transport for B {
    type Notifier = B::Notifier;

    fn device_type(&self) -> u16 {
        self.common().device_type
    }

    fn status(&self) -> DeviceStatus {
        // Truncation intended: the status is the low byte (MMIO's register is 32 bits wide).
        DeviceStatus::from_bits_retain(B::LAYOUT.status.read(&self.common().regs) as u8)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let common = self.common_mut();
        if status.is_empty() {
            common.driver_features = F::empty();
        }
        B::LAYOUT.status.write(&common.regs, status.bits().into());
    }

    fn device_features(&mut self) -> F {
        let l = B::LAYOUT;
        read_feature_windows(
            &self.common().regs,
            l.device_feature_select,
            l.device_feature,
        )
    }

    fn set_driver_features(&mut self, features: F) {
        let l = B::LAYOUT;
        let common = self.common_mut();
        write_feature_windows(
            &common.regs,
            l.driver_feature_select,
            l.driver_feature,
            features,
        );
        common.driver_features = features;
    }

    fn queue_count(&self) -> u16 {
        Bus::queue_count(self)
    }

    /// The size register of the queue, saturated to 16 bits (sizes are 16-bit in virtio 1.2);
    /// 0 when the queue does not exist.
    fn max_queue_size(&mut self, index: u16) -> u16 {
        if !self.queue_in_range(index) {
            return 0;
        }
        self.select_queue(index);
        let max = B::LAYOUT.queue_size_max.read(&self.common().regs);
        u16::try_from(max).unwrap_or(u16::MAX)
    }

    /// Programs the queue as virtio 1.2 §4.1.5.1.3 (PCI) and §4.2.3.2 (MMIO) describe: select
    /// it, check it exists and is disabled, write the size and the three area addresses, route
    /// its interrupt (an MSI-X vector on PCI; MMIO refuses one), then enable it.
    fn setup_queue(
        &mut self,
        index: u16,
        size: u16,
        addresses: RingAddresses,
        vector: Option<u16>,
    ) -> Result<(), TransportError> {
        let l = B::LAYOUT;
        let max = u32::from(self.max_queue_size(index));
        let regs = &self.common().regs;
        if max == 0 || size == 0 || u32::from(size) > max || l.queue_enable.read(regs) != 0 {
            return Err(TransportError::QueueUnavailable);
        }
        l.queue_size.write(regs, size.into());
        self.write_u64(l.queue_desc, addresses.descriptor_area);
        self.write_u64(l.queue_driver, addresses.driver_area);
        self.write_u64(l.queue_device, addresses.device_area);
        self.set_queue_vector(vector)?;
        l.queue_enable.write(&self.common().regs, 1);
        Ok(())
    }

    fn notifier(&mut self, index: u16) -> Result<Self::Notifier, TransportError> {
        self.queue_notifier(index)
    }

    fn set_config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError> {
        self.config_vector(vector)
    }

    fn config_generation(&self) -> u32 {
        B::LAYOUT.config_generation.read(&self.common().regs)
    }

    fn read_config_raw(&self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        self.config_accesses(offset, buf.len(), |regs, pos, at, width| match width {
            4 => buf[at..at + 4].copy_from_slice(&regs.read_u32(pos).to_le_bytes()),
            2 => buf[at..at + 2].copy_from_slice(&regs.read_u16(pos).to_le_bytes()),
            _ => buf[at] = regs.read_u8(pos),
        })
    }

    fn write_config_raw(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        self.config_accesses(offset, data.len(), |regs, pos, at, width| match width {
            4 => regs.write_u32(
                pos,
                u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]),
            ),
            2 => regs.write_u16(pos, u16::from_le_bytes([data[at], data[at + 1]])),
            _ => regs.write_u8(pos, data[at]),
        })
    }

    fn ack_interrupt(&mut self) -> InterruptCause {
        let status = self.interrupt_status();
        InterruptCause {
            queue: status & 1 != 0,
            config: status & 2 != 0,
        }
    }

    /// Writes 1 to the queue reset register and waits until both it and the enable register read
    /// 0 (virtio 1.2 §4.1.4.3.2, §4.2.2). Afterwards the queue can be programmed again with
    /// [`setup_queue`](Transport::setup_queue). `Ok(false)` unless `VIRTIO_F_RING_RESET` was
    /// negotiated and the device has the register.
    fn reset_queue(
        &mut self,
        index: u16,
        budget: &mut WaitBudget<'_>,
    ) -> Result<bool, TransportError> {
        if !self.common().driver_features.contains(F::RING_RESET) || !self.has_queue_reset() {
            return Ok(false);
        }
        if self.max_queue_size(index) == 0 {
            return Err(TransportError::QueueUnavailable);
        }
        let l = B::LAYOUT;
        let regs = &self.common().regs;
        l.queue_reset.write(regs, 1);
        budget.wait_until(|| l.queue_reset.read(regs) == 0 && l.queue_enable.read(regs) == 0)?;
        Ok(true)
    }
}

/// Reads the 128 feature bits through a select/window register pair (virtio 1.2 §4.1.4.3 and
/// §4.2.2 both expose them as four 32-bit windows).
fn read_feature_windows<R: RegisterBlock + ?Sized>(regs: &R, select: usize, window: usize) -> F {
    let mut bits = 0u128;
    for index in 0..4u32 {
        regs.write_u32(select, index);
        bits |= u128::from(regs.read_u32(window)) << (32 * index);
    }
    F::from_bits_retain(virtio_spec::le128::from_ne(bits))
}

/// Writes the 128 feature bits through a select/window register pair, window 1 last.
///
/// QEMU's virtio-mmio (7.2) takes any non-zero select as window 1: there, windows 2 and 3 (zero)
/// land on window 1, and writing it last leaves bits 32..63 (`VIRTIO_F_VERSION_1`,
/// `VIRTIO_F_RING_PACKED`) as the driver chose them; written first, they would be wiped and the
/// device would run the split layout under a driver using packed. A device that follows the
/// spec gets all four windows either way.
fn write_feature_windows<R: RegisterBlock + ?Sized>(
    regs: &R,
    select: usize,
    window: usize,
    features: F,
) {
    let bits = features.bits().to_ne();
    for index in [0u32, 2, 3, 1] {
        regs.write_u32(select, index);
        // Truncation intended: one 32-bit window.
        regs.write_u32(window, (bits >> (32 * index)) as u32);
    }
}

#[cfg(test)]
mod tests {
    use core::cell::RefCell;

    use super::*;

    /// A feature window that behaves as QEMU's virtio-mmio does: any non-zero select is window 1.
    struct ClampingWindows {
        select: RefCell<u32>,
        words: RefCell<[u32; 2]>,
    }

    impl RegisterBlock for ClampingWindows {
        fn len(&self) -> usize {
            8
        }
        fn read_u8(&self, _: usize) -> u8 {
            0
        }
        fn read_u16(&self, _: usize) -> u16 {
            0
        }
        fn read_u32(&self, offset: usize) -> u32 {
            match offset {
                4 => self.words.borrow()[usize::from(*self.select.borrow() != 0)],
                _ => *self.select.borrow(),
            }
        }
        fn write_u8(&self, _: usize, _: u8) {}
        fn write_u16(&self, _: usize, _: u16) {}
        fn write_u32(&self, offset: usize, value: u32) {
            match offset {
                4 => self.words.borrow_mut()[usize::from(*self.select.borrow() != 0)] = value,
                _ => *self.select.borrow_mut() = value,
            }
        }
    }

    #[test]
    fn window_one_survives_a_device_that_clamps_the_select() {
        let regs = ClampingWindows {
            select: RefCell::new(0),
            words: RefCell::new([0; 2]),
        };
        let features = F::VERSION_1 | F::RING_PACKED | F::INDIRECT_DESC;
        write_feature_windows(&regs, 0, 4, features);
        let low = features.bits().to_ne();
        assert_eq!(*regs.words.borrow(), [low as u32, (low >> 32) as u32]);
    }
}
