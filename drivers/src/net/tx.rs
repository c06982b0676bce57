//! The transmit queue: frames written straight into a pool of DMA buffers, batched, one
//! notification per batch; used buffers reclaimed lazily (virtio 1.2 §5.1.6.2). With
//! `VIRTIO_NET_F_HOST_TSO4` a TCP segment of up to [`MAX_TSO_FRAME_LEN`] bytes goes to the
//! device whole, for it to cut at the MSS smoltcp asked for.

use alloc::{boxed::Box, collections::VecDeque, vec::Vec};
use core::num::NonZeroU16;

use vireo_virtio::{AvailBufferToken, BufferType, DmaAllocator, Virtq};

use vireo_virtio::virtio_spec::net::HdrGso;

use super::{
    checksum::{prepare_offload, tcp_header_end},
    config::{HEADER_LEN, MAX_TSO_FRAME_LEN, hdr, put_hdr_u16},
    error::{NetDriverError, NetDriverStats},
};

/// Checksum offload for one transmitted frame (`VIRTIO_NET_F_CSUM`, §5.1.6.2): the device
/// computes the ones' complement checksum of the frame from byte `start` to the end and
/// stores it at `start + offset`. The checksum field must already hold the pseudo-header sum
/// (as for Linux's `CHECKSUM_PARTIAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxChecksum {
    /// Offset in the frame (Ethernet header included) where checksumming starts.
    pub start: u16,
    /// Offset of the checksum field from `start`.
    pub offset: u16,
}

/// The tx virtqueue and its buffers.
pub(crate) struct TxQueue<A: DmaAllocator> {
    vq: Box<dyn Virtq<A> + Send>,
    /// Buffers neither in flight nor batched, for frames up to the MTU.
    free: Vec<AvailBufferToken<A>>,
    /// The same for segments the device cuts (`VIRTIO_NET_F_HOST_TSO4`), of
    /// [`MAX_TSO_FRAME_LEN`] bytes; none without it.
    free_tso: Vec<AvailBufferToken<A>>,
    /// Frames written and not yet made available (the batch).
    pending: VecDeque<AvailBufferToken<A>>,
    csum: bool,
    /// `VIRTIO_NET_F_HOST_TSO4` (with buffers in `free_tso`).
    tso4: bool,
    max_frame_len: usize,
    pub(crate) stats: NetDriverStats,
}

/// Segmentation offload for one transmitted TCP/IPv4 segment (`VIRTIO_NET_HDR_GSO_TCPV4`,
/// §5.1.6.2): the device cuts its payload into `mss`-byte segments behind copies of its first
/// `hdr_len` bytes (Ethernet, IP and TCP headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TxGso {
    mss: NonZeroU16,
    hdr_len: u16,
}

impl<A: DmaAllocator> TxQueue<A> {
    /// A tx queue over `vq` with the buffers `free` (each one device-readable element able
    /// to hold a net header and `max_frame_len` bytes) and, with `VIRTIO_NET_F_HOST_TSO4`,
    /// `free_tso` (each [`HEADER_LEN`] + [`MAX_TSO_FRAME_LEN`] bytes; empty without it).
    /// Used-buffer notifications are turned off: used buffers are reclaimed on the next
    /// transmit.
    pub(crate) fn new(
        mut vq: Box<dyn Virtq<A> + Send>,
        free: Vec<AvailBufferToken<A>>,
        free_tso: Vec<AvailBufferToken<A>>,
        csum: bool,
        max_frame_len: usize,
    ) -> Self {
        vq.disable_notifications();
        let pending = VecDeque::with_capacity(free.len() + free_tso.len());
        Self {
            vq,
            tso4: !free_tso.is_empty(),
            free,
            free_tso,
            pending,
            csum,
            max_frame_len,
            stats: NetDriverStats::default(),
        }
    }

    /// Gives a buffer back to its pool (told apart by its size).
    fn give_back(&mut self, token: AvailBufferToken<A>) {
        let big = token
            .readable()
            .first()
            .is_some_and(|b| b.capacity() > HEADER_LEN + self.max_frame_len);
        if big {
            self.free_tso.push(token);
        } else {
            self.free.push(token);
        }
    }

    /// Takes back every buffer the device has finished with.
    ///
    /// # Errors
    /// [`NetDriverError::Queue`] when the device broke the ring protocol (reset it).
    pub(crate) fn reclaim(&mut self) -> Result<usize, NetDriverError> {
        let mut count = 0;
        while let Some(used) = self.vq.poll()? {
            self.give_back(used.into_avail());
            count += 1;
        }
        Ok(count)
    }

    /// Whether a buffer for any frame smoltcp may write is free now (reclaiming used ones if
    /// not): an ordinary one and, with `VIRTIO_NET_F_HOST_TSO4`, one that holds a segment the
    /// device cuts, so that no frame is dropped for want of a buffer (they come back as soon as
    /// the device has read them).
    pub(crate) fn has_room(&mut self) -> Result<bool, NetDriverError> {
        if !self.room() {
            self.reclaim()?;
        }
        Ok(self.room())
    }

    /// The free ordinary buffers, or the free segment buffers.
    fn pool(&mut self, ordinary: bool) -> &mut Vec<AvailBufferToken<A>> {
        if ordinary {
            &mut self.free
        } else {
            &mut self.free_tso
        }
    }

    fn room(&self) -> bool {
        !self.free.is_empty() && (!self.tso4 || !self.free_tso.is_empty())
    }

    /// Notifies the device of the tx queue again if it holds frames (a lost notification would
    /// leave them unsent, and the ring full, for good; see [`Virtq::notify`]).
    pub(crate) fn renotify(&mut self) {
        if self.vq.in_flight() > 0 {
            self.vq.notify();
        }
    }

    /// Frames handed to the device and not yet given back, plus frames batched.
    pub(crate) fn outstanding(&self) -> usize {
        self.vq.in_flight() + self.pending.len()
    }

    /// Takes a free buffer for a frame of `len` bytes, writes its net header and adds it to
    /// the batch ([`flush`](Self::flush) makes the batch available); returns the frame's
    /// bytes, which still hold an earlier frame: the caller must write all `len` of them.
    ///
    /// # Errors
    /// [`NetDriverError::FrameTooLarge`], [`NetDriverError::ChecksumOffload`] (not negotiated, or the
    /// field is outside the frame), [`NetDriverError::TxFull`], [`NetDriverError::Queue`].
    pub(crate) fn reserve(
        &mut self,
        len: usize,
        csum: Option<TxChecksum>,
    ) -> Result<&mut [u8], NetDriverError> {
        self.reserve_up_to(len, csum, self.max_frame_len)
    }

    /// [`reserve`](Self::reserve) for a TCP segment the device will cut
    /// ([`offload_last`](Self::offload_last) with its MSS): up to [`MAX_TSO_FRAME_LEN`] bytes
    /// with `VIRTIO_NET_F_HOST_TSO4`, the MTU's without.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    pub(crate) fn reserve_segmented(&mut self, len: usize) -> Result<&mut [u8], NetDriverError> {
        let max = self.tso_frame_len().unwrap_or(self.max_frame_len);
        self.reserve_up_to(len, None, max)
    }

    fn reserve_up_to(
        &mut self,
        len: usize,
        csum: Option<TxChecksum>,
        max: usize,
    ) -> Result<&mut [u8], NetDriverError> {
        if len > max {
            return Err(NetDriverError::FrameTooLarge { len, max });
        }
        if let Some(c) = csum {
            let field_end = usize::from(c.start) + usize::from(c.offset) + 2;
            if !self.csum || field_end > len {
                return Err(NetDriverError::ChecksumOffload);
            }
        }
        // A frame up to the MTU takes an ordinary buffer, a longer one a segment buffer.
        let ordinary = len <= self.max_frame_len;
        if self.pool(ordinary).is_empty() {
            self.reclaim()?;
        }
        let token = self.pool(ordinary).pop().ok_or(NetDriverError::TxFull)?;
        self.pending.push_back(token);
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        let buffer = self
            .pending
            .back_mut()
            .and_then(|t| t.readable_mut().first_mut())
            .ok_or(NetDriverError::TxFull)?;
        // `len <= max`, and the pool's buffers were allocated for the largest such frame.
        buffer.set_len(HEADER_LEN + len);
        let (header, frame) = buffer.split_at_mut(HEADER_LEN);
        write_header(header, csum, None);
        Ok(frame)
    }

    /// Whether `VIRTIO_NET_F_CSUM` was negotiated.
    pub(crate) fn offloads_checksum(&self) -> bool {
        self.csum
    }

    /// The largest TCP/IPv4 frame the device segments (`VIRTIO_NET_F_HOST_TSO4`), if any.
    pub(crate) fn tso_frame_len(&self) -> Option<usize> {
        self.tso4.then_some(MAX_TSO_FRAME_LEN)
    }

    /// Leaves the TCP or UDP checksum of the frame batched last to the device (see
    /// [`prepare_offload`]), and with `mss` its segmentation too (a TCP/IPv4 segment only);
    /// returns whether it did. Only with `VIRTIO_NET_F_CSUM` (which `HOST_TSO4` requires).
    ///
    /// # Errors
    /// [`NetDriverError::ChecksumOffload`] when a segment to be cut is not one the device can cut
    /// (not TCP over IPv4, or `HOST_TSO4` not negotiated): it is taken out of the batch.
    pub(crate) fn offload_last(&mut self, mss: Option<NonZeroU16>) -> Result<bool, NetDriverError> {
        if !self.csum {
            return Ok(false);
        }
        let Some(frame) = self.last_frame() else {
            return Ok(false);
        };
        let csum = prepare_offload(frame);
        let gso = match mss {
            None => None,
            // The pseudo-header sum `prepare_offload` wrote covers the whole segment's length:
            // what Linux's GSO (and so QEMU's tap backend) expects of a TSO frame.
            Some(mss) => match (csum, tcp_header_end(frame, false)) {
                (Some(_), Some(end)) if self.tso4 => Some(TxGso {
                    mss,
                    hdr_len: u16::try_from(end).unwrap_or(u16::MAX),
                }),
                _ => {
                    self.drop_last();
                    return Err(NetDriverError::ChecksumOffload);
                }
            },
        };
        if let Some(buffer) = self
            .pending
            .back_mut()
            .and_then(|t| t.readable_mut().first_mut())
        {
            write_header(&mut buffer[..HEADER_LEN], csum, gso);
        }
        if gso.is_some() {
            self.stats.tx_tso += 1;
        }
        Ok(csum.is_some())
    }

    /// The frame batched last (net header excluded).
    fn last_frame(&mut self) -> Option<&mut [u8]> {
        let buffer = self
            .pending
            .back_mut()
            .and_then(|t| t.readable_mut().first_mut())?;
        Some(&mut buffer[HEADER_LEN..])
    }

    /// Takes the frame batched last out of the batch (its buffer is free again).
    fn drop_last(&mut self) {
        if let Some(token) = self.pending.pop_back() {
            let len = token.readable().first().map_or(0, |b| b.len() - HEADER_LEN);
            self.stats.tx_frames -= 1;
            self.stats.tx_bytes -= len as u64;
            self.give_back(token);
        }
    }

    /// Makes every batched frame available, with at most one notification.
    ///
    /// # Errors
    /// [`NetDriverError::Queue`] if the ring refuses a frame (it stays batched).
    pub(crate) fn flush(&mut self) -> Result<bool, NetDriverError> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let notified = self
            .vq
            .dispatch_batch(&mut self.pending, BufferType::Direct)?;
        self.stats.tx_kicks += u64::from(notified);
        Ok(notified)
    }
}

/// Writes a whole `virtio_net_hdr_v1`: `NEEDS_CSUM` with its offsets when asked, the GSO
/// fields for a segment the device cuts (`GSO_NONE` otherwise), `num_buffers` 0 (the device
/// ignores it on transmit).
fn write_header(header: &mut [u8], csum: Option<TxChecksum>, gso: Option<TxGso>) {
    header.fill(0);
    if let Some(c) = csum {
        header[hdr::FLAGS] = hdr::F_NEEDS_CSUM;
        put_hdr_u16(header, hdr::CSUM_START, c.start);
        put_hdr_u16(header, hdr::CSUM_OFFSET, c.offset);
    }
    if let Some(g) = gso {
        header[hdr::GSO_TYPE] = HdrGso::Tcpv4.into();
        put_hdr_u16(header, hdr::HDR_LEN, g.hdr_len);
        put_hdr_u16(header, hdr::GSO_SIZE, g.mss.get());
    }
}
