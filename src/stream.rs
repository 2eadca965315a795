//! The byte-stream abstraction the control and data legs are written against, so a leg can
//! become TLS (FTPS, RFC 4217) without touching the session or relay logic.

use tokio::io::{AsyncRead, AsyncWrite};

/// Anything that carries a leg: a `TcpStream` today, a TLS stream later.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

pub type BoxedStream = Box<dyn Stream>;
