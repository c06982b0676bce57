//! The BARs the scan sized on QEMU's devices. How a sizing probe decodes, well-formed and
//! hostile, is tested on the host (`kcore/src/pci/bar.rs`).

#![no_std]
#![no_main]

vireo::test_main!(real_bars_match_their_probe);

fn real_bars_match_their_probe() {
    // Every BAR the scan found is a power of two at least as large as its kind's minimum.
    for dev in vireo::pci::devices() {
        for bar in dev.bars() {
            assert!(bar.size().is_power_of_two());
            assert!(bar.size() >= if bar.is_io() { 4 } else { 16 });
        }
    }
}
