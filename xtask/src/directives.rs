//! The `//! vireo-test:` / `//! vireo-run:` lines at the top of an image's source file.
//!
//! See `kernel/src/testing.rs` for the list of directives.

use std::{path::Path, time::Duration};

/// What an image's source asks of QEMU and of the harness.
#[derive(Debug, Clone, Default)]
pub struct Directives {
    /// Extra QEMU arguments, in order.
    pub qemu: Vec<String>,
    /// Words added to the kernel command line.
    pub append: Vec<String>,
    /// The image must fail and print this text.
    pub expect_failure: Option<String>,
    /// The hard limit for one boot.
    pub timeout: Option<Duration>,
    /// The image must still be running when its time limit kills it (tests of the harness itself).
    pub expect_timeout: bool,
}

/// Reads the directives with `prefix` (`vireo-test:` or `vireo-run:`) from `source`.
pub fn parse_file(source: &Path, prefix: &str) -> Result<Directives, String> {
    let text = std::fs::read_to_string(source)
        .map_err(|e| format!("reading {}: {e}", source.display()))?;
    parse(&text, prefix).map_err(|e| format!("{}: {e}", source.display()))
}

/// Reads the directives with `prefix` from the `//!` lines of `text`.
pub fn parse(text: &str, prefix: &str) -> Result<Directives, String> {
    let mut d = Directives::default();
    for line in text.lines() {
        let Some(doc) = line.trim_start().strip_prefix("//!") else {
            continue;
        };
        let Some(rest) = doc.trim().strip_prefix(prefix) else {
            continue;
        };
        let rest = rest.trim();
        let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let value = value.trim();
        match key {
            "qemu" => d.qemu.extend(value.split_whitespace().map(String::from)),
            "append" => d.append.extend(value.split_whitespace().map(String::from)),
            "expect-failure" if !value.is_empty() => d.expect_failure = Some(value.to_string()),
            "expect-timeout" => d.expect_timeout = true,
            "timeout" => {
                let secs: u64 = value
                    .parse()
                    .map_err(|_| format!("bad timeout `{value}`"))?;
                d.timeout = Some(Duration::from_secs(secs));
            }
            _ => return Err(format!("unknown directive `{prefix} {rest}`")),
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_its_prefix() {
        let text = "//! A test.\n//!\n//! vireo-test: qemu -m 5G -device x\n//! vireo-run: qemu -no\n\
                    //! vireo-test: append log=debug a=b\n//! vireo-test: timeout 9\n\
                    //! vireo-test: expect-failure page fault at\nfn main() {}\n";
        let d = parse(text, "vireo-test:").unwrap();
        assert_eq!(d.qemu, ["-m", "5G", "-device", "x"]);
        assert_eq!(d.append, ["log=debug", "a=b"]);
        assert_eq!(d.timeout, Some(Duration::from_secs(9)));
        assert_eq!(d.expect_failure.as_deref(), Some("page fault at"));
        assert_eq!(parse(text, "vireo-run:").unwrap().qemu, ["-no"]);
    }

    #[test]
    fn rejects_unknown_directives() {
        assert!(parse("//! vireo-test: qemmu -x\n", "vireo-test:").is_err());
        assert!(parse("//! vireo-test: timeout soon\n", "vireo-test:").is_err());
    }
}
