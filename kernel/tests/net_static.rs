//! A static IPv4 address from the command line instead of DHCP (`vireo.net.ip=`/`vireo.net.gw=`),
//! with a refused feature set (split ring, no merged buffers, no checksum offload, no control
//! queue): the address is there at once, and TCP through the gateway works.
//!
//! vireo-test: qemu -netdev user,id=n0,net=10.0.3.0/24,guestfwd=tcp:10.0.3.100:7-cmd:cat
//! vireo-test: qemu -device virtio-net-pci,netdev=n0,disable-legacy=on,packed=on
//! vireo-test: append vireo.net.ip=10.0.3.42/24 vireo.net.gw=10.0.3.2
//! vireo-test: append vireo.net.packed=0 vireo.net.mrg_rxbuf=0 vireo.net.csum=0 vireo.net.ctrl_vq=0
//! vireo-test: machines q35 microvm

#![no_std]
#![no_main]

extern crate alloc;

use core::{net::SocketAddr, time::Duration};

use vireo::net::{
    self, TcpStream,
    embedded_io::{ErrorType, Read, ReadExactError, ReadReady, Write, WriteReady},
};

vireo::test_main!(
    the_static_address_is_used,
    tcp_through_the_static_address,
    tcp_through_embedded_io,
    lookups_without_a_name_server
);

/// A static address and no `vireo.net.dns=`: no DNS server is known, and addresses written
/// as text need none.
fn lookups_without_a_name_server() {
    assert_eq!(
        net::lookup_host("echo.example"),
        Err(net::NetError::NoNameServer)
    );
    assert_eq!(
        net::lookup_host("10.0.3.100"),
        Ok(alloc::vec![core::net::IpAddr::from([10, 0, 3, 100])])
    );
}

fn the_static_address_is_used() {
    let dev = net::default_device().expect("the test attaches a virtio-net device");
    let info = dev.info();
    assert_eq!(
        info.ipv4.map(|c| alloc::format!("{c}")).as_deref(),
        Some("10.0.3.42/24")
    );
    assert_eq!(info.gateway.map(|g| g.octets()), Some([10, 0, 3, 2]));
    assert!(
        !info.packed,
        "vireo.net.packed=0 refuses the packed ring QEMU offers"
    );
}

fn tcp_through_the_static_address() {
    let mut s = TcpStream::connect(
        SocketAddr::from(([10, 0, 3, 100], 7)),
        Some(Duration::from_secs(30)),
    )
    .expect("connect to QEMU's echo");
    s.set_read_timeout(Some(Duration::from_secs(30)));
    let msg = b"static address, split ring, no offloads";
    s.write_all(msg).unwrap();
    let mut got = alloc::vec![0u8; msg.len()];
    let mut n = 0;
    while n < msg.len() {
        n += s.read(&mut got[n..]).expect("echo");
    }
    assert_eq!(&got, msg);
}

/// Code written only against `embedded-io`'s traits: writes `msg`, flushes, reads the echo back.
fn echo_generic<S>(s: &mut S, msg: &[u8]) -> Result<alloc::vec::Vec<u8>, ReadExactError<S::Error>>
where
    S: Read + Write + ReadReady + WriteReady + ErrorType,
{
    assert!(s.write_ready().map_err(ReadExactError::Other)?);
    s.write_all(msg).map_err(ReadExactError::Other)?;
    s.flush().map_err(ReadExactError::Other)?;
    let mut got = alloc::vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

fn tcp_through_embedded_io() {
    let mut s = TcpStream::connect(
        SocketAddr::from(([10, 0, 3, 100], 7)),
        Some(Duration::from_secs(30)),
    )
    .expect("connect to QEMU's echo");
    s.set_read_timeout(Some(Duration::from_secs(30)));
    s.set_write_timeout(Some(Duration::from_secs(30)));
    assert!(!s.read_ready().unwrap(), "nothing sent, nothing to read");
    let msg: alloc::vec::Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let got = echo_generic(&mut s, &msg).expect("echo through the traits");
    assert!(got == msg, "the echo differs");
    // The end of the stream is `Ok(0)` for `embedded_io::Read` too.
    s.shutdown_write();
    let mut rest = [0u8; 16];
    assert_eq!(Read::read(&mut s, &mut rest), Ok(0));
}
