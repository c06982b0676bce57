//! A randomised hostile device: honest service interleaved with corruption of used entries,
//! `used.idx`, descriptor flags, ids and lengths, for over 10^6 operations per layout. The
//! driver must never panic, and every token must come back exactly once (from `poll` or from
//! `reset` after an error).
//!
//! `VIREO_HOSTILE_OPS` (operations per layout) and `VIREO_HOSTILE_SEED` (a seed for both layouts)
//! override the defaults for long opt-in runs (`cargo xtask soak`); each run prints its figures.

mod support;

use std::collections::HashSet;

use support::{
    CountingNotifier, GuestDma, SimDevice as _, make_token,
    packed_device::{PackedDevice, PackedPopped},
    vmm_device::{Popped, VmmDevice},
};
use vireo_virtio::{
    AvailBufferToken, BufferType, PackedVq, SplitVq, Virtq, negotiate, virtio_spec::F,
};
use vm_memory::{Bytes, GuestAddress};

const OPERATIONS: u64 = if cfg!(miri) { 2_000 } else { 1_000_000 };

/// A `u64` from environment variable `name` (decimal, or hex with `0x`), if set.
fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value}: not a number")))
}
const SIZE: u16 = 8;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

enum Device {
    Split(VmmDevice, Vec<Popped>),
    Packed(PackedDevice, Vec<PackedPopped>),
}

fn new_device(dma: &GuestDma, vq: &dyn Virtq<GuestDma>, packed: bool) -> Device {
    if packed {
        Device::Packed(
            PackedDevice::new(dma.mem(), vq.ring_addresses(), SIZE),
            vec![],
        )
    } else {
        Device::Split(
            VmmDevice::new(dma, vq.ring_addresses(), SIZE, false),
            vec![],
        )
    }
}

/// Overwrites a random device-writable field with a random (sometimes plausible) value.
fn corrupt(dma: &GuestDma, vq: &dyn Virtq<GuestDma>, packed: bool, rng: &mut Rng) {
    let mem = dma.mem();
    let addrs = vq.ring_addresses();
    let slot = rng.below(u64::from(SIZE));
    let id = rng.below(u64::from(SIZE) + 3);
    let len = if rng.below(2) == 0 {
        rng.below(300) as u32
    } else {
        u32::MAX
    };
    if packed {
        let base = addrs.descriptor_area + 16 * slot;
        match rng.below(3) {
            0 => mem.write_obj(id as u16, GuestAddress(base + 12)).unwrap(),
            1 => mem.write_obj(len, GuestAddress(base + 8)).unwrap(),
            _ => {
                let flags = [
                    0u16,
                    1 << 7,
                    1 << 15,
                    (1 << 7) | (1 << 15),
                    2 | (1 << 7) | (1 << 15),
                ];
                let flags = flags[rng.below(5) as usize];
                mem.write_obj(flags, GuestAddress(base + 14)).unwrap();
            }
        }
    } else {
        let base = addrs.device_area;
        match rng.below(3) {
            0 => mem
                .write_obj(id as u32, GuestAddress(base + 4 + 8 * slot))
                .unwrap(),
            1 => mem
                .write_obj(len, GuestAddress(base + 8 + 8 * slot))
                .unwrap(),
            _ => {
                let idx: u16 = mem.read_obj(GuestAddress(base + 2)).unwrap();
                let idx = idx.wrapping_add(rng.below(20) as u16).wrapping_sub(10);
                mem.write_obj(idx, GuestAddress(base + 2)).unwrap();
            }
        }
    }
}

fn run(packed: bool, default_seed: u64) {
    let operations = env_u64("VIREO_HOSTILE_OPS").unwrap_or(OPERATIONS);
    let seed = env_u64("VIREO_HOSTILE_SEED").unwrap_or(default_seed);
    assert_ne!(
        seed, 0,
        "VIREO_HOSTILE_SEED: xorshift needs a non-zero seed"
    );
    let started = std::time::Instant::now();
    let dma = GuestDma::new(4 << 20);
    let wanted = if packed {
        F::RING_PACKED | F::INDIRECT_DESC
    } else {
        F::INDIRECT_DESC
    };
    let negotiated = negotiate(F::VERSION_1 | wanted, wanted).unwrap();
    let notifier = CountingNotifier::default();
    let mut vq: Box<dyn Virtq<GuestDma>> = if packed {
        Box::new(PackedVq::new(0, SIZE, negotiated, dma.clone(), notifier).unwrap())
    } else {
        Box::new(SplitVq::new(0, SIZE, negotiated, dma.clone(), notifier).unwrap())
    };
    let mut dev = new_device(&dma, vq.as_ref(), packed);
    let mut rng = Rng(seed);
    // A fixed pool of tokens, reused: each is either in `pool` or in flight, never both.
    let mut pool: Vec<AvailBufferToken<GuestDma>> = (0..SIZE as u64 * 2)
        .map(|tag| {
            make_token(
                &dma,
                &[1 + tag as usize % 3],
                &[4; 2][..tag as usize % 3],
                tag,
            )
        })
        .collect();
    let total = pool.len();
    let mut in_flight: HashSet<u64> = HashSet::new();
    let mut corrupted = false;
    let (mut errors, mut ops) = (0u64, 0u64);
    while ops < operations {
        ops += 1;
        match rng.below(8) {
            0 | 1 if !corrupted => {
                if let Some(token) = pool.pop() {
                    let tag = token.tag();
                    let bt = if tag % 2 == 0 {
                        BufferType::Direct
                    } else {
                        BufferType::Indirect
                    };
                    match vq.dispatch(token, bt) {
                        Ok(_) => assert!(in_flight.insert(tag)),
                        Err(e) => pool.push(e.token),
                    }
                }
            }
            2 if !corrupted => match &mut dev {
                Device::Split(d, held) => held.extend(d.pop_all()),
                Device::Packed(d, held) => held.extend(d.pop_all()),
            },
            3 if !corrupted => match &mut dev {
                Device::Split(d, held) => {
                    if !held.is_empty() {
                        let p = held.swap_remove(rng.below(held.len() as u64) as usize);
                        d.complete(&p);
                    }
                }
                Device::Packed(d, held) => {
                    if !held.is_empty() {
                        let p = held.swap_remove(rng.below(held.len() as u64) as usize);
                        d.complete(&p);
                    }
                }
            },
            4 => {
                corrupt(&dma, vq.as_ref(), packed, &mut rng);
                corrupted = true;
            }
            _ => match vq.poll() {
                Ok(Some(used)) => {
                    assert!(in_flight.remove(&used.tag()), "token returned twice");
                    pool.push(used.into_avail());
                }
                Ok(None) if corrupted && rng.below(4) == 0 => {
                    // Give up on this device: reset it, as a driver would after a timeout.
                    for token in vq.reset() {
                        assert!(in_flight.remove(&token.tag()), "token returned twice");
                        pool.push(token);
                    }
                    dev = new_device(&dma, vq.as_ref(), packed);
                    corrupted = false;
                }
                Ok(None) => {}
                Err(_) => {
                    errors += 1;
                    for token in vq.reset() {
                        assert!(in_flight.remove(&token.tag()), "token returned twice");
                        pool.push(token);
                    }
                    dev = new_device(&dma, vq.as_ref(), packed);
                    corrupted = false;
                }
            },
        }
        assert_eq!(pool.len() + in_flight.len(), total, "token lost");
    }
    for token in vq.reset() {
        assert!(in_flight.remove(&token.tag()));
        pool.push(token);
    }
    assert_eq!(pool.len(), total);
    assert!(
        errors > operations / 1000,
        "the hostile device was caught {errors} times only"
    );
    let layout = if packed { "packed" } else { "split" };
    eprintln!(
        "hostile_random {layout}: {ops} operations, seed {seed:#x}, {errors} errors caught, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn split_survives_a_random_hostile_device() {
    run(false, 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn packed_survives_a_random_hostile_device() {
    run(true, 0xd1b5_4a32_d192_ed03);
}
