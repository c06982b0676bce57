//! Round-trip cost of the virtqueue core: dispatch → a minimal simulated device marks the
//! buffer used → poll, for split and packed rings, direct and indirect, single tokens and
//! batches of 32, one- and four-element tokens. Prints the median of several runs in ns per
//! token, and the heap and DMA allocations counted on the direct path after warm-up.
//!
//! The device here does the least a device must: it reads the ring to find each buffer's id and
//! writes the used entry; it does not touch buffer bytes. Identity-mapped DMA memory lets it
//! reach the rings through the physical addresses the driver programmed.
//!
//! Run with `cargo bench -p vireo-virtio --bench virtq`.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::VecDeque,
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering, fence},
    time::Instant,
};

use vireo_virtio::{
    AvailBufferToken, BufferType, DmaBuffer, Notifier, PackedVq, RingAddresses, SplitVq, Virtq,
    mock::HostDma, negotiate, virtio_spec::F,
};

static HEAP_ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Counts every heap allocation of the process.
struct CountingAlloc;

// SAFETY: forwards to `System` unchanged, only counting calls.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[derive(Debug)]
struct NoopNotifier;

impl Notifier for NoopNotifier {
    fn notify(&self, queue_index: u16, notification_data: Option<u32>) {
        black_box((queue_index, notification_data));
    }
}

fn rd<T: Copy>(addr: u64) -> T {
    // SAFETY: `addr` is inside a ring the queue allocated from `HostDma` (identity-mapped) and
    // keeps alive for the whole benchmark; the offsets follow virtio 1.2 §2.7 / §2.8.
    unsafe { (addr as *const T).read_volatile() }
}

fn wr<T: Copy>(addr: u64, value: T) {
    // SAFETY: as in `rd`.
    unsafe { (addr as *mut T).write_volatile(value) }
}

/// The device side: uses every available buffer.
trait Device {
    fn serve(&mut self);
}

struct SplitDevice {
    ring: RingAddresses,
    size: u16,
    last_avail: u16,
    used_idx: u16,
}

impl Device for SplitDevice {
    fn serve(&mut self) {
        let avail_idx: u16 = rd(self.ring.driver_area + 2);
        fence(Ordering::Acquire);
        while self.last_avail != avail_idx {
            // Split queue sizes are powers of two (§2.7): a mask, not a division, as a real
            // device would do it (a 16-bit `div` costs more than the driver's whole used path).
            let mask = self.size - 1;
            let slot = u64::from(self.last_avail & mask);
            let head: u16 = rd(self.ring.driver_area + 4 + 2 * slot);
            let used = self.ring.device_area + 4 + 8 * u64::from(self.used_idx & mask);
            wr(used, u32::from(head));
            wr(used + 4, 0u32);
            self.last_avail = self.last_avail.wrapping_add(1);
            self.used_idx = self.used_idx.wrapping_add(1);
        }
        fence(Ordering::Release);
        wr(self.ring.device_area + 2, self.used_idx);
    }
}

struct PackedDevice {
    ring: u64,
    size: u16,
    next_avail: u16,
    avail_wrap: bool,
    next_used: u16,
    used_wrap: bool,
}

impl PackedDevice {
    fn flags(&self, pos: u16) -> u16 {
        rd(self.ring + 16 * u64::from(pos) + 14)
    }

    fn step(pos: &mut u16, wrap: &mut bool, size: u16) {
        *pos += 1;
        if *pos == size {
            *pos = 0;
            *wrap = !*wrap;
        }
    }
}

impl Device for PackedDevice {
    fn serve(&mut self) {
        loop {
            let flags = self.flags(self.next_avail);
            let available = (flags & 1 << 7 != 0) == self.avail_wrap
                && (flags & 1 << 15 != 0) != self.avail_wrap;
            if !available {
                return;
            }
            fence(Ordering::Acquire);
            let mut count = 1;
            let mut flags = flags;
            while flags & 1 != 0 {
                Self::step(&mut self.next_avail, &mut self.avail_wrap, self.size);
                flags = self.flags(self.next_avail);
                count += 1;
            }
            let id: u16 = rd(self.ring + 16 * u64::from(self.next_avail) + 12);
            Self::step(&mut self.next_avail, &mut self.avail_wrap, self.size);
            let used = self.ring + 16 * u64::from(self.next_used);
            wr(used + 12, id);
            wr(used + 8, 0u32);
            fence(Ordering::Release);
            wr(
                used + 14,
                if self.used_wrap {
                    1u16 << 7 | 1 << 15
                } else {
                    0
                },
            );
            for _ in 0..count {
                Self::step(&mut self.next_used, &mut self.used_wrap, self.size);
            }
        }
    }
}

const SIZE: u16 = 256;

fn token(elements: usize) -> AvailBufferToken<HostDma> {
    let buffer = |len| DmaBuffer::new_zeroed_in(len, HostDma).unwrap();
    let readable = (0..elements.div_ceil(2)).map(|_| buffer(64)).collect();
    let writable = (0..elements / 2).map(|_| buffer(64)).collect();
    AvailBufferToken::new(readable, writable)
}

/// Median and minimum ns per token, heap and DMA allocations per token during the timed runs.
fn measure<V: Virtq<HostDma>, D: Device>(
    vq: &mut V,
    dev: &mut D,
    bt: BufferType,
    batch: usize,
    elements: usize,
) -> (f64, f64, f64, f64) {
    const TOKENS: usize = 200_000;
    const RUNS: usize = 7;
    let mut free: Vec<_> = (0..batch).map(|_| token(elements)).collect();
    let mut queue = VecDeque::with_capacity(batch);
    let mut round = |vq: &mut V, dev: &mut D, free: &mut Vec<AvailBufferToken<HostDma>>| {
        if batch == 1 {
            vq.dispatch(free.pop().unwrap(), bt).unwrap();
        } else {
            queue.extend(free.drain(..));
            vq.dispatch_batch(&mut queue, bt).unwrap();
        }
        dev.serve();
        while let Some(used) = vq.poll().unwrap() {
            free.push(used.into_avail());
        }
    };
    for _ in 0..1000 {
        round(vq, dev, &mut free);
    }
    let (heap0, dma0) = (HEAP_ALLOCS.load(Ordering::Relaxed), HostDma::allocations());
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        for _ in 0..TOKENS / batch {
            round(vq, dev, &mut free);
        }
        samples.push(start.elapsed().as_nanos() as f64 / (TOKENS / batch * batch) as f64);
    }
    let tokens = (RUNS * (TOKENS / batch) * batch) as f64;
    let heap = (HEAP_ALLOCS.load(Ordering::Relaxed) - heap0) as f64 / tokens;
    let dma = (HostDma::allocations() - dma0) as f64 / tokens;
    samples.sort_by(f64::total_cmp);
    (samples[RUNS / 2], samples[0], heap, dma)
}

fn main() {
    // `cargo bench -p vireo-virtio --bench virtq -- split` runs only the rows whose label
    // ("split Direct 1x1", …) contains every argument given.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    println!("virtq round trip (dispatch -> simulated device uses -> poll), queue size {SIZE}");
    println!("median of 7 runs of 200000 tokens; allocations counted per token after warm-up\n");
    println!(
        "| ring   | type     | batch | elements | median ns/token | min ns/token | heap allocs/token | DMA allocs/token |"
    );
    println!(
        "|--------|----------|-------|----------|-----------------|--------------|-------------------|------------------|"
    );
    for packed in [false, true] {
        for bt in [BufferType::Direct, BufferType::Indirect] {
            for batch in [1, 32] {
                for elements in [1, 4] {
                    let label = format!(
                        "{} {bt:?} {batch}x{elements}",
                        if packed { "packed" } else { "split" }
                    );
                    if !filters.iter().all(|f| label.contains(f.as_str())) {
                        continue;
                    }
                    let (ns, min, heap, dma) = if packed {
                        let features = F::VERSION_1 | F::RING_PACKED | F::INDIRECT_DESC;
                        let features = negotiate(features, features).unwrap();
                        let mut vq =
                            PackedVq::new(0, SIZE, features, HostDma, NoopNotifier).unwrap();
                        let mut dev = PackedDevice {
                            ring: vq.ring_addresses().descriptor_area,
                            size: SIZE,
                            next_avail: 0,
                            avail_wrap: true,
                            next_used: 0,
                            used_wrap: true,
                        };
                        measure(&mut vq, &mut dev, bt, batch, elements)
                    } else {
                        let features = F::VERSION_1 | F::INDIRECT_DESC;
                        let features = negotiate(features, features).unwrap();
                        let mut vq =
                            SplitVq::new(0, SIZE, features, HostDma, NoopNotifier).unwrap();
                        let mut dev = SplitDevice {
                            ring: vq.ring_addresses(),
                            size: SIZE,
                            last_avail: 0,
                            used_idx: 0,
                        };
                        measure(&mut vq, &mut dev, bt, batch, elements)
                    };
                    println!(
                        "| {:<6} | {:<8} | {batch:>5} | {elements:>8} | {ns:>15.1} | {min:>12.1} | {heap:>17.3} | {dma:>16.3} |",
                        if packed { "packed" } else { "split" },
                        format!("{bt:?}"),
                    );
                }
            }
        }
    }
}
