//! Feature bits, driver options and the device configuration (virtio 1.2 §5.2.3, §5.2.4).
//!
//! Layer: driver (`vireo-drivers`). [`BlkDeviceConfig`] is what the device's configuration
//! space says, checked; the kernel's `vireo::block::BlockInfo` is the summary applications get.

use vireo_virtio::{
    transport::{Device, Transport},
    virtio_spec::{F, le128},
};

use super::error::BlkDriverError;

/// The unit of `capacity` and of request sectors: 512 bytes, whatever the block size (§5.2.4).
pub const SECTOR_SIZE: u64 = 512;

/// A device-type feature bit (§5.2.3).
pub(crate) const fn bit(n: u32) -> F {
    F::from_bits_retain(le128::from_ne(1 << n))
}

pub(crate) const SIZE_MAX: F = bit(1);
pub(crate) const SEG_MAX: F = bit(2);
pub(crate) const GEOMETRY: F = bit(4);
pub(crate) const RO: F = bit(5);
pub(crate) const BLK_SIZE: F = bit(6);
pub(crate) const FLUSH: F = bit(9);
pub(crate) const TOPOLOGY: F = bit(10);
pub(crate) const MQ: F = bit(12);
pub(crate) const DISCARD: F = bit(13);
pub(crate) const WRITE_ZEROES: F = bit(14);

/// Byte offsets in `struct virtio_blk_config` (§5.2.4).
mod offset {
    pub(super) const CAPACITY: usize = 0;
    pub(super) const SIZE_MAX: usize = 8;
    pub(super) const SEG_MAX: usize = 12;
    pub(super) const GEOMETRY: usize = 16;
    pub(super) const BLK_SIZE: usize = 20;
    pub(super) const TOPOLOGY: usize = 24;
    pub(super) const NUM_QUEUES: usize = 34;
    pub(super) const MAX_DISCARD_SECTORS: usize = 36;
    pub(super) const MAX_DISCARD_SEG: usize = 40;
    pub(super) const DISCARD_SECTOR_ALIGNMENT: usize = 44;
    pub(super) const MAX_WRITE_ZEROES_SECTORS: usize = 48;
    pub(super) const MAX_WRITE_ZEROES_SEG: usize = 52;
    pub(super) const WRITE_ZEROES_MAY_UNMAP: usize = 56;
    /// End of the fields this driver reads.
    pub(super) const END: usize = 60;
}

/// What the kernel lets the driver negotiate and how many queues it asks for.
///
/// Transport features are only wanted here; they are accepted when the device offers them too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkOptions {
    /// Use the packed ring layout (`VIRTIO_F_RING_PACKED`) if offered; split otherwise.
    pub packed: bool,
    /// Negotiate `VIRTIO_F_INDIRECT_DESC`. A request then goes in one indirect table unless its
    /// chain is short and the ring has room to spare, when direct descriptors cost both sides
    /// less (see the driver's chain layout). `false` forces direct chains.
    pub indirect: bool,
    /// Negotiate `VIRTIO_F_EVENT_IDX` (finer notification suppression).
    pub event_idx: bool,
    /// Negotiate `VIRTIO_BLK_F_MQ` and use up to [`queues`](Self::queues) request queues.
    pub multi_queue: bool,
    /// Request queues wanted (with MQ: `min(num_queues, queues)`, at least 1).
    pub queues: u16,
    /// Largest queue size wanted (the device's maximum if smaller; split rings round down to a
    /// power of two).
    pub queue_size: u16,
    /// Status reads a dropped driver waits for the device to confirm its reset; past that its
    /// rings and the buffers of requests in flight are leaked rather than freed.
    pub drop_reset_polls: u32,
}

impl Default for BlkOptions {
    fn default() -> Self {
        Self {
            packed: false,
            indirect: true,
            event_idx: true,
            multi_queue: false,
            queues: 1,
            queue_size: 256,
            drop_reset_polls: 1 << 20,
        }
    }
}

impl BlkOptions {
    /// The features the driver asks for with these options.
    pub(crate) fn wanted(&self) -> F {
        let mut wanted = F::VERSION_1
            | SIZE_MAX
            | SEG_MAX
            | GEOMETRY
            | RO
            | BLK_SIZE
            | FLUSH
            | TOPOLOGY
            | DISCARD
            | WRITE_ZEROES;
        if self.packed {
            wanted |= F::RING_PACKED;
        }
        if self.indirect {
            wanted |= F::INDIRECT_DESC;
        }
        if self.event_idx {
            wanted |= F::EVENT_IDX;
        }
        if self.multi_queue {
            wanted |= MQ;
        }
        wanted
    }
}

/// Legacy disk geometry (`VIRTIO_BLK_F_GEOMETRY`, §5.2.4); informational only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}

/// Optimal I/O alignment hints (`VIRTIO_BLK_F_TOPOLOGY`, §5.2.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// log2 of logical blocks per physical block.
    pub physical_block_exp: u8,
    /// Offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// Suggested minimum I/O size, in blocks.
    pub min_io_size: u16,
    /// Optimal (suggested maximum) I/O size, in blocks.
    pub opt_io_size: u32,
}

/// What the driver knows about the disk: the device configuration, checked, with the limits
/// every request is validated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkDeviceConfig {
    /// Size of the disk in 512-byte sectors.
    pub capacity: u64,
    /// Logical block size in bytes: a power of two in 512..=65536 (512 when not offered).
    pub blk_size: u32,
    /// The `blk_size` the device reported when it was unusable (not a power of two in
    /// 512..=65536) and 512 is used instead; `None` when it was fine or not offered.
    pub blk_size_rejected: Option<u32>,
    /// Largest segment (one descriptor) in bytes (`size_max`, `u32::MAX` when not offered or 0).
    pub size_max: u32,
    /// Most data segments per request (`seg_max`; 1 when not offered or 0, as Linux assumes).
    pub seg_max: u32,
    /// Disk geometry, when `VIRTIO_BLK_F_GEOMETRY` was negotiated.
    pub geometry: Option<Geometry>,
    /// Alignment hints, when `VIRTIO_BLK_F_TOPOLOGY` was negotiated.
    pub topology: Option<Topology>,
    /// The device refuses writes (`VIRTIO_BLK_F_RO`).
    pub read_only: bool,
    /// `VIRTIO_BLK_F_FLUSH` was negotiated: [`Request::Flush`](super::Request::Flush) is
    /// available, and a write is durable only once a flush submitted after its completion has
    /// completed. Without it the device is expected to have no writeback cache (Linux assumes
    /// writethrough then): a write is acknowledged when the device says it is done, and the
    /// driver has no way to ask for more durability than that.
    pub flush: bool,
    /// Request queues the device has (`num_queues` with MQ, else 1).
    pub num_queues: u16,
    /// Request queues the driver created.
    pub queues: u16,
    /// Most sectors per discard segment (0: discard not available).
    pub max_discard_sectors: u32,
    /// Most segments per discard request.
    pub max_discard_seg: u32,
    /// Suggested discard alignment in sectors (a hint; not enforced).
    pub discard_sector_alignment: u32,
    /// Most sectors per write-zeroes segment (0: write-zeroes not available).
    pub max_write_zeroes_sectors: u32,
    /// Most segments per write-zeroes request.
    pub max_write_zeroes_seg: u32,
    /// The device may unmap when asked to write zeroes with the UNMAP flag.
    pub write_zeroes_may_unmap: bool,
    /// Most data segments in one read or write: `seg_max`, bounded by the smallest queue size
    /// minus the header and status descriptors.
    pub max_segments: u32,
}

impl BlkDeviceConfig {
    /// The largest data segment (one caller buffer) in bytes.
    #[must_use]
    pub fn max_segment_bytes(&self) -> u32 {
        self.size_max
    }

    /// The largest read or write the driver accepts in one request, in bytes: `max_segments`
    /// segments of `size_max`, rounded down to the block size. The kernel chunks I/O to this.
    #[must_use]
    pub fn max_request_bytes(&self) -> u64 {
        let raw = u64::from(self.max_segments) * u64::from(self.size_max);
        raw - raw % u64::from(self.blk_size)
    }

    /// The size of the disk in bytes.
    #[must_use]
    pub fn capacity_bytes(&self) -> u64 {
        // Checked when the configuration was read.
        self.capacity.saturating_mul(SECTOR_SIZE)
    }

    /// Sectors per logical block.
    #[must_use]
    pub fn sectors_per_block(&self) -> u64 {
        u64::from(self.blk_size) / SECTOR_SIZE
    }

    /// Placeholder before the configuration is read.
    pub(crate) fn empty() -> Self {
        Self {
            capacity: 0,
            blk_size: 512,
            blk_size_rejected: None,
            size_max: u32::MAX,
            seg_max: 1,
            geometry: None,
            topology: None,
            read_only: false,
            flush: false,
            num_queues: 1,
            queues: 0,
            max_discard_sectors: 0,
            max_discard_seg: 0,
            discard_sector_alignment: 0,
            max_write_zeroes_sectors: 0,
            max_write_zeroes_seg: 0,
            write_zeroes_may_unmap: false,
            max_segments: 0,
        }
    }

    /// Reads and checks the configuration for the negotiated `features` (one consistent read
    /// under the generation counter, §2.5.1). `queues` and `max_segments` are left for the
    /// caller to fill once the queues exist.
    pub(crate) fn read<T: Transport>(device: &Device<T>) -> Result<Self, BlkDriverError> {
        let features = device.features();
        let has = |f: F| features.contains(f);
        let mut end = offset::BLK_SIZE;
        for (feature, field_end) in [
            (BLK_SIZE, offset::BLK_SIZE + 4),
            (TOPOLOGY, offset::TOPOLOGY + 8),
            (MQ, offset::NUM_QUEUES + 2),
            (DISCARD, offset::DISCARD_SECTOR_ALIGNMENT + 4),
            // The last field: a device's configuration space may end right after it (QEMU's
            // does, without later features), before the padding that completes the struct.
            (WRITE_ZEROES, offset::WRITE_ZEROES_MAY_UNMAP + 1),
        ] {
            if has(feature) {
                end = end.max(field_end);
            }
        }
        let mut raw = [0u8; offset::END];
        device
            .read_config(0, &mut raw[..end])
            .map_err(BlkDriverError::Transport)?;
        Self::parse(features, &raw)
    }

    fn parse(features: F, raw: &[u8; offset::END]) -> Result<Self, BlkDriverError> {
        let has = |f: F| features.contains(f);
        let u16_at = |o: usize| u16::from_le_bytes([raw[o], raw[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
        let mut u64_bytes = [0u8; 8];
        u64_bytes.copy_from_slice(&raw[offset::CAPACITY..offset::CAPACITY + 8]);
        let capacity = u64::from_le_bytes(u64_bytes);
        if capacity.checked_mul(SECTOR_SIZE).is_none() {
            return Err(BlkDriverError::BadCapacity);
        }
        let (blk_size, blk_size_rejected) = if has(BLK_SIZE) {
            let reported = u32_at(offset::BLK_SIZE);
            if reported.is_power_of_two() && (512..=65536).contains(&reported) {
                (reported, None)
            } else {
                log::warn!("virtio-blk: unusable blk_size {reported}, using 512");
                (512, Some(reported))
            }
        } else {
            (512, None)
        };
        let size_max = match has(SIZE_MAX).then(|| u32_at(offset::SIZE_MAX)) {
            Some(0) | None => u32::MAX,
            Some(n) => n,
        };
        let seg_max = match has(SEG_MAX).then(|| u32_at(offset::SEG_MAX)) {
            Some(0) | None => 1,
            Some(n) => n,
        };
        let geometry = has(GEOMETRY).then(|| Geometry {
            cylinders: u16_at(offset::GEOMETRY),
            heads: raw[offset::GEOMETRY + 2],
            sectors: raw[offset::GEOMETRY + 3],
        });
        let topology = has(TOPOLOGY).then(|| Topology {
            physical_block_exp: raw[offset::TOPOLOGY],
            alignment_offset: raw[offset::TOPOLOGY + 1],
            min_io_size: u16_at(offset::TOPOLOGY + 2),
            opt_io_size: u32_at(offset::TOPOLOGY + 4),
        });
        let num_queues = if has(MQ) {
            u16_at(offset::NUM_QUEUES).max(1)
        } else {
            1
        };
        let (max_discard_sectors, max_discard_seg, discard_sector_alignment) = if has(DISCARD) {
            (
                u32_at(offset::MAX_DISCARD_SECTORS),
                u32_at(offset::MAX_DISCARD_SEG).max(1),
                u32_at(offset::DISCARD_SECTOR_ALIGNMENT),
            )
        } else {
            (0, 0, 0)
        };
        let (max_write_zeroes_sectors, max_write_zeroes_seg, write_zeroes_may_unmap) =
            if has(WRITE_ZEROES) {
                (
                    u32_at(offset::MAX_WRITE_ZEROES_SECTORS),
                    u32_at(offset::MAX_WRITE_ZEROES_SEG).max(1),
                    raw[offset::WRITE_ZEROES_MAY_UNMAP] != 0,
                )
            } else {
                (0, 0, false)
            };
        Ok(Self {
            capacity,
            blk_size,
            blk_size_rejected,
            size_max,
            seg_max,
            geometry,
            topology,
            read_only: has(RO),
            flush: has(FLUSH),
            num_queues,
            queues: 0,
            max_discard_sectors,
            max_discard_seg,
            discard_sector_alignment,
            max_write_zeroes_sectors,
            max_write_zeroes_seg,
            write_zeroes_may_unmap,
            max_segments: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(f: impl FnOnce(&mut [u8; offset::END])) -> [u8; offset::END] {
        let mut raw = [0u8; offset::END];
        raw[0..8].copy_from_slice(&1000u64.to_le_bytes());
        f(&mut raw);
        raw
    }

    #[test]
    fn blk_size_falls_back_to_512_when_unusable() {
        for bad in [0u32, 256, 1000, 131_072, 4097] {
            let raw = config(|r| r[20..24].copy_from_slice(&bad.to_le_bytes()));
            let info = BlkDeviceConfig::parse(BLK_SIZE, &raw).unwrap();
            assert_eq!((info.blk_size, info.blk_size_rejected), (512, Some(bad)));
        }
        let raw = config(|r| r[20..24].copy_from_slice(&4096u32.to_le_bytes()));
        let info = BlkDeviceConfig::parse(BLK_SIZE, &raw).unwrap();
        assert_eq!((info.blk_size, info.blk_size_rejected), (4096, None));
    }

    #[test]
    fn capacity_overflow_is_an_error() {
        let raw = config(|r| r[0..8].copy_from_slice(&(u64::MAX / 256).to_le_bytes()));
        assert_eq!(
            BlkDeviceConfig::parse(F::empty(), &raw),
            Err(BlkDriverError::BadCapacity)
        );
    }

    #[test]
    fn absent_or_zero_limits_get_defaults() {
        let raw = config(|_| ());
        let info = BlkDeviceConfig::parse(SIZE_MAX | SEG_MAX | MQ | DISCARD, &raw).unwrap();
        assert_eq!(info.size_max, u32::MAX);
        assert_eq!(info.seg_max, 1);
        assert_eq!(info.num_queues, 1);
        assert_eq!(info.max_discard_sectors, 0);
        assert_eq!(info.max_discard_seg, 1);
    }
}
