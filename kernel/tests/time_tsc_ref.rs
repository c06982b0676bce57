//! The TSC frequency measured against the PIT and against the HPET agree, and the HPET can be the
//! boot-time reference.
//!
//! vireo-test: append vireo.tsc_ref=hpet

#![no_std]
#![no_main]

use vireo::time::{self, TscReference};

vireo::test_main!(hpet_was_the_reference, pit_and_hpet_agree);

fn hpet_was_the_reference() {
    assert_eq!(time::tsc_reference(), Some(TscReference::Hpet));
}

/// Whether `a` and `b` differ by less than 0.5%.
fn close(a: u64, b: u64) -> bool {
    a.abs_diff(b) * 200 < a.max(b)
}

fn pit_and_hpet_agree() {
    let boot = time::tsc_frequency();
    // A single measurement can be skewed by a stalled host; a real disagreement shows every time.
    let mut seen = [(0u64, 0u64); 3];
    for s in &mut seen {
        let pit = time::measure_tsc_frequency(TscReference::Pit).expect("the PIT counts");
        let hpet = time::measure_tsc_frequency(TscReference::Hpet).expect("the HPET counts");
        vireo::println!(
            "TSC: {boot} Hz at boot, {pit} Hz against the PIT, {hpet} Hz against the HPET"
        );
        if close(pit, hpet) && close(boot, hpet) {
            return;
        }
        *s = (pit, hpet);
    }
    panic!("PIT and HPET measurements disagree (boot {boot} Hz): {seen:?}");
}
