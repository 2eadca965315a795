//! The byte-exact, one-way relay between the two data legs (MODE S: the transfer ends at
//! EOF). Every read and write has a stall deadline; bytes are counted, and the writing
//! side is shut down only after every byte has been written, so the peer sees a clean
//! EOF exactly when the file is complete.

use super::error::{DataError, Side};
use super::rate::Throttle;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

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
    loop {
        let n = timeout(stall, from.read(&mut buf))
            .await
            .map_err(|_| DataError::Stall { side: from_side })?
            .map_err(|source| DataError::Io {
                side: from_side,
                source,
            })?;
        if n == 0 {
            break;
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
    }
    timeout(stall, to.shutdown())
        .await
        .map_err(|_| DataError::Stall { side: to_side })?
        .map_err(|source| DataError::Io {
            side: to_side,
            source,
        })
}
