//! Reading a mutual TLS connection's socket in large chunks.
//!
//! rustls asks its transport for at most 4 KiB at a time, so a stream of full 16 KiB records
//! would cost several system calls per record. [`ReadAhead`] sits between the socket and
//! rustls: it reads as much as the kernel has (its buffer starts at [`FIRST`] bytes and
//! doubles whenever one read fills it, up to [`MOST`]) and hands rustls the bytes from
//! memory. Its buffer is given back whenever the socket has nothing more to read and every
//! byte was handed on, so an idle connection holds none. Writes go straight to the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stream_buf::StreamBuf;

/// The first buffer: a handshake flight or a few small records.
pub(crate) const FIRST: usize = 4 * 1024;
/// The largest a buffer grows: four full TLS records.
pub(crate) const MOST: usize = 64 * 1024 + 512;

/// A socket read through a buffer that grows with the stream.
#[derive(Debug)]
pub struct ReadAhead<IO> {
    io: IO,
    buf: StreamBuf,
}

impl<IO> ReadAhead<IO> {
    pub fn new(io: IO) -> Self {
        Self {
            io,
            buf: StreamBuf::new(FIRST, MOST),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ReadAhead<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.buf.is_empty() {
            // At the end of the stream nothing is put in `out`.
            if ready!(this.buf.poll_fill(cx, Pin::new(&mut this.io)))? == 0 {
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.buf.bytes().len());
        out.put_slice(&this.buf.bytes()[..n]);
        this.buf.take(n);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ReadAhead<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_one_and_the_buffer_goes_when_idle() {
        let (mut far, near) = tokio::io::duplex(1 << 20);
        let mut ahead = ReadAhead::new(near);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        far.write_all(&data).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < data.len() {
            let n = ahead.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got == data, "the bytes differ");
        assert_eq!(
            ahead.buf.size(),
            MOST,
            "reads that filled the buffer grew it"
        );

        // Nothing more to read: the next read is pending and the buffer is given back.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut one = [0u8; 1];
        let mut rb = ReadBuf::new(&mut one);
        assert!(
            Pin::new(&mut ahead)
                .poll_read(&mut cx, &mut rb)
                .is_pending()
        );
        assert_eq!(ahead.buf.capacity(), 0);

        // Writes pass through; the end of the stream reads as 0.
        ahead.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        far.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
        drop(far);
        assert_eq!(ahead.read(&mut chunk).await.unwrap(), 0);
    }
}
