//! Helpers shared by the virtio-blk test binaries.

use vireo_drivers::blk::{
    BlkDriver, BlkOptions, Completion, Output, Request, RequestKind, SectorRange,
};
use vireo_virtio::{DmaBuffer, virtio_spec::F};

use super::{
    BLK_SIZE, DISCARD, FLUSH, FakeTransport, GuestDma, SEG_MAX, SIZE_MAX, Sim, TOPOLOGY,
    WRITE_ZEROES,
};

pub type Driver = BlkDriver<FakeTransport, GuestDma>;

pub const ALL_BLK: F = SIZE_MAX
    .union(SEG_MAX)
    .union(BLK_SIZE)
    .union(FLUSH)
    .union(TOPOLOGY)
    .union(DISCARD)
    .union(WRITE_ZEROES);

pub fn ring_features() -> F {
    F::INDIRECT_DESC | F::EVENT_IDX | F::RING_PACKED
}

/// Every ring configuration: (packed, indirect, event_idx).
pub fn matrix() -> Vec<BlkOptions> {
    let mut v = Vec::new();
    for packed in [false, true] {
        for indirect in [false, true] {
            for event_idx in [false, true] {
                v.push(BlkOptions {
                    packed,
                    indirect,
                    event_idx,
                    ..BlkOptions::default()
                });
            }
        }
    }
    v
}

pub fn buf(dma: &GuestDma, len: usize, fill: u8) -> DmaBuffer<GuestDma> {
    dma.buffer(&vec![fill; len])
}

pub fn pattern(dma: &GuestDma, len: usize, seed: u8) -> DmaBuffer<GuestDma> {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    dma.buffer(&data)
}

/// Submits, lets the device serve the queue, and takes the one completion.
pub fn run(
    sim: &mut Sim,
    drv: &mut Driver,
    q: u16,
    req: Request<GuestDma>,
) -> Completion<GuestDma> {
    let id = drv.submit(q, req).expect("submit");
    assert_eq!(sim.serve(q), 1);
    let c = drv.poll(q).expect("poll").expect("a completion");
    assert_eq!(c.id, id);
    assert!(drv.poll(q).unwrap().is_none());
    c
}

pub fn read(sim: &mut Sim, drv: &mut Driver, sector: u64, lens: &[usize]) -> Vec<u8> {
    let buffers = lens.iter().map(|&l| buf(&sim.dma, l, 0xEE)).collect();
    let c = run(sim, drv, 0, Request::Read { sector, buffers });
    assert_eq!(c.result, Ok(Output::Done));
    assert_eq!(c.kind, RequestKind::Read);
    c.buffers.iter().flat_map(|b| b.iter().copied()).collect()
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every request kind.
pub const KINDS: [RequestKind; 6] = [
    RequestKind::Read,
    RequestKind::Write,
    RequestKind::Flush,
    RequestKind::GetId,
    RequestKind::Discard,
    RequestKind::WriteZeroes,
];

/// A small valid request of `kind`: one 512-byte segment at sector 0 (reads, writes), the
/// range of sectors 8..16 (discard, write-zeroes without unmap).
pub fn request_of(kind: RequestKind, dma: &GuestDma) -> Request<GuestDma> {
    let ranges = vec![SectorRange {
        sector: 8,
        num_sectors: 8,
    }];
    match kind {
        RequestKind::Read => Request::Read {
            sector: 0,
            buffers: vec![buf(dma, 512, 0)],
        },
        RequestKind::Write => Request::Write {
            sector: 0,
            buffers: vec![buf(dma, 512, 0)],
        },
        RequestKind::Flush => Request::Flush,
        RequestKind::GetId => Request::GetId,
        RequestKind::Discard => Request::Discard { ranges },
        RequestKind::WriteZeroes => Request::WriteZeroes {
            ranges,
            unmap: false,
        },
    }
}
