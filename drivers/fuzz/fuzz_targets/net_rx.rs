//! Fuzzes the virtio-net receive path: the input plays the device (the net headers, bytes and
//! used lengths it writes into rx buffers, and the features the driver negotiates). The body
//! and the properties it checks are in `tests/support/net_rx_fuzz.rs`, which the host test
//! `tests/net_rx_fuzz.rs` also runs over seeded pseudo-random inputs.

#![no_main]

/// The host tests' simulated devices and the checking body, shared rather than copied.
#[path = "../../tests/support/mod.rs"]
mod support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| support::net_rx_fuzz::run(data));
