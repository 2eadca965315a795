//! The original destination of an intercepted connection. With nftables REDIRECT the
//! kernel rewrote the destination and conntrack remembers the original
//! (SO_ORIGINAL_DST); with TPROXY the socket's local address already is the original.

use std::net::SocketAddr;
use tokio::net::TcpStream;

pub fn original_destination(stream: &TcpStream, tproxy: bool) -> std::io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    if tproxy {
        return Ok(local);
    }
    let sock = socket2::SockRef::from(stream);
    let original = if local.is_ipv4() {
        sock.original_dst()
    } else {
        sock.original_dst_ipv6()
    }?;
    original
        .as_socket()
        .ok_or_else(|| std::io::Error::other("original destination is not an IP address"))
}
