//! The virtio-blk configuration space, laid out byte by byte from virtio 1.2 §5.2.4 (checked
//! against Linux's `struct virtio_blk_config`), read back through `BlkDeviceConfig` for every
//! combination of the features that guard its fields. Every field holds a distinct value with
//! distinct bytes, so a field read at the wrong offset, with the wrong width or without its
//! feature shows.

mod support;

use support::*;
use vireo_drivers::blk::{BlkDeviceConfig, BlkOptions, Geometry, Topology};
use vireo_virtio::virtio_spec::F;

const GEOMETRY: F = blk(4);

/// The features that guard configuration fields or change what the driver reports, in bit
/// order: SIZE_MAX, SEG_MAX, GEOMETRY, RO, BLK_SIZE, FLUSH, TOPOLOGY, MQ, DISCARD, WRITE_ZEROES.
const FEATURES: [F; 10] = [
    SIZE_MAX,
    SEG_MAX,
    GEOMETRY,
    RO,
    BLK_SIZE,
    FLUSH,
    TOPOLOGY,
    MQ,
    DISCARD,
    WRITE_ZEROES,
];

// The values the device reports (§5.2.4 field by field).
const CAPACITY: u64 = 0x0071_7273_7475_7677;
const SIZE_MAX_VALUE: u32 = 0x8182_8384;
const SEG_MAX_VALUE: u32 = 0x9192_9394;
const CYLINDERS: u16 = 0xa1a2;
const HEADS: u8 = 0xa3;
const SECTORS: u8 = 0xa4;
const BLK_SIZE_VALUE: u32 = 4096;
const PHYSICAL_BLOCK_EXP: u8 = 0xb1;
const ALIGNMENT_OFFSET: u8 = 0xb2;
const MIN_IO_SIZE: u16 = 0xb3b4;
const OPT_IO_SIZE: u32 = 0xb5b6_b7b8;
const NUM_QUEUES: u16 = 0xc3c4;
const MAX_DISCARD_SECTORS: u32 = 0xd1d2_d3d4;
const MAX_DISCARD_SEG: u32 = 0xd5d6_d7d8;
const DISCARD_SECTOR_ALIGNMENT: u32 = 0xd9da_dbdc;
const MAX_WRITE_ZEROES_SECTORS: u32 = 0xe1e2_e3e4;
const MAX_WRITE_ZEROES_SEG: u32 = 0xe5e6_e7e8;

/// `struct virtio_blk_config` through `write_zeroes_may_unmap` and its padding (60 bytes).
fn config_space(write_zeroes_may_unmap: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(CAPACITY.to_le_bytes()); // capacity, le64 @0
    b.extend(SIZE_MAX_VALUE.to_le_bytes()); // size_max, le32 @8
    b.extend(SEG_MAX_VALUE.to_le_bytes()); // seg_max, le32 @12
    b.extend(CYLINDERS.to_le_bytes()); // geometry.cylinders, le16 @16
    b.push(HEADS); // geometry.heads @18
    b.push(SECTORS); // geometry.sectors @19
    b.extend(BLK_SIZE_VALUE.to_le_bytes()); // blk_size, le32 @20
    b.push(PHYSICAL_BLOCK_EXP); // topology.physical_block_exp @24
    b.push(ALIGNMENT_OFFSET); // topology.alignment_offset @25
    b.extend(MIN_IO_SIZE.to_le_bytes()); // topology.min_io_size, le16 @26
    b.extend(OPT_IO_SIZE.to_le_bytes()); // topology.opt_io_size, le32 @28
    b.push(0xc1); // writeback @32 (VIRTIO_BLK_F_CONFIG_WCE, not negotiated)
    b.push(0xc2); // unused0 @33
    b.extend(NUM_QUEUES.to_le_bytes()); // num_queues, le16 @34
    b.extend(MAX_DISCARD_SECTORS.to_le_bytes()); // max_discard_sectors, le32 @36
    b.extend(MAX_DISCARD_SEG.to_le_bytes()); // max_discard_seg, le32 @40
    b.extend(DISCARD_SECTOR_ALIGNMENT.to_le_bytes()); // discard_sector_alignment, le32 @44
    b.extend(MAX_WRITE_ZEROES_SECTORS.to_le_bytes()); // max_write_zeroes_sectors, le32 @48
    b.extend(MAX_WRITE_ZEROES_SEG.to_le_bytes()); // max_write_zeroes_seg, le32 @52
    b.push(write_zeroes_may_unmap); // write_zeroes_may_unmap @56
    b.extend([0xf1, 0xf2, 0xf3]); // unused1[3] @57
    assert_eq!(b.len(), 60);
    b
}

/// Where a device's configuration space may end with `features` offered: QEMU sizes it to the
/// last field a feature guards (`feature_sizes` in `hw/block/virtio-blk-common.c`), and always
/// includes capacity through geometry, which the driver reads whatever is offered.
fn config_end(features: F) -> usize {
    [
        (BLK_SIZE, 24),
        (TOPOLOGY, 32),
        (MQ, 36),
        (DISCARD, 48),
        (WRITE_ZEROES, 57),
    ]
    .iter()
    .filter(|(f, _)| features.contains(*f))
    .map(|&(_, end)| end)
    .fold(20, usize::max)
}

/// The features of combination `mask` (bit i: `FEATURES[i]`).
fn features(mask: u32) -> F {
    FEATURES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .fold(F::empty(), |acc, (_, f)| acc | *f)
}

/// What §5.2.4 says the driver knows with `features` negotiated (the queue size is 64, the
/// driver asks for 4 queues).
fn expected(features: F, write_zeroes_may_unmap: bool) -> BlkDeviceConfig {
    let has = |f: F| features.contains(f);
    let seg_max = if has(SEG_MAX) { SEG_MAX_VALUE } else { 1 };
    let num_queues = if has(MQ) { NUM_QUEUES } else { 1 };
    BlkDeviceConfig {
        capacity: CAPACITY,
        blk_size: if has(BLK_SIZE) { BLK_SIZE_VALUE } else { 512 },
        blk_size_rejected: None,
        size_max: if has(SIZE_MAX) {
            SIZE_MAX_VALUE
        } else {
            u32::MAX
        },
        seg_max,
        geometry: has(GEOMETRY).then_some(Geometry {
            cylinders: CYLINDERS,
            heads: HEADS,
            sectors: SECTORS,
        }),
        topology: has(TOPOLOGY).then_some(Topology {
            physical_block_exp: PHYSICAL_BLOCK_EXP,
            alignment_offset: ALIGNMENT_OFFSET,
            min_io_size: MIN_IO_SIZE,
            opt_io_size: OPT_IO_SIZE,
        }),
        read_only: has(RO),
        flush: has(FLUSH),
        num_queues,
        queues: num_queues.min(4),
        max_discard_sectors: if has(DISCARD) { MAX_DISCARD_SECTORS } else { 0 },
        max_discard_seg: if has(DISCARD) { MAX_DISCARD_SEG } else { 0 },
        discard_sector_alignment: if has(DISCARD) {
            DISCARD_SECTOR_ALIGNMENT
        } else {
            0
        },
        max_write_zeroes_sectors: if has(WRITE_ZEROES) {
            MAX_WRITE_ZEROES_SECTORS
        } else {
            0
        },
        max_write_zeroes_seg: if has(WRITE_ZEROES) {
            MAX_WRITE_ZEROES_SEG
        } else {
            0
        },
        write_zeroes_may_unmap: has(WRITE_ZEROES) && write_zeroes_may_unmap,
        // A chain may not be longer than the queue (64): header and status take two.
        max_segments: seg_max.min(62),
    }
}

fn options() -> BlkOptions {
    BlkOptions {
        multi_queue: true,
        queues: 4,
        ..BlkOptions::default()
    }
}

/// A driver over a device offering `features` with `config` as its configuration space.
fn read_info(features: F, config: Vec<u8>) -> BlkDeviceConfig {
    let sim = Sim::with_state(SimState::device(2, features, config));
    let drv = sim.driver(options());
    assert_eq!(drv.features(), features | F::VERSION_1);
    *drv.info()
}

#[test]
fn every_feature_combination_reads_the_fields_it_guards() {
    for mask in 0..1u32 << FEATURES.len() {
        let features = features(mask);
        let unmap = mask % 3 != 0;
        let config = config_space(u8::from(unmap));
        let got = read_info(features, config);
        assert_eq!(got, expected(features, unmap), "features {features:?}");
    }
}

#[test]
fn a_configuration_space_ending_at_the_last_offered_field_is_enough() {
    for mask in 0..1u32 << FEATURES.len() {
        let features = features(mask);
        let mut config = config_space(1);
        config.truncate(config_end(features));
        let got = read_info(features, config);
        assert_eq!(got, expected(features, true), "features {features:?}");
    }
}

#[test]
fn derived_sizes_follow_the_fields() {
    let info = read_info(
        FEATURES.iter().fold(F::empty(), |a, f| a | *f),
        config_space(1),
    );
    // capacity is in 512-byte sectors whatever the block size.
    assert_eq!(info.capacity_bytes(), CAPACITY * 512);
    assert_eq!(info.sectors_per_block(), u64::from(BLK_SIZE_VALUE) / 512);
    assert_eq!(info.max_segment_bytes(), SIZE_MAX_VALUE);
    // 62 segments of size_max, rounded down to whole 4096-byte blocks.
    let raw = 62 * u64::from(SIZE_MAX_VALUE);
    assert_ne!(raw % 4096, 0, "the rounding matters for these values");
    assert_eq!(info.max_request_bytes(), raw / 4096 * 4096);

    // Without BLK_SIZE (512-byte blocks) and with one segment: one size_max, rounded to 512.
    let info = read_info(SIZE_MAX, config_space(1));
    assert_eq!(
        info.max_request_bytes(),
        u64::from(SIZE_MAX_VALUE) / 512 * 512
    );
    assert_eq!(info.sectors_per_block(), 1);
    assert_eq!(info.capacity_bytes(), CAPACITY * 512);
}
