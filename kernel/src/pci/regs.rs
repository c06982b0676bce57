//! Offsets and bits of the configuration header (PCI Local Bus 3.0 §6.1, PCI-PCI Bridge 1.2 §3.2).

/// Vendor ID (u16); 0xFFFF when no function answers.
pub const VENDOR_ID: u16 = 0x00;
/// Device ID (u16).
pub const DEVICE_ID: u16 = 0x02;
/// Command register (u16).
pub const COMMAND: u16 = 0x04;
/// Status register (u16).
pub const STATUS: u16 = 0x06;
/// Revision ID (u8); class code follows in the same dword.
pub const REVISION: u16 = 0x08;
/// Header type (u8); bit 7 set on function 0 of a multi-function device.
pub const HEADER_TYPE: u16 = 0x0E;
/// BAR 0 (u32); BAR n is at `BAR0 + 4 * n`.
pub const BAR0: u16 = 0x10;
/// Capabilities pointer (u8), valid when `STATUS_CAP_LIST` is set.
pub const CAP_PTR: u16 = 0x34;
/// Interrupt line (u8): the legacy IRQ firmware routed, 0xFF for none.
pub const INTERRUPT_LINE: u16 = 0x3C;
/// Interrupt pin (u8): 0 none, 1..=4 INTA#..INTD#.
pub const INTERRUPT_PIN: u16 = 0x3D;

/// Type-1 header: primary bus number (u8).
pub const PRIMARY_BUS: u16 = 0x18;
/// Type-1 header: secondary bus number (u8).
pub const SECONDARY_BUS: u16 = 0x19;
/// Type-1 header: subordinate bus number (u8).
pub const SUBORDINATE_BUS: u16 = 0x1A;

/// Command: respond to I/O space accesses.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command: respond to memory space accesses.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command: may master the bus (DMA, MSI).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command: legacy INTx disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// Status: a capability list is present at `CAP_PTR`.
pub const STATUS_CAP_LIST: u16 = 1 << 4;

/// Header type (bits 6:0) of an ordinary function.
pub const HEADER_TYPE_NORMAL: u8 = 0;
/// Header type of a PCI-to-PCI bridge.
pub const HEADER_TYPE_BRIDGE: u8 = 1;
