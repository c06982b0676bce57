//! Bookkeeping of the buffers in flight, shared by both ring layouts.
//!
//! Layer: virtqueue core, private (drivers and the kernel track requests, not ring slots).
//!
//! Each in-flight token sits in a slot indexed by its buffer id (split: the head descriptor's
//! index; packed: the Buffer ID). Device-written ids and lengths are checked against these slots
//! before anything changes, so a bad id can neither return a token twice nor lose one.

use alloc::{collections::VecDeque, vec::Vec};

use crate::{
    dma::DmaAllocator,
    dma::DmaRegion,
    error::QueueError,
    token::{AvailBufferToken, UsedBufferToken},
};

/// The driver's record of one in-flight token, apart from the token itself and its indirect
/// table. Small and `Copy`, so the hot path moves 16 bytes rather than the whole token.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InFlight {
    /// Bytes in its device-writable part: the most the device may claim to have written.
    pub(crate) writable_capacity: u64,
    /// Ring descriptors it occupies (1 when indirect).
    pub(crate) desc_count: u16,
    /// Split ring: the last ring descriptor of its chain, for relinking into the free list.
    pub(crate) tail: u16,
    /// Whether it has an indirect descriptor table (in `Slots::indirect`).
    pub(crate) has_indirect: bool,
}

/// A completion handed out by [`Slots::next_completed`]; its token is still in its slot until
/// [`Slots::take_used`] moves it straight into the [`UsedBufferToken`].
#[derive(Clone, Copy, Debug)]
pub struct Completed {
    /// Its buffer id.
    pub(crate) id: u16,
    /// The record made at dispatch.
    pub(crate) in_flight: InFlight,
    /// The checked written length.
    pub(crate) len: u32,
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
///
/// Three parallel arrays indexed by buffer id: the tokens, their small `Copy` records, and their
/// indirect tables. Slots are written and taken in place, so a token moves in and out once and
/// the direct path never touches the indirect-table array.
pub(crate) struct Slots<A: DmaAllocator> {
    tokens: Vec<Option<AvailBufferToken<A>>>,
    records: Vec<InFlight>,
    indirect: Vec<Option<DmaRegion<A>>>,
    count: usize,
    in_order: bool,
    /// Buffer ids in dispatch order; kept only with `VIRTIO_F_IN_ORDER`.
    order: VecDeque<u16>,
    pending: Pending,
}

impl<A: DmaAllocator> Slots<A> {
    pub(crate) fn new(size: u16, in_order: bool) -> Self {
        let mut tokens = Vec::with_capacity(usize::from(size));
        tokens.resize_with(usize::from(size), || None);
        let mut indirect = Vec::with_capacity(usize::from(size));
        indirect.resize_with(usize::from(size), || None);
        let records = alloc::vec![InFlight::default(); usize::from(size)];
        let order = VecDeque::with_capacity(if in_order { usize::from(size) } else { 0 });
        Self {
            tokens,
            records,
            indirect,
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
    #[inline(always)]
    pub(crate) fn insert(
        &mut self,
        id: u16,
        token: AvailBufferToken<A>,
        in_flight: InFlight,
        indirect: Option<DmaRegion<A>>,
    ) {
        let i = usize::from(id);
        let slot = &mut self.tokens[i];
        debug_assert!(slot.is_none(), "buffer id reused");
        *slot = Some(token);
        self.records[i] = in_flight;
        if let Some(table) = indirect {
            self.indirect[i] = Some(table);
        }
        self.count += 1;
        if self.in_order {
            self.order.push_back(id);
        }
    }

    /// Checks a used entry `(id, len)` written by the device; on success it is pending and
    /// [`next_completed`](Self::next_completed) hands out its token(s). On error nothing changes.
    #[inline(always)]
    pub(crate) fn accept_used(&mut self, id: u32, len: u32) -> Result<(), QueueError> {
        debug_assert!(!self.has_pending());
        let index = usize::try_from(id).ok();
        let Some(slot) = index.and_then(|i| self.tokens.get(i)) else {
            return Err(QueueError::UsedIdOutOfRange { id });
        };
        if slot.is_none() {
            return Err(QueueError::UsedIdNotInFlight { id });
        }
        // `id` indexes `tokens`, whose length is a u16 queue size, like `records`.
        let id = id as u16;
        let in_flight = &self.records[usize::from(id)];
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
        self.pending = if self.in_order {
            Pending::UpTo { id, len }
        } else {
            Pending::One { id, len }
        };
        Ok(())
    }

    /// Hands out the next completion of the pending used entry: buffer id, record and written
    /// length; frees its indirect table, if any. The caller must then call
    /// [`take_used`](Self::take_used) with it (the token is taken last so that it moves once,
    /// from its slot into the returned [`UsedBufferToken`]).
    #[inline(always)]
    pub(crate) fn next_completed(&mut self) -> Option<Completed> {
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
        let i = usize::from(id);
        let in_flight = self.records[i];
        if in_flight.has_indirect {
            // Dropping the table returns it to the DMA allocator.
            self.indirect[i] = None;
        }
        Some(Completed { id, in_flight, len })
    }

    /// Takes the token of a completion from [`next_completed`](Self::next_completed).
    /// `None` only if the slot was empty, which `accept_used` rules out.
    #[inline(always)]
    pub(crate) fn take_used(&mut self, completed: Completed) -> Option<UsedBufferToken<A>> {
        let token = self.tokens[usize::from(completed.id)].take()?;
        self.count -= 1;
        Some(UsedBufferToken::new(token, completed.len))
    }

    /// Empties every slot (queue reset), handing the tokens out in id order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = AvailBufferToken<A>> + '_ {
        self.count = 0;
        self.order.clear();
        self.pending = Pending::None;
        self.indirect.iter_mut().for_each(|table| *table = None);
        self.tokens.iter_mut().filter_map(Option::take)
    }
}
