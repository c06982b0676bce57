//! A packed-ring device written from the virtio 1.2 §2.8 text, sharing no code with the
//! driver: it reads available descriptors, performs the service, writes used descriptors, and
//! evaluates both event suppression structures.

use std::sync::atomic::{Ordering, fence};

use vireo_virtio::RingAddresses;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::service;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const F_AVAIL: u16 = 1 << 7;
const F_USED: u16 = 1 << 15;

/// A buffer the device took from the ring.
#[derive(Clone, Debug)]
pub struct PackedPopped {
    /// Buffer ID from the chain's last descriptor.
    pub id: u16,
    /// Ring descriptors the buffer occupied.
    pub desc_count: u16,
    pub readable: Vec<u8>,
    pub writable: Vec<(GuestAddress, u32)>,
}

impl PackedPopped {
    pub fn writable_capacity(&self) -> usize {
        self.writable.iter().map(|&(_, len)| len as usize).sum()
    }
}

/// Device side of a packed ring.
pub struct PackedDevice {
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

    fn read<T: vm_memory::ByteValued>(&self, addr: u64) -> T {
        self.mem
            .read_obj(GuestAddress(addr))
            .expect("driver gave an unmapped address")
    }

    fn desc(&self, table: u64, i: u16) -> (u64, u32, u16, u16) {
        let base = table + 16 * u64::from(i);
        (
            self.read(base),
            self.read(base + 8),
            self.read(base + 12),
            self.read(base + 14),
        )
    }

    fn step(pos: &mut u16, wrap: &mut bool, size: u16) {
        *pos += 1;
        if *pos == size {
            *pos = 0;
            *wrap = !*wrap;
        }
    }

    fn take(&self, p: &mut PackedPopped, addr: u64, len: u32, flags: u16) {
        if flags & F_WRITE != 0 {
            p.writable.push((GuestAddress(addr), len));
        } else {
            assert!(
                p.writable.is_empty(),
                "readable descriptor after a writable one"
            );
            let mut buf = vec![0; len as usize];
            self.mem
                .read_slice(&mut buf, GuestAddress(addr))
                .expect("readable descriptor");
            p.readable.extend_from_slice(&buf);
        }
    }

    /// Takes the next available buffer, if the driver has made one available (§2.8.1:
    /// AVAIL equals the device's avail wrap counter and USED differs from it).
    pub fn pop(&mut self) -> Option<PackedPopped> {
        let (_, _, _, flags) = self.desc(self.ring, self.next_avail);
        let avail = flags & F_AVAIL != 0;
        let used = flags & F_USED != 0;
        if avail != self.avail_wrap || used == self.avail_wrap {
            return None;
        }
        fence(Ordering::Acquire);
        let mut p = PackedPopped {
            id: 0,
            desc_count: 0,
            readable: vec![],
            writable: vec![],
        };
        loop {
            let (addr, len, id, flags) = self.desc(self.ring, self.next_avail);
            if p.desc_count > 0 {
                let ok = (flags & F_AVAIL != 0) == self.avail_wrap
                    && (flags & F_USED != 0) != self.avail_wrap;
                assert!(ok, "chain descriptor not available");
            }
            p.desc_count += 1;
            assert!(p.desc_count <= self.size, "chain longer than the ring");
            Self::step(&mut self.next_avail, &mut self.avail_wrap, self.size);
            if flags & F_INDIRECT != 0 {
                assert_eq!(flags & F_NEXT, 0, "INDIRECT with NEXT");
                assert_eq!(len % 16, 0, "indirect table length");
                for i in 0..(len / 16) as u16 {
                    let (a, l, _, f) = self.desc(addr, i);
                    self.take(&mut p, a, l, f);
                }
                p.id = id;
                return Some(p);
            }
            self.take(&mut p, addr, len, flags);
            if flags & F_NEXT == 0 {
                p.id = id;
                return Some(p);
            }
        }
    }

    pub fn pop_all(&mut self) -> Vec<PackedPopped> {
        std::iter::from_fn(|| self.pop()).collect()
    }

    /// Writes the service's bytes into `p` and returns the length written.
    fn serve(&self, p: &PackedPopped) -> u32 {
        let data = service(&p.readable, p.writable_capacity());
        let mut rest = &data[..];
        for &(addr, len) in &p.writable {
            let n = rest.len().min(len as usize);
            self.mem
                .write_slice(&rest[..n], addr)
                .expect("writable descriptor");
            rest = &rest[n..];
        }
        data.len() as u32
    }

    /// Writes one used descriptor for buffer `id` at next_used, flags last (§2.8.7, §2.8.8), and
    /// skips `skip` ring slots.
    pub fn write_used(&mut self, id: u16, len: u32, write: bool, skip: u16) {
        let base = self.ring + 16 * u64::from(self.next_used);
        self.mem.write_obj(id, GuestAddress(base + 12)).unwrap();
        self.mem.write_obj(len, GuestAddress(base + 8)).unwrap();
        fence(Ordering::Release);
        let mut flags = if self.used_wrap { F_AVAIL | F_USED } else { 0 };
        if write {
            flags |= F_WRITE;
        }
        self.mem.write_obj(flags, GuestAddress(base + 14)).unwrap();
        for _ in 0..skip {
            Self::step(&mut self.next_used, &mut self.used_wrap, self.size);
        }
        self.used_written += u64::from(skip);
    }

    /// Performs the service for `p` and marks it used.
    pub fn complete(&mut self, p: &PackedPopped) {
        let len = self.serve(p);
        self.write_used(p.id, len, !p.writable.is_empty(), p.desc_count);
    }

    /// `VIRTIO_F_IN_ORDER`: serves a run of buffers and writes one used descriptor naming the last
    /// (§2.8.22).
    pub fn complete_in_order_batch(&mut self, batch: &[PackedPopped]) {
        let last = batch.last().expect("non-empty batch");
        let mut len = 0;
        for p in batch {
            len = self.serve(p);
        }
        let skip = batch.iter().map(|p| p.desc_count).sum();
        self.write_used(last.id, len, !last.writable.is_empty(), skip);
    }

    /// Sets the device event suppression structure (driver→device notifications, §2.8.10).
    pub fn set_device_event(&mut self, flags: u16, off: u16, wrap: bool) {
        let off_wrap = off | u16::from(wrap) << 15;
        self.mem
            .write_obj(off_wrap, GuestAddress(self.device_event))
            .unwrap();
        self.mem
            .write_obj(flags, GuestAddress(self.device_event + 2))
            .unwrap();
    }

    /// Asks for a notification when the driver makes the descriptor at the device's next avail
    /// position available.
    pub fn want_kick_at_next_avail(&mut self) {
        self.set_device_event(2, self.next_avail, self.avail_wrap);
    }

    /// Whether the driver wants a used-buffer notification for the used descriptors written
    /// since the last call (§2.8.10), from the driver event suppression structure.
    pub fn needs_notification(&mut self) -> bool {
        fence(Ordering::SeqCst);
        let off_wrap: u16 = self.read(self.driver_event);
        let flags: u16 = self.read(self.driver_event + 2);
        let (old, new) = (self.used_checked, self.used_written);
        self.used_checked = new;
        match flags & 3 {
            0 => new != old,
            1 => false,
            2 => {
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
