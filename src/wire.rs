//! Control-connection I/O shared by the session and the health checker: reading whole
//! replies (RFC 959 §4.2, multi-line ones included) from a framed reader. It sits below
//! both `session` and `route`, so neither has to borrow from the other.

use crate::proto::line::{Frame, LineCodec, LineError};
use crate::proto::reply::{Reply, ReplyAssembler, ReplyError};
use crate::stream::BoxedStream;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, ReadHalf, WriteHalf};
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

// ------------------------------------------------------------ control legs ----

pub type LineReader = FramedRead<ReadHalf<BoxedStream>, LineCodec>;

/// The read buffer a control leg starts with. Control lines are short, and an idle
/// session holds two of these for as long as it lives (FramedRead's default is 8 KiB);
/// the buffer grows when a longer line or reply arrives, up to the line cap.
const READ_CAPACITY: usize = 1024;

/// One control connection's two halves.
pub struct Leg {
    pub reader: LineReader,
    pub writer: WriteHalf<BoxedStream>,
}

/// Bytes arrived behind the line that asked for TLS, before the handshake: written in
/// plaintext, they must never be read as if they were protected (SECURITY.md 9).
#[derive(Debug)]
pub struct PlaintextAfterAuth;

impl Leg {
    pub fn new(stream: BoxedStream, max_line: usize) -> Leg {
        let (rd, writer) = tokio::io::split(stream);
        Leg {
            reader: FramedRead::with_capacity(rd, LineCodec::new(max_line), READ_CAPACITY),
            writer,
        }
    }

    /// Takes the stream out for a TLS handshake; the leg is left closed until
    /// [`Leg::replace`]. Refused if the reader holds bytes not yet framed.
    pub fn take_for_tls(&mut self) -> Result<BoxedStream, PlaintextAfterAuth> {
        if !self.reader.read_buffer().is_empty() {
            return Err(PlaintextAfterAuth);
        }
        let max_line = self.reader.decoder().max_len();
        let closed: BoxedStream = Box::new(tokio::io::duplex(1).0);
        let old = std::mem::replace(self, Leg::new(closed, max_line));
        Ok(old.reader.into_inner().unsplit(old.writer))
    }

    /// Puts a (TLS) stream in; the framing starts afresh.
    pub fn replace(&mut self, stream: BoxedStream) {
        let max_line = self.reader.decoder().max_len();
        *self = Leg::new(stream, max_line);
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
