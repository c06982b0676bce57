//! The receive queue: a pool of fixed-size DMA buffers kept posted, frames checked and handed
//! over in place, merged buffers (`VIRTIO_NET_F_MRG_RXBUF`) reassembled (virtio 1.2 §5.1.6.3,
//! §5.1.6.4), TCP and UDP checksums accepted on the device's word or verified here (see the
//! `phy` module docs for the policy).

use alloc::{boxed::Box, collections::VecDeque, vec::Vec};

use vireo_virtio::{AvailBufferToken, BufferType, DmaAllocator, RingState, Virtq};

use super::{
    accept::{RxConfig, accept},
    config::{HEADER_LEN, hdr, hdr_u16},
    error::{NetDriverError, NetDriverStats},
};

/// A received frame the caller holds: its buffer stays out of the ring until it is released.
pub(crate) enum RxHeld<A: DmaAllocator> {
    /// The frame lies in one buffer, after the net header: `len` bytes.
    InPlace {
        /// The buffer's token, taken back from the device.
        token: AvailBufferToken<A>,
        /// Frame length (net header excluded).
        len: usize,
    },
    /// The frame spanned several buffers and was copied into the reassembly buffer (the
    /// buffers are back in the pool already).
    Merged,
}

/// The rx virtqueue and its buffers.
pub(crate) struct RxQueue<A: DmaAllocator> {
    vq: Box<dyn Virtq<A> + Send>,
    /// Buffers not posted: returned by the caller, waiting for the next batched refill.
    spare: VecDeque<AvailBufferToken<A>>,
    /// Reassembly buffer for merged frames (capacity reserved once: no allocation per frame).
    merged: Vec<u8>,
    config: RxConfig,
    refill_batch: usize,
    /// Buffers in the pool (posted, spare or held).
    total: usize,
    pub(crate) stats: NetDriverStats,
}

impl<A: DmaAllocator> RxQueue<A> {
    /// An rx queue over `vq` with the (not yet posted) buffers `spare`.
    pub(crate) fn new(
        vq: Box<dyn Virtq<A> + Send>,
        spare: VecDeque<AvailBufferToken<A>>,
        config: RxConfig,
        refill_batch: u16,
    ) -> Self {
        let merged = if config.mrg_rxbuf {
            Vec::with_capacity(config.max_merged_len())
        } else {
            Vec::new()
        };
        Self {
            vq,
            total: spare.len(),
            spare,
            merged,
            config,
            refill_batch: usize::from(refill_batch.max(1)),
            stats: NetDriverStats::default(),
        }
    }

    /// Posts the spare buffers in one batch (one notification at most) when a batch has
    /// gathered, when the ring runs low, or when `force` is set.
    ///
    /// # Errors
    /// [`NetDriverError::Queue`] if the ring refuses a buffer (the buffer stays spare).
    pub(crate) fn refill(&mut self, force: bool) -> Result<(), NetDriverError> {
        let low = self.vq.in_flight() < self.refill_batch;
        if self.spare.is_empty() || !(force || low || self.spare.len() >= self.refill_batch) {
            return Ok(());
        }
        let notified = self
            .vq
            .dispatch_batch(&mut self.spare, BufferType::Direct)?;
        self.stats.rx_kicks += u64::from(notified);
        Ok(())
    }

    /// Buffers posted to the device.
    pub(crate) fn posted(&self) -> usize {
        self.vq.in_flight()
    }

    /// Buffers in the pool.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Whether the driver answers for received TCP and UDP checksums
    /// (`VIRTIO_NET_F_GUEST_CSUM`), so smoltcp need not verify them.
    pub(crate) fn verifies_checksums(&self) -> bool {
        self.config.guest_csum
    }

    /// Buffers waiting to be posted.
    pub(crate) fn spare(&self) -> usize {
        self.spare.len()
    }

    /// See [`Virtq::enable_notifications`]; posts the spare buffers first, so the device has
    /// every buffer while the caller sleeps.
    pub(crate) fn enable_notifications(&mut self) -> Result<bool, NetDriverError> {
        self.refill(true)?;
        Ok(self.vq.enable_notifications())
    }

    /// See [`Virtq::disable_notifications`].
    pub(crate) fn disable_notifications(&mut self) {
        self.vq.disable_notifications();
    }

    /// See [`Virtq::ring_state`].
    pub(crate) fn ring_state(&self) -> RingState {
        self.vq.ring_state()
    }

    /// See [`Virtq::notify`]: tells the device again that buffers are posted.
    pub(crate) fn renotify(&mut self) {
        self.vq.notify();
    }

    /// Takes the next good frame the device delivered, if any. Malformed ones are dropped,
    /// counted, and their buffers reused.
    ///
    /// # Errors
    /// [`NetDriverError::Queue`] when the device broke the ring protocol (reset it).
    pub(crate) fn next(&mut self) -> Result<Option<RxHeld<A>>, NetDriverError> {
        self.refill(false)?;
        loop {
            let Some(used) = self.vq.poll()? else {
                return Ok(None);
            };
            let written = used.written_len() as usize;
            let token = used.into_avail();
            // The core checked `written` against the buffer's length; our tokens have exactly
            // one device-writable element.
            let Some(buffer) = token.writable().first() else {
                continue;
            };
            if written < HEADER_LEN {
                self.stats.rx_short += 1;
                self.spare.push_back(token);
                continue;
            }
            let (header, frame) = buffer[..written].split_at(HEADER_LEN);
            let header: [u8; HEADER_LEN] = header.try_into().unwrap_or([0; HEADER_LEN]);
            let count = if self.config.mrg_rxbuf {
                hdr_u16(&header, hdr::NUM_BUFFERS)
            } else {
                1
            };
            let len = frame.len();
            // `None`: a GSO type the device may not send; the frame is dropped, after all its
            // buffers were taken back.
            let limit = self.config.frame_limit(&header);
            match (count, limit) {
                (0, _) => self.stats.rx_bad_num_buffers += 1,
                (1, None) => self.stats.rx_bad_gso += 1,
                (1, Some(limit)) if len > limit => self.stats.rx_oversize += 1,
                (1, Some(_)) if accept(&self.config, &mut self.stats, &header, frame) => {
                    self.delivered(len);
                    return Ok(Some(RxHeld::InPlace { token, len }));
                }
                (1, Some(_)) => {}
                _ => {
                    self.merged.clear();
                    self.merged.extend_from_slice(frame);
                    self.spare.push_back(token);
                    let most = limit.unwrap_or(self.config.max_merged_len());
                    if !self.gather(count, most)? {
                        continue;
                    }
                    if limit.is_none() {
                        self.stats.rx_bad_gso += 1;
                    } else if accept(&self.config, &mut self.stats, &header, &self.merged) {
                        self.delivered(self.merged.len());
                        self.stats.rx_merged += 1;
                        return Ok(Some(RxHeld::Merged));
                    }
                    continue;
                }
            }
            self.spare.push_back(token);
        }
    }

    /// Appends the `count - 1` further buffers of a merged frame to `merged`. Returns `false`
    /// (counted) when the device did not use that many buffers or the frame is longer than
    /// `limit`.
    fn gather(&mut self, count: u16, limit: usize) -> Result<bool, NetDriverError> {
        let rest = usize::from(count) - 1;
        // More buffers than the device holds cannot follow: drop only the first.
        if rest > self.vq.in_flight() {
            self.stats.rx_bad_num_buffers += 1;
            return Ok(false);
        }
        let mut oversize = false;
        for _ in 0..rest {
            let Some(used) = self.vq.poll()? else {
                // Linux `receive_mergeable` does the same: the frame is incomplete, dropped.
                self.stats.rx_bad_num_buffers += 1;
                return Ok(false);
            };
            let written = used.written_len() as usize;
            let token = used.into_avail();
            let part = token.writable().first().map_or(&[][..], |b| &b[..written]);
            if self.merged.len() + part.len() > limit {
                oversize = true;
            } else {
                self.merged.extend_from_slice(part);
            }
            self.spare.push_back(token);
        }
        if oversize {
            self.stats.rx_oversize += 1;
        }
        Ok(!oversize)
    }

    fn delivered(&mut self, len: usize) {
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += len as u64;
    }

    /// The bytes of a held frame.
    pub(crate) fn frame<'a>(&'a self, held: &'a RxHeld<A>) -> &'a [u8] {
        match held {
            RxHeld::InPlace { token, len } => token
                .writable()
                .first()
                .map_or(&[][..], |b| &b[HEADER_LEN..HEADER_LEN + len]),
            RxHeld::Merged => &self.merged,
        }
    }

    /// Gives a held frame's buffer back to the pool (posted at the next refill).
    pub(crate) fn release(&mut self, held: RxHeld<A>) {
        if let RxHeld::InPlace { token, .. } = held {
            self.spare.push_back(token);
        }
    }
}
