//! The byte-exact, one-way relay between the two data legs (MODE S: the transfer ends at
//! EOF). Every read and write has a stall deadline; bytes are counted, and the writing
//! side is shut down only after every byte has been written, so the peer sees a clean
//! EOF exactly when the file is complete.

use super::transfer::{DataError, Side};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// Copies `from` to `to` until EOF, then shuts `to` down. Returns the byte count.
pub(super) async fn pump<R, W>(
    from: &mut R,
    from_side: Side,
    to: &mut W,
    to_side: Side,
    buffer_size: usize,
    stall: Duration,
    counted: &mut u64,
) -> Result<(), DataError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; buffer_size];
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
    }
    timeout(stall, to.shutdown())
        .await
        .map_err(|_| DataError::Stall { side: to_side })?
        .map_err(|source| DataError::Io {
            side: to_side,
            source,
        })
}
