//! Property tests: long random interleavings of dispatch, batch dispatch, out-of-order
//! completion and polling, direct and indirect, on both layouts. Every token must come back
//! exactly once with its bytes intact; split indices wrap past 2^16 and packed wrap counters flip
//! many times.

mod support;

use std::collections::{HashSet, VecDeque};

use proptest::{
    prelude::*,
    test_runner::{Config, RngSeed},
};
use support::{
    CountingNotifier, GuestDma, SimDevice as _, check_used, make_token,
    packed_device::{PackedDevice, PackedPopped},
    vmm_device::{Popped, VmmDevice},
};
use vireo_virtio::{
    AvailBufferToken, BufferType, PackedVq, QueueError, SplitVq, Virtq, negotiate, virtio_spec::F,
};

/// Tokens dispatched per case: past 2^16 so the split ring's 16-bit indices wrap.
const MIN_DISPATCHED: u64 = if cfg!(miri) { 300 } else { 70_000 };

enum Device {
    Split(VmmDevice, Vec<Popped>),
    Packed(PackedDevice, Vec<PackedPopped>),
}

impl Device {
    fn pop_all(&mut self) {
        match self {
            Self::Split(d, held) => held.extend(d.pop_all()),
            Self::Packed(d, held) => held.extend(d.pop_all()),
        }
    }

    fn held(&self) -> usize {
        match self {
            Self::Split(_, held) => held.len(),
            Self::Packed(_, held) => held.len(),
        }
    }

    /// `VIRTIO_F_IN_ORDER`: completes the `n` oldest held buffers with one used entry.
    fn complete_in_order(&mut self, n: usize) {
        match self {
            Self::Split(d, held) => {
                let batch: Vec<_> = held.drain(..n).collect();
                d.complete_in_order_batch(&batch);
            }
            Self::Packed(d, held) => {
                let batch: Vec<_> = held.drain(..n).collect();
                d.complete_in_order_batch(&batch);
            }
        }
    }

    /// Completes the held buffer at `i` (out of order).
    fn complete(&mut self, i: usize) {
        match self {
            Self::Split(d, held) => {
                let p = held.swap_remove(i);
                d.complete(&p);
            }
            Self::Packed(d, held) => {
                let p = held.swap_remove(i);
                d.complete(&p);
            }
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn run(packed: bool, size: u16, indirect: bool, event_idx: bool, in_order: bool, seed: u64) {
    let dma = GuestDma::new(16 << 20);
    let mut wanted = F::empty();
    if packed {
        wanted |= F::RING_PACKED;
    }
    if indirect {
        wanted |= F::INDIRECT_DESC;
    }
    if event_idx {
        wanted |= F::EVENT_IDX;
    }
    if in_order {
        wanted |= F::IN_ORDER;
    }
    let negotiated = negotiate(F::VERSION_1 | wanted, wanted).unwrap();
    let notifier = CountingNotifier::default();
    let (mut vq, mut dev): (Box<dyn Virtq<GuestDma>>, Device) = if packed {
        let vq = PackedVq::new(0, size, negotiated, dma.clone(), notifier).unwrap();
        let dev = PackedDevice::new(dma.mem(), vq.ring_addresses(), size);
        (Box::new(vq), Device::Packed(dev, Vec::new()))
    } else {
        let vq = SplitVq::new(0, size, negotiated, dma.clone(), notifier).unwrap();
        let dev = VmmDevice::new(&dma, vq.ring_addresses(), size, event_idx);
        (Box::new(vq), Device::Split(dev, Vec::new()))
    };
    let baseline = dma.live();
    let mut rng = Rng(seed | 1);
    let mut in_flight: HashSet<u64> = HashSet::new();
    let (mut next_tag, mut dispatched, mut ops) = (0u64, 0u64, 0u64);
    let max_elems = u64::from(size.min(4));
    let new_token = |rng: &mut Rng, tag: u64| {
        let n = 1 + rng.below(max_elems) as usize;
        let readable = rng.below(n as u64 + 1) as usize;
        let lens: Vec<usize> = (0..n).map(|_| 1 + rng.below(64) as usize).collect();
        make_token(&dma, &lens[..readable], &lens[readable..], tag)
    };
    // Dispatch order, which IN_ORDER completions must follow.
    let mut order: VecDeque<u64> = VecDeque::new();
    let take_back = |used: vireo_virtio::UsedBufferToken<GuestDma>,
                     set: &mut HashSet<u64>,
                     order: &mut VecDeque<u64>| {
        assert!(
            set.remove(&used.tag()),
            "token {} came back twice or was never sent",
            used.tag()
        );
        if in_order {
            assert_eq!(order.pop_front(), Some(used.tag()), "IN_ORDER violated");
        }
        // Earlier buffers of an IN_ORDER batch come back with length 0 (no length given).
        if !(in_order && used.written_len() == 0) {
            check_used(&used);
        }
    };
    while dispatched < MIN_DISPATCHED || ops < MIN_DISPATCHED {
        ops += 1;
        let bt = if indirect && rng.below(3) == 0 {
            BufferType::Indirect
        } else {
            BufferType::Direct
        };
        match rng.below(10) {
            0..=2 => {
                let token = new_token(&mut rng, next_tag);
                match vq.dispatch(token, bt) {
                    Ok(_) => {
                        in_flight.insert(next_tag);
                        order.push_back(next_tag);
                        dispatched += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.error, QueueError::QueueFull);
                        assert_eq!(e.token.tag(), next_tag);
                    }
                }
                next_tag += 1;
            }
            3 => {
                let n = 1 + rng.below(8);
                let mut batch: VecDeque<AvailBufferToken<GuestDma>> =
                    (0..n).map(|i| new_token(&mut rng, next_tag + i)).collect();
                let result = vq.dispatch_batch(&mut batch, bt);
                let sent = n - batch.len() as u64;
                for tag in next_tag..next_tag + sent {
                    in_flight.insert(tag);
                    order.push_back(tag);
                }
                if let Err(e) = result {
                    assert_eq!(e, QueueError::QueueFull);
                    assert_eq!(batch[0].tag(), next_tag + sent);
                }
                dispatched += sent;
                next_tag += n;
            }
            4 => dev.pop_all(),
            5..=7 => {
                if dev.held() > 0 {
                    let i = rng.below(dev.held() as u64) as usize;
                    if in_order {
                        dev.complete_in_order(i + 1);
                    } else {
                        dev.complete(i);
                    }
                }
            }
            _ => {
                while let Some(used) = vq.poll().unwrap() {
                    take_back(used, &mut in_flight, &mut order);
                    if rng.below(4) == 0 {
                        break;
                    }
                }
            }
        }
        assert_eq!(vq.in_flight(), in_flight.len());
    }
    // Drain: the device completes everything, the driver takes everything back.
    loop {
        dev.pop_all();
        if in_order && dev.held() > 0 {
            dev.complete_in_order(dev.held());
        }
        while dev.held() > 0 {
            dev.complete(0);
        }
        while let Some(used) = vq.poll().unwrap() {
            take_back(used, &mut in_flight, &mut order);
        }
        if in_flight.is_empty() {
            break;
        }
    }
    assert_eq!(vq.free_descriptors(), size);
    drop(vq);
    assert!(dma.live() <= baseline, "indirect tables or rings leaked");
}

fn config() -> Config {
    Config {
        cases: if cfg!(miri) { 1 } else { 8 },
        rng_seed: RngSeed::Fixed(0x005e_ed0f_0123),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn split_random_interleavings(
        log2 in 0u32..=10,
        indirect in any::<bool>(),
        event_idx in any::<bool>(),
        in_order in any::<bool>(),
        seed in any::<u64>(),
    ) {
        run(false, 1 << log2, indirect, event_idx, in_order, seed);
    }

    #[test]
    fn packed_random_interleavings(
        size in prop_oneof![Just(3u16), Just(100u16), 1u16..=1024],
        indirect in any::<bool>(),
        event_idx in any::<bool>(),
        in_order in any::<bool>(),
        seed in any::<u64>(),
    ) {
        run(true, size, indirect, event_idx, in_order, seed);
    }
}

/// The edge sizes, always run whatever the random draw: the smallest and largest split rings,
/// and packed rings of sizes that are not powers of two.
#[test]
fn edge_sizes() {
    for (packed, size) in [
        (false, 1),
        (false, 1024),
        (true, 1),
        (true, 3),
        (true, 100),
        (true, 1024),
    ] {
        run(
            packed,
            size,
            true,
            size % 2 == 0,
            false,
            0xfeed ^ u64::from(size),
        );
    }
    for (packed, size) in [(false, 8), (true, 100)] {
        run(packed, size, true, true, true, 0xbeef ^ u64::from(size));
    }
}
