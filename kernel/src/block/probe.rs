//! Finding virtio-blk functions and bringing them up.

use alloc::{string::String, vec::Vec};
use core::time::Duration;

use vireo_drivers::blk::{BlkDriver, BlkOptions};
use vireo_virtio::transport::{PciTransport, Transport, WaitBudget};

use super::{BlockDevice, device::Waiting};
use crate::{
    mm::DeviceAlloc,
    pci::{self, PciDevice},
    virtio::{KernelClock, KernelPci, MsixVectors},
};

/// virtio-blk PCI device ids: modern (0x1040 + 2) and transitional.
const BLK_DEVICE_IDS: [u16; 2] = [0x1042, 0x1001];
/// How long a device may take to reset.
const RESET_BUDGET: Duration = Duration::from_secs(1);

/// Options from the command line (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct ProbeOptions {
    pub driver: BlkOptions,
    pub polled: bool,
}

fn flag(cmdline: &str, key: &str) -> Option<u64> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|a| a.strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .and_then(|v| v.parse().ok())
}

pub(super) fn options(cmdline: &str) -> ProbeOptions {
    let on = |key, default| flag(cmdline, key).map_or(default, |v| v != 0);
    let queues = flag(cmdline, "vireo.blk.queues").map_or(4, |v| v.clamp(1, 64) as u16);
    ProbeOptions {
        driver: BlkOptions {
            packed: on("vireo.blk.packed", true),
            indirect: on("vireo.blk.indirect", true),
            event_idx: on("vireo.blk.event_idx", true),
            multi_queue: queues > 1,
            queues,
            queue_size: flag(cmdline, "vireo.blk.queue_size")
                .map_or(1024, |v| v.clamp(1, 32768) as u16),
            ..BlkOptions::default()
        },
        polled: on("vireo.blk.polled", false),
    }
}

pub(super) fn probe_all() -> Vec<BlockDevice> {
    let opts = options(crate::boot_info().cmdline());
    pci::devices()
        .iter()
        .filter(|d| {
            d.vendor_id() == pci::VIRTIO_VENDOR_ID && BLK_DEVICE_IDS.contains(&d.device_id())
        })
        .filter_map(|d| match probe(d, opts) {
            Ok(dev) => {
                log::info!("{dev}");
                Some(dev)
            }
            Err(e) => {
                log::warn!("virtio-blk {d}: not usable: {e}");
                None
            }
        })
        .collect()
}

fn probe(device: &'static PciDevice, opts: ProbeOptions) -> Result<BlockDevice, super::BlockError> {
    let transport = PciTransport::new(KernelPci::new(device))
        .map_err(vireo_drivers::blk::BlkError::Transport)?;
    // MSI-X entry 0 carries configuration changes, entry 1 + i request queue i.
    let queues = transport.queue_count().min(opts.driver.queues).max(1);
    let msix = if opts.polled {
        None
    } else {
        match MsixVectors::enable(device, 1 + usize::from(queues)) {
            Ok(m) => Some(m),
            Err(e) => {
                log::warn!("virtio-blk {device}: {e}; completions will be polled");
                None
            }
        }
    };
    let vectors = queue_vectors(msix.as_ref(), queues);
    let clock = KernelClock;
    let mut budget = WaitBudget::new(&clock, RESET_BUDGET.as_nanos() as u64);
    let mut driver = BlkDriver::new(transport, DeviceAlloc, opts.driver, &vectors, &mut budget)?;
    if msix.is_some() {
        driver.set_config_vector(Some(0))?;
    }
    let dev = BlockDevice::new(
        device,
        driver,
        Waiting {
            msix,
            polled: opts.polled,
        },
        String::new(),
    );
    dev.read_serial()?;
    Ok(dev)
}

/// The MSI-X entry of each request queue (`None` without MSI-X, or beyond the table).
pub(super) fn queue_vectors(msix: Option<&MsixVectors>, queues: u16) -> Vec<Option<u16>> {
    (0..queues)
        .map(|q| msix.filter(|m| usize::from(q) + 1 < m.len()).map(|_| q + 1))
        .collect()
}
