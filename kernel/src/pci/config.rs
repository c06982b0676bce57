//! Configuration space over I/O ports 0xCF8/0xCFC (configuration mechanism #1, PCI Local Bus 3.0
//! §3.2.2.3.2), and the kernel's implementation of [`ConfigSpace`]. The rules (function
//! addresses, which accesses are in range, which writes are refused) are
//! `vireo_kcore::pci::config`, tested on the host.

use spin::Mutex;
pub use vireo_kcore::pci::config::{CONFIG_SPACE_SIZE, ConfigError, PciAddress};
use vireo_kcore::pci::config::{access_ok, check_write};

use super::config_space::ConfigSpace;
use crate::arch::port::{Port, PortValue};

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
            check_write(
                self.read_u8(super::regs::HEADER_TYPE),
                self.read_u16(super::regs::COMMAND),
                offset,
                $size,
                u32::from(value),
            )?;
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
