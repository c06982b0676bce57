//! Memory barriers between the driver's and the device's views of ring memory.
//!
//! These follow Linux's `virtio_wmb`/`virtio_rmb`/`virtio_mb`: on x86_64 (TSO) loads are not
//! reordered with loads and stores are not reordered with stores, and write-back memory is
//! coherent with DMA, so only the compiler must be stopped from reordering; a store followed by
//! a load, however, may be reordered by the CPU and needs a real fence.

#[cfg(target_arch = "x86_64")]
use core::sync::atomic::AtomicU8;
#[cfg(not(target_arch = "x86_64"))]
use core::sync::atomic::fence;
use core::sync::atomic::{Ordering, compiler_fence};

/// Orders earlier stores to ring memory before later ones (e.g. descriptors before the index or
/// flags that publish them, virtio 1.2 §2.7.13.3.1 and §2.8.21.3).
#[inline(always)]
pub(crate) fn write_barrier() {
    #[cfg(target_arch = "x86_64")]
    compiler_fence(Ordering::Release);
    #[cfg(not(target_arch = "x86_64"))]
    fence(Ordering::Release);
}

/// Orders an earlier load of an index or flag before later loads of the data it guards
/// (e.g. `used.idx` before the used element, virtio 1.2 §2.7.14 and §2.8.11).
#[inline(always)]
pub(crate) fn read_barrier() {
    #[cfg(target_arch = "x86_64")]
    compiler_fence(Ordering::Acquire);
    #[cfg(not(target_arch = "x86_64"))]
    fence(Ordering::Acquire);
}

/// Orders earlier stores before later loads. Needed between publishing buffers and reading the
/// device's notification-suppression state (virtio 1.2 §2.7.13.4, §2.8.21.3.1): without it the
/// driver may read a stale "don't notify me" while the device reads a stale index, and both
/// sides wait forever (the polling-mode deadlock Hermit hit).
#[inline(always)]
pub(crate) fn full_barrier() {
    // On x86_64 a locked read-modify-write is a full barrier and cheaper than `mfence`; Linux's
    // `virt_mb` uses `lock; addl $0, -4(%rsp)` for the same reason. The target is a stack local
    // (no cache line shared between CPUs), kept alive by `black_box` so it is not optimised out.
    #[cfg(target_arch = "x86_64")]
    {
        let local = AtomicU8::new(0);
        core::hint::black_box(&local).fetch_add(0, Ordering::SeqCst);
        compiler_fence(Ordering::SeqCst);
    }
    #[cfg(not(target_arch = "x86_64"))]
    fence(Ordering::SeqCst);
}
