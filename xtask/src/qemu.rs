//! Building QEMU command lines and reading QEMU's exit status.

use std::{
    fmt,
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    str::FromStr,
};

use crate::{artifacts, directives::Directives, setup::QEMU, sitetar};

/// QEMU's status when the guest wrote `ExitCode::Success` (0x10) to `isa-debug-exit`.
pub const GUEST_SUCCESS: i32 = 33;
/// QEMU's status when the guest wrote `ExitCode::Failure` (0x11).
pub const GUEST_FAILURE: i32 = 35;

/// qboot: boots in a fraction of SeaBIOS's time (it leaves PCI BARs to the kernel).
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            _ => Err(format!("unknown accelerator `{s}` (kvm or tcg)")),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        })
    }
}

fn kvm_usable() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The accelerator to use: the requested one (KVM must be usable), else KVM when `/dev/kvm` opens.
pub fn choose_accel(requested: Option<Accel>) -> Result<Accel, String> {
    match requested {
        Some(Accel::Kvm) if !kvm_usable() => Err("--accel kvm: /dev/kvm cannot be opened".into()),
        Some(a) => Ok(a),
        None => Ok(if kvm_usable() { Accel::Kvm } else { Accel::Tcg }),
    }
}

/// The machine type a boot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Machine {
    /// `-machine q35` with qboot (SeaBIOS without it): PCI Express, virtio-pci devices.
    #[default]
    Q35,
    /// `-machine microvm` (with qboot too): no PCI; virtio-mmio devices, found by the kernel from
    /// ACPI (or the command line when ACPI is off), one interrupt line each.
    Microvm,
}

impl std::str::FromStr for Machine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "q35" => Ok(Self::Q35),
            "microvm" => Ok(Self::Microvm),
            _ => Err(format!("unknown machine `{s}` (q35 or microvm)")),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Q35 => "q35",
            Self::Microvm => "microvm",
        })
    }
}

/// Properties of a virtio PCI device that mean nothing to its virtio-mmio form; dropped when a
/// `-device virtio-X-pci,...` argument is carried over to `microvm`.
const PCI_ONLY_PROPERTIES: [&str; 6] = [
    "disable-legacy",
    "disable-modern",
    "vectors",
    "romfile",
    "rombar",
    "multifunction",
];

/// A `-device` value for `machine`: on `microvm`, `virtio-X-pci` becomes `virtio-X-device` without
/// its PCI-only properties. A device placed on the PCI topology (`bus=`, `addr=`) or any other
/// PCI device cannot be carried over: an error names it.
pub fn device_for(machine: Machine, device: &str) -> Result<String, String> {
    if machine == Machine::Q35 {
        return Ok(device.to_string());
    }
    let mut parts = device.split(',');
    let model = parts.next().unwrap_or_default();
    let Some(kind) = model
        .strip_prefix("virtio-")
        .and_then(|m| m.strip_suffix("-pci"))
    else {
        return Ok(device.to_string());
    };
    let mut out = vec![format!("virtio-{kind}-device")];
    for p in parts {
        let key = p.split('=').next().unwrap_or_default();
        if key == "bus" || key == "addr" {
            return Err(format!(
                "`-device {device}` sits on the PCI topology: it cannot boot on {machine}"
            ));
        }
        if !PCI_ONLY_PROPERTIES.contains(&key) {
            out.push(p.to_string());
        }
    }
    Ok(out.join(","))
}

/// The arguments that select the accelerator and CPU model.
pub fn accel_args(accel: Accel) -> Vec<String> {
    let args: &[&str] = match accel {
        // Nested KVM here rejects the host's MSR 0x10a (arch capabilities): mask it.
        Accel::Kvm => &["-accel", "kvm", "-cpu", "host,-arch-capabilities"],
        Accel::Tcg => &["-accel", "tcg", "-cpu", "max"],
    };
    args.iter().map(|s| s.to_string()).collect()
}

/// The QEMU command that boots `image` with `dirs` applied; `scope` names the disk images it creates.
pub fn command(
    image: &Path,
    accel: Accel,
    dirs: &Directives,
    extra_cmdline: &str,
    scope: &str,
) -> Result<Command, String> {
    let mut cmd = Command::new(QEMU);
    let machine = dirs.machine;
    cmd.args(["-machine", &machine.to_string()]);
    cmd.args(["-smp", "1", "-nodefaults", "-display", "none"]);
    cmd.args(["-serial", "stdio", "-no-reboot"]);
    cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    // qboot on both machines when installed (microvm's own default, `bios-microvm.bin`, is a
    // SeaBIOS build in Debian's QEMU).
    if Path::new(QBOOT).exists() {
        cmd.args(["-bios", QBOOT]);
    }
    if machine == Machine::Microvm {
        // Its virtio-mmio devices are legacy (version 1) unless told otherwise, and Vireo drives
        // version 2.
        cmd.args(["-global", "virtio-mmio.force-legacy=false"]);
    }
    if !dirs.qemu.iter().any(|a| a == "-m") {
        cmd.args(["-m", "256M"]);
    }
    if !dirs.qemu.iter().any(|a| a == "-cpu" || a == "-accel") {
        cmd.args(accel_args(accel));
    } else {
        cmd.args(["-accel", &accel.to_string()]);
    }
    cmd.arg("-kernel").arg(image);
    let mut cmdline: Vec<&str> = dirs.append.iter().map(String::as_str).collect();
    if !extra_cmdline.is_empty() {
        cmdline.push(extra_cmdline);
    }
    if !cmdline.is_empty() {
        cmd.arg("-append").arg(cmdline.join(" "));
    }
    let mut device_next = false;
    for arg in &dirs.qemu {
        let arg = expand(arg, scope, dirs.host_port)?;
        let arg = if device_next {
            device_for(machine, &arg)?
        } else {
            arg
        };
        device_next = arg == "-device";
        cmd.arg(arg);
    }
    Ok(cmd)
}

/// Replaces the placeholders in `arg`:
///
/// - `{disk:NAME:SIZE}`: a fresh zero-filled image under `target/vireo-disks/`;
/// - `{tar:DIR}`: an ordinary ustar archive of the files under DIR (relative to the repository
///   root), built afresh under `target/vireo-disks/`;
/// - `{hostport:DEFAULT}`: `host_port`, or DEFAULT when there is none (a host port QEMU forwards).
fn expand(arg: &str, scope: &str, host_port: Option<u16>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = arg;
    while let Some((start, kind)) = ["{disk:", "{tar:", "{hostport:"]
        .iter()
        .filter_map(|k| Some((rest.find(k)?, *k)))
        .min()
    {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{kind}` in `{arg}`"))?;
        let spec = &rest[start + kind.len()..start + end];
        match kind {
            "{disk:" => {
                let (name, size) = spec.split_once(':').ok_or_else(|| {
                    format!("`{{disk:{spec}}}` needs NAME:SIZE, e.g. `{{disk:scratch:64M}}`")
                })?;
                let size = parse_size(size).map_err(|e| {
                    format!(
                        "`{{disk:{spec}}}`: {e}: SIZE is a number of bytes, optionally with K, M \
                         or G (`64M`, `1G`)"
                    )
                })?;
                let path = create_disk(&disk_path(scope, name), size)?;
                out.push_str(&path.display().to_string());
            }
            "{tar:" => {
                let dir = artifacts::workspace_root().join(spec);
                let name = dir
                    .file_name()
                    .ok_or_else(|| format!("`{{tar:{spec}}}` names no directory"))?
                    .to_string_lossy()
                    .into_owned();
                let path = disk_path(scope, &name).with_extension("tar");
                sitetar::write(&dir, &path)?;
                out.push_str(&path.display().to_string());
            }
            _ => match host_port {
                Some(port) => out.push_str(&port.to_string()),
                None => {
                    let port: u16 = spec
                        .parse()
                        .map_err(|_| format!("`{{hostport:{spec}}}` needs a port number"))?;
                    out.push_str(&port.to_string());
                }
            },
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `64M`, `1G`, `4096`, `512K`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().map_err(|_| format!("bad size `{s}`"))?;
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("bad size unit in `{s}`")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size `{s}` overflows"))
}

/// Where the disk `{disk:NAME:...}` of the image or command `scope` lives.
pub fn disk_path(scope: &str, name: &str) -> PathBuf {
    artifacts::target_dir()
        .join("vireo-disks")
        .join(format!("{scope}-{name}.img"))
}

/// Creates (or empties) the image at `path` with `size` zero bytes.
pub fn create_disk(path: &Path, size: u64) -> Result<PathBuf, String> {
    let dir = path.parent().expect("disk paths have a directory");
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create the disk directory {}: {e}; it must be a writable directory: move \
             away what is in the way or fix its permissions (or set CARGO_TARGET_DIR to a \
             writable place)",
            dir.display()
        )
    })?;
    let path = path.to_path_buf();
    let file = std::fs::File::create(&path).map_err(|e| {
        format!(
            "cannot create the disk image {}: {e}; it must be a writable file: remove what is \
             there or fix its permissions",
            path.display()
        )
    })?;
    file.set_len(size).map_err(|e| {
        format!(
            "sizing {} to {size} bytes: {e} (the disk needs that much room: free space there, or \
             give a smaller SIZE in `{{disk:NAME:SIZE}}`)",
            path.display()
        )
    })?;
    Ok(path)
}

/// How a QEMU run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reported success.
    Success,
    /// The guest reported failure (panic, fault, or an error from `main`).
    Failure,
    /// QEMU exited with another status (its own error, or the guest reset with `-no-reboot`).
    Other(i32),
    /// QEMU was killed by a signal, or by the harness after its time limit.
    Killed,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Success => f.write_str("guest exited with success"),
            Self::Failure => f.write_str("guest exited with its failure code"),
            Self::Other(0) => f.write_str(
                "QEMU exited with status 0: the guest reset or shut down without reporting",
            ),
            Self::Other(c) => write!(f, "QEMU exited with status {c}"),
            Self::Killed => f.write_str("QEMU was killed"),
        }
    }
}

/// Maps QEMU's exit status.
pub fn outcome(status: ExitStatus) -> Outcome {
    match status.code() {
        Some(GUEST_SUCCESS) => Outcome::Success,
        Some(GUEST_FAILURE) => Outcome::Failure,
        Some(c) => Outcome::Other(c),
        None => Outcome::Killed,
    }
}

/// Sends one command to QEMU's QMP socket (after the capabilities handshake) and returns QEMU's
/// answer line.
///
/// # Errors
/// A connection or protocol failure, or an `error` answer from QEMU.
pub fn qmp_command(socket: &Path, command: &str) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("QMP connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| format!("QMP: {e}"))?;
    let mut writer = stream.try_clone().map_err(|e| format!("QMP: {e}"))?;
    let mut reader = BufReader::new(stream);
    // Answers are the lines with "return" or "error"; events in between are skipped.
    let answer =
        |reader: &mut BufReader<std::os::unix::net::UnixStream>| -> Result<String, String> {
            let mut line = String::new();
            loop {
                line.clear();
                if reader
                    .read_line(&mut line)
                    .map_err(|e| format!("QMP read: {e}"))?
                    == 0
                {
                    return Err("QMP: QEMU closed the connection".into());
                }
                if line.contains("\"return\"") || line.contains("\"error\"") {
                    return Ok(line.trim().to_string());
                }
            }
        };
    let mut greeting = String::new();
    reader
        .read_line(&mut greeting)
        .map_err(|e| format!("QMP greeting: {e}"))?;
    for cmd in [r#"{"execute":"qmp_capabilities"}"#, command] {
        writeln!(writer, "{cmd}").map_err(|e| format!("QMP write: {e}"))?;
        let reply = answer(&mut reader)?;
        if reply.contains("\"error\"") {
            return Err(format!("QMP `{cmd}` failed: {reply}"));
        }
        if cmd == command {
            return Ok(reply);
        }
    }
    unreachable!("the loop returns on the last command")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("12Q").is_err());
        let e = expand("file={disk:d0:12Q}", "t", None).unwrap_err();
        assert!(
            e.contains("`{disk:d0:12Q}`") && e.contains("K, M or G"),
            "{e}"
        );
        let e = expand("file={disk:d0}", "t", None).unwrap_err();
        assert!(e.contains("NAME:SIZE"), "{e}");
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn a_disk_that_cannot_be_created_names_the_fix() {
        let blocker =
            std::env::temp_dir().join(format!("xtask-disk-blocker-{}", std::process::id()));
        std::fs::write(&blocker, b"a file where the directory should be").unwrap();
        let e = create_disk(&blocker.join("d.img"), 4096).unwrap_err();
        std::fs::remove_file(&blocker).unwrap();
        assert!(e.contains("cannot create the disk directory"), "{e}");
        assert!(e.contains("move away what is in the way"), "{e}");
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            expand("hostfwd=tcp:127.0.0.1:{hostport:8080}-:80", "t", None),
            Ok("hostfwd=tcp:127.0.0.1:8080-:80".into())
        );
        assert_eq!(
            expand("a{hostport:8080}b{hostport:1}", "t", Some(40123)),
            Ok("a40123b40123".into())
        );
        assert!(expand("{hostport:http}", "t", None).is_err());
        assert!(expand("{tar:kernel/examples/site", "t", None).is_err());
        assert_eq!(expand("plain", "t", None), Ok("plain".into()));
    }

    #[test]
    fn accel_names() {
        assert_eq!("kvm".parse(), Ok(Accel::Kvm));
        assert_eq!("tcg".parse(), Ok(Accel::Tcg));
        assert!("xen".parse::<Accel>().is_err());
    }
}
