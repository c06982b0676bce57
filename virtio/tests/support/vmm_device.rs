//! rust-vmm's `virtio-queue` as the device side of a split ring.

use vireo_virtio::RingAddresses;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{GuestDma, layout::SimDevice, service};

/// A chain the device has taken from the available ring.
#[derive(Clone, Debug)]
pub struct Popped {
    pub head: u16,
    pub readable: Vec<u8>,
    pub writable: Vec<(GuestAddress, u32)>,
}

impl Popped {
    pub fn writable_capacity(&self) -> usize {
        self.writable.iter().map(|&(_, len)| len as usize).sum()
    }
}

/// A split-ring device backed by `virtio_queue::Queue`.
pub struct VmmDevice {
    pub queue: Queue,
    pub mem: GuestMemoryMmap,
}

impl VmmDevice {
    pub fn new(dma: &GuestDma, addrs: RingAddresses, size: u16, event_idx: bool) -> Self {
        let mut queue = Queue::new(size).expect("queue");
        queue.set_size(size);
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let (lo, hi) = split(addrs.descriptor_area);
        queue.set_desc_table_address(lo, hi);
        let (lo, hi) = split(addrs.driver_area);
        queue.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(addrs.device_area);
        queue.set_used_ring_address(lo, hi);
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        assert!(
            queue.is_valid(dma.mem()),
            "ring addresses not valid guest memory"
        );
        Self {
            queue,
            mem: dma.mem().clone(),
        }
    }

    fn serve(&mut self, p: &Popped) -> u32 {
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
}

impl SimDevice for VmmDevice {
    type Popped = Popped;

    /// Takes every available chain, reading its device-readable bytes.
    fn pop_all(&mut self) -> Vec<Popped> {
        let mut popped = Vec::new();
        while let Some(chain) = self.queue.pop_descriptor_chain(&self.mem) {
            let head = chain.head_index();
            let mut p = Popped {
                head,
                readable: Vec::new(),
                writable: Vec::new(),
            };
            for desc in chain {
                if desc.is_write_only() {
                    p.writable.push((desc.addr(), desc.len()));
                } else {
                    let mut buf = vec![0; desc.len() as usize];
                    self.mem
                        .read_slice(&mut buf, desc.addr())
                        .expect("readable descriptor");
                    p.readable.extend_from_slice(&buf);
                }
            }
            popped.push(p);
        }
        popped
    }

    /// Performs the service for `p` and puts it in the used ring.
    fn complete(&mut self, p: &Popped) {
        let len = self.serve(p);
        self.queue
            .add_used(&self.mem, p.head, len)
            .expect("add_used");
    }

    /// `VIRTIO_F_IN_ORDER`: serves a run of buffers and puts one used element naming the last
    /// (virtio 1.2 §2.7.9).
    fn complete_in_order_batch(&mut self, batch: &[Popped]) {
        let mut len = 0;
        for p in batch {
            len = self.serve(p);
        }
        let last = batch.last().expect("non-empty batch");
        self.queue
            .add_used(&self.mem, last.head, len)
            .expect("add_used");
    }

    /// Whether the device should notify the driver now (consults used_event / flags).
    fn needs_notification(&mut self) -> bool {
        self.queue
            .needs_notification(&self.mem)
            .expect("needs_notification")
    }

    fn enable_kicks(&mut self, _event_idx: bool) -> bool {
        self.queue.enable_notification(&self.mem).unwrap()
    }

    fn disable_kicks(&mut self) {
        self.queue.disable_notification(&self.mem).unwrap();
    }

    fn readable(p: &Popped) -> &[u8] {
        &p.readable
    }

    fn writable_count(p: &Popped) -> usize {
        p.writable.len()
    }
}
