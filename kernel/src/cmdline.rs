//! Vireo's kernel command-line options, read in one place with one rule.
//!
//! Every `vireo.*` key and `log=` is listed in [`OPTIONS`] with what it accepts. At boot
//! [`report`] looks at every such word once: an unknown `vireo.*` key, a value that is not a
//! boolean or a number where one is expected, or a value out of range is logged at `warn` with
//! the option, the value, what is accepted and what is used instead; [`problems`] gives the same
//! reports to the application. The accessors ([`flag`], [`number`], [`text`]) apply the same rule
//! and fall back the same way, silently (the problem was reported once, at boot).
//!
//! Applications' own options should use a prefix of their own (`myapp.x=1`): the `vireo.`
//! prefix is Vireo's.

use alloc::{string::String, vec::Vec};
use core::fmt;

use log::LevelFilter;
use spin::Once;

/// What an option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`/`1`, `off`/`on`, `false`/`true`, `no`/`yes`.
    Flag,
    /// A decimal number in `min..=max`; a value outside is clamped.
    Number {
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A virtqueue size: a power of two (a split ring's size must be one, virtio 1.2 §2.7; the
    /// packed ring takes the same sizes) from `min` (the descriptors one request needs, rounded up
    /// to a power of two) to 32768 (§2.7, §2.8). A smaller value, or another value up to 32768,
    /// is rounded up to the next power of two at least `min`.
    QueueSize {
        /// The smallest size: `min` descriptors carry one request.
        min: u16,
        /// What one request needs, in words (for the message).
        needs: &'static str,
    },
    /// One of a fixed list of words.
    Word(&'static [&'static str]),
    /// Free text, checked by the option's user (addresses).
    Text,
    /// A log level (`log=`).
    Level,
}

/// One known option.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The key before `=`.
    pub key: &'static str,
    /// What the value may be.
    pub kind: Kind,
    /// What is used when the option is absent or unusable, in words.
    pub default: &'static str,
}

const fn spec(key: &'static str, kind: Kind, default: &'static str) -> Spec {
    Spec { key, kind, default }
}

/// The largest virtqueue size (virtio 1.2 §2.7, §2.8).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Every option Vireo reads.
pub const OPTIONS: &[Spec] = &[
    spec("log", Kind::Level, "info"),
    spec("vireo.blk.packed", Kind::Flag, "on"),
    spec("vireo.blk.indirect", Kind::Flag, "on"),
    spec("vireo.blk.event_idx", Kind::Flag, "on"),
    spec("vireo.blk.polled", Kind::Flag, "off"),
    spec("vireo.blk.queues", Kind::Number { min: 1, max: 64 }, "4"),
    spec(
        "vireo.blk.queue_size",
        Kind::QueueSize {
            min: 4,
            needs: "a block request takes 3 descriptors (header, data, status)",
        },
        "the device's maximum up to 1024",
    ),
    spec("vireo.net.packed", Kind::Flag, "on"),
    spec("vireo.net.indirect", Kind::Flag, "on"),
    spec("vireo.net.event_idx", Kind::Flag, "on"),
    spec("vireo.net.mrg_rxbuf", Kind::Flag, "on"),
    spec("vireo.net.csum", Kind::Flag, "on"),
    spec("vireo.net.tso", Kind::Flag, "on"),
    spec("vireo.net.host_tso", Kind::Flag, "on"),
    spec("vireo.net.mtu", Kind::Flag, "on"),
    spec("vireo.net.ctrl_vq", Kind::Flag, "on"),
    spec("vireo.net.polled", Kind::Flag, "off"),
    spec(
        "vireo.net.queue_size",
        Kind::QueueSize {
            min: 2,
            needs: "a frame to send takes 2 descriptors (header, data)",
        },
        "256",
    ),
    spec("vireo.net.ip", Kind::Text, "DHCP"),
    spec("vireo.net.gw", Kind::Text, "none"),
    spec("vireo.net.dns", Kind::Text, "the DHCP lease's servers"),
    spec(
        crate::time::REFERENCE_KEY,
        Kind::Word(crate::time::REFERENCE_NAMES),
        "the first source that gives a figure (see vireo::time)",
    ),
    spec(
        "vireo.timer",
        Kind::Word(&["periodic", "deadline"]),
        "deadline",
    ),
];

/// A word of the command line Vireo cannot use as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The word as written (`vireo.blk.packed=maybe`).
    pub word: String,
    /// What is wrong, what is accepted, and what is used instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command line: `{}`: {}", self.word, self.message)
    }
}

/// A value read for an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Flag(bool),
    Number(u64),
    Text(&'a str),
}

/// Reads `value` for `spec`: the value to use (`None`: the default) and, when the value is not
/// usable as written, the problem in words.
fn read<'a>(spec: &Spec, value: &'a str) -> (Option<Value<'a>>, Option<String>) {
    let default = || alloc::format!("using the default ({})", spec.default);
    match spec.kind {
        Kind::Flag => match value {
            "1" | "on" | "true" | "yes" => (Some(Value::Flag(true)), None),
            "0" | "off" | "false" | "no" => (Some(Value::Flag(false)), None),
            _ => (
                None,
                Some(alloc::format!(
                    "not a boolean (accepted: 1/0, on/off, true/false, yes/no); {}",
                    default()
                )),
            ),
        },
        Kind::Number { min, max } => match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => (Some(Value::Number(n)), None),
            Ok(n) => {
                let used = n.clamp(min, max);
                (
                    Some(Value::Number(used)),
                    Some(alloc::format!(
                        "out of range (accepted: {min} to {max}); using {used}"
                    )),
                )
            }
            Err(_) => (
                None,
                Some(alloc::format!(
                    "not a number (accepted: {min} to {max}); {}",
                    default()
                )),
            ),
        },
        Kind::QueueSize { min, needs } => {
            let rule = alloc::format!(
                "a split ring's size is a power of two (virtio 1.2 §2.7) and {needs}; accepted: \
                 a power of two from {min} to {MAX_QUEUE_SIZE}"
            );
            match value.parse::<u64>() {
                Ok(n @ 1..=32768) => {
                    let used = n.next_power_of_two().max(u64::from(min));
                    let problem = (used != n).then(|| alloc::format!("{rule}; using {used}"));
                    (Some(Value::Number(used)), problem)
                }
                Ok(_) => (None, Some(alloc::format!("{rule}; {}", default()))),
                Err(_) => (
                    None,
                    Some(alloc::format!("not a number: {rule}; {}", default())),
                ),
            }
        }
        Kind::Word(words) if words.contains(&value) => (Some(Value::Text(value)), None),
        Kind::Word(words) => (
            None,
            Some(alloc::format!(
                "not one of {}; {}",
                words.join(", "),
                default()
            )),
        ),
        Kind::Text => (Some(Value::Text(value)), None),
        Kind::Level => match value.parse::<LevelFilter>() {
            Ok(_) => (Some(Value::Text(value)), None),
            Err(_) => (
                None,
                Some(alloc::format!(
                    "not a log level (accepted: off, error, warn, info, debug, trace); {}",
                    default()
                )),
            ),
        },
    }
}

/// Every problem with the Vireo options of `cmdline`, in order.
pub fn check(cmdline: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let Some(spec) = OPTIONS.iter().find(|s| s.key == key) else {
            if key.starts_with("vireo.") {
                let known: Vec<&str> = OPTIONS.iter().map(|s| s.key).collect();
                problems.push(Problem {
                    word: word.into(),
                    message: alloc::format!(
                        "unknown Vireo option, ignored (known: {}; an application's own options \
                         take a prefix of its own)",
                        known.join(", ")
                    ),
                });
            }
            continue;
        };
        if let (_, Some(message)) = read(spec, value) {
            problems.push(Problem {
                word: word.into(),
                message,
            });
        }
    }
    problems
}

/// The value of the last `key=...` of `cmdline` as `spec` reads it (`None`: absent or unusable).
fn value_in<'a>(cmdline: &'a str, key: &str) -> Option<Value<'a>> {
    let spec = OPTIONS.iter().find(|s| s.key == key);
    debug_assert!(spec.is_some(), "option `{key}` is not in cmdline::OPTIONS");
    let value = cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .next_back()?;
    read(spec?, value).0
}

fn value(key: &str) -> Option<Value<'static>> {
    value_in(crate::boot_info().cmdline(), key)
}

/// The boolean option `key` (a [`Kind::Flag`]), or `default` when absent or unusable.
pub fn flag(key: &str, default: bool) -> bool {
    match value(key) {
        Some(Value::Flag(b)) => b,
        _ => default,
    }
}

/// The number option `key` (a [`Kind::Number`] or [`Kind::QueueSize`], clamped or rounded as
/// reported), or `None` when absent or unusable.
pub fn number(key: &str) -> Option<u64> {
    match value(key) {
        Some(Value::Number(n)) => Some(n),
        _ => None,
    }
}

/// The text of option `key` (a [`Kind::Word`], [`Kind::Text`] or [`Kind::Level`]), or `None`.
pub fn text(key: &str) -> Option<&'static str> {
    match value(key) {
        Some(Value::Text(t)) => Some(t),
        _ => None,
    }
}

/// The log level `log=` names in `cmdline` (`None`: absent or not a level).
pub fn level_in(cmdline: &str) -> Option<LevelFilter> {
    // Runs before the heap exists: no message is built here ([`report`] builds it later).
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("log="))
        .next_back()?
        .parse()
        .ok()
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
