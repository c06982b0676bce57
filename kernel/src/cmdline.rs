//! Vireo's kernel command-line options, read in one place with one rule.
//!
//! Every `vireo.*` key and `log=` is listed in [`OPTIONS`] with what it accepts. At boot
//! [`report`] looks at every such word once: an unknown `vireo.*` key, a value that is not a
//! boolean or a number where one is expected, or a value out of range is logged at `warn` with
//! the option, the value, what is accepted and what is used instead; [`problems`] gives the same
//! reports to the application. The accessors ([`flag`], [`number`], [`text`]) apply the same rule
//! and fall back the same way, silently (the problem was reported once, at boot).
//!
//! The table and the rule are `vireo_kcore::cmdline` (tested on the host); this module reads the
//! boot command line with them.
//!
//! Applications' own options should use a prefix of their own (`myapp.x=1`): the `vireo.`
//! prefix is Vireo's.

use alloc::vec::Vec;

use spin::Once;
pub use vireo_kcore::cmdline::{
    Kind, MAX_QUEUE_SIZE, OPTIONS, Problem, Spec, check, flag_in, level_in, number_in, text_in,
};

fn cmdline() -> &'static str {
    crate::boot_info().cmdline()
}

/// The boolean option `key` (a [`Kind::Flag`]), or `default` when absent or unusable.
pub fn flag(key: &str, default: bool) -> bool {
    flag_in(cmdline(), key).unwrap_or(default)
}

/// The number option `key` (a [`Kind::Number`] or [`Kind::QueueSize`], clamped or rounded as
/// reported), or `None` when absent or unusable.
pub fn number(key: &str) -> Option<u64> {
    number_in(cmdline(), key)
}

/// The text of option `key` (a [`Kind::Word`], [`Kind::Text`] or [`Kind::Level`]), or `None`.
pub fn text(key: &str) -> Option<&'static str> {
    text_in(cmdline(), key)
}

static PROBLEMS: Once<Vec<Problem>> = Once::new();

/// Checks the boot command line once and logs each problem (called by the runtime at boot).
pub fn report(cmdline: &str) {
    for p in PROBLEMS.call_once(|| check(cmdline)) {
        log::warn!("{p}");
    }
}

/// The problems [`report`] found in the boot command line (empty before it ran).
pub fn problems() -> &'static [Problem] {
    PROBLEMS.get().map_or(&[], Vec::as_slice)
}
