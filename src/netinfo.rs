//! Facts about this host's network that policy needs: its own addresses.

use std::net::IpAddr;

/// Every address configured on this host's interfaces (plus the unspecified addresses),
/// read once at start. A destination among them is ftpgate itself.
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])];
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let Some(addr) = ifa.address else { continue };
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}
