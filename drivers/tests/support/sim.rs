//! A simulated virtio-blk device: a fake transport (status, features, queue registers and
//! configuration bytes in memory) and a device that executes requests against an in-memory disk.
//!
//! The device runs only when a test asks it to ([`Sim::serve`], [`Sim::pop`] + [`Sim::complete`]),
//! so tests choose the completion order and can hold requests in flight.

use std::sync::{Arc, Mutex};

use vireo_drivers::blk::{BlkDriver, BlkOptions};
use vireo_virtio::{
    Notifier, RingAddresses,
    mock::{FakeClock, PackedDevice},
    transport::{InterruptCause, Transport, TransportError, WaitBudget},
    virtio_spec::{DeviceStatus, F, le128},
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::GuestDma;

/// A device-type feature bit.
pub const fn blk(n: u32) -> F {
    F::from_bits_retain(le128::from_ne(1 << n))
}
pub const SIZE_MAX: F = blk(1);
pub const SEG_MAX: F = blk(2);
pub const RO: F = blk(5);
pub const BLK_SIZE: F = blk(6);
pub const FLUSH: F = blk(9);
pub const TOPOLOGY: F = blk(10);
pub const MQ: F = blk(12);
pub const DISCARD: F = blk(13);
pub const WRITE_ZEROES: F = blk(14);

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;

/// The device's configuration values (virtio 1.2 §5.2.4).
#[derive(Clone, Debug)]
pub struct BlkConfig {
    pub capacity: u64,
    pub size_max: u32,
    pub seg_max: u32,
    pub blk_size: u32,
    pub num_queues: u16,
    pub max_discard_sectors: u32,
    pub max_discard_seg: u32,
    pub discard_sector_alignment: u32,
    pub max_write_zeroes_sectors: u32,
    pub max_write_zeroes_seg: u32,
    pub write_zeroes_may_unmap: u8,
}

impl Default for BlkConfig {
    fn default() -> Self {
        Self {
            capacity: 2048,
            size_max: 1 << 20,
            seg_max: 64,
            blk_size: 512,
            num_queues: 1,
            max_discard_sectors: 1024,
            max_discard_seg: 4,
            discard_sector_alignment: 8,
            max_write_zeroes_sectors: 1024,
            max_write_zeroes_seg: 4,
            write_zeroes_may_unmap: 1,
        }
    }
}

impl BlkConfig {
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 60];
        b[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        b[8..12].copy_from_slice(&self.size_max.to_le_bytes());
        b[12..16].copy_from_slice(&self.seg_max.to_le_bytes());
        b[20..24].copy_from_slice(&self.blk_size.to_le_bytes());
        b[24] = 3; // topology: 8 logical blocks per physical block
        b[26..28].copy_from_slice(&8u16.to_le_bytes());
        b[28..32].copy_from_slice(&64u32.to_le_bytes());
        b[34..36].copy_from_slice(&self.num_queues.to_le_bytes());
        b[36..40].copy_from_slice(&self.max_discard_sectors.to_le_bytes());
        b[40..44].copy_from_slice(&self.max_discard_seg.to_le_bytes());
        b[44..48].copy_from_slice(&self.discard_sector_alignment.to_le_bytes());
        b[48..52].copy_from_slice(&self.max_write_zeroes_sectors.to_le_bytes());
        b[52..56].copy_from_slice(&self.max_write_zeroes_seg.to_le_bytes());
        b[56] = self.write_zeroes_may_unmap;
        b
    }
}

/// A queue as the driver programmed it.
#[derive(Clone, Copy, Debug)]
pub struct QueueSetup {
    pub size: u16,
    pub addrs: RingAddresses,
    pub vector: Option<u16>,
    /// Distinguishes successive set-ups of the same queue (after a reset).
    pub epoch: u64,
}

/// A request as the device saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub queue: u16,
    pub ty: u32,
    pub sector: u64,
    /// Descriptor lengths, device-readable ones (header first) then device-writable ones.
    pub readable: Vec<u32>,
    pub writable: Vec<u32>,
    pub indirect: bool,
}

/// DMA blocks freed so far (of all ever allocated).
pub fn freed(dma: &GuestDma) -> usize {
    dma.allocations() - dma.live()
}

/// A reset the driver asked for (0 written to the status register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetWrite {
    /// The device carried it out (its status reads 0 afterwards).
    pub done: bool,
    /// DMA blocks freed by then (of all ever allocated from [`Sim::dma`]).
    pub freed_before: usize,
    /// DMA blocks live at that moment.
    pub live: usize,
}

/// Everything behind the fake registers, and the device's behaviour knobs.
#[derive(Debug)]
pub struct SimState {
    /// The virtio device type the transport reports (2: block, 1: network).
    pub device_type: u16,
    pub status: u8,
    pub offered: F,
    pub driver_features: F,
    pub config: Vec<u8>,
    pub generation: u32,
    pub hw_queues: u16,
    pub max_queue_size: u16,
    pub queues: Vec<Option<QueueSetup>>,
    pub epoch: u64,
    /// Every notification the device received, by queue index, in order.
    pub notifications: Vec<u16>,
    /// Queues whose next notification the device loses (one entry per lost notification).
    pub lose_next_notification: Vec<u16>,
    /// The notifications the device lost, by queue index.
    pub lost_notifications: Vec<u16>,
    pub disk: Vec<u8>,
    pub serial: [u8; 20],
    pub seen: Vec<Seen>,
    /// Status byte to write instead of the real one.
    pub status_override: Option<u8>,
    /// Used length to report instead of the real one.
    pub len_override: Option<u32>,
    /// The device reports completion without writing the status byte.
    pub skip_status: bool,
    /// The device never finishes a reset.
    pub reset_stuck: bool,
    /// DEVICE_NEEDS_RESET is shown in the status.
    pub needs_reset: bool,
    pub resets: usize,
    /// Every status-0 write, in order, with the allocator's free count at that moment.
    pub reset_writes: Vec<ResetWrite>,
    /// The device sets DEVICE_NEEDS_RESET as soon as the driver sets DRIVER_OK.
    pub needs_reset_on_driver_ok: bool,
    /// The device refuses to set up this queue.
    pub refuse_queue: Option<u16>,
    /// Once a queue is set up, the device stops finishing resets.
    pub stick_reset_on_setup: bool,
    /// The device refuses a configuration-change MSI-X vector.
    pub refuse_config_vector: bool,
    /// The MSI-X vector configuration changes are signalled on (`config_msix_vector`, virtio
    /// 1.2 §4.1.4.3; `None`: `VIRTIO_MSI_NO_VECTOR`, which a reset sets again).
    pub config_vector: Option<u16>,
    /// The allocator whose frees [`reset_writes`](Self::reset_writes) records ([`Sim`] sets it).
    pub dma: Option<GuestDma>,
    /// The interrupt status the device raised; reading it clears it, as the ISR register does
    /// (virtio 1.2 §4.1.4.5).
    pub isr: InterruptCause,
}

impl SimState {
    pub fn new(offered: F, config: &BlkConfig) -> Self {
        let mut state = Self::device(2, offered, config.bytes());
        state.disk = vec![0; (config.capacity * 512) as usize];
        state
    }

    /// A device of `device_type` with raw configuration bytes (no disk).
    pub fn device(device_type: u16, offered: F, config: Vec<u8>) -> Self {
        let mut serial = [0u8; 20];
        serial[..12].copy_from_slice(b"VIREO-SERIAL");
        Self {
            device_type,
            status: 0,
            offered: offered | F::VERSION_1,
            driver_features: F::empty(),
            config,
            generation: 0,
            hw_queues: 4,
            max_queue_size: 64,
            queues: vec![None; 4],
            epoch: 0,
            notifications: Vec::new(),
            lose_next_notification: Vec::new(),
            lost_notifications: Vec::new(),
            disk: Vec::new(),
            serial,
            seen: Vec::new(),
            status_override: None,
            len_override: None,
            skip_status: false,
            reset_stuck: false,
            needs_reset: false,
            resets: 0,
            reset_writes: Vec::new(),
            needs_reset_on_driver_ok: false,
            refuse_queue: None,
            stick_reset_on_setup: false,
            refuse_config_vector: false,
            config_vector: None,
            dma: None,
            isr: InterruptCause::default(),
        }
    }
}

/// The fake transport: register accesses go to a shared [`SimState`].
#[derive(Clone, Debug)]
pub struct FakeTransport(pub Arc<Mutex<SimState>>);

/// Records a notification in the shared state (or loses it, when the test asked for that).
#[derive(Clone, Debug)]
pub struct FakeNotifier(Arc<Mutex<SimState>>);

impl Notifier for FakeNotifier {
    fn notify(&self, queue_index: u16, _notification_data: Option<u32>) {
        let mut s = self.0.lock().unwrap();
        let lose = s
            .lose_next_notification
            .iter()
            .position(|&q| q == queue_index);
        if let Some(at) = lose {
            s.lose_next_notification.remove(at);
            s.lost_notifications.push(queue_index);
        } else {
            s.notifications.push(queue_index);
        }
    }
}

impl Transport for FakeTransport {
    type Notifier = FakeNotifier;

    fn device_type(&self) -> u16 {
        self.0.lock().unwrap().device_type
    }

    fn status(&self) -> DeviceStatus {
        let s = self.0.lock().unwrap();
        let mut status = DeviceStatus::from_bits_retain(s.status);
        if s.needs_reset {
            status |= DeviceStatus::DEVICE_NEEDS_RESET;
        }
        status
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let mut s = self.0.lock().unwrap();
        if status.is_empty() {
            let (freed_before, live) = s.dma.as_ref().map_or((0, 0), |d| (freed(d), d.live()));
            let done = !s.reset_stuck;
            s.reset_writes.push(ResetWrite {
                done,
                freed_before,
                live,
            });
            if !done {
                return;
            }
            s.status = 0;
            s.driver_features = F::empty();
            s.needs_reset = false;
            s.config_vector = None;
            s.queues.iter_mut().for_each(|q| *q = None);
            s.resets += 1;
            return;
        }
        // Each step of the initialisation sets one more bit (virtio 1.2 §3.1.1), and "the
        // driver MUST NOT clear a device status bit" (§2.1.2): only a reset (0) clears them.
        assert_eq!(
            status.bits() & s.status,
            s.status,
            "status {status:?} written over {:#04x} clears a bit (virtio 1.2 §2.1.2)",
            s.status
        );
        let mut bits = status.bits();
        if status.contains(DeviceStatus::FEATURES_OK) && !s.offered.contains(s.driver_features) {
            bits &= !DeviceStatus::FEATURES_OK.bits();
        }
        if status.contains(DeviceStatus::DRIVER_OK) && s.needs_reset_on_driver_ok {
            s.needs_reset = true;
        }
        s.status = bits;
    }

    fn device_features(&mut self) -> F {
        self.0.lock().unwrap().offered
    }

    fn set_driver_features(&mut self, features: F) {
        self.0.lock().unwrap().driver_features = features;
    }

    fn queue_count(&self) -> u16 {
        self.0.lock().unwrap().hw_queues
    }

    fn max_queue_size(&mut self, index: u16) -> u16 {
        let s = self.0.lock().unwrap();
        if index < s.hw_queues {
            s.max_queue_size
        } else {
            0
        }
    }

    fn setup_queue(
        &mut self,
        index: u16,
        size: u16,
        addrs: RingAddresses,
        vector: Option<u16>,
    ) -> Result<(), TransportError> {
        let mut s = self.0.lock().unwrap();
        if s.refuse_queue == Some(index) {
            return Err(TransportError::QueueUnavailable);
        }
        s.epoch += 1;
        let epoch = s.epoch;
        let slot = s
            .queues
            .get_mut(usize::from(index))
            .ok_or(TransportError::QueueUnavailable)?;
        if slot.is_some() {
            return Err(TransportError::QueueUnavailable);
        }
        *slot = Some(QueueSetup {
            size,
            addrs,
            vector,
            epoch,
        });
        s.reset_stuck |= s.stick_reset_on_setup;
        Ok(())
    }

    fn notifier(&mut self, _index: u16) -> Result<FakeNotifier, TransportError> {
        Ok(FakeNotifier(self.0.clone()))
    }

    fn set_config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError> {
        let mut s = self.0.lock().unwrap();
        if vector.is_some() && s.refuse_config_vector {
            return Err(TransportError::VectorRejected);
        }
        s.config_vector = vector;
        Ok(())
    }

    fn config_generation(&self) -> u32 {
        self.0.lock().unwrap().generation
    }

    fn read_config_raw(&self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        let s = self.0.lock().unwrap();
        let src = s
            .config
            .get(offset..offset + buf.len())
            .ok_or(TransportError::ConfigOutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_config_raw(&mut self, _offset: usize, _data: &[u8]) -> Result<(), TransportError> {
        Ok(())
    }

    fn ack_interrupt(&mut self) -> InterruptCause {
        core::mem::take(&mut self.0.lock().unwrap().isr)
    }

    /// The simulated transport has no per-queue reset.
    fn reset_queue(&mut self, _: u16, _: &mut WaitBudget<'_>) -> Result<bool, TransportError> {
        Ok(false)
    }
}

/// A chain the device took from a ring.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// Split: head descriptor index. Packed: buffer id.
    pub head: u16,
    /// Packed: ring descriptors the chain occupied.
    pub desc_count: u16,
    pub indirect: bool,
    /// (address, length, device-writable)
    pub descs: Vec<(GuestAddress, u32, bool)>,
}

enum DevRing {
    Split(Queue),
    /// The packed-ring device, and whether `VIRTIO_F_EVENT_IDX` was negotiated.
    Packed(PackedDevice, bool),
}

/// The simulated device: state, guest memory, and the device side of each ring.
pub struct Sim {
    pub state: Arc<Mutex<SimState>>,
    pub dma: GuestDma,
    /// Advances a microsecond per reading, so budgets expire deterministically.
    pub clock: FakeClock,
    rings: Vec<Option<(u64, DevRing)>>,
}

impl Sim {
    pub fn new(offered: F, config: &BlkConfig) -> Self {
        Self::with_state(SimState::new(offered, config))
    }

    /// A simulated device over `state` (any device type; the caller runs its logic with
    /// [`pop`](Self::pop) and [`push_used`](Self::push_used)).
    pub fn with_state(mut state: SimState) -> Self {
        let dma = GuestDma::new(16 << 20);
        state.dma = Some(dma.clone());
        Self {
            state: Arc::new(Mutex::new(state)),
            dma,
            clock: FakeClock::new(1_000),
            rings: (0..4).map(|_| None).collect(),
        }
    }

    pub fn transport(&self) -> FakeTransport {
        FakeTransport(self.state.clone())
    }

    pub fn budget(&self) -> WaitBudget<'_> {
        WaitBudget::new(&self.clock, 1_000_000)
    }

    /// A driver over this device.
    pub fn driver(&self, options: BlkOptions) -> BlkDriver<FakeTransport, GuestDma> {
        let vectors = [Some(1), Some(2), Some(3), Some(4)];
        BlkDriver::new(
            self.transport(),
            self.dma.clone(),
            options,
            &vectors,
            &mut self.budget(),
        )
        .expect("driver init")
    }

    /// Every reset the driver asked for so far.
    pub fn reset_writes(&self) -> Vec<ResetWrite> {
        self.state.lock().unwrap().reset_writes.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn mem(&self) -> GuestMemoryMmap {
        self.dma.mem().clone()
    }

    /// The device side of queue `q`, (re)built when the driver (re)programs it.
    fn ring(&mut self, q: u16) -> &mut DevRing {
        let setup = self.state.lock().unwrap().queues[usize::from(q)].expect("queue not set up");
        let packed = self
            .state
            .lock()
            .unwrap()
            .driver_features
            .contains(F::RING_PACKED);
        let event_idx = self
            .state
            .lock()
            .unwrap()
            .driver_features
            .contains(F::EVENT_IDX);
        let mem = self.mem();
        let slot = &mut self.rings[usize::from(q)];
        if slot.as_ref().is_none_or(|(epoch, _)| *epoch != setup.epoch) {
            let ring = if packed {
                DevRing::Packed(PackedDevice::new(&mem, setup.addrs, setup.size), event_idx)
            } else {
                let mut queue = Queue::new(setup.size).unwrap();
                let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
                let (lo, hi) = split(setup.addrs.descriptor_area);
                queue.set_desc_table_address(lo, hi);
                let (lo, hi) = split(setup.addrs.driver_area);
                queue.set_avail_ring_address(lo, hi);
                let (lo, hi) = split(setup.addrs.device_area);
                queue.set_used_ring_address(lo, hi);
                queue.set_event_idx(event_idx);
                queue.set_ready(true);
                DevRing::Split(queue)
            };
            *slot = Some((setup.epoch, ring));
        }
        &mut slot.as_mut().unwrap().1
    }

    /// Takes every available chain of queue `q`.
    pub fn pop(&mut self, q: u16) -> Vec<Chain> {
        let mem = self.mem();
        let desc_table = self.state.lock().unwrap().queues[usize::from(q)]
            .unwrap()
            .addrs
            .descriptor_area;
        let mut chains = Vec::new();
        match self.ring(q) {
            DevRing::Split(queue) => {
                while let Some(dc) = queue.pop_descriptor_chain(&mem) {
                    let head = dc.head_index();
                    let flags: u16 = mem
                        .read_obj(GuestAddress(desc_table + 16 * u64::from(head) + 12))
                        .unwrap();
                    let descs = dc.map(|d| (d.addr(), d.len(), d.is_write_only())).collect();
                    chains.push(Chain {
                        head,
                        desc_count: 0,
                        indirect: flags & 4 != 0,
                        descs,
                    });
                }
            }
            DevRing::Packed(ring, _) => {
                chains.extend(std::iter::from_fn(|| ring.pop()).map(|chain| Chain {
                    head: chain.id,
                    desc_count: chain.desc_count,
                    indirect: chain.indirect,
                    descs: chain.descs,
                }))
            }
        }
        chains
    }

    /// Asks the driver not to notify `q`, a hint (a split ring with `EVENT_IDX` has no flag
    /// for it: its event index just stays where it was).
    pub fn disable_notification(&mut self, q: u16) {
        let mem = self.mem();
        match self.ring(q) {
            DevRing::Split(queue) => queue.disable_notification(&mem).unwrap(),
            DevRing::Packed(ring, _) => ring.disable_notification(),
        }
    }

    /// Asks the driver to notify `q` when it makes buffers available again (with `EVENT_IDX`:
    /// from the next position the device will read, virtio 1.2 §2.7.10, §2.8.10). Returns
    /// whether buffers are available already: the device must look again before it waits.
    pub fn enable_notification(&mut self, q: u16) -> bool {
        let mem = self.mem();
        match self.ring(q) {
            DevRing::Split(queue) => queue.enable_notification(&mem).unwrap(),
            DevRing::Packed(ring, event_idx) => ring.enable_notification(*event_idx),
        }
    }

    /// Whether the driver wants a used-buffer notification for what the device put in the used
    /// ring of `q` since it last asked (the driver's flags or event index, §2.7.10, §2.8.10).
    pub fn wants_interrupt(&mut self, q: u16) -> bool {
        let mem = self.mem();
        let (event_idx, avail) = {
            let s = self.state.lock().unwrap();
            let setup = s.queues[usize::from(q)].expect("queue not set up");
            (
                s.driver_features.contains(F::EVENT_IDX),
                setup.addrs.driver_area,
            )
        };
        match self.ring(q) {
            // virtio-queue reads only the event index; without it, the avail ring's flags
            // (VIRTQ_AVAIL_F_NO_INTERRUPT, §2.7.6) say it.
            DevRing::Split(queue) if event_idx => queue.needs_notification(&mem).unwrap(),
            DevRing::Split(_) => mem.read_obj::<u16>(GuestAddress(avail)).unwrap() & 1 == 0,
            DevRing::Packed(ring, _) => ring.needs_notification(),
        }
    }

    /// Executes `chain` against the disk and puts it in the used ring.
    pub fn complete(&mut self, q: u16, chain: &Chain) {
        let mem = self.mem();
        let (status, len) = self.execute(q, chain);
        let (status, len, skip_status) = {
            let s = self.state.lock().unwrap();
            (
                s.status_override.unwrap_or(status),
                s.len_override.unwrap_or(len),
                s.skip_status,
            )
        };
        if let Some(&(addr, slen, true)) = chain.descs.last().filter(|_| !skip_status) {
            mem.write_obj(status, addr.unchecked_add(u64::from(slen) - 1))
                .unwrap();
        }
        self.push_used(q, chain, len);
    }

    /// Puts `chain` in the used ring of `q` with the written length `len`.
    pub fn push_used(&mut self, q: u16, chain: &Chain, len: u32) {
        let mem = self.mem();
        match self.ring(q) {
            DevRing::Split(queue) => queue.add_used(&mem, chain.head, len).unwrap(),
            // WRITE on the used descriptor when the device wrote something (§2.8.7).
            DevRing::Packed(ring, _) => ring.write_used(chain.head, len, len > 0, chain.desc_count),
        }
    }

    /// Puts a used entry with any buffer `id` in the used ring of `q` (a hostile device).
    pub fn push_used_id(&mut self, q: u16, id: u16, len: u32) {
        let chain = Chain {
            head: id,
            desc_count: 1,
            ..Chain::default()
        };
        self.push_used(q, &chain, len);
    }

    /// The set-up generation of queue `q` (changes when the driver programs it again), or
    /// `None` while it is not set up.
    pub fn epoch(&self, q: u16) -> Option<u64> {
        self.state.lock().unwrap().queues[usize::from(q)].map(|s| s.epoch)
    }

    /// Pops and completes every available chain of `q`, in ring order; returns how many.
    pub fn serve(&mut self, q: u16) -> usize {
        let chains = self.pop(q);
        for c in &chains {
            self.complete(q, c);
        }
        chains.len()
    }

    /// The request logic of virtio 1.2 §5.2.6; returns (status, used length).
    fn execute(&mut self, q: u16, chain: &Chain) -> (u8, u32) {
        let mem = self.mem();
        let readable: Vec<_> = chain.descs.iter().filter(|d| !d.2).copied().collect();
        let writable: Vec<_> = chain.descs.iter().filter(|d| d.2).copied().collect();
        let (haddr, hlen, _) = readable[0];
        assert_eq!(hlen, 16, "header length");
        let ty: u32 = mem.read_obj(haddr).unwrap();
        let sector: u64 = mem.read_obj(haddr.unchecked_add(8)).unwrap();
        let mut s = self.state.lock().unwrap();
        s.seen.push(Seen {
            queue: q,
            ty,
            sector,
            readable: readable.iter().map(|d| d.1).collect(),
            writable: writable.iter().map(|d| d.1).collect(),
            indirect: chain.indirect,
        });
        let (&(_, status_len, _), data_in) = writable.split_last().expect("status descriptor");
        assert_eq!(status_len, 1, "status length");
        let data_out = &readable[1..];
        let in_len: u32 = data_in.iter().map(|d| d.1).sum();
        let read_only = s.offered.contains(RO);
        let in_range = |bytes: u64| (sector * 512 + bytes) as usize <= s.disk.len();
        match ty {
            T_IN => {
                if !in_range(u64::from(in_len)) {
                    return (1, 1);
                }
                let mut pos = (sector * 512) as usize;
                for &(addr, len, _) in data_in {
                    mem.write_slice(&s.disk[pos..pos + len as usize], addr)
                        .unwrap();
                    pos += len as usize;
                }
                (0, in_len + 1)
            }
            T_OUT => {
                let out_len: u32 = data_out.iter().map(|d| d.1).sum();
                if read_only || !in_range(u64::from(out_len)) {
                    return (1, 1);
                }
                let mut pos = (sector * 512) as usize;
                for &(addr, len, _) in data_out {
                    mem.read_slice(&mut s.disk[pos..pos + len as usize], addr)
                        .unwrap();
                    pos += len as usize;
                }
                (0, 1)
            }
            T_FLUSH if s.offered.contains(FLUSH) => (0, 1),
            T_GET_ID => {
                let (addr, len, _) = data_in[0];
                assert_eq!(len, 20);
                mem.write_slice(&s.serial, addr).unwrap();
                (0, 21)
            }
            T_DISCARD | T_WRITE_ZEROES => {
                let (addr, len, _) = data_out[0];
                assert_eq!(len % 16, 0, "segment length");
                for i in 0..u64::from(len / 16) {
                    let seg = addr.unchecked_add(16 * i);
                    let start: u64 = mem.read_obj(seg).unwrap();
                    let n: u32 = mem.read_obj(seg.unchecked_add(8)).unwrap();
                    let (a, b) = (
                        (start * 512) as usize,
                        ((start + u64::from(n)) * 512) as usize,
                    );
                    if b > s.disk.len() {
                        return (1, 1);
                    }
                    s.disk[a..b].fill(0);
                }
                (0, 1)
            }
            _ => (2, 1),
        }
    }
}

/// Raises each interrupt cause in turn in `state`'s interrupt status and checks that `ack` (a
/// driver's `ack_interrupt`) reports it and that reading it acknowledged it, as reading the
/// ISR register does (virtio 1.2 §4.1.4.5).
pub fn check_interrupt_acks(state: &Mutex<SimState>, mut ack: impl FnMut() -> InterruptCause) {
    assert_eq!(ack(), InterruptCause::default(), "nothing raised");
    for (queue, config) in [(true, false), (false, true), (true, true)] {
        let cause = InterruptCause { queue, config };
        state.lock().unwrap().isr = cause;
        assert_eq!(ack(), cause);
        assert_eq!(ack(), InterruptCause::default(), "reading acknowledged it");
    }
}

/// Checks what a log shows of errors: each its own message (distinct, more than a few words),
/// holding the figures listed with it.
pub fn check_error_messages<E: std::fmt::Display>(errors: &[(E, &[&str])]) {
    let messages: Vec<String> = errors.iter().map(|(e, _)| e.to_string()).collect();
    let mut distinct = messages.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), errors.len(), "{messages:#?}");
    assert!(messages.iter().all(|m| m.len() > 10), "{messages:#?}");
    for (text, (_, figures)) in messages.iter().zip(errors) {
        assert!(
            figures.iter().all(|f| text.contains(f)),
            "{text}: {figures:?}"
        );
    }
}
