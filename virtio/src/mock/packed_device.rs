//! The device side of a packed ring (virtio 1.2 §2.8), written from the spec text and sharing
//! no code with the driver (not even its layout module, so that a layout mistake in the driver
//! cannot be repeated here): it takes available chains (direct or indirect), writes used
//! descriptors, and evaluates both event suppression structures.

use alloc::{vec, vec::Vec};
use core::sync::atomic::{Ordering, fence};

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use crate::RingAddresses;

/// `VIRTQ_DESC_F_*` as §2.7.5 and §2.8.1 number them.
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const F_AVAIL: u16 = 1 << 7;
const F_USED: u16 = 1 << 15;
/// `struct pvirtq_desc` (§2.8.13): addr @0, len @8, id @12, flags @14; 16 bytes.
const DESC_LEN: u64 = 8;
const DESC_ID: u64 = 12;
const DESC_FLAGS: u64 = 14;
const DESC_SIZE: u64 = 16;
/// `struct pvirtq_event_suppress` (§2.8.14): `off_wrap` @0, `flags` @2.
const EVENT_OFF_WRAP: u64 = 0;
const EVENT_FLAGS: u64 = 2;
/// `RING_EVENT_FLAGS_ENABLE`, `_DISABLE`, `_DESC` (§2.8.10).
const RING_EVENT_FLAGS_ENABLE: u16 = 0;
const RING_EVENT_FLAGS_DISABLE: u16 = 1;
const RING_EVENT_FLAGS_DESC: u16 = 2;

/// A buffer the device took from the ring.
#[derive(Clone, Debug, Default)]
pub struct PackedChain {
    /// Buffer ID from the chain's last descriptor (§2.8.6).
    pub id: u16,
    /// Ring descriptors the buffer occupied.
    pub desc_count: u16,
    /// The buffer was one INDIRECT descriptor.
    pub indirect: bool,
    /// Its elements, in order: (address, length, device-writable).
    pub descs: Vec<(GuestAddress, u32, bool)>,
}

impl PackedChain {
    /// The device-writable elements: (address, length).
    pub fn writable(&self) -> impl Iterator<Item = (GuestAddress, u32)> + '_ {
        self.descs.iter().filter(|d| d.2).map(|&(a, l, _)| (a, l))
    }

    /// The bytes of all device-readable elements, in order.
    ///
    /// # Panics
    ///
    /// If an element is outside `mem`.
    #[must_use]
    pub fn readable(&self, mem: &GuestMemoryMmap) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &(addr, len, _) in self.descs.iter().filter(|d| !d.2) {
            let mut buf = vec![0; len as usize];
            mem.read_slice(&mut buf, addr).expect("readable descriptor");
            bytes.extend_from_slice(&buf);
        }
        bytes
    }
}

/// Device side of a packed ring.
#[derive(Debug)]
pub struct PackedDevice {
    /// The guest memory the ring and buffers live in.
    pub mem: GuestMemoryMmap,
    ring: u64,
    driver_event: u64,
    device_event: u64,
    size: u16,
    /// §2.8.1: the device's own copies of the ring positions and wrap counters.
    next_avail: u16,
    avail_wrap: bool,
    next_used: u16,
    used_wrap: bool,
    /// Used descriptors written in total, and at the last notification check.
    used_written: u64,
    used_checked: u64,
}

impl PackedDevice {
    /// The device side of the ring of `size` descriptors at `addrs` in `mem`, freshly reset.
    #[must_use]
    pub fn new(mem: &GuestMemoryMmap, addrs: RingAddresses, size: u16) -> Self {
        Self {
            mem: mem.clone(),
            ring: addrs.descriptor_area,
            driver_event: addrs.driver_area,
            device_event: addrs.device_area,
            size,
            next_avail: 0,
            avail_wrap: true,
            next_used: 0,
            used_wrap: true,
            used_written: 0,
            used_checked: 0,
        }
    }

    fn read<T: ByteValued>(&self, addr: u64) -> T {
        self.mem
            .read_obj(GuestAddress(addr))
            .expect("driver gave an unmapped address")
    }

    fn write<T: ByteValued>(&self, addr: u64, value: T) {
        self.mem
            .write_obj(value, GuestAddress(addr))
            .expect("driver gave an unmapped address");
    }

    fn desc(&self, table: u64, i: u16) -> (u64, u32, u16, u16) {
        let base = table + DESC_SIZE * u64::from(i);
        (
            self.read(base),
            self.read(base + DESC_LEN),
            self.read(base + DESC_ID),
            self.read(base + DESC_FLAGS),
        )
    }

    fn step(pos: &mut u16, wrap: &mut bool, size: u16) {
        *pos += 1;
        if *pos == size {
            *pos = 0;
            *wrap = !*wrap;
        }
    }

    /// §2.8.1: a descriptor is available when AVAIL equals the device's avail wrap counter and
    /// USED differs from it.
    fn is_avail(&self, flags: u16) -> bool {
        (flags & F_AVAIL != 0) == self.avail_wrap && (flags & F_USED != 0) != self.avail_wrap
    }

    fn take(chain: &mut PackedChain, addr: u64, len: u32, flags: u16) {
        let write = flags & F_WRITE != 0;
        assert!(
            write || !chain.descs.iter().any(|d| d.2),
            "readable descriptor after a writable one"
        );
        chain.descs.push((GuestAddress(addr), len, write));
    }

    /// Takes the next available buffer, if the driver has made one available.
    ///
    /// # Panics
    ///
    /// If the driver broke a rule of §2.8: a chain descriptor not available, a chain longer
    /// than the ring, INDIRECT with NEXT, a table length not a multiple of 16, a readable
    /// element after a writable one.
    pub fn pop(&mut self) -> Option<PackedChain> {
        let (_, _, _, flags) = self.desc(self.ring, self.next_avail);
        if !self.is_avail(flags) {
            return None;
        }
        fence(Ordering::Acquire);
        let mut chain = PackedChain::default();
        loop {
            let (addr, len, id, flags) = self.desc(self.ring, self.next_avail);
            assert!(self.is_avail(flags), "chain descriptor not available");
            chain.desc_count += 1;
            assert!(chain.desc_count <= self.size, "chain longer than the ring");
            Self::step(&mut self.next_avail, &mut self.avail_wrap, self.size);
            if flags & F_INDIRECT != 0 {
                assert_eq!(flags & F_NEXT, 0, "INDIRECT with NEXT");
                assert_eq!(u64::from(len) % DESC_SIZE, 0, "indirect table length");
                for i in 0..(u64::from(len) / DESC_SIZE) as u16 {
                    let (a, l, _, f) = self.desc(addr, i);
                    Self::take(&mut chain, a, l, f);
                }
                chain.indirect = true;
                chain.id = id;
                return Some(chain);
            }
            Self::take(&mut chain, addr, len, flags);
            if flags & F_NEXT == 0 {
                chain.id = id;
                return Some(chain);
            }
        }
    }

    /// Writes one used descriptor for buffer `id` at next_used, id and length first and flags
    /// last (§2.8.7, §2.8.8), with WRITE when `write`, and skips `skip` ring slots.
    pub fn write_used(&mut self, id: u16, len: u32, write: bool, skip: u16) {
        let base = self.ring + DESC_SIZE * u64::from(self.next_used);
        self.write(base + DESC_ID, id);
        self.write(base + DESC_LEN, len);
        fence(Ordering::Release);
        let mut flags = if self.used_wrap { F_AVAIL | F_USED } else { 0 };
        if write {
            flags |= F_WRITE;
        }
        self.write(base + DESC_FLAGS, flags);
        for _ in 0..skip {
            Self::step(&mut self.next_used, &mut self.used_wrap, self.size);
        }
        self.used_written += u64::from(skip);
    }

    /// Sets the device event suppression structure (driver→device notifications, §2.8.10).
    pub fn set_device_event(&mut self, flags: u16, off: u16, wrap: bool) {
        let off_wrap = off | u16::from(wrap) << 15;
        self.write(self.device_event + EVENT_OFF_WRAP, off_wrap);
        self.write(self.device_event + EVENT_FLAGS, flags);
    }

    /// Asks for a notification when the driver makes the descriptor at the device's next avail
    /// position available.
    pub fn want_kick_at_next_avail(&mut self) {
        self.set_device_event(RING_EVENT_FLAGS_DESC, self.next_avail, self.avail_wrap);
    }

    /// Asks the driver for notifications again: with `event_idx` (`VIRTIO_F_EVENT_IDX`
    /// negotiated) when it makes the descriptor at the next position available
    /// (`RING_EVENT_FLAGS_DESC`), otherwise for every buffer. Returns whether a descriptor is
    /// available already.
    pub fn enable_notification(&mut self, event_idx: bool) -> bool {
        if event_idx {
            self.want_kick_at_next_avail();
        } else {
            self.set_device_event(RING_EVENT_FLAGS_ENABLE, 0, false);
        }
        // The store must be visible before the ring is read again (§2.8.10).
        fence(Ordering::SeqCst);
        let (_, _, _, flags) = self.desc(self.ring, self.next_avail);
        self.is_avail(flags)
    }

    /// Asks the driver not to notify (a hint the driver may ignore).
    pub fn disable_notification(&mut self) {
        self.write(self.device_event + EVENT_FLAGS, RING_EVENT_FLAGS_DISABLE);
    }

    /// Whether the driver wants a used-buffer notification for the used descriptors written
    /// since the last call (§2.8.10), from the driver event suppression structure.
    ///
    /// # Panics
    ///
    /// If the driver wrote the reserved flags value.
    pub fn needs_notification(&mut self) -> bool {
        fence(Ordering::SeqCst);
        let off_wrap: u16 = self.read(self.driver_event + EVENT_OFF_WRAP);
        let flags: u16 = self.read(self.driver_event + EVENT_FLAGS);
        let (old, new) = (self.used_checked, self.used_written);
        self.used_checked = new;
        match flags & 3 {
            RING_EVENT_FLAGS_ENABLE => new != old,
            RING_EVENT_FLAGS_DISABLE => false,
            RING_EVENT_FLAGS_DESC => {
                // Slot positions counted from the start: lap k has wrap counter (k even). The
                // event names a slot in some lap; notify if that slot was passed in [old, new).
                let (off, wrap) = (u64::from(off_wrap & 0x7fff), off_wrap >> 15 != 0);
                let size = u64::from(self.size);
                (old / size..=new / size).any(|lap| {
                    let slot = lap * size + off;
                    (lap % 2 == 0) == wrap && old <= slot && slot < new
                })
            }
            _ => panic!("reserved event flags"),
        }
    }
}
