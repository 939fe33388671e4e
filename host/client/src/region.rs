//! Region administration: the region's status, adding and removing a node.

use std::sync::Arc;

use tern_proto::{ErrorCode, Frame};

use crate::admin::check_name;
use crate::error::ClientError;
use crate::{unexpected, Client};

impl Client {
    /// How the connected node sees its region: the JSON document of docs/protocol.md
    /// (role, leader, term, commit and applied indexes, members with their lag on the
    /// leader). A read, so it is retried like other reads.
    pub async fn region_status(&self) -> Result<String, ClientError> {
        let (res, _) = self
            .inner
            .call(|req_id| Frame::RegionStatus { req_id })
            .await;
        match res? {
            Frame::RegionStatusResp { json, .. } => Ok(json),
            other => Err(ClientError::Protocol(unexpected(
                "RegionStatusResp",
                &other,
            ))),
        }
    }

    /// Adds node `id` to the region as a voter; it must be running with the given region
    /// and client addresses. The connected node must lead the region: a follower answers
    /// `not_leader` with the leader's client address (see [`ClientError::leader_addr`]).
    ///
    /// Sent once, never retried: a membership change is not idempotent in general, so a
    /// lost answer is checked with [`Client::region_status`] rather than repeated.
    pub async fn add_node(
        &self,
        id: u64,
        region_addr: &str,
        client_addr: &str,
    ) -> Result<(), ClientError> {
        check_name("region address", region_addr)?;
        check_name("client address", client_addr)?;
        let req_id = self.inner.conns.next_req_id();
        let frame = Frame::RegionAddNode {
            req_id,
            id,
            region_addr: region_addr.to_string(),
            client_addr: client_addr.to_string(),
        };
        region_ok(self.inner.call_once(req_id, Arc::new(frame)).await?)
    }

    /// Removes node `id` from the region. Sent once, to the leader (see [`Client::add_node`]).
    pub async fn remove_node(&self, id: u64) -> Result<(), ClientError> {
        let req_id = self.inner.conns.next_req_id();
        let frame = Frame::RegionRemoveNode { req_id, id };
        region_ok(self.inner.call_once(req_id, Arc::new(frame)).await?)
    }
}

impl ClientError {
    /// For a `not_leader` answer: the leader's client address, when the node knew it.
    pub fn leader_addr(&self) -> Option<&str> {
        match self {
            ClientError::Server(e) if e.code == ErrorCode::NotLeader && !e.message.is_empty() => {
                Some(&e.message)
            }
            _ => None,
        }
    }
}

fn region_ok(frame: Frame) -> Result<(), ClientError> {
    match frame {
        Frame::RegionOk { .. } => Ok(()),
        Frame::Error { error, .. } => Err(ClientError::Server(error)),
        other => Err(ClientError::Protocol(unexpected("RegionOk", &other))),
    }
}
