//! The packed virtqueue (virtio 1.2 §2.8): one descriptor ring written by both sides, with
//! avail/used wrap counters, plus driver and device event suppression structures.
//!
//! Only what is packed-specific lives here, as [`PackedRing`], the [`Ring`] of a [`PackedVq`]:
//! ring positions and wrap counters, Buffer IDs, descriptors made available head-last, used
//! descriptors recognised by their flags, and the event suppression structures. Everything
//! both layouts do is in [`Queue`].

use alloc::vec::Vec;
use core::{alloc::Layout, fmt};

use virtio_spec::RingEventFlags;

use crate::{
    barrier::{read_barrier, write_barrier},
    dma::{DmaAllocator, DmaRegion},
    error::QueueError,
    inflight::Completed,
    layout::{
        desc_f, desc_table, notification,
        packed::{self, EVENT_FLAGS, EVENT_OFF_WRAP, EVENT_SIZE},
    },
    queue::{Chain, Placed, Queue, Ring, RingSize, Shared},
    token::{AvailBufferToken, element_addr},
    virtq::{RingAddresses, RingState, need_event},
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

/// A packed virtqueue driven by the driver side: [`Queue`] over the packed layout, created with
/// [`PackedVq::new`](Queue::new). Any queue size from 1 to 32768 works (§2.8.10.1).
///
/// Every value the device writes (used descriptor flags, Buffer ID and length, the device event
/// suppression structure) is checked or only compared before use; see [`Virtq`](crate::Virtq).
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
pub type PackedVq<A, N> = Queue<PackedRing<A>, A, N>;

/// Moves ring position `pos` of a ring of `size` on by `n` (at most `size`), flipping the wrap
/// counter when it passes the end.
#[inline]
fn advance(size: RingSize, pos: u16, wrap_counter: bool, n: u16) -> (u16, bool) {
    let next = u32::from(pos) + u32::from(n);
    if next >= size.wide() {
        // n <= size, so one lap at most.
        ((next - size.wide()) as u16, !wrap_counter)
    } else {
        (next as u16, wrap_counter)
    }
}

/// The packed layout's part of a [`PackedVq`]: its three areas, ring positions and wrap
/// counters, and the free Buffer IDs.
pub struct PackedRing<A: DmaAllocator> {
    /// Descriptor ring (§2.8.13), 16-byte aligned.
    desc: DmaRegion<A>,
    /// Driver event suppression (§2.8.14): written by the driver, read by the device.
    driver_event: DmaRegion<A>,
    /// Device event suppression: written by the device, read by the driver.
    device_event: DmaRegion<A>,
    size: RingSize,
    /// Where the next descriptor is made available, and the avail wrap counter (§2.8.1).
    next_avail: u16,
    avail_wrap_counter: bool,
    /// Where the device writes the next used descriptor, and the used wrap counter.
    next_used: u16,
    used_wrap_counter: bool,
    /// Free Buffer IDs (§2.8.6); one per in-flight token, never more than `size`.
    free_ids: Vec<u16>,
}

impl<A: DmaAllocator> PackedRing<A> {
    #[inline]
    fn write_desc(&mut self, pos: u16, addr: u64, len: u32, id: u16) {
        let desc = packed::Desc { addr, len, id };
        self.desc.write_packed_desc(pos, desc, None);
    }

    #[inline]
    fn write_flags(&mut self, pos: u16, flags: u16) {
        self.desc.write(packed::desc_flags(pos), flags);
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
    fn write_driver_event(&mut self, shared: &Shared<A>) {
        if shared.features.event_idx {
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
}

impl<A: DmaAllocator> Ring<A> for PackedRing<A> {
    const NAME: &'static str = "PackedVq";

    fn new(size: u16, alloc: &A) -> Result<Self, QueueError> {
        // Alignments of §2.8.10.1 / §4.1.4.3: descriptor ring 16, event structures 4.
        let ring = desc_table(size).map_err(|_| QueueError::InvalidQueueSize)?;
        let event =
            Layout::from_size_align(EVENT_SIZE, 4).map_err(|_| QueueError::InvalidQueueSize)?;
        let region =
            |layout| DmaRegion::new_zeroed(alloc, layout).map_err(|_| QueueError::AllocFailed);
        Ok(Self {
            desc: region(ring)?,
            driver_event: region(event)?,
            device_event: region(event)?,
            size: RingSize::new(size),
            next_avail: 0,
            avail_wrap_counter: true,
            next_used: 0,
            used_wrap_counter: true,
            free_ids: (0..size).rev().collect(),
        })
    }

    /// `struct pvirtq_desc` entries read in order, without NEXT: WRITE is the only valid flag
    /// and the Buffer ID is reserved (§2.8.19).
    fn write_indirect(table: &mut DmaRegion<A>, token: &AvailBufferToken<A>) {
        let mut n = 0u16;
        token.for_each_desc(|addr, len, flags| {
            let desc = packed::Desc { addr, len, id: 0 };
            table.write_packed_desc(n, desc, Some(flags & desc_f::WRITE));
            n += 1;
        });
    }

    /// Writes the token's descriptors, the head's flags last (§2.8.21.1: the device may start on
    /// the chain as soon as the head is available).
    #[inline]
    fn add(&mut self, token: &AvailBufferToken<A>, chain: Chain) -> Option<Placed> {
        let id = self.free_ids.pop()?;
        let head = self.next_avail;
        let (head_flags, added) = match chain {
            Chain::Indirect { table, len } => {
                // §2.8.19: one descriptor with INDIRECT, len covering the whole table.
                self.write_desc(head, table, len, id);
                let head_flags = desc_f::INDIRECT | avail_bits(self.avail_wrap_counter);
                (self.next_avail, self.avail_wrap_counter) =
                    advance(self.size, head, self.avail_wrap_counter, 1);
                (head_flags, 1)
            }
            Chain::Direct { count } => {
                let mut head_flags = 0;
                let (mut pos, mut wrap) = (head, self.avail_wrap_counter);
                // Written out rather than through `for_each_desc`: its closure cost a few
                // instructions per round trip here (callgrind, `benches/virtq.rs`).
                let mut left = count;
                for (buffers, write) in [(token.readable(), 0), (token.writable(), desc_f::WRITE)] {
                    for buffer in buffers {
                        let (addr, len) = element_addr(buffer);
                        self.write_desc(pos, addr, len, id);
                        left -= 1;
                        let mut flags = avail_bits(wrap) | write;
                        if left != 0 {
                            flags |= desc_f::NEXT;
                        }
                        if pos == head {
                            head_flags = flags;
                        } else {
                            self.write_flags(pos, flags);
                        }
                        (pos, wrap) = advance(self.size, pos, wrap, 1);
                    }
                }
                (self.next_avail, self.avail_wrap_counter) = (pos, wrap);
                (head_flags, count)
            }
        };
        // §2.8.21.3: the rest of the chain must be visible before the head's flags.
        write_barrier();
        self.write_flags(head, head_flags);
        Some(Placed { id, tail: 0, added })
    }

    /// Nothing to store: the head flags written by `add` made the descriptors available.
    #[inline]
    fn publish(&mut self, _added: u16) {}

    #[inline]
    fn wants_notification(&self, shared: &Shared<A>, added: u16) -> bool {
        let flags = packed::event_flags_of(self.device_event.read(EVENT_FLAGS));
        match flags {
            RingEventFlags::Disable => false,
            RingEventFlags::Desc if shared.features.event_idx => {
                let off_wrap = self.device_event.read(EVENT_OFF_WRAP);
                read_barrier();
                let (mut event, wrap_counter) = packed::off_wrap_of(off_wrap);
                // An event in the previous lap lies one ring size before this lap's positions,
                // as in Linux `virtqueue_kick_prepare_packed`.
                if wrap_counter != self.avail_wrap_counter {
                    event = event.wrapping_sub(self.size.get());
                }
                let new = self.next_avail;
                need_event(event, new, new.wrapping_sub(added))
            }
            _ => true,
        }
    }

    fn notification_data(&self, index: u16) -> u32 {
        // §2.9: vqn, next_off and next_wrap.
        notification::packed(index, self.next_avail, self.avail_wrap_counter)
    }

    #[inline(always)]
    fn has_used(&self, shared: &Shared<A>) -> Result<bool, QueueError> {
        if self.used_flags().is_none() {
            return Ok(false);
        }
        // A descriptor marked used while nothing is in flight matches no buffer.
        if shared.slots.count() == 0 {
            return Err(QueueError::UsedWithoutInFlight);
        }
        Ok(true)
    }

    fn used_visible(&self) -> bool {
        self.used_flags().is_some()
    }

    #[inline(always)]
    fn read_used(&self) -> (u32, u32) {
        let id = self.desc.read(packed::desc_id(self.next_used));
        // §2.8.7 makes the length valid only with VIRTQ_DESC_F_WRITE set, but QEMU (7.2) never
        // sets that flag on used descriptors and Linux (`virtqueue_get_buf_ctx_packed`) reads the
        // length regardless. So it is read regardless too, and trusted no more than any other
        // device value: `accept_used` bounds it by the token's device-writable capacity and
        // ignores it for a token with none.
        let len = self.desc.read(packed::desc_len(self.next_used));
        (u32::from(id), len)
    }

    /// Nothing to move: the used position advances by each token's descriptors in `recycle`.
    #[inline(always)]
    fn consume_used(&mut self, _shared: &Shared<A>) {}

    /// Frees a completed token's ring descriptors and Buffer ID.
    #[inline]
    fn recycle(&mut self, shared: &Shared<A>, completed: Completed) {
        let Completed { id, in_flight, .. } = completed;
        // §2.8.7: the device skips as many ring slots as the buffer took.
        (self.next_used, self.used_wrap_counter) = advance(
            self.size,
            self.next_used,
            self.used_wrap_counter,
            in_flight.desc_count,
        );
        self.free_ids.push(id);
        if shared.notifications_enabled && shared.features.event_idx {
            self.write_driver_event(shared);
        }
    }

    fn enable_used_notifications(&mut self, shared: &Shared<A>) {
        self.write_driver_event(shared);
    }

    fn disable_used_notifications(&mut self, _shared: &Shared<A>) {
        let flags = packed::event_flags(RingEventFlags::Disable);
        self.driver_event.write(EVENT_FLAGS, flags);
    }

    fn reset(&mut self) {
        self.desc.zero();
        self.driver_event.zero();
        self.device_event.zero();
        self.next_avail = 0;
        self.avail_wrap_counter = true;
        self.next_used = 0;
        self.used_wrap_counter = true;
        self.free_ids.clear();
        self.free_ids.extend((0..self.size.get()).rev());
    }

    fn ring_addresses(&self) -> RingAddresses {
        RingAddresses {
            descriptor_area: self.desc.phys(),
            driver_area: self.driver_event.phys(),
            device_area: self.device_event.phys(),
        }
    }

    fn ring_state(&self, in_flight: usize) -> RingState {
        let event = |r: &DmaRegion<A>| (r.read(EVENT_FLAGS), r.read(EVENT_OFF_WRAP));
        RingState::Packed {
            next_avail: self.next_avail,
            avail_wrap: self.avail_wrap_counter,
            next_used: self.next_used,
            used_wrap: self.used_wrap_counter,
            next_used_flags: self.desc.read(packed::desc_flags(self.next_used)),
            driver_event: event(&self.driver_event),
            device_event: event(&self.device_event),
            in_flight,
        }
    }
}

/// The areas (where the device finds them), positions and wrap counters; not the free buffer
/// ids, which are as many as the ring's descriptors.
impl<A: DmaAllocator> fmt::Debug for PackedRing<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedRing")
            .field("desc", &self.desc)
            .field("driver_event", &self.driver_event)
            .field("device_event", &self.device_event)
            .field("next_avail", &self.next_avail)
            .field("avail_wrap_counter", &self.avail_wrap_counter)
            .field("next_used", &self.next_used)
            .field("used_wrap_counter", &self.used_wrap_counter)
            .finish_non_exhaustive()
    }
}
