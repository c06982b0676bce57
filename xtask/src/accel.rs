//! Which accelerator a boot of `cargo xtask run` (or the cargo runner) uses, and why.
//!
//! KVM is the fast choice only when `/dev/kvm` runs guest code natively. The PVM hypervisor
//! (`kvm_pvm`) also answers on `/dev/kvm`, but it runs a guest that is not built for PVM (every
//! Vireo image) through its instruction emulator: measured with QEMU's `query-stats`, 12.3 million
//! emulated instructions in 20 s, and a 2-million-iteration arithmetic loop in 28.7 s against
//! 25 ms under TCG. There TCG is the faster accelerator by three orders of magnitude.

use std::{fmt, path::Path};

use crate::qemu::{self, Accel};

/// Where the kernel lists the PVM hypervisor module when it is loaded.
const PVM_MODULE: &str = "/sys/module/kvm_pvm";

/// An accelerator and the reason it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The accelerator QEMU runs with.
    pub accel: Accel,
    /// Why, in words for the one line `xtask` prints.
    pub why: &'static str,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "accelerator {}: {}", self.accel, self.why)
    }
}

/// What the machine offers, as far as the choice is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Host {
    /// `/dev/kvm` opens for reading and writing.
    kvm_opens: bool,
    /// `/dev/kvm` is the PVM hypervisor.
    pvm: bool,
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
            why: "asked for with --accel",
        });
    }
    let host = Host {
        kvm_opens: qemu::choose_accel(None)? == Accel::Kvm,
        pvm: Path::new(PVM_MODULE).exists(),
    };
    Ok(decide(host))
}

fn decide(host: Host) -> Choice {
    match host {
        Host {
            kvm_opens: false, ..
        } => Choice {
            accel: Accel::Tcg,
            why: "/dev/kvm is missing or cannot be opened",
        },
        Host { pvm: true, .. } => Choice {
            accel: Accel::Tcg,
            why: "/dev/kvm is the PVM hypervisor (kvm_pvm), which emulates every instruction of a \
                  guest not built for PVM, about 1000 times slower than TCG (--accel kvm forces it)",
        },
        _ => Choice {
            accel: Accel::Kvm,
            why: "/dev/kvm runs guest code natively (--accel tcg forces emulation)",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_and_missing_kvm_mean_tcg() {
        let pick = |kvm_opens, pvm| decide(Host { kvm_opens, pvm }).accel;
        assert_eq!(pick(true, false), Accel::Kvm);
        assert_eq!(pick(true, true), Accel::Tcg);
        assert_eq!(pick(false, false), Accel::Tcg);
        assert_eq!(pick(false, true), Accel::Tcg);
        assert!(
            decide(Host {
                kvm_opens: true,
                pvm: true
            })
            .why
            .contains("kvm_pvm")
        );
    }

    #[test]
    fn a_request_wins() {
        let c = choose(Some(Accel::Tcg)).unwrap();
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.to_string().starts_with("accelerator tcg: asked for"));
    }
}
