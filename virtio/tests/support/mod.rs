//! Host test support: a counting notifier, the device-side "service" both simulated devices
//! perform, and rust-vmm's `virtio-queue` as a split-ring device. The DMA allocator and the
//! packed-ring device are the crate's own test doubles (`vireo_virtio::mock`, feature
//! `test-utils`).

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod layout;
pub mod packed_device;
pub mod scenarios;
pub mod vmm_device;

use std::{cell::RefCell, rc::Rc};

use vireo_virtio::{AvailBufferToken, Notifier};

pub use layout::SimDevice;
pub use vireo_virtio::mock::GuestDma;

/// One notification: queue index and notification data.
pub type Notification = (u16, Option<u32>);

/// Records every notification.
#[derive(Clone, Debug, Default)]
pub struct CountingNotifier(pub Rc<RefCell<Vec<Notification>>>);

impl CountingNotifier {
    pub fn count(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn last(&self) -> Option<Notification> {
        self.0.borrow().last().copied()
    }
}

impl Notifier for CountingNotifier {
    fn notify(&self, queue_index: u16, notification_data: Option<u32>) {
        self.0.borrow_mut().push((queue_index, notification_data));
    }
}

/// What both simulated devices do with a buffer: the device-readable bytes, each inverted,
/// written into the device-writable part as far as it fits. Returns the bytes to write.
pub fn service(readable: &[u8], writable_capacity: usize) -> Vec<u8> {
    readable
        .iter()
        .take(writable_capacity)
        .map(|b| !b)
        .collect()
}

/// A token of `readable` and `writable` element sizes; readable bytes derive from `seed`.
pub fn make_token(
    dma: &GuestDma,
    readable: &[usize],
    writable: &[usize],
    seed: u64,
) -> AvailBufferToken<GuestDma> {
    let mut n = seed;
    let mut next = move || {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (n >> 33) as u8
    };
    let readable = readable
        .iter()
        .map(|&len| dma.buffer(&(0..len).map(|_| next()).collect::<Vec<_>>()))
        .collect();
    let writable = writable
        .iter()
        .map(|&len| dma.buffer(&vec![0; len]))
        .collect();
    AvailBufferToken::new(readable, writable).with_tag(seed)
}

/// The bytes the service should have written for `token`.
pub fn expected_written(
    token_readable: &[vireo_virtio::DmaBuffer<GuestDma>],
    cap: usize,
) -> Vec<u8> {
    let all: Vec<u8> = token_readable
        .iter()
        .flat_map(|b| b.iter().copied())
        .collect();
    service(&all, cap)
}

/// Checks a used token against the service: written length and bytes.
pub fn check_used(used: &vireo_virtio::UsedBufferToken<GuestDma>) {
    let cap: usize = used.writable().iter().map(|b| b.len()).sum();
    let expected = expected_written(used.readable(), cap);
    assert_eq!(
        used.written_len() as usize,
        expected.len(),
        "written length"
    );
    let got: Vec<u8> = used.written().flat_map(|s| s.iter().copied()).collect();
    assert_eq!(got, expected, "written bytes");
}
