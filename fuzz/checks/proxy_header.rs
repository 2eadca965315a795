//! The PROXY protocol header reader (`ftpgate::proxy_proto`) on arbitrary connection
//! starts.
//!
//! Input: the connection's first bytes, as a trusted balancer (or anyone) sends them.
//!
//! Invariants checked:
//! - `frame::need` never asks for 0 bytes, never panics, and the reader built on it takes
//!   at most the bytes a header can hold (107 for v1, 2048 for v2): it never reads past
//!   the header into the connection's own bytes;
//! - when a header is accepted, the bytes taken are exactly the header: re-reading the
//!   same bytes followed by anything at all takes the same count and declares the same;
//! - a declared `Proxy` has a source and destination of one address family;
//! - the same input read by the async reader over a stream fed one byte per poll gives
//!   the same outcome and leaves exactly the rest of the input unread.

use ftpgate::proxy_proto::frame::{self, Declared, Need, V1_MAX, V2_MAX};

pub fn run(data: &[u8]) {
    let (outcome, taken) = frame::tests_drive(data);
    assert!(taken <= data.len());
    assert!(taken <= V1_MAX.max(V2_MAX), "took {taken} bytes");
    if let Ok(d) = &outcome {
        if let Declared::Proxy {
            source,
            destination,
        } = d
        {
            assert_eq!(source.is_ipv4(), destination.is_ipv4(), "{d:?}");
        }
        // The header is self-delimiting: what follows it changes nothing.
        let mut longer = data[..taken].to_vec();
        longer.extend_from_slice(b"\r\nUSER x\r\n\x16\x03\x01");
        assert_eq!(frame::tests_drive(&longer), (outcome.clone(), taken));
        assert_eq!(frame::need(&data[..taken]), Ok(Need::Done));
    }
    // Every prefix the reader stops at asks for at least one more byte.
    for end in 0..taken {
        if let Ok(Need::More(n)) = frame::need(&data[..end]) {
            assert!(n >= 1);
        }
    }
    // The async reader agrees and leaves the rest unread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut stream = tokio_test_like::OneByte::new(data);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let read = rt.block_on(ftpgate::proxy_proto::read(&mut stream, deadline));
    match (&read, &outcome) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(stream.consumed(), taken, "read past the header");
        }
        (Err(_), Err(_)) => assert!(stream.consumed() <= taken.max(1)),
        _ => panic!("reader {read:?} vs framing {outcome:?}"),
    }
}

mod tokio_test_like {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, ReadBuf};

    /// A stream that hands out one byte per read, then EOF.
    pub struct OneByte<'a> {
        data: &'a [u8],
        at: usize,
    }

    impl<'a> OneByte<'a> {
        pub fn new(data: &'a [u8]) -> Self {
            OneByte { data, at: 0 }
        }
        pub fn consumed(&self) -> usize {
            self.at
        }
    }

    impl AsyncRead for OneByte<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.at < self.data.len() && buf.remaining() > 0 {
                let b = self.data[self.at];
                buf.put_slice(&[b]);
                self.at += 1;
            }
            Poll::Ready(Ok(()))
        }
    }
}
