//! virtio-net against echo servers `xtask` runs on the host's loopback, reached through QEMU's
//! user networking (10.0.2.2 is the host): TCP with 100 MiB each way and the SHA-256 of both
//! streams compared, and 10,000 UDP datagrams with the losses counted (both scaled down under
//! nested KVM, see `scaled`).
//!
//! vireo-test: matrix packed=off,on
//! vireo-test: peer tcp-echo udp-echo
//! vireo-test: qemu -netdev user,id=n0 -device virtio-net-pci,netdev=n0,disable-legacy=on,packed={packed}
//! vireo-test: append peer.tcp={peer:tcp-echo} peer.udp={peer:udp-echo}
//! vireo-test: timeout 300
//! vireo-test: machines q35 microvm

#![no_std]
#![no_main]

extern crate alloc;

#[path = "support/echo.rs"]
mod echo;

use echo::{tcp_100_mib_each_way, udp_10000_datagrams};

vireo::test_main!(tcp_100_mib_each_way, udp_10000_datagrams);
