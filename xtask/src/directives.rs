//! The `//! vireo-test:` / `//! vireo-run:` lines at the top of an image's source file.
//!
//! See `kernel/src/testing.rs` for the list of directives.

use std::{path::Path, time::Duration};

use crate::qemu::Machine;

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
    /// Disks (`{disk:NAME:SIZE}` names) to check against the guest's write reports after QEMU exits.
    pub verify_disks: Vec<String>,
    /// QMP commands to send when the serial output first contains a text: `(text, command JSON)`.
    pub qmp_on: Vec<(String, String)>,
    /// The image measures time: it boots after the others, with no other boot running.
    pub alone: bool,
    /// Host-side peers to run during the boot (`tcp-echo`, `udp-echo`; see `peer.rs`).
    pub peers: Vec<String>,
    /// An application image that `cargo xtask test` boots too (with its `vireo-run:` devices):
    /// it passes by exiting with success.
    pub app: bool,
    /// Axes `KEY=v1,v2,...`: the image boots once per combination, with `{KEY}` in its `qemu` and
    /// `append` directives replaced by the combination's value.
    pub matrix: Vec<(String, Vec<String>)>,
    /// `http-check DIR`: a server image; once it prints `serving http://` the harness fetches
    /// every file under DIR (relative to the repository root) from it over the forwarded host
    /// port, compares the bytes, checks a 404 and a `HEAD`, and kills QEMU.
    pub http_check: Option<String>,
    /// `netns`: the boot runs in a network namespace of its own that the harness creates with
    /// the tap `vttap0` = 10.0.9.1/24 and deletes afterwards (root only: skipped otherwise);
    /// its peers listen on 10.0.9.1 there.
    pub netns: bool,
    /// `garbage COUNT MAC IP:PORT` (with `netns`): once the guest prints `garbage: ready`, the
    /// harness writes COUNT malformed frames to the tap for the guest's MAC, then the datagram
    /// `garbage-done COUNT` to IP:PORT (see `garbage.rs`).
    pub garbage: Option<(usize, String, String)>,
    /// `machines q35 microvm`: the machine types the image boots on, once each (default: q35).
    /// On microvm its `virtio-X-pci` devices become `virtio-X-device` ([`crate::qemu::device_for`]).
    pub machines: Vec<Machine>,
    /// The machine of one boot (set by [`expand`](Self::expand)).
    pub machine: Machine,
    /// What `{hostport:DEFAULT}` in QEMU arguments becomes (DEFAULT when `None`); set by the
    /// harness, not by a directive.
    pub host_port: Option<u16>,
}

impl Directives {
    /// One `(label, directives)` per combination of the matrix axes (one unlabelled entry without
    /// a matrix); more than one machine type is an axis of its own, `machine`, first.
    pub fn expand(&self) -> Vec<(String, Directives)> {
        let machines: Vec<String> = self.machines.iter().map(ToString::to_string).collect();
        let mut axes = self.matrix.clone();
        if machines.len() > 1 {
            axes.insert(0, ("machine".to_string(), machines));
        }
        let mut combos: Vec<Vec<(&str, &str)>> = vec![Vec::new()];
        for (key, values) in &axes {
            combos = combos
                .iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.as_str(), v.as_str()));
                        c
                    })
                })
                .collect();
        }
        combos
            .into_iter()
            .map(|combo| {
                let subst = |s: &String| {
                    combo
                        .iter()
                        .fold(s.clone(), |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
                };
                let label = combo
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let mut d = self.clone();
                d.qemu = self.qemu.iter().map(subst).collect();
                d.append = self.append.iter().map(subst).collect();
                d.matrix.clear();
                d.machine = combo
                    .iter()
                    .find(|(k, _)| *k == "machine")
                    .and_then(|(_, m)| m.parse().ok())
                    .or_else(|| self.machines.first().copied())
                    .unwrap_or_default();
                (label, d)
            })
            .collect()
    }
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
            "app" => d.app = true,
            "alone" => d.alone = true,
            "peer" => d.peers.extend(value.split_whitespace().map(String::from)),
            "qmp-on" => {
                let (text, command) = value
                    .split_once(" => ")
                    .ok_or_else(|| format!("`qmp-on {value}` is not `TEXT => JSON`"))?;
                d.qmp_on
                    .push((text.trim().to_string(), command.trim().to_string()));
            }
            "matrix" => {
                for axis in value.split_whitespace() {
                    let (key, values) = axis
                        .split_once('=')
                        .ok_or_else(|| format!("matrix axis `{axis}` is not KEY=v1,v2"))?;
                    d.matrix.push((
                        key.to_string(),
                        values.split(',').map(String::from).collect(),
                    ));
                }
            }
            "netns" => d.netns = true,
            "machines" => {
                for m in value.split(|c: char| c == ',' || c.is_whitespace()) {
                    if !m.is_empty() {
                        d.machines.push(m.parse()?);
                    }
                }
            }
            "garbage" => {
                let words: Vec<&str> = value.split_whitespace().collect();
                let [count, mac, addr] = words[..] else {
                    return Err(format!("`garbage {value}` is not `COUNT MAC IP:PORT`"));
                };
                let count = count
                    .parse()
                    .map_err(|_| format!("bad garbage count `{count}`"))?;
                d.garbage = Some((count, mac.to_string(), addr.to_string()));
            }
            "http-check" if !value.is_empty() => d.http_check = Some(value.to_string()),
            "verify-disk" if !value.is_empty() => d.verify_disks.push(value.to_string()),
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
                    //! vireo-test: alone\n//! vireo-test: http-check kernel/examples/site\n\
                    //! vireo-test: netns\n//! vireo-test: garbage 10 52:54:00:12:34:56 10.0.9.2:4000\n\
                    //! vireo-test: expect-failure page fault at\nfn main() {}\n";
        let d = parse(text, "vireo-test:").unwrap();
        assert_eq!(d.qemu, ["-m", "5G", "-device", "x"]);
        assert_eq!(d.append, ["log=debug", "a=b"]);
        assert_eq!(d.timeout, Some(Duration::from_secs(9)));
        assert!(d.alone);
        assert_eq!(d.http_check.as_deref(), Some("kernel/examples/site"));
        assert_eq!(d.expect_failure.as_deref(), Some("page fault at"));
        assert!(d.netns);
        assert_eq!(
            d.garbage,
            Some((10, "52:54:00:12:34:56".into(), "10.0.9.2:4000".into()))
        );
        let q = parse(
            "//! vireo-test: qmp-on go now => {\"execute\":\"x\"}\n",
            "vireo-test:",
        )
        .unwrap();
        assert_eq!(
            q.qmp_on,
            [("go now".to_string(), "{\"execute\":\"x\"}".to_string())]
        );
        assert_eq!(parse(text, "vireo-run:").unwrap().qemu, ["-no"]);
    }

    #[test]
    fn matrix_expands_every_combination() {
        let text = "//! vireo-test: matrix packed=on,off q=16,1024,7\n\
                    //! vireo-test: qemu -device x,packed={packed},queue-size={q}\n\
                    //! vireo-test: append size={q}\n";
        let combos = parse(text, "vireo-test:").unwrap().expand();
        assert_eq!(combos.len(), 6);
        assert_eq!(combos[0].0, "packed=on,q=16");
        assert_eq!(combos[0].1.qemu, ["-device", "x,packed=on,queue-size=16"]);
        assert_eq!(combos[5].1.qemu, ["-device", "x,packed=off,queue-size=7"]);
        assert_eq!(combos[5].1.append, ["size=7"]);
        let plain = parse("//! vireo-test: qemu -a\n", "vireo-test:")
            .unwrap()
            .expand();
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].0, "");
    }

    #[test]
    fn machines_are_an_axis() {
        let text = "//! vireo-test: machines q35 microvm\n//! vireo-test: matrix packed=on,off\n\
                    //! vireo-test: qemu -device virtio-blk-pci,packed={packed}\n";
        let combos = parse(text, "vireo-test:").unwrap().expand();
        let labels: Vec<_> = combos
            .iter()
            .map(|(l, d)| (l.as_str(), d.machine))
            .collect();
        assert_eq!(
            labels,
            [
                ("machine=q35,packed=on", Machine::Q35),
                ("machine=q35,packed=off", Machine::Q35),
                ("machine=microvm,packed=on", Machine::Microvm),
                ("machine=microvm,packed=off", Machine::Microvm),
            ]
        );
        let one = parse("//! vireo-test: machines microvm\n", "vireo-test:")
            .unwrap()
            .expand();
        assert_eq!(
            (one[0].0.as_str(), one[0].1.machine),
            ("", Machine::Microvm)
        );
        assert_eq!(
            parse("", "vireo-test:").unwrap().expand()[0].1.machine,
            Machine::Q35
        );
        assert!(parse("//! vireo-test: machines pc\n", "vireo-test:").is_err());
    }

    #[test]
    fn rejects_unknown_directives() {
        assert!(parse("//! vireo-test: qemmu -x\n", "vireo-test:").is_err());
        assert!(parse("//! vireo-test: timeout soon\n", "vireo-test:").is_err());
        assert!(
            parse(
                "//! vireo-test: garbage 10 52:54:00:12:34:56\n",
                "vireo-test:"
            )
            .is_err()
        );
    }
}
