//! virtio-net over a tap in a network namespace that `xtask` creates for this boot (root only;
//! skipped otherwise): the echo tests of `net_peer` against peers on the host's side of the tap
//! (10.0.9.1), and garbage on the wire: `xtask` writes 10,000 malformed frames (cut-short and
//! inconsistent headers, wrong checksums and lengths, random bytes; see `xtask/src/garbage.rs`)
//! to the tap for this guest's MAC. The guest must take them all without failing, let none of
//! them reach a socket, count them, and then carry 100 MiB each way over TCP intact. Name
//! lookups go to a DNS server `xtask` runs on the tap (`vireo.net.dns=10.0.9.1`).
//!
//! vireo-test: matrix packed=off,on
//! vireo-test: netns
//! vireo-test: peer tcp-echo udp-echo dns
//! vireo-test: qemu -netdev tap,id=n0,ifname=vttap0,script=no,downscript=no
//! vireo-test: qemu -device virtio-net-pci,netdev=n0,disable-legacy=on,packed={packed},mac=52:54:00:12:34:56
//! vireo-test: append vireo.net.ip=10.0.9.2/24 peer.host=10.0.9.1 vireo.net.dns=10.0.9.1
//! vireo-test: append peer.tcp={peer:tcp-echo} peer.udp={peer:udp-echo}
//! vireo-test: garbage 10000 52:54:00:12:34:56 10.0.9.2:4000
//! vireo-test: timeout 300

#![no_std]
#![no_main]

extern crate alloc;

#[path = "support/echo.rs"]
mod echo;

use core::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use echo::{TIMEOUT, peer, tcp_100_mib_each_way, udp_10000_datagrams};
use vireo::{
    net::{self, NetError, TcpStream, UdpSocket},
    println,
};

vireo::test_main!(
    names_resolve,
    udp_10000_datagrams,
    garbage_on_the_wire,
    tcp_100_mib_each_way
);

fn names_resolve() {
    let dev = net::default_device().expect("a virtio-net device");
    let host = IpAddr::V4(Ipv4Addr::new(10, 0, 9, 1));
    assert_eq!(net::lookup_host("echo.vireo.test"), Ok(alloc::vec![host]));
    assert_eq!(
        dev.lookup("nowhere.vireo.test", Some(TIMEOUT)),
        Err(NetError::NameNotFound)
    );
    assert_eq!(
        dev.lookup("10.0.9.7", Some(TIMEOUT)),
        Ok(alloc::vec![IpAddr::V4(Ipv4Addr::new(10, 0, 9, 7))])
    );
    assert_eq!(net::lookup_host(""), Err(NetError::InvalidName));
    // A connection to a looked-up name.
    let addrs = net::lookup_host("peer.vireo.test").expect("lookup");
    let to = SocketAddr::new(addrs[0], peer("tcp").port());
    let mut s = TcpStream::connect(to, Some(TIMEOUT)).expect("connect by name");
    s.set_read_timeout(Some(TIMEOUT));
    s.write_all(b"by name").unwrap();
    let mut got = [0u8; 7];
    let mut n = 0;
    while n < got.len() {
        n += s.read(&mut got[n..]).expect("echo");
    }
    assert_eq!(&got, b"by name");
}

/// Where `xtask` sends the datagram that ends the burst (its `garbage` directive).
const MARKER_PORT: u16 = 4000;

fn garbage_on_the_wire() {
    let dev = net::default_device().expect("a virtio-net device");
    dev.wait_for_address(TIMEOUT).expect("an address");
    let mut sock = UdpSocket::bind(MARKER_PORT).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(120)));
    let before = dev.stats().driver;
    println!("garbage: ready");
    // Malformed datagrams for this port come first (a wrong checksum, a wrong length): the
    // first thing the socket gets must be the marker.
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).expect("the end-of-burst datagram");
    let text = core::str::from_utf8(&buf[..n]).unwrap_or("(not UTF-8)");
    let sent: u64 = text
        .strip_prefix("garbage-done ")
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a malformed datagram reached the socket: {text:?} from {from}"));
    let after = dev.stats().driver;
    let arrived = after.rx_frames + after.rx_dropped() - before.rx_frames - before.rx_dropped();
    let dropped = after.rx_dropped() - before.rx_dropped();
    println!(
        "garbage: {sent} malformed frames sent; {arrived} frames arrived meanwhile (the marker and \
         any ARP included), {dropped} of them dropped by the driver, the rest refused by the stack"
    );
    assert!(
        arrived > sent,
        "the driver saw {arrived} frames, fewer than the {sent} malformed ones and the marker"
    );
}
