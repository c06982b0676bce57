//! The in-QEMU test harness.
//!
//! A test image is a file in `kernel/tests/` declared in `kernel/Cargo.toml` as a `[[test]]` with
//! `harness = false`; it names its cases with [`test_main!`](crate::test_main). Each case runs on a
//! fully initialised kernel; a case fails by panicking (`assert!`), which ends the image with the
//! failure exit code. The serial protocol, read by `cargo xtask test`:
//!
//! ```text
//! vireo-test: start NAME
//! vireo-test: ok NAME
//! vireo-test: all N passed
//! ```
//!
//! `xtask` reads directives from the test file's own `//!` lines (`xtask/src/directives.rs`; an
//! unknown directive fails the image). An application under `kernel/examples/` takes the same
//! directives with the prefix `vireo-run:` for `cargo xtask run`.
//!
//! - `//! vireo-test: append TEXT` — added to the kernel command line.
//! - `//! vireo-test: qemu ARG...` — extra QEMU arguments, split at spaces (repeatable).
//!   `{disk:NAME:SIZE}` becomes the path of a fresh zero-filled image under `target/` of SIZE
//!   (e.g. `64M`). `{tar:DIR}` becomes the path of an ordinary ustar archive of the files under
//!   DIR (relative to the repository root), built afresh under `target/vireo-disks/`;
//!   `{hostport:DEFAULT}` a host port (DEFAULT for `cargo xtask run`, a free loopback port under
//!   `http-check`).
//! - `//! vireo-test: machines q35 microvm` — the machine types the image boots on, once each
//!   (default: q35); on `microvm` its `virtio-X-pci` devices become `virtio-X-device`.
//! - `//! vireo-test: expect-failure TEXT` — the image must exit with the failure code and its serial
//!   output must contain TEXT (for tests of the fault path itself).
//! - `//! vireo-test: timeout SECS` — the hard limit for this image (default 60 s).
//! - `//! vireo-test: alone` — the image measures time: it boots after the others, with no other
//!   boot running.
//! - `//! vireo-test: verify-disk NAME` — after QEMU exits, check the image of `{disk:NAME:..}`
//!   against the writes the guest reported with [`report_disk_write`] and [`report_disk_zero`].
//! - `//! vireo-test: expect-timeout` — the image must still be running at its limit (tests of the
//!   harness's own time limit).
//! - `//! vireo-test: app` — in an example: `cargo xtask test` boots this application too (with
//!   its `vireo-run:` devices), and it passes by exiting with success.
//! - `//! vireo-test: http-check DIR` — a server (an example, booted with its `vireo-run:` devices):
//!   once it prints `serving http://`, `xtask` fetches every file under DIR from it through the
//!   forwarded `{hostport:..}` on 127.0.0.1 and compares the bytes, checks a 404, a `HEAD`,
//!   keep-alive and `Connection: close`, then kills QEMU; each check counts as one test.
//! - `//! vireo-test: matrix KEY=v1,v2 ...` — one boot per combination of the axes, with `{KEY}`
//!   replaced in the `qemu` and `append` directives.
//! - `//! vireo-test: peer tcp-echo udp-echo` — echo servers on the host for the boot's length;
//!   `{peer:KIND}` becomes each one's port (reached as 10.0.2.2 through user networking).
//! - `//! vireo-test: netns` — the boot runs in a network namespace of its own with the tap
//!   `vttap0` = 10.0.9.1/24, which `xtask` creates and deletes (as root; the boot is counted as
//!   skipped otherwise); its peers listen on 10.0.9.1.
//! - `//! vireo-test: garbage COUNT MAC IP:PORT` — with `netns`: once the image prints
//!   `garbage: ready`, `xtask` writes COUNT malformed frames for MAC to the tap, then the UDP
//!   datagram `garbage-done COUNT` to IP:PORT (`xtask/src/garbage.rs` lists the kinds).
//! - `//! vireo-test: qmp-on TEXT => JSON` — sends a QMP command once the output contains TEXT.

use crate::println;

/// One named test case.
pub type TestCase = (&'static str, fn());

/// Runs every case in order, reporting each on the console.
pub fn run(cases: &[TestCase]) {
    for (name, case) in cases {
        println!("vireo-test: start {name}");
        case();
        println!("vireo-test: ok {name}");
    }
    println!("vireo-test: all {} passed", cases.len());
}

/// Declares a test image's cases: `vireo::test_main!(case_a, case_b);` with `fn case_a()`.
#[macro_export]
macro_rules! test_main {
    ($($case:ident),+ $(,)?) => {
        $crate::main!(__vireo_test_image_main);

        fn __vireo_test_image_main() {
            $crate::testing::run(&[$((stringify!($case), $case as fn())),+]);
        }
    };
}

/// The disk test pattern: the byte a disk test writes at an offset in a write generation, and a
/// buffer filled with it. `xtask` checks disk images after QEMU exits with the same functions
/// (`vireo_kcore::disk_pattern`, shared by both).
pub use vireo_kcore::disk_pattern::{disk_pattern_byte, fill_disk_pattern};

/// How much CPU-bound work a test should do, in percent of its full size: 100 under TCG or on
/// hardware, 5 under KVM, where plain guest code runs far slower on the nested KVM of our CI
/// machines than under TCG. Tests still check everything they check; they only do less of it.
pub fn work_percent() -> u64 {
    match crate::arch::hypervisor() {
        crate::arch::Hypervisor::Kvm => 5,
        _ => 100,
    }
}

/// Tells `xtask` that `len` bytes at `offset` of disk `disk` now hold generation `generation`'s
/// pattern (directive `verify-disk DISK`). Report only writes the device completed successfully.
pub fn report_disk_write(disk: &str, offset: u64, len: u64, generation: u64) {
    println!("vireo-disk: {disk} write {offset} {len} {generation}");
}

/// Tells `xtask` that `len` bytes at `offset` of disk `disk` now read as zeroes.
pub fn report_disk_zero(disk: &str, offset: u64, len: u64) {
    println!("vireo-disk: {disk} zero {offset} {len}");
}
