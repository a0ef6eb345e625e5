//! Copying a spliced stream both ways (TCP services, passthrough, upgraded HTTP connections).
//!
//! Each direction's buffer starts at [`FIRST`] bytes and doubles whenever one read fills it,
//! up to [`MOST`], so a bulk stream moves large chunks per system call and per batch of TLS
//! records. The buffer is given back whenever its direction goes quiet with nothing in it
//! (the size it grew to is remembered): an idle connection holds no copy buffer at all, and a
//! pause costs one allocation, next to the readiness wake-up it already costs.
//!
//! When one side ends its stream, the other side's write half is shut down and the other
//! direction goes on until it ends too (a half-close is carried through). An error on either
//! side ends both.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::stream_buf::StreamBuf;

/// A direction's first buffer: one read of a request or an answer of a few KiB.
pub(crate) const FIRST: usize = 4 * 1024;
/// The largest a buffer grows.
pub(crate) const MOST: usize = 256 * 1024;

/// Bytes moved each way when both directions ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Copied {
    pub a_to_b: u64,
    pub b_to_a: u64,
}

/// Copies `a` to `b` and `b` to `a` until both directions have ended.
pub(crate) async fn both_ways<A, B>(a: &mut A, b: &mut B) -> io::Result<Copied>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut a_to_b = OneWay::default();
    let mut b_to_a = OneWay::default();
    poll_fn(|cx| {
        let forth = a_to_b.poll(cx, Pin::new(&mut *a), Pin::new(&mut *b))?;
        let back = b_to_a.poll(cx, Pin::new(&mut *b), Pin::new(&mut *a))?;
        match (forth, back) {
            (Poll::Ready(a_to_b), Poll::Ready(b_to_a)) => {
                Poll::Ready(Ok(Copied { a_to_b, b_to_a }))
            }
            _ => Poll::Pending,
        }
    })
    .await
}

/// One direction: bytes read and not yet written sit in `buf`.
#[derive(Debug)]
struct OneWay {
    buf: StreamBuf,
    read_done: bool,
    done: bool,
    /// Something was written since the last flush.
    need_flush: bool,
    copied: u64,
}

impl Default for OneWay {
    fn default() -> Self {
        Self {
            buf: StreamBuf::new(FIRST, MOST),
            read_done: false,
            done: false,
            need_flush: false,
            copied: 0,
        }
    }
}

impl OneWay {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(self.copied));
        }
        loop {
            while !self.buf.is_empty() {
                let n = ready!(writer.as_mut().poll_write(cx, self.buf.bytes()))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.buf.take(n);
                self.copied += n as u64;
                self.need_flush = true;
            }
            if self.read_done {
                ready!(writer.as_mut().poll_flush(cx))?;
                ready!(writer.as_mut().poll_shutdown(cx))?;
                self.done = true;
                self.buf.release();
                return Poll::Ready(Ok(self.copied));
            }
            match self.buf.poll_fill(cx, reader.as_mut()) {
                Poll::Ready(Ok(0)) => self.read_done = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.need_flush {
                        // The reader may be waiting for what the writer still holds.
                        ready!(writer.as_mut().poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn bytes_go_both_ways_and_a_half_close_is_carried() {
        let (mut client, mut near) = duplex(1 << 20);
        let (mut far, mut server) = duplex(1 << 20);
        let copy = tokio::spawn(async move { both_ways(&mut near, &mut far).await });
        let sent: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expect = sent.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "the bytes differ");
        server.write_all(b"done").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"done");
        let copied = copy.await.unwrap().unwrap();
        assert_eq!(
            copied,
            Copied {
                a_to_b: 3_000_000,
                b_to_a: 4
            }
        );
    }

    #[test]
    fn a_buffer_grows_while_reads_fill_it_and_goes_when_its_direction_idles() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut way = OneWay::default();
        // A reader with 1 MiB ready, then nothing (pending), into a sink.
        let mut reader = Chunks(vec![vec![7u8; 1 << 20]]);
        let mut sink = tokio::io::sink();
        let poll = way.poll(&mut cx, Pin::new(&mut reader), Pin::new(&mut sink));
        assert!(poll.is_pending());
        assert_eq!(way.copied, 1 << 20);
        assert_eq!(way.buf.size(), MOST, "the buffer grew to the most");
        assert_eq!(way.buf.capacity(), 0, "an idle buffer is given back");

        let mut quiet = OneWay::default();
        let mut reader = Chunks(vec![b"hello".to_vec()]);
        let poll = quiet.poll(&mut cx, Pin::new(&mut reader), Pin::new(&mut sink));
        assert!(poll.is_pending());
        assert_eq!(quiet.copied, 5);
        assert_eq!(
            quiet.buf.size(),
            FIRST,
            "a short read does not grow the buffer"
        );
        assert_eq!(quiet.buf.capacity(), 0);
    }

    /// Gives its chunks one read at a time (as much as fits), then stays pending.
    struct Chunks(Vec<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let Some(first) = self.0.first_mut() else {
                return Poll::Pending;
            };
            let n = first.len().min(buf.remaining());
            buf.put_slice(&first[..n]);
            first.drain(..n);
            if first.is_empty() {
                self.0.remove(0);
            }
            Poll::Ready(Ok(()))
        }
    }
}
