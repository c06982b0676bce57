//! A disk that grows while the guest runs (QMP `block_resize`): the device raises a
//! configuration-change interrupt on its MSI-X configuration vector, the driver re-reads the
//! configuration, and the new capacity is usable.
//!
//! vireo-test: qemu -device virtio-blk-pci,drive=grow,disable-legacy=on,serial=grow
//! vireo-test: qemu -drive if=none,id=grow,format=raw,file={disk:grow:4M}
//! vireo-test: qmp-on vireo-test: resize the disk now => {"execute":"block_resize","arguments":{"device":"grow","size":8388608}}
//! vireo-test: machines q35 microvm

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use core::time::Duration;

use vireo::{
    block::{self, BlkDriverError, BlockError},
    time::{Instant, sleep},
};

vireo::test_main!(capacity_change_is_picked_up);

fn capacity_change_is_picked_up() {
    let d = block::by_serial("grow").expect("the disk");
    assert_eq!(d.info().blocks, 8192);
    let mut buf = vec![0x5au8; 512];
    assert_eq!(
        d.write(8192, &buf),
        Err(BlockError::Driver(BlkDriverError::OutOfRange))
    );
    vireo::println!("vireo-test: resize the disk now");
    let start = Instant::now();
    while d.info().blocks == 8192 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no configuration change arrived"
        );
        sleep(Duration::from_millis(10));
    }
    vireo::println!("capacity changed after {:?}", start.elapsed());
    assert_eq!(d.info().blocks, 16384);
    d.write(16383, &buf).unwrap();
    buf.fill(0);
    d.read(16383, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0x5a));
}
