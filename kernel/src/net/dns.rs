//! Name lookups: IPv4 addresses (`A` records) through smoltcp's DNS socket, asking the servers
//! the command line names (`vireo.net.dns=A.B.C.D[,A.B.C.D]`) or, without them, the ones the
//! DHCP lease gives.

use alloc::vec::Vec;
use core::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use smoltcp::{socket::dns, wire::DnsQueryType};

use super::{
    NetDevice, NetError, default_device,
    stack::{Stack, deadline},
};

/// How long [`lookup_host`] waits by default: smoltcp retries a server with a growing delay.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The IPv4 addresses of `name` on the default device (an address written as text is returned
/// as it is, without a query).
///
/// # Errors
/// As [`NetDevice::lookup`].
pub fn lookup_host(name: &str) -> Result<Vec<IpAddr>, NetError> {
    default_device()?.lookup(name, Some(DEFAULT_LOOKUP_TIMEOUT))
}

impl NetDevice {
    /// The IPv4 addresses of `name`, asked of this device's DNS servers, waiting up to
    /// `timeout` (`None`: as long as the resolver keeps trying). An IPv4 or IPv6 address written
    /// as text is returned at once.
    ///
    /// # Errors
    /// [`NetError::NoNameServer`] when no server is known (none given, no DHCP lease yet);
    /// [`NetError::InvalidName`]; [`NetError::NameNotFound`] when the servers answered that
    /// the name does not exist or stopped answering; [`NetError::TimedOut`].
    pub fn lookup(&self, name: &str, timeout: Option<Duration>) -> Result<Vec<IpAddr>, NetError> {
        if let Ok(addr) = name.parse::<IpAddr>() {
            return Ok(alloc::vec![addr]);
        }
        let query = {
            let mut guard = self.stack.lock();
            let Stack {
                sockets,
                iface,
                dns: handle,
                dns_servers,
                ..
            } = &mut *guard;
            if *dns_servers == 0 {
                return Err(NetError::NoNameServer);
            }
            sockets
                .get_mut::<dns::Socket>(*handle)
                .start_query(iface.context(), name, DnsQueryType::A)
                .map_err(|_| NetError::InvalidName)?
        };
        let r = self.wait(deadline(timeout), |s| {
            let handle = s.dns;
            match s
                .sockets
                .get_mut::<dns::Socket>(handle)
                .get_query_result(query)
            {
                Ok(addrs) => Some(Ok(addrs
                    .iter()
                    .filter_map(|a| match a {
                        smoltcp::wire::IpAddress::Ipv4(v4) => {
                            Some(IpAddr::V4(Ipv4Addr::from(v4.octets())))
                        }
                        #[allow(unreachable_patterns, reason = "IPv6 is a feature of smoltcp")]
                        _ => None,
                    })
                    .collect())),
                Err(dns::GetQueryResultError::Pending) => None,
                Err(dns::GetQueryResultError::Failed) => Some(Err(NetError::NameNotFound)),
            }
        });
        if r.is_err() && !matches!(r, Err(NetError::NameNotFound)) {
            // Still pending: free its slot.
            let mut s = self.stack.lock();
            let handle = s.dns;
            s.sockets.get_mut::<dns::Socket>(handle).cancel_query(query);
        }
        r
    }
}
