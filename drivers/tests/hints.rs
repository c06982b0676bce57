//! The errors of a device that cannot be brought up say what to do, in the driver's own terms:
//! the `vireo.blk.*` / `vireo.net.*` option or the QEMU property that fixes it, or that the
//! device is broken.

mod support;

use support::{net::Net, *};
use vireo_drivers::{
    blk::{BlkDriver, BlkDriverError, BlkOptions, Request},
    net::{NetDriverError, NetOptions},
};
use vireo_virtio::{
    BROKEN_DEVICE_HINT, QueueError,
    transport::TransportError,
    virtio_spec::{DeviceStatus, F},
};

fn blk_init(sim: &Sim) -> BlkDriverError {
    BlkDriver::new(
        sim.transport(),
        sim.dma.clone(),
        BlkOptions::default(),
        &[Some(1)],
        &mut sim.budget(),
    )
    .map(|_| ())
    .unwrap_err()
}

fn hint_of(e: impl Into<Hinted>) -> &'static str {
    let Hinted(e, hint) = e.into();
    hint.unwrap_or_else(|| panic!("{e}: no hint"))
}

/// An error and its hint, whichever driver it came from.
struct Hinted(String, Option<&'static str>);

impl From<BlkDriverError> for Hinted {
    fn from(e: BlkDriverError) -> Self {
        Self(e.to_string(), e.hint())
    }
}

impl From<NetDriverError> for Hinted {
    fn from(e: NetDriverError) -> Self {
        Self(e.to_string(), e.hint())
    }
}

#[test]
fn a_disk_whose_queue_is_too_small_names_the_queue_size_option() {
    let sim = Sim::new(F::empty(), &BlkConfig::default());
    sim.state.lock().unwrap().max_queue_size = 2;
    let mut drv = sim.driver(BlkOptions {
        indirect: false,
        ..BlkOptions::default()
    });
    // Header, id and status: three descriptors in a two-descriptor queue.
    let err = drv.submit(0, Request::GetId).unwrap_err().error;
    assert_eq!(err, BlkDriverError::Queue(QueueError::ChainTooLong));
    let h = hint_of(err);
    assert!(h.contains("vireo.blk.queue_size="), "{h}");
    assert!(h.contains("queue-size="), "{h}");
    // The queue layer's own hint does not know it is a disk; the driver's does.
    assert_ne!(Some(h), QueueError::ChainTooLong.hint());
}

#[test]
fn a_disk_the_device_will_not_give_a_queue_names_the_queue_options() {
    let sim = Sim::new(F::empty(), &BlkConfig::default());
    sim.state.lock().unwrap().refuse_queue = Some(0);
    let err = blk_init(&sim);
    assert_eq!(
        err,
        BlkDriverError::Transport(TransportError::QueueUnavailable)
    );
    assert!(
        hint_of(err).contains("vireo.blk.queues=1"),
        "{}",
        hint_of(err)
    );
}

#[test]
fn a_disk_stuck_in_reset_or_needing_one_gets_the_transport_hint() {
    let sim = Sim::new(F::empty(), &BlkConfig::default());
    {
        // A device left acknowledged (by firmware, say) that never finishes a reset.
        let mut s = sim.state.lock().unwrap();
        s.status = DeviceStatus::ACKNOWLEDGE.bits();
        s.reset_stuck = true;
    }
    let err = blk_init(&sim);
    assert_eq!(err, BlkDriverError::Transport(TransportError::Timeout));
    assert_eq!(err.hint(), TransportError::Timeout.hint());

    let sim = Sim::new(F::empty(), &BlkConfig::default());
    sim.state.lock().unwrap().needs_reset_on_driver_ok = true;
    let err = blk_init(&sim);
    assert_eq!(
        err,
        BlkDriverError::Transport(TransportError::DeviceNeedsReset)
    );
    assert!(hint_of(err).contains("QEMU's messages"), "{}", hint_of(err));
}

#[test]
fn a_legacy_disk_is_told_to_turn_modern() {
    let sim = Sim::new(F::empty(), &BlkConfig::default());
    sim.state.lock().unwrap().offered = F::empty();
    let err = blk_init(&sim);
    assert!(matches!(
        err,
        BlkDriverError::Transport(TransportError::Features(_))
    ));
    assert!(
        hint_of(err).contains("disable-legacy=on"),
        "{}",
        hint_of(err)
    );
}

#[test]
fn a_disk_with_a_nonsense_capacity_is_broken() {
    let sim = Sim::new(F::empty(), &BlkConfig::default());
    sim.state.lock().unwrap().config[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = blk_init(&sim);
    assert_eq!(err, BlkDriverError::BadCapacity);
    assert_eq!(err.hint(), Some(BROKEN_DEVICE_HINT));
}

#[test]
fn a_refused_vector_names_each_drivers_polling_option() {
    let blk = BlkDriverError::Transport(TransportError::VectorRejected);
    assert!(hint_of(blk).contains("vireo.blk.polled=on"));
    let net = NetDriverError::Transport(TransportError::VectorRejected);
    assert!(hint_of(net).contains("vireo.net.polled=on"));
}

#[test]
fn a_card_whose_queues_are_missing_names_the_control_queue_option() {
    let net = Net::standard();
    net.dev.borrow().sim.state.lock().unwrap().refuse_queue = Some(2);
    let err = net
        .try_driver(NetOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err,
        NetDriverError::Transport(TransportError::QueueUnavailable)
    );
    assert!(
        hint_of(err).contains("vireo.net.ctrl_vq=off"),
        "{}",
        hint_of(err)
    );
}

#[test]
fn a_card_stuck_in_reset_gets_the_transport_hint() {
    let net = Net::standard();
    {
        let dev = net.dev.borrow();
        let mut s = dev.sim.state.lock().unwrap();
        s.status = DeviceStatus::ACKNOWLEDGE.bits();
        s.reset_stuck = true;
    }
    let err = net
        .try_driver(NetOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err, NetDriverError::Transport(TransportError::Timeout));
    assert_eq!(err.hint(), TransportError::Timeout.hint());
}

#[test]
fn a_net_queue_too_small_names_the_net_queue_size_option() {
    let err = NetDriverError::from(QueueError::ChainTooLong);
    assert!(
        hint_of(err).contains("vireo.net.queue_size="),
        "{}",
        hint_of(err)
    );
    assert_eq!(
        NetDriverError::CtrlBadAck(7).hint(),
        Some(BROKEN_DEVICE_HINT)
    );
    // Errors a caller made are explained by their message alone.
    assert_eq!(
        NetDriverError::FrameTooLarge {
            len: 9000,
            max: 1514
        }
        .hint(),
        None
    );
    assert_eq!(BlkDriverError::Misaligned.hint(), None);
}
