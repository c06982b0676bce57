//! What a log line shows of virtio-net: `{:?}` of the driver names its options, what it knows
//! of the device and whether it is operational; the smoltcp device and its tokens show the
//! driver, a received frame's length and a segmentation size, never frame bytes; every error
//! has its own message, with its figures.

mod support;

use smoltcp::{
    phy::{Device, PacketMeta, TxToken},
    time::Instant,
};
use support::{check_error_messages, net::*};
use vireo_drivers::net::{NetDriverError, NetOptions};
use vireo_virtio::{QueueError, transport::TransportError};

#[test]
fn a_driver_prints_its_options_what_it_knows_and_whether_it_works() {
    let net = Net::standard();
    let options = NetOptions::default();
    let mut drv = net.driver(options);
    let expected = |drv: &NetDrv, operational: bool| {
        format!(
            "NetDriver {{ options: {options:?}, info: {:?}, operational: {operational}, .. }}",
            drv.info()
        )
    };
    assert_eq!(format!("{drv:?}"), expected(&drv, true));
    // A re-initialisation the device fails (it rejects a filter command).
    net.dev.borrow_mut().ctrl_ack = 1;
    assert!(drv.reset_and_reinit(&mut net.budget(), &[]).is_err());
    assert_eq!(format!("{drv:?}"), expected(&drv, false));
}

#[test]
fn the_smoltcp_device_and_its_tokens_show_lengths_not_bytes() {
    let net = Net::standard();
    let mut drv = net.driver(NetOptions::default());
    let driver_text = format!("{drv:?}");
    let frame = eth_frame(MAC, 100, 0xab);
    assert!(net.dev.borrow_mut().deliver(&frame));
    let mut phy = drv.phy();
    assert_eq!(
        format!("{phy:?}"),
        format!("NetPhy {{ driver: {driver_text} }}")
    );
    let (rx, mut tx) = phy.receive(Instant::ZERO).unwrap();
    assert_eq!(format!("{rx:?}"), "NetRxToken { len: Some(100), .. }");
    assert_eq!(format!("{tx:?}"), "NetTxToken { mss: None, .. }");
    let mut meta = PacketMeta::default();
    meta.segmentation_offload_size = std::num::NonZeroU16::new(1448);
    tx.set_meta(meta);
    assert_eq!(format!("{tx:?}"), "NetTxToken { mss: Some(1448), .. }");
}

#[test]
fn every_error_says_what_went_wrong_with_its_figures() {
    use NetDriverError::*;
    let queue = QueueError::UsedIdNotInFlight { id: 77 }.to_string();
    let timeout = TransportError::Timeout.to_string();
    let errors = [
        (TxFull, &[][..]),
        (
            FrameTooLarge {
                len: 1600,
                max: 1514,
            },
            &["1600", "1514"],
        ),
        (ChecksumOffload, &[]),
        (NoControlQueue, &[]),
        (CtrlTooLarge, &[]),
        (CtrlRejected, &[]),
        (CtrlBadAck(0x7e), &["0x7e"]),
        (CtrlBusy, &[]),
        (AllocFailed, &[]),
        (NotReady, &[]),
        (NeedsReset, &[]),
        (
            Queue(QueueError::UsedIdNotInFlight { id: 77 }),
            &[queue.as_str()],
        ),
        (Transport(TransportError::Timeout), &[timeout.as_str()]),
    ];
    check_error_messages(&errors);
}
