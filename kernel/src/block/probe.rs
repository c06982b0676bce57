//! Finding virtio-blk functions and bringing them up.

use alloc::{string::String, vec::Vec};

use vireo_drivers::blk::{BlkDriver, BlkOptions};
use vireo_virtio::transport::Transport;

use super::BlockDevice;
use crate::{
    cmdline,
    mm::DeviceAlloc,
    virtio::{self, Interrupts, KernelTransport, Location},
};

/// The virtio device type of a block device (virtio 1.2 §5.2).
const DEVICE_TYPE_BLOCK: u16 = 2;

/// Options from the command line (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct ProbeOptions {
    pub driver: BlkOptions,
    pub polled: bool,
}

pub(super) fn options() -> ProbeOptions {
    // Values come checked (range, power of two) from `cmdline`, which reported any it changed.
    let queues = cmdline::number("vireo.blk.queues").map_or(4, |v| v as u16);
    ProbeOptions {
        driver: BlkOptions {
            packed: cmdline::flag("vireo.blk.packed", true),
            indirect: cmdline::flag("vireo.blk.indirect", true),
            event_idx: cmdline::flag("vireo.blk.event_idx", true),
            multi_queue: queues > 1,
            queues,
            queue_size: cmdline::number("vireo.blk.queue_size").map_or(1024, |v| v as u16),
            ..BlkOptions::default()
        },
        polled: cmdline::flag("vireo.blk.polled", false),
    }
}

pub(super) fn probe_all() -> Vec<BlockDevice> {
    let opts = options();
    virtio::probe_each(
        DEVICE_TYPE_BLOCK,
        "virtio-blk",
        |d| probe(d, opts),
        super::BlockError::hint,
    )
}

fn probe(device: Location, opts: ProbeOptions) -> Result<BlockDevice, super::BlockError> {
    let transport =
        KernelTransport::new(device).map_err(vireo_drivers::blk::BlkDriverError::Transport)?;
    let queues = transport.queue_count().min(opts.driver.queues).max(1);
    let irq = Interrupts::new(device, queues, opts.polled, "virtio-blk");
    let vectors = irq.queue_vectors(queues);
    let mut driver = virtio::with_budget(|budget| {
        BlkDriver::new(transport, DeviceAlloc, opts.driver, &vectors, budget)
    })?;
    if let Some(config) = irq.config_vector() {
        driver.set_config_vector(Some(config))?;
    }
    let dev = BlockDevice::new(device, driver, irq, String::new());
    dev.read_serial()?;
    Ok(dev)
}
