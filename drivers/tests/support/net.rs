//! A simulated virtio-net device on the fake transport: delivers frames into the rx queue
//! (whole or spread over merged buffers, or as a hostile device wants), takes frames from the
//! tx queue, and answers control commands — also while the driver waits, through the clock
//! that its wait budgets poll.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::{Rc, Weak},
};

use vireo_drivers::net::{HEADER_LEN, NetDriver, NetDriverError, NetOptions};
use vireo_virtio::{
    transport::{Clock, WaitBudget},
    virtio_spec::{DeviceStatus, F, net},
};
use vm_memory::{Address, Bytes};

use super::{Chain, FakeTransport, GuestDma, Sim, SimState};

pub type NetDrv = NetDriver<FakeTransport, GuestDma>;

/// Every net feature the driver may negotiate, and the ring features.
pub fn all_net() -> F {
    F::from(
        net::F::MAC
            | net::F::STATUS
            | net::F::MTU
            | net::F::CSUM
            | net::F::GUEST_CSUM
            | net::F::GUEST_TSO4
            | net::F::GUEST_TSO6
            | net::F::HOST_TSO4
            | net::F::HOST_TSO6
            | net::F::MRG_RXBUF
            | net::F::CTRL_VQ
            | net::F::CTRL_RX,
    ) | F::INDIRECT_DESC
        | F::EVENT_IDX
        | F::RING_PACKED
        | F::RING_RESET
}

pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// `struct virtio_net_config` bytes: MAC, status, one queue pair, MTU.
pub fn net_config(mac: [u8; 6], link_up: bool, mtu: u16) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[0..6].copy_from_slice(&mac);
    b[6..8].copy_from_slice(&u16::from(link_up).to_le_bytes());
    b[8..10].copy_from_slice(&1u16.to_le_bytes());
    b[10..12].copy_from_slice(&mtu.to_le_bytes());
    b
}

/// A net header as the device writes it.
pub fn header(flags: u8, csum_start: u16, csum_offset: u16, num_buffers: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = flags;
    h[6..8].copy_from_slice(&csum_start.to_le_bytes());
    h[8..10].copy_from_slice(&csum_offset.to_le_bytes());
    h[10..12].copy_from_slice(&num_buffers.to_le_bytes());
    h
}

/// A net header for a coalesced TCP segment (`NEEDS_CSUM` with the partial checksum at
/// `csum_start + 16`, `gso_type`, `hdr_len`, `gso_size`), as QEMU passes on a tap's.
pub fn gso_header(gso_type: u8, hdr_len: u16, gso_size: u16, csum_start: u16) -> [u8; HEADER_LEN] {
    let mut h = header(1, csum_start, 16, 1);
    h[1] = gso_type;
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&gso_size.to_le_bytes());
    h
}

/// A control command as the device received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtrlCommand {
    pub class: u8,
    pub command: u8,
    pub data: Vec<u8>,
}

/// The device's net logic over the generic simulator.
pub struct NetSim {
    pub sim: Sim,
    /// rx buffers the device has taken and not yet used, and the queue set-up they belong to.
    rx_avail: VecDeque<Chain>,
    rx_epoch: Option<u64>,
    pub ctrl_log: Vec<CtrlCommand>,
    /// The ack the device writes (0: OK).
    pub ctrl_ack: u8,
    /// The used length the device reports for a control command (1: the ack byte).
    pub ctrl_used_len: u32,
    /// The device leaves control commands unanswered.
    pub ctrl_silent: bool,
    /// Once the driver uses the control queue, the device stops finishing resets.
    pub stick_reset_on_ctrl: bool,
    /// tx notifications [`serve_tx_notified`](Self::serve_tx_notified) has acted on.
    tx_notifications_served: usize,
}

impl NetSim {
    pub fn merged(&self) -> bool {
        self.state()
            .driver_features
            .contains(net::F::MRG_RXBUF.into())
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.sim.state.lock().unwrap()
    }

    fn live(&self, q: u16) -> bool {
        let s = self.state();
        s.status & DeviceStatus::DRIVER_OK.bits() != 0 && s.queues[usize::from(q)].is_some()
    }

    /// rx buffers available to the device now.
    pub fn rx_available(&mut self) -> usize {
        if !self.live(0) {
            return 0;
        }
        let epoch = self.sim.epoch(0);
        if epoch != self.rx_epoch {
            self.rx_avail.clear();
            self.rx_epoch = epoch;
        }
        let more = self.sim.pop(0);
        self.rx_avail.extend(more);
        self.rx_avail.len()
    }

    /// Writes `parts` into the next rx buffers, one buffer each, and makes them used with the
    /// given lengths (`None`: the bytes written). Returns false (nothing done) when the device
    /// has fewer buffers.
    pub fn deliver_raw(&mut self, parts: &[(Vec<u8>, Option<u32>)]) -> bool {
        if self.rx_available() < parts.len() {
            return false;
        }
        let mem = self.sim.dma.mem().clone();
        for (bytes, len) in parts {
            let chain = self.rx_avail.pop_front().unwrap();
            let (addr, cap, writable) = chain.descs[0];
            assert!(
                writable && bytes.len() <= cap as usize,
                "rx buffer too small"
            );
            mem.write_slice(bytes, addr).unwrap();
            let used = len.unwrap_or(bytes.len() as u32);
            self.sim.push_used(0, &chain, used);
        }
        true
    }

    /// Size of the rx buffers the driver posted.
    pub fn rx_buffer_len(&mut self) -> usize {
        self.rx_available();
        self.rx_avail.front().map_or(0, |c| c.descs[0].1 as usize)
    }

    /// Delivers `frame` with header `flags`/checksum offsets, spread over as many merged
    /// buffers as it needs (one without MRG_RXBUF). Returns false if the device lacks buffers.
    pub fn deliver_with(&mut self, frame: &[u8], flags: u8, csum: (u16, u16)) -> bool {
        self.deliver_header(frame, header(flags, csum.0, csum.1, 1))
    }

    /// Delivers `frame` after the net header `h` (its `num_buffers` set here), spread over as
    /// many merged buffers as it needs. Returns false if the device lacks buffers.
    pub fn deliver_header(&mut self, frame: &[u8], h: [u8; HEADER_LEN]) -> bool {
        let cap = self.rx_buffer_len();
        if cap == 0 {
            return false;
        }
        let mut bytes = h.to_vec();
        bytes[10..12].copy_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(frame);
        let parts: Vec<_> = bytes.chunks(cap).map(|c| (c.to_vec(), None)).collect();
        let mut parts = parts;
        if self.merged() {
            let n = parts.len() as u16;
            parts[0].0[10..12].copy_from_slice(&n.to_le_bytes());
        } else {
            assert_eq!(
                parts.len(),
                1,
                "frame larger than a buffer without MRG_RXBUF"
            );
        }
        self.deliver_raw(&parts)
    }

    pub fn deliver(&mut self, frame: &[u8]) -> bool {
        self.deliver_with(frame, 0, (0, 0))
    }

    /// Takes every frame the driver made available on the tx queue: (net header, frame).
    pub fn take_tx(&mut self) -> Vec<([u8; HEADER_LEN], Vec<u8>)> {
        if !self.live(1) {
            return Vec::new();
        }
        let mem = self.sim.dma.mem().clone();
        let mut out = Vec::new();
        for chain in self.sim.pop(1) {
            let mut bytes = Vec::new();
            for &(addr, len, writable) in &chain.descs {
                assert!(!writable, "tx buffers are device-readable");
                let mut part = vec![0u8; len as usize];
                mem.read_slice(&mut part, addr).unwrap();
                bytes.extend(part);
            }
            let frame = bytes.split_off(HEADER_LEN);
            out.push((bytes.try_into().unwrap(), frame));
            self.sim.push_used(1, &chain, 0);
        }
        out
    }

    /// Runs the tx queue as a device that waits for notifications does (QEMU's virtio-net):
    /// only if a tx notification came since the last call; then, with notifications off,
    /// takes every frame, asks for notifications again (with `EVENT_IDX`: from the next
    /// position it will read) and looks once more, until no frame came in meanwhile.
    pub fn serve_tx_notified(&mut self) -> Vec<([u8; HEADER_LEN], Vec<u8>)> {
        let received = self
            .state()
            .notifications
            .iter()
            .filter(|&&q| q == 1)
            .count();
        if received == self.tx_notifications_served || !self.live(1) {
            return Vec::new();
        }
        self.tx_notifications_served = received;
        let mut out = Vec::new();
        loop {
            self.sim.disable_notification(1);
            out.extend(self.take_tx());
            if !self.sim.enable_notification(1) {
                return out;
            }
        }
    }

    /// Answers every pending control command.
    pub fn serve_ctrl(&mut self) {
        if !self.live(2) {
            return;
        }
        if self.stick_reset_on_ctrl {
            self.state().reset_stuck = true;
        }
        if self.ctrl_silent {
            return;
        }
        let mem = self.sim.dma.mem().clone();
        for chain in self.sim.pop(2) {
            let mut bytes = Vec::new();
            let mut ack_at = None;
            for &(addr, len, writable) in &chain.descs {
                if writable {
                    ack_at = Some(addr.unchecked_add(0));
                } else {
                    let mut part = vec![0u8; len as usize];
                    mem.read_slice(&mut part, addr).unwrap();
                    bytes.extend(part);
                }
            }
            self.ctrl_log.push(CtrlCommand {
                class: bytes[0],
                command: bytes[1],
                data: bytes[2..].to_vec(),
            });
            mem.write_obj(self.ctrl_ack, ack_at.expect("ack descriptor"))
                .unwrap();
            self.sim.push_used(2, &chain, self.ctrl_used_len);
        }
    }

    /// Rewrites the configuration (a config-change interrupt is up to the test).
    pub fn set_config(&mut self, mac: [u8; 6], link_up: bool, mtu: u16) {
        let mut s = self.state();
        s.config = net_config(mac, link_up, mtu);
        s.generation += 1;
    }
}

/// A clock that advances a microsecond per reading and lets the device answer control
/// commands whenever the driver waits.
pub struct NetClock {
    now: Cell<u64>,
    dev: Weak<RefCell<NetSim>>,
}

impl Clock for NetClock {
    fn now_ns(&self) -> u64 {
        let now = self.now.get() + 1_000;
        self.now.set(now);
        now
    }

    fn relax(&self) {
        if let Some(dev) = self.dev.upgrade()
            && let Ok(mut dev) = dev.try_borrow_mut()
        {
            dev.serve_ctrl();
        }
    }
}

/// One simulated network device and its clock.
pub struct Net {
    pub dev: Rc<RefCell<NetSim>>,
    pub clock: NetClock,
    pub dma: GuestDma,
}

impl Net {
    pub fn new(offered: F, config: Vec<u8>) -> Self {
        let sim = Sim::with_state(SimState::device(1, offered, config));
        let dma = sim.dma.clone();
        let dev = Rc::new(RefCell::new(NetSim {
            sim,
            rx_avail: VecDeque::new(),
            rx_epoch: None,
            ctrl_log: Vec::new(),
            ctrl_ack: 0,
            ctrl_used_len: 1,
            ctrl_silent: false,
            stick_reset_on_ctrl: false,
            tx_notifications_served: 0,
        }));
        let clock = NetClock {
            now: Cell::new(0),
            dev: Rc::downgrade(&dev),
        };
        Self { dev, clock, dma }
    }

    /// A device offering everything, MTU 1500, link up.
    pub fn standard() -> Self {
        Self::new(all_net(), net_config(MAC, true, 1500))
    }

    pub fn budget(&self) -> WaitBudget<'_> {
        WaitBudget::new(&self.clock, 10_000_000)
    }

    pub fn try_driver(&self, options: NetOptions) -> Result<NetDrv, NetDriverError> {
        let transport = FakeTransport(self.dev.borrow().sim.state.clone());
        let vectors = [Some(1), Some(2), Some(3)];
        NetDriver::new(
            transport,
            self.dma.clone(),
            options,
            &vectors,
            &mut self.budget(),
        )
    }

    pub fn driver(&self, options: NetOptions) -> NetDrv {
        self.try_driver(options).expect("driver init")
    }

    pub fn set_hostile(&self, f: impl FnOnce(&mut SimState)) {
        f(&mut self.dev.borrow().state());
    }
}

/// Every ring configuration, with merged rx buffers on and off: (packed, mrg_rxbuf). Guest TSO
/// is off (it lengthens the buffers of a pool this small) and so is transmit TSO (it changes
/// what a sender's frames look like on the wire); `net_tso.rs` and `net_smoltcp.rs` test them.
pub fn net_matrix() -> Vec<NetOptions> {
    let mut v = Vec::new();
    for packed in [false, true] {
        for mrg_rxbuf in [false, true] {
            v.push(NetOptions {
                packed,
                mrg_rxbuf,
                queue_size: 64,
                rx_buffers: 32,
                tx_buffers: 16,
                refill_batch: 4,
                tso: false,
                host_tso: false,
                ..NetOptions::default()
            });
        }
    }
    v
}

/// An Ethernet frame of `len` bytes to `dst` with a recognisable payload.
pub fn eth_frame(dst: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    for (i, b) in f[14..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) ^ seed;
    }
    f
}

/// Sends a frame through smoltcp's transmit token (what smoltcp, and so a raw socket, writes
/// through), with a segmentation size unless `mss` is 0, as smoltcp's TCP socket asks for a
/// segment longer than the MSS.
pub fn send_segmented(drv: &mut NetDrv, frame: &[u8], mss: u16) {
    use smoltcp::phy::{Device, PacketMeta, TxToken};
    let mut phy = drv.phy();
    let mut token = phy.transmit(smoltcp::time::Instant::ZERO).unwrap();
    let mut meta = PacketMeta::default();
    meta.segmentation_offload_size = std::num::NonZeroU16::new(mss);
    token.set_meta(meta);
    token.consume(frame.len(), |b| b.copy_from_slice(frame));
}

/// Receives every frame the driver has.
pub fn drain(drv: &mut NetDrv) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(f) = drv.receive(|f| f.to_vec()).unwrap() {
        out.push(f);
    }
    out
}
