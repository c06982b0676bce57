//! The packed-ring device of `vireo_virtio::mock` (written from the virtio 1.2 §2.8 text,
//! sharing no code with the driver), performing the tests' service on the buffers it takes.

use std::ops::{Deref, DerefMut};

use vireo_virtio::{RingAddresses, mock};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{layout::SimDevice, service};

/// A buffer the device took from the ring, its readable bytes already read.
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

/// Device side of a packed ring: `mock::PackedDevice` plus the service.
pub struct PackedDevice(mock::PackedDevice);

impl Deref for PackedDevice {
    type Target = mock::PackedDevice;

    fn deref(&self) -> &mock::PackedDevice {
        &self.0
    }
}

impl DerefMut for PackedDevice {
    fn deref_mut(&mut self) -> &mut mock::PackedDevice {
        &mut self.0
    }
}

impl PackedDevice {
    pub fn new(mem: &GuestMemoryMmap, addrs: RingAddresses, size: u16) -> Self {
        Self(mock::PackedDevice::new(mem, addrs, size))
    }

    /// Takes the next available buffer, if the driver has made one available.
    pub fn pop(&mut self) -> Option<PackedPopped> {
        let chain = self.0.pop()?;
        Some(PackedPopped {
            id: chain.id,
            desc_count: chain.desc_count,
            readable: chain.readable(&self.0.mem),
            writable: chain.writable().collect(),
        })
    }

    /// Writes the service's bytes into `p` and returns the length written.
    fn serve(&self, p: &PackedPopped) -> u32 {
        let data = service(&p.readable, p.writable_capacity());
        let mut rest = &data[..];
        for &(addr, len) in &p.writable {
            let n = rest.len().min(len as usize);
            self.0
                .mem
                .write_slice(&rest[..n], addr)
                .expect("writable descriptor");
            rest = &rest[n..];
        }
        data.len() as u32
    }
}

impl SimDevice for PackedDevice {
    type Popped = PackedPopped;

    /// Takes every available buffer.
    fn pop_all(&mut self) -> Vec<PackedPopped> {
        std::iter::from_fn(|| self.pop()).collect()
    }

    /// Performs the service for `p` and marks it used.
    fn complete(&mut self, p: &PackedPopped) {
        let len = self.serve(p);
        self.0
            .write_used(p.id, len, !p.writable.is_empty(), p.desc_count);
    }

    /// `VIRTIO_F_IN_ORDER`: serves a run of buffers and writes one used descriptor naming the last
    /// (§2.8.22).
    fn complete_in_order_batch(&mut self, batch: &[PackedPopped]) {
        let last = batch.last().expect("non-empty batch");
        let mut len = 0;
        for p in batch {
            len = self.serve(p);
        }
        let skip = batch.iter().map(|p| p.desc_count).sum();
        self.0
            .write_used(last.id, len, !last.writable.is_empty(), skip);
    }

    fn needs_notification(&mut self) -> bool {
        self.0.needs_notification()
    }

    fn enable_kicks(&mut self, event_idx: bool) -> bool {
        self.0.enable_notification(event_idx)
    }

    fn disable_kicks(&mut self) {
        self.0.disable_notification();
    }

    fn readable(p: &PackedPopped) -> &[u8] {
        &p.readable
    }

    fn writable_count(p: &PackedPopped) -> usize {
        p.writable.len()
    }
}
