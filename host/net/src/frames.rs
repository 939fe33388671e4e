//! Frames over one QUIC stream.

use bytes::BytesMut;
use tern_proto::Frame;
use tokio::io::AsyncReadExt;

use crate::NetError;

/// Reads whole frames from a QUIC receive stream.
pub struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    frame_bytes_max: usize,
}

impl FrameReader {
    pub fn new(recv: quinn::RecvStream, frame_bytes_max: usize) -> FrameReader {
        FrameReader {
            recv,
            buf: BytesMut::with_capacity(64 * 1024),
            frame_bytes_max,
        }
    }

    /// The next frame; `Ok(None)` when the peer finished the stream between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, NetError> {
        loop {
            if let Some(f) = Frame::decode(&mut self.buf, self.frame_bytes_max)? {
                return Ok(Some(f));
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            match self.recv.read_buf(&mut self.buf).await? {
                0 if self.buf.is_empty() => return Ok(None),
                0 => return Err(NetError::TruncatedStream),
                _ => {}
            }
        }
    }

    /// Whether a whole frame is already buffered (so `next` will not wait).
    pub fn has_buffered_frame(&self) -> bool {
        if self.buf.len() < 4 {
            return false;
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        self.buf.len() >= 4 + len
    }

    /// Refuse further data from the peer with an application error code.
    pub fn stop(&mut self, code: u32) {
        let _ = self.recv.stop(code.into());
    }
}

/// Writes frames to a QUIC send stream, coalescing several into one write.
pub struct FrameWriter {
    send: quinn::SendStream,
    buf: BytesMut,
}

impl FrameWriter {
    pub fn new(send: quinn::SendStream) -> FrameWriter {
        FrameWriter {
            send,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// Queue a frame; nothing is sent until [`FrameWriter::flush`].
    pub fn push(&mut self, frame: &Frame) {
        frame.encode(&mut self.buf);
    }

    /// Queue a delivery encoded from borrowed fields (the same bytes as `Frame::Deliver`).
    pub fn push_delivery(&mut self, d: &tern_proto::DeliveryRef<'_>) {
        d.encode(&mut self.buf);
    }

    /// Bytes queued and not yet flushed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Send everything queued.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.send.write_chunk(chunk).await?;
        }
        Ok(())
    }

    /// Queue and send one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), NetError> {
        self.push(frame);
        self.flush().await
    }

    /// Finish the stream after flushing.
    pub async fn finish(&mut self) -> Result<(), NetError> {
        self.flush().await?;
        let _ = self.send.finish();
        Ok(())
    }

    /// After [`FrameWriter::finish`]: wait until the peer acknowledged everything sent (or
    /// stopped the stream, or the connection ended). Closing the connection discards data
    /// not yet delivered, so wait for this first when what was sent must arrive.
    pub async fn delivered(&mut self) {
        let _ = self.send.stopped().await;
    }
}
