//! The `net_rx` fuzz target's checking body (`support/net_rx_fuzz.rs`) over seeded
//! pseudo-random inputs, so that every `cargo test` checks its properties (the fuzzer itself
//! needs nightly: `cd drivers/fuzz && cargo +nightly fuzz run net_rx`).

mod support;

use support::{Rng, net_rx_fuzz};

#[test]
fn receive_path_survives_pseudo_random_devices() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3_000 {
        let len = rng.below(512) as usize;
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        net_rx_fuzz::run(&input);
    }
}
