//! Finding virtio-net functions and bringing them up: driver, interrupts, smoltcp interface and
//! addresses.

use alloc::vec::Vec;

use smoltcp::{
    iface::{Config, Interface},
    wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr, Ipv6Address},
};
use vireo_drivers::net::{NetDriver, NetDriverError, NetOptions};

use super::stack::{NetDevice, QUEUES, Stack, now};
use crate::{
    cmdline,
    mm::DeviceAlloc,
    virtio::{self, Interrupts, KernelTransport, Location},
};

/// The virtio device type of a network device (virtio 1.2 §5.1).
const DEVICE_TYPE_NET: u16 = 1;

/// Options from the command line (see the module docs).
#[derive(Debug, Clone, Copy)]
struct ProbeOptions {
    driver: NetOptions,
    polled: bool,
    ipv4: Option<(Ipv4Cidr, Option<Ipv4Address>)>,
    /// `vireo.net.dns=A.B.C.D[,A.B.C.D]` (at most 4 used).
    dns: [Option<Ipv4Address>; 4],
}

/// `A.B.C.D/N` (`/N` defaults to 24).
fn parse_cidr(s: &str) -> Option<Ipv4Cidr> {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, "24"));
    let prefix: u8 = prefix.parse().ok().filter(|&p| p <= 32)?;
    Some(Ipv4Cidr::new(addr.parse().ok()?, prefix))
}

/// `vireo.net.dns=`: the DNS servers to ask instead of DHCP's.
fn dns_servers() -> [Option<Ipv4Address>; 4] {
    let mut servers = [None; 4];
    let Some(list) = cmdline::text("vireo.net.dns") else {
        return servers;
    };
    let mut parsed = list.split(',').filter_map(|a| match a.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            log::warn!("virtio-net: vireo.net.dns: `{a}` is not an IPv4 address; ignored");
            None
        }
    });
    for slot in &mut servers {
        *slot = parsed.next();
    }
    servers
}

fn options() -> ProbeOptions {
    let defaults = NetOptions::default();
    let ipv4 = cmdline::text("vireo.net.ip").and_then(|ip| match parse_cidr(ip) {
        Some(cidr) => {
            let gw = cmdline::text("vireo.net.gw").and_then(|g| g.parse().ok());
            Some((cidr, gw))
        }
        None => {
            log::warn!("virtio-net: vireo.net.ip={ip} is not A.B.C.D/N; using DHCP");
            None
        }
    });
    ProbeOptions {
        driver: NetOptions {
            packed: cmdline::flag("vireo.net.packed", true),
            indirect: cmdline::flag("vireo.net.indirect", defaults.indirect),
            event_idx: cmdline::flag("vireo.net.event_idx", defaults.event_idx),
            mrg_rxbuf: cmdline::flag("vireo.net.mrg_rxbuf", defaults.mrg_rxbuf),
            csum: cmdline::flag("vireo.net.csum", defaults.csum),
            tso: cmdline::flag("vireo.net.tso", defaults.tso),
            host_tso: cmdline::flag("vireo.net.host_tso", defaults.host_tso),
            mtu: cmdline::flag("vireo.net.mtu", defaults.mtu),
            ctrl_vq: cmdline::flag("vireo.net.ctrl_vq", defaults.ctrl_vq),
            queue_size: cmdline::number("vireo.net.queue_size")
                .map_or(defaults.queue_size, |v| v as u16),
            ..defaults
        },
        polled: cmdline::flag("vireo.net.polled", false),
        ipv4,
        dns: dns_servers(),
    }
}

pub(super) fn probe_all() -> Vec<NetDevice> {
    let opts = options();
    virtio::probe_each(
        DEVICE_TYPE_NET,
        "virtio-net",
        |d| probe(d, opts),
        NetDriverError::hint,
    )
}

/// The IPv6 link-local address of `mac` (modified EUI-64, RFC 4291 appendix A).
fn link_local(mac: [u8; 6]) -> Ipv6Address {
    let w = |a: u8, b: u8| u16::from_be_bytes([a, b]);
    Ipv6Address::new(
        0xfe80,
        0,
        0,
        0,
        w(mac[0] ^ 2, mac[1]),
        w(mac[2], 0xff),
        w(0xfe, mac[3]),
        w(mac[4], mac[5]),
    )
}

fn probe(device: Location, opts: ProbeOptions) -> Result<NetDevice, NetDriverError> {
    let transport = KernelTransport::new(device)?;
    let irq = Interrupts::new(device, QUEUES, opts.polled, "virtio-net");
    let vectors = irq.queue_vectors(QUEUES);
    let mut driver = virtio::with_budget(|budget| {
        NetDriver::new(transport, DeviceAlloc, opts.driver, &vectors, budget)
    })?;
    if let Some(config) = irq.config_vector() {
        driver.set_config_vector(Some(config))?;
    }
    let mac = driver.mac();
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    // Different per device and per boot: TCP initial sequence numbers and ports start here.
    config.random_seed = crate::time::Instant::now().since_start().as_nanos() as u64
        ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
    let mut iface = Interface::new(config, &mut driver.phy(), now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(link_local(mac).into(), 64));
    });
    if let Some((cidr, gw)) = opts.ipv4 {
        log::info!("virtio-net: static address {cidr}, gateway {gw:?}");
    }
    Ok(NetDevice::new(
        device,
        Stack::new(
            driver,
            irq,
            iface,
            opts.ipv4,
            &opts.dns.iter().flatten().copied().collect::<Vec<_>>(),
        ),
    ))
}
