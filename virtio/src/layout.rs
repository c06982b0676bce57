//! Where every ring field lives: byte offsets and flag values of the split (virtio 1.2
//! §2.7.5–2.7.8) and packed (§2.8.10, §2.8.13–2.8.14) layouts, derived from the `virtio-spec`
//! crate's `#[repr(C)]` types with `offset_of!`/`size_of` and from its constants.
//!
//! The queues name the field they touch through this module and never compute a ring offset
//! themselves; [`DmaRegion`](crate::dma::DmaRegion) turns a [`Field`] into a checked volatile
//! access.

use core::{
    alloc::{Layout, LayoutError},
    marker::PhantomData,
    mem::{offset_of, size_of},
};

use virtio_spec::{
    RingEventFlags, le16, le32,
    pvirtq::{self, EventSuppressDesc, EventSuppressFlags},
    virtq::{self, AvailF, DescF, UsedF},
};

/// One field of device-shared memory: its byte offset in a region, typed by the value it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field<T> {
    offset: usize,
    value: PhantomData<T>,
}

impl<T> Field<T> {
    #[inline(always)]
    const fn at(offset: usize) -> Self {
        Self {
            offset,
            value: PhantomData,
        }
    }

    /// The byte offset in its region.
    #[inline(always)]
    pub(crate) const fn offset(self) -> usize {
        self.offset
    }
}

/// Descriptor flags (§2.7.5, §2.8.1), shared by both layouts: `virtq::DescF`'s values.
pub(crate) mod desc_f {
    use super::DescF;

    /// `VIRTQ_DESC_F_NEXT`: the chain continues (split: at `next`; packed: at the next slot).
    pub(crate) const NEXT: u16 = DescF::NEXT.bits().to_ne();
    /// `VIRTQ_DESC_F_WRITE`: the buffer is device-writable.
    pub(crate) const WRITE: u16 = DescF::WRITE.bits().to_ne();
    /// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors.
    pub(crate) const INDIRECT: u16 = DescF::INDIRECT.bits().to_ne();
    /// `VIRTQ_DESC_F_AVAIL` (packed only).
    pub(crate) const AVAIL: u16 = DescF::AVAIL.bits().to_ne();
    /// `VIRTQ_DESC_F_USED` (packed only).
    pub(crate) const USED: u16 = DescF::USED.bits().to_ne();
}

/// Size of one descriptor of either layout (`struct virtq_desc`, `struct pvirtq_desc`).
pub(crate) const DESC_SIZE: usize = size_of::<virtq::Desc>();
const _: () = assert!(size_of::<pvirtq::Desc>() == DESC_SIZE);

/// The layout of `count` descriptors of either layout: a split descriptor table, a packed
/// descriptor ring or an indirect table, 16-byte aligned (§2.7 table 2.7, §2.8.10.1).
pub(crate) fn desc_table(count: u16) -> Result<Layout, LayoutError> {
    Layout::from_size_align(DESC_SIZE * usize::from(count), 16)
}

/// The `len` of a descriptor pointing at an indirect table of `count` descriptors
/// (§2.7.5.3.1, §2.8.19); `count` is at most the queue size, so it fits.
pub(crate) fn indirect_len(count: u16) -> u32 {
    u32::from(count) * DESC_SIZE as u32
}

/// The split layout (§2.7): descriptor table, available ring, used ring.
pub(crate) mod split {
    use super::{AvailF, DESC_SIZE, Field, UsedF, le16, le32, offset_of, size_of, virtq};

    /// A split descriptor as the driver writes it (`struct virtq_desc`, §2.7.5).
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Desc {
        /// `addr`: the buffer's device-visible address.
        pub(crate) addr: u64,
        /// `len`: the buffer's length in bytes.
        pub(crate) len: u32,
        /// `flags`: [`desc_f`](super::desc_f) bits.
        pub(crate) flags: u16,
        /// `next`: the following descriptor when `flags` has NEXT.
        pub(crate) next: u16,
    }

    /// Byte offsets of `virtq_desc` fields.
    pub(crate) const DESC_ADDR: usize = offset_of!(virtq::Desc, addr);
    pub(crate) const DESC_LEN: usize = offset_of!(virtq::Desc, len);
    pub(crate) const DESC_FLAGS: usize = offset_of!(virtq::Desc, flags);
    pub(crate) const DESC_NEXT: usize = offset_of!(virtq::Desc, next);

    /// The `flags`/`idx` header that `struct virtq_avail` and `struct virtq_used` share
    /// (§2.7.6, §2.7.8); checked against `virtq::Avail::layout`/`virtq::Used::layout` below.
    #[repr(C)]
    struct RingHeader {
        flags: le16,
        idx: le16,
    }

    /// `VIRTQ_AVAIL_F_NO_INTERRUPT` (§2.7.7).
    pub(crate) const AVAIL_F_NO_INTERRUPT: u16 = AvailF::NO_INTERRUPT.bits().to_ne();
    /// `VIRTQ_USED_F_NO_NOTIFY` (§2.7.10).
    pub(crate) const USED_F_NO_NOTIFY: u16 = UsedF::NO_NOTIFY.bits().to_ne();

    /// `virtq_avail.flags`.
    pub(crate) const AVAIL_FLAGS: Field<u16> = Field::at(offset_of!(RingHeader, flags));
    /// `virtq_avail.idx`.
    pub(crate) const AVAIL_IDX: Field<u16> = Field::at(offset_of!(RingHeader, idx));
    /// `virtq_used.flags`.
    pub(crate) const USED_FLAGS: Field<u16> = Field::at(offset_of!(RingHeader, flags));
    /// `virtq_used.idx`.
    pub(crate) const USED_IDX: Field<u16> = Field::at(offset_of!(RingHeader, idx));

    /// Byte offset of descriptor `index` in the descriptor table.
    #[inline(always)]
    pub(crate) fn desc(index: u16) -> usize {
        DESC_SIZE * usize::from(index)
    }

    /// `virtq_avail.ring[slot]`.
    #[inline(always)]
    pub(crate) fn avail_ring(slot: u16) -> Field<u16> {
        Field::at(size_of::<RingHeader>() + size_of::<le16>() * usize::from(slot))
    }

    /// `virtq_avail.used_event`, just past `ring[size]` (§2.7.10).
    #[inline(always)]
    pub(crate) fn used_event(size: u16) -> Field<u16> {
        avail_ring(size)
    }

    /// `virtq_used.ring[slot].id` and `.len` (`struct virtq_used_elem`).
    #[inline(always)]
    pub(crate) fn used_elem(slot: u16) -> (Field<u32>, Field<u32>) {
        let base = size_of::<RingHeader>() + size_of::<virtq::UsedElem>() * usize::from(slot);
        (
            Field::at(base + offset_of!(virtq::UsedElem, id)),
            Field::at(base + offset_of!(virtq::UsedElem, len)),
        )
    }

    /// `virtq_used.avail_event`, just past `ring[size]` (§2.7.10).
    #[inline(always)]
    pub(crate) fn avail_event(size: u16) -> Field<u16> {
        Field::at(size_of::<RingHeader>() + size_of::<virtq::UsedElem>() * usize::from(size))
    }

    const _: () = assert!(size_of::<virtq::UsedElem>() == 2 * size_of::<le32>());
}

/// The packed layout (§2.8): one descriptor ring and two event suppression structures.
pub(crate) mod packed {
    use super::{
        DESC_SIZE, EventSuppressDesc, EventSuppressFlags, Field, RingEventFlags, le16, offset_of,
        pvirtq, size_of,
    };

    /// A packed descriptor as the driver writes it, except `flags` (`struct pvirtq_desc`,
    /// §2.8.13), which makes it available and so is written on its own.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Desc {
        /// `addr`: the buffer's device-visible address.
        pub(crate) addr: u64,
        /// `len`: the buffer's length in bytes.
        pub(crate) len: u32,
        /// `id`: the Buffer ID (§2.8.6).
        pub(crate) id: u16,
    }

    /// Byte offsets of `pvirtq_desc` fields.
    pub(crate) const DESC_ADDR: usize = offset_of!(pvirtq::Desc, addr);
    pub(crate) const DESC_LEN: usize = offset_of!(pvirtq::Desc, len);
    pub(crate) const DESC_ID: usize = offset_of!(pvirtq::Desc, id);
    pub(crate) const DESC_FLAGS: usize = offset_of!(pvirtq::Desc, flags);

    /// Byte offset of the descriptor at ring position `pos`.
    #[inline(always)]
    pub(crate) fn desc(pos: u16) -> usize {
        DESC_SIZE * usize::from(pos)
    }

    /// `pvirtq_desc.flags` at ring position `pos`.
    #[inline(always)]
    pub(crate) fn desc_flags(pos: u16) -> Field<u16> {
        Field::at(desc(pos) + DESC_FLAGS)
    }

    /// `pvirtq_desc.id` at ring position `pos`.
    #[inline(always)]
    pub(crate) fn desc_id(pos: u16) -> Field<u16> {
        Field::at(desc(pos) + DESC_ID)
    }

    /// `pvirtq_desc.len` at ring position `pos`.
    #[inline(always)]
    pub(crate) fn desc_len(pos: u16) -> Field<u32> {
        Field::at(desc(pos) + DESC_LEN)
    }

    /// Size of `struct pvirtq_event_suppress` (§2.8.14).
    pub(crate) const EVENT_SIZE: usize = size_of::<pvirtq::EventSuppress>();
    /// `pvirtq_event_suppress.desc` (offset and wrap counter, "off_wrap").
    pub(crate) const EVENT_OFF_WRAP: Field<u16> =
        Field::at(offset_of!(pvirtq::EventSuppress, desc));
    /// `pvirtq_event_suppress.flags`.
    pub(crate) const EVENT_FLAGS: Field<u16> = Field::at(offset_of!(pvirtq::EventSuppress, flags));

    /// The `flags` word that sets `desc_event_flags` to `flags` (§2.8.10).
    #[inline(always)]
    pub(crate) fn event_flags(flags: RingEventFlags) -> u16 {
        EventSuppressFlags::new()
            .with_desc_event_flags(flags)
            .into_bits()
            .to_ne()
    }

    /// The `desc_event_flags` of a `flags` word the device wrote.
    #[inline(always)]
    pub(crate) fn event_flags_of(word: u16) -> RingEventFlags {
        EventSuppressFlags::from_bits(le16::from_ne(word)).desc_event_flags()
    }

    /// The off_wrap word for ring position `off` (below 2^15) in the lap of `wrap_counter`.
    #[inline(always)]
    pub(crate) fn off_wrap(off: u16, wrap_counter: bool) -> u16 {
        EventSuppressDesc::new()
            .with_desc_event_off(off)
            .with_desc_event_wrap(u8::from(wrap_counter))
            .into_bits()
            .to_ne()
    }

    /// The ring position and wrap counter of an off_wrap word the device wrote.
    #[inline(always)]
    pub(crate) fn off_wrap_of(word: u16) -> (u16, bool) {
        let desc = EventSuppressDesc::from_bits(le16::from_ne(word));
        (desc.desc_event_off(), desc.desc_event_wrap() != 0)
    }
}

/// The notification data of §2.9 (`NotificationData` of `virtio-spec`).
pub(crate) mod notification {
    use virtio_spec::mmio::NotificationData;

    /// Split rings: `vqn` and the next available index (`next_idx`, 16 bits).
    #[inline]
    pub(crate) fn split(vqn: u16, avail_idx: u16) -> u32 {
        NotificationData::new()
            .with_vq_notif_config_data(vqn)
            .with_next_idx(avail_idx)
            .into_bits()
            .to_ne()
    }

    /// Packed rings: `vqn`, `next_off` (15 bits) and `next_wrap`.
    #[inline]
    pub(crate) fn packed(vqn: u16, next_off: u16, next_wrap: bool) -> u32 {
        NotificationData::new()
            .with_vq_notif_config_data(vqn)
            .with_next_off(next_off)
            .with_next_wrap(u8::from(next_wrap))
            .into_bits()
            .to_ne()
    }
}

#[cfg(test)]
mod tests {
    use virtio_spec::virtq::{Avail, Used};

    use super::*;

    /// The header and event fields agree with the spec crate's own ring layouts (which include
    /// the event field at the end when asked to).
    #[test]
    fn split_rings_match_virtio_spec_layouts() {
        for size in [1u16, 2, 8, 256, 32768] {
            let avail = Avail::layout(size, true);
            assert_eq!(
                split::used_event(size).offset() + size_of::<le16>(),
                avail.size()
            );
            assert_eq!(
                split::avail_ring(size - 1).offset() + size_of::<le16>(),
                Avail::layout(size, false).size()
            );
            let used = Used::layout(size, false);
            assert_eq!(split::avail_event(size).offset(), used.size());
            let (id, len) = split::used_elem(size - 1);
            assert_eq!(len.offset() + size_of::<le32>(), used.size());
            assert_eq!(id.offset() + size_of::<le32>(), len.offset());
        }
        assert_eq!(split::AVAIL_FLAGS.offset(), 0);
        assert_eq!(split::AVAIL_IDX.offset(), size_of::<le16>());
    }

    #[test]
    fn packed_fields_match_the_spec() {
        // §2.8.13: addr @0, len @8, id @12, flags @14; §2.8.14: off_wrap @0, flags @2.
        assert_eq!(
            [
                packed::DESC_ADDR,
                packed::DESC_LEN,
                packed::DESC_ID,
                packed::DESC_FLAGS
            ],
            [0, 8, 12, 14]
        );
        assert_eq!(
            [
                split::DESC_ADDR,
                split::DESC_LEN,
                split::DESC_FLAGS,
                split::DESC_NEXT
            ],
            [0, 8, 12, 14]
        );
        assert_eq!(packed::desc_flags(3).offset(), 3 * DESC_SIZE + 14);
        assert_eq!(packed::EVENT_SIZE, 4);
        assert_eq!(packed::off_wrap(5, true), 0x8005);
        assert_eq!(packed::off_wrap_of(0x8005), (5, true));
        assert_eq!(packed::off_wrap_of(0x7fff), (0x7fff, false));
        assert_eq!(packed::event_flags(RingEventFlags::Desc), 2);
        assert_eq!(packed::event_flags_of(0xfffd), RingEventFlags::Disable);
        assert_eq!(notification::split(3, 0xabcd), 0xabcd_0003);
        assert_eq!(notification::packed(3, 0x7fff, true), 0xffff_0003);
    }
}
