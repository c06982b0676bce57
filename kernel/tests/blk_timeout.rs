//! Every wait on a device is bounded: a throttled drive (one request per second) makes a request
//! outlast a short timeout, which returns `Timeout` instead of hanging; the abandoned request is
//! reclaimed when the device finishes it, and the device keeps working.
//!
//! vireo-test: qemu -device virtio-blk-pci,drive=slow,disable-legacy=on,serial=slow
//! vireo-test: qemu -drive if=none,id=slow,format=raw,throttling.iops-total=1,file={disk:slow:1M}
//! vireo-test: machines q35 microvm

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use core::time::Duration;

use vireo::{
    block::{self, BlockError},
    time::Instant,
};

vireo::test_main!(a_stalled_request_times_out_and_the_device_recovers);

fn a_stalled_request_times_out_and_the_device_recovers() {
    let d = block::by_serial("slow").expect("the throttled disk");
    let mut buf = vec![0u8; 512];
    // Spend the throttle's burst, then the next request waits about a second in QEMU.
    d.read(0, &mut buf).unwrap();
    d.set_timeout(Duration::from_millis(100));
    let start = Instant::now();
    assert_eq!(d.read(1, &mut buf), Err(BlockError::Timeout));
    let waited = start.elapsed();
    vireo::println!("timed out after {waited:?}");
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(900),
        "{waited:?}"
    );
    // With a generous budget the device answers again (after finishing the abandoned request).
    d.set_timeout(Duration::from_secs(10));
    d.read(2, &mut buf).unwrap();
    assert_eq!(d.stalled(), 0, "the abandoned request was reclaimed");
    assert_eq!(d.in_flight(0), 0);
}
