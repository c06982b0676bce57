//! Configuration-space rules that need no port: a function's address and its CONFIG_ADDRESS value
//! (PCI Local Bus 3.0 §3.2.2.3.2), which accesses are in range, and which writes the kernel
//! refuses because they would move or widen address decoding.
//!
//! The kernel's `pci::config` does the port I/O and asks these functions first.

use core::fmt;

/// Bytes of configuration space reachable through mechanism #1 (the conventional header and
/// capability area; PCIe's extended space needs MMCONFIG).
pub const CONFIG_SPACE_SIZE: u16 = 256;

/// Command register offset.
const COMMAND: u16 = 0x04;
/// Command register: I/O and memory space decoding.
const COMMAND_DECODE: u16 = 0b11;

/// Whether an access of `size` bytes at `offset` is aligned and inside mechanism #1's space.
pub fn access_ok(offset: u16, size: u16) -> bool {
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

    /// The CONFIG_ADDRESS value for the dword holding `offset`: enable bit 31, bus in 23:16,
    /// device in 15:11, function in 10:8, the dword's register number in 7:2.
    pub fn config_address(self, offset: u16) -> u32 {
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

/// Whether `[offset, offset + size)` touches a register that decides address decoding, in a
/// header of type `header_type` (the header-type byte; bit 7, multi-function, is ignored).
pub fn is_protected(header_type: u8, offset: u16, size: u16) -> bool {
    let protected: &[(u16, u16)] = match header_type & 0x7F {
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
    let end = offset.saturating_add(size);
    protected.iter().any(|&(s, e)| offset < e && s < end)
}

/// Whether writing `value` (of any width) at `offset` sets a command-register decode bit (I/O or
/// memory) that is clear in `command_now`: the kernel turns decoding on only for spaces whose BARs
/// it checked.
pub fn turns_decoding_on(command_now: u16, offset: u16, value: u32) -> bool {
    offset == COMMAND && (value as u16) & COMMAND_DECODE & !command_now != 0
}

/// Why a write of `size` bytes of `value` at `offset` must be refused, if it must, for a function
/// with header type `header_type` whose command register holds `command_now`.
pub fn check_write(
    header_type: u8,
    command_now: u16,
    offset: u16,
    size: u16,
    value: u32,
) -> Result<(), ConfigError> {
    if !access_ok(offset, size) {
        return Err(ConfigError::BadOffset);
    }
    if is_protected(header_type, offset, size) || turns_decoding_on(command_now, offset, value) {
        return Err(ConfigError::Protected);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use super::*;

    #[test]
    fn addresses_are_checked_and_encoded_as_mechanism_1_wants() {
        assert!(PciAddress::new(0, 32, 0).is_none());
        assert!(PciAddress::new(0, 0, 8).is_none());
        let a = PciAddress::new(0xAB, 31, 7).unwrap();
        assert_eq!((a.bus(), a.device(), a.function()), (0xAB, 31, 7));
        assert_eq!(a.to_string(), "ab:1f.7");
        assert_eq!(PciAddress::new(0, 3, 0).unwrap().to_string(), "00:03.0");
        // Bit 31 enable, 23:16 bus, 15:11 device, 10:8 function, 7:2 register.
        assert_eq!(a.config_address(0), 0x80AB_FF00);
        assert_eq!(a.config_address(0x3C), 0x80AB_FF3C);
        // Any byte of a dword selects the dword.
        assert_eq!(a.config_address(0x3F), 0x80AB_FF3C);
        let b = PciAddress::new(1, 2, 3).unwrap();
        assert_eq!(
            b.config_address(0x10),
            0x8000_0000 | 1 << 16 | 2 << 11 | 3 << 8 | 0x10
        );
        // Beyond 256 bytes would need MMCONFIG: the register number keeps 8 bits.
        assert_eq!(b.config_address(0x104) & 0xFF, 0x04);
    }

    #[test]
    fn accesses_must_be_aligned_and_inside_256_bytes() {
        assert!(access_ok(0, 4) && access_ok(0xFC, 4) && access_ok(0xFF, 1) && access_ok(0xFE, 2));
        assert!(!access_ok(0x101, 1) && !access_ok(0x100, 4) && !access_ok(u16::MAX, 1));
        assert!(!access_ok(2, 4) && !access_ok(1, 2) && !access_ok(0xFD, 4));
    }

    #[test]
    fn type_0_headers_protect_bars_and_the_rom() {
        for offset in (0x10..0x28).step_by(4).chain([0x30]) {
            assert!(is_protected(0, offset, 4), "{offset:#x}");
            assert!(is_protected(0x80, offset, 4), "multi-function {offset:#x}");
        }
        // A byte of the last BAR, a word that ends inside the first.
        assert!(is_protected(0, 0x27, 1));
        assert!(is_protected(0x80, 0x0E, 4), "a dword at 0x0E reaches BAR0");
        // Command, cache line size, CardBus CIS, subsystem IDs, capabilities, interrupt line.
        for offset in [0x04, 0x0C, 0x28, 0x2C, 0x34, 0x3C] {
            assert!(!is_protected(0, offset, 4), "{offset:#x}");
        }
        assert!(!is_protected(0, 0x0F, 1));
        // The capability area is the driver's.
        assert!(!is_protected(0, 0x40, 4) && !is_protected(0, 0xFC, 4));
    }

    #[test]
    fn bridges_protect_bars_bus_numbers_windows_rom_and_bridge_control() {
        let protected = [
            0x10, 0x14, 0x18, 0x19, 0x1A, 0x1C, 0x1D, 0x20, 0x24, 0x28, 0x2C, 0x30, 0x38, 0x3E,
        ];
        for offset in protected {
            assert!(is_protected(1, offset, 1), "{offset:#x}");
        }
        // Secondary latency timer, secondary status, capabilities pointer, interrupt line and pin.
        for offset in [0x1B, 0x1E, 0x1F, 0x34, 0x3C, 0x3D] {
            assert!(!is_protected(1, offset, 1), "{offset:#x}");
        }
        assert!(
            is_protected(1, 0x1E, 4),
            "a dword at 0x1C holds the I/O base"
        );
    }

    #[test]
    fn unknown_header_types_protect_the_whole_header() {
        for offset in (0x10..0x40).step_by(1) {
            assert!(is_protected(2, offset, 1), "{offset:#x}");
            assert!(is_protected(0x7F, offset, 1), "{offset:#x}");
        }
        assert!(!is_protected(2, 0x04, 2) && !is_protected(2, 0x40, 4));
    }

    #[test]
    fn decoding_may_stay_on_or_go_off_but_not_come_on() {
        // Memory decoding on: writing it on again, or off, is fine; turning I/O on is not.
        assert!(!turns_decoding_on(0b010, 0x04, 0b010));
        assert!(!turns_decoding_on(0b010, 0x04, 0b000));
        assert!(turns_decoding_on(0b010, 0x04, 0b011));
        assert!(turns_decoding_on(0, 0x04, 0b001));
        // Bus mastering and INTx disable are not decode bits; nor is the status half of a dword.
        assert!(!turns_decoding_on(0, 0x04, 0b100 | 1 << 10));
        assert!(!turns_decoding_on(0, 0x04, 0x0003_0000));
        assert!(turns_decoding_on(0, 0x04, 0x0010_0002));
        // Other registers never turn decoding on.
        assert!(!turns_decoding_on(0, 0x06, 0xFFFF));
        assert!(!turns_decoding_on(0, 0x3C, 0xFFFF_FFFF));
    }

    #[test]
    fn writes_are_checked_in_order() {
        assert_eq!(check_write(0, 0, 0x3C, 1, 0x0B), Ok(()));
        assert_eq!(check_write(0, 0, 0x3D, 2, 0), Err(ConfigError::BadOffset));
        assert_eq!(check_write(0, 0, 0x100, 1, 0), Err(ConfigError::BadOffset));
        assert_eq!(check_write(0, 0, 0x10, 4, 0), Err(ConfigError::Protected));
        assert_eq!(
            check_write(0, 0, 0x04, 2, 0b010),
            Err(ConfigError::Protected)
        );
        assert_eq!(check_write(0, 0b110, 0x04, 2, 0b110 | 1 << 10), Ok(()));
        assert_eq!(
            ConfigError::Protected.to_string(),
            "configuration register decides address decoding"
        );
    }
}
