//! The byte-exact, one-way relay between the two data legs (MODE S: the transfer ends at
//! EOF). Every read and write has a stall deadline; bytes are counted, and the writing
//! side is shut down only after every byte has been written, so the peer sees a clean
//! EOF exactly when the file is complete.

use super::error::{DataError, Side};
use super::rate::Throttle;
use futures_util::FutureExt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// Bytes gathered from the reading leg, when already available, before one write.
const COALESCE: usize = 256 * 1024;

/// How bytes flow for one transfer: direction, sizes, deadline and bandwidth limit.
pub(super) struct Flow<'a> {
    pub from_side: Side,
    pub to_side: Side,
    /// Buffer (or pipe) size.
    pub size: usize,
    pub stall: Duration,
    pub throttle: &'a Throttle,
}

/// Copies `from` to `to` until EOF, then shuts `to` down, counting into `counted`.
pub(super) async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    flow: &Flow<'_>,
    counted: &mut u64,
) -> Result<(), DataError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let Flow {
        from_side,
        to_side,
        stall,
        ..
    } = *flow;
    let size = flow
        .throttle
        .max_chunk()
        .map_or(flow.size, |c| c.min(flow.size));
    let mut buf = vec![0u8; size];
    let coalesce = COALESCE.min(size);
    loop {
        let mut n = timeout(stall, from.read(&mut buf))
            .await
            .map_err(|_| DataError::Stall { side: from_side })?
            .map_err(|source| DataError::Io {
                side: from_side,
                source,
            })?;
        if n == 0 {
            break;
        }
        // A TLS leg yields one record (16 KiB) per read. Take what is already there
        // without waiting, so the other leg gets fewer, larger writes. An end or an
        // error found on the way is kept and acted on once these bytes are out (a
        // reset is reported by one read only: the next would say EOF).
        let mut after: Option<std::io::Result<()>> = None;
        while n < coalesce && after.is_none() {
            match from.read(&mut buf[n..]).now_or_never() {
                Some(Ok(0)) => after = Some(Ok(())),
                Some(Ok(m)) => n += m,
                Some(Err(e)) => after = Some(Err(e)),
                None => break,
            }
        }
        timeout(stall, to.write_all(&buf[..n]))
            .await
            .map_err(|_| DataError::Stall { side: to_side })?
            .map_err(|source| DataError::Io {
                side: to_side,
                source,
            })?;
        *counted += n as u64;
        flow.throttle.consume(n).await;
        match after {
            None => {}
            Some(Ok(())) => break,
            Some(Err(source)) => {
                return Err(DataError::Io {
                    side: from_side,
                    source,
                })
            }
        }
    }
    timeout(stall, to.shutdown())
        .await
        .map_err(|_| DataError::Stall { side: to_side })?
        .map_err(|source| DataError::Io {
            side: to_side,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A reader that is always ready: each read yields the next chunk, then the end.
    struct Script(VecDeque<std::io::Result<Vec<u8>>>);

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            match self.0.pop_front() {
                None => Poll::Ready(Ok(())),
                Some(Err(e)) => Poll::Ready(Err(e)),
                Some(Ok(chunk)) => {
                    buf.put_slice(&chunk);
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    async fn run(chunks: Vec<std::io::Result<Vec<u8>>>) -> (Result<(), DataError>, Vec<u8>, u64) {
        let throttle = Throttle::new(std::iter::empty());
        let flow = Flow {
            from_side: Side::Server,
            to_side: Side::Client,
            size: 1 << 20,
            stall: Duration::from_secs(5),
            throttle: &throttle,
        };
        let mut from = Script(chunks.into());
        let mut to = Vec::new();
        let mut counted = 0;
        let r = pump(&mut from, &mut to, &flow, &mut counted).await;
        (r, to, counted)
    }

    #[tokio::test]
    async fn chunks_ready_together_are_relayed_whole_then_the_end() {
        let (r, out, n) = run(vec![Ok(vec![1; 10]), Ok(vec![2; 20]), Ok(vec![3; 5])]).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(out.len(), 35);
        assert_eq!(n, 35);
        assert_eq!(&out[10..30], &[2; 20][..]);
    }

    #[tokio::test]
    async fn an_error_met_while_gathering_fails_the_relay_after_the_bytes_before_it() {
        // A reset is reported once; the next read would say EOF. It must not be lost.
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let (r, out, n) = run(vec![Ok(vec![1; 10]), Ok(vec![2; 10]), Err(reset)]).await;
        assert!(
            matches!(
                r,
                Err(DataError::Io {
                    side: Side::Server,
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!((out.len(), n), (20, 20));
    }
}
