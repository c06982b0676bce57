//! Polled completion (`vireo.blk.polled=1`): no MSI-X vectors are used, waits spin on the used
//! ring, and the same random I/O as the interrupt-driven matrix completes correctly on both ring
//! layouts and with several queues.
//!
//! vireo-test: matrix packed=off,on queues=1,2
//! vireo-test: qemu -device virtio-blk-pci,drive=d0,disable-legacy=on,serial=polled,packed={packed},num-queues={queues}
//! vireo-test: qemu -drive if=none,id=d0,format=raw,discard=unmap,file={disk:d0:8M}
//! vireo-test: append vireo.blk.polled=1 expect.packed={packed} expect.queues={queues}
//! vireo-test: verify-disk d0
//! vireo-test: machines q35 microvm

#![no_std]
#![no_main]

extern crate alloc;

#[path = "support/blk.rs"]
mod support;

use support::{Rng, disk, expect, random_io};

vireo::test_main!(completions_are_polled, random_io_polled, copies_polled);

fn completions_are_polled() {
    let info = disk().info();
    assert!(
        !info.interrupts,
        "polled mode asked for on the command line"
    );
    assert_eq!(info.packed, expect("packed") == "on");
    assert_eq!(info.queues, expect("queues").parse::<u16>().unwrap());
    assert_eq!(disk().serial(), "polled");
}

fn random_io_polled() {
    random_io(disk(), "d0", &mut Rng::new(0x9011_ed00), 80);
}

fn copies_polled() {
    support::copy_round_trip(disk(), "d0", 300);
    assert_eq!(
        disk().interrupts_waited(),
        0,
        "a polled device never sleeps on an interrupt"
    );
}
