//! The driver side of a virtqueue, written once for both ring layouts.
//!
//! [`Queue`] is everything split (virtio 1.2 §2.7) and packed (§2.8) rings have in common:
//! checking a token, allocating its indirect table, the in-flight slots and free-descriptor
//! count, the order publish → fence → read the device's suppression → notify, the order find a
//! used entry → fence → read it → check it → recycle, the notification on/off protocol and the
//! accessors. What the layouts do differently is the small [`Ring`] trait, implemented by
//! [`SplitRing`](crate::split::SplitRing) and [`PackedRing`](crate::packed::PackedRing);
//! [`SplitVq`](crate::SplitVq) and [`PackedVq`](crate::PackedVq) are `Queue` over each.
//!
//! Why a generic core over a layout trait rather than a private trait with provided methods
//! (Hermit's shape): the state both layouts keep (slots, free count, features, notifier) is
//! declared once, here, instead of twice and reached through getters; the [`Ring`] trait lists
//! exactly what differs, so it reads as a summary of §2.7 against §2.8; and the public types
//! need no forwarding `Virtq` impls. `Queue<SplitRing<A>, A, N>` is a concrete type: every
//! `Ring` call is resolved at compile time and inlined into `dispatch`/`poll` (no `dyn` on the
//! hot path), so each layout compiles to what its hand-written queue did.

use alloc::{collections::VecDeque, vec::Vec};
use core::fmt;

use allocator_api2::alloc::AllocError;
use virtio_spec::F;

use crate::{
    barrier::{full_barrier, read_barrier},
    dma::{DmaAllocator, DmaRegion, Notifier},
    error::{DispatchError, QueueError},
    features::RingFeatures,
    inflight::{Completed, InFlight, Slots},
    layout::{desc_table, indirect_len},
    token::{AvailBufferToken, BufferType, UsedBufferToken},
    virtq::{RingAddresses, RingState, Virtq},
};

/// The largest queue size of either layout (virtio 1.2 §2.7, §2.8.10.1).
const MAX_QUEUE_SIZE: u16 = 32768;

/// A queue size (1..=32768) as ring state keeps it: 32 bits wide although it fits in 16.
///
/// Ring state puts `u16` indices next to each other, and the hot path stores some of them on
/// every round trip. LLVM may widen a 16-bit load of an unchanging field into a 32-bit load that
/// also covers a neighbour just stored; store-to-load forwarding then fails and the load waits
/// for the store to commit (≈ 7 ns per split round trip in `benches/virtq.rs` when the split
/// ring's size sat next to `free_head`). A 32-bit field is loaded exactly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingSize(u32);

impl RingSize {
    /// `size` as checked by [`Queue::new`] (at most 32768).
    #[inline(always)]
    pub(crate) fn new(size: u16) -> Self {
        Self(u32::from(size))
    }

    /// The size.
    #[inline(always)]
    pub(crate) fn get(self) -> u16 {
        // Made from a u16.
        self.0 as u16
    }

    /// The size, widened.
    #[inline(always)]
    pub(crate) fn wide(self) -> u32 {
        self.0
    }
}

/// The queue state that does not depend on the layout; [`Ring`] methods read it.
pub struct Shared<A: DmaAllocator> {
    /// Number of descriptors.
    pub(crate) size: RingSize,
    /// The negotiated features that change how the ring is driven.
    pub(crate) features: RingFeatures,
    /// Descriptors not in flight (a direct token takes one per element, an indirect one 1).
    pub(crate) num_free: u16,
    /// Whether the driver wants used-buffer notifications (`Virtq::enable_notifications`).
    pub(crate) notifications_enabled: bool,
    /// The tokens in flight, by buffer id.
    pub(crate) slots: Slots<A>,
}

impl<A: DmaAllocator> fmt::Debug for Shared<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("size", &self.size.get())
            .field("features", &self.features)
            .field("num_free", &self.num_free)
            .field("notifications_enabled", &self.notifications_enabled)
            .field("in_flight", &self.slots.count())
            .finish_non_exhaustive()
    }
}

/// How [`Ring::add`] lays out a token.
#[derive(Clone, Copy, Debug)]
pub enum Chain {
    /// Its `count` elements, one descriptor each (§2.7.6, §2.8.6).
    Direct {
        /// Number of elements.
        count: u16,
    },
    /// One descriptor pointing at its indirect table (§2.7.5.3, §2.8.19).
    Indirect {
        /// The table's device-visible address.
        table: u64,
        /// The table's length in bytes.
        len: u32,
    },
}

/// Where [`Ring::add`] put a token.
#[derive(Clone, Copy, Debug)]
pub struct Placed {
    /// Its buffer id (split: the head descriptor; packed: the Buffer ID, §2.8.6).
    pub(crate) id: u16,
    /// Split: the last descriptor of its chain (see [`InFlight::tail`]); packed: 0.
    pub(crate) tail: u16,
    /// How far it moved the ring on, in the units [`Ring::publish`] counts (split: available
    /// ring entries; packed: descriptors).
    pub(crate) added: u16,
}

/// What a ring layout does its own way. Implemented by the split and packed layouts only (the
/// trait is public in name only: its module is private, so no other crate can name or
/// implement it); the state they share is [`Shared`], lent to these methods.
///
/// Every method that reads device-written memory treats it as untrusted: it either checks the
/// value or only compares it.
pub trait Ring<A: DmaAllocator>: Sized + fmt::Debug {
    /// The name `Debug` prints for a queue of this layout.
    const NAME: &'static str;

    /// Allocates zeroed ring memory for `size` descriptors (already checked to be in
    /// 1..=32768).
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidQueueSize`] for a size this layout cannot have,
    /// [`QueueError::AllocFailed`] for ring memory.
    fn new(size: u16, alloc: &A) -> Result<Self, QueueError>;

    /// Fills `table`, zeroed and sized for `token`'s elements, with this layout's indirect
    /// descriptors for them (§2.7.5.3, §2.8.19).
    fn write_indirect(table: &mut DmaRegion<A>, token: &AvailBufferToken<A>);

    /// Writes a token's descriptors, laid out as `chain` says, so that the device may see them,
    /// but does not publish or notify. The caller has checked that there are enough free
    /// descriptors. `None`, with nothing written, if no buffer id is free (packed: cannot happen
    /// while a descriptor is free, as every token in flight holds one, but is not assumed).
    fn add(&mut self, token: &AvailBufferToken<A>, chain: Chain) -> Option<Placed>;

    /// Makes the `added` units (see [`Placed::added`]) written since the last publish visible
    /// to the device (split: stores `avail.idx`; packed: nothing left to do, the head flags did
    /// it). A full fence follows, then [`wants_notification`](Self::wants_notification).
    fn publish(&mut self, added: u16);

    /// Whether the device asked to be notified of the `added` units just published
    /// (§2.7.13.4, §2.8.21.3.1).
    fn wants_notification(&self, shared: &Shared<A>, added: u16) -> bool;

    /// The notification data of §2.9 for queue `index`.
    fn notification_data(&self, index: u16) -> u32;

    /// Whether the device has written a used entry not consumed yet, checked against the
    /// number of tokens in flight (the device cannot have used more than that).
    ///
    /// # Errors
    ///
    /// A device protocol violation; nothing is consumed.
    fn has_used(&self, shared: &Shared<A>) -> Result<bool, QueueError>;

    /// Like [`has_used`](Self::has_used), unchecked: for the re-check after enabling
    /// notifications, where a bad entry is left for `poll` to report.
    fn used_visible(&self) -> bool;

    /// Reads the id and written length of the used entry [`has_used`](Self::has_used) found
    /// (the caller fences in between), unchecked.
    fn read_used(&self) -> (u32, u32);

    /// Moves past the used entry just read and checked.
    fn consume_used(&mut self, shared: &Shared<A>);

    /// Takes back a completed token's descriptors and buffer id (before the free count grows).
    fn recycle(&mut self, shared: &Shared<A>, completed: Completed);

    /// Asks the device for used-buffer notifications (§2.7.10, §2.8.10).
    fn enable_used_notifications(&mut self, shared: &Shared<A>);

    /// Asks the device not to send them.
    fn disable_used_notifications(&mut self, shared: &Shared<A>);

    /// Zeroes the ring memory and returns to the state `new` left (queue reset).
    fn reset(&mut self);

    /// The device-visible addresses of the three areas.
    fn ring_addresses(&self) -> RingAddresses;

    /// The layout's indices and suppression fields, for diagnostics.
    fn ring_state(&self, in_flight: usize) -> RingState;
}

/// A virtqueue driven by the driver side, in ring layout `R`. Name it by its layout:
/// [`SplitVq`](crate::SplitVq) (`R` = `SplitRing`) or [`PackedVq`](crate::PackedVq)
/// (`R` = `PackedRing`); their docs have examples. No other layout exists: `R`'s trait is
/// private to this crate.
///
/// It implements [`Virtq`]: every value the device writes is checked before use.
pub struct Queue<R, A: DmaAllocator, N: Notifier> {
    ring: R,
    shared: Shared<A>,
    alloc: A,
    notifier: N,
    index: u16,
}

impl<R: Ring<A>, A: DmaAllocator, N: Notifier> Queue<R, A, N> {
    /// Allocates an empty queue of `size` descriptors for queue `index`, driven with the
    /// `negotiated` features. Split queues need a power of two up to 32768 (§2.7); packed
    /// queues any size from 1 to 32768 (§2.8.10.1).
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
        if size == 0 || size > MAX_QUEUE_SIZE {
            return Err(QueueError::InvalidQueueSize);
        }
        let ring = R::new(size, &alloc)?;
        let features = RingFeatures::from_negotiated(negotiated);
        Ok(Self {
            ring,
            shared: Shared {
                size: RingSize::new(size),
                features,
                num_free: size,
                notifications_enabled: true,
                slots: Slots::new(size, features.in_order),
            },
            alloc,
            notifier,
            index,
        })
    }

    /// Writes the token's descriptors, without publishing them. Returns the units to publish
    /// (see [`Placed::added`]). On error the token comes back untouched and nothing changed.
    #[inline]
    fn add(
        &mut self,
        token: AvailBufferToken<A>,
        buffer_type: BufferType,
    ) -> Result<u16, DispatchError<A>> {
        let (count, writable_capacity) = match token.check(self.shared.size.get()) {
            Ok(checked) => checked,
            Err(error) => return rejected(error, token),
        };
        let indirect = buffer_type == BufferType::Indirect;
        if indirect && !self.shared.features.indirect_desc {
            return rejected(QueueError::IndirectNotNegotiated, token);
        }
        let needed = if indirect { 1 } else { count };
        if needed > self.shared.num_free {
            return rejected(QueueError::QueueFull, token);
        }
        let (chain, table) = if indirect {
            // The table lives in DMA memory from here until the token comes back.
            let layout = desc_table(count).map_err(|_| AllocError);
            let Ok(mut table) =
                layout.and_then(|layout| DmaRegion::new_zeroed(&self.alloc, layout))
            else {
                return rejected(QueueError::AllocFailed, token);
            };
            R::write_indirect(&mut table, &token);
            let len = indirect_len(count);
            let chain = Chain::Indirect {
                table: table.phys(),
                len,
            };
            (chain, Some(table))
        } else {
            (Chain::Direct { count }, None)
        };
        let Some(placed) = self.ring.add(&token, chain) else {
            return rejected(QueueError::QueueFull, token);
        };
        self.shared.num_free -= needed;
        let in_flight = InFlight {
            writable_capacity,
            desc_count: needed,
            tail: placed.tail,
            has_indirect: table.is_some(),
        };
        self.shared.slots.insert(placed.id, token, in_flight, table);
        Ok(placed.added)
    }

    /// Publishes the `added` units written since the last publish, then notifies the device if
    /// it asked for it. Returns whether it notified.
    #[inline]
    fn publish(&mut self, added: u16) -> bool {
        if added == 0 {
            return false;
        }
        self.ring.publish(added);
        // §2.7.13.4, §2.8.21.3.1: what was just published must be visible before the device's
        // suppression is read; a store then a load needs a full fence even on x86, or driver
        // and device can both wait for each other.
        full_barrier();
        let kick = self.ring.wants_notification(&self.shared, added);
        if kick {
            self.send_notification();
        }
        kick
    }

    /// Notifies the device of this queue, with notification data when negotiated.
    fn send_notification(&self) {
        let data = self
            .shared
            .features
            .notification_data
            .then(|| self.ring.notification_data(self.index));
        self.notifier.notify(self.index, data);
    }

    /// Reads the next used entry from the ring, if the device has written one, and checks it
    /// (untrusted device); on success it is pending in `slots`. Returns whether there was one.
    /// On error nothing is consumed.
    #[inline(always)]
    fn consume_used(&mut self) -> Result<bool, QueueError> {
        if !self.ring.has_used(&self.shared)? {
            return Ok(false);
        }
        // §2.7.14, §2.8.21.2: read the index or flags that announce an entry before the entry.
        read_barrier();
        let (id, len) = self.ring.read_used();
        // Checks id range, in-flight and length; on error the entry stays unconsumed.
        self.shared.slots.accept_used(id, len)?;
        self.ring.consume_used(&self.shared);
        Ok(true)
    }
}

/// A dispatch that failed, with its token given back (out of line: the error paths stay off
/// the hot path's registers).
#[cold]
#[inline(never)]
fn rejected<A: DmaAllocator>(
    error: QueueError,
    token: AvailBufferToken<A>,
) -> Result<u16, DispatchError<A>> {
    Err(DispatchError { error, token })
}

impl<R: Ring<A>, A: DmaAllocator, N: Notifier> Virtq<A> for Queue<R, A, N> {
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
        // Each token takes at least one of the `size` descriptors, so the sum fits.
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
        if !self.shared.slots.has_pending() && !self.consume_used()? {
            return Ok(None);
        }
        let Some(completed) = self.shared.slots.next_completed() else {
            return Ok(None);
        };
        self.ring.recycle(&self.shared, completed);
        self.shared.num_free += completed.in_flight.desc_count;
        Ok(self.shared.slots.take_used(completed))
    }

    fn enable_notifications(&mut self) -> bool {
        self.shared.notifications_enabled = true;
        self.ring.enable_used_notifications(&self.shared);
        // §2.7.10, §2.8.10: the store must be visible before the ring is checked again, or a
        // buffer used in between would raise no notification.
        full_barrier();
        self.shared.slots.has_pending() || self.ring.used_visible()
    }

    fn disable_notifications(&mut self) {
        self.shared.notifications_enabled = false;
        self.ring.disable_used_notifications(&self.shared);
    }

    fn size(&self) -> u16 {
        self.shared.size.get()
    }

    fn index(&self) -> u16 {
        self.index
    }

    fn free_descriptors(&self) -> u16 {
        self.shared.num_free
    }

    fn in_flight(&self) -> usize {
        self.shared.slots.count()
    }

    fn reset(&mut self) -> Vec<AvailBufferToken<A>> {
        let tokens = self.shared.slots.drain().collect();
        self.ring.reset();
        self.shared.num_free = self.shared.size.get();
        self.shared.notifications_enabled = true;
        tokens
    }

    fn ring_addresses(&self) -> RingAddresses {
        self.ring.ring_addresses()
    }

    fn notify(&mut self) {
        self.send_notification();
    }

    fn ring_state(&self) -> RingState {
        self.ring.ring_state(self.shared.slots.count())
    }
}

impl<R: Ring<A>, A: DmaAllocator, N: Notifier> fmt::Debug for Queue<R, A, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(R::NAME)
            .field("index", &self.index)
            .field("shared", &self.shared)
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}
