//! Finding a virtio-pci device's structures: the PCI identity (virtio 1.2 §4.1.2) and the
//! vendor-specific capabilities that locate the common, notify, ISR and device configuration
//! structures (§4.1.4).
//!
//! Everything here is read from a device that is not trusted: the capability list is walked with a
//! bound and loop detection, and every capability is checked against its structure's minimum size,
//! alignment and the BAR it points into before anything is mapped.

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

/// Size of `struct virtio_pci_cap`: the minimum `cap_len` of a virtio capability.
const VIRTIO_CAP_LEN: u8 = 16;
/// Size of `struct virtio_pci_notify_cap` (the header and `notify_off_multiplier`).
const VIRTIO_NOTIFY_CAP_LEN: u8 = 20;
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
            read_virtio_cap(config, at, &mut caps, &bar_size)?;
        }
        ptr = next;
    }
    Ok(caps)
}

/// Reads the vendor capability at `at` and records it if it is the first of a used type.
fn read_virtio_cap<C: ConfigSpace + ?Sized>(
    config: &C,
    at: u16,
    caps: &mut VirtioCaps,
    bar_size: &impl Fn(u8) -> Option<u64>,
) -> Result<(), TransportError> {
    let cap_len = config.read_u8(at + 2);
    let cfg_type = config.read_u8(at + 3);
    let slot = match cfg_type {
        CAP_COMMON => &mut caps.common,
        CAP_NOTIFY => &mut caps.notify,
        CAP_ISR => &mut caps.isr,
        CAP_DEVICE => &mut caps.device,
        // PCI configuration access, shared memory, vendor data, unknown: not used.
        _ => return Ok(()),
    };
    if slot.is_some() {
        return Ok(());
    }
    // The whole structure must lie in configuration space before any field past the 4-byte
    // header is read.
    let min_len = if cfg_type == CAP_NOTIFY {
        VIRTIO_NOTIFY_CAP_LEN
    } else {
        VIRTIO_CAP_LEN
    };
    if cap_len < min_len || usize::from(at) + usize::from(cap_len) > PCI_CONFIG_SIZE {
        return Err(TransportError::BadCapability);
    }
    let bar = config.read_u8(at + 4);
    if bar > MAX_BAR {
        // §4.1.4: "The driver MUST ignore any vendor-specific capability structure which has a
        // reserved bar value."
        return Ok(());
    }
    let cap = VirtioCap {
        bar,
        offset: u64::from(config.read_u32(at + 8)),
        length: u64::from(config.read_u32(at + 12)),
        notify_off_multiplier: if cfg_type == CAP_NOTIFY {
            config.read_u32(at + 16)
        } else {
            0
        },
    };
    check_cap(cfg_type, &cap, bar_size(bar))?;
    *slot = Some(cap);
    Ok(())
}

/// Checks one capability: the structure has at least its minimum size and alignment (virtio 1.2
/// §4.1.4.3–§4.1.4.6), lies within an implemented memory BAR (checked arithmetic), and a
/// notification multiplier is 0 or even.
fn check_cap(cfg_type: u8, cap: &VirtioCap, bar_size: Option<u64>) -> Result<(), TransportError> {
    let (min_len, align) = match cfg_type {
        CAP_COMMON => (COMMON_CFG_MIN_LEN, 4),
        CAP_NOTIFY => (2, 2),
        CAP_ISR => (1, 1),
        // A device configuration may be empty; accesses are checked against its length.
        _ => (0, 4),
    };
    let end = cap.offset.checked_add(cap.length);
    let fits = matches!((end, bar_size), (Some(end), Some(size)) if end <= size);
    let bad_multiplier = cfg_type == CAP_NOTIFY && !cap.notify_off_multiplier.is_multiple_of(2);
    if cap.length < min_len || !cap.offset.is_multiple_of(align) || !fits || bad_multiplier {
        return Err(TransportError::BadCapability);
    }
    Ok(())
}
