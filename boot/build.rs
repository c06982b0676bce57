//! Hands the linker script to every binary that links this crate.
//!
//! `cargo:rustc-link-arg` would reach only this crate's own targets, so the script is passed as a
//! native "library" instead: link-search paths and libraries propagate to every final link that
//! contains this crate, which includes any application crate outside this workspace. A linker given
//! a file that is neither an object nor an archive reads it as a linker script.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = "vireo.ld";
    fs::copy(script, out.join(script)).expect("copy the linker script to OUT_DIR");
    println!("cargo:rerun-if-changed={script}");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-search=native={}", out.display());
        println!("cargo:rustc-link-lib=static:-bundle,+verbatim={script}");
    }
}
