//! Which accelerator a boot of `cargo xtask run` (or the cargo runner) uses, and why.
//!
//! KVM is the fast choice only when `/dev/kvm` runs guest code natively. The PVM hypervisor
//! (`kvm_pvm`) also answers on `/dev/kvm`, but it runs a guest that is not built for PVM (every
//! Vireo image) through its instruction emulator: measured with QEMU's `query-stats`, 12.3 million
//! emulated instructions in 20 s, and a 2-million-iteration arithmetic loop in 28.7 s against
//! 25 ms under TCG. There TCG is the faster accelerator by three orders of magnitude.
//!
//! Elsewhere a quick probe ([`kvmprobe`]) times a short guest loop on `/dev/kvm` (tens of
//! microseconds of guest time natively): a KVM that takes longer than
//! [`SLOW_KVM`] for it runs guest code slower than TCG would, and TCG is chosen.

use std::{fmt, path::Path, time::Duration};

use crate::{
    kvmprobe,
    qemu::{self, Accel},
};

/// Where the kernel lists the PVM hypervisor module when it is loaded.
const PVM_MODULE: &str = "/sys/module/kvm_pvm";

/// The probe's CPU time above which KVM counts as slower than TCG: 2 ms for its 100,000
/// instructions is 50 million a second, below TCG's pace on such loops (the arithmetic loop above
/// runs 80 million iterations a second under TCG) and about a hundred times below a native KVM's.
/// PVM, which the probe is not needed for, takes 20 to 55 ms (measured on two machines).
pub const SLOW_KVM: Duration = Duration::from_millis(2);

/// An accelerator and the reason it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The accelerator QEMU runs with.
    pub accel: Accel,
    /// Why, in words for the one line `xtask` prints.
    pub why: String,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "accelerator {}: {}", self.accel, self.why)
    }
}

/// What the machine offers, as far as the choice is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Host {
    /// `/dev/kvm` opens for reading and writing.
    kvm_opens: bool,
    /// `/dev/kvm` is the PVM hypervisor.
    pvm: bool,
    /// The CPU time of [`kvmprobe::measure`] (only where KVM opens and is not PVM).
    probe: Option<Result<Duration, String>>,
}

/// The accelerator for a boot: `requested` (`--accel`) when given (KVM must open), else the one
/// that runs Vireo's guest code fastest here.
///
/// # Errors
/// `--accel kvm` on a machine where `/dev/kvm` does not open.
pub fn choose(requested: Option<Accel>) -> Result<Choice, String> {
    if let Some(a) = requested {
        // Checks that a forced KVM is usable.
        let accel = qemu::choose_accel(Some(a))?;
        return Ok(Choice {
            accel,
            why: "asked for with --accel".into(),
        });
    }
    let kvm_opens = qemu::choose_accel(None)? == Accel::Kvm;
    let pvm = Path::new(PVM_MODULE).exists();
    let host = Host {
        kvm_opens,
        pvm,
        probe: (kvm_opens && !pvm).then(kvmprobe::measure),
    };
    Ok(decide(host))
}

fn decide(host: Host) -> Choice {
    let (accel, why) = match host {
        Host {
            kvm_opens: false, ..
        } => (Accel::Tcg, "/dev/kvm is missing or cannot be opened".to_string()),
        Host { pvm: true, .. } => (
            Accel::Tcg,
            "/dev/kvm is the PVM hypervisor (kvm_pvm), which emulates every instruction of a guest \
             not built for PVM, about 1000 times slower than TCG (--accel kvm forces it)"
                .to_string(),
        ),
        Host {
            probe: Some(Err(e)),
            ..
        } => (
            Accel::Tcg,
            format!("a probe could not run guest code on /dev/kvm ({e}); --accel kvm forces it"),
        ),
        Host {
            probe: Some(Ok(took)),
            ..
        } if took > SLOW_KVM => (
            Accel::Tcg,
            format!(
                "/dev/kvm took {took:.1?} for a {}-iteration guest loop, slower than TCG runs it: \
                 it emulates instructions (--accel kvm forces it)",
                kvmprobe::LOOP_ITERATIONS
            ),
        ),
        Host { probe, .. } => (
            Accel::Kvm,
            format!(
                "/dev/kvm runs guest code natively{} (--accel tcg forces emulation)",
                match probe {
                    Some(Ok(took)) => format!(
                        " (a {}-iteration loop in {took:.1?})",
                        kvmprobe::LOOP_ITERATIONS
                    ),
                    _ => String::new(),
                }
            ),
        ),
    };
    Choice { accel, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(kvm_opens: bool, pvm: bool, probe: Option<Result<Duration, String>>) -> Host {
        Host {
            kvm_opens,
            pvm,
            probe,
        }
    }

    #[test]
    fn pvm_and_missing_kvm_mean_tcg() {
        let fast = || Some(Ok(Duration::from_micros(40)));
        let pick = |kvm_opens, pvm| decide(host(kvm_opens, pvm, fast())).accel;
        assert_eq!(pick(true, false), Accel::Kvm);
        assert_eq!(pick(true, true), Accel::Tcg);
        assert_eq!(pick(false, false), Accel::Tcg);
        assert_eq!(pick(false, true), Accel::Tcg);
        assert!(decide(host(true, true, None)).why.contains("kvm_pvm"));
    }

    #[test]
    fn a_slow_or_failing_probe_means_tcg() {
        let slow = decide(host(true, false, Some(Ok(Duration::from_millis(165)))));
        assert_eq!(slow.accel, Accel::Tcg);
        assert!(slow.why.contains("slower than TCG"), "{}", slow.why);
        let failed = decide(host(true, false, Some(Err("KVM_RUN: EFAULT".into()))));
        assert_eq!(failed.accel, Accel::Tcg);
        assert!(failed.why.contains("KVM_RUN: EFAULT"), "{}", failed.why);
        let native = decide(host(true, false, Some(Ok(SLOW_KVM / 100))));
        assert_eq!(native.accel, Accel::Kvm);
        assert!(native.why.contains("natively"), "{}", native.why);
    }

    /// The probe against this machine's `/dev/kvm`, where it opens: it runs its guest to `hlt`,
    /// and the PVM hypervisor (which emulates it) is measured slower than [`SLOW_KVM`].
    #[test]
    fn the_probe_runs_where_kvm_opens() {
        if qemu::choose_accel(None).ok() != Some(Accel::Kvm) {
            return;
        }
        let took = kvmprobe::measure().expect("the probe guest runs to hlt");
        if Path::new(PVM_MODULE).exists() {
            assert!(took > SLOW_KVM, "PVM ran the probe in {took:?}");
        }
    }

    #[test]
    fn a_request_wins() {
        let c = choose(Some(Accel::Tcg)).unwrap();
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.to_string().starts_with("accelerator tcg: asked for"));
    }
}
