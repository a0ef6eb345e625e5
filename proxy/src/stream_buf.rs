//! The read buffer of [`crate::copy`] and [`crate::read_ahead`]: it starts small, doubles
//! whenever one read fills it (up to a most), and is given back whenever the reader has
//! nothing more to give and every byte was taken out, so an idle connection holds none. The
//! size it grew to is remembered, so a bulk stream that pauses keeps reading large chunks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncRead;

/// A buffer filled from one reader, then emptied by its owner.
#[derive(Debug)]
pub(crate) struct StreamBuf {
    buf: BytesMut,
    /// The size of the next allocation.
    size: usize,
    most: usize,
}

impl StreamBuf {
    pub(crate) fn new(first: usize, most: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            size: first,
            most,
        }
    }

    /// The bytes read and not yet taken.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.chunk()
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.buf.has_remaining()
    }

    /// Takes `n` bytes off the front.
    pub(crate) fn take(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// Gives the memory back (the remembered size stays).
    pub(crate) fn release(&mut self) {
        self.buf = BytesMut::new();
    }

    /// Reads once into the buffer, which must be empty: `Ok(0)` at the end of the stream.
    /// When the reader has nothing yet the buffer is given back and this is pending.
    pub(crate) fn poll_fill<R: AsyncRead + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        reader: Pin<&mut R>,
    ) -> Poll<io::Result<usize>> {
        debug_assert!(self.is_empty());
        let size = self.size;
        // Empty here: this takes back the room already taken out, or allocates (nothing is
        // copied).
        self.buf.clear();
        self.buf.reserve(size);
        let read = tokio_util::io::poll_read_buf(reader, cx, &mut self.buf);
        match &read {
            Poll::Pending | Poll::Ready(Err(_)) => self.release(),
            Poll::Ready(Ok(n)) if *n >= size => self.size = (size * 2).min(self.most),
            Poll::Ready(Ok(_)) => {}
        }
        read
    }

    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}
