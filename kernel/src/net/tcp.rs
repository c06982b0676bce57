//! TCP sockets shaped like `std::net`: [`TcpStream`] and [`TcpListener`].

use alloc::{vec, vec::Vec};
use core::{net::SocketAddr, time::Duration};

use smoltcp::{iface::SocketHandle, socket::tcp, wire::IpListenEndpoint};

use super::{
    NetDevice, NetError, default_device,
    stack::{Stack, deadline},
};

/// The receive buffer of a socket made without [`Buffers`]: the window it offers. With guest
/// TSO one coalesced segment is 64 KiB, so a 64 KiB window would let the peer send one segment
/// per round trip (Linux starts its receive buffers at 128 KiB and grows them).
const DEFAULT_RX_BUFFER: usize = 256 * 1024;
/// The send buffer of a socket made without [`Buffers`].
const DEFAULT_TX_BUFFER: usize = 64 * 1024;
/// Connections a listener keeps open for `accept` at once, by default.
const DEFAULT_BACKLOG: usize = 8;

/// A TCP socket's buffer sizes in bytes (the window it can offer and the data it can queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffers {
    /// Receive buffer.
    pub rx: usize,
    /// Send buffer.
    pub tx: usize,
}

impl Default for Buffers {
    fn default() -> Self {
        Self {
            rx: DEFAULT_RX_BUFFER,
            tx: DEFAULT_TX_BUFFER,
        }
    }
}

fn new_socket(buffers: Buffers) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffers.rx]),
        tcp::SocketBuffer::new(vec![0; buffers.tx]),
    )
}

/// A TCP connection. Dropping it closes it (the stack finishes the close on its own).
#[derive(Debug)]
pub struct TcpStream {
    dev: &'static NetDevice,
    handle: SocketHandle,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl TcpStream {
    /// Connects to `addr` through the default device, waiting at most `timeout` (`None`: until
    /// the peer answers or TCP gives up).
    ///
    /// # Errors
    /// [`NetError::ConnectionRefused`], [`NetError::TimedOut`], [`NetError::Unaddressable`]
    /// (no address yet, no route), [`NetError::AddrInUse`], [`NetError::NoDevice`].
    pub fn connect(addr: SocketAddr, timeout: Option<Duration>) -> Result<Self, NetError> {
        Self::connect_on(default_device()?, addr, timeout, Buffers::default())
    }

    /// Connects through `dev` with socket buffers of the given sizes.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_on(
        dev: &'static NetDevice,
        addr: SocketAddr,
        timeout: Option<Duration>,
        buffers: Buffers,
    ) -> Result<Self, NetError> {
        let deadline = deadline(timeout);
        // A connection made while DHCP is still running waits for the address.
        dev.wait(deadline, |s| {
            (!addr.is_ipv4() || s.has_ipv4()).then_some(Ok(()))
        })?;
        let handle = {
            let mut s = dev.stack.lock();
            let port = s.ephemeral_port()?;
            let Stack { iface, sockets, .. } = &mut *s;
            let mut socket = new_socket(buffers);
            socket
                .connect(iface.context(), addr, port)
                .map_err(|_| NetError::Unaddressable)?;
            sockets.add(socket)
        };
        let stream = Self {
            dev,
            handle,
            read_timeout: None,
            write_timeout: None,
        };
        dev.wait(deadline, |s| match stream.socket(s).state() {
            tcp::State::Established | tcp::State::CloseWait => Some(Ok(())),
            tcp::State::Closed => Some(Err(NetError::ConnectionRefused)),
            _ => None,
        })?;
        Ok(stream)
    }

    fn socket<'s>(&self, s: &'s mut Stack) -> &'s mut tcp::Socket<'static> {
        s.sockets.get_mut::<tcp::Socket>(self.handle)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        let mut s = self.dev.stack.lock();
        self.socket(&mut s).remote_endpoint().map(Into::into)
    }

    /// Sets how long [`read`](Self::read) waits (`None`: for ever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Sets how long [`write`](Self::write) waits (`None`: for ever).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Turns Nagle's algorithm off (`true`) or on: small writes go out at once.
    pub fn set_nodelay(&self, nodelay: bool) {
        let mut s = self.dev.stack.lock();
        self.socket(&mut s).set_nagle_enabled(!nodelay);
    }

    /// Reads what has arrived into `buf`, waiting for data up to the read timeout. `Ok(0)`: the
    /// peer closed its side and everything was read.
    ///
    /// # Errors
    /// [`NetError::TimedOut`], [`NetError::ConnectionReset`].
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let deadline = deadline(self.read_timeout);
        self.dev.wait(deadline, |s| Self::recv(self.socket(s), buf))
    }

    /// Reads what has arrived without waiting.
    ///
    /// # Errors
    /// [`NetError::WouldBlock`] when nothing has; as [`read`](Self::read).
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let mut s = self.dev.stack.lock();
        s.poll();
        Self::recv(self.socket(&mut s), buf).unwrap_or(Err(NetError::WouldBlock))
    }

    fn recv(socket: &mut tcp::Socket<'_>, buf: &mut [u8]) -> Option<Result<usize, NetError>> {
        if buf.is_empty() {
            return Some(Ok(0));
        }
        if socket.can_recv() {
            return Some(
                socket
                    .recv_slice(buf)
                    .map_err(|_| NetError::ConnectionReset),
            );
        }
        if !socket.may_recv() {
            // Closed by the peer after all data (FIN), or reset.
            return Some(match socket.state() {
                tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent => {
                    Err(NetError::ConnectionReset)
                }
                _ => Ok(0),
            });
        }
        None
    }

    /// Queues as much of `buf` as the send buffer takes, waiting for room up to the write
    /// timeout; returns how much was queued (the stack sends it).
    ///
    /// # Errors
    /// [`NetError::TimedOut`], [`NetError::NotConnected`] (shut down or reset).
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        let deadline = deadline(self.write_timeout);
        let r = self.dev.wait(deadline, |s| Self::send(self.socket(s), buf));
        // Send what was queued now rather than at the next poll.
        self.dev.poll();
        r
    }

    /// Queues what fits of `buf` without waiting.
    ///
    /// # Errors
    /// [`NetError::WouldBlock`] when the send buffer is full; as [`write`](Self::write).
    pub fn try_write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        let mut s = self.dev.stack.lock();
        s.poll();
        let r = Self::send(self.socket(&mut s), buf).unwrap_or(Err(NetError::WouldBlock));
        // Send what was queued now rather than at the next poll.
        s.poll();
        r
    }

    fn send(socket: &mut tcp::Socket<'_>, buf: &[u8]) -> Option<Result<usize, NetError>> {
        if !socket.may_send() {
            return Some(Err(NetError::NotConnected));
        }
        if buf.is_empty() {
            return Some(Ok(0));
        }
        if socket.can_send() {
            return Some(socket.send_slice(buf).map_err(|_| NetError::NotConnected));
        }
        None
    }

    /// Writes all of `buf`.
    ///
    /// # Errors
    /// As [`write`](Self::write); part of `buf` may have been queued.
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<(), NetError> {
        while !buf.is_empty() {
            let n = self.write(buf)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Waits until everything written has been acknowledged by the peer, up to the write
    /// timeout.
    ///
    /// # Errors
    /// [`NetError::TimedOut`], [`NetError::ConnectionReset`].
    pub fn flush(&mut self) -> Result<(), NetError> {
        let deadline = deadline(self.write_timeout);
        self.dev.wait(deadline, |s| {
            let socket = self.socket(s);
            if socket.send_queue() == 0 {
                Some(Ok(()))
            } else if !socket.is_active() {
                Some(Err(NetError::ConnectionReset))
            } else {
                None
            }
        })
    }

    /// Closes the sending side (FIN); reading goes on until the peer closes too.
    pub fn shutdown_write(&mut self) {
        let mut s = self.dev.stack.lock();
        self.socket(&mut s).close();
        s.poll();
    }

    /// Resets the connection (RST) instead of closing it gracefully.
    pub fn abort(self) {
        let mut s = self.dev.stack.lock();
        self.socket(&mut s).abort();
        s.poll();
        // Drop closes an aborted socket at once.
    }
}

/// `embedded-io`'s blocking traits over the stream's own calls: `read` waits for at least one
/// byte (`Ok(0)` only at the end of the stream), `write` for room for at least one, both up to
/// their timeouts; `flush` waits until the peer acknowledged everything written.
impl embedded_io::ErrorType for TcpStream {
    type Error = NetError;
}

impl embedded_io::Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        TcpStream::read(self, buf)
    }
}

impl embedded_io::Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        TcpStream::write(self, buf)
    }

    fn flush(&mut self) -> Result<(), NetError> {
        TcpStream::flush(self)
    }
}

impl embedded_io::ReadReady for TcpStream {
    /// Whether `read` would return at once: data has arrived, or the stream has ended.
    fn read_ready(&mut self) -> Result<bool, NetError> {
        let mut s = self.dev.stack.lock();
        s.poll();
        let socket = self.socket(&mut s);
        Ok(socket.can_recv() || !socket.may_recv())
    }
}

impl embedded_io::WriteReady for TcpStream {
    /// Whether `write` would return at once: the send buffer has room, or the stream is closed
    /// for sending (the write then fails at once).
    fn write_ready(&mut self) -> Result<bool, NetError> {
        let mut s = self.dev.stack.lock();
        s.poll();
        let socket = self.socket(&mut s);
        Ok(socket.can_send() || !socket.may_send())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut s = self.dev.stack.lock();
        s.close_later(self.handle);
        s.poll();
    }
}

/// A listening TCP port: [`accept`](Self::accept) hands out connections.
#[derive(Debug)]
pub struct TcpListener {
    dev: &'static NetDevice,
    port: u16,
    buffers: Buffers,
    /// Sockets listening on the port; each becomes a connection, and is replaced.
    backlog: Vec<SocketHandle>,
}

impl TcpListener {
    /// Listens on `port` of the default device.
    ///
    /// # Errors
    /// [`NetError::AddrInUse`], [`NetError::NoDevice`].
    pub fn bind(port: u16) -> Result<Self, NetError> {
        Self::bind_on(default_device()?, port, DEFAULT_BACKLOG, Buffers::default())
    }

    /// Listens on `port` of `dev` with `backlog` connections accepted by the stack before the
    /// application takes them, each with sockets of the given buffer sizes.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn bind_on(
        dev: &'static NetDevice,
        port: u16,
        backlog: usize,
        buffers: Buffers,
    ) -> Result<Self, NetError> {
        let mut s = dev.stack.lock();
        if port == 0 || s.port_in_use(port) {
            return Err(NetError::AddrInUse);
        }
        let mut listener = Self {
            dev,
            port,
            buffers,
            backlog: Vec::with_capacity(backlog.max(1)),
        };
        for _ in 0..backlog.max(1) {
            listener.backlog.push(listener.listening(&mut s)?);
        }
        Ok(listener)
    }

    fn listening(&self, s: &mut Stack) -> Result<SocketHandle, NetError> {
        let mut socket = new_socket(self.buffers);
        socket
            .listen(IpListenEndpoint::from(self.port))
            .map_err(|_| NetError::AddrInUse)?;
        Ok(s.sockets.add(socket))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next connection (`timeout` `None`: for ever).
    ///
    /// # Errors
    /// [`NetError::TimedOut`].
    pub fn accept(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<(TcpStream, SocketAddr), NetError> {
        let deadline = deadline(timeout);
        let dev = self.dev;
        dev.wait(deadline, |s| self.take_connection(s).map(Ok))
    }

    /// Takes a connection if one is ready, without waiting.
    ///
    /// # Errors
    /// [`NetError::WouldBlock`].
    pub fn try_accept(&mut self) -> Result<(TcpStream, SocketAddr), NetError> {
        let mut s = self.dev.stack.lock();
        s.poll();
        self.take_connection(&mut s).ok_or(NetError::WouldBlock)
    }

    /// A backlog socket that left `Listen` and got past the handshake, replaced by a fresh one.
    fn take_connection(&mut self, s: &mut Stack) -> Option<(TcpStream, SocketAddr)> {
        let pos = self.backlog.iter().position(|&h| {
            let socket = s.sockets.get::<tcp::Socket>(h);
            !matches!(socket.state(), tcp::State::Listen | tcp::State::SynReceived)
        })?;
        let handle = self.backlog[pos];
        let peer = s
            .sockets
            .get::<tcp::Socket>(handle)
            .remote_endpoint()
            .map(SocketAddr::from);
        match self.listening(s) {
            Ok(fresh) => self.backlog[pos] = fresh,
            Err(_) => {
                self.backlog.swap_remove(pos);
            }
        }
        let stream = TcpStream {
            dev: self.dev,
            handle,
            read_timeout: None,
            write_timeout: None,
        };
        // A connection reset before it was accepted has no peer any more: it is still handed
        // out, and its first read reports the reset.
        let peer = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        Some((stream, peer))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut s = self.dev.stack.lock();
        for h in self.backlog.drain(..) {
            s.close_later(h);
        }
    }
}
