//! Where a snapshot's bytes live while openraft moves them: in memory (the small state of
//! [`crate::StateMachine`]), in a file (a node's store, which can be far larger than
//! memory should hold), or not written out yet (a node's store before a transfer: the
//! network writes it to a file first, see node_snapshot.rs).

use std::io::{Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// A snapshot's bytes: readable, writable and seekable, as openraft's chunked transfer needs.
#[derive(Debug)]
pub enum SnapshotData {
    Memory(Cursor<Vec<u8>>),
    File(tokio::fs::File),
    /// A store snapshot not written out yet; reading, writing or seeking it fails until
    /// [`crate::PendingSnapshot::write_file`] has made it a `File`.
    Pending(Box<crate::PendingSnapshot>),
}

fn pending() -> std::io::Error {
    std::io::Error::other("a store snapshot is written to a file before it is read")
}

impl SnapshotData {
    /// An empty in-memory snapshot.
    pub fn memory() -> SnapshotData {
        SnapshotData::Memory(Cursor::new(Vec::new()))
    }

    /// The bytes of an in-memory snapshot.
    pub fn as_memory(&self) -> Option<&Vec<u8>> {
        match self {
            SnapshotData::Memory(c) => Some(c.get_ref()),
            SnapshotData::File(_) | SnapshotData::Pending(_) => None,
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_read(cx, buf),
            SnapshotData::File(f) => Pin::new(f).poll_read(cx, buf),
            SnapshotData::Pending(_) => Poll::Ready(Err(pending())),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_write(cx, buf),
            SnapshotData::File(f) => Pin::new(f).poll_write(cx, buf),
            SnapshotData::Pending(_) => Poll::Ready(Err(pending())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_flush(cx),
            SnapshotData::File(f) => Pin::new(f).poll_flush(cx),
            SnapshotData::Pending(_) => Poll::Ready(Err(pending())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_shutdown(cx),
            SnapshotData::File(f) => Pin::new(f).poll_shutdown(cx),
            SnapshotData::Pending(_) => Poll::Ready(Err(pending())),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).start_seek(position),
            SnapshotData::File(f) => Pin::new(f).start_seek(position),
            SnapshotData::Pending(_) => Err(pending()),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::Memory(c) => Pin::new(c).poll_complete(cx),
            SnapshotData::File(f) => Pin::new(f).poll_complete(cx),
            SnapshotData::Pending(_) => Poll::Ready(Err(pending())),
        }
    }
}
