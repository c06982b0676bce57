//! Finding a virtio-pci device's structures: the PCI identity (virtio 1.2 §4.1.2) and the
//! vendor-specific capabilities that locate the common, notify, ISR and device configuration
//! structures (§4.1.4).
//!
//! Everything here is read from a device that is not trusted: the capability list is walked with a
//! bound and loop detection, and every capability is checked against its structure's minimum size,
//! alignment and the BAR it points into before anything is mapped.

use core::fmt;

use super::{ConfigSpace, TransportError};

/// The PCI vendor id of every virtio device (virtio 1.2 §4.1.2).
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;

/// PCI configuration space: vendor id (16 bits).
const PCI_VENDOR_ID: u16 = 0x00;
/// PCI configuration space: device id (16 bits).
const PCI_DEVICE_ID: u16 = 0x02;
/// PCI configuration space: status register (16 bits).
const PCI_STATUS: u16 = 0x06;
/// Status bit 4: the function has a capability list.
const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
/// PCI configuration space: pointer to the first capability (8 bits).
const PCI_CAPABILITY_LIST: u16 = 0x34;
/// Capabilities live after the 64-byte standard header.
const PCI_CAP_MIN_OFFSET: u8 = 0x40;
/// Capability id of a vendor-specific capability, which virtio uses for its structures.
const PCI_CAP_ID_VNDR: u8 = 0x09;
/// Conventional PCI configuration space size.
const PCI_CONFIG_SIZE: usize = 256;
/// At most this many capabilities are followed (256 bytes hold at most 48 after the header).
const MAX_CAPS: usize = 48;

/// Highest valid BAR index; 0x6..=0xff are reserved (virtio 1.2 §4.1.4).
const MAX_BAR: u8 = 5;

/// `cfg_type` of the common configuration structure.
pub(crate) const CAP_COMMON: u8 = 1;
/// `cfg_type` of the notification structure.
pub(crate) const CAP_NOTIFY: u8 = 2;
/// `cfg_type` of the ISR status structure.
pub(crate) const CAP_ISR: u8 = 3;
/// `cfg_type` of the device-specific configuration structure.
pub(crate) const CAP_DEVICE: u8 = 4;

/// Size of the common configuration structure of virtio 1.0 (up to `queue_used_hi`).
pub(crate) const COMMON_CFG_MIN_LEN: u64 = 56;

/// Which structure a virtio capability locates (`cfg_type`, virtio 1.2 §4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioCapKind {
    /// Common configuration (1).
    Common,
    /// Notifications (2); comes with a notify offset multiplier.
    Notify,
    /// ISR status (3).
    Isr,
    /// Device-specific configuration (4).
    Device,
    /// PCI configuration access window (5).
    PciCfg,
    /// Shared memory region (8).
    SharedMemory,
    /// Vendor data (9).
    Vendor,
    /// A type this crate does not know (must be ignored, §4.1.4).
    Other(u8),
}

impl VirtioCapKind {
    /// The kind a `cfg_type` byte names.
    pub fn from_cfg_type(cfg_type: u8) -> Self {
        match cfg_type {
            CAP_COMMON => Self::Common,
            CAP_NOTIFY => Self::Notify,
            CAP_ISR => Self::Isr,
            CAP_DEVICE => Self::Device,
            5 => Self::PciCfg,
            8 => Self::SharedMemory,
            9 => Self::Vendor,
            n => Self::Other(n),
        }
    }
}

impl fmt::Display for VirtioCapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Common => f.write_str("common"),
            Self::Notify => f.write_str("notify"),
            Self::Isr => f.write_str("isr"),
            Self::Device => f.write_str("device"),
            Self::PciCfg => f.write_str("pci-cfg"),
            Self::SharedMemory => f.write_str("shm"),
            Self::Vendor => f.write_str("vendor"),
            Self::Other(n) => write!(f, "type {n}"),
        }
    }
}

/// One `struct virtio_pci_cap` (and the notify capability's multiplier) as the device wrote it:
/// long enough for its type and inside configuration space, but its numbers are unchecked
/// against the BAR until [`fits_in`](Self::fits_in) says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioPciCap {
    /// Offset of the capability in configuration space.
    pub cap_offset: u8,
    /// Which structure it locates.
    pub kind: VirtioCapKind,
    /// The BAR slot holding it (only 0..=5 are valid; 6..=255 are reserved).
    pub bar: u8,
    /// The `id` byte (distinguishes several shared-memory regions).
    pub id: u8,
    /// Offset of the structure within the BAR.
    pub offset: u32,
    /// Length of the structure in bytes.
    pub length: u32,
    /// For [`VirtioCapKind::Notify`]: the queue notify offset multiplier.
    pub notify_off_multiplier: Option<u32>,
}

impl VirtioPciCap {
    /// The fixed part of `struct virtio_pci_cap`: cap_vndr, cap_next, cap_len, cfg_type, bar, id,
    /// `padding[2]`, offset, length.
    pub const LEN: u8 = 16;
    /// `struct virtio_pci_notify_cap`: the above plus notify_off_multiplier.
    pub const NOTIFY_LEN: u8 = 20;

    /// Reads the vendor capability at `at` as a virtio one. The whole structure must lie in
    /// configuration space, and `cap_len` must cover its type's layout, before any field past the
    /// 4-byte header is read.
    ///
    /// # Errors
    /// [`TransportError::BadCapability`] when `cap_len` is too short for the type or the
    /// capability runs past the configuration space.
    pub fn read<C: ConfigSpace + ?Sized>(config: &C, at: u8) -> Result<Self, TransportError> {
        let base = u16::from(at);
        let cap_len = config.read_u8(base + 2);
        let kind = VirtioCapKind::from_cfg_type(config.read_u8(base + 3));
        let min_len = if kind == VirtioCapKind::Notify {
            Self::NOTIFY_LEN
        } else {
            Self::LEN
        };
        if cap_len < min_len || usize::from(at) + usize::from(cap_len) > PCI_CONFIG_SIZE {
            return Err(TransportError::BadCapability);
        }
        Ok(Self {
            cap_offset: at,
            kind,
            bar: config.read_u8(base + 4),
            id: config.read_u8(base + 5),
            offset: config.read_u32(base + 8),
            length: config.read_u32(base + 12),
            notify_off_multiplier: (kind == VirtioCapKind::Notify)
                .then(|| config.read_u32(base + 16)),
        })
    }

    /// Whether `[offset, offset + length)` lies inside a BAR of `bar_size` bytes (checked
    /// arithmetic).
    pub fn fits_in(&self, bar_size: u64) -> bool {
        u64::from(self.offset)
            .checked_add(u64::from(self.length))
            .is_some_and(|end| end <= bar_size)
    }
}

impl fmt::Display for VirtioPciCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio {} at cfg {:#x}: BAR{} {:#x}+{:#x}",
            self.kind, self.cap_offset, self.bar, self.offset, self.length
        )?;
        if let Some(m) = self.notify_off_multiplier {
            write!(f, " multiplier {m}")?;
        }
        Ok(())
    }
}

/// Where one virtio structure lives: a range of a BAR, as the device's capability says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCap {
    /// The BAR index (0..=5).
    pub bar: u8,
    /// Offset of the structure within the BAR.
    pub offset: u64,
    /// Length of the structure in bytes.
    pub length: u64,
    /// `notify_off_multiplier` (notification capability only, 0 otherwise).
    pub notify_off_multiplier: u32,
}

/// The first capability of each structure type the transport uses (virtio 1.2 §4.1.4: "the driver
/// SHOULD use the first instance of each virtio structure type it can support").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration (`VIRTIO_PCI_CAP_COMMON_CFG`).
    pub common: Option<VirtioCap>,
    /// Notifications (`VIRTIO_PCI_CAP_NOTIFY_CFG`).
    pub notify: Option<VirtioCap>,
    /// ISR status (`VIRTIO_PCI_CAP_ISR_CFG`).
    pub isr: Option<VirtioCap>,
    /// Device-specific configuration (`VIRTIO_PCI_CAP_DEVICE_CFG`), absent for devices with none.
    pub device: Option<VirtioCap>,
}

/// The virtio device type of a PCI function, from its vendor and device ids (virtio 1.2 §4.1.2):
/// `0x1040 + type` for modern devices, and the fixed table of §4.1.2.1 for transitional ones.
///
/// # Errors
/// [`TransportError::NotVirtio`] when the ids are not those of a virtio device.
pub fn pci_device_type<C: ConfigSpace + ?Sized>(config: &C) -> Result<u16, TransportError> {
    if config.read_u16(PCI_VENDOR_ID) != VIRTIO_PCI_VENDOR_ID {
        return Err(TransportError::NotVirtio);
    }
    match config.read_u16(PCI_DEVICE_ID) {
        id @ 0x1041..=0x107f => Ok(id - 0x1040),
        0x1000 => Ok(1), // network card
        0x1001 => Ok(2), // block device
        0x1002 => Ok(5), // memory ballooning (traditional)
        0x1003 => Ok(3), // console
        0x1004 => Ok(8), // SCSI host
        0x1005 => Ok(4), // entropy source
        0x1009 => Ok(9), // 9P transport
        _ => Err(TransportError::NotVirtio),
    }
}

/// Walks the capability list and returns the first virtio capability of each type the transport
/// uses, each checked: `cap_len` and the structure's minimum size and alignment, the range within
/// an implemented memory BAR (checked arithmetic), an even `notify_off_multiplier`. Capabilities
/// with a reserved BAR index are ignored, as virtio 1.2 §4.1.4 requires.
///
/// `bar_size` gives the size of a memory BAR (`None`: not implemented or not memory).
///
/// # Errors
/// [`TransportError::BadCapability`] when the function has no capability list, the list is
/// malformed (pointer inside the header or misaligned, a loop, more than 48 entries, a capability
/// running past the configuration space), or a used capability is invalid.
pub fn find_virtio_caps<C: ConfigSpace + ?Sized>(
    config: &C,
    bar_size: impl Fn(u8) -> Option<u64>,
) -> Result<VirtioCaps, TransportError> {
    if config.read_u16(PCI_STATUS) & PCI_STATUS_CAP_LIST == 0 {
        return Err(TransportError::BadCapability);
    }
    let mut caps = VirtioCaps::default();
    let mut visited: u64 = 0;
    let mut ptr = config.read_u8(PCI_CAPABILITY_LIST);
    let mut walked = 0;
    while ptr != 0 {
        if ptr < PCI_CAP_MIN_OFFSET || !ptr.is_multiple_of(4) || walked >= MAX_CAPS {
            return Err(TransportError::BadCapability);
        }
        let slot = 1u64 << (ptr / 4);
        if visited & slot != 0 {
            return Err(TransportError::BadCapability);
        }
        visited |= slot;
        walked += 1;
        let at = u16::from(ptr);
        let next = config.read_u8(at + 1);
        if config.read_u8(at) == PCI_CAP_ID_VNDR {
            read_virtio_cap(config, ptr, &mut caps, &bar_size)?;
        }
        ptr = next;
    }
    Ok(caps)
}

/// Reads the vendor capability at `at` and records it if it is the first of a used type.
fn read_virtio_cap<C: ConfigSpace + ?Sized>(
    config: &C,
    at: u8,
    caps: &mut VirtioCaps,
    bar_size: &impl Fn(u8) -> Option<u64>,
) -> Result<(), TransportError> {
    let kind = VirtioCapKind::from_cfg_type(config.read_u8(u16::from(at) + 3));
    let slot = match kind {
        VirtioCapKind::Common => &mut caps.common,
        VirtioCapKind::Notify => &mut caps.notify,
        VirtioCapKind::Isr => &mut caps.isr,
        VirtioCapKind::Device => &mut caps.device,
        // PCI configuration access, shared memory, vendor data, unknown: not used.
        _ => return Ok(()),
    };
    if slot.is_some() {
        return Ok(());
    }
    let cap = VirtioPciCap::read(config, at)?;
    if cap.bar > MAX_BAR {
        // §4.1.4: "The driver MUST ignore any vendor-specific capability structure which has a
        // reserved bar value."
        return Ok(());
    }
    check_cap(&cap, bar_size(cap.bar))?;
    *slot = Some(VirtioCap {
        bar: cap.bar,
        offset: u64::from(cap.offset),
        length: u64::from(cap.length),
        notify_off_multiplier: cap.notify_off_multiplier.unwrap_or(0),
    });
    Ok(())
}

/// Checks one capability: the structure has at least its minimum size and alignment (virtio 1.2
/// §4.1.4.3–§4.1.4.6), lies within an implemented memory BAR, and a notification multiplier is
/// 0 or even.
fn check_cap(cap: &VirtioPciCap, bar_size: Option<u64>) -> Result<(), TransportError> {
    let (min_len, align) = match cap.kind {
        VirtioCapKind::Common => (COMMON_CFG_MIN_LEN, 4),
        VirtioCapKind::Notify => (2, 2),
        VirtioCapKind::Isr => (1, 1),
        // A device configuration may be empty; accesses are checked against its length.
        _ => (0, 4),
    };
    let fits = bar_size.is_some_and(|size| cap.fits_in(size));
    let bad_multiplier = cap
        .notify_off_multiplier
        .is_some_and(|m| !m.is_multiple_of(2));
    if u64::from(cap.length) < min_len
        || !cap.offset.is_multiple_of(align)
        || !fits
        || bad_multiplier
    {
        return Err(TransportError::BadCapability);
    }
    Ok(())
}
