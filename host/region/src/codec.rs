//! Byte layouts of everything this crate writes to redb.
//!
//! Integers are big-endian and fixed width; byte strings and text carry a `u32` length
//! prefix; every top-level record starts with a one-byte format version so a later build
//! can read what this one wrote. openraft's membership types are small, rare and owned by
//! openraft, so they travel as JSON (openraft's own serde form) inside a length prefix.
//!
//! Decoding never panics and never trusts a length: a count or length larger than the
//! bytes that remain is a [`CodecError`], not an allocation.

use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership, Vote};

use crate::{Command, Entry, NodeAddr, NodeId, TypeConfig};

/// Format version of log entries, votes and snapshot blobs written by this build.
pub(crate) const RECORD_VERSION: u8 = 1;

const PAYLOAD_BLANK: u8 = 0;
const PAYLOAD_NORMAL: u8 = 1;
const PAYLOAD_MEMBERSHIP: u8 = 2;

const CMD_APPEND: u8 = 1;
const CMD_PUT: u8 = 2;
const CMD_DELETE: u8 = 3;
const CMD_STORE: u8 = 4;

/// A stored record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {what}: {why}")]
pub struct CodecError {
    /// Which kind of record.
    pub what: &'static str,
    /// What was wrong with it.
    pub why: &'static str,
}

/// Appends fields to a byte buffer.
#[derive(Default)]
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    /// A `u32` length then the bytes. [`Command::check`] keeps fields far below 4 GiB;
    /// this refuses rather than truncates if something bigger slips through.
    pub(crate) fn bytes(&mut self, v: &[u8]) -> Result<(), CodecError> {
        let len = u32::try_from(v.len()).map_err(|_| CodecError {
            what: "field",
            why: "longer than 4 GiB",
        })?;
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(v);
        Ok(())
    }

    pub(crate) fn str(&mut self, v: &str) -> Result<(), CodecError> {
        self.bytes(v.as_bytes())
    }

    pub(crate) fn log_id(&mut self, id: &LogId<NodeId>) {
        self.u64(id.leader_id.term);
        self.u64(id.leader_id.node_id);
        self.u64(id.index);
    }

    /// `term u64 | node u64 | committed u8`.
    pub(crate) fn vote(&mut self, v: &Vote<NodeId>) {
        self.u64(v.leader_id.term);
        self.u64(v.leader_id.node_id);
        self.u8(u8::from(v.committed));
    }

    pub(crate) fn flag(&mut self, b: bool) {
        self.u8(u8::from(b));
    }

    pub(crate) fn opt_log_id(&mut self, id: &Option<LogId<NodeId>>) {
        match id {
            None => self.u8(0),
            Some(id) => {
                self.u8(1);
                self.log_id(id);
            }
        }
    }
}

/// Reads fields from a byte slice, front to back.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    what: &'static str,
    /// The buffer `buf` lies in, when it is shared: byte fields are then taken as slices
    /// of it instead of copies ([`Dec::shared_bytes`]).
    whole: Option<&'a bytes::Bytes>,
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Dec<'a> {
        Dec {
            buf,
            what,
            whole: None,
        }
    }

    /// A decoder over all of `whole`, whose byte fields share it.
    pub(crate) fn shared(whole: &'a bytes::Bytes, what: &'static str) -> Dec<'a> {
        Dec {
            buf: whole,
            what,
            whole: Some(whole),
        }
    }

    /// A byte field as `Bytes`: a slice of the shared buffer, or else a copy.
    pub(crate) fn shared_bytes(&mut self) -> Result<bytes::Bytes, CodecError> {
        let field = self.bytes()?;
        Ok(match self.whole {
            Some(whole) => whole.slice_ref(field),
            None => bytes::Bytes::copy_from_slice(field),
        })
    }

    pub(crate) fn err(&self, why: &'static str) -> CodecError {
        CodecError {
            what: self.what,
            why,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn string(&mut self) -> Result<String, CodecError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("text is not UTF-8"))
    }

    /// A count of items each at least `min_item_bytes` long: refused if the remaining
    /// bytes cannot hold that many, so a corrupt count never sizes an allocation.
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, CodecError> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| self.err("count too large"))?;
        if n.saturating_mul(min_item_bytes.max(1)) > self.buf.len() {
            return Err(self.err("count larger than the record"));
        }
        Ok(n)
    }

    pub(crate) fn log_id(&mut self) -> Result<LogId<NodeId>, CodecError> {
        let term = self.u64()?;
        let node = self.u64()?;
        let index = self.u64()?;
        Ok(LogId::new(CommittedLeaderId::new(term, node), index))
    }

    pub(crate) fn vote(&mut self) -> Result<Vote<NodeId>, CodecError> {
        let term = self.u64()?;
        let node = self.u64()?;
        let committed = self.flag()?;
        let mut v = Vote::new(term, node);
        v.committed = committed;
        Ok(v)
    }

    pub(crate) fn flag(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err("bad flag")),
        }
    }

    pub(crate) fn opt_log_id(&mut self) -> Result<Option<LogId<NodeId>>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.log_id()?)),
            _ => Err(self.err("bad option tag")),
        }
    }

    pub(crate) fn version(&mut self) -> Result<(), CodecError> {
        if self.u8()? != RECORD_VERSION {
            return Err(self.err("unknown format version"));
        }
        Ok(())
    }

    /// The record must end here: trailing bytes mean it is not what we think it is.
    pub(crate) fn finish(self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(v).map_err(|_| CodecError {
        what: "membership",
        why: "does not serialize to JSON",
    })
}

fn from_json<T: serde::de::DeserializeOwned>(b: &[u8], d: &Dec<'_>) -> Result<T, CodecError> {
    serde_json::from_slice(b).map_err(|_| d.err("bad membership JSON"))
}

pub(crate) fn put_membership(
    e: &mut Enc,
    m: &StoredMembership<NodeId, NodeAddr>,
) -> Result<(), CodecError> {
    e.bytes(&json(m)?)
}

pub(crate) fn get_membership(
    d: &mut Dec<'_>,
) -> Result<StoredMembership<NodeId, NodeAddr>, CodecError> {
    let b = d.bytes()?;
    from_json(b, d)
}

fn put_command(e: &mut Enc, c: &Command) -> Result<(), CodecError> {
    match c {
        Command::Append { stream, msgs } => {
            e.u8(CMD_APPEND);
            e.str(stream)?;
            e.u64(msgs.len() as u64);
            for m in msgs {
                e.bytes(m)?;
            }
        }
        Command::Put { key, value } => {
            e.u8(CMD_PUT);
            e.str(key)?;
            e.bytes(value)?;
        }
        Command::Delete { key } => {
            e.u8(CMD_DELETE);
            e.str(key)?;
        }
        Command::Store {
            proposer,
            proposal,
            entry,
        } => {
            e.u8(CMD_STORE);
            e.u64(*proposer);
            e.u64(*proposal);
            e.bytes(entry)?;
        }
    }
    Ok(())
}

fn get_command(d: &mut Dec<'_>) -> Result<Command, CodecError> {
    match d.u8()? {
        CMD_APPEND => {
            let stream = d.string()?;
            let n = d.count(4)?;
            let mut msgs = Vec::with_capacity(n);
            for _ in 0..n {
                msgs.push(d.bytes()?.to_vec());
            }
            Ok(Command::Append { stream, msgs })
        }
        CMD_PUT => {
            let key = d.string()?;
            let value = d.bytes()?.to_vec();
            Ok(Command::Put { key, value })
        }
        CMD_DELETE => Ok(Command::Delete { key: d.string()? }),
        CMD_STORE => Ok(Command::Store {
            proposer: d.u64()?,
            proposal: d.u64()?,
            entry: d.shared_bytes()?,
        }),
        _ => Err(d.err("unknown command tag")),
    }
}

/// `version u8 | term u64 | leader node u64 | index u64 | kind u8 | payload`.
pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    let mut e = Enc::default();
    put_entry(&mut e, entry)?;
    Ok(e.0)
}

/// [`encode_entry`] as a `bytes` field of `e` (its length, then the entry), written in
/// place rather than encoded apart and copied in.
pub(crate) fn put_entry_field(e: &mut Enc, entry: &Entry) -> Result<(), CodecError> {
    let at = e.0.len();
    e.0.extend_from_slice(&[0; 4]);
    put_entry(e, entry)?;
    let len = u32::try_from(e.0.len() - at - 4).map_err(|_| CodecError {
        what: "field",
        why: "longer than 4 GiB",
    })?;
    e.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn put_entry(e: &mut Enc, entry: &Entry) -> Result<(), CodecError> {
    e.u8(RECORD_VERSION);
    e.log_id(&entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => e.u8(PAYLOAD_BLANK),
        EntryPayload::Normal(c) => {
            e.u8(PAYLOAD_NORMAL);
            put_command(e, c)?;
        }
        EntryPayload::Membership(m) => {
            e.u8(PAYLOAD_MEMBERSHIP);
            e.bytes(&json(m)?)?;
        }
    }
    Ok(())
}

pub(crate) fn decode_entry(b: &[u8]) -> Result<Entry, CodecError> {
    read_entry(Dec::new(b, "log entry"))
}

/// [`decode_entry`] of an entry whose store data stays in `b` rather than being copied.
pub(crate) fn decode_shared_entry(b: &bytes::Bytes) -> Result<Entry, CodecError> {
    read_entry(Dec::shared(b, "log entry"))
}

fn read_entry(mut d: Dec<'_>) -> Result<Entry, CodecError> {
    d.version()?;
    let log_id = d.log_id()?;
    let payload = match d.u8()? {
        PAYLOAD_BLANK => EntryPayload::Blank,
        PAYLOAD_NORMAL => EntryPayload::Normal(get_command(&mut d)?),
        PAYLOAD_MEMBERSHIP => {
            let raw = d.bytes()?;
            let m: Membership<NodeId, NodeAddr> = from_json(raw, &d)?;
            EntryPayload::Membership(m)
        }
        _ => return Err(d.err("unknown payload kind")),
    };
    d.finish()?;
    Ok(openraft::Entry::<TypeConfig> { log_id, payload })
}

/// Only the log id of a stored entry (its first 25 bytes), for the log state.
pub(crate) fn decode_entry_log_id(b: &[u8]) -> Result<LogId<NodeId>, CodecError> {
    let mut d = Dec::new(b, "log entry");
    d.version()?;
    d.log_id()
}

/// `version u8 | term u64 | node u64 | committed u8`.
pub(crate) fn encode_vote(v: &Vote<NodeId>) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(RECORD_VERSION);
    e.vote(v);
    e.0
}

pub(crate) fn decode_vote(b: &[u8]) -> Result<Vote<NodeId>, CodecError> {
    let mut d = Dec::new(b, "vote");
    d.version()?;
    let v = d.vote()?;
    d.finish()?;
    Ok(v)
}

/// `version u8 | option<log id>`: the committed, last-purged and last-applied markers.
pub(crate) fn encode_opt_log_id(id: &Option<LogId<NodeId>>) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(RECORD_VERSION);
    e.opt_log_id(id);
    e.0
}

pub(crate) fn decode_opt_log_id(
    b: &[u8],
    what: &'static str,
) -> Result<Option<LogId<NodeId>>, CodecError> {
    let mut d = Dec::new(b, what);
    d.version()?;
    let id = d.opt_log_id()?;
    d.finish()?;
    Ok(id)
}

/// `version u8 | membership JSON (length-prefixed)`.
pub(crate) fn encode_stored_membership(
    m: &StoredMembership<NodeId, NodeAddr>,
) -> Result<Vec<u8>, CodecError> {
    let mut e = Enc::default();
    e.u8(RECORD_VERSION);
    put_membership(&mut e, m)?;
    Ok(e.0)
}

pub(crate) fn decode_stored_membership(
    b: &[u8],
) -> Result<StoredMembership<NodeId, NodeAddr>, CodecError> {
    let mut d = Dec::new(b, "membership");
    d.version()?;
    let m = get_membership(&mut d)?;
    d.finish()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::log_id;

    fn append_entry() -> Entry {
        openraft::Entry::<TypeConfig> {
            log_id: log_id(2, 1, 7),
            payload: EntryPayload::Normal(Command::Append {
                stream: "s".into(),
                msgs: vec![b"ab".to_vec()],
            }),
        }
    }

    /// Pins the on-disk layout of a log entry: changing it needs a new format version.
    #[test]
    fn entry_golden_bytes() {
        let b = encode_entry(&append_entry()).unwrap();
        let want: Vec<u8> = [
            &[1u8][..],                    // version
            &2u64.to_be_bytes(),           // term
            &1u64.to_be_bytes(),           // leader node
            &7u64.to_be_bytes(),           // index
            &[PAYLOAD_NORMAL, CMD_APPEND], // kind, command
            &1u32.to_be_bytes(),
            b"s",
            &1u64.to_be_bytes(), // message count
            &2u32.to_be_bytes(),
            b"ab",
        ]
        .concat();
        assert_eq!(b, want);
        assert_eq!(decode_entry(&b).map(|e| e.log_id), Ok(log_id(2, 1, 7)));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let b = encode_entry(&append_entry()).unwrap();
        for n in 0..b.len() {
            assert!(
                decode_entry(&b[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode_entry(&long).is_err());
    }

    #[test]
    fn huge_count_is_refused_without_allocating() {
        let mut b = encode_entry(&append_entry()).unwrap();
        // The message count sits after version, log id, kind, command, stream.
        let at = 1 + 24 + 2 + 4 + 1;
        b[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(decode_entry(&b).is_err());
    }

    #[test]
    fn vote_round_trips() {
        let mut v = Vote::new(5, 3);
        v.committed = true;
        assert_eq!(decode_vote(&encode_vote(&v)), Ok(v));
        assert!(decode_vote(&[1, 2, 3]).is_err());
    }
}
