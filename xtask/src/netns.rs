//! A network namespace for the tap backend of `cargo xtask bench net`: created with a tap and
//! deleted (with the tap and everything else in it) when dropped, also on an early return.

use std::process::Command;

/// A network namespace with the tap, deleted (with everything in it) when dropped.
#[derive(Debug)]
pub struct NetNs(String);

impl NetNs {
    /// Creates `vireo-bench-PID` with the tap `tap` = `host_ip`/24, up.
    pub fn create(tap: &str, host_ip: &str) -> Result<Self, String> {
        let name = format!("vireo-bench-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Self(name);
        let n = ns.0.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&["-n", n, "tuntap", "add", "dev", tap, "mode", "tap"])?;
        ip(&["-n", n, "addr", "add", &format!("{host_ip}/24"), "dev", tap])?;
        ip(&["-n", n, "link", "set", tap, "up"])?;
        Ok(ns)
    }

    /// `cmd` run inside the namespace.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.0]) {
            eprintln!("xtask: could not delete the network namespace: {e}");
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}
