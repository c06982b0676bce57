//! [`NetDriver`]: initialisation, configuration changes, recovery and teardown.

use alloc::{boxed::Box, collections::VecDeque, vec, vec::Vec};
use core::fmt;

use vireo_virtio::{
    AvailBufferToken, DmaAllocator, DmaBuffer, Virtq,
    transport::{Device, InterruptCause, Transport, WaitBudget},
    virtio_spec::{F, net},
};

use super::{
    accept::RxConfig,
    config::{
        HEADER_LEN, MAX_GSO_FRAME_LEN, MAX_TSO_FRAME_LEN, NetDeviceConfig, NetOptions, has,
        read_mac_status, settle,
    },
    ctrl::{COMMAND_CAPACITY, CtrlQueue},
    error::{NetDriverError, NetDriverStats},
    rx::RxQueue,
    tx::TxQueue,
};
use crate::lifecycle::{BringUp, DeviceMemory, reset_for_teardown};

/// The virtio device type of a network device (virtio 1.2 §5).
const DEVICE_TYPE_NET: u16 = 1;
/// Queue indices with one queue pair (§5.1.2): receiveq1, transmitq1, then controlq.
const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;
const CTRL_QUEUE: u16 = 2;
/// The control queue carries one two-descriptor command at a time: a few descriptors suffice.
const CTRL_QUEUE_SIZE: u16 = 8;

/// The queues and every DMA buffer the device may reach (held in a [`DeviceMemory`]).
pub(crate) struct Queues<A: DmaAllocator> {
    pub(crate) rx: RxQueue<A>,
    pub(crate) tx: TxQueue<A>,
    pub(crate) ctrl: Option<CtrlQueue<A>>,
}

/// What [`NetDriver::config_changed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    /// The link state now.
    pub link_up: bool,
    /// Whether the link state changed.
    pub link_changed: bool,
    /// Whether the MAC address changed (give the new one to the network stack).
    pub mac_changed: bool,
}

/// A virtio-net driver (one queue pair), generic over the transport and the DMA allocator.
///
/// No waiting policy, like the block driver: receive and transmit never block, and the kernel
/// chooses between interrupts ([`enable_rx_notifications`](Self::enable_rx_notifications)) and
/// polling. Only control commands wait, within the [`WaitBudget`] they are given.
pub struct NetDriver<T: Transport, A: DmaAllocator + 'static> {
    pub(crate) device: Device<T>,
    alloc: A,
    options: NetOptions,
    info: NetDeviceConfig,
    /// `None` while not operational.
    pub(crate) queues: DeviceMemory<Option<Queues<A>>>,
    /// Queues created during a bring-up and not yet in `queues`.
    staged: DeviceMemory<Vec<Box<dyn Virtq<A> + Send>>>,
    /// Counters of queues that were torn down (a reset keeps the totals).
    past_stats: NetDriverStats,
    /// The last error the phy layer could not report.
    pub(crate) last_error: Option<NetDriverError>,
}

impl<T: Transport, A: DmaAllocator + 'static> fmt::Debug for NetDriver<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetDriver")
            .field("options", &self.options)
            .field("info", &self.info)
            .field("operational", &self.queues.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Transport<Notifier: Send + 'static>, A: DmaAllocator + Send + 'static> NetDriver<T, A> {
    /// Initialises the device (virtio 1.2 §3.1.1, §5.1.5): reset, feature negotiation for
    /// `options`, configuration read (MAC, link, MTU), the rx, tx and (with
    /// `VIRTIO_NET_F_CTRL_VQ`) control queues with MSI-X vectors `vectors[0..3]` (`None` or
    /// missing: no vector), `DRIVER_OK`, the rx buffers posted and, with `CTRL_RX`,
    /// promiscuous and all-multicast turned off and the MAC table set
    /// ([`default_multicast`]). Control commands wait within `budget`.
    ///
    /// # Errors
    /// [`NetDriverError::Transport`] (wrong device type, timeout, features rejected, queue setup),
    /// [`NetDriverError::AllocFailed`], a control command's error. The device is reset (memory is
    /// freed only if the reset is confirmed, leaked otherwise) and left `FAILED`.
    pub fn new(
        transport: T,
        alloc: A,
        options: NetOptions,
        vectors: &[Option<u16>],
        budget: &mut WaitBudget<'_>,
    ) -> Result<Self, NetDriverError> {
        let wanted = options.wanted();
        let mut device = Device::init_with(transport, DEVICE_TYPE_NET, wanted, settle, budget)?;
        let info = NetDeviceConfig::read(&device, &options).inspect_err(|_| device.fail())?;
        let mut driver = Self {
            device,
            alloc,
            options,
            info,
            queues: DeviceMemory::new(),
            staged: DeviceMemory::new(),
            past_stats: NetDriverStats::default(),
            last_error: None,
        };
        driver.bring_up(vectors, budget)?;
        Ok(driver)
    }

    /// Recovers from `DEVICE_NEEDS_RESET` or a queue protocol error: resets the device, frees
    /// every queue and buffer (the caller holds none: received frames borrow the driver),
    /// renegotiates the same features and brings the device up again as [`new`](Self::new)
    /// does. Frames batched but not flushed are lost; counters are kept.
    ///
    /// # Errors
    /// - [`NetDriverError::Transport`] with a timeout if the device does not finish its reset: it
    ///   may still access the buffers, so they stay; call again (or give up on the device).
    /// - Any re-initialisation failure: the device is left `FAILED` and the driver not
    ///   operational ([`NetDriverError::NotReady`]) until a later call succeeds.
    pub fn reset_and_reinit(
        &mut self,
        budget: &mut WaitBudget<'_>,
        vectors: &[Option<u16>],
    ) -> Result<(), NetDriverError> {
        // The device no longer touches the rings or buffers: they may go back.
        self.reset_and_bring_up(vectors, budget, |driver, confirmed| {
            if let Some(q) = driver.queues.reclaim(confirmed) {
                driver.past_stats.add(&q.rx.stats);
                driver.past_stats.add(&q.tx.stats);
            }
            drop(driver.staged.reclaim(confirmed));
        })
    }

    /// Handles a configuration-change notification: re-reads the link state and the MAC
    /// address. Between notifications the driver keeps what it read last, whatever the
    /// configuration space says.
    ///
    /// # Errors
    /// [`NetDriverError::NeedsReset`] if the notification meant the device needs a reset;
    /// [`NetDriverError::Transport`] (the old values are kept).
    pub fn config_changed(&mut self) -> Result<ConfigChange, NetDriverError> {
        if self.device.needs_reset() {
            return Err(NetDriverError::NeedsReset);
        }
        let (mac, link_up) = read_mac_status(&self.device)?;
        let change = ConfigChange {
            link_up,
            link_changed: link_up != self.info.link_up,
            mac_changed: mac != self.info.mac,
        };
        self.info.mac = mac;
        self.info.link_up = link_up;
        Ok(change)
    }
}

/// The receive buffer length that lets `count` buffers hold a coalesced frame of
/// [`MAX_GSO_FRAME_LEN`] and its header even while the caller holds one of them: a device
/// (QEMU's `virtio_net_has_buffers`) waits until the posted buffers can take the whole frame,
/// so a pool too small for one would stall reception for good. 2 KiB buffers do with 34 or
/// more of them; a smaller pool gets longer buffers.
fn gso_buffer_len(count: usize) -> usize {
    (HEADER_LEN + MAX_GSO_FRAME_LEN).div_ceil(count.saturating_sub(1).max(1))
}

/// A token of fresh zeroed DMA buffers with the given device-readable and device-writable
/// lengths.
fn token<A: DmaAllocator>(
    alloc: &A,
    readable: &[usize],
    writable: &[usize],
) -> Result<AvailBufferToken<A>, NetDriverError> {
    let make = |lens: &[usize]| {
        let mut list = Vec::with_capacity(lens.len());
        for &len in lens {
            let buffer = DmaBuffer::new_zeroed_in(len, alloc.clone());
            list.push(buffer.map_err(|_| NetDriverError::AllocFailed)?);
        }
        Ok::<_, NetDriverError>(list)
    };
    Ok(AvailBufferToken::new(make(readable)?, make(writable)?))
}

/// The multicast addresses the driver lets through by default with `VIRTIO_NET_F_CTRL_RX`
/// (all-multicast being off): IPv6 all-nodes (`33:33:00:00:00:01`) and the solicited-node
/// address of the EUI-64 link-local address derived from `mac` (`33:33:ff:` + its last three
/// bytes), which IPv6 neighbour discovery needs. Broadcast is always received.
#[must_use]
pub fn default_multicast(mac: [u8; 6]) -> Vec<[u8; 6]> {
    vec![
        [0x33, 0x33, 0, 0, 0, 1],
        [0x33, 0x33, 0xff, mac[3], mac[4], mac[5]],
    ]
}

impl<T: Transport, A: DmaAllocator + 'static> NetDriver<T, A> {
    /// What the driver knows about the device.
    #[must_use]
    pub fn info(&self) -> &NetDeviceConfig {
        &self.info
    }

    /// The MAC address read at initialisation or at the last
    /// [`config_changed`](Self::config_changed).
    #[must_use]
    pub fn mac(&self) -> [u8; 6] {
        self.info.mac
    }

    /// The link state read at initialisation or at the last configuration change.
    #[must_use]
    pub fn link_up(&self) -> bool {
        self.info.link_up
    }

    /// The negotiated features.
    #[must_use]
    pub fn features(&self) -> F {
        self.device.features()
    }

    /// Whether the driver is operational (false after a failed re-initialisation).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.queues.is_some()
    }

    /// Counters since initialisation.
    #[must_use]
    pub fn stats(&self) -> NetDriverStats {
        let mut total = self.past_stats;
        if let Some(q) = self.queues.as_ref() {
            total.add(&q.rx.stats);
            total.add(&q.tx.stats);
        }
        total
    }

    /// Whether the device reports `DEVICE_NEEDS_RESET`.
    #[must_use]
    pub fn needs_reset(&self) -> bool {
        self.device.needs_reset()
    }

    /// Reads and acknowledges the interrupt status (INTx or polling).
    pub fn ack_interrupt(&mut self) -> InterruptCause {
        self.device.transport_mut().ack_interrupt()
    }

    /// Routes configuration-change notifications to MSI-X table entry `vector` (`None`:
    /// none). A device reset forgets it: set it again after
    /// [`reset_and_reinit`](Self::reset_and_reinit).
    ///
    /// # Errors
    /// [`NetDriverError::Transport`] if the device refuses the vector.
    pub fn set_config_vector(&mut self, vector: Option<u16>) -> Result<(), NetDriverError> {
        Ok(self.device.transport_mut().set_config_vector(vector)?)
    }

    /// Takes the last error met inside the smoltcp [`phy`](Self::phy) calls, which cannot
    /// return one (a queue protocol error there means: reset the device).
    pub fn take_error(&mut self) -> Option<NetDriverError> {
        self.last_error.take()
    }

    /// Resets the device and frees the queues and buffers if the reset is confirmed (within
    /// `budget`, or else `drop_reset_polls` status reads); leaks them otherwise, since the
    /// device may still write into them.
    fn teardown(&mut self, budget: Option<&mut WaitBudget<'_>>) {
        if self.queues.is_none() && self.staged.is_empty() {
            return;
        }
        if let Some(q) = self.queues.as_ref() {
            self.past_stats.add(&q.rx.stats);
            self.past_stats.add(&q.tx.stats);
        }
        let confirmed = reset_for_teardown(&mut self.device, budget, self.options.drop_reset_polls);
        self.queues.release(confirmed.as_ref());
        self.staged.release(confirmed.as_ref());
    }

    pub(crate) fn queues_mut(&mut self) -> Result<&mut Queues<A>, NetDriverError> {
        self.queues.as_mut().ok_or(NetDriverError::NotReady)
    }
}

impl<T: Transport<Notifier: Send + 'static>, A: DmaAllocator + Send + 'static> BringUp
    for NetDriver<T, A>
{
    type Transport = T;
    type Error = NetDriverError;

    fn device_mut(&mut self) -> &mut Device<T> {
        &mut self.device
    }

    /// Creates the queues and buffers, sets `DRIVER_OK`, posts the rx buffers and sets the
    /// receive filters (the driver's steps of [`BringUp::bring_up`], which tears everything
    /// down and sets `FAILED` on failure).
    fn try_bring_up(
        &mut self,
        vectors: &[Option<u16>],
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), NetDriverError> {
        self.info = NetDeviceConfig::read(&self.device, &self.options)?;
        let features = self.device.features();
        let ctrl = has(features, net::F::CTRL_VQ);
        for index in [RX_QUEUE, TX_QUEUE, CTRL_QUEUE]
            .into_iter()
            .take(2 + usize::from(ctrl))
        {
            let vector = vectors.get(usize::from(index)).copied().flatten();
            let size = match index {
                CTRL_QUEUE => CTRL_QUEUE_SIZE,
                _ => self.options.queue_size,
            };
            self.staged
                .create_queue(&mut self.device, index, size, self.alloc.clone(), vector)?;
        }
        // Buffers first, while the queues are staged (torn down with a reset on failure).
        let rx_count = self.options.rx_buffers.min(self.staged[0].size()).max(1);
        let tx_size = self.staged[1].size();
        let tso4 = has(features, net::F::HOST_TSO4);
        // Segment buffers (HOST_TSO4) take at most half the ring; ordinary ones the rest.
        let tso_count = if tso4 {
            self.options.tso_buffers.clamp(1, (tx_size / 2).max(1))
        } else {
            0
        };
        let tx_count = self.options.tx_buffers.min(tx_size - tso_count).max(1);
        if has(features, net::F::GUEST_TSO4) || has(features, net::F::GUEST_TSO6) {
            self.info.rx_buffer_len = self
                .info
                .rx_buffer_len
                .max(gso_buffer_len(usize::from(rx_count)));
        }
        let frame = self.info.max_frame_len;
        let alloc = &self.alloc;
        let rx_tokens = (0..rx_count)
            .map(|_| token(alloc, &[], &[self.info.rx_buffer_len]))
            .collect::<Result<VecDeque<_>, _>>()?;
        let tx_tokens = (0..tx_count)
            .map(|_| token(alloc, &[HEADER_LEN + frame], &[]))
            .collect::<Result<Vec<_>, _>>()?;
        let tso_tokens = (0..tso_count)
            .map(|_| token(alloc, &[HEADER_LEN + MAX_TSO_FRAME_LEN], &[]))
            .collect::<Result<Vec<_>, _>>()?;
        let ctrl_token = if ctrl {
            Some(token(alloc, &[COMMAND_CAPACITY], &[1])?)
        } else {
            None
        };
        let ctrl_vq = if ctrl { self.staged.pop() } else { None };
        let (Some(tx_vq), Some(rx_vq)) = (self.staged.pop(), self.staged.pop()) else {
            return Err(NetDriverError::NotReady);
        };
        let csum = has(features, net::F::CSUM);
        let rx_config = RxConfig {
            mrg_rxbuf: has(features, net::F::MRG_RXBUF),
            guest_csum: has(features, net::F::GUEST_CSUM),
            tso4: has(features, net::F::GUEST_TSO4),
            tso6: has(features, net::F::GUEST_TSO6),
            max_frame_len: frame,
        };
        let batch = self.options.refill_batch;
        *self.queues = Some(Queues {
            rx: RxQueue::new(rx_vq, rx_tokens, rx_config, batch),
            tx: TxQueue::new(tx_vq, tx_tokens, tso_tokens, csum, frame),
            ctrl: ctrl_vq.zip(ctrl_token).map(|(vq, t)| CtrlQueue::new(vq, t)),
        });
        self.device.driver_ok()?;
        let queues = self.queues.as_mut().ok_or(NetDriverError::NotReady)?;
        queues.rx.refill(true)?;
        if let Some(ctrl) = queues
            .ctrl
            .as_mut()
            .filter(|_| has(features, net::F::CTRL_RX))
        {
            ctrl.set_rx_mode(net::ctrl::Rx::Promisc, false, budget)?;
            ctrl.set_rx_mode(net::ctrl::Rx::Allmulti, false, budget)?;
            ctrl.set_mac_table(&[], &default_multicast(self.info.mac), budget)?;
        }
        Ok(())
    }

    fn teardown(&mut self, budget: Option<&mut WaitBudget<'_>>) {
        Self::teardown(self, budget);
    }
}

impl<T: Transport, A: DmaAllocator + 'static> Drop for NetDriver<T, A> {
    /// Resets the device before its rings and buffers go back to the allocator; if the reset
    /// is not confirmed within [`NetOptions::drop_reset_polls`] status reads, they are leaked.
    fn drop(&mut self) {
        self.teardown(None);
    }
}
