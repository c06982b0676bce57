//! The split virtqueue (virtio 1.2 §2.7): descriptor table, available ring, used ring.

use alloc::{collections::VecDeque, vec::Vec};
use core::fmt;

use virtio_spec::{
    F,
    virtq::{Avail, Used},
};

use crate::{
    barrier::{full_barrier, read_barrier, write_barrier},
    dma::DmaRegion,
    dma::{DmaAllocator, Notifier},
    error::{DispatchError, QueueError},
    features::RingFeatures,
    inflight::{Completed, InFlight, Slots},
    layout::{
        Field, desc_f, desc_table, indirect_len, notification,
        split::{
            self, AVAIL_F_NO_INTERRUPT, AVAIL_FLAGS, AVAIL_IDX, USED_F_NO_NOTIFY, USED_FLAGS,
            USED_IDX,
        },
    },
    token::{AvailBufferToken, BufferType, UsedBufferToken},
    virtq::{RingAddresses, RingState, Virtq, need_event},
};

/// Half the 16-bit index space: `used_event` this far from `last_used_idx` is as far away as
/// an event can be.
const HALF_INDEX_SPACE: u16 = 1 << 15;

/// A split virtqueue driven by the driver side.
///
/// Descriptors are handed out from a free list kept in driver-private memory (`desc_next`),
/// so chains are never walked through memory the device can write. Every value the device
/// writes (`used.idx`, used ids and lengths, `avail_event`, `used.flags`) is checked or only
/// compared before use; see [`Virtq`].
///
/// # Example
///
/// A round trip over the test DMA allocator (`vireo_virtio::mock::GuestDma`, feature
/// `test-utils`), with the example playing the device: it reads the available ring and the
/// descriptor, writes the reply into the device-writable buffer and publishes a used element
/// (`struct virtq_used_elem`, virtio 1.2 §2.7.8) through guest memory.
///
/// ```
/// use vireo_virtio::{
///     AvailBufferToken, BufferType, Notifier, SplitVq, Virtq, mock::GuestDma, negotiate,
///     virtio_spec::F,
/// };
/// use vm_memory::{Address, Bytes, GuestAddress};
///
/// /// Records nothing: this device polls.
/// struct Quiet;
/// impl Notifier for Quiet {
///     fn notify(&self, _queue_index: u16, _notification_data: Option<u32>) {}
/// }
///
/// let dma = GuestDma::new(1 << 20);
/// let negotiated = negotiate(F::VERSION_1, F::VERSION_1).unwrap();
/// let mut vq = SplitVq::new(0, 8, negotiated, dma.clone(), Quiet).unwrap();
///
/// // One device-readable request and one device-writable reply buffer.
/// let token = AvailBufferToken::new(vec![dma.buffer(b"ping")], vec![dma.buffer(&[0; 16])])
///     .with_tag(7);
/// vq.dispatch(token, BufferType::Direct).unwrap();
/// assert_eq!(vq.free_descriptors(), 6);
/// assert!(vq.poll().unwrap().is_none(), "the device has not used it yet");
///
/// // The device: avail.idx is 1 and avail.ring[0] names the chain's head descriptor.
/// let mem = dma.mem();
/// let addrs = vq.ring_addresses();
/// let avail = GuestAddress(addrs.driver_area);
/// assert_eq!(mem.read_obj::<u16>(avail.unchecked_add(2)).unwrap(), 1);
/// let head: u16 = mem.read_obj(avail.unchecked_add(4)).unwrap();
/// // Descriptor `head`: addr (le64), len (le32), flags (le16), next (le16), §2.7.5.
/// let desc = GuestAddress(addrs.descriptor_area + 16 * u64::from(head));
/// let request: u64 = mem.read_obj(desc).unwrap();
/// let mut bytes = [0; 4];
/// mem.read_slice(&mut bytes, GuestAddress(request)).unwrap();
/// assert_eq!(&bytes, b"ping");
/// let next: u16 = mem.read_obj(desc.unchecked_add(14)).unwrap();
/// let reply = GuestAddress(addrs.descriptor_area + 16 * u64::from(next));
/// let reply: u64 = mem.read_obj(reply).unwrap();
/// mem.write_slice(b"pong", GuestAddress(reply)).unwrap();
/// // used.ring[0] = { id: head, len: 4 }, then used.idx = 1.
/// let used = GuestAddress(addrs.device_area);
/// mem.write_obj(u32::from(head), used.unchecked_add(4)).unwrap();
/// mem.write_obj(4u32, used.unchecked_add(8)).unwrap();
/// mem.write_obj(1u16, used.unchecked_add(2)).unwrap();
///
/// // The driver gets the same token back, with the length the device wrote.
/// let used = vq.poll().unwrap().expect("a used buffer");
/// assert_eq!(used.tag(), 7);
/// assert_eq!(used.written_len(), 4);
/// assert_eq!(used.written().next(), Some(&b"pong"[..]));
/// assert_eq!(vq.free_descriptors(), 8);
/// ```
pub struct SplitVq<A: DmaAllocator, N: Notifier> {
    /// Descriptor table (§2.7.5), 16-byte aligned.
    desc: DmaRegion<A>,
    /// Available ring (§2.7.6) with `used_event` at its end.
    avail: DmaRegion<A>,
    /// Used ring (§2.7.8) with `avail_event` at its end.
    used: DmaRegion<A>,
    alloc: A,
    notifier: N,
    index: u16,
    size: u16,
    features: RingFeatures,
    /// Driver-private `next` of every descriptor: links the free list and each chain.
    desc_next: Vec<u16>,
    free_head: u16,
    free_tail: u16,
    num_free: u16,
    /// The driver's `avail.idx` (free-running, wraps at 2^16).
    avail_idx: u16,
    /// The `used.idx` up to which used elements have been consumed.
    last_used_idx: u16,
    slots: Slots<A>,
    notifications_enabled: bool,
}

impl<A: DmaAllocator, N: Notifier> SplitVq<A, N> {
    /// Allocates an empty split queue of `size` descriptors (a power of two, at most 32768,
    /// §2.7) for queue `index`, driven with the `negotiated` features.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidQueueSize`], or [`QueueError::AllocFailed`] for ring memory.
    pub fn new(
        index: u16,
        size: u16,
        negotiated: F,
        alloc: A,
        notifier: N,
    ) -> Result<Self, QueueError> {
        if size == 0 || size > 32768 || !size.is_power_of_two() {
            return Err(QueueError::InvalidQueueSize);
        }
        // Alignments of §2.7: descriptor table 16, available ring 2, used ring 4. The rings are
        // always laid out with their event fields so that EVENT_IDX never changes the layout.
        let desc_layout = desc_table(size).map_err(|_| QueueError::InvalidQueueSize)?;
        let region =
            |layout| DmaRegion::new_zeroed(&alloc, layout).map_err(|_| QueueError::AllocFailed);
        let desc = region(desc_layout)?;
        let avail = region(Avail::layout(size, true))?;
        let used = region(Used::layout(size, true))?;
        let features = RingFeatures::from_negotiated(negotiated);
        let mut vq = Self {
            desc,
            avail,
            used,
            notifier,
            index,
            size,
            features,
            desc_next: Vec::new(),
            free_head: 0,
            free_tail: 0,
            num_free: 0,
            avail_idx: 0,
            last_used_idx: 0,
            slots: Slots::new(size, features.in_order),
            notifications_enabled: true,
            alloc,
        };
        vq.reset_free_list();
        Ok(vq)
    }

    /// Links all descriptors into the free list in table order 0, 1, …, size−1: with
    /// `VIRTIO_F_IN_ORDER` descriptors must be used in that order (§2.7.9), which appending
    /// freed chains at the tail preserves.
    fn reset_free_list(&mut self) {
        let size = self.size;
        self.desc_next.clear();
        self.desc_next.extend((1..=size).map(|i| i % size));
        self.free_head = 0;
        self.free_tail = size - 1;
        self.num_free = size;
    }

    /// `used_event` at the end of the available ring (§2.7.10).
    #[inline]
    fn used_event(&self) -> Field<u16> {
        split::used_event(self.size)
    }

    /// `avail_event` at the end of the used ring (§2.7.10).
    #[inline]
    fn avail_event(&self) -> Field<u16> {
        split::avail_event(self.size)
    }

    #[inline]
    fn write_desc(region: &mut DmaRegion<A>, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let desc = split::Desc {
            addr,
            len,
            flags,
            next,
        };
        region.write_split_desc(i, desc);
    }

    /// Writes the token's descriptors and its available-ring entry, without publishing
    /// `avail.idx`. On error the token comes back untouched and nothing changed.
    #[inline]
    fn add(
        &mut self,
        token: AvailBufferToken<A>,
        buffer_type: BufferType,
    ) -> Result<(), DispatchError<A>> {
        let fail = |error, token| Err(DispatchError { error, token });
        let (count, writable_capacity) = match token.check(self.size) {
            Ok(checked) => checked,
            Err(error) => return fail(error, token),
        };
        let indirect = buffer_type == BufferType::Indirect;
        if indirect && !self.features.indirect_desc {
            return fail(QueueError::IndirectNotNegotiated, token);
        }
        let needed = if indirect { 1 } else { count };
        if needed > self.num_free {
            return fail(QueueError::QueueFull, token);
        }
        let head = self.free_head;
        let (tail, table) = if indirect {
            let Ok(table) = crate::indirect::split_table(&self.alloc, &token, count) else {
                return fail(QueueError::AllocFailed, token);
            };
            // §2.7.5.3.1: the ring descriptor has INDIRECT and not NEXT; len covers the table.
            let len = indirect_len(count);
            Self::write_desc(&mut self.desc, head, table.phys(), len, desc_f::INDIRECT, 0);
            (head, Some(table))
        } else {
            let (mut i, mut tail) = (head, head);
            let mut left = count;
            for (buffers, write) in [(token.readable(), 0), (token.writable(), desc_f::WRITE)] {
                for buffer in buffers {
                    let (addr, len) = crate::token::element_addr(buffer);
                    left -= 1;
                    let following = self.desc_next[usize::from(i)];
                    let (flags, next) = if left == 0 {
                        (write, 0)
                    } else {
                        (write | desc_f::NEXT, following)
                    };
                    Self::write_desc(&mut self.desc, i, addr, len, flags, next);
                    tail = i;
                    i = following;
                }
            }
            (tail, None)
        };
        self.free_head = self.desc_next[usize::from(tail)];
        self.num_free -= needed;
        // §2.7.13.2: the head goes into the next available ring slot; `avail.idx` follows later.
        let slot = self.avail_idx & (self.size - 1);
        self.avail.write(split::avail_ring(slot), head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let in_flight = InFlight {
            writable_capacity,
            desc_count: needed,
            tail,
            has_indirect: table.is_some(),
        };
        self.slots.insert(head, token, in_flight, table);
        Ok(())
    }

    /// Publishes every entry added since `avail.idx` was `old`, then notifies the device if it
    /// asked for it (§2.7.13.3–4). Returns whether it notified.
    #[inline]
    fn publish(&mut self, old: u16) -> bool {
        let new = self.avail_idx;
        if new == old {
            return false;
        }
        // §2.7.13.3.1: descriptors and ring entries must be visible before the new idx.
        write_barrier();
        self.avail.write(AVAIL_IDX, new);
        // §2.7.13.4: the idx store must be visible before reading avail_event/flags; a store
        // then a load needs a full fence even on x86, or driver and device can both sleep.
        full_barrier();
        let kick = if self.features.event_idx {
            need_event(self.used.read(self.avail_event()), new, old)
        } else {
            self.used.read(USED_FLAGS) & USED_F_NO_NOTIFY == 0
        };
        if kick {
            self.send_notification();
        }
        kick
    }

    /// Notifies the device of this queue, with notification data when negotiated.
    fn send_notification(&self) {
        // §2.9: vqn and the next avail idx.
        let data = self
            .features
            .notification_data
            .then(|| notification::split(self.index, self.avail_idx));
        self.notifier.notify(self.index, data);
    }

    /// Returns a consumed buffer's descriptors to the free list (its token is taken afterwards,
    /// by `Slots::take_used`).
    #[inline]
    fn recycle(&mut self, completed: Completed) {
        let Completed {
            id: head,
            in_flight,
            ..
        } = completed;
        // Append the chain at the tail so that in-order use keeps table order (§2.7.9).
        if self.num_free == 0 {
            self.free_head = head;
        } else {
            self.desc_next[usize::from(self.free_tail)] = head;
        }
        self.free_tail = in_flight.tail;
        self.num_free += in_flight.desc_count;
    }

    /// Reads the next used entry from the ring, if the device has written one, and checks it
    /// (untrusted device); on success it is pending in `slots`. Returns whether there was one.
    /// On error nothing is consumed.
    #[inline(always)]
    fn consume_used(&mut self) -> Result<bool, QueueError> {
        let used_idx = self.used.read(USED_IDX);
        if used_idx == self.last_used_idx {
            return Ok(false);
        }
        // The device can have used at most what is in flight (§2.7.8, untrusted device).
        if usize::from(used_idx.wrapping_sub(self.last_used_idx)) > self.slots.count() {
            return Err(QueueError::UsedIndexAhead {
                used_idx,
                last_used_idx: self.last_used_idx,
            });
        }
        // §2.7.14: read used.idx before the used element it covers.
        read_barrier();
        let (id, len) = split::used_elem(self.last_used_idx & (self.size - 1));
        let (id, len) = (self.used.read(id), self.used.read(len));
        // Checks id range, in-flight and length; on error the element stays unconsumed.
        self.slots.accept_used(id, len)?;
        self.last_used_idx = self.last_used_idx.wrapping_add(1);
        if self.notifications_enabled && self.features.event_idx {
            // §2.7.10: ask for a notification when the next buffer is used.
            let used_event = self.used_event();
            self.avail.write(used_event, self.last_used_idx);
        }
        Ok(true)
    }
}

impl<A: DmaAllocator, N: Notifier> Virtq<A> for SplitVq<A, N> {
    #[inline]
    fn dispatch(
        &mut self,
        token: AvailBufferToken<A>,
        buffer_type: BufferType,
    ) -> Result<bool, DispatchError<A>> {
        let old = self.avail_idx;
        self.add(token, buffer_type)?;
        Ok(self.publish(old))
    }

    fn dispatch_batch(
        &mut self,
        tokens: &mut VecDeque<AvailBufferToken<A>>,
        buffer_type: BufferType,
    ) -> Result<bool, QueueError> {
        let old = self.avail_idx;
        while let Some(token) = tokens.pop_front() {
            if let Err(DispatchError { error, token }) = self.add(token, buffer_type) {
                tokens.push_front(token);
                self.publish(old);
                return Err(error);
            }
        }
        Ok(self.publish(old))
    }

    #[inline]
    fn poll(&mut self) -> Result<Option<UsedBufferToken<A>>, QueueError> {
        if !self.slots.has_pending() && !self.consume_used()? {
            return Ok(None);
        }
        let Some(completed) = self.slots.next_completed() else {
            return Ok(None);
        };
        self.recycle(completed);
        Ok(self.slots.take_used(completed))
    }

    fn enable_notifications(&mut self) -> bool {
        self.notifications_enabled = true;
        if self.features.event_idx {
            let used_event = self.used_event();
            self.avail.write(used_event, self.last_used_idx);
        } else {
            self.avail.write(AVAIL_FLAGS, 0);
        }
        // §2.7.10: the store must be visible before re-reading used.idx, or a buffer used in
        // between would raise no notification.
        full_barrier();
        self.slots.has_pending() || self.used.read(USED_IDX) != self.last_used_idx
    }

    fn disable_notifications(&mut self) {
        self.notifications_enabled = false;
        if self.features.event_idx {
            // The device ignores the flag with EVENT_IDX (§2.7.10); move used_event as far
            // away as possible instead, as Linux does.
            let used_event = self.used_event();
            let farthest = self.last_used_idx.wrapping_add(HALF_INDEX_SPACE);
            self.avail.write(used_event, farthest);
        } else {
            self.avail.write(AVAIL_FLAGS, AVAIL_F_NO_INTERRUPT);
        }
    }

    fn size(&self) -> u16 {
        self.size
    }

    fn index(&self) -> u16 {
        self.index
    }

    fn free_descriptors(&self) -> u16 {
        self.num_free
    }

    fn in_flight(&self) -> usize {
        self.slots.count()
    }

    fn reset(&mut self) -> Vec<AvailBufferToken<A>> {
        let tokens = self.slots.drain().collect();
        self.desc.zero();
        self.avail.zero();
        self.used.zero();
        self.reset_free_list();
        self.avail_idx = 0;
        self.last_used_idx = 0;
        self.notifications_enabled = true;
        tokens
    }

    fn ring_addresses(&self) -> RingAddresses {
        RingAddresses {
            descriptor_area: self.desc.phys(),
            driver_area: self.avail.phys(),
            device_area: self.used.phys(),
        }
    }

    fn notify(&mut self) {
        self.send_notification();
    }

    fn ring_state(&self) -> RingState {
        RingState::Split {
            avail_idx: self.avail_idx,
            avail_flags: self.avail.read(AVAIL_FLAGS),
            used_event: self.avail.read(self.used_event()),
            used_idx: self.used.read(USED_IDX),
            used_flags: self.used.read(USED_FLAGS),
            avail_event: self.used.read(self.avail_event()),
            last_used_idx: self.last_used_idx,
            in_flight: self.slots.count(),
        }
    }
}

impl<A: DmaAllocator, N: Notifier> fmt::Debug for SplitVq<A, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitVq")
            .field("index", &self.index)
            .field("size", &self.size)
            .field("num_free", &self.num_free)
            .field("in_flight", &self.slots.count())
            .field("avail_idx", &self.avail_idx)
            .field("last_used_idx", &self.last_used_idx)
            .finish_non_exhaustive()
    }
}
