//! Primitive field encoding. All integers are big-endian; see docs/protocol.md.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::limits::NAME_BYTES_MAX;

/// Reads fields from one complete frame body. Payload bytes are sliced, not copied.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DecodeError::Truncated(field))?;
        if end > self.buf.len() {
            return Err(DecodeError::Truncated(field));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidValue {
                field,
                reason: "boolean must be 0 or 1",
            }),
        }
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `str16`: u16 length then UTF-8 bytes, at most `NAME_BYTES_MAX`.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(field)? as usize;
        if len > NAME_BYTES_MAX {
            return Err(DecodeError::InvalidValue {
                field,
                reason: "string longer than 1024 bytes",
            });
        }
        let b = self.take(len, field)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8(field))
    }

    /// An optional `str16`: a presence byte then the string.
    pub(crate) fn opt_str(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        if self.bool(field)? {
            Ok(Some(self.str(field)?))
        } else {
            Ok(None)
        }
    }

    /// A `bytes32`: u32 length then raw bytes (sliced from the frame without copying).
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u32(field)? as usize;
        let start = self.pos;
        self.take(len, field)?;
        Ok(self.buf.slice(start..start + len))
    }

    /// A u16 or u32 element count that must not exceed `max` nor the bytes left
    /// (each element takes at least `min_elem_bytes`), so a hostile count cannot
    /// make the decoder allocate.
    pub(crate) fn count(
        &mut self,
        wide: bool,
        max: usize,
        min_elem_bytes: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let n = if wide {
            self.u32(field)? as usize
        } else {
            self.u16(field)? as usize
        };
        if n > max {
            return Err(DecodeError::InvalidValue {
                field,
                reason: "too many elements",
            });
        }
        if n.saturating_mul(min_elem_bytes) > self.remaining() {
            return Err(DecodeError::Truncated(field));
        }
        Ok(n)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    // Encoders only see strings that were validated or decoded under NAME_BYTES_MAX;
    // truncating here keeps the frame well-formed even if a caller skipped validation.
    let b = s.as_bytes();
    let len = b.len().min(u16::MAX as usize);
    out.put_u16(len as u16);
    out.put_slice(&b[..len]);
}

pub(crate) fn put_opt_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            out.put_u8(1);
            put_str(out, s);
        }
        None => out.put_u8(0),
    }
}

pub(crate) fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

pub(crate) fn put_bool(out: &mut BytesMut, v: bool) {
    out.put_u8(v as u8);
}
