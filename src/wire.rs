//! Control-connection I/O shared by the session and the health checker: reading whole
//! replies (RFC 959 §4.2, multi-line ones included) from a framed reader. It sits below
//! both `session` and `route`, so neither has to borrow from the other.

use crate::proto::line::{Frame, LineCodec, LineError};
use crate::proto::reply::{Reply, ReplyAssembler, ReplyError};
use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio_util::codec::FramedRead;

/// Why no complete reply could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the connection closed")]
    Closed,
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    #[error("line rejected: {0}")]
    Line(#[from] LineError),
    #[error("invalid reply: {0}")]
    Reply(#[from] ReplyError),
}

/// The next complete reply (1xx included) from a server leg read outside the session's
/// own loop: the greeting, and health probes.
pub async fn next_reply<R: AsyncRead + Unpin>(
    reader: &mut FramedRead<R, LineCodec>,
    assembler: &mut ReplyAssembler,
) -> Result<Reply, ReadError> {
    loop {
        let line = match reader.next().await {
            Some(Ok(Frame::Line(line))) => line,
            Some(Ok(Frame::Rejected(e))) => return Err(e.into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ReadError::Closed),
        };
        if let Some(reply) = assembler.push(line)? {
            return Ok(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8]) -> FramedRead<&'static [u8], LineCodec> {
        FramedRead::new(bytes, LineCodec::new(512))
    }

    #[tokio::test]
    async fn reads_multi_line_replies_then_reports_close() {
        let mut rd = reader(b"120 soon\r\n220-hello\r\n220 there\r\n");
        let mut asm = ReplyAssembler::new(8, 1024);
        assert_eq!(
            next_reply(&mut rd, &mut asm).await.map(|r| r.code).ok(),
            Some(120)
        );
        let r = next_reply(&mut rd, &mut asm).await;
        assert!(
            matches!(&r, Ok(r) if r.code == 220 && r.lines.len() == 2),
            "{r:?}"
        );
        assert!(matches!(
            next_reply(&mut rd, &mut asm).await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn malformed_and_rejected_lines_are_errors() {
        let mut asm = ReplyAssembler::new(8, 1024);
        let r = next_reply(&mut reader(b"hello\r\n"), &mut asm).await;
        assert!(
            matches!(r, Err(ReadError::Reply(ReplyError::Malformed))),
            "{r:?}"
        );
        let mut asm = ReplyAssembler::new(8, 1024);
        let r = next_reply(&mut reader(b"220 a\rb\r\n"), &mut asm).await;
        assert!(
            matches!(r, Err(ReadError::Line(LineError::BareCr))),
            "{r:?}"
        );
    }
}
