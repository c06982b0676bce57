//! What the block test images share: a deterministic random generator, the disk under test, and
//! the I/O patterns (each write reported for `xtask`'s disk check).

#![allow(dead_code, reason = "each test image uses the part it needs")]

use alloc::{collections::VecDeque, vec, vec::Vec};

use vireo::{
    block::{self, BlockDevice, Output, Request, RequestId, SECTOR_SIZE},
    testing::{fill_disk_pattern, report_disk_write, report_disk_zero},
};

/// xorshift64*: deterministic, good enough to scatter I/O.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The first block device (the one the test attached).
pub fn disk() -> &'static BlockDevice {
    block::devices()
        .first()
        .expect("the test attaches a virtio-blk disk")
}

/// The value of `expect.KEY=` on the command line.
pub fn expect(key: &str) -> &'static str {
    vireo::boot_info()
        .cmdline()
        .split_ascii_whitespace()
        .find_map(|a| {
            a.strip_prefix("expect.")?
                .strip_prefix(key)?
                .strip_prefix('=')
        })
        .unwrap_or_else(|| panic!("expect.{key}= missing from the command line"))
}

/// The generation of the next write (shared by all writes of an image).
static GENERATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATION.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}

/// A write in flight: where, what generation, how long.
#[derive(Clone, Copy)]
struct Extent {
    offset: u64,
    len: u64,
    generation: u64,
}

/// `ops` random writes (1..=3 segments, random lengths and offsets, never overlapping a write in
/// flight), submitted on every queue until the queues are full, completed in whatever order the
/// device chooses; each completed write is read back and compared, and reported. Ends with a
/// flush and a full read-back against a model of the disk.
pub fn random_io(dev: &BlockDevice, name: &str, rng: &mut Rng, ops: usize) {
    let info = dev.info();
    let bs = u64::from(info.block_size);
    let disk_bytes = info.blocks * bs;
    let percent = vireo::testing::work_percent();
    let ops = (ops as u64 * percent / 100).max(8) as usize;
    let max_blocks = (64 * 1024 * percent / 100 / bs).max(1);
    let max_segments = u64::from(info.max_segments.min(3));
    // Model: the generation of every 512-byte sector (0: never written).
    let mut model = vec![0u64; (disk_bytes / SECTOR_SIZE) as usize];
    let mut in_flight: Vec<(RequestId, Extent)> = Vec::new();
    let (mut submitted, mut completed, mut max_in_flight) = (0, 0, 0);
    while completed < ops {
        // Fill the queues.
        while submitted < ops {
            let blocks = rng.range(1, max_blocks);
            let offset = rng.range(0, info.blocks - blocks) * bs;
            let len = blocks * bs;
            if in_flight
                .iter()
                .any(|(_, e)| offset < e.offset + e.len && e.offset < offset + len)
            {
                continue;
            }
            let generation = next_generation();
            let segments = split(rng, blocks, max_segments, bs);
            let mut buffers = Vec::new();
            let mut at = offset;
            for seg in segments {
                let mut b = block::buffer(seg as usize).unwrap();
                fill_disk_pattern(&mut b, generation, at);
                at += seg;
                buffers.push(b);
            }
            let queue = (submitted % usize::from(info.queues)) as u16;
            let request = Request::Write {
                sector: offset / SECTOR_SIZE,
                buffers,
            };
            match dev.submit(queue, request) {
                Ok(id) => {
                    in_flight.push((
                        id,
                        Extent {
                            offset,
                            len,
                            generation,
                        },
                    ));
                    submitted += 1;
                    max_in_flight = max_in_flight.max(in_flight.len());
                }
                Err(e) if e.error == block::BlkDriverError::QueueFull => break,
                Err(e) => panic!("submit: {}", e.error),
            }
        }
        // Take completions from every queue with work.
        let queue = in_flight
            .first()
            .map(|_| (completed % usize::from(info.queues)) as u16)
            .filter(|&q| dev.in_flight(q) > 0)
            .unwrap_or_else(|| (0..info.queues).find(|&q| dev.in_flight(q) > 0).unwrap());
        let c = dev.wait(queue).unwrap();
        let pos = in_flight
            .iter()
            .position(|(id, _)| *id == c.id)
            .expect("a completion for a request in flight");
        let (_, e) = in_flight.swap_remove(pos);
        c.result.unwrap();
        report_disk_write(name, e.offset, e.len, e.generation);
        for s in e.offset / SECTOR_SIZE..(e.offset + e.len) / SECTOR_SIZE {
            model[s as usize] = e.generation;
        }
        completed += 1;
    }
    vireo::println!(
        "random_io: {ops} writes, up to {max_in_flight} in flight on {} queue(s)",
        info.queues
    );
    dev.flush().unwrap();
    if percent == 100 {
        check_model(dev, &model, 0..disk_bytes);
    } else {
        // Little CPU to spare: read back what was written (xtask checks the rest of the image).
        let written: Vec<u64> = (0..model.len())
            .filter(|&s| model[s] != 0)
            .map(|s| s as u64 * SECTOR_SIZE)
            .collect();
        for offset in written {
            check_model(
                dev,
                &model,
                offset..offset + SECTOR_SIZE.max(bs) - offset % bs,
            );
        }
    }
}

/// Splits `blocks` into 1..=`max` segments of whole blocks, in bytes.
fn split(rng: &mut Rng, blocks: u64, max: u64, bs: u64) -> Vec<u64> {
    let n = rng.range(1, max.min(blocks));
    let mut left = blocks;
    let mut out = Vec::new();
    for i in 0..n {
        let take = if i + 1 == n {
            left
        } else {
            rng.range(1, left - (n - 1 - i))
        };
        out.push(take * bs);
        left -= take;
    }
    out
}

/// Reads `range` of the disk back (whole blocks, many requests in flight on queue 0) and compares
/// with the model.
fn check_model(dev: &BlockDevice, model: &[u64], range: core::ops::Range<u64>) {
    let bs = u64::from(dev.info().block_size);
    let chunk = 128 * 1024u64;
    let end = range.end.next_multiple_of(bs);
    let mut pending = VecDeque::new();
    let mut next = range.start / bs * bs;
    loop {
        while next < end && pending.len() < 8 {
            let len = chunk.min(end - next);
            let request = Request::Read {
                sector: next / SECTOR_SIZE,
                buffers: vec![block::buffer(len as usize).unwrap()],
            };
            match dev.submit(0, request) {
                Ok(id) => pending.push_back((id, next)),
                Err(e) if e.error == block::BlkDriverError::QueueFull => break,
                Err(e) => panic!("submit read: {}", e.error),
            }
            next += len;
        }
        if pending.is_empty() {
            break;
        }
        let c = dev.wait(0).unwrap();
        let pos = pending.iter().position(|(id, _)| *id == c.id).unwrap();
        let (_, at) = pending.remove(pos).unwrap();
        assert!(matches!(c.result, Ok(Output::Done)));
        let data = &c.buffers[0];
        for (i, sector) in data.chunks(SECTOR_SIZE as usize).enumerate() {
            let offset = at + i as u64 * SECTOR_SIZE;
            let generation = model[(offset / SECTOR_SIZE) as usize];
            let mut expected = [0u8; SECTOR_SIZE as usize];
            if generation != 0 {
                fill_disk_pattern(&mut expected, generation, offset);
            }
            assert!(
                sector == expected,
                "sector at byte {offset}: content of the wrong generation (expected {generation})"
            );
        }
    }
}

/// Discard and write-zeroes (when offered) read back as zeroes.
pub fn zeroing(dev: &BlockDevice, name: &str) {
    let info = dev.info();
    let bs = u64::from(info.block_size);
    for (i, zero) in [info.discard, info.write_zeroes].into_iter().enumerate() {
        if !zero {
            vireo::println!("zeroing: operation {i} not offered");
            continue;
        }
        let count = (32 * vireo::testing::work_percent() / 100).max(1);
        let block = 16 + 64 * i as u64;
        let mut data = vec![0u8; (count * bs) as usize];
        let generation = next_generation();
        fill_disk_pattern(&mut data, generation, block * bs);
        dev.write(block, &data).unwrap();
        report_disk_write(name, block * bs, count * bs, generation);
        let mut back = vec![0u8; data.len()];
        dev.read(block, &mut back).unwrap();
        assert!(back == data);
        if i == 0 {
            dev.discard(block, count).unwrap()
        } else {
            dev.write_zeroes(block, count).unwrap()
        }
        report_disk_zero(name, block * bs, count * bs);
        dev.read(block, &mut back).unwrap();
        assert!(
            back.iter().all(|&b| b == 0),
            "operation {i} left data behind"
        );
    }
}

/// The copying calls across several bounce chunks, at an odd block count.
pub fn copy_round_trip(dev: &BlockDevice, name: &str, blocks: u64) {
    let info = dev.info();
    let bs = u64::from(info.block_size);
    let blocks = (blocks * vireo::testing::work_percent() / 100).clamp(1, info.blocks / 2);
    let block = info.blocks - blocks - 1;
    let mut data = vec![0u8; (blocks * bs) as usize];
    let generation = next_generation();
    fill_disk_pattern(&mut data, generation, block * bs);
    dev.write(block, &data).unwrap();
    dev.flush().unwrap();
    report_disk_write(name, block * bs, blocks * bs, generation);
    let mut back = vec![0u8; data.len()];
    dev.read(block, &mut back).unwrap();
    assert!(back == data);
}
