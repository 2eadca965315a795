//! The byte-stream abstraction the control and data legs are written against, so a leg can
//! become TLS (FTPS, RFC 4217) without touching the session or relay logic.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Anything that carries a leg: a `TcpStream` today, a TLS stream later.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

pub type BoxedStream = Box<dyn Stream>;

/// The client's control socket, read without tokio's "a short read drained the socket"
/// shortcut. Linux ends a read at a TCP urgent mark with bytes still queued behind it
/// (the DM of lftp's `IAC IP IAC DM ABOR`, the last byte of ftplib's `ABOR` sent with
/// MSG_OOB), and `TcpStream::poll_read` would then clear readiness and wait for a
/// wake-up that never comes: the ABOR sat unread until the client sent more.
pub struct UrgentSafe(pub TcpStream);

impl tokio::io::AsyncRead for UrgentSafe {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            // try_read clears readiness only on WouldBlock, never on a short read.
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return std::task::Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for UrgentSafe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
