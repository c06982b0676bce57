//! The kernel's device layer, shared by every virtio device type: finding a type's devices (PCI
//! functions and virtio-mmio windows), command-line options, interrupts (MSI-X entry 0 for
//! configuration changes and 1 + i for queue i; a virtio-mmio device's one line; or polling),
//! bounded waits on a queue, and reset-and-recover. `block` and `net` own their
//! device's state and API; the plumbing is here.

use alloc::{string::String, vec::Vec};
use core::{fmt, time::Duration};

use vireo_virtio::{
    transport::{WaitBudget, pci_device_type},
    wait::{self, WaitQueue, Waited},
};

use super::{IrqEvent, IrqWait, KernelClock, Location, MsixVectors, line::IrqLine, mmio};
use crate::pci;

/// The time a device gets to reset.
pub const RESET_BUDGET: Duration = Duration::from_secs(1);
/// Polled waits look at the clock this often (a clock read can cost a VM exit).
const POLLS_PER_CLOCK_CHECK: u32 = 1024;

/// Every device of `device_type` (virtio 1.2 §5: 1 network, 2 block, ...): the virtio PCI
/// functions (modern or transitional) in PCI order, then the virtio-mmio devices.
pub fn functions(device_type: u16) -> impl Iterator<Item = Location> {
    let pci = pci::devices()
        .iter()
        .filter(move |d| pci_device_type(*d).is_ok_and(|t| t == device_type))
        .map(Location::Pci);
    let mmio = mmio::devices()
        .iter()
        .filter(move |d| d.device_type() == device_type)
        .map(Location::Mmio);
    pci.chain(mmio)
}

/// How a device's used buffers are noticed: MSI-X (entry 0 for configuration changes, 1 + i for
/// queue i), a virtio-mmio device's line (shared by its queues and configuration changes), or
/// polling. Dropping it masks and frees the vectors.
pub struct Interrupts {
    msix: Option<MsixVectors>,
    line: Option<IrqLine>,
    polled: bool,
    /// The configuration vector's count when a change was last handled.
    config_seen: u64,
}

impl fmt::Debug for Interrupts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupts")
            .field("msix", &self.msix)
            .field("line", &self.line)
            .field("polled", &self.polled)
            .finish_non_exhaustive()
    }
}

impl Interrupts {
    /// For a PCI function, one MSI-X vector per queue plus one for configuration changes; for a
    /// virtio-mmio device, its line routed through the IOAPIC; nothing when `polled`. Polling
    /// when the interrupts cannot be set up (said in the log, as `what`).
    pub fn new(device: Location, queues: u16, polled: bool, what: &str) -> Self {
        let (mut msix, mut line) = (None, None);
        if !polled {
            let set_up = match device {
                Location::Pci(d) => MsixVectors::enable(d, 1 + usize::from(queues))
                    .map(|m| msix = Some(m))
                    .map_err(|e| alloc::format!("{e}")),
                Location::Mmio(d) => IrqLine::route(d)
                    .map(|l| line = Some(l))
                    .map_err(|e| alloc::format!("{e}")),
            };
            if let Err(e) = set_up {
                log::warn!("{what} {device}: {e}; completions will be polled");
            }
        }
        Self {
            msix,
            line,
            polled,
            config_seen: 0,
        }
    }

    /// The MSI-X entry of each of `queues` queues, for the transport (`None` without MSI-X).
    pub fn queue_vectors(&self, queues: u16) -> Vec<Option<u16>> {
        let entries = self.msix.as_ref().map_or(0, MsixVectors::len);
        (0..queues)
            .map(|q| (usize::from(q) + 1 < entries).then_some(q + 1))
            .collect()
    }

    /// The MSI-X entry for configuration changes, if there are vectors.
    pub fn config_vector(&self) -> Option<u16> {
        self.msix.as_ref().map(|_| 0)
    }

    /// Whether waits sleep on interrupts (vectors exist and polling was not asked for).
    pub fn interrupt_driven(&self) -> bool {
        (self.msix.is_some() || self.line.is_some()) && !self.polled
    }

    /// Switches between polling (`true`) and sleeping on interrupts (needs vectors).
    pub fn set_polled(&mut self, polled: bool) {
        self.polled = polled;
    }

    /// The event to sleep on for `queue`; `None` when polling.
    pub fn queue_event(&self, queue: u16) -> Option<IrqEvent> {
        if self.polled {
            return None;
        }
        if let Some(line) = &self.line {
            return Some(line.event());
        }
        self.msix.as_ref()?.event(usize::from(queue) + 1)
    }

    /// Whether the configuration vector fired since the last call that said so.
    pub fn config_changed(&mut self) -> bool {
        let count = match (&self.line, self.msix.as_ref().and_then(|m| m.event(0))) {
            (Some(line), _) => line.config_count(),
            (None, Some(event)) => event.count(),
            (None, None) => return false,
        };
        let changed = count != self.config_seen;
        self.config_seen = count;
        changed
    }

    /// Interrupts received on the queues' vectors so far.
    pub fn queue_interrupts(&self) -> u64 {
        if let Some(line) = &self.line {
            return line.event().count();
        }
        self.msix.as_ref().map_or(0, |m| {
            (1..m.len())
                .filter_map(|entry| m.event(entry))
                .map(|e| e.count())
                .sum()
        })
    }

    /// Masks or unmasks `queue`'s vector (tests take interrupts away with it); a virtio-mmio
    /// device's line serves every queue, so masking it masks them all.
    pub fn mask_queue(&self, queue: u16, masked: bool) {
        if let Some(line) = &self.line {
            line.set_masked(masked);
        }
        if let Some(m) = &self.msix {
            m.set_masked(usize::from(queue) + 1, masked);
        }
    }
}

/// Waits until `queue` yields its output or the tick count reaches `deadline`: asleep on `event`
/// (looking at the ring at every tick, [`vireo_virtio::wait`]), or polling when there is none.
///
/// # Errors
/// The queue's.
pub fn wait_queue<Q: WaitQueue>(
    event: Option<IrqEvent>,
    queue: &mut Q,
    deadline: u64,
) -> Result<Waited<Q::Output>, Q::Error> {
    if let Some(event) = event {
        return wait::wait(&IrqWait(event), queue, deadline);
    }
    let mut polls = 0u32;
    loop {
        if let Some(out) = queue.take()? {
            return Ok(Waited::Ready(out));
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(POLLS_PER_CLOCK_CHECK) && crate::time::ticks() >= deadline {
            return Ok(Waited::TimedOut);
        }
        core::hint::spin_loop();
    }
}

/// Resets and re-initialises a device within [`RESET_BUDGET`]: `reinit` gets the budget, the
/// queues' MSI-X entries and the configuration entry, and does the driver's part. Its error is
/// logged (as `what`): the device then stays down and every later request fails.
pub fn recover<E: fmt::Display>(
    interrupts: &Interrupts,
    queues: u16,
    what: &str,
    reinit: impl FnOnce(&mut WaitBudget<'_>, &[Option<u16>], Option<u16>) -> Result<(), E>,
) {
    let clock = KernelClock;
    let mut budget = WaitBudget::new(&clock, RESET_BUDGET.as_nanos() as u64);
    let vectors = interrupts.queue_vectors(queues);
    if let Err(e) = reinit(&mut budget, &vectors, interrupts.config_vector()) {
        log::error!("{what}: re-initialisation failed: {e}");
    }
}

/// Runs `f` with a [`RESET_BUDGET`] budget on the kernel clock (device bring-up).
pub fn with_budget<R>(f: impl FnOnce(&mut WaitBudget<'_>) -> R) -> R {
    let clock = KernelClock;
    let mut budget = WaitBudget::new(&clock, RESET_BUDGET.as_nanos() as u64);
    f(&mut budget)
}

/// A virtio device found at boot that could not be brought up: it is absent from its type's
/// list (`block::devices()`, `net::devices()`). Each was logged once, at `warn`, as its
/// `Display` shows it: the reason and, on the same line, the hint.
#[derive(Debug, Clone)]
pub struct FailedDevice {
    /// The device type's name (`virtio-blk`, `virtio-net`).
    pub kind: &'static str,
    /// Where it is.
    pub location: Location,
    /// Why it is not usable (the error's message).
    pub reason: String,
    /// What a user can do about it: the `vireo.*` option or QEMU property to change, or that the
    /// device is broken (the error's `hint()`, e.g.
    /// [`TransportError::hint`](vireo_virtio::transport::TransportError::hint)); `None` when
    /// the error has none.
    pub hint: Option<&'static str>,
}

impl fmt::Display for FailedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: not usable: {}",
            self.kind, self.location, self.reason
        )?;
        match self.hint {
            Some(hint) => write!(f, "; hint: {hint}"),
            None => Ok(()),
        }
    }
}

static FAILED: spin::Mutex<Vec<FailedDevice>> = spin::Mutex::new(Vec::new());

/// Every device that could not be brought up at boot, why, and what to do about it (each was
/// logged once, at `warn`).
pub fn failed_devices() -> Vec<FailedDevice> {
    FAILED.lock().clone()
}

/// Logs `failed` once, at `warn`, and keeps it for [`failed_devices`].
pub(super) fn report_failed(failed: FailedDevice) {
    log::warn!("{failed}");
    FAILED.lock().push(failed);
}

/// Brings up every device of `device_type` with `probe`, logging each device (as `what`) or
/// why it is not usable and what to do about it (`hint` gives the error's hint), kept for
/// [`failed_devices`].
pub fn probe_each<D: fmt::Display, E: fmt::Display>(
    device_type: u16,
    what: &'static str,
    probe: impl Fn(Location) -> Result<D, E>,
    hint: impl Fn(&E) -> Option<&'static str>,
) -> Vec<D> {
    functions(device_type)
        .filter_map(|d| match probe(d) {
            Ok(dev) => {
                log::info!("{dev}");
                Some(dev)
            }
            Err(e) => {
                report_failed(FailedDevice {
                    kind: what,
                    location: d,
                    reason: alloc::format!("{e}"),
                    hint: hint(&e),
                });
                None
            }
        })
        .collect()
}

/// Logs a missed wake-up ([`vireo_virtio::wait`]): a used buffer found at a timer tick without
/// its interrupt. The device's first (`count == 1`) goes to `warn`, later ones to `debug`.
pub fn report_missed_wakeup(
    what: &str,
    queue: u16,
    count: u64,
    event: Option<IrqEvent>,
    seen: u64,
    ring: &dyn fmt::Display,
) {
    let report = format_args!(
        "{what}: queue {queue}: a used buffer was in the ring at a timer tick without its \
         interrupt (missed wake-up #{count}; vector {:?} fired {} times since the wait began); \
         ring: {ring}",
        event.map(|e| e.vector()),
        event.map_or(0, |e| e.count().wrapping_sub(seen)),
    );
    if count == 1 {
        log::warn!("{report}");
    } else {
        log::debug!("{report}");
    }
}
