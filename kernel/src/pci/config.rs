//! Configuration space over I/O ports 0xCF8/0xCFC (configuration mechanism #1, PCI Local Bus 3.0
//! §3.2.2.3.2), and the kernel's implementation of [`ConfigSpace`].

use core::fmt;

use spin::Mutex;

use super::config_space::ConfigSpace;
use crate::arch::port::{Port, PortValue};

/// Bytes of configuration space reachable through mechanism #1 (the conventional header and
/// capability area; PCIe's extended space needs MMCONFIG).
pub const CONFIG_SPACE_SIZE: u16 = 256;

/// Whether an access of `size` bytes at `offset` is aligned and inside mechanism #1's space.
pub(crate) fn access_ok(offset: u16, size: u16) -> bool {
    offset.is_multiple_of(size) && offset < CONFIG_SPACE_SIZE
}

/// A function's location: bus, device (0..32) and function (0..8) numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    bus: u8,
    device: u8,
    function: u8,
}

impl PciAddress {
    /// The function at `bus:device.function`, or `None` if `device >= 32` or `function >= 8`.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device < 32 && function < 8 {
            Some(Self {
                bus,
                device,
                function,
            })
        } else {
            None
        }
    }

    /// The bus number.
    pub const fn bus(self) -> u8 {
        self.bus
    }

    /// The device number (0..32).
    pub const fn device(self) -> u8 {
        self.device
    }

    /// The function number (0..8).
    pub const fn function(self) -> u8 {
        self.function
    }

    /// The CONFIG_ADDRESS value for the dword holding `offset` (enable bit set).
    fn config_address(self, offset: u16) -> u32 {
        0x8000_0000
            | u32::from(self.bus) << 16
            | u32::from(self.device) << 11
            | u32::from(self.function) << 8
            | u32::from(offset & 0xFC)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

// SAFETY: 0xCF8 is CONFIG_ADDRESS on every PC-compatible host bridge (q35, i440fx); selecting an
// address has no effect beyond which dword the data port reaches. The lock around it is what
// serializes configuration cycles: whoever holds it owns the address/data pair.
static CONFIG_ADDRESS: Mutex<Port<u32>> = Mutex::new(unsafe { Port::new(0xCF8) });

/// Whether configuration mechanism #1 exists: CONFIG_ADDRESS keeps the enable bit written to it
/// (what Linux's `pci_check_type1` looks at). Without a host bridge decoding 0xCF8 (QEMU
/// `microvm` without `pcie=on`) the port reads all-ones and there is no bus to scan.
pub(crate) fn mechanism_present() -> bool {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut address = CONFIG_ADDRESS.lock();
        let saved = address.read();
        address.write(0x8000_0000);
        let present = address.read() == 0x8000_0000;
        address.write(saved);
        present
    })
}

/// Runs `f` on the data port for `offset`'s byte lane, with `offset`'s dword of `addr` selected,
/// holding the lock with interrupts off (so an interrupt handler that touches configuration space
/// cannot deadlock against the code it interrupted).
fn with_data_port<T: PortValue, R>(
    addr: PciAddress,
    offset: u16,
    f: impl FnOnce(&mut Port<T>) -> R,
) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut address = CONFIG_ADDRESS.lock();
        address.write(addr.config_address(offset));
        // SAFETY: 0xCFC..0xD00 are CONFIG_DATA's byte lanes. Reads only return the selected
        // register; writes are guarded by this module's callers (`unsafe` raw writes, or filtered
        // writes that cannot change address decoding).
        let mut data = unsafe { Port::<T>::new(0xCFC + (offset & 3)) };
        f(&mut data)
    })
}

/// Raw configuration access to one function, by address (no device need exist there).
///
/// Reads are safe. Writes that cannot move or widen address decoding (anything but BARs, the
/// expansion ROM, bridge windows and bus numbers, and setting a clear decode bit in the command
/// register) are safe through the `try_write_*` methods; any write is possible through the
/// `unsafe` `write_*_raw` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciConfig {
    address: PciAddress,
}

/// Why a configuration write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The offset is misaligned for the access size or beyond the 256-byte space.
    BadOffset,
    /// The register decides where the function decodes memory or I/O (a BAR, the expansion ROM,
    /// a bridge window or bus number), or the write would turn on I/O or memory decoding the kernel
    /// left off; only the kernel's BAR code does those.
    Protected,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadOffset => "misaligned or out-of-range configuration offset",
            Self::Protected => "configuration register decides address decoding",
        })
    }
}

macro_rules! raw_access {
    ($read:ident, $write:ident, $t:ty, $size:expr) => {
        #[doc = concat!("Reads the `", stringify!($t), "` at `offset`; all-ones if misaligned or out of range.")]
        pub fn $read(&self, offset: u16) -> $t {
            if !access_ok(offset, $size) {
                return <$t>::MAX;
            }
            with_data_port(self.address, offset, |p: &mut Port<$t>| p.read())
        }

        #[doc = concat!("Writes the `", stringify!($t), "` at `offset`; ignored if misaligned or out of range.")]
        ///
        /// # Safety
        /// The write must be unable to break memory safety: it must not make the function decode
        /// addresses that belong to RAM or to another device, nor start DMA into memory the kernel
        /// owns without its consent.
        pub unsafe fn $write(&self, offset: u16, value: $t) {
            if !access_ok(offset, $size) {
                return;
            }
            with_data_port(self.address, offset, |p: &mut Port<$t>| p.write(value))
        }
    };
}

macro_rules! try_write {
    ($name:ident, $raw:ident, $t:ty, $size:expr) => {
        #[doc = concat!("Writes the `", stringify!($t), "` at `offset`, refusing registers that decide address decoding.")]
        pub fn $name(&self, offset: u16, value: $t) -> Result<(), ConfigError> {
            if !access_ok(offset, $size) {
                return Err(ConfigError::BadOffset);
            }
            if self.is_protected(offset, $size) || self.turns_decoding_on(offset, u32::from(value))
            {
                return Err(ConfigError::Protected);
            }
            // DMA stays the driver's business: bus mastering is enabled at init for functions
            // with BARs. SAFETY: not a BAR, ROM, window or bus-number register, and no decoding
            // the kernel left off is turned on, so the function decodes no other addresses.
            unsafe { self.$raw(offset, value) };
            Ok(())
        }
    };
}

impl PciConfig {
    /// Configuration access to the function at `address`.
    pub const fn new(address: PciAddress) -> Self {
        Self { address }
    }

    /// The function's address.
    pub const fn address(&self) -> PciAddress {
        self.address
    }

    raw_access!(read_u8, write_u8_raw, u8, 1);
    raw_access!(read_u16, write_u16_raw, u16, 2);
    raw_access!(read_u32, write_u32_raw, u32, 4);

    /// Whether a write of `value` at `offset` sets a command-register decode bit (I/O or memory)
    /// that is clear now: the kernel turns decoding on only for spaces whose BARs it checked.
    fn turns_decoding_on(&self, offset: u16, value: u32) -> bool {
        if offset != super::regs::COMMAND {
            return false;
        }
        let decode = super::regs::COMMAND_IO | super::regs::COMMAND_MEMORY;
        let now = self.read_u16(super::regs::COMMAND);
        (value as u16) & decode & !now != 0
    }

    /// Whether `[offset, offset + size)` touches a register that decides address decoding.
    fn is_protected(&self, offset: u16, size: u16) -> bool {
        let header_type = self.read_u8(super::regs::HEADER_TYPE) & 0x7F;
        let protected: &[(u16, u16)] = match header_type {
            // BAR0..BAR5, expansion ROM.
            0 => &[(0x10, 0x28), (0x30, 0x34)],
            // BAR0..BAR1, bus numbers, I/O, memory and prefetchable windows and their upper
            // halves, expansion ROM, bridge control (VGA/ISA forwarding, secondary reset).
            1 => &[
                (0x10, 0x1B),
                (0x1C, 0x1E),
                (0x20, 0x34),
                (0x38, 0x3C),
                (0x3E, 0x40),
            ],
            // Unknown layouts: the whole predefined header.
            _ => &[(0x10, 0x40)],
        };
        let end = offset + size;
        protected.iter().any(|&(s, e)| offset < e && s < end)
    }

    try_write!(try_write_u8, write_u8_raw, u8, 1);
    try_write!(try_write_u16, write_u16_raw, u16, 2);
    try_write!(try_write_u32, write_u32_raw, u32, 4);
}

impl ConfigSpace for PciConfig {
    fn read_u8(&self, offset: u16) -> u8 {
        PciConfig::read_u8(self, offset)
    }
    fn read_u16(&self, offset: u16) -> u16 {
        PciConfig::read_u16(self, offset)
    }
    fn read_u32(&self, offset: u16) -> u32 {
        PciConfig::read_u32(self, offset)
    }
    fn write_u8(&self, offset: u16, value: u8) {
        log_refused(self.address, offset, self.try_write_u8(offset, value));
    }
    fn write_u16(&self, offset: u16, value: u16) {
        log_refused(self.address, offset, self.try_write_u16(offset, value));
    }
    fn write_u32(&self, offset: u16, value: u32) {
        log_refused(self.address, offset, self.try_write_u32(offset, value));
    }
}

fn log_refused(address: PciAddress, offset: u16, result: Result<(), ConfigError>) {
    if let Err(e) = result {
        log::warn!("pci {address}: config write at {offset:#x} refused: {e}");
    }
}
