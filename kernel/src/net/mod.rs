//! Networking: every virtio-net device on the PCI bus or in a virtio-mmio slot, driven by
//! [`vireo_drivers::net`] under one smoltcp interface per device, with sockets shaped like
//! `std::net`.
//!
//! Layer: kernel API (what applications use), above smoltcp, the driver layer
//! (`vireo-drivers`) and the virtqueue core (`vireo-virtio`).
//!
//! - [`TcpStream`] (`connect`, `read`, `write`, `shutdown`), [`TcpListener`] (`bind`, `accept`)
//!   and [`UdpSocket`] (`bind`, `send_to`, `recv_from`). Every blocking call has a form with a
//!   timeout and a non-blocking form (`try_*`, [`NetError::WouldBlock`]); a peer's behaviour is
//!   a typed [`NetError`], never a panic. [`TcpStream`] also implements `embedded-io`'s
//!   blocking `Read` and `Write` (re-exported as [`embedded_io`]), so code written against those
//!   traits runs over it unchanged.
//! - The stack is driven from the device's receive interrupt and smoltcp's own timers
//!   (`poll_delay`): a waiting call sleeps until a frame arrives, a timer is due or its deadline
//!   passes, looking at the receive ring at every timer tick ([`vireo_virtio::wait`]).
//!   `vireo.net.polled=1` polls instead.
//! - Addresses: IPv4 by DHCP unless the command line gives `vireo.net.ip=A.B.C.D/N` (and
//!   `vireo.net.gw=A.B.C.D`); an IPv6 link-local address from the MAC address always.
//! - Names: [`lookup_host`] and [`NetDevice::lookup`] ask the DNS servers of the DHCP lease, or
//!   those of `vireo.net.dns=A.B.C.D[,A.B.C.D]`, for IPv4 addresses.
//!
//! Command-line options, read at probe time: `vireo.net.packed=0`, `vireo.net.indirect=0`,
//! `vireo.net.event_idx=0`, `vireo.net.mrg_rxbuf=0`, `vireo.net.csum=0`, `vireo.net.mtu=0`,
//! `vireo.net.ctrl_vq=0`, `vireo.net.tso=0`, `vireo.net.host_tso=0` refuse those features even
//! when offered (`tso`: `VIRTIO_NET_F_GUEST_TSO4`/`TSO6`, coalesced TCP segments of up to
//! 64 KiB on receive, only with checksum offload and merged buffers; `host_tso`:
//! `VIRTIO_NET_F_HOST_TSO4`, smoltcp sends TCP/IPv4 segments of up to 64 KiB for the device to
//! cut, only with checksum offload); `vireo.net.queue_size=N` (default 256),
//! `vireo.net.polled=1`, `vireo.net.ip=`, `vireo.net.gw=`, `vireo.net.dns=`.
//!
//! Vireo has one CPU and no threads: a server with many connections keeps them all and uses the
//! non-blocking calls, or [`NetDevice::wait_any`] to sleep until one of its sockets can make
//! progress.

mod dns;
mod error;
mod probe;
mod stack;
mod tcp;
mod udp;

use alloc::vec::Vec;

use spin::Once;

/// The `embedded-io` traits [`TcpStream`] implements (`Read`, `Write`, `ReadReady`,
/// `WriteReady`), at the version Vireo builds with.
pub use embedded_io;

pub use self::{
    dns::{DEFAULT_LOOKUP_TIMEOUT, lookup_host},
    error::NetError,
    stack::{NetDevice, NetInfo, NetStats},
    tcp::{Buffers, TcpListener, TcpStream},
    udp::UdpSocket,
};

static DEVICES: Once<Vec<NetDevice>> = Once::new();

/// Every network device brought up at boot, in PCI order (then virtio-mmio devices).
///
/// A device that could not be brought up is absent: it was logged once at boot with the reason
/// and what to do about it, and [`crate::virtio::failed_devices`] lists it.
pub fn devices() -> &'static [NetDevice] {
    DEVICES.get().map_or(&[], Vec::as_slice)
}

/// The device sockets use: the first one.
///
/// # Errors
/// [`NetError::NoDevice`].
pub fn default_device() -> Result<&'static NetDevice, NetError> {
    devices().first().ok_or(NetError::NoDevice)
}

/// Finds and brings up every virtio-net function (called once by the runtime after the PCI scan).
pub(crate) fn init() {
    DEVICES.call_once(probe::probe_all);
}
