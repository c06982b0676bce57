//! The checking body of the virtio-net receive fuzz target (`drivers/fuzz`, target `net_rx`),
//! shared with the host test `tests/net_rx_fuzz.rs`, which runs it over seeded pseudo-random
//! inputs so that every `cargo test` exercises it.
//!
//! The input plays the device. Two bytes choose what the driver negotiates and how it sizes its
//! queues (ring layout, `MRG_RXBUF`, `GUEST_CSUM`, guest TSO, `EVENT_IDX`, the control queue,
//! the MTU, the queue size, the number and size of rx buffers, the refill batch); then, until
//! the input runs out, one operation per byte:
//!
//! - an honest frame: well-formed header, spread over as many merged buffers as it needs;
//! - a hostile delivery: up to four buffers whose header (flags, gso_type, hdr_len, gso_size,
//!   csum_start, csum_offset, num_buffers), bytes and used lengths come from the input, a used
//!   length past the buffer now and then;
//! - the driver receives one frame, drains every frame, or receives through its smoltcp device
//!   (consuming the token or dropping it unread);
//! - notifications on or off, a re-notification, or a reset.
//!
//! What must hold:
//!
//! - no panic, and no error except the queue error a used length past its buffer causes (after
//!   which `reset_and_reinit` brings the driver back);
//! - the rx pool keeps its size (posted + spare), and after a drain every buffer is with the
//!   device again;
//! - every frame handed out is exactly what the device wrote: the bytes after the header up to
//!   the used length of the buffer a frame began in, followed for a merged frame by the bytes of
//!   the next `num_buffers - 1` buffers up to their used lengths; never longer than the MTU
//!   allows (or, for a coalesced TCP segment with guest TSO, 65,550 bytes), never from a buffer
//!   before the one the previous frame began in, never stale bytes past a used length;
//! - with `GUEST_CSUM`, never a frame with neither checksum flag whose TCP or UDP checksum is
//!   wrong (the tests' own reading of the frame, `frames::checksum_verdict`), nor one with
//!   `NEEDS_CSUM` offsets outside it, nor a GSO type that was not negotiated or does not match;
//! - while the device is honest, every frame arrives, once, in order (but those the driver must
//!   refuse for their checksum);
//! - the counters agree with what was handed out, and dropping the driver frees every DMA block.

use std::{collections::VecDeque, mem::offset_of, slice};

use smoltcp::{
    phy::{Device as _, RxToken as _},
    time::Instant,
};
use vireo_drivers::net::{HEADER_LEN, MAX_GSO_FRAME_LEN, NetDriverError, NetOptions};
use vireo_virtio::{
    QueueError,
    virtio_spec::{F, net},
};

use super::{
    frames::{checksum_verdict, ip_payload},
    net::{MAC, Net, NetDrv, all_net, header, net_config},
};

/// Offsets of the fields the driver reads in `struct virtio_net_hdr_v1` (§5.1.6).
const FLAGS: usize = offset_of!(net::Hdr, flags);
const GSO_TYPE: usize = offset_of!(net::Hdr, gso_type);
const CSUM_START: usize = offset_of!(net::Hdr, csum_start);
const CSUM_OFFSET: usize = offset_of!(net::Hdr, csum_offset);
const NUM_BUFFERS: usize = offset_of!(net::Hdr, num_buffers);
const NEEDS_CSUM: u8 = net::HdrF::NEEDS_CSUM.bits();
const DATA_VALID: u8 = net::HdrF::DATA_VALID.bits();

/// Runs one input (see the module docs); panics when a property fails.
pub fn run(data: &[u8]) {
    let mut input = Input(data.iter());
    let (options, mtu) = options(&mut input);
    let net = Net::new(all_net(), net_config(MAC, true, mtu));
    let live = net.dma.live();
    let drv = net.driver(options);
    let mut rx = Rx::new(net, drv, &options);
    while !input.is_empty() {
        rx.step(&mut input);
    }
    rx.drain(true);
    assert_eq!(rx.drv.stats().rx_frames, rx.handed_out, "rx_frames counter");
    let Rx { net, drv, .. } = rx;
    drop(drv);
    assert_eq!(
        net.dma.live(),
        live,
        "DMA blocks left after the driver was dropped"
    );
}

/// The input, a byte at a time; zeros once it runs out.
struct Input<'a>(slice::Iter<'a, u8>);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        self.0.next().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// `len` bytes for the device to write: up to 32 taken from the input, the rest a pattern
    /// seeded by it.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let seed = self.byte();
        let taken = usize::from(self.byte() % 33).min(len);
        let mut bytes: Vec<u8> = (0..taken).map(|_| self.byte()).collect();
        bytes.extend((taken..len).map(|i| (i as u8).wrapping_mul(167) ^ seed));
        bytes
    }
}

/// The driver's options and the device's MTU, from the first bytes of the input.
fn options(input: &mut Input<'_>) -> (NetOptions, u16) {
    let (a, b) = (input.byte(), input.byte());
    let mtu = match a >> 4 & 3 {
        0 => None,
        1 => Some(68),
        2 => Some(576),
        _ => Some(input.u16()),
    };
    let options = NetOptions {
        packed: a & 1 != 0,
        mrg_rxbuf: a & 2 != 0,
        csum: a & 4 != 0,
        event_idx: a & 8 != 0,
        mtu: mtu.is_some(),
        rx_buffers: [1, 3, 8, 64][usize::from(a >> 6)],
        mrg_buffer_len: [13, 100, 256, 2048][usize::from(b & 3)],
        refill_batch: [1, 2, 4, 16][usize::from(b >> 2 & 3)],
        queue_size: [2, 8, 32, 64][usize::from(b >> 4 & 3)],
        ctrl_vq: b & 0x40 != 0,
        tso: b & 0x80 != 0,
        tx_buffers: 4,
        ..NetOptions::default()
    };
    (options, mtu.unwrap_or(1500))
}

/// The driver under test, the device, and what the device made used.
struct Rx {
    net: Net,
    drv: NetDrv,
    max_frame: usize,
    /// Size of each rx buffer.
    capacity: usize,
    /// Buffers in the rx pool.
    pool: usize,
    mrg: bool,
    guest_csum: bool,
    /// `GUEST_TSO4` and `GUEST_TSO6` negotiated.
    tso: (bool, bool),
    /// Every buffer the device made used since the last reset, in order: its bytes up to the
    /// used length (`None`: a used length past the buffer).
    used: Vec<Option<Vec<u8>>>,
    /// The first entry of `used` in which the next frame handed out may begin.
    cursor: usize,
    /// Whether the device has been honest since everything used was last taken.
    honest: bool,
    /// While `honest`: the frames sent and not yet handed out, in order.
    expected: VecDeque<Vec<u8>>,
    /// A used length past its buffer was written since the last reset: a queue error may come.
    overrun: bool,
    handed_out: u64,
}

impl Rx {
    fn new(net: Net, drv: NetDrv, options: &NetOptions) -> Self {
        let (posted, spare) = drv.rx_buffers();
        let pool = posted + spare;
        let wanted = options.rx_buffers.min(options.queue_size);
        assert_eq!(pool, usize::from(wanted), "rx buffers after bring-up");
        let features = drv.features();
        Self {
            max_frame: drv.info().max_frame_len,
            capacity: drv.info().rx_buffer_len,
            pool,
            mrg: features.contains(F::from(net::F::MRG_RXBUF)),
            guest_csum: features.contains(F::from(net::F::GUEST_CSUM)),
            tso: (
                features.contains(F::from(net::F::GUEST_TSO4)),
                features.contains(F::from(net::F::GUEST_TSO6)),
            ),
            net,
            drv,
            used: Vec::new(),
            cursor: 0,
            honest: true,
            expected: VecDeque::new(),
            overrun: false,
            handed_out: 0,
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        match op % 8 {
            0 | 1 => self.deliver_honest(input),
            2 | 3 => self.deliver_hostile(input),
            4 => match self.drv.receive(|f| f.to_vec()) {
                Ok(frame) => frame.iter().for_each(|f| self.handed(Some(f))),
                Err(e) => self.recover(e),
            },
            5 => self.drain(op & 0x80 != 0),
            6 => self.receive_phy(op & 0x80 != 0),
            _ => match op >> 3 & 3 {
                0 => self.reset(),
                1 => {
                    let _pending = self.drv.enable_rx_notifications().expect("enable");
                }
                2 => self.drv.disable_rx_notifications().expect("disable"),
                _ => self.drv.renotify().expect("renotify"),
            },
        }
        if self.drv.is_ready() {
            let (posted, spare) = self.drv.rx_buffers();
            assert_eq!(posted + spare, self.pool, "rx buffers lost or made up");
        }
    }

    /// A well-formed frame of any length up to the MTU, with or without checksum flags,
    /// spread over buffers of a chosen fill (merged) or in one buffer.
    fn deliver_honest(&mut self, input: &mut Input<'_>) {
        let len = usize::from(input.u16()) % (self.max_frame + 1);
        let frame = input.bytes(len);
        let (mut flags, mut start, mut offset) = (0, 0, 0);
        match input.byte() % 3 {
            1 => flags = DATA_VALID,
            2 if len >= 2 => {
                flags = NEEDS_CSUM;
                start = usize::from(input.u16()) % (len - 1);
                offset = usize::from(input.u16()) % (len - 1 - start);
            }
            _ => {}
        }
        let mut bytes = header(flags, start as u16, offset as u16, 1).to_vec();
        bytes.extend_from_slice(&frame);
        let fill = if self.mrg {
            (usize::from(input.byte()) + 1) * self.capacity / 256
        } else {
            self.capacity
        };
        let chunks: Vec<&[u8]> = bytes.chunks(fill.max(HEADER_LEN)).collect();
        if self.net.dev.borrow_mut().rx_available() < chunks.len() {
            return;
        }
        let mut parts: Vec<_> = chunks.iter().map(|c| self.written(c)).collect();
        let count = u16::try_from(parts.len()).expect("buffer count");
        parts[0].0[NUM_BUFFERS..NUM_BUFFERS + 2].copy_from_slice(&count.to_le_bytes());
        if !self.net.dev.borrow_mut().deliver_raw(&parts) {
            return;
        }
        self.record(&parts);
        // With GUEST_CSUM a frame without flags whose TCP or UDP checksum is wrong must be
        // refused; everything else arrives as the device wrote it.
        let refused = self.guest_csum && flags == 0 && checksum_verdict(&frame) == Some(false);
        if self.honest && !refused {
            self.expected.push_back(frame);
        }
    }

    /// Up to four buffers with any header, bytes and used lengths.
    fn deliver_hostile(&mut self, input: &mut Input<'_>) {
        let count = 1 + input.byte() % 4;
        let mut parts = Vec::new();
        for i in 0..count {
            let mut bytes = input.bytes(self.capacity);
            if i == 0 {
                bytes[..HEADER_LEN]
                    .iter_mut()
                    .for_each(|b| *b = input.byte());
                let num_buffers = match input.byte() % 4 {
                    0 => Some(u16::from(count)),
                    1 => Some(u16::from(count) + 1),
                    2 => Some(u16::from(input.byte() % 4)),
                    _ => None,
                };
                if let Some(n) = num_buffers {
                    bytes[NUM_BUFFERS..NUM_BUFFERS + 2].copy_from_slice(&n.to_le_bytes());
                }
            }
            let capacity = self.capacity as u32;
            let used = match input.byte() % 16 {
                0 => capacity + 1 + u32::from(input.byte()),
                1..=3 => u32::from(input.byte()) % (HEADER_LEN as u32 + 2),
                4 => capacity,
                _ => u32::from(input.u16()) % (capacity + 1),
            };
            parts.push((bytes, Some(used)));
        }
        if !self.net.dev.borrow_mut().deliver_raw(&parts) {
            return;
        }
        self.record(&parts);
        self.honest = false;
        self.expected.clear();
    }

    /// A whole rx buffer as the device writes it: `data`, then bytes that must never show
    /// (past the used length); used length: `data`'s.
    fn written(&self, data: &[u8]) -> (Vec<u8>, Option<u32>) {
        let mut bytes = data.to_vec();
        bytes.extend((data.len()..self.capacity).map(|i| 0xA5 ^ i as u8));
        (bytes, Some(data.len() as u32))
    }

    fn record(&mut self, parts: &[(Vec<u8>, Option<u32>)]) {
        for (bytes, used) in parts {
            let used = used.map_or(bytes.len(), |u| u as usize);
            self.overrun |= used > self.capacity;
            self.used.push(bytes.get(..used).map(<[u8]>::to_vec));
        }
    }

    /// Receives until the driver has nothing more: everything used has been taken then.
    fn drain(&mut self, check_device: bool) {
        loop {
            match self.drv.receive(|f| f.to_vec()) {
                Ok(Some(frame)) => self.handed(Some(&frame)),
                Ok(None) => break,
                Err(e) => return self.recover(e),
            }
        }
        let dropped: Vec<usize> = self.expected.iter().map(Vec::len).collect();
        assert!(
            dropped.is_empty(),
            "honest frames dropped (lengths): {dropped:?}"
        );
        self.cursor = self.used.len();
        self.honest = true;
        if check_device {
            // Every spare buffer goes back to the device: none was lost on the way.
            assert_eq!(self.drv.enable_rx_notifications(), Ok(false));
            let available = self.net.dev.borrow_mut().rx_available();
            assert_eq!(available, self.pool, "rx buffers the device holds");
        }
    }

    /// Receives through the smoltcp device; `consume`: read the frame, else drop the token.
    fn receive_phy(&mut self, consume: bool) {
        let mut phy = self.drv.phy();
        let frame = match phy.receive(Instant::ZERO) {
            Some((rx, _tx)) if consume => Some(Some(rx.consume(<[u8]>::to_vec))),
            Some(_) => Some(None),
            None => None,
        };
        drop(phy);
        if let Some(frame) = frame {
            self.handed(frame.as_deref());
        }
        if let Some(e) = self.drv.take_error() {
            self.recover(e);
        }
    }

    /// Checks a frame the driver handed out (`None`: handed out in a token dropped unread).
    fn handed(&mut self, frame: Option<&[u8]>) {
        self.handed_out += 1;
        if self.honest {
            let expected = self.expected.pop_front().expect("a frame nobody sent");
            if let Some(frame) = frame {
                assert!(frame == expected, "honest frame altered or out of order");
            }
        }
        let Some(frame) = frame else {
            return;
        };
        let longest = if self.tso.0 || self.tso.1 {
            self.max_frame.max(MAX_GSO_FRAME_LEN)
        } else {
            self.max_frame
        };
        assert!(frame.len() <= longest, "frame of {} bytes", frame.len());
        let begins =
            (self.cursor..self.used.len()).find(|&j| self.frame_at(j).as_deref() == Some(frame));
        let Some(j) = begins else {
            panic!("a frame of {} bytes the device did not write", frame.len());
        };
        self.cursor = j + 1;
    }

    /// The frame that begins in used buffer `j`, if a correct driver may hand it out.
    fn frame_at(&self, j: usize) -> Option<Vec<u8>> {
        let first = self.used[j].as_ref().filter(|f| f.len() >= HEADER_LEN)?;
        let field = |at: usize| usize::from(u16::from_le_bytes([first[at], first[at + 1]]));
        let count = if self.mrg { field(NUM_BUFFERS) } else { 1 };
        if count == 0 {
            return None;
        }
        let rest = self.used.get(j + 1..j + count)?;
        let mut frame = first[HEADER_LEN..].to_vec();
        for part in rest {
            frame.extend_from_slice(part.as_ref()?);
        }
        // GSO_NONE, or a coalesced TCP segment of the negotiated kind over that IP version
        // whose IP length spans the frame.
        let longest = match first[GSO_TYPE] {
            0 => self.max_frame,
            kind @ (1 | 4) => {
                let ipv6 = kind == 4;
                let negotiated = if ipv6 { self.tso.1 } else { self.tso.0 };
                let spans = ip_payload(&frame).is_some_and(|(v6, proto, start, len)| {
                    v6 == ipv6 && proto == 6 && start + len == frame.len()
                });
                if !(negotiated && spans) {
                    return None;
                }
                MAX_GSO_FRAME_LEN
            }
            _ => return None,
        };
        if frame.len() > longest {
            return None;
        }
        if self.guest_csum {
            let flags = first[FLAGS];
            if flags & NEEDS_CSUM != 0 {
                let end = field(CSUM_START) + field(CSUM_OFFSET) + 2;
                return (end <= frame.len()).then_some(frame);
            }
            if flags & DATA_VALID == 0 && checksum_verdict(&frame) == Some(false) {
                return None;
            }
        }
        Some(frame)
    }

    /// Handles a receive error: only a used length past its buffer may cause one.
    fn recover(&mut self, e: NetDriverError) {
        let expected = matches!(
            e,
            NetDriverError::Queue(QueueError::WrittenLenTooLarge { .. })
        );
        assert!(self.overrun && expected, "unexpected error {e:?}");
        self.reset();
    }

    fn reset(&mut self) {
        let budget = &mut self.net.budget();
        self.drv
            .reset_and_reinit(budget, &[])
            .expect("re-initialisation");
        self.used.clear();
        self.cursor = 0;
        self.honest = true;
        self.expected.clear();
        self.overrun = false;
    }
}
