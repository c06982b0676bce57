//! [`NetDevice`]: one virtio-net device with its smoltcp interface and sockets, and the waiting
//! that drives them (receive interrupt, smoltcp's timers, the tick re-check).

use alloc::vec::Vec;
use core::{fmt, time::Duration};

use smoltcp::{
    iface::{Interface, SocketHandle, SocketSet},
    socket::{dhcpv4, dns, tcp},
    time::Instant as SmolInstant,
    wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr},
};
use spin::Mutex;
use vireo_drivers::net::{NetDriver, NetDriverError};
use vireo_virtio::{
    virtio_spec::{F, net},
    wait::{WaitQueue, Waited},
};

use super::NetError;
use crate::{
    mm::DeviceAlloc,
    pci::PciDevice,
    virtio::{self, Interrupts, KernelTransport, Location, ticks_for},
};

pub(super) type Driver = NetDriver<KernelTransport, DeviceAlloc>;

/// The receive queue (virtio 1.2 §5.1.2), whose interrupt wakes waiters.
const RX_QUEUE: u16 = 0;
/// Queues whose MSI-X entries the driver gets: receive, transmit, control.
pub(super) const QUEUES: u16 = 3;
/// Ticks a device may hold transmit frames without giving one back before it is notified again.
const TX_STALL_TICKS: u64 = 2;
/// Ephemeral ports (RFC 6335).
const EPHEMERAL: core::ops::RangeInclusive<u16> = 49152..=65535;

/// smoltcp's clock: the kernel's uptime.
pub(super) fn now() -> SmolInstant {
    SmolInstant::from_micros(crate::time::uptime().as_micros() as i64)
}

/// The timer tick by which `timeout` from now has passed (`None`: never).
pub(super) fn deadline(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| crate::time::ticks() + ticks_for(t))
}

/// A device's mutable state: driver, interrupts, interface and sockets.
pub(super) struct Stack {
    pub(super) driver: Driver,
    pub(super) irq: Interrupts,
    pub(super) iface: Interface,
    pub(super) sockets: SocketSet<'static>,
    /// The DHCP client, unless the address came from the command line.
    dhcp: Option<SocketHandle>,
    /// The DNS resolver (its servers from the command line, else from DHCP).
    pub(super) dns: SocketHandle,
    /// DNS servers given on the command line: DHCP's are not used then.
    static_dns: bool,
    /// How many DNS servers the resolver knows.
    pub(super) dns_servers: usize,
    /// The IPv4 address and gateway in use.
    ipv4: Option<(Ipv4Cidr, Option<Ipv4Address>)>,
    next_port: u16,
    /// Sockets their owners dropped, removed once closed.
    closing: Vec<SocketHandle>,
    /// Re-initialisation failed: the device is down for good.
    failed: bool,
    /// The last poll changed a socket's state (data, connection, timer).
    pub(super) changed: bool,
    missed_wakeups: u64,
    renotified: u64,
    interrupts_waited: u64,
    /// The tick at which the device last gave transmit buffers back (or held none).
    tx_progress_tick: u64,
}

impl Stack {
    pub(super) fn new(
        driver: Driver,
        irq: Interrupts,
        iface: Interface,
        static_ipv4: Option<(Ipv4Cidr, Option<Ipv4Address>)>,
        dns_servers: &[Ipv4Address],
    ) -> Self {
        let mut sockets = SocketSet::new(Vec::new());
        let servers: Vec<IpAddress> = dns_servers.iter().map(|&a| a.into()).collect();
        let dns = sockets.add(dns::Socket::new(&servers, Vec::new()));
        let mut stack = Self {
            driver,
            irq,
            iface,
            sockets,
            dhcp: None,
            dns,
            static_dns: !dns_servers.is_empty(),
            dns_servers: servers.len(),
            ipv4: None,
            next_port: *EPHEMERAL.start(),
            closing: Vec::new(),
            failed: false,
            changed: false,
            missed_wakeups: 0,
            renotified: 0,
            interrupts_waited: 0,
            tx_progress_tick: 0,
        };
        match static_ipv4 {
            Some((cidr, gateway)) => stack.set_ipv4(Some((cidr, gateway))),
            None => stack.dhcp = Some(stack.sockets.add(dhcpv4::Socket::new())),
        }
        stack
    }

    /// Moves frames in and out and runs smoltcp's timers; handles configuration changes, DHCP
    /// events, device errors, and sockets their owners closed. Never waits. Sets
    /// [`changed`](Self::changed) when a socket's state may have changed.
    pub(super) fn poll(&mut self) {
        self.changed = false;
        if self.failed {
            return;
        }
        self.service_config();
        let Self {
            driver,
            iface,
            sockets,
            ..
        } = self;
        self.changed = iface.poll(now(), &mut driver.phy(), sockets)
            == smoltcp::iface::PollResult::SocketStateChanged;
        if let Some(e) = self.driver.take_error() {
            log::error!("virtio-net: {e}; resetting the device");
            self.recover();
        }
        self.watch_tx();
        self.dhcp_events();
        self.reap();
    }

    /// Notifies the transmit queue again when the device has held frames for two ticks without
    /// giving any back: a lost notification would otherwise leave the ring full for good (a
    /// sender spinning on a full ring never sleeps, so the waiters' re-notification never runs).
    fn watch_tx(&mut self) {
        let now = crate::time::ticks();
        let reclaimed = match self.driver.reclaim_tx() {
            Ok(n) => n,
            // The device is down (a recovery that failed): nothing to watch.
            Err(NetDriverError::NotReady) => return,
            // A transmit ring the device broke: as for a receive-side error, reset.
            Err(e) => {
                log::error!("virtio-net: {e}; resetting the device");
                self.recover();
                return;
            }
        };
        if reclaimed > 0 || self.driver.tx_outstanding() == 0 {
            self.tx_progress_tick = now;
        } else if now >= self.tx_progress_tick + TX_STALL_TICKS {
            if self.driver.renotify().is_ok() {
                self.renotified += 1;
            }
            self.tx_progress_tick = now;
        }
    }

    fn service_config(&mut self) {
        if !self.irq.config_changed() {
            return;
        }
        match self.driver.config_changed() {
            Ok(change) => {
                if change.mac_changed {
                    let mac = EthernetAddress(self.driver.mac());
                    log::info!("virtio-net: MAC address now {mac}");
                    self.iface.set_hardware_addr(HardwareAddress::Ethernet(mac));
                }
                if change.link_changed {
                    log::info!(
                        "virtio-net: link {}",
                        if change.link_up { "up" } else { "down" }
                    );
                }
            }
            Err(NetDriverError::NeedsReset) => {
                log::warn!("virtio-net: device needs a reset");
                self.recover();
            }
            Err(e) => log::warn!("virtio-net: configuration change: {e}"),
        }
    }

    /// Resets and re-initialises the device; sockets keep their state (TCP retransmits what the
    /// reset lost).
    fn recover(&mut self) {
        let driver = &mut self.driver;
        let mut ok = false;
        virtio::recover(
            &self.irq,
            QUEUES,
            "virtio-net",
            |budget, vectors, config| {
                driver.reset_and_reinit(budget, vectors)?;
                if let Some(config) = config {
                    driver.set_config_vector(Some(config))?;
                }
                ok = true;
                Ok::<(), NetDriverError>(())
            },
        );
        self.failed = !ok;
    }

    fn dhcp_events(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let (update, servers) = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(config)) => {
                let servers: Vec<IpAddress> =
                    config.dns_servers.iter().map(|&a| a.into()).collect();
                (Some((config.address, config.router)), servers)
            }
            Some(dhcpv4::Event::Deconfigured) => (None, Vec::new()),
        };
        if !self.static_dns {
            self.sockets
                .get_mut::<dns::Socket>(self.dns)
                .update_servers(&servers);
            self.dns_servers = servers.len();
        }
        match update {
            Some((cidr, router)) => log::info!("virtio-net: DHCP lease {cidr}, gateway {router:?}"),
            // The client starts by reporting "no configuration": only a real loss is news.
            None if self.ipv4.is_some() => log::warn!("virtio-net: DHCP lease lost"),
            None => {}
        }
        self.set_ipv4(update);
    }

    /// Installs (or, with `None`, removes) the IPv4 address and default route; the IPv6
    /// link-local address stays.
    fn set_ipv4(&mut self, v4: Option<(Ipv4Cidr, Option<Ipv4Address>)>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
            if let Some((cidr, _)) = v4 {
                // Room for one IPv4 and one IPv6 address is always left (smoltcp holds 5).
                let _ = addrs.push(IpCidr::Ipv4(cidr));
            }
        });
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some((_, Some(gw))) = v4 {
            let _ = routes.add_default_ipv4_route(gw);
        }
        self.ipv4 = v4;
    }

    /// Removes dropped sockets once the stack is done with them (a TCP connection that sent its
    /// FIN and was answered, or timed out).
    fn reap(&mut self) {
        let sockets = &mut self.sockets;
        self.closing.retain(|&h| {
            let done = sockets.get::<tcp::Socket>(h).state() == tcp::State::Closed;
            if done {
                sockets.remove(h);
            }
            !done
        });
    }

    /// A dropped TCP socket: closed now (FIN), removed once closed.
    pub(super) fn close_later(&mut self, handle: SocketHandle) {
        self.sockets.get_mut::<tcp::Socket>(handle).close();
        self.closing.push(handle);
    }

    /// A free ephemeral port (not bound by any socket).
    pub(super) fn ephemeral_port(&mut self) -> Result<u16, NetError> {
        let span = EPHEMERAL.end() - EPHEMERAL.start() + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                port + 1
            };
            if !self.port_in_use(port) {
                return Ok(port);
            }
        }
        Err(NetError::AddrInUse)
    }

    /// Whether a TCP or UDP socket is bound to `port`.
    pub(super) fn port_in_use(&self, port: u16) -> bool {
        self.sockets.iter().any(|(_, s)| match s {
            smoltcp::socket::Socket::Tcp(t) => t.listen_endpoint().port == port,
            smoltcp::socket::Socket::Udp(u) => u.endpoint().port == port,
            _ => false,
        })
    }

    /// Whether the stack can reach IPv4 peers yet.
    pub(super) fn has_ipv4(&self) -> bool {
        self.ipv4.is_some()
    }

    /// The tick by which smoltcp wants to be polled again (`u64::MAX`: only on a frame).
    fn next_poll_tick(&mut self) -> u64 {
        match self.iface.poll_delay(now(), &self.sockets) {
            None => u64::MAX,
            Some(d) if d.total_micros() == 0 => 0,
            Some(d) => crate::time::ticks() + ticks_for(Duration::from_micros(d.total_micros())),
        }
    }
}

/// Addresses, link and features of a network device (kernel API; built from the driver's
/// [`NetDeviceConfig`](vireo_drivers::net::NetDeviceConfig) and the interface's addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetInfo {
    /// The MAC address.
    pub mac: [u8; 6],
    /// The link is up (always `true` without `VIRTIO_NET_F_STATUS`).
    pub link_up: bool,
    /// The MTU in use.
    pub mtu: u16,
    /// The IPv4 address and prefix, once configured.
    pub ipv4: Option<Ipv4Cidr>,
    /// The IPv4 default gateway.
    pub gateway: Option<Ipv4Address>,
    /// The packed ring layout is in use (else split).
    pub packed: bool,
    /// `VIRTIO_F_EVENT_IDX` is in use.
    pub event_idx: bool,
    /// `VIRTIO_NET_F_GUEST_CSUM` is in use: the driver, not smoltcp, answers for received TCP
    /// and UDP checksums.
    pub guest_csum: bool,
    /// `VIRTIO_NET_F_GUEST_TSO4` or `GUEST_TSO6` is in use: the device may deliver coalesced
    /// TCP segments (`vireo.net.tso`).
    pub guest_tso: bool,
    /// `VIRTIO_NET_F_HOST_TSO4` is in use: the device cuts TCP/IPv4 segments of up to 64 KiB
    /// that smoltcp sends (`vireo.net.host_tso`).
    pub host_tso: bool,
    /// Frames arrive by interrupt: MSI-X, or a virtio-mmio device's line (else polled).
    pub interrupts: bool,
}

/// Counters of a network device since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// The driver's counters (frames, drops, kicks).
    pub driver: vireo_drivers::net::NetDriverStats,
    /// Receive interrupts so far.
    pub interrupts: u64,
    /// Waits that an interrupt woke.
    pub interrupts_waited: u64,
    /// Frames found in the receive ring at a timer tick without their interrupt.
    pub missed_wakeups: u64,
    /// Notifications sent again because a waiter saw nothing received for a while (a lost
    /// receive or transmit kick would otherwise stall the device's queue for good).
    pub renotified: u64,
}

/// A virtio-net device. All methods take `&self`; calls serialise on an internal lock that is
/// never held while waiting.
pub struct NetDevice {
    location: Location,
    pub(super) stack: Mutex<Stack>,
}

impl fmt::Debug for NetDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetDevice")
            .field("location", &format_args!("{}", self.location))
            .finish_non_exhaustive()
    }
}

impl fmt::Display for NetDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.info();
        write!(
            f,
            "virtio-net {} {} mtu {}, link {}, {}{}{}{}{}, {}",
            self.location,
            EthernetAddress(i.mac),
            i.mtu,
            if i.link_up { "up" } else { "down" },
            if i.packed { "packed" } else { "split" },
            if i.event_idx { "+event-idx" } else { "" },
            if i.guest_csum { "+guest-csum" } else { "" },
            if i.guest_tso { "+guest-tso" } else { "" },
            if i.host_tso { "+host-tso" } else { "" },
            match (i.interrupts, self.location) {
                (false, _) => "polled",
                (true, Location::Pci(_)) => "MSI-X",
                (true, Location::Mmio(_)) => "IRQ line",
            },
        )
    }
}

impl NetDevice {
    pub(super) fn new(location: Location, stack: Stack) -> Self {
        Self {
            location,
            stack: Mutex::new(stack),
        }
    }

    /// Where the device was found: a PCI function or a virtio-mmio window.
    pub fn location(&self) -> Location {
        self.location
    }

    /// The PCI function, when the device is one.
    pub fn pci(&self) -> Option<&'static PciDevice> {
        self.location.pci()
    }

    /// Addresses, link state and features.
    pub fn info(&self) -> NetInfo {
        let s = self.stack.lock();
        let features = s.driver.features();
        NetInfo {
            mac: s.driver.mac(),
            link_up: s.driver.link_up(),
            mtu: s.driver.info().mtu,
            ipv4: s.ipv4.map(|(cidr, _)| cidr),
            gateway: s.ipv4.and_then(|(_, gw)| gw),
            packed: features.contains(F::RING_PACKED),
            event_idx: features.contains(F::EVENT_IDX),
            guest_csum: features.contains(net::F::GUEST_CSUM.into()),
            guest_tso: features.intersects((net::F::GUEST_TSO4 | net::F::GUEST_TSO6).into()),
            host_tso: features.contains(net::F::HOST_TSO4.into()),
            interrupts: s.irq.interrupt_driven(),
        }
    }

    /// Counters since boot.
    pub fn stats(&self) -> NetStats {
        let s = self.stack.lock();
        NetStats {
            driver: s.driver.stats(),
            interrupts: s.irq.queue_interrupts(),
            interrupts_waited: s.interrupts_waited,
            missed_wakeups: s.missed_wakeups,
            renotified: s.renotified,
        }
    }

    /// Runs the stack once (frames in and out, timers); never waits. A server that handles
    /// many sockets with the non-blocking calls polls with this or [`wait_any`](Self::wait_any).
    pub fn poll(&self) {
        self.stack.lock().poll();
    }

    /// Runs the stack until a socket's state changes (data or a connection arrived, a timer
    /// fired), sleeping in between; or until `timeout` passes.
    ///
    /// # Errors
    /// [`NetError::TimedOut`]; [`NetError::DeviceFailed`].
    pub fn wait_any(&self, timeout: Option<Duration>) -> Result<(), NetError> {
        self.wait(deadline(timeout), |s| s.changed.then_some(Ok(())))
    }

    /// Waits until the device has an IPv4 address (from DHCP or the command line).
    ///
    /// # Errors
    /// [`NetError::TimedOut`]; [`NetError::DeviceFailed`].
    pub fn wait_for_address(&self, timeout: Duration) -> Result<Ipv4Cidr, NetError> {
        self.wait(deadline(Some(timeout)), |s| s.ipv4.map(|(c, _)| Ok(c)))
    }

    /// Runs the stack until `ready` gives a result or the `deadline` tick passes: asleep on the
    /// receive interrupt (or polling) between looks, waking for smoltcp's timers.
    pub(super) fn wait<R>(
        &self,
        deadline: Option<u64>,
        mut ready: impl FnMut(&mut Stack) -> Option<Result<R, NetError>>,
    ) -> Result<R, NetError> {
        loop {
            let (event, poll_at, seen) = {
                let mut s = self.stack.lock();
                s.poll();
                if let Some(r) = ready(&mut s) {
                    return r;
                }
                if s.failed {
                    return Err(NetError::DeviceFailed);
                }
                let event = s.irq.queue_event(RX_QUEUE);
                (event, s.next_poll_tick(), event.map_or(0, |e| e.count()))
            };
            let until = deadline.unwrap_or(u64::MAX).min(poll_at);
            if crate::time::ticks() >= until {
                if deadline.is_some_and(|d| crate::time::ticks() >= d) {
                    return Err(NetError::TimedOut);
                }
                continue;
            }
            let mut w = StackWait {
                dev: self,
                ready: &mut ready,
                seen,
            };
            if let Waited::Ready(r) = virtio::wait_queue(event, &mut w, until)? {
                return r;
            }
        }
    }
}

/// A waiter on a device's receive queue, for [`virtio::wait_queue`]: each look runs the stack.
struct StackWait<'a, F> {
    dev: &'a NetDevice,
    ready: &'a mut F,
    /// The receive vector's count when the wait began (for the missed wake-up report).
    seen: u64,
}

impl<R, F: FnMut(&mut Stack) -> Option<Result<R, NetError>>> WaitQueue for StackWait<'_, F> {
    type Output = Result<R, NetError>;
    type Error = NetError;

    fn take(&mut self) -> Result<Option<Self::Output>, NetError> {
        let mut s = self.dev.stack.lock();
        s.poll();
        if s.failed {
            return Err(NetError::DeviceFailed);
        }
        Ok((self.ready)(&mut s))
    }

    fn enable_notifications(&mut self) -> Result<bool, NetError> {
        let mut s = self.dev.stack.lock();
        s.driver
            .enable_rx_notifications()
            .map_err(|_| NetError::DeviceFailed)
    }

    fn disable_notifications(&mut self) {
        let _ = self.dev.stack.lock().driver.disable_rx_notifications();
    }

    fn renotify(&mut self) {
        // A lost kick leaves the device without receive buffers, or holding frames it never
        // sends while the transmit ring stays full: notify both queues again.
        let mut s = self.dev.stack.lock();
        if s.driver.renotify().is_ok() {
            s.renotified += 1;
        }
    }

    fn missed_wakeup(&mut self) {
        let mut s = self.dev.stack.lock();
        s.missed_wakeups += 1;
        let ring = match s.driver.rx_ring_state() {
            Ok(state) => alloc::format!("{state}"),
            Err(e) => alloc::format!("{e}"),
        };
        virtio::report_missed_wakeup(
            "virtio-net",
            RX_QUEUE,
            s.missed_wakeups,
            s.irq.queue_event(RX_QUEUE),
            self.seen,
            &ring,
        );
    }

    fn woke_by_interrupt(&mut self) {
        self.dev.stack.lock().interrupts_waited += 1;
    }
}
