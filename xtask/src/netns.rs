//! Network namespaces with a tap, for the tap backend of `cargo xtask bench net` and for test
//! images with the `netns` directive: created with the tap up, and deleted (with the tap and
//! everything else in it) when dropped, also on an early return.

use std::{ffi::CString, fs::File, os::fd::AsRawFd, process::Command, thread};

/// A network namespace with one tap, deleted (with everything in it) when dropped.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    tap: String,
}

impl NetNs {
    /// Creates the namespace `name` with the tap `tap` = `host_ip`/24, up. The tap's queue
    /// towards QEMU holds 16,384 frames, so a burst the guest is slow to take waits there.
    pub fn create(name: &str, tap: &str, host_ip: &str) -> Result<Self, String> {
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
            tap: tap.to_string(),
        };
        let n = name;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&["-n", n, "tuntap", "add", "dev", tap, "mode", "tap"])?;
        ip(&["-n", n, "link", "set", tap, "txqueuelen", "16384"])?;
        ip(&["-n", n, "addr", "add", &format!("{host_ip}/24"), "dev", tap])?;
        ip(&["-n", n, "link", "set", tap, "up"])?;
        Ok(ns)
    }

    /// The name `vireo-WHAT-PID` for this process.
    pub fn name_for(what: &str) -> String {
        format!("vireo-{what}-{}", std::process::id())
    }

    /// `cmd` run inside the namespace.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        c
    }

    /// Runs `f` on a thread of its own that has entered the namespace: sockets it opens (and
    /// threads it starts) live there, whatever thread uses them afterwards.
    pub fn run_inside<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send,
    ) -> Result<T, String> {
        let path = format!("/run/netns/{}", self.name);
        let ns = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: `setns` only changes the calling thread's network namespace; `ns` is
                // an open namespace file for the whole call.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(format!(
                        "entering {}: {}",
                        self.name,
                        std::io::Error::last_os_error()
                    ));
                }
                f()
            })
            .join()
            .map_err(|_| "a thread inside the namespace panicked".to_string())?
        })
    }

    /// The tap's MAC address.
    pub fn tap_mac(&self) -> Result<[u8; 6], String> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j", "link", "show", "dev", &self.tap])
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        let links: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("ip -j link show: {e}"))?;
        let mac = links[0]["address"]
            .as_str()
            .ok_or_else(|| format!("no MAC for {}", self.tap))?;
        crate::garbage::parse_mac(mac)
    }

    /// The interface index of the tap, read inside the namespace.
    pub fn tap_index(&self) -> Result<u32, String> {
        let name = CString::new(self.tap.as_str()).map_err(|e| e.to_string())?;
        self.run_inside(|| {
            // SAFETY: `name` is a NUL-terminated string that outlives the call.
            match unsafe { libc::if_nametoindex(name.as_ptr()) } {
                0 => Err(format!("no interface {}", self.tap)),
                i => Ok(i),
            }
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
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
