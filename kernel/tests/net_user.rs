//! virtio-net against QEMU's user networking: a DHCP lease, then TCP to an echo service QEMU
//! runs itself (`guestfwd` to `cat`, reached at 10.0.2.100:7 inside the virtual network): bulk
//! data both ways with every byte checked, 64 connections at once on one CPU, and a
//! connection to a port nobody serves.
//!
//! vireo-test: matrix packed=off,on mrg=on,off csum=on,off indirect=on,off event_idx=on,off
//! vireo-test: qemu -netdev user,id=n0,guestfwd=tcp:10.0.2.100:7-cmd:cat
//! vireo-test: qemu -device virtio-net-pci,netdev=n0,disable-legacy=on,packed={packed},mrg_rxbuf={mrg},csum={csum},guest_csum={csum},indirect_desc={indirect},event_idx={event_idx}
//! vireo-test: append expect.packed={packed}
//! vireo-test: timeout 240

#![no_std]
#![no_main]

extern crate alloc;

#[path = "support/echo.rs"]
mod echo;

use alloc::{vec, vec::Vec};
use core::{net::SocketAddr, time::Duration};

use vireo::{
    net::{self, NetError, TcpStream},
    println,
    testing::work_percent,
};

vireo::test_main!(
    dhcp_gives_the_user_network_address,
    tcp_echo_bulk,
    tcp_echo_many_connections,
    a_closed_port_refuses
);

/// QEMU's echo service inside the user network.
const ECHO: ([u8; 4], u16) = ([10, 0, 2, 100], 7);
const TIMEOUT: Duration = Duration::from_secs(30);

fn echo() -> SocketAddr {
    SocketAddr::from(ECHO)
}

/// Byte `i` of stream `seed`.
fn byte(seed: u64, i: usize) -> u8 {
    ((i as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn dhcp_gives_the_user_network_address() {
    let dev = net::default_device().expect("the test attaches a virtio-net device");
    let packed = vireo::boot_info().cmdline().contains("expect.packed=on");
    assert_eq!(dev.info().packed, packed);
    let cidr = dev.wait_for_address(TIMEOUT).expect("a DHCP lease");
    assert_eq!(alloc::format!("{cidr}"), "10.0.2.15/24");
    assert_eq!(dev.info().gateway.map(|g| g.octets()), Some([10, 0, 2, 2]));
    println!("{dev}: {cidr}");
}

/// Sends `total` bytes of stream `seed` while reading the echo back, checking every byte.
fn echo_stream(stream: &mut TcpStream, seed: u64, total: usize) {
    echo::pump(
        stream,
        total,
        |chunk, at| {
            for (k, b) in chunk.iter_mut().enumerate() {
                *b = byte(seed, at + k);
            }
        },
        |bytes, at| {
            for (k, &b) in bytes.iter().enumerate() {
                assert_eq!(b, byte(seed, at + k), "byte {}", at + k);
            }
        },
    );
}

fn tcp_echo_bulk() {
    let dev = net::default_device().unwrap();
    dev.wait_for_address(TIMEOUT).unwrap();
    let total = (4 << 20) * work_percent() as usize / 100;
    let mut stream = TcpStream::connect(echo(), Some(TIMEOUT)).expect("connect to the echo");
    echo_stream(&mut stream, 0xec40, total);
    println!("echoed {total} bytes; {:?}", dev.stats());
}

fn tcp_echo_many_connections() {
    let dev = net::default_device().unwrap();
    dev.wait_for_address(TIMEOUT).unwrap();
    let n = 64;
    let per = 16 * 1024 * work_percent() as usize / 100;
    let mut streams: Vec<(TcpStream, usize, usize)> = (0..n)
        .map(|_| {
            (
                TcpStream::connect(echo(), Some(TIMEOUT)).expect("connect"),
                0,
                0,
            )
        })
        .collect();
    let mut buf = vec![0u8; 8192];
    let mut rounds = 0u32;
    while streams.iter().any(|&(_, _, r)| r < per) {
        rounds += 1;
        assert!(rounds < 10_000_000, "the echoes stopped making progress");
        let mut progress = false;
        for (i, (s, sent, received)) in streams.iter_mut().enumerate() {
            let seed = i as u64;
            if *sent < per {
                let chunk: Vec<u8> = (*sent..per.min(*sent + 4096))
                    .map(|k| byte(seed, k))
                    .collect();
                if let Ok(w) = s.try_write(&chunk) {
                    *sent += w;
                    progress |= w > 0;
                }
            }
            if *received < per
                && let Ok(r) = s.try_read(&mut buf)
            {
                assert!(r > 0, "connection {i} closed early");
                for (k, &b) in buf[..r].iter().enumerate() {
                    assert_eq!(b, byte(seed, *received + k));
                }
                *received += r;
                progress = true;
            }
        }
        if !progress {
            dev.wait_any(Some(TIMEOUT)).expect("progress");
        }
    }
}

fn a_closed_port_refuses() {
    let dev = net::default_device().unwrap();
    dev.wait_for_address(TIMEOUT).unwrap();
    // The gateway is the host's loopback: a connection to a port nobody listens on there is
    // answered with a reset.
    let err = TcpStream::connect(SocketAddr::from(([10, 0, 2, 2], 1)), Some(TIMEOUT))
        .expect_err("nobody serves that port");
    assert!(
        matches!(err, NetError::ConnectionRefused | NetError::TimedOut),
        "{err}"
    );
}
