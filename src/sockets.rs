//! Socket construction shared by every leg: one place that picks the address family and
//! sets the options ftpgate's listeners need.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket};

/// A TCP socket of `addr`'s family.
pub fn socket_for(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// A listener on `addr`. SO_REUSEADDR because closed connections leave TIME_WAIT entries
/// on the port (data ports are reused constantly); `transparent` sets IP_TRANSPARENT so
/// TPROXY can deliver connections addressed to other hosts (needs CAP_NET_ADMIN).
pub fn listener(addr: SocketAddr, transparent: bool, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = socket_for(addr)?;
    socket.set_reuseaddr(true)?;
    if transparent {
        socket2::SockRef::from(&socket).set_ip_transparent(true)?;
    }
    socket.bind(addr)?;
    socket.listen(backlog)
}
