//! Two virtio-blk disks at once, one of them read-only: every invalid request is refused before it
//! reaches a device, with the error the API documents, and I/O on both disks interleaves.
//!
//! vireo-test: qemu -device virtio-blk-pci,drive=ro,disable-legacy=on,serial=ro-disk
//! vireo-test: qemu -drive if=none,id=ro,format=raw,readonly=on,file={disk:ro:4M}
//! vireo-test: qemu -device virtio-blk-pci,drive=rw,disable-legacy=on,serial=rw-disk
//! vireo-test: qemu -drive if=none,id=rw,format=raw,file={disk:rw:4M}
//! vireo-test: verify-disk rw
//! vireo-test: machines q35 microvm

#![no_std]
#![no_main]

extern crate alloc;

#[path = "support/blk.rs"]
mod support;

use alloc::vec;

use support::Rng;
use vireo::block::{self, BlkDriverError, BlockDevice, BlockError, Request, SECTOR_SIZE};

vireo::test_main!(
    both_disks_are_found,
    read_only_disk_refuses_writes,
    out_of_range_is_refused,
    misaligned_and_empty_are_refused,
    two_disks_at_once,
);

fn ro() -> &'static BlockDevice {
    block::by_serial("ro-disk").expect("read-only disk")
}

fn rw() -> &'static BlockDevice {
    block::by_serial("rw-disk").expect("writable disk")
}

fn refused(result: Result<(), BlockError>, expected: BlkDriverError) {
    assert_eq!(result, Err(BlockError::Driver(expected)));
}

fn both_disks_are_found() {
    assert_eq!(block::devices().len(), 2);
    for d in block::devices() {
        vireo::println!("{d}");
    }
    assert!(ro().info().read_only);
    assert!(!rw().info().read_only);
    assert_eq!(ro().info().blocks * 512, 4 << 20);
}

fn read_only_disk_refuses_writes() {
    let d = ro();
    let data = vec![0xa5u8; 4096];
    refused(d.write(0, &data), BlkDriverError::ReadOnly);
    let r = d.discard(0, 8);
    assert!(
        matches!(
            r,
            Err(BlockError::Driver(
                BlkDriverError::ReadOnly | BlkDriverError::Unsupported
            ))
        ),
        "{r:?}"
    );
    let r = d.write_zeroes(0, 8);
    assert!(
        matches!(
            r,
            Err(BlockError::Driver(
                BlkDriverError::ReadOnly | BlkDriverError::Unsupported
            ))
        ),
        "{r:?}"
    );
    // The queued API refuses too, and gives the buffer back.
    let e = d
        .submit(
            0,
            Request::Write {
                sector: 0,
                buffers: vec![block::buffer(512).unwrap()],
            },
        )
        .unwrap_err();
    assert_eq!(e.error, BlkDriverError::ReadOnly);
    assert_eq!(e.request.into_buffers().len(), 1);
    // Reads work, and the disk is untouched.
    let mut back = vec![1u8; 4096];
    d.read(0, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0));
}

fn out_of_range_is_refused() {
    let d = rw();
    let blocks = d.info().blocks;
    let mut buf = vec![0u8; 1024];
    refused(d.read(blocks, &mut buf[..512]), BlkDriverError::OutOfRange);
    refused(d.read(blocks - 1, &mut buf), BlkDriverError::OutOfRange);
    refused(d.write(blocks - 1, &buf), BlkDriverError::OutOfRange);
    refused(d.read(u64::MAX / 2, &mut buf), BlkDriverError::OutOfRange);
    refused(d.discard(blocks - 4, 8), BlkDriverError::OutOfRange);
    let e = d
        .submit(
            0,
            Request::Read {
                sector: u64::MAX - 1,
                buffers: vec![block::buffer(512).unwrap()],
            },
        )
        .unwrap_err();
    assert_eq!(e.error, BlkDriverError::OutOfRange);
    // The last block itself is fine.
    d.read(blocks - 1, &mut buf[..512]).unwrap();
}

fn misaligned_and_empty_are_refused() {
    let d = rw();
    let mut buf = vec![0u8; 700];
    refused(d.read(0, &mut buf), BlkDriverError::Misaligned);
    refused(d.write(0, &buf), BlkDriverError::Misaligned);
    refused(d.read(0, &mut []), BlkDriverError::EmptyBuffer);
    let e = d
        .submit(
            0,
            Request::Read {
                sector: 0,
                buffers: vec![block::buffer(100).unwrap()],
            },
        )
        .unwrap_err();
    assert_eq!(e.error, BlkDriverError::Misaligned);
    let e = d
        .submit(
            0,
            Request::Write {
                sector: 0,
                buffers: vec![],
            },
        )
        .unwrap_err();
    assert_eq!(e.error, BlkDriverError::EmptyBuffer);
}

fn two_disks_at_once() {
    // Writes in flight on the writable disk while reads run on the read-only one.
    let mut rng = Rng::new(0xd15c_0002);
    let (a, b) = (rw(), ro());
    let mut reads = 0;
    for round in 0..20u64 {
        let sector = rng.range(0, a.info().blocks - 16);
        let generation = 1000 + round;
        let mut buf = block::buffer(16 * SECTOR_SIZE as usize).unwrap();
        vireo::testing::fill_disk_pattern(&mut buf, generation, sector * SECTOR_SIZE);
        let id = a
            .submit(
                0,
                Request::Write {
                    sector,
                    buffers: vec![buf],
                },
            )
            .unwrap();
        let rid = b
            .submit(
                0,
                Request::Read {
                    sector: sector / 2,
                    buffers: vec![block::buffer(4096).unwrap()],
                },
            )
            .unwrap();
        let rc = b.wait(0).unwrap();
        assert_eq!(rc.id, rid);
        rc.result.unwrap();
        assert!(rc.buffers[0].iter().all(|&x| x == 0));
        reads += 1;
        let wc = a.wait(0).unwrap();
        assert_eq!(wc.id, id);
        wc.result.unwrap();
        vireo::testing::report_disk_write("rw", sector * SECTOR_SIZE, 16 * SECTOR_SIZE, generation);
    }
    a.flush().unwrap();
    assert_eq!(reads, 20);
}
