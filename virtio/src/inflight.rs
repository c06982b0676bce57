//! Bookkeeping of the buffers in flight, shared by both ring layouts.
//!
//! Each in-flight token sits in a slot indexed by its buffer id (split: the head descriptor's
//! index; packed: the Buffer ID). Device-written ids and lengths are checked against these slots
//! before anything changes, so a bad id can neither return a token twice nor lose one.

use alloc::{collections::VecDeque, vec::Vec};

use crate::{dma::DmaAllocator, dma::DmaRegion, error::QueueError, token::AvailBufferToken};

/// One token the device has not given back yet.
pub(crate) struct InFlight<A: DmaAllocator> {
    /// The caller's token, returned as is.
    pub(crate) token: AvailBufferToken<A>,
    /// Ring descriptors it occupies (1 when indirect).
    pub(crate) desc_count: u16,
    /// Bytes in its device-writable part: the most the device may claim to have written.
    pub(crate) writable_capacity: u64,
    /// Its indirect descriptor table, freed when the token comes back.
    pub(crate) indirect: Option<DmaRegion<A>>,
    /// Split ring: the last ring descriptor of its chain, for relinking into the free list.
    pub(crate) tail: u16,
}

/// A used entry that has been checked and consumed from the ring but whose token(s) have not
/// been handed out yet.
#[derive(Clone, Copy, Debug)]
enum Pending {
    None,
    /// Give back buffer `id` with `len`.
    One {
        id: u16,
        len: u32,
    },
    /// `VIRTIO_F_IN_ORDER` batch (virtio 1.2 §2.7.9, §2.8.22): give back, in dispatch order,
    /// every buffer up to and including `id`; only `id` carries a written length.
    UpTo {
        id: u16,
        len: u32,
    },
}

/// The in-flight tokens of one queue, by buffer id.
pub(crate) struct Slots<A: DmaAllocator> {
    slots: Vec<Option<InFlight<A>>>,
    count: usize,
    in_order: bool,
    /// Buffer ids in dispatch order; kept only with `VIRTIO_F_IN_ORDER`.
    order: VecDeque<u16>,
    pending: Pending,
}

impl<A: DmaAllocator> Slots<A> {
    pub(crate) fn new(size: u16, in_order: bool) -> Self {
        let mut slots = Vec::with_capacity(usize::from(size));
        slots.resize_with(usize::from(size), || None);
        let order = VecDeque::with_capacity(if in_order { usize::from(size) } else { 0 });
        Self {
            slots,
            count: 0,
            in_order,
            order,
            pending: Pending::None,
        }
    }

    /// Number of tokens in flight, including consumed but not yet handed out ones.
    #[inline]
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Whether a consumed used entry still has tokens to hand out.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        !matches!(self.pending, Pending::None)
    }

    /// Records a newly dispatched token under the free id `id`.
    #[inline]
    pub(crate) fn insert(&mut self, id: u16, in_flight: InFlight<A>) {
        debug_assert!(self.slots[usize::from(id)].is_none(), "buffer id reused");
        self.slots[usize::from(id)] = Some(in_flight);
        self.count += 1;
        if self.in_order {
            self.order.push_back(id);
        }
    }

    /// Checks a used entry `(id, len)` written by the device; on success it is pending and
    /// [`next_completed`](Self::next_completed) hands out its token(s). On error nothing changes.
    #[inline]
    pub(crate) fn accept_used(&mut self, id: u32, len: u32) -> Result<(), QueueError> {
        debug_assert!(!self.has_pending());
        let slot = usize::try_from(id).ok().and_then(|i| self.slots.get(i));
        let Some(slot) = slot else {
            return Err(QueueError::UsedIdOutOfRange { id });
        };
        let Some(in_flight) = slot else {
            return Err(QueueError::UsedIdNotInFlight { id });
        };
        // A token with nothing device-writable has nothing written: whatever length the
        // device wrote there means nothing (virtio 1.2 §2.8.7) and is not an error.
        let len = if in_flight.writable_capacity == 0 {
            0
        } else {
            len
        };
        if u64::from(len) > in_flight.writable_capacity {
            return Err(QueueError::WrittenLenTooLarge {
                len,
                capacity: in_flight.writable_capacity,
            });
        }
        // `id` indexes `slots`, whose length is a u16 queue size.
        let id = id as u16;
        self.pending = if self.in_order {
            Pending::UpTo { id, len }
        } else {
            Pending::One { id, len }
        };
        Ok(())
    }

    /// Hands out the next token of the pending used entry, with its buffer id and written length.
    #[inline]
    pub(crate) fn next_completed(&mut self) -> Option<(u16, InFlight<A>, u32)> {
        let (id, len) = match self.pending {
            Pending::None => return None,
            Pending::One { id, len } => {
                self.pending = Pending::None;
                (id, len)
            }
            Pending::UpTo { id, len } => {
                let front = self.order.pop_front()?;
                if front == id {
                    self.pending = Pending::None;
                    (id, len)
                } else {
                    // The spec gives no length for the earlier buffers of an in-order batch.
                    (front, 0)
                }
            }
        };
        let in_flight = self.slots[usize::from(id)].take()?;
        self.count -= 1;
        Some((id, in_flight, len))
    }

    /// Empties every slot (queue reset), handing the tokens out in id order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = InFlight<A>> + '_ {
        self.count = 0;
        self.order.clear();
        self.pending = Pending::None;
        self.slots.iter_mut().filter_map(Option::take)
    }
}
