//! virtio-blk against QEMU's device, across ring layouts, descriptor modes, notification
//! suppression, queue sizes, queue counts and block sizes: random writes of random lengths at
//! random offsets with many requests in flight (out of order across queues), flush, read back and
//! compare; then `xtask` checks every reported write in the disk image after QEMU exits.
//!
//! vireo-test: matrix packed=off,on indirect=off,on event_idx=off,on qsize=16,1024 queues=1,4 lbs=512,4096
//! vireo-test: qemu -device virtio-blk-pci,drive=d0,disable-legacy=on,serial=matrix-disk,packed={packed},indirect_desc={indirect},event_idx={event_idx},queue-size={qsize},num-queues={queues},logical_block_size={lbs},physical_block_size={lbs}
//! vireo-test: qemu -drive if=none,id=d0,format=raw,discard=unmap,file={disk:d0:8M}
//! vireo-test: append expect.packed={packed} expect.indirect={indirect} expect.event_idx={event_idx} expect.queues={queues} expect.lbs={lbs}
//! vireo-test: verify-disk d0
//! vireo-test: machines q35 microvm

#![no_std]
#![no_main]

extern crate alloc;

#[path = "support/blk.rs"]
mod support;

use support::{Rng, disk, expect, random_io};

vireo::test_main!(
    negotiated_what_qemu_offered,
    serial_is_get_id,
    random_io_many_in_flight,
    zeroing_reads_back_zeroes,
    copies_span_chunks
);

fn negotiated_what_qemu_offered() {
    let info = disk().info();
    vireo::println!("{}", disk());
    assert_eq!(info.packed, expect("packed") == "on");
    assert_eq!(info.indirect, expect("indirect") == "on");
    assert_eq!(info.event_idx, expect("event_idx") == "on");
    let queues: u16 = expect("queues").parse().unwrap();
    assert_eq!(info.queues, queues);
    assert_eq!(info.block_size, expect("lbs").parse::<u32>().unwrap());
    assert_eq!(info.blocks * u64::from(info.block_size), 8 << 20);
    assert!(info.interrupts && !info.read_only && info.flush);
}

fn serial_is_get_id() {
    assert_eq!(disk().serial(), "matrix-disk");
}

fn random_io_many_in_flight() {
    let mut rng = Rng::new(0x5eed_0001);
    random_io(disk(), "d0", &mut rng, 120);
}

fn zeroing_reads_back_zeroes() {
    support::zeroing(disk(), "d0");
}

fn copies_span_chunks() {
    support::copy_round_trip(disk(), "d0", 777);
}
