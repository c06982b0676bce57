//! UDP sockets shaped like `std::net`: [`UdpSocket`].

use alloc::vec;
use core::{net::SocketAddr, time::Duration};

use smoltcp::{
    iface::SocketHandle,
    socket::udp::{self, PacketBuffer, PacketMetadata},
    wire::IpEndpoint,
};

use super::{
    NetDevice, NetError, default_device,
    stack::{Stack, deadline},
};

/// Datagrams a socket made by [`UdpSocket::bind`] queues on receive, and their total bytes:
/// more than the device's receive ring holds (256 buffers by default), so a stack run that takes
/// in a full ring while the application was busy drops nothing (Linux's default receive buffer
/// is 208 KiB).
const DEFAULT_RX: (usize, usize) = (512, 256 * 1024);
/// The same for sending: the queue drains as fast as the device takes frames.
const DEFAULT_TX: (usize, usize) = (64, 64 * 1024);

/// A UDP socket bound to a local port. Dropping it unbinds the port.
#[derive(Debug)]
pub struct UdpSocket {
    dev: &'static NetDevice,
    handle: SocketHandle,
    port: u16,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl UdpSocket {
    /// Binds `port` of the default device (0: an ephemeral port).
    ///
    /// # Errors
    /// [`NetError::AddrInUse`], [`NetError::NoDevice`].
    pub fn bind(port: u16) -> Result<Self, NetError> {
        Self::bind_sized(default_device()?, port, DEFAULT_RX, DEFAULT_TX)
    }

    /// Binds `port` of `dev`, queueing at most `datagrams` datagrams of `bytes` bytes in all in
    /// each direction.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn bind_on(
        dev: &'static NetDevice,
        port: u16,
        datagrams: usize,
        bytes: usize,
    ) -> Result<Self, NetError> {
        Self::bind_sized(dev, port, (datagrams, bytes), (datagrams, bytes))
    }

    /// Binds with `(datagrams, bytes)` queues for receiving and for sending.
    fn bind_sized(
        dev: &'static NetDevice,
        port: u16,
        rx: (usize, usize),
        tx: (usize, usize),
    ) -> Result<Self, NetError> {
        let mut s = dev.stack.lock();
        let port = match port {
            0 => s.ephemeral_port()?,
            p if s.port_in_use(p) => return Err(NetError::AddrInUse),
            p => p,
        };
        let buffer = |(datagrams, bytes): (usize, usize)| {
            PacketBuffer::new(
                vec![PacketMetadata::EMPTY; datagrams.max(1)],
                vec![0; bytes.max(1)],
            )
        };
        let mut socket = udp::Socket::new(buffer(rx), buffer(tx));
        socket.bind(port).map_err(|_| NetError::AddrInUse)?;
        let handle = s.sockets.add(socket);
        Ok(Self {
            dev,
            handle,
            port,
            read_timeout: None,
            write_timeout: None,
        })
    }

    fn socket<'s>(&self, s: &'s mut Stack) -> &'s mut udp::Socket<'static> {
        s.sockets.get_mut::<udp::Socket>(self.handle)
    }

    /// The local port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets how long [`recv_from`](Self::recv_from) waits (`None`: for ever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Sets how long [`send_to`](Self::send_to) waits for room (`None`: for ever).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Sends `buf` as one datagram to `addr`, waiting up to the write timeout for room in the
    /// send queue (it drains as the device sends).
    ///
    /// # Errors
    /// [`NetError::MessageTooLarge`], [`NetError::Unaddressable`], [`NetError::TimedOut`].
    pub fn send_to(&self, buf: &[u8], addr: SocketAddr) -> Result<usize, NetError> {
        let deadline = deadline(self.write_timeout);
        let r = self
            .dev
            .wait(deadline, |s| Self::send(self.socket(s), buf, addr));
        // Hand the datagram to the device now rather than at the next poll.
        self.dev.poll();
        r
    }

    /// Sends `buf` to `addr` if the send queue has room now.
    ///
    /// # Errors
    /// [`NetError::WouldBlock`]; as [`send_to`](Self::send_to).
    pub fn try_send_to(&self, buf: &[u8], addr: SocketAddr) -> Result<usize, NetError> {
        let mut s = self.dev.stack.lock();
        let r = Self::send(self.socket(&mut s), buf, addr).unwrap_or(Err(NetError::WouldBlock));
        s.poll();
        r
    }

    fn send(
        socket: &mut udp::Socket<'_>,
        buf: &[u8],
        addr: SocketAddr,
    ) -> Option<Result<usize, NetError>> {
        if buf.len() > socket.payload_send_capacity() {
            return Some(Err(NetError::MessageTooLarge));
        }
        match socket.send_slice(buf, IpEndpoint::from(addr)) {
            Ok(()) => Some(Ok(buf.len())),
            Err(udp::SendError::BufferFull) => None,
            Err(udp::SendError::Unaddressable) => Some(Err(NetError::Unaddressable)),
        }
    }

    /// Receives one datagram into `buf` (the rest of a longer one is dropped), waiting up to the
    /// read timeout; returns its length and sender.
    ///
    /// A datagram already queued is taken without running the stack; the stack runs (taking in
    /// every frame the device holds) only when the queue is empty. A receiver under a flood thus
    /// pays for one stack run per queue-full of datagrams, not per datagram.
    ///
    /// # Errors
    /// [`NetError::TimedOut`].
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        if let Some(r) = self.queued(buf) {
            return r;
        }
        let deadline = deadline(self.read_timeout);
        self.dev.wait(deadline, |s| Self::recv(self.socket(s), buf))
    }

    /// Receives a datagram if one has arrived (queued, or with the device after a stack run).
    ///
    /// # Errors
    /// [`NetError::WouldBlock`].
    pub fn try_recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        if let Some(r) = self.queued(buf) {
            return r;
        }
        let mut s = self.dev.stack.lock();
        s.poll();
        Self::recv(self.socket(&mut s), buf).unwrap_or(Err(NetError::WouldBlock))
    }

    /// A datagram from the socket's queue, without running the stack.
    fn queued(&self, buf: &mut [u8]) -> Option<Result<(usize, SocketAddr), NetError>> {
        let mut s = self.dev.stack.lock();
        Self::recv(self.socket(&mut s), buf)
    }

    fn recv(
        socket: &mut udp::Socket<'_>,
        buf: &mut [u8],
    ) -> Option<Result<(usize, SocketAddr), NetError>> {
        let (data, meta) = socket.recv().ok()?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Some(Ok((n, meta.endpoint.into())))
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.dev.stack.lock().sockets.remove(self.handle);
    }
}
