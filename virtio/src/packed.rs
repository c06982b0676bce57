//! The packed virtqueue (virtio 1.2 §2.8): one descriptor ring written by both sides, with
//! avail/used wrap counters, plus driver and device event suppression structures.

use alloc::{collections::VecDeque, vec::Vec};
use core::{alloc::Layout, fmt};

use virtio_spec::{F, RingEventFlags};

use crate::{
    barrier::{full_barrier, read_barrier, write_barrier},
    dma::{DmaAllocator, DmaRegion, Notifier},
    error::{DispatchError, QueueError},
    features::RingFeatures,
    inflight::{Completed, InFlight, Slots},
    layout::{
        desc_f, desc_table, indirect_len, notification,
        packed::{self, EVENT_FLAGS, EVENT_OFF_WRAP, EVENT_SIZE},
    },
    token::{AvailBufferToken, BufferType, UsedBufferToken, element_addr},
    virtq::{RingAddresses, RingState, Virtq, need_event},
};

/// The AVAIL/USED bits that make a descriptor available in the lap of `wrap_counter`
/// (§2.8.1: AVAIL equal to, USED different from the driver's avail wrap counter).
#[inline]
fn avail_bits(wrap_counter: bool) -> u16 {
    if wrap_counter {
        desc_f::AVAIL
    } else {
        desc_f::USED
    }
}

/// A packed virtqueue driven by the driver side. Any queue size from 1 to 32768 works.
///
/// Every value the device writes (used descriptor flags, Buffer ID and length, the device event
/// suppression structure) is checked or only compared before use; see [`Virtq`].
///
/// # Example
///
/// A round trip against the test doubles (feature `test-utils`): the DMA allocator
/// `vireo_virtio::mock::GuestDma` and the spec-derived device side of the ring,
/// `vireo_virtio::mock::PackedDevice`.
///
/// ```
/// use vireo_virtio::{
///     AvailBufferToken, BufferType, Notifier, PackedVq, Virtq,
///     mock::{GuestDma, PackedDevice},
///     negotiate,
///     virtio_spec::F,
/// };
/// use vm_memory::Bytes;
///
/// /// Records nothing: this device polls.
/// struct Quiet;
/// impl Notifier for Quiet {
///     fn notify(&self, _queue_index: u16, _notification_data: Option<u32>) {}
/// }
///
/// let dma = GuestDma::new(1 << 20);
/// let wanted = F::VERSION_1 | F::RING_PACKED;
/// let negotiated = negotiate(wanted, wanted).unwrap();
/// // Packed rings need not be a power of two.
/// let mut vq = PackedVq::new(0, 6, negotiated, dma.clone(), Quiet).unwrap();
/// let mut device = PackedDevice::new(dma.mem(), vq.ring_addresses(), 6);
///
/// let token = AvailBufferToken::new(vec![dma.buffer(b"ping")], vec![dma.buffer(&[0; 16])])
///     .with_tag(42);
/// vq.dispatch(token, BufferType::Direct).unwrap();
///
/// // The device takes the buffer, answers in its writable element and marks it used.
/// let chain = device.pop().expect("an available buffer");
/// assert_eq!(chain.readable(dma.mem()), b"ping");
/// let (reply, capacity) = chain.writable().next().unwrap();
/// assert_eq!(capacity, 16);
/// dma.mem().write_slice(b"pong", reply).unwrap();
/// device.write_used(chain.id, 4, true, chain.desc_count);
///
/// let used = vq.poll().unwrap().expect("a used buffer");
/// assert_eq!(used.tag(), 42);
/// assert_eq!(used.written().next(), Some(&b"pong"[..]));
/// assert_eq!(vq.in_flight(), 0);
/// ```
pub struct PackedVq<A: DmaAllocator, N: Notifier> {
    /// Descriptor ring (§2.8.13), 16-byte aligned.
    desc: DmaRegion<A>,
    /// Driver event suppression (§2.8.14): written by the driver, read by the device.
    driver_event: DmaRegion<A>,
    /// Device event suppression: written by the device, read by the driver.
    device_event: DmaRegion<A>,
    alloc: A,
    notifier: N,
    index: u16,
    size: u16,
    features: RingFeatures,
    /// Where the next descriptor is made available, and the avail wrap counter (§2.8.1).
    next_avail: u16,
    avail_wrap_counter: bool,
    /// Where the device writes the next used descriptor, and the used wrap counter.
    next_used: u16,
    used_wrap_counter: bool,
    num_free: u16,
    /// Free Buffer IDs (§2.8.6); one per in-flight token, never more than `size`.
    free_ids: Vec<u16>,
    slots: Slots<A>,
    notifications_enabled: bool,
}

impl<A: DmaAllocator, N: Notifier> PackedVq<A, N> {
    /// Allocates an empty packed queue of `size` descriptors (1..=32768, §2.8.10.1; need not be
    /// a power of two) for queue `index`, driven with the `negotiated` features.
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
        if size == 0 || size > 32768 {
            return Err(QueueError::InvalidQueueSize);
        }
        // Alignments of §2.8.10.1 / §4.1.4.3: descriptor ring 16, event structures 4.
        let ring = desc_table(size).map_err(|_| QueueError::InvalidQueueSize)?;
        let event =
            Layout::from_size_align(EVENT_SIZE, 4).map_err(|_| QueueError::InvalidQueueSize)?;
        let region =
            |layout| DmaRegion::new_zeroed(&alloc, layout).map_err(|_| QueueError::AllocFailed);
        let desc = region(ring)?;
        let driver_event = region(event)?;
        let device_event = region(event)?;
        let features = RingFeatures::from_negotiated(negotiated);
        Ok(Self {
            desc,
            driver_event,
            device_event,
            notifier,
            index,
            size,
            features,
            next_avail: 0,
            avail_wrap_counter: true,
            next_used: 0,
            used_wrap_counter: true,
            num_free: size,
            free_ids: (0..size).rev().collect(),
            slots: Slots::new(size, features.in_order),
            notifications_enabled: true,
            alloc,
        })
    }

    /// Moves a ring position on by `n`, flipping the wrap counter when it passes the end.
    #[inline]
    fn advance(&self, pos: u16, wrap_counter: bool, n: u16) -> (u16, bool) {
        let next = u32::from(pos) + u32::from(n);
        if next >= u32::from(self.size) {
            // n <= size, so one lap at most.
            ((next - u32::from(self.size)) as u16, !wrap_counter)
        } else {
            (next as u16, wrap_counter)
        }
    }

    #[inline]
    fn write_desc(&mut self, pos: u16, addr: u64, len: u32, id: u16) {
        let desc = packed::Desc { addr, len, id };
        self.desc.write_packed_desc(pos, desc, None);
    }

    #[inline]
    fn write_flags(&mut self, pos: u16, flags: u16) {
        self.desc.write(packed::desc_flags(pos), flags);
    }

    /// Writes the token's descriptors, the head's flags last (§2.8.21.1: the device may start on
    /// the chain as soon as the head is available). Returns the descriptors used.
    #[inline]
    fn add(
        &mut self,
        token: AvailBufferToken<A>,
        buffer_type: BufferType,
    ) -> Result<u16, DispatchError<A>> {
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
        if needed > self.num_free || self.free_ids.is_empty() {
            return fail(QueueError::QueueFull, token);
        }
        let table = if indirect {
            match crate::indirect::packed_table(&self.alloc, &token, count) {
                Ok(table) => Some(table),
                Err(_) => return fail(QueueError::AllocFailed, token),
            }
        } else {
            None
        };
        let Some(id) = self.free_ids.pop() else {
            return fail(QueueError::QueueFull, token);
        };
        let head = self.next_avail;
        let head_flags;
        if let Some(table) = &table {
            // §2.8.19: one descriptor with INDIRECT, len covering the whole table.
            let len = indirect_len(count);
            self.write_desc(head, table.phys(), len, id);
            head_flags = desc_f::INDIRECT | avail_bits(self.avail_wrap_counter);
            (self.next_avail, self.avail_wrap_counter) =
                self.advance(self.next_avail, self.avail_wrap_counter, 1);
        } else {
            let mut flags_of_head = 0;
            let (mut pos, mut wrap) = (self.next_avail, self.avail_wrap_counter);
            let mut left = count;
            for (buffers, write) in [(token.readable(), 0), (token.writable(), desc_f::WRITE)] {
                for buffer in buffers {
                    let (addr, len) = element_addr(buffer);
                    // §2.8.6: every descriptor carries the Buffer ID; the device uses the last
                    // one's.
                    self.write_desc(pos, addr, len, id);
                    left -= 1;
                    let mut flags = avail_bits(wrap) | write;
                    if left != 0 {
                        flags |= desc_f::NEXT;
                    }
                    if pos == head {
                        flags_of_head = flags;
                    } else {
                        self.write_flags(pos, flags);
                    }
                    (pos, wrap) = self.advance(pos, wrap, 1);
                }
            }
            (self.next_avail, self.avail_wrap_counter) = (pos, wrap);
            head_flags = flags_of_head;
        }
        // §2.8.21.3: the rest of the chain must be visible before the head's flags.
        write_barrier();
        self.write_flags(head, head_flags);
        self.num_free -= needed;
        let in_flight = InFlight {
            writable_capacity,
            desc_count: needed,
            tail: 0,
            has_indirect: table.is_some(),
        };
        self.slots.insert(id, token, in_flight, table);
        Ok(needed)
    }

    /// Decides whether the device wants a notification for the `added` descriptors just made
    /// available, and sends it (§2.8.21.3.1). Returns whether it notified.
    #[inline]
    fn publish(&mut self, added: u16) -> bool {
        if added == 0 {
            return false;
        }
        // The head flags stores must be visible before reading the device's event suppression
        // (store then load: a full fence even on x86, or both sides may wait forever).
        full_barrier();
        let flags = packed::event_flags_of(self.device_event.read(EVENT_FLAGS));
        let kick = match flags {
            RingEventFlags::Disable => false,
            RingEventFlags::Desc if self.features.event_idx => {
                let off_wrap = self.device_event.read(EVENT_OFF_WRAP);
                read_barrier();
                let (mut event, wrap_counter) = packed::off_wrap_of(off_wrap);
                // An event in the previous lap lies one ring size before this lap's positions,
                // as in Linux `virtqueue_kick_prepare_packed`.
                if wrap_counter != self.avail_wrap_counter {
                    event = event.wrapping_sub(self.size);
                }
                let new = self.next_avail;
                need_event(event, new, new.wrapping_sub(added))
            }
            _ => true,
        };
        if kick {
            self.send_notification();
        }
        kick
    }

    /// Notifies the device of this queue, with notification data when negotiated.
    fn send_notification(&self) {
        // §2.9: vqn, next_off and next_wrap.
        let data = self
            .features
            .notification_data
            .then(|| notification::packed(self.index, self.next_avail, self.avail_wrap_counter));
        self.notifier.notify(self.index, data);
    }

    /// Whether the descriptor at `next_used` has been used by the device (§2.8.1: AVAIL and USED
    /// both equal to the used wrap counter). Returns its flags when it has.
    #[inline]
    fn used_flags(&self) -> Option<u16> {
        let flags = self.desc.read(packed::desc_flags(self.next_used));
        let avail = flags & desc_f::AVAIL != 0;
        let used = flags & desc_f::USED != 0;
        (avail == used && used == self.used_wrap_counter).then_some(flags)
    }

    #[inline]
    fn write_driver_event(&mut self) {
        if self.features.event_idx {
            // §2.8.10: notify when the device writes the used descriptor at next_used.
            let off_wrap = packed::off_wrap(self.next_used, self.used_wrap_counter);
            self.driver_event.write(EVENT_OFF_WRAP, off_wrap);
            write_barrier();
            let flags = packed::event_flags(RingEventFlags::Desc);
            self.driver_event.write(EVENT_FLAGS, flags);
        } else {
            let flags = packed::event_flags(RingEventFlags::Enable);
            self.driver_event.write(EVENT_FLAGS, flags);
        }
    }

    /// Frees a completed token's ring descriptors and Buffer ID (its token is taken afterwards,
    /// by `Slots::take_used`).
    #[inline]
    fn recycle(&mut self, completed: Completed) {
        let Completed { id, in_flight, .. } = completed;
        // §2.8.7: the device skips as many ring slots as the buffer took.
        (self.next_used, self.used_wrap_counter) =
            self.advance(self.next_used, self.used_wrap_counter, in_flight.desc_count);
        self.num_free += in_flight.desc_count;
        self.free_ids.push(id);
        if self.notifications_enabled && self.features.event_idx {
            self.write_driver_event();
        }
    }

    /// Reads the next used entry from the ring, if the device has written one, and checks it
    /// (untrusted device); on success it is pending in `slots`. Returns whether there was one.
    /// On error nothing is consumed.
    #[inline(always)]
    fn consume_used(&mut self) -> Result<bool, QueueError> {
        let Some(flags) = self.used_flags() else {
            return Ok(false);
        };
        // A descriptor marked used while nothing is in flight matches no buffer.
        if self.slots.count() == 0 {
            return Err(QueueError::UsedWithoutInFlight);
        }
        // §2.8.11 (and §2.8.21.2): read the flags before the id and length they guard.
        read_barrier();
        let id = self.desc.read(packed::desc_id(self.next_used));
        // §2.8.7 makes the length valid only with VIRTQ_desc_f::WRITE set, but QEMU (7.2) never
        // sets that flag on used descriptors and Linux (`virtqueue_get_buf_ctx_packed`) reads the
        // length regardless. So it is read regardless too, and trusted no more than any other
        // device value: `accept_used` bounds it by the token's device-writable capacity and
        // ignores it for a token with none.
        let _ = flags & desc_f::WRITE;
        let len = self.desc.read(packed::desc_len(self.next_used));
        // Checks id range, in-flight and length; on error the descriptor stays unconsumed.
        self.slots.accept_used(u32::from(id), len)?;
        Ok(true)
    }
}

impl<A: DmaAllocator, N: Notifier> Virtq<A> for PackedVq<A, N> {
    #[inline]
    fn dispatch(
        &mut self,
        token: AvailBufferToken<A>,
        buffer_type: BufferType,
    ) -> Result<bool, DispatchError<A>> {
        let added = self.add(token, buffer_type)?;
        Ok(self.publish(added))
    }

    fn dispatch_batch(
        &mut self,
        tokens: &mut VecDeque<AvailBufferToken<A>>,
        buffer_type: BufferType,
    ) -> Result<bool, QueueError> {
        // At most `size` descriptors can be added before the ring is full, so this fits.
        let mut added = 0u16;
        while let Some(token) = tokens.pop_front() {
            match self.add(token, buffer_type) {
                Ok(n) => added += n,
                Err(DispatchError { error, token }) => {
                    tokens.push_front(token);
                    self.publish(added);
                    return Err(error);
                }
            }
        }
        Ok(self.publish(added))
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
        self.write_driver_event();
        // §2.8.10: the store must be visible before re-checking the ring, or a buffer used in
        // between would raise no notification.
        full_barrier();
        self.slots.has_pending() || self.used_flags().is_some()
    }

    fn disable_notifications(&mut self) {
        self.notifications_enabled = false;
        let flags = packed::event_flags(RingEventFlags::Disable);
        self.driver_event.write(EVENT_FLAGS, flags);
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
        self.driver_event.zero();
        self.device_event.zero();
        self.next_avail = 0;
        self.avail_wrap_counter = true;
        self.next_used = 0;
        self.used_wrap_counter = true;
        self.num_free = self.size;
        self.free_ids.clear();
        self.free_ids.extend((0..self.size).rev());
        self.notifications_enabled = true;
        tokens
    }

    fn ring_addresses(&self) -> RingAddresses {
        RingAddresses {
            descriptor_area: self.desc.phys(),
            driver_area: self.driver_event.phys(),
            device_area: self.device_event.phys(),
        }
    }

    fn notify(&mut self) {
        self.send_notification();
    }

    fn ring_state(&self) -> RingState {
        let event = |r: &DmaRegion<A>| (r.read(EVENT_FLAGS), r.read(EVENT_OFF_WRAP));
        RingState::Packed {
            next_avail: self.next_avail,
            avail_wrap: self.avail_wrap_counter,
            next_used: self.next_used,
            used_wrap: self.used_wrap_counter,
            next_used_flags: self.desc.read(packed::desc_flags(self.next_used)),
            driver_event: event(&self.driver_event),
            device_event: event(&self.device_event),
            in_flight: self.slots.count(),
        }
    }
}

impl<A: DmaAllocator, N: Notifier> fmt::Debug for PackedVq<A, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedVq")
            .field("index", &self.index)
            .field("size", &self.size)
            .field("num_free", &self.num_free)
            .field("in_flight", &self.slots.count())
            .field("next_avail", &self.next_avail)
            .field("avail_wrap_counter", &self.avail_wrap_counter)
            .field("next_used", &self.next_used)
            .field("used_wrap_counter", &self.used_wrap_counter)
            .finish_non_exhaustive()
    }
}
