//! Zero-copy relay for plain TCP legs with splice(2): socket -> pipe -> socket, without the
//! bytes ever entering user space. On a loopback benchmark the copy through user space
//! cost a third of the throughput; splice keeps ftpgate close to a direct transfer.
//! Semantics match `relay::pump`: every byte counted, a stall deadline on each wait, and
//! the writing side shut down only after the pipe has been drained.

use super::error::{DataError, Side};
use super::pipe_budget::{budget, Pipe};
use super::relay::Flow;
use nix::fcntl::{splice, SpliceFFlags};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Bytes after which a transfer counts as bulk whatever its segment sizes.
const GROW_AFTER: u64 = 256 * 1024;

/// Splice cannot run here and no byte has moved: the caller may fall back to copying.
/// Says why, for the log.
pub(super) struct Unsupported(pub &'static str);

/// Moves bytes `from` -> `to` until EOF, then shuts down `to`'s write side.
pub(super) async fn splice_pump(
    from: &TcpStream,
    to: &TcpStream,
    flow: &Flow<'_>,
    counted: &mut u64,
) -> Result<(), Result<DataError, Unsupported>> {
    let Flow {
        from_side,
        to_side,
        stall,
        ..
    } = *flow;
    // Under a bandwidth limit no single move may overdraw the bucket by much.
    let limit = flow.throttle.max_chunk().unwrap_or(usize::MAX);
    // A transfer moves bytes one way, and may never move any (an aborted or refused
    // command): the pipe, and its share of the per-user budget, is taken only once the
    // first byte (or the end) is there to read.
    timeout(stall, from.readable())
        .await
        .map_err(|_| Ok(DataError::Stall { side: from_side }))?
        .map_err(|source| io_error(from_side, source))?;
    let mut pipe = Pipe::new(budget()).map_err(|starved| Err(Unsupported(starved.0)))?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut chunk = pipe.capacity();
    let mut bulk = false;
    let mut first = true;
    loop {
        // The pipe is empty here, so EAGAIN can only mean "socket has no data".
        let filled = timeout(
            stall,
            move_bytes(from, Interest::READABLE, || {
                splice(from, None, &pipe.wr, None, chunk.min(limit), flags).map_err(io::Error::from)
            }),
        )
        .await
        .map_err(|_| Ok(DataError::Stall { side: from_side }))?;
        let mut in_pipe = match filled {
            Ok(n) => n,
            Err(e) if first && is_unsupported(&e) => {
                return Err(Err(Unsupported(
                    "the kernel refused splice(2) on these sockets",
                )))
            }
            Err(source) => return Err(io_error(from_side, source)),
        };
        first = false;
        if in_pipe == 0 {
            break;
        }
        // A bulk transfer: a larger pipe means fewer wake-ups per byte. Grown only once
        // it is bulk, so that small files (listings, many small RETRs) skip the
        // allocation; a sender whose segments never fill the pipe at once still counts
        // as bulk after GROW_AFTER bytes.
        bulk = bulk || in_pipe >= chunk || *counted >= GROW_AFTER;
        // A sender that writes in small pieces (curl's STOR: 64 KiB) wakes us for each;
        // take what else is already queued before draining, so the other leg gets
        // fewer, larger writes. Called outside tokio's readiness on purpose: EAGAIN here
        // may mean a full pipe, and must not clear the socket's readiness. An end or an
        // error met on the way is acted on once these bytes are out (a reset is
        // reported once: the next splice would say EOF).
        let mut after: Option<io::Result<()>> = None;
        while bulk && limit == usize::MAX && in_pipe < chunk {
            match splice(from, None, &pipe.wr, None, chunk - in_pipe, flags) {
                Ok(0) => after = Some(Ok(())),
                Ok(n) => {
                    in_pipe += n;
                    continue;
                }
                Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => after = Some(Err(e.into())),
            }
            break;
        }
        while in_pipe > 0 {
            let n = timeout(stall, drain(&pipe.rd, to, in_pipe, flags))
                .await
                .map_err(|_| Ok(DataError::Stall { side: to_side }))?
                .map_err(|source| io_error(to_side, source))?;
            in_pipe -= n;
            *counted += n as u64;
            flow.throttle.consume(n).await;
        }
        match after {
            None => {}
            Some(Ok(())) => break,
            Some(Err(source)) => return Err(io_error(from_side, source)),
        }
        if bulk {
            // Empty again: grow toward `flow.size` as the per-user pipe budget allows,
            // or shrink to a fair share when other transfers need it.
            pipe.fit(flow.size);
            chunk = pipe.capacity();
        }
    }
    socket2::SockRef::from(to)
        .shutdown(std::net::Shutdown::Write)
        .map_err(|source| io_error(to_side, source))
}

async fn drain(
    pipe_rd: &OwnedFd,
    to: &TcpStream,
    len: usize,
    flags: SpliceFFlags,
) -> io::Result<usize> {
    move_bytes(to, Interest::WRITABLE, || {
        splice(pipe_rd, None, to, None, len, flags).map_err(io::Error::from)
    })
    .await
}

/// Runs a non-blocking syscall on `socket` whenever it is ready, until it stops
/// returning EAGAIN.
async fn move_bytes(
    socket: &TcpStream,
    interest: Interest,
    mut op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        socket.ready(interest).await?;
        match socket.try_io(interest, &mut op) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// An I/O error on `side`, as splice_pump reports it.
fn io_error(side: Side, source: io::Error) -> Result<DataError, Unsupported> {
    Ok(DataError::Io { side, source })
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::EINVAL || code == nix::libc::ENOSYS)
}
