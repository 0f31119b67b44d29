//! The peer stream once the handshake is done: RC4 applied to every byte, or the
//! bytes passed through when plaintext was selected. Either way the bytes the
//! handshake read past its end (the initial payload, and whatever came after it)
//! are given back first.

use std::{
    io::IoSliceMut,
    pin::Pin,
    task::{Context, Poll, ready},
};

use rc4::{Rc4, StreamCipher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    type_aliases::{BoxAsyncReadVectored, BoxAsyncWrite},
    vectored_traits::AsyncReadVectored,
};

/// The most bytes enciphered ahead of one write: the peer writer's batches (about
/// 264 KiB) go out in one write.
const MAX_WRITE_AHEAD: usize = 512 * 1024;

/// The reading half: `prefix` (already deciphered) first, then the socket's bytes,
/// deciphered when there is a cipher.
pub(crate) struct MseRead {
    inner: BoxAsyncReadVectored,
    prefix: Vec<u8>,
    prefix_pos: usize,
    cipher: Option<Rc4>,
}

impl MseRead {
    pub fn new(inner: BoxAsyncReadVectored, prefix: Vec<u8>, cipher: Option<Rc4>) -> Self {
        Self {
            inner,
            prefix,
            prefix_pos: 0,
            cipher,
        }
    }

    /// Copies what is left of the prefix into `vec`, in order.
    fn take_prefix(&mut self, vec: &mut [IoSliceMut<'_>]) -> usize {
        let mut copied = 0;
        for slice in vec.iter_mut() {
            let left = &self.prefix[self.prefix_pos..];
            if left.is_empty() {
                break;
            }
            let n = left.len().min(slice.len());
            slice[..n].copy_from_slice(&left[..n]);
            self.prefix_pos += n;
            copied += n;
        }
        if self.prefix_pos == self.prefix.len() {
            self.prefix = Vec::new();
            self.prefix_pos = 0;
        }
        copied
    }
}

impl AsyncRead for MseRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.prefix_pos < this.prefix.len() {
            let mut slices = [IoSliceMut::new(buf.initialize_unfilled())];
            let n = this.take_prefix(&mut slices);
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Some(cipher) = this.cipher.as_mut() {
            cipher.apply_keystream(&mut buf.filled_mut()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncReadVectored for MseRead {
    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        vec: &mut [IoSliceMut<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.prefix_pos < this.prefix.len() {
            return Poll::Ready(Ok(this.take_prefix(vec)));
        }
        // The inner reader may advance the slices it is given past what it filled
        // (uTP's does), so it gets slices of its own over the same buffers: at most
        // two, what librqbit's ring buffer asks for.
        let (first, second): (&mut [u8], &mut [u8]) = match vec {
            [] => return Poll::Ready(Ok(0)),
            [a] => (&mut a[..], &mut []),
            [a, b, ..] => (&mut a[..], &mut b[..]),
        };
        let mut slices = [IoSliceMut::new(&mut *first), IoSliceMut::new(&mut *second)];
        let n = ready!(Pin::new(&mut this.inner).poll_read_vectored(cx, &mut slices))?;
        if let Some(cipher) = this.cipher.as_mut() {
            let in_first = n.min(first.len());
            cipher.apply_keystream(&mut first[..in_first]);
            let in_second = (n - in_first).min(second.len());
            cipher.apply_keystream(&mut second[..in_second]);
        }
        Poll::Ready(Ok(n))
    }
}

/// The writing half, RC4 applied (with plaintext selected, the socket's own writer
/// is used instead).
///
/// Bytes are enciphered once, so those the socket has not taken yet are kept,
/// enciphered, in `pending`, and only bytes the socket took are reported written.
/// Like every writer that transforms what it is given, it relies on the caller to
/// offer the bytes not reported written again, first, as `write_all` does.
pub(crate) struct MseWrite {
    inner: BoxAsyncWrite,
    cipher: Rc4,
    pending: Vec<u8>,
    pending_pos: usize,
}

impl MseWrite {
    pub fn new(inner: BoxAsyncWrite, cipher: Rc4) -> Self {
        Self {
            inner,
            cipher,
            pending: Vec::new(),
            pending_pos: 0,
        }
    }
}

impl AsyncWrite for MseWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.pending_pos == this.pending.len() {
            let take = buf.len().min(MAX_WRITE_AHEAD);
            this.pending.clear();
            this.pending.extend_from_slice(&buf[..take]);
            this.cipher.apply_keystream(&mut this.pending);
            this.pending_pos = 0;
        }
        // What is pending stands for the start of `buf`: never report more than it.
        let end = this.pending.len().min(this.pending_pos + buf.len());
        let n =
            ready!(Pin::new(&mut this.inner).poll_write(cx, &this.pending[this.pending_pos..end]))?;
        this.pending_pos += n;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
