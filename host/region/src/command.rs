//! What a region replicates: the application request (`D`) and response (`R`) types of
//! tern's openraft type config, and the node information a membership carries.

use serde::{Deserialize, Serialize};

use crate::NodeId;

use crate::limits::{
    APPEND_BATCH_BYTES_MAX, APPEND_BATCH_MSGS_MAX, KEY_BYTES_MAX, STREAM_NAME_BYTES_MAX,
    VALUE_BYTES_MAX,
};

/// One replicated change. An `Append` is a batch: the broker folds many client publishes to
/// one stream into one command, so they cost one log entry, one quorum round trip and one
/// fsync per node instead of one each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Append opaque encoded message records to a stream. The state machine gives them the
    /// next positions of that stream, in order, at apply time.
    Append { stream: String, msgs: Vec<Vec<u8>> },
    /// Set a key of the replicated key-value state (stream definitions, group cursors,
    /// plugin deployments).
    Put { key: String, value: Vec<u8> },
    /// Remove a key of the replicated key-value state; removing a missing key is not an error.
    Delete { key: String },
    /// A node's store changes: an encoded `tern_store::LogEntry`, which the node's state
    /// machine applies to its store. `proposer` and `proposal` let the proposing node hand
    /// the outcomes back to the requests that made the entry. Shared bytes: the log's
    /// tail, replication and apply pass the entry around without copying it.
    Store {
        proposer: NodeId,
        proposal: u64,
        entry: bytes::Bytes,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The positions given to an `Append`'s messages, in the command's order. Positions are
    /// per stream, start at 1 and have no gaps; every replica assigns the same ones because
    /// they are assigned while applying the log in order.
    Appended { positions: Vec<u64> },
    /// A `Put`, a `Delete`, or an entry openraft itself wrote (blank or membership).
    Applied,
}

/// What a region member publishes about itself in the membership.
///
/// It is stored (as JSON) in membership log entries and snapshots, so a field added later
/// must have a default: records written before it existed still decode, and a node of the
/// previous version ignores the field it does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// The node's QUIC address for region traffic, `host:port`.
    pub quic_addr: String,
    /// The node's client-facing address, `host:port`: where a follower sends a client
    /// that must talk to the leader. Empty when unknown (members added before it existed).
    #[serde(default)]
    pub client_addr: String,
}

impl NodeAddr {
    /// A member whose client address is not known.
    pub fn new(quic_addr: impl Into<String>) -> NodeAddr {
        NodeAddr {
            quic_addr: quic_addr.into(),
            client_addr: String::new(),
        }
    }

    /// A member with its region and client addresses.
    pub fn with_client(quic_addr: impl Into<String>, client_addr: impl Into<String>) -> NodeAddr {
        NodeAddr {
            quic_addr: quic_addr.into(),
            client_addr: client_addr.into(),
        }
    }
}

/// Why a command was refused before it was proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The stream name is empty or longer than [`STREAM_NAME_BYTES_MAX`].
    #[error("stream name must be 1..={STREAM_NAME_BYTES_MAX} bytes")]
    StreamName,
    /// An append carries no messages, or more than [`APPEND_BATCH_MSGS_MAX`].
    #[error("an append carries 1..={APPEND_BATCH_MSGS_MAX} messages")]
    BatchCount,
    /// An append's messages together exceed [`APPEND_BATCH_BYTES_MAX`].
    #[error("an append carries at most {APPEND_BATCH_BYTES_MAX} bytes")]
    BatchBytes,
    /// The key is empty or longer than [`KEY_BYTES_MAX`].
    #[error("key must be 1..={KEY_BYTES_MAX} bytes")]
    Key,
    /// The value is longer than [`VALUE_BYTES_MAX`].
    #[error("value must be at most {VALUE_BYTES_MAX} bytes")]
    Value,
}

impl Command {
    /// Checks the command against the limits. Run it before proposing: a command in the log
    /// is applied on every replica, so a bad one must never get that far.
    pub fn check(&self) -> Result<(), CommandError> {
        match self {
            Command::Append { stream, msgs } => {
                if stream.is_empty() || stream.len() > STREAM_NAME_BYTES_MAX {
                    return Err(CommandError::StreamName);
                }
                if msgs.is_empty() || msgs.len() > APPEND_BATCH_MSGS_MAX {
                    return Err(CommandError::BatchCount);
                }
                let bytes: usize = msgs.iter().map(Vec::len).sum();
                if bytes > APPEND_BATCH_BYTES_MAX {
                    return Err(CommandError::BatchBytes);
                }
            }
            Command::Put { key, value } => {
                check_key(key)?;
                if value.len() > VALUE_BYTES_MAX {
                    return Err(CommandError::Value);
                }
            }
            Command::Delete { key } => check_key(key)?,
            Command::Store { entry, .. } => {
                if entry.is_empty() || entry.len() > APPEND_BATCH_BYTES_MAX {
                    return Err(CommandError::BatchBytes);
                }
            }
        }
        Ok(())
    }
}

fn check_key(key: &str) -> Result<(), CommandError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(CommandError::Key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced() {
        let ok = Command::Append {
            stream: "s".into(),
            msgs: vec![vec![0; 10]],
        };
        assert_eq!(ok.check(), Ok(()));
        let empty = Command::Append {
            stream: "s".into(),
            msgs: vec![],
        };
        assert_eq!(empty.check(), Err(CommandError::BatchCount));
        let big = Command::Append {
            stream: "s".into(),
            msgs: vec![vec![0; APPEND_BATCH_BYTES_MAX + 1]],
        };
        assert_eq!(big.check(), Err(CommandError::BatchBytes));
        let key = Command::Delete { key: String::new() };
        assert_eq!(key.check(), Err(CommandError::Key));
    }

    /// Membership records written before `client_addr` existed still decode (with it
    /// empty), and the current form carries it.
    #[test]
    fn node_addr_without_client_addr_still_decodes() {
        let old: NodeAddr = serde_json::from_str(r#"{"quic_addr":"10.0.0.1:7500"}"#).unwrap();
        assert_eq!(old, NodeAddr::new("10.0.0.1:7500"));
        let now = NodeAddr::with_client("10.0.0.1:7500", "10.0.0.1:7420");
        let json = serde_json::to_string(&now).unwrap();
        assert_eq!(
            json,
            r#"{"quic_addr":"10.0.0.1:7500","client_addr":"10.0.0.1:7420"}"#
        );
        assert_eq!(serde_json::from_str::<NodeAddr>(&json).unwrap(), now);
    }
}
