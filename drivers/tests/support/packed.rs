//! The device side of a packed ring (virtio 1.2 §2.8), enough for the simulators: take
//! available chains (direct or indirect), write used descriptors, ask for notifications.

use std::sync::atomic::{Ordering, fence};

use vireo_virtio::RingAddresses;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::sim::Chain;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const F_AVAIL: u16 = 1 << 7;
const F_USED: u16 = 1 << 15;
/// `struct pvirtq_event_suppress` (§2.8.14): `off_wrap` at 0, `flags` at 2.
const EVENT_OFF_WRAP: u64 = 0;
const EVENT_FLAGS: u64 = 2;
/// `RING_EVENT_FLAGS_ENABLE`, `_DISABLE`, `_DESC` (§2.8.10).
const RING_EVENT_FLAGS_ENABLE: u16 = 0;
const RING_EVENT_FLAGS_DISABLE: u16 = 1;
const RING_EVENT_FLAGS_DESC: u16 = 2;

/// A packed ring as the device sees it.
pub struct PackedRing {
    ring: u64,
    /// The device event suppression structure, which the device writes.
    device_event: u64,
    /// `VIRTIO_F_EVENT_IDX` was negotiated.
    event_idx: bool,
    size: u16,
    next_avail: u16,
    avail_wrap: bool,
    next_used: u16,
    used_wrap: bool,
}

impl PackedRing {
    pub fn new(addrs: RingAddresses, size: u16, event_idx: bool) -> Self {
        Self {
            ring: addrs.descriptor_area,
            device_event: addrs.device_area,
            event_idx,
            size,
            next_avail: 0,
            avail_wrap: true,
            next_used: 0,
            used_wrap: true,
        }
    }

    fn desc(mem: &GuestMemoryMmap, table: u64, i: u16) -> (u64, u32, u16, u16) {
        let base = GuestAddress(table + 16 * u64::from(i));
        let read = |off: u64| base.0 + off;
        (
            mem.read_obj(GuestAddress(read(0))).unwrap(),
            mem.read_obj(GuestAddress(read(8))).unwrap(),
            mem.read_obj(GuestAddress(read(12))).unwrap(),
            mem.read_obj(GuestAddress(read(14))).unwrap(),
        )
    }

    fn step(pos: &mut u16, wrap: &mut bool, size: u16) {
        *pos += 1;
        if *pos == size {
            *pos = 0;
            *wrap = !*wrap;
        }
    }

    /// §2.8.1: a descriptor is available when AVAIL matches the device's avail wrap counter and
    /// USED does not.
    fn is_avail(&self, flags: u16) -> bool {
        (flags & F_AVAIL != 0) == self.avail_wrap && (flags & F_USED != 0) != self.avail_wrap
    }

    pub fn pop(&mut self, mem: &GuestMemoryMmap) -> Option<Chain> {
        let (_, _, _, flags) = Self::desc(mem, self.ring, self.next_avail);
        if !self.is_avail(flags) {
            return None;
        }
        fence(Ordering::Acquire);
        let mut chain = Chain::default();
        loop {
            let (addr, len, id, flags) = Self::desc(mem, self.ring, self.next_avail);
            assert!(self.is_avail(flags), "chain descriptor not available");
            chain.desc_count += 1;
            assert!(chain.desc_count <= self.size, "chain longer than the ring");
            Self::step(&mut self.next_avail, &mut self.avail_wrap, self.size);
            if flags & F_INDIRECT != 0 {
                assert_eq!(len % 16, 0, "indirect table length");
                for i in 0..(len / 16) as u16 {
                    let (a, l, _, f) = Self::desc(mem, addr, i);
                    chain.descs.push((GuestAddress(a), l, f & F_WRITE != 0));
                }
                chain.indirect = true;
                chain.head = id;
                return Some(chain);
            }
            chain
                .descs
                .push((GuestAddress(addr), len, flags & F_WRITE != 0));
            if flags & F_NEXT == 0 {
                chain.head = id;
                return Some(chain);
            }
        }
    }

    /// Writes the used descriptor for `chain` (id and length first, flags last: §2.8.7).
    pub fn add_used(&mut self, mem: &GuestMemoryMmap, chain: &Chain, len: u32) {
        let base = self.ring + 16 * u64::from(self.next_used);
        mem.write_obj(chain.head, GuestAddress(base + 12)).unwrap();
        mem.write_obj(len, GuestAddress(base + 8)).unwrap();
        fence(Ordering::Release);
        let mut flags = if self.used_wrap { F_AVAIL | F_USED } else { 0 };
        if len > 0 {
            flags |= F_WRITE;
        }
        mem.write_obj(flags, GuestAddress(base + 14)).unwrap();
        for _ in 0..chain.desc_count {
            Self::step(&mut self.next_used, &mut self.used_wrap, self.size);
        }
    }

    /// Asks the driver for notifications again: with `EVENT_IDX`, when it makes the descriptor
    /// at the next position the device reads available (`RING_EVENT_FLAGS_DESC`, §2.8.10).
    /// Returns whether a descriptor is available already.
    pub fn enable_notification(&mut self, mem: &GuestMemoryMmap) -> bool {
        let (flags, off_wrap) = if self.event_idx {
            let wrap = u16::from(self.avail_wrap) << 15;
            (RING_EVENT_FLAGS_DESC, self.next_avail | wrap)
        } else {
            (RING_EVENT_FLAGS_ENABLE, 0)
        };
        let field = |offset: u64| GuestAddress(self.device_event + offset);
        mem.write_obj(off_wrap, field(EVENT_OFF_WRAP)).unwrap();
        mem.write_obj(flags, field(EVENT_FLAGS)).unwrap();
        // The store must be visible before the ring is read again (§2.8.10).
        fence(Ordering::SeqCst);
        let (_, _, _, flags) = Self::desc(mem, self.ring, self.next_avail);
        self.is_avail(flags)
    }

    /// Asks the driver not to notify (a hint the driver may ignore).
    pub fn disable_notification(&mut self, mem: &GuestMemoryMmap) {
        let at = GuestAddress(self.device_event + EVENT_FLAGS);
        mem.write_obj(RING_EVENT_FLAGS_DISABLE, at).unwrap();
    }
}
