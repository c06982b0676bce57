//! Requests, their validation and their layout in a buffer token (virtio 1.2 §5.2.6).

use alloc::vec::Vec;
use core::fmt;

use vireo_virtio::{AvailBufferToken, DmaAllocator, DmaBuffer};

use super::{
    config::{BlkDeviceConfig, SECTOR_SIZE},
    error::BlkDriverError,
    pool::{HEADER_LEN, RequestPool},
};

/// `VIRTIO_BLK_T_*` (§5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;
const T_WRITE_ZEROES: u32 = 13;
/// `struct virtio_blk_discard_write_zeroes`: sector, num_sectors, flags.
const RANGE_LEN: usize = 16;
/// The `unmap` bit of a write-zeroes segment's flags.
const FLAG_UNMAP: u32 = 1;
/// Length of the get-id answer (`VIRTIO_BLK_ID_BYTES`).
pub(crate) const ID_LEN: usize = 20;

/// Identifies a submitted request; unique for the life of the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// The kind of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// [`Request::Read`].
    Read,
    /// [`Request::Write`].
    Write,
    /// [`Request::Flush`].
    Flush,
    /// [`Request::GetId`].
    GetId,
    /// [`Request::Discard`].
    Discard,
    /// [`Request::WriteZeroes`].
    WriteZeroes,
}

impl RequestKind {
    const ALL: [Self; 6] = [
        Self::Read,
        Self::Write,
        Self::Flush,
        Self::GetId,
        Self::Discard,
        Self::WriteZeroes,
    ];

    fn code(self) -> u64 {
        self as u64
    }

    fn from_code(code: u64) -> Self {
        Self::ALL[(code as usize) % Self::ALL.len()]
    }

    fn blk_type(self) -> u32 {
        match self {
            Self::Read => T_IN,
            Self::Write => T_OUT,
            Self::Flush => T_FLUSH,
            Self::GetId => T_GET_ID,
            Self::Discard => T_DISCARD,
            Self::WriteZeroes => T_WRITE_ZEROES,
        }
    }
}

/// One range of a discard or write-zeroes request, in 512-byte sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectorRange {
    /// First sector.
    pub sector: u64,
    /// Number of sectors (not zero).
    pub num_sectors: u32,
}

/// A virtio-blk request. Data buffers are the caller's: they come back in the [`Completion`](super::Completion) or
/// in the [`SubmitError`](super::SubmitError).
pub enum Request<A: DmaAllocator> {
    /// Read into `buffers` (one data segment each, in order) from `sector` on.
    Read {
        /// First sector.
        sector: u64,
        /// The segments to fill; their total length is a multiple of the block size.
        buffers: Vec<DmaBuffer<A>>,
    },
    /// Write `buffers` (one data segment each, in order) from `sector` on.
    Write {
        /// First sector.
        sector: u64,
        /// The segments to write; their total length is a multiple of the block size.
        buffers: Vec<DmaBuffer<A>>,
    },
    /// Makes completed writes durable (`VIRTIO_BLK_F_FLUSH`).
    Flush,
    /// Reads the device id string (serial number), at most 20 bytes.
    GetId,
    /// Discards `ranges` (`VIRTIO_BLK_F_DISCARD`).
    Discard {
        /// The ranges, at most `max_discard_seg`.
        ranges: Vec<SectorRange>,
    },
    /// Writes zeroes over `ranges` (`VIRTIO_BLK_F_WRITE_ZEROES`), letting the device unmap them
    /// if `unmap` (and it can).
    WriteZeroes {
        /// The ranges, at most `max_write_zeroes_seg`.
        ranges: Vec<SectorRange>,
        /// Set the UNMAP flag on every range.
        unmap: bool,
    },
}

impl<A: DmaAllocator> Request<A> {
    /// The request's kind.
    #[must_use]
    pub fn kind(&self) -> RequestKind {
        match self {
            Self::Read { .. } => RequestKind::Read,
            Self::Write { .. } => RequestKind::Write,
            Self::Flush => RequestKind::Flush,
            Self::GetId => RequestKind::GetId,
            Self::Discard { .. } => RequestKind::Discard,
            Self::WriteZeroes { .. } => RequestKind::WriteZeroes,
        }
    }

    /// Gives back the caller's data buffers (empty for requests without data).
    #[must_use]
    pub fn into_buffers(self) -> Vec<DmaBuffer<A>> {
        match self {
            Self::Read { buffers, .. } | Self::Write { buffers, .. } => buffers,
            _ => Vec::new(),
        }
    }

    /// Checks the request against the device's configuration, before anything is allocated or
    /// made available.
    pub(crate) fn validate(&self, info: &BlkDeviceConfig) -> Result<(), BlkDriverError> {
        let per_block = info.sectors_per_block();
        match self {
            Self::Read { sector, buffers } | Self::Write { sector, buffers } => {
                if matches!(self, Self::Write { .. }) && info.read_only {
                    return Err(BlkDriverError::ReadOnly);
                }
                if buffers.is_empty() || buffers.iter().any(|b| b.is_empty()) {
                    return Err(BlkDriverError::EmptyBuffer);
                }
                if buffers.len() as u64 > u64::from(info.max_segments) {
                    return Err(BlkDriverError::TooManySegments {
                        max: info.max_segments,
                    });
                }
                if buffers
                    .iter()
                    .any(|b| b.len() as u64 > u64::from(info.size_max))
                {
                    return Err(BlkDriverError::SegmentTooLarge { max: info.size_max });
                }
                let bytes: u64 = buffers.iter().map(|b| b.len() as u64).sum();
                if !bytes.is_multiple_of(u64::from(info.blk_size))
                    || !sector.is_multiple_of(per_block)
                {
                    return Err(BlkDriverError::Misaligned);
                }
                check_range(info, *sector, bytes / SECTOR_SIZE)
            }
            Self::Flush if !info.flush => Err(BlkDriverError::Unsupported),
            Self::Flush | Self::GetId => Ok(()),
            Self::Discard { ranges } | Self::WriteZeroes { ranges, .. } => {
                let (max_sectors, max_seg) = if matches!(self, Self::Discard { .. }) {
                    (info.max_discard_sectors, info.max_discard_seg)
                } else {
                    (info.max_write_zeroes_sectors, info.max_write_zeroes_seg)
                };
                if max_sectors == 0 {
                    return Err(BlkDriverError::Unsupported);
                }
                if info.read_only {
                    return Err(BlkDriverError::ReadOnly);
                }
                if ranges.is_empty() || ranges.iter().any(|r| r.num_sectors == 0) {
                    return Err(BlkDriverError::EmptyBuffer);
                }
                if ranges.len() as u64 > u64::from(max_seg) {
                    return Err(BlkDriverError::TooManySegments { max: max_seg });
                }
                for range in ranges {
                    if range.num_sectors > max_sectors {
                        return Err(BlkDriverError::SegmentTooLarge { max: max_sectors });
                    }
                    if range.sector % per_block != 0
                        || u64::from(range.num_sectors) % per_block != 0
                    {
                        return Err(BlkDriverError::Misaligned);
                    }
                    check_range(info, range.sector, u64::from(range.num_sectors))?;
                }
                Ok(())
            }
        }
    }

    /// Lays the (validated) request out as a token: header, then device-readable data, then
    /// device-writable data, then the status byte (§5.2.6). The header, the status byte and the
    /// driver's element list come from `pool` when it has spares. On allocation failure the
    /// request comes back unchanged.
    pub(crate) fn into_token(
        self,
        id: RequestId,
        alloc: &A,
        pool: &mut RequestPool<A>,
    ) -> Result<AvailBufferToken<A>, (BlkDriverError, Self)> {
        let kind = self.kind();
        let sector = match &self {
            Self::Read { sector, .. } | Self::Write { sector, .. } => *sector,
            _ => 0,
        };
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&kind.blk_type().to_le_bytes());
        header[8..16].copy_from_slice(&sector.to_le_bytes());
        let Some(header) = pool.header(alloc, &header) else {
            return Err((BlkDriverError::AllocFailed, self));
        };
        let Some(status) = pool.status(alloc) else {
            pool.put_header(header);
            return Err((BlkDriverError::AllocFailed, self));
        };
        let tag = id.0 << 3 | kind.code();
        // Reads and writes reuse the caller's list for the data side (no copy of the list).
        let (readable, writable) = match self {
            Self::Read { buffers, .. } => {
                let mut readable = pool.list();
                readable.push(header);
                let mut writable = buffers;
                writable.push(status);
                (readable, writable)
            }
            Self::Write { buffers, .. } => {
                let mut readable = buffers;
                readable.insert(0, header);
                let mut writable = pool.list();
                writable.push(status);
                (readable, writable)
            }
            Self::Flush => {
                let mut readable = pool.list();
                readable.push(header);
                let mut writable = pool.list();
                writable.push(status);
                (readable, writable)
            }
            Self::GetId => {
                let Some(id_buf) = dma_copy(alloc, &[0u8; ID_LEN]) else {
                    pool.put_header(header);
                    pool.put_status(status);
                    return Err((BlkDriverError::AllocFailed, self));
                };
                let mut readable = pool.list();
                readable.push(header);
                let mut writable = pool.list();
                writable.push(id_buf);
                writable.push(status);
                (readable, writable)
            }
            Self::Discard { ref ranges } | Self::WriteZeroes { ref ranges, .. } => {
                let unmap = matches!(self, Self::WriteZeroes { unmap: true, .. });
                let Some(segments) = encode_ranges(alloc, ranges, unmap) else {
                    pool.put_header(header);
                    pool.put_status(status);
                    return Err((BlkDriverError::AllocFailed, self));
                };
                let mut readable = pool.list();
                readable.push(header);
                readable.push(segments);
                let mut writable = pool.list();
                writable.push(status);
                (readable, writable)
            }
        };
        Ok(AvailBufferToken::new(readable, writable).with_tag(tag))
    }

    /// Rebuilds the request from a token that was never made available (so its memory holds
    /// exactly what [`into_token`](Self::into_token) wrote).
    pub(crate) fn from_token(token: AvailBufferToken<A>) -> Self {
        let (kind, _) = split_tag(token.tag());
        let (mut readable, mut writable) = token.into_parts();
        let sector = readable.first().and_then(|h| h.get(8..16)).map_or(0, |b| {
            let mut s = [0u8; 8];
            s.copy_from_slice(b);
            u64::from_le_bytes(s)
        });
        match kind {
            RequestKind::Read => {
                writable.pop();
                Self::Read {
                    sector,
                    buffers: writable,
                }
            }
            RequestKind::Write => {
                if !readable.is_empty() {
                    readable.remove(0);
                }
                Self::Write {
                    sector,
                    buffers: readable,
                }
            }
            RequestKind::Flush => Self::Flush,
            RequestKind::GetId => Self::GetId,
            RequestKind::Discard | RequestKind::WriteZeroes => {
                let segments = readable.get(1).map_or(&[][..], |s| &s[..]);
                let ranges = decode_ranges(segments);
                let unmap = segments.len() >= RANGE_LEN
                    && u32::from_le_bytes([segments[12], segments[13], segments[14], segments[15]])
                        & FLAG_UNMAP
                        != 0;
                if kind == RequestKind::Discard {
                    Self::Discard { ranges }
                } else {
                    Self::WriteZeroes { ranges, unmap }
                }
            }
        }
    }
}

impl<A: DmaAllocator> fmt::Debug for Request<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { sector, buffers } | Self::Write { sector, buffers } => f
                .debug_struct(if matches!(self, Self::Read { .. }) {
                    "Read"
                } else {
                    "Write"
                })
                .field("sector", sector)
                .field("segments", &buffers.len())
                .field("bytes", &buffers.iter().map(|b| b.len()).sum::<usize>())
                .finish(),
            Self::Flush => f.write_str("Flush"),
            Self::GetId => f.write_str("GetId"),
            Self::Discard { ranges } => f.debug_struct("Discard").field("ranges", ranges).finish(),
            Self::WriteZeroes { ranges, unmap } => f
                .debug_struct("WriteZeroes")
                .field("ranges", ranges)
                .field("unmap", unmap)
                .finish(),
        }
    }
}

pub(crate) fn split_tag(tag: u64) -> (RequestKind, RequestId) {
    (RequestKind::from_code(tag & 7), RequestId(tag >> 3))
}

fn check_range(info: &BlkDeviceConfig, sector: u64, sectors: u64) -> Result<(), BlkDriverError> {
    match sector.checked_add(sectors) {
        Some(end) if end <= info.capacity => Ok(()),
        _ => Err(BlkDriverError::OutOfRange),
    }
}

/// A DMA buffer holding `data`; `None` if the allocator fails (never panics).
pub(crate) fn dma_copy<A: DmaAllocator>(alloc: &A, data: &[u8]) -> Option<DmaBuffer<A>> {
    DmaBuffer::from_slice_in(data, alloc.clone()).ok()
}

fn encode_ranges<A: DmaAllocator>(
    alloc: &A,
    ranges: &[SectorRange],
    unmap: bool,
) -> Option<DmaBuffer<A>> {
    let mut buf =
        DmaBuffer::new_zeroed_in(ranges.len().checked_mul(RANGE_LEN)?, alloc.clone()).ok()?;
    let flags = if unmap { FLAG_UNMAP } else { 0 };
    for (range, out) in ranges.iter().zip(buf.chunks_exact_mut(RANGE_LEN)) {
        out[0..8].copy_from_slice(&range.sector.to_le_bytes());
        out[8..12].copy_from_slice(&range.num_sectors.to_le_bytes());
        out[12..16].copy_from_slice(&flags.to_le_bytes());
    }
    Some(buf)
}

fn decode_ranges(segments: &[u8]) -> Vec<SectorRange> {
    segments
        .chunks_exact(RANGE_LEN)
        .map(|s| {
            let mut sector = [0u8; 8];
            sector.copy_from_slice(&s[0..8]);
            SectorRange {
                sector: u64::from_le_bytes(sector),
                num_sectors: u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
            }
        })
        .collect()
}
