//! The split virtqueue (virtio 1.2 §2.7): descriptor table, available ring, used ring.
//!
//! Only what is split-specific lives here, as [`SplitRing`], the [`Ring`] of a [`SplitVq`]:
//! the free list, the available ring and `avail.idx`, the used ring and its checks, and the
//! split event suppression (`flags`, `used_event`/`avail_event`). Everything both layouts do
//! is in [`Queue`].

use alloc::vec::Vec;
use core::fmt;

use virtio_spec::virtq::{Avail, Used};

use crate::{
    barrier::write_barrier,
    dma::{DmaAllocator, DmaRegion},
    error::QueueError,
    inflight::Completed,
    layout::{
        Field, desc_f, desc_table, notification,
        split::{
            self, AVAIL_F_NO_INTERRUPT, AVAIL_FLAGS, AVAIL_IDX, USED_F_NO_NOTIFY, USED_FLAGS,
            USED_IDX,
        },
    },
    queue::{Chain, Placed, Queue, Ring, RingSize, Shared},
    token::{AvailBufferToken, element_addr},
    virtq::{RingAddresses, RingState, need_event},
};

/// Half the 16-bit index space: `used_event` this far from `last_used_idx` is as far away as
/// an event can be.
const HALF_INDEX_SPACE: u16 = 1 << 15;

/// A split virtqueue driven by the driver side: [`Queue`] over the split layout, created with
/// [`SplitVq::new`](Queue::new) (a power-of-two size up to 32768, §2.7).
///
/// Descriptors are handed out from a free list kept in driver-private memory (`desc_next`),
/// so chains are never walked through memory the device can write. Every value the device
/// writes (`used.idx`, used ids and lengths, `avail_event`, `used.flags`) is checked or only
/// compared before use; see [`Virtq`](crate::Virtq).
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
pub type SplitVq<A, N> = Queue<SplitRing<A>, A, N>;

/// The split layout's part of a [`SplitVq`]: its three areas and the driver-private state that
/// walks them.
pub struct SplitRing<A: DmaAllocator> {
    /// Descriptor table (§2.7.5), 16-byte aligned.
    desc: DmaRegion<A>,
    /// Available ring (§2.7.6) with `used_event` at its end.
    avail: DmaRegion<A>,
    /// Used ring (§2.7.8) with `avail_event` at its end.
    used: DmaRegion<A>,
    size: RingSize,
    /// Driver-private `next` of every descriptor: links the free list and each chain.
    desc_next: Vec<u16>,
    free_head: u16,
    free_tail: u16,
    /// The driver's `avail.idx` (free-running, wraps at 2^16).
    avail_idx: u16,
    /// The `used.idx` up to which used elements have been consumed.
    last_used_idx: u16,
}

impl<A: DmaAllocator> SplitRing<A> {
    /// Links all descriptors into the free list in table order 0, 1, …, size−1: with
    /// `VIRTIO_F_IN_ORDER` descriptors must be used in that order (§2.7.9), which appending
    /// freed chains at the tail preserves.
    fn reset_free_list(&mut self) {
        let size = self.size.get();
        self.desc_next.clear();
        self.desc_next.extend((1..=size).map(|i| i % size));
        self.free_head = 0;
        self.free_tail = size - 1;
    }

    /// `used_event` at the end of the available ring (§2.7.10).
    #[inline]
    fn used_event(&self) -> Field<u16> {
        split::used_event(self.size.get())
    }

    /// `avail_event` at the end of the used ring (§2.7.10).
    #[inline]
    fn avail_event(&self) -> Field<u16> {
        split::avail_event(self.size.get())
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
}

impl<A: DmaAllocator> Ring<A> for SplitRing<A> {
    const NAME: &'static str = "SplitVq";

    fn new(size: u16, alloc: &A) -> Result<Self, QueueError> {
        if !size.is_power_of_two() {
            return Err(QueueError::InvalidQueueSize);
        }
        // Alignments of §2.7: descriptor table 16, available ring 2, used ring 4. The rings are
        // always laid out with their event fields so that EVENT_IDX never changes the layout.
        let desc_layout = desc_table(size).map_err(|_| QueueError::InvalidQueueSize)?;
        let region =
            |layout| DmaRegion::new_zeroed(alloc, layout).map_err(|_| QueueError::AllocFailed);
        let mut ring = Self {
            desc: region(desc_layout)?,
            avail: region(Avail::layout(size, true))?,
            used: region(Used::layout(size, true))?,
            size: RingSize::new(size),
            desc_next: Vec::new(),
            free_head: 0,
            free_tail: 0,
            avail_idx: 0,
            last_used_idx: 0,
        };
        ring.reset_free_list();
        Ok(ring)
    }

    /// `struct virtq_desc` entries chained with NEXT/`next` (§2.7.5.3.1: entries may not
    /// themselves be INDIRECT).
    fn write_indirect(table: &mut DmaRegion<A>, token: &AvailBufferToken<A>) {
        let mut n = 0u16;
        token.for_each_desc(|addr, len, flags| {
            // Entries follow each other in the table: the next is n + 1 (< count <= u16::MAX).
            let next = if flags & desc_f::NEXT == 0 { 0 } else { n + 1 };
            Self::write_desc(table, n, addr, len, flags, next);
            n += 1;
        });
    }

    /// Writes the chain from the free list and its available-ring entry; `avail.idx` follows
    /// in [`publish`](Ring::publish).
    #[inline]
    fn add(&mut self, token: &AvailBufferToken<A>, chain: Chain) -> Option<Placed> {
        let head = self.free_head;
        let tail = match chain {
            Chain::Indirect { table, len } => {
                // §2.7.5.3.1: the ring descriptor has INDIRECT and not NEXT; len covers the table.
                Self::write_desc(&mut self.desc, head, table, len, desc_f::INDIRECT, 0);
                head
            }
            Chain::Direct { .. } => {
                // Written out rather than through `for_each_desc`: its closure cost a few
                // instructions per round trip here (callgrind, `benches/virtq.rs`).
                let (mut i, mut tail) = (head, head);
                let mut left = token.element_count();
                for (buffers, write) in [(token.readable(), 0), (token.writable(), desc_f::WRITE)] {
                    for buffer in buffers {
                        let (addr, len) = element_addr(buffer);
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
                tail
            }
        };
        self.free_head = self.desc_next[usize::from(tail)];
        // §2.7.13.2: the head goes into the next available ring slot; `avail.idx` follows later.
        let slot = self.avail_idx & (self.size.get() - 1);
        self.avail.write(split::avail_ring(slot), head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Some(Placed {
            id: head,
            tail,
            added: 1,
        })
    }

    #[inline]
    fn publish(&mut self, _added: u16) {
        // §2.7.13.3.1: descriptors and ring entries must be visible before the new idx.
        write_barrier();
        self.avail.write(AVAIL_IDX, self.avail_idx);
    }

    #[inline]
    fn wants_notification(&self, shared: &Shared<A>, added: u16) -> bool {
        let new = self.avail_idx;
        if shared.features.event_idx {
            need_event(
                self.used.read(self.avail_event()),
                new,
                new.wrapping_sub(added),
            )
        } else {
            self.used.read(USED_FLAGS) & USED_F_NO_NOTIFY == 0
        }
    }

    fn notification_data(&self, index: u16) -> u32 {
        // §2.9: vqn and the next avail idx.
        notification::split(index, self.avail_idx)
    }

    #[inline(always)]
    fn has_used(&self, shared: &Shared<A>) -> Result<bool, QueueError> {
        let used_idx = self.used.read(USED_IDX);
        if used_idx == self.last_used_idx {
            return Ok(false);
        }
        // The device can have used at most what is in flight (§2.7.8, untrusted device).
        if usize::from(used_idx.wrapping_sub(self.last_used_idx)) > shared.slots.count() {
            return Err(QueueError::UsedIndexAhead {
                used_idx,
                last_used_idx: self.last_used_idx,
            });
        }
        Ok(true)
    }

    fn used_visible(&self) -> bool {
        self.used.read(USED_IDX) != self.last_used_idx
    }

    #[inline(always)]
    fn read_used(&self) -> (u32, u32) {
        let (id, len) = split::used_elem(self.last_used_idx & (self.size.get() - 1));
        (self.used.read(id), self.used.read(len))
    }

    #[inline(always)]
    fn consume_used(&mut self, shared: &Shared<A>) {
        self.last_used_idx = self.last_used_idx.wrapping_add(1);
        if shared.notifications_enabled && shared.features.event_idx {
            // §2.7.10: ask for a notification when the next buffer is used.
            let used_event = self.used_event();
            self.avail.write(used_event, self.last_used_idx);
        }
    }

    /// Returns a consumed buffer's descriptors to the free list.
    #[inline]
    fn recycle(&mut self, shared: &Shared<A>, completed: Completed) {
        let Completed {
            id: head,
            in_flight,
            ..
        } = completed;
        // Append the chain at the tail so that in-order use keeps table order (§2.7.9).
        if shared.num_free == 0 {
            self.free_head = head;
        } else {
            self.desc_next[usize::from(self.free_tail)] = head;
        }
        self.free_tail = in_flight.tail;
    }

    fn enable_used_notifications(&mut self, shared: &Shared<A>) {
        if shared.features.event_idx {
            let used_event = self.used_event();
            self.avail.write(used_event, self.last_used_idx);
        } else {
            self.avail.write(AVAIL_FLAGS, 0);
        }
    }

    fn disable_used_notifications(&mut self, shared: &Shared<A>) {
        if shared.features.event_idx {
            // The device ignores the flag with EVENT_IDX (§2.7.10); move used_event as far
            // away as possible instead, as Linux does.
            let used_event = self.used_event();
            let farthest = self.last_used_idx.wrapping_add(HALF_INDEX_SPACE);
            self.avail.write(used_event, farthest);
        } else {
            self.avail.write(AVAIL_FLAGS, AVAIL_F_NO_INTERRUPT);
        }
    }

    fn reset(&mut self) {
        self.desc.zero();
        self.avail.zero();
        self.used.zero();
        self.reset_free_list();
        self.avail_idx = 0;
        self.last_used_idx = 0;
    }

    fn ring_addresses(&self) -> RingAddresses {
        RingAddresses {
            descriptor_area: self.desc.phys(),
            driver_area: self.avail.phys(),
            device_area: self.used.phys(),
        }
    }

    fn ring_state(&self, in_flight: usize) -> RingState {
        RingState::Split {
            avail_idx: self.avail_idx,
            avail_flags: self.avail.read(AVAIL_FLAGS),
            used_event: self.avail.read(self.used_event()),
            used_idx: self.used.read(USED_IDX),
            used_flags: self.used.read(USED_FLAGS),
            avail_event: self.used.read(self.avail_event()),
            last_used_idx: self.last_used_idx,
            in_flight,
        }
    }
}

/// The areas (where the device finds them) and the driver's positions; not the descriptors'
/// free list, which is as long as the ring.
impl<A: DmaAllocator> fmt::Debug for SplitRing<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitRing")
            .field("desc", &self.desc)
            .field("avail", &self.avail)
            .field("used", &self.used)
            .field("avail_idx", &self.avail_idx)
            .field("last_used_idx", &self.last_used_idx)
            .field("free_head", &self.free_head)
            .finish_non_exhaustive()
    }
}
