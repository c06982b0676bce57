//! The wait sequence (`vireo_virtio::wait`) against simulated devices that complete a request at
//! every step of it: before the first look, between the look and enabling notifications, while
//! asleep, at a tick. A device that loses its interrupt (as QEMU's single-threaded TCG can, when
//! a guest's store→load fence is dropped) must cost the waiter at most one tick, and be counted;
//! a device that loses a kick must be notified again.

mod support;

use std::{cell::RefCell, rc::Rc};

use support::{
    CountingNotifier, GuestDma, SimDevice as _, check_used, make_token,
    packed_device::PackedDevice, vmm_device::VmmDevice,
};
use vireo_virtio::{
    BufferType, PackedVq, QueueError, SplitVq, UsedBufferToken, Virtq, negotiate,
    virtio_spec::F,
    wait::{self, RENOTIFY_AFTER_TICKS, WaitPlatform, WaitQueue, Waited},
};

/// The device side of either layout.
enum Device {
    Split(VmmDevice),
    Packed(PackedDevice),
}

impl Device {
    /// Serves every available buffer; returns how many.
    fn serve_all(&mut self) -> usize {
        match self {
            Self::Split(d) => {
                let popped = d.pop_all();
                popped.iter().for_each(|p| d.complete(p));
                popped.len()
            }
            Self::Packed(d) => {
                let popped = d.pop_all();
                popped.iter().for_each(|p| d.complete(p));
                popped.len()
            }
        }
    }

    fn needs_notification(&mut self) -> bool {
        match self {
            Self::Split(d) => d.needs_notification(),
            Self::Packed(d) => d.needs_notification(),
        }
    }
}

/// The simulated machine: ticks, the interrupt count, and a device that acts at a chosen step.
struct World {
    device: Device,
    kicks: CountingNotifier,
    ticks: u64,
    events: u64,
    /// Steps taken by the waiter so far (each call into the queue or the platform is one).
    step: usize,
    /// The device serves the request at the first step at or after this one...
    serve_from: usize,
    /// ...once it has seen more kicks than this (a lost kick is not counted).
    kicks_ignored: usize,
    /// The device decides to interrupt but the interrupt never arrives.
    lose_interrupts: bool,
    /// The tick at which the device served the request.
    served_at: Option<u64>,
}

impl World {
    fn step(&mut self) {
        self.step += 1;
        if self.served_at.is_none()
            && self.step >= self.serve_from
            && self.kicks.count() > self.kicks_ignored
            && self.device.serve_all() > 0
        {
            self.served_at = Some(self.ticks);
            if self.device.needs_notification() && !self.lose_interrupts {
                self.events += 1;
            }
        }
    }
}

type Shared = Rc<RefCell<World>>;

struct Platform(Shared);

impl WaitPlatform for Platform {
    fn ticks(&self) -> u64 {
        self.0.borrow_mut().step();
        self.0.borrow().ticks
    }

    fn events(&self) -> u64 {
        self.0.borrow_mut().step();
        self.0.borrow().events
    }

    fn sleep(&self, seen: u64, until: u64) -> bool {
        let now = self.0.borrow().ticks;
        // A sleep until a tick already reached returns at once: the waiter would spin.
        assert!(until > now, "sleep until tick {until} at tick {now}");
        loop {
            let mut w = self.0.borrow_mut();
            w.step();
            if w.events != seen {
                return true;
            }
            if w.ticks >= until {
                return false;
            }
            w.ticks += 1;
        }
    }

    fn grace(&self, seen: u64) -> bool {
        let mut w = self.0.borrow_mut();
        w.step();
        w.events != seen
    }
}

#[derive(Default)]
struct Counts {
    missed: u64,
    renotified: u64,
    woke: u64,
}

struct Queue {
    vq: Box<dyn Virtq<GuestDma>>,
    world: Shared,
    counts: Counts,
}

impl WaitQueue for Queue {
    type Output = UsedBufferToken<GuestDma>;
    type Error = QueueError;

    fn take(&mut self) -> Result<Option<Self::Output>, QueueError> {
        self.world.borrow_mut().step();
        self.vq.poll()
    }

    fn enable_notifications(&mut self) -> Result<bool, QueueError> {
        self.world.borrow_mut().step();
        Ok(self.vq.enable_notifications())
    }

    fn disable_notifications(&mut self) {
        self.world.borrow_mut().step();
        self.vq.disable_notifications();
    }

    fn renotify(&mut self) {
        self.counts.renotified += 1;
        self.vq.notify();
    }

    fn missed_wakeup(&mut self) {
        // The report is made while the used buffer is still in the ring.
        assert!(
            self.vq.enable_notifications(),
            "missed wake-up with nothing used"
        );
        self.counts.missed += 1;
    }

    fn woke_by_interrupt(&mut self) {
        self.counts.woke += 1;
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    packed: bool,
    event_idx: bool,
    lose_interrupts: bool,
    lose_kick: bool,
}

fn setup(case: Case) -> (GuestDma, Queue) {
    let dma = GuestDma::new(8 << 20);
    let kicks = CountingNotifier::default();
    let mut wanted = F::INDIRECT_DESC;
    if case.event_idx {
        wanted |= F::EVENT_IDX;
    }
    if case.packed {
        wanted |= F::RING_PACKED;
    }
    let negotiated = negotiate(wanted | F::VERSION_1, wanted).unwrap();
    let (vq, device): (Box<dyn Virtq<GuestDma>>, _) = if case.packed {
        let vq = PackedVq::new(0, 8, negotiated, dma.clone(), kicks.clone()).unwrap();
        let dev = PackedDevice::new(dma.mem(), vq.ring_addresses(), 8);
        (Box::new(vq), Device::Packed(dev))
    } else {
        let vq = SplitVq::new(0, 8, negotiated, dma.clone(), kicks.clone()).unwrap();
        let dev = VmmDevice::new(&dma, vq.ring_addresses(), 8, case.event_idx);
        (Box::new(vq), Device::Split(dev))
    };
    let world = Rc::new(RefCell::new(World {
        device,
        kicks,
        ticks: 0,
        events: 0,
        step: 0,
        serve_from: usize::MAX,
        kicks_ignored: 0,
        lose_interrupts: case.lose_interrupts,
        served_at: None,
    }));
    let mut queue = Queue {
        vq,
        world,
        counts: Counts::default(),
    };
    queue.vq.disable_notifications();
    (dma, queue)
}

/// Steps far enough to cover every point of a wait several ticks long.
const STEPS: usize = 40;
/// A deadline far beyond any bound the tests check.
const DEADLINE_TICKS: u64 = 1000;

/// Runs request after request, the device serving each at step `k` of its wait, for every `k`;
/// checks the completion and how many ticks it cost after the device served it.
fn run(case: Case) -> Counts {
    let (dma, mut q) = setup(case);
    for k in 0..STEPS {
        for round in 0..3u64 {
            {
                let mut w = q.world.borrow_mut();
                w.step = 0;
                w.served_at = None;
                w.serve_from = usize::MAX;
                w.kicks_ignored = if case.lose_kick { usize::MAX } else { 0 };
            }
            let seed = (k as u64) << 8 | round;
            q.vq.dispatch(make_token(&dma, &[16], &[16], seed), BufferType::Direct)
                .unwrap();
            {
                let mut w = q.world.borrow_mut();
                w.serve_from = k;
                if case.lose_kick {
                    // Whatever the dispatch sent is lost; only a later notification counts.
                    w.kicks_ignored = w.kicks.count();
                }
            }
            let start = q.world.borrow().ticks;
            let deadline = start + DEADLINE_TICKS;
            let platform = Platform(q.world.clone());
            let used = match wait::wait(&platform, &mut q, deadline).unwrap() {
                Waited::Ready(used) => used,
                Waited::TimedOut => panic!("{case:?} k={k}: timed out"),
            };
            assert_eq!(used.tag(), seed, "{case:?} k={k}: the request's own token");
            check_used(&used);
            let (now, served) = {
                let w = q.world.borrow();
                (w.ticks, w.served_at.expect("served"))
            };
            let cost = now - served;
            assert!(
                cost <= 1,
                "{case:?} k={k}: completion noticed {cost} ticks late"
            );
            if case.lose_kick {
                assert!(
                    served - start <= 2 * RENOTIFY_AFTER_TICKS,
                    "{case:?} k={k}: a lost kick cost {} ticks",
                    served - start
                );
            }
        }
    }
    q.counts
}

fn cases() -> impl Iterator<Item = Case> {
    (0..16).map(|bits| Case {
        packed: bits & 1 != 0,
        event_idx: bits & 2 != 0,
        lose_interrupts: bits & 4 != 0,
        lose_kick: bits & 8 != 0,
    })
}

#[test]
fn a_completion_at_any_step_is_noticed_within_a_tick() {
    for case in cases() {
        let counts = run(case);
        if case.lose_interrupts {
            assert!(counts.missed > 0, "{case:?}: lost interrupts not counted");
            assert_eq!(counts.woke, 0, "{case:?}: no interrupt ever arrives");
        } else {
            assert_eq!(
                counts.missed, 0,
                "{case:?}: a delivered interrupt counted as missed"
            );
            assert!(counts.woke > 0, "{case:?}: never slept until an interrupt");
        }
        if case.lose_kick {
            assert!(counts.renotified > 0, "{case:?}: lost kicks never resent");
        }
    }
}

#[test]
fn a_device_that_never_answers_times_out_at_the_deadline() {
    // The wait starts at tick 0 (boot) or later: intervals count from its start.
    for (packed, start) in [(false, 0), (true, 0), (false, 1000), (true, 1000)] {
        let case = Case {
            packed,
            event_idx: true,
            lose_interrupts: false,
            lose_kick: false,
        };
        let (dma, mut q) = setup(case);
        q.world.borrow_mut().ticks = start;
        q.vq.dispatch(make_token(&dma, &[8], &[8], 1), BufferType::Direct)
            .unwrap();
        let platform = Platform(q.world.clone());
        assert_eq!(
            wait::wait(&platform, &mut q, start + 50)
                .unwrap()
                .map_none(),
            Waited::TimedOut
        );
        let ticks = q.world.borrow().ticks;
        assert_eq!(
            ticks,
            start + 50,
            "the wait ends at the deadline tick, not before or after"
        );
        // Notified again at doubling intervals: 2, 4, 8, 16 and 32 ticks after the start.
        assert_eq!(q.counts.renotified, 5, "start {start}");
    }
}

/// `Waited` without its payload, for comparisons.
trait MapNone {
    fn map_none(self) -> Waited<()>;
}

impl<T> MapNone for Waited<T> {
    fn map_none(self) -> Waited<()> {
        match self {
            Waited::Ready(_) => Waited::Ready(()),
            Waited::TimedOut => Waited::TimedOut,
        }
    }
}
