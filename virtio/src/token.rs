//! Buffer tokens: what the driver makes available and what the device gives back.

use alloc::vec::Vec;
use core::fmt;

use crate::{
    dma::{DmaAllocator, DmaBuffer},
    error::QueueError,
    layout::desc_f,
};

/// How a token's elements are laid out in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferType {
    /// One ring descriptor per element, chained (virtio 1.2 §2.7.6, §2.8.6).
    Direct,
    /// One ring descriptor pointing at an indirect table holding the chain
    /// (virtio 1.2 §2.7.5.3, §2.8.19); needs `VIRTIO_F_INDIRECT_DESC`.
    Indirect,
}

/// A buffer to make available to the device: a device-readable part followed by a
/// device-writable part (virtio 1.2 §2.7.4: readable descriptors come first).
///
/// # Example
///
/// Building a token over the test DMA allocator (`vireo_virtio::mock::GuestDma`, feature
/// `test-utils`), and the check a queue makes when it is dispatched: an empty token comes back
/// inside the error. See [`SplitVq`](crate::SplitVq) and [`PackedVq`](crate::PackedVq) for a
/// full round trip.
///
/// ```
/// use vireo_virtio::{
///     AvailBufferToken, BufferType, DispatchError, Notifier, QueueError, SplitVq, Virtq,
///     mock::GuestDma, negotiate, virtio_spec::F,
/// };
///
/// struct Quiet;
/// impl Notifier for Quiet {
///     fn notify(&self, _queue_index: u16, _notification_data: Option<u32>) {}
/// }
///
/// let dma = GuestDma::new(1 << 20);
/// let mut token =
///     AvailBufferToken::new(vec![dma.buffer(&[0; 4])], vec![dma.buffer(&[0; 512])]).with_tag(3);
/// token.readable_mut()[0].copy_from_slice(b"head");
/// assert_eq!(token.element_count(), 2);
/// assert_eq!(token.tag(), 3);
/// assert_eq!(&token.readable()[0][..], b"head");
///
/// let negotiated = negotiate(F::VERSION_1, F::VERSION_1).unwrap();
/// let mut vq = SplitVq::new(0, 4, negotiated, dma.clone(), Quiet).unwrap();
/// let empty = AvailBufferToken::new(Vec::new(), Vec::new()).with_tag(9);
/// let err: DispatchError<GuestDma> = vq.dispatch(empty, BufferType::Direct).unwrap_err();
/// assert_eq!(err.error, QueueError::EmptyToken);
/// assert_eq!(err.token.tag(), 9, "the token comes back intact");
/// assert!(vq.dispatch(token, BufferType::Direct).is_ok());
/// ```
pub struct AvailBufferToken<A: DmaAllocator> {
    readable: Vec<DmaBuffer<A>>,
    writable: Vec<DmaBuffer<A>>,
    tag: u64,
}

impl<A: DmaAllocator> AvailBufferToken<A> {
    /// A token from its device-readable and device-writable elements, with tag 0.
    ///
    /// The token is checked when dispatched: it must have at least one element, no element may
    /// be empty or longer than `u32::MAX`, and it may have at most queue-size elements.
    #[must_use]
    pub fn new(readable: Vec<DmaBuffer<A>>, writable: Vec<DmaBuffer<A>>) -> Self {
        Self {
            readable,
            writable,
            tag: 0,
        }
    }

    /// Sets a caller-chosen tag that travels with the token and comes back in the
    /// [`UsedBufferToken`].
    #[must_use]
    pub fn with_tag(mut self, tag: u64) -> Self {
        self.tag = tag;
        self
    }

    /// The caller-chosen tag.
    #[must_use]
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The device-readable elements.
    #[must_use]
    pub fn readable(&self) -> &[DmaBuffer<A>] {
        &self.readable
    }

    /// The device-readable elements, to fill before dispatch.
    pub fn readable_mut(&mut self) -> &mut [DmaBuffer<A>] {
        &mut self.readable
    }

    /// The device-writable elements.
    #[must_use]
    pub fn writable(&self) -> &[DmaBuffer<A>] {
        &self.writable
    }

    /// The device-writable elements.
    pub fn writable_mut(&mut self) -> &mut [DmaBuffer<A>] {
        &mut self.writable
    }

    /// Gives back the device-readable and device-writable elements.
    #[must_use]
    pub fn into_parts(self) -> (Vec<DmaBuffer<A>>, Vec<DmaBuffer<A>>) {
        (self.readable, self.writable)
    }

    /// Number of elements in both parts.
    #[must_use]
    #[inline]
    pub fn element_count(&self) -> usize {
        self.readable.len() + self.writable.len()
    }

    /// Calls `f` with the address, length and flags of every element in chain order, as the
    /// descriptors of a chain carry them (§2.7.5, §2.8.13): `WRITE` on device-writable
    /// elements, `NEXT` on all but the last.
    #[inline(always)]
    pub(crate) fn for_each_desc(&self, mut f: impl FnMut(u64, u32, u16)) {
        let mut left = self.element_count();
        for (buffers, write) in [(self.readable(), 0), (self.writable(), desc_f::WRITE)] {
            for buffer in buffers {
                let (addr, len) = element_addr(buffer);
                left -= 1;
                let next = if left == 0 { 0 } else { desc_f::NEXT };
                f(addr, len, write | next);
            }
        }
    }

    /// Checks the token for a queue of `queue_size`; returns its element count and the
    /// capacity of its device-writable part.
    #[inline]
    pub(crate) fn check(&self, queue_size: u16) -> Result<(u16, u64), QueueError> {
        let count = self.element_count();
        if count == 0 {
            return Err(QueueError::EmptyToken);
        }
        if count > usize::from(queue_size) {
            return Err(QueueError::ChainTooLong);
        }
        // One test per element catches both bad lengths: `len - 1` wraps for an empty one.
        let bad = |b: &DmaBuffer<A>| b.len().wrapping_sub(1) >= u32::MAX as usize;
        if self.readable.iter().any(bad) || self.writable.iter().any(bad) {
            return Err(self.element_error());
        }
        let writable_capacity = self.writable.iter().map(|b| b.len() as u64).sum();
        // `count <= queue_size <= u16::MAX` was checked above.
        Ok((count as u16, writable_capacity))
    }
}

impl<A: DmaAllocator> AvailBufferToken<A> {
    /// The error for a token that has an empty or too large element (cold path of `check`).
    #[cold]
    fn element_error(&self) -> QueueError {
        let mut elements = self.readable.iter().chain(&self.writable);
        if elements.any(|b| b.is_empty()) {
            QueueError::EmptyElement
        } else {
            QueueError::ElementTooLarge
        }
    }
}

/// The device-visible address and length of a non-empty element (checked by `check`).
#[inline]
pub(crate) fn element_addr<A: DmaAllocator>(buffer: &DmaBuffer<A>) -> (u64, u32) {
    let len = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
    (buffer.phys().unwrap_or(0), len)
}

impl<A: DmaAllocator> fmt::Debug for AvailBufferToken<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lens = |v: &[DmaBuffer<A>]| v.iter().map(|b| b.len()).sum::<usize>();
        f.debug_struct("AvailBufferToken")
            .field("tag", &self.tag)
            .field("readable_elements", &self.readable.len())
            .field("readable_bytes", &lens(&self.readable))
            .field("writable_elements", &self.writable.len())
            .field("writable_bytes", &lens(&self.writable))
            .finish()
    }
}

/// A buffer the device has used: every element of the dispatched token, and the number of
/// bytes the device wrote into its device-writable part.
pub struct UsedBufferToken<A: DmaAllocator> {
    token: AvailBufferToken<A>,
    written_len: u32,
}

impl<A: DmaAllocator> UsedBufferToken<A> {
    #[inline]
    pub(crate) fn new(token: AvailBufferToken<A>, written_len: u32) -> Self {
        Self { token, written_len }
    }

    /// Bytes the device wrote into the device-writable part (already checked against its
    /// capacity).
    #[must_use]
    pub fn written_len(&self) -> u32 {
        self.written_len
    }

    /// The tag given to the [`AvailBufferToken`].
    #[must_use]
    pub fn tag(&self) -> u64 {
        self.token.tag
    }

    /// The device-readable elements, as dispatched.
    #[must_use]
    pub fn readable(&self) -> &[DmaBuffer<A>] {
        &self.token.readable
    }

    /// All device-writable elements, including bytes the device did not write.
    #[must_use]
    pub fn writable(&self) -> &[DmaBuffer<A>] {
        &self.token.writable
    }

    /// The bytes the device wrote: the device-writable elements cut to the written length.
    pub fn written(&self) -> impl Iterator<Item = &[u8]> {
        let mut left = self.written_len as usize;
        self.token.writable.iter().filter_map(move |buffer| {
            let take = left.min(buffer.len());
            left -= take;
            (take > 0).then(|| &buffer[..take])
        })
    }

    /// Turns the used token back into an available one, reusing its elements (no allocation).
    #[must_use]
    #[inline]
    pub fn into_avail(self) -> AvailBufferToken<A> {
        self.token
    }
}

impl<A: DmaAllocator> fmt::Debug for UsedBufferToken<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsedBufferToken")
            .field("token", &self.token)
            .field("written_len", &self.written_len)
            .finish()
    }
}
