//! Vireo's kernel command-line options: one table, one rule to read them.
//!
//! Every `vireo.*` key and `log=` is listed in [`OPTIONS`] with what it accepts. [`check`] looks
//! at every such word once: an unknown `vireo.*` key, a value that is not a boolean or a number
//! where one is expected, or a value out of range is a [`Problem`] that names the option, the
//! value, what is accepted and what is used instead. The readers ([`flag_in`], [`number_in`],
//! [`text_in`], [`level_in`]) apply the same rule and fall back the same way, silently (the kernel
//! reports the problems once, at boot, through `vireo::cmdline`).
//!
//! Applications' own options should use a prefix of their own (`myapp.x=1`): the `vireo.`
//! prefix is Vireo's.

use alloc::{string::String, vec::Vec};
use core::fmt;

use log::LevelFilter;

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

/// Kernel command-line key naming the first source `vireo::time` tries for the TSC frequency:
/// `vireo.tsc_ref=` followed by one of [`REFERENCE_NAMES`].
pub const REFERENCE_KEY: &str = "vireo.tsc_ref";
/// The sources `vireo.tsc_ref=` names, as `vireo::time::TscReference` lists them.
pub const REFERENCE_NAMES: &[&str] = &[
    "pit",
    "hpet",
    "kvmclock",
    "apic",
    "cpuid15",
    "cpuid16",
    "cpuid40000010",
];

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
        REFERENCE_KEY,
        Kind::Word(REFERENCE_NAMES),
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

/// The boolean option `key` (a [`Kind::Flag`]) in `cmdline`; `None` when absent or unusable.
pub fn flag_in(cmdline: &str, key: &str) -> Option<bool> {
    match value_in(cmdline, key) {
        Some(Value::Flag(b)) => Some(b),
        _ => None,
    }
}

/// The number option `key` (a [`Kind::Number`] or [`Kind::QueueSize`], clamped or rounded as
/// [`check`] reports) in `cmdline`; `None` when absent or unusable.
pub fn number_in(cmdline: &str, key: &str) -> Option<u64> {
    match value_in(cmdline, key) {
        Some(Value::Number(n)) => Some(n),
        _ => None,
    }
}

/// The text of option `key` (a [`Kind::Word`], [`Kind::Text`] or [`Kind::Level`]) in `cmdline`;
/// `None` when absent or unusable.
pub fn text_in<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    match value_in(cmdline, key) {
        Some(Value::Text(t)) => Some(t),
        _ => None,
    }
}

/// The log level `log=` names in `cmdline` (`None`: absent or not a level).
pub fn level_in(cmdline: &str) -> Option<LevelFilter> {
    // Runs before the heap exists (the kernel sets its log level first): no message is built here.
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("log="))
        .next_back()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use alloc::{format, string::ToString};

    use super::*;

    fn spec_of(key: &str) -> &'static Spec {
        OPTIONS.iter().find(|s| s.key == key).unwrap()
    }

    /// The one problem `word` has; fails if it has none or several.
    fn problem(word: &str) -> String {
        let p = check(word);
        assert_eq!(p.len(), 1, "{word}: {p:?}");
        assert_eq!(p[0].word, word);
        p[0].message.clone()
    }

    fn assert_contains(message: &str, needles: &[&str]) {
        for needle in needles {
            assert!(message.contains(needle), "`{needle}` not in `{message}`");
        }
    }

    #[test]
    fn the_table_is_consistent() {
        for (i, s) in OPTIONS.iter().enumerate() {
            assert!(s.key == "log" || s.key.starts_with("vireo."), "{}", s.key);
            assert!(
                OPTIONS[..i].iter().all(|o| o.key != s.key),
                "{} twice",
                s.key
            );
            assert!(!s.default.is_empty(), "{}", s.key);
            match s.kind {
                Kind::Number { min, max } => assert!(min <= max, "{}", s.key),
                Kind::QueueSize { min, needs } => {
                    // `min` is what one request needs, rounded up to a power of two.
                    let (before, _) = needs.split_once(" descriptors").unwrap();
                    let n: u16 = before.rsplit(' ').next().unwrap().parse().unwrap();
                    assert_eq!(n.next_power_of_two(), min, "{}", s.key);
                    assert!(min <= MAX_QUEUE_SIZE, "{}", s.key);
                }
                Kind::Word(words) => assert!(!words.is_empty(), "{}", s.key),
                _ => {}
            }
        }
        assert!(MAX_QUEUE_SIZE.is_power_of_two());
        assert!(spec_of(REFERENCE_KEY).key == "vireo.tsc_ref");
    }

    #[test]
    fn every_option_accepts_its_valid_values() {
        for s in OPTIONS {
            let valid: Vec<String> = match s.kind {
                Kind::Flag => ["1", "0", "on", "off", "true", "false", "yes", "no"]
                    .map(String::from)
                    .into(),
                Kind::Number { min, max } => vec![min.to_string(), max.to_string()],
                Kind::QueueSize { min, .. } => {
                    vec![min.to_string(), "256".into(), MAX_QUEUE_SIZE.to_string()]
                }
                Kind::Word(words) => words.iter().map(|w| w.to_string()).collect(),
                Kind::Text => vec!["10.0.2.15/24".into(), "anything".into()],
                Kind::Level => ["off", "error", "warn", "info", "debug", "trace"]
                    .map(String::from)
                    .into(),
            };
            for v in valid {
                let word = format!("{}={v}", s.key);
                assert!(check(&word).is_empty(), "{word}: {:?}", check(&word));
                let read = (
                    flag_in(&word, s.key),
                    number_in(&word, s.key),
                    text_in(&word, s.key),
                );
                match s.kind {
                    Kind::Flag => {
                        let on = matches!(v.as_str(), "1" | "on" | "true" | "yes");
                        assert_eq!(read, (Some(on), None, None), "{word}");
                    }
                    Kind::Number { .. } | Kind::QueueSize { .. } => {
                        assert_eq!(read, (None, Some(v.parse().unwrap()), None), "{word}")
                    }
                    Kind::Word(_) | Kind::Text | Kind::Level => {
                        assert_eq!(read, (None, None, Some(v.as_str())), "{word}")
                    }
                }
            }
        }
    }

    #[test]
    fn every_flag_refuses_other_words_and_names_its_default() {
        for s in OPTIONS.iter().filter(|s| s.kind == Kind::Flag) {
            for bad in ["maybe", "", "2", "ON", "y"] {
                let word = format!("{}={bad}", s.key);
                let m = problem(&word);
                assert_contains(
                    &m,
                    &[
                        "not a boolean (accepted: 1/0, on/off, true/false, yes/no)",
                        &format!("using the default ({})", s.default),
                    ],
                );
                assert_eq!(flag_in(&word, s.key), None, "{word}");
            }
            // A flag written without a value is not a boolean either.
            assert_contains(&problem(s.key), &["not a boolean"]);
        }
    }

    #[test]
    fn numbers_out_of_range_are_clamped_and_others_refused() {
        let key = "vireo.blk.queues";
        assert_eq!(spec_of(key).kind, Kind::Number { min: 1, max: 64 });
        for (value, used) in [("0", 1), ("99", 64), ("18446744073709551615", 64)] {
            let word = format!("{key}={value}");
            assert_eq!(
                problem(&word),
                format!("out of range (accepted: 1 to 64); using {used}")
            );
            assert_eq!(number_in(&word, key), Some(used));
        }
        for value in ["four", "-1", "", "0x10", "18446744073709551616", "1.5"] {
            let word = format!("{key}={value}");
            assert_eq!(
                problem(&word),
                "not a number (accepted: 1 to 64); using the default (4)"
            );
            assert_eq!(number_in(&word, key), None);
        }
    }

    #[test]
    fn queue_sizes_follow_the_ring_layout() {
        for (word, used) in [
            ("vireo.blk.queue_size=2", "using 4"),
            ("vireo.blk.queue_size=1000", "using 1024"),
            ("vireo.blk.queue_size=0", "using the default"),
            ("vireo.blk.queue_size=40000", "using the default"),
            ("vireo.net.queue_size=1", "using 2"),
        ] {
            let p = check(word);
            assert_eq!(p.len(), 1, "{word}: {p:?}");
            assert!(
                p[0].message
                    .contains("split ring's size is a power of two (virtio 1.2 §2.7)")
            );
            assert!(p[0].message.contains(used), "{word}: {}", p[0]);
        }
        assert!(check("vireo.blk.queue_size=16 vireo.net.queue_size=32768").is_empty());
    }

    #[test]
    fn queue_sizes_round_up_to_a_power_of_two_at_least_the_minimum() {
        let blk = "vireo.blk.queue_size";
        let net = "vireo.net.queue_size";
        for (key, value, used) in [
            (blk, 1, 4),
            (blk, 3, 4),
            (blk, 5, 8),
            (blk, 257, 512),
            (blk, 32767, 32768),
            (net, 3, 4),
            (net, 3000, 4096),
            (net, 20000, 32768),
        ] {
            let word = format!("{key}={value}");
            let m = problem(&word);
            assert_contains(
                &m,
                &[
                    &format!("using {used}"),
                    &format!(
                        "a power of two from {} to 32768",
                        if key == blk { 4 } else { 2 }
                    ),
                ],
            );
            assert_eq!(number_in(&word, key), Some(used), "{word}");
        }
        assert_contains(
            &problem("vireo.blk.queue_size=3"),
            &["a block request takes 3 descriptors (header, data, status)"],
        );
        assert_contains(
            &problem("vireo.net.queue_size=1"),
            &["a frame to send takes 2 descriptors (header, data)"],
        );
        for bad in ["32769", "0", "99999999999999999999"] {
            let word = format!("{blk}={bad}");
            assert_contains(
                &problem(&word),
                &["using the default (the device's maximum up to 1024)"],
            );
            assert_eq!(number_in(&word, blk), None, "{word}");
        }
        let m = problem("vireo.net.queue_size=lots");
        assert!(m.starts_with("not a number: a split ring's size"), "{m}");
        assert!(m.ends_with("using the default (256)"), "{m}");
    }

    #[test]
    fn words_must_be_listed() {
        assert_eq!(
            problem("vireo.timer=oneshot"),
            "not one of periodic, deadline; using the default (deadline)"
        );
        let m = problem("vireo.tsc_ref=atomic");
        assert_contains(
            &m,
            &["not one of pit, hpet, kvmclock, apic, cpuid15, cpuid16, cpuid40000010"],
        );
        assert_eq!(text_in("vireo.tsc_ref=atomic", REFERENCE_KEY), None);
        assert_eq!(text_in("vireo.tsc_ref=hpet", REFERENCE_KEY), Some("hpet"));
    }

    #[test]
    fn log_levels() {
        assert_eq!(
            problem("log=bogus"),
            "not a log level (accepted: off, error, warn, info, debug, trace); using the default \
             (info)"
        );
        assert_eq!(level_in("log=bogus"), None);
        assert_eq!(level_in("quiet log=debug"), Some(LevelFilter::Debug));
        assert_eq!(level_in("log=debug log=warn"), Some(LevelFilter::Warn));
        assert_eq!(level_in("log=warn log=bogus"), None, "the last one counts");
        assert_eq!(level_in("syslog=debug"), None);
        assert_eq!(level_in(""), None);
        // `check` and `level_in` agree on what a level is (the `log` crate's names, any case).
        for word in ["log=Trace", "log=OFF"] {
            assert!(check(word).is_empty(), "{word}");
            assert!(level_in(word).is_some(), "{word}");
        }
    }

    #[test]
    fn unknown_vireo_keys_are_reported_with_the_known_ones() {
        let m = problem("vireo.bogus=1");
        assert!(
            m.starts_with("unknown Vireo option, ignored (known: log, vireo.blk.packed,"),
            "{m}"
        );
        for s in OPTIONS {
            assert!(m.contains(s.key), "{} not listed", s.key);
        }
        assert!(m.contains("an application's own options take a prefix of its own"));
        // A key that only starts like a known one, and a known key with a suffix.
        assert_contains(&problem("vireo.blk=1"), &["unknown Vireo option"]);
        assert_contains(&problem("vireo.blk.queues_x=3"), &["unknown Vireo option"]);
        assert_eq!(number_in("vireo.blk.queues_x=3", "vireo.blk.queues"), None);
    }

    #[test]
    fn values_are_read_by_one_rule() {
        assert!(check("vireo.blk.packed=on vireo.blk.polled=yes vireo.net.csum=0").is_empty());
        assert!(check("vireo.timer=periodic vireo.tsc_ref=hpet log=debug").is_empty());
        assert!(check("vireo.net.ip=10.0.2.15/24 other=1 virtio_mmio.device=x").is_empty());
        let p = check("vireo.blk.queues=four vireo.timer=fast vireo.blk.polled");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].message.contains("not a number (accepted: 1 to 64)"),
            "{}",
            p[0]
        );
        assert!(
            p[1].message.contains("not one of periodic, deadline"),
            "{}",
            p[1]
        );
        assert!(p[2].message.contains("not a boolean"), "{}", p[2]);
    }

    #[test]
    fn other_words_are_not_vireos_business() {
        let line = "  quiet app.own=1 console=ttyS0  virtio_mmio.device=4K@0xd0000000:5 vireo ";
        assert!(check(line).is_empty(), "{:?}", check(line));
    }

    #[test]
    fn problems_come_in_order_and_print_with_their_word() {
        let p = check("vireo.blk.packed=maybe app=1 log=loud vireo.x");
        let words: Vec<&str> = p.iter().map(|p| p.word.as_str()).collect();
        assert_eq!(words, ["vireo.blk.packed=maybe", "log=loud", "vireo.x"]);
        assert_eq!(
            p[1].to_string(),
            "command line: `log=loud`: not a log level (accepted: off, error, warn, info, debug, \
             trace); using the default (info)"
        );
    }

    #[test]
    fn the_last_occurrence_counts() {
        let line = "vireo.blk.packed=off vireo.blk.queues=8 vireo.blk.packed=on vireo.blk.queues=2";
        assert_eq!(flag_in(line, "vireo.blk.packed"), Some(true));
        assert_eq!(number_in(line, "vireo.blk.queues"), Some(2));
        // An unusable last value falls back to the default, even after a usable one.
        assert_eq!(
            flag_in(
                "vireo.blk.packed=off vireo.blk.packed=maybe",
                "vireo.blk.packed"
            ),
            None
        );
        // Absent.
        assert_eq!(flag_in("quiet", "vireo.blk.packed"), None);
        assert_eq!(text_in("vireo.net.ipx=1", "vireo.net.ip"), None);
        // Each reader reads only its own kind.
        assert_eq!(number_in("vireo.blk.packed=1", "vireo.blk.packed"), None);
        assert_eq!(flag_in("vireo.blk.queues=1", "vireo.blk.queues"), None);
    }
}
