//! [`NetError`]: what a network call can fail with.
//!
//! Layer: kernel API (what applications see), above smoltcp and the virtio-net driver, whose own
//! errors (`vireo_drivers::net::NetDriverError`) stay inside the kernel.

use core::fmt;

/// Why a network call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// No network device was found.
    NoDevice,
    /// The device has no IPv4 address yet (DHCP still running) or no route to the peer.
    Unaddressable,
    /// The call's deadline passed.
    TimedOut,
    /// A non-blocking call could not make progress now.
    WouldBlock,
    /// The peer refused the connection (or it could not be opened).
    ConnectionRefused,
    /// The connection was reset, or ended before the call could finish.
    ConnectionReset,
    /// The stream is not connected (or was shut down in that direction).
    NotConnected,
    /// The local port is in use, or no ephemeral port is free.
    AddrInUse,
    /// A datagram is larger than the socket's buffer.
    MessageTooLarge,
    /// The device failed and could not be brought back.
    DeviceFailed,
    /// A name lookup found no DNS server to ask.
    NoNameServer,
    /// Not a name a DNS query can carry (empty, a label over 63 bytes, over 255 in all).
    InvalidName,
    /// The DNS servers said the name does not exist, or stopped answering.
    NameNotFound,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoDevice => "no network device",
            Self::Unaddressable => "no address or no route",
            Self::TimedOut => "timed out",
            Self::WouldBlock => "operation would block",
            Self::ConnectionRefused => "connection refused",
            Self::ConnectionReset => "connection reset",
            Self::NotConnected => "not connected",
            Self::AddrInUse => "address in use",
            Self::MessageTooLarge => "message too large",
            Self::DeviceFailed => "network device failed",
            Self::NoNameServer => "no DNS server known",
            Self::InvalidName => "not a valid host name",
            Self::NameNotFound => "host name not found",
        })
    }
}

impl core::error::Error for NetError {}

impl embedded_io::Error for NetError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind as K;
        match self {
            Self::NoDevice | Self::DeviceFailed => K::Other,
            Self::Unaddressable => K::AddrNotAvailable,
            Self::TimedOut => K::TimedOut,
            // The blocking traits never produce it; kept apart from a real failure.
            Self::WouldBlock => K::Interrupted,
            Self::ConnectionRefused => K::ConnectionRefused,
            Self::ConnectionReset => K::ConnectionReset,
            Self::NotConnected => K::NotConnected,
            Self::AddrInUse => K::AddrInUse,
            Self::MessageTooLarge | Self::InvalidName => K::InvalidInput,
            Self::NoNameServer | Self::NameNotFound => K::NotFound,
        }
    }
}
