//! The smoltcp device: [`NetPhy`] and its tokens read and write the DMA buffers in place.
//!
//! # Checksums
//!
//! At most one pass over a received frame's bytes for its TCP or UDP checksum, and none when
//! the device vouches for it. smoltcp's checksum capabilities hold for every frame, while a
//! device's flags differ per frame, so with `VIRTIO_NET_F_GUEST_CSUM` the driver takes the
//! receive side over and smoltcp is told not to verify TCP and UDP checksums at all. Per frame
//! (virtio 1.2 §5.1.6.4):
//!
//! - `NEEDS_CSUM`: the device validated every checksum before the partial one it left; the
//!   frame is accepted without computing anything, once `csum_start`/`csum_offset` are seen
//!   to lie inside it (otherwise it is dropped and counted in [`NetDriverStats::rx_bad_csum`]).
//!   smoltcp then sees a frame whose TCP or UDP checksum field holds a partial sum.
//! - `DATA_VALID`: accepted.
//! - Neither: the driver verifies the TCP or UDP checksum itself (IPv4 and IPv6, behind
//!   hop-by-hop or destination-options headers; UDP over IPv4 with a zero checksum carries
//!   none; a zero UDP checksum over IPv6 fails, RFC 8200 §8.1). A wrong one is dropped and
//!   counted in [`NetDriverStats::rx_csum_failed`]. A frame that smoltcp would not hand to TCP or
//!   UDP (not IP, another protocol, an IP fragment, lengths smoltcp refuses) goes to smoltcp
//!   unchanged; smoltcp keeps verifying IPv4 header and ICMP checksums.
//!
//! Merged (`VIRTIO_NET_F_MRG_RXBUF`) frames are treated the same, after reassembly. Without
//! `GUEST_CSUM`, smoltcp verifies every received checksum.
//!
//! With `VIRTIO_NET_F_CSUM` smoltcp is told not to compute TCP and UDP checksums on transmit;
//! the tx token finds the TCP or UDP header of each frame (IPv4 or IPv6) and lets the device
//! compute the checksum (`NEEDS_CSUM`, `csum_start`, `csum_offset`, the pseudo-header sum in
//! the field). IPv4 header and ICMP checksums stay with smoltcp. Without `CSUM`, smoltcp
//! computes every checksum.
//!
//! # Segmentation
//!
//! With `VIRTIO_NET_F_HOST_TSO4` smoltcp is told (`DeviceCapabilities::segmentation`) that the
//! device cuts TCP/IPv4 segments of up to [`MAX_TSO_FRAME_LEN`](super::MAX_TSO_FRAME_LEN)
//! bytes; a TCP socket then sends up to that much at once (within the windows) and names the
//! MSS in the packet's metadata, which the tx token passes on (`gso_type`, `gso_size`,
//! `hdr_len`, with the checksum left to the device as above).

use alloc::vec;
use core::num::{NonZeroU16, NonZeroUsize};

use smoltcp::{
    phy::{self, Checksum, DeviceCapabilities, Medium, PacketMeta},
    time::Instant,
};
use vireo_virtio::{DmaAllocator, transport::Transport};

use super::{
    NetDriver,
    config::HEADER_LEN,
    error::{NetDriverError, NetDriverStats},
    rx::{RxHeld, RxQueue},
    tx::TxQueue,
};

/// The driver as a smoltcp [`phy::Device`], for one `Interface::poll`:
/// `iface.poll(now, &mut driver.phy(), &mut sockets)`.
///
/// Frames smoltcp transmits during the poll are batched; dropping the `NetPhy` (at the end
/// of the statement above) hands them to the device with one notification. Errors smoltcp
/// cannot take are kept for [`NetDriver::take_error`] and counted in
/// [`NetDriverStats::phy_errors`].
pub struct NetPhy<'a, T: Transport, A: DmaAllocator + 'static> {
    driver: &'a mut NetDriver<T, A>,
}

impl<T: Transport, A: DmaAllocator + 'static> core::fmt::Debug for NetPhy<'_, T, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetPhy")
            .field("driver", &self.driver)
            .finish()
    }
}

impl<T: Transport, A: DmaAllocator + 'static> NetDriver<T, A> {
    /// The driver as a smoltcp device for one poll of an `Interface` (see [`NetPhy`]).
    pub fn phy(&mut self) -> NetPhy<'_, T, A> {
        NetPhy { driver: self }
    }

    /// What smoltcp is told about the device: Ethernet, the MTU in use (as a frame length),
    /// a burst of as many full frames as the rx buffers hold, TCP/UDP transmit checksums left
    /// to the device when `VIRTIO_NET_F_CSUM` was negotiated, and TCP/UDP receive checksums
    /// left to the driver when `VIRTIO_NET_F_GUEST_CSUM` was (see the module docs).
    #[must_use]
    pub fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.info().max_frame_len;
        let per_frame =
            (HEADER_LEN + self.info().max_frame_len).div_ceil(self.info().rx_buffer_len);
        let buffers = self.queues.as_ref().map_or(1, |q| q.rx.total());
        caps.max_burst_size = Some((buffers / per_frame.max(1)).max(1));
        let (tx_by_device, rx_by_driver) = self.queues.as_ref().map_or((false, false), |q| {
            (q.tx.offloads_checksum(), q.rx.verifies_checksums())
        });
        let smoltcp = match (tx_by_device, rx_by_driver) {
            (false, false) => Checksum::Both,
            (true, false) => Checksum::Rx,
            (false, true) => Checksum::Tx,
            (true, true) => Checksum::None,
        };
        caps.checksum.tcp = smoltcp;
        caps.checksum.udp = smoltcp;
        caps.segmentation.tcpv4 = self
            .queues
            .as_ref()
            .and_then(|q| q.tx.tso_frame_len())
            .and_then(NonZeroUsize::new);
        caps
    }
}

fn record(error: &mut Option<NetDriverError>, stats: &mut NetDriverStats, e: NetDriverError) {
    *error = Some(e);
    stats.phy_errors += 1;
}

impl<T: Transport, A: DmaAllocator + 'static> phy::Device for NetPhy<'_, T, A> {
    type RxToken<'b>
        = NetRxToken<'b, A>
    where
        Self: 'b;
    type TxToken<'b>
        = NetTxToken<'b, A>
    where
        Self: 'b;

    /// A received frame, with a transmit token for the reply: only while a transmit buffer is
    /// free, so a reply is never dropped (the frame waits in its ring until then).
    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let driver = &mut *self.driver;
        let queues = driver.queues.as_mut()?;
        let ready = queues
            .tx
            .has_room()
            .and_then(|room| if room { queues.rx.next() } else { Ok(None) });
        match ready {
            Ok(Some(held)) => Some((
                NetRxToken {
                    rx: &mut queues.rx,
                    held: Some(held),
                },
                NetTxToken {
                    tx: &mut queues.tx,
                    error: &mut driver.last_error,
                    mss: None,
                },
            )),
            Ok(None) => None,
            Err(e) => {
                record(&mut driver.last_error, &mut queues.tx.stats, e);
                None
            }
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let driver = &mut *self.driver;
        let queues = driver.queues.as_mut()?;
        match queues.tx.has_room() {
            Ok(true) => Some(NetTxToken {
                tx: &mut queues.tx,
                error: &mut driver.last_error,
                mss: None,
            }),
            Ok(false) => None,
            Err(e) => {
                record(&mut driver.last_error, &mut queues.tx.stats, e);
                None
            }
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.driver.capabilities()
    }
}

impl<T: Transport, A: DmaAllocator + 'static> Drop for NetPhy<'_, T, A> {
    /// Hands the frames batched during the poll to the device (one notification).
    fn drop(&mut self) {
        let driver = &mut *self.driver;
        if let Some(queues) = driver.queues.as_mut()
            && let Err(e) = queues.tx.flush()
        {
            record(&mut driver.last_error, &mut queues.tx.stats, e);
        }
    }
}

/// A received frame for smoltcp: its bytes stay in the DMA buffer (or the reassembly copy);
/// the buffer goes back to the rx pool when the token is consumed or dropped.
pub struct NetRxToken<'a, A: DmaAllocator> {
    rx: &'a mut RxQueue<A>,
    held: Option<RxHeld<A>>,
}

impl<A: DmaAllocator> core::fmt::Debug for NetRxToken<'_, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The frame's length, never its bytes.
        let len = self.held.as_ref().map(|held| self.rx.frame(held).len());
        f.debug_struct("NetRxToken")
            .field("len", &len)
            .finish_non_exhaustive()
    }
}

impl<A: DmaAllocator> phy::RxToken for NetRxToken<'_, A> {
    fn consume<R, F>(mut self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self.held.take() {
            Some(held) => {
                let result = f(self.rx.frame(&held));
                self.rx.release(held);
                result
            }
            None => f(&[]),
        }
    }
}

impl<A: DmaAllocator> Drop for NetRxToken<'_, A> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            self.rx.release(held);
        }
    }
}

/// A transmit buffer for smoltcp: the frame is written after the net header, in place.
pub struct NetTxToken<'a, A: DmaAllocator> {
    tx: &'a mut TxQueue<A>,
    error: &'a mut Option<NetDriverError>,
    /// The MSS smoltcp asked the device to cut this TCP segment at (see the module docs).
    mss: Option<NonZeroU16>,
}

impl<A: DmaAllocator> core::fmt::Debug for NetTxToken<'_, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetTxToken")
            .field("mss", &self.mss)
            .finish_non_exhaustive()
    }
}

impl<A: DmaAllocator> phy::TxToken for NetTxToken<'_, A> {
    /// Writes the frame into a DMA buffer and batches it. If that fails (a frame larger than
    /// the MTU, or than [`MAX_TSO_FRAME_LEN`](super::MAX_TSO_FRAME_LEN) for a segment the device
    /// cuts, or the device broke the ring protocol), `f` writes into a scratch buffer, the
    /// frame is dropped and the error recorded.
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let reserved = match self.mss {
            Some(_) => self.tx.reserve_segmented(len),
            None => self.tx.reserve(len, None),
        };
        let error = match reserved {
            Ok(frame) => {
                let result = f(frame);
                // A segment the device cannot cut is dropped (TCP sends it again).
                if let Err(e) = self.tx.offload_last(self.mss) {
                    record(self.error, &mut self.tx.stats, e);
                }
                return result;
            }
            Err(e) => e,
        };
        record(self.error, &mut self.tx.stats, error);
        f(&mut vec![0; len])
    }

    /// Keeps the segmentation size smoltcp asks for (`PacketMeta::segmentation_offload_size`).
    fn set_meta(&mut self, meta: PacketMeta) {
        self.mss = meta.segmentation_offload_size;
    }
}
