//! The virtio-net driver (virtio 1.2 §5.1), with a smoltcp device.
//!
//! Layer: driver, between the virtqueue core (`vireo-virtio`) and the kernel's network API
//! (`vireo::net`), which adds the smoltcp interface, sockets and waiting.
//!
//! [`NetDriver`] brings up a network device over any
//! [`Transport`](vireo_virtio::transport::Transport) with one queue pair (rx queue 0, tx
//! queue 1, control queue 2 with `VIRTIO_NET_F_CTRL_VQ`). What it negotiates is chosen by
//! [`NetOptions`]; what it read from the device is in [`NetDeviceConfig`].
//!
//! - Receive: a pool of fixed-size DMA buffers kept posted, refilled in batches (one
//!   notification per batch). A frame is handed over in its buffer
//!   ([`NetDriver::receive`], or smoltcp's rx token); with `VIRTIO_NET_F_MRG_RXBUF` a frame
//!   spread over several buffers is copied into one reassembly buffer. No allocation per
//!   frame. With `VIRTIO_NET_F_GUEST_TSO4`/`TSO6` that may be a TCP segment of up to
//!   [`MAX_GSO_FRAME_LEN`] bytes the device coalesced, which smoltcp takes whole.
//! - Transmit: frames are written into a pool of DMA buffers, batched, and handed to the
//!   device with one notification per batch ([`NetDriver::flush`], or at the end of a smoltcp
//!   poll); used buffers are reclaimed lazily. tx interrupts stay off. With
//!   `VIRTIO_NET_F_HOST_TSO4` smoltcp sends TCP/IPv4 segments of up to [`MAX_TSO_FRAME_LEN`]
//!   bytes, in buffers of their own, for the device to cut.
//! - Checksums: with `VIRTIO_NET_F_GUEST_CSUM` the driver, not smoltcp, answers for received
//!   TCP and UDP checksums, per frame: on the device's word (`NEEDS_CSUM`, `DATA_VALID`) or
//!   by verifying them itself when the device set neither flag: one pass at most, a wrong
//!   checksum dropped and counted ([`NetDriverStats::rx_csum_failed`]). The details are in `phy.rs`.
//! - The device is not trusted: a used length shorter than the net header, a bad
//!   `num_buffers`, an oversized frame, checksum offsets outside the frame or a GSO type it may
//!   not send drop the frame and count it in [`NetDriverStats`]; ring protocol violations are [`NetDriverError::Queue`]. No byte the
//!   device did not write reaches the caller.
//! - Lifetime: a driver that is dropped, or whose bring-up fails, resets the device and frees
//!   its rings and buffers only once the reset is confirmed; otherwise it leaks them.

mod accept;
mod checksum;
mod config;
mod ctrl;
mod datapath;
mod driver;
mod error;
mod phy;
mod rx;
mod tx;

pub use self::{
    config::{
        DEFAULT_MTU, ETHERNET_HEADER_LEN, HEADER_LEN, MAX_GSO_FRAME_LEN, MAX_TSO_FRAME_LEN,
        MIN_MTU, NetDeviceConfig, NetOptions,
    },
    ctrl::MAX_MAC_FILTERS,
    driver::{ConfigChange, NetDriver, default_multicast},
    error::{NetDriverError, NetDriverStats},
    phy::{NetPhy, NetRxToken, NetTxToken},
    tx::TxChecksum,
};
