//! Replication streams between regions (the mesh): a node of one region copies a stream from
//! a node of another. The receiving node drives it: it opens the stream with its resume
//! point and version vector, takes the deliveries in order, and grants credit as it stores
//! them. Reconnecting after a failure is the caller's, which knows where it resumes.

use std::time::Duration;

use tern_net::{FrameReader, FrameWriter};
use tern_proto::{Delivery, Frame, MeshSubscribe};

use crate::error::ClientError;
use crate::subscribe::open_stream;
use crate::{unexpected, Client};

/// What a replication stream brings, in the sender's order.
#[derive(Debug, Clone, PartialEq)]
pub enum Replicated {
    /// A message, with the stamp its origin gave it and the sender's `local_seq`.
    Message(Box<Delivery>),
    /// Everything up to this `local_seq` of the sender was delivered or passed over.
    Passed(u64),
}

impl Replicated {
    /// The sender's `local_seq` this item takes the stream to.
    pub fn local_seq(&self) -> u64 {
        match self {
            Replicated::Message(d) => d.stamp.local_seq,
            Replicated::Passed(seq) => *seq,
        }
    }
}

/// An open replication stream: deliveries in the sender's order, each with its stamp.
pub struct Replication {
    reader: FrameReader,
    writer: FrameWriter,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").finish_non_exhaustive()
    }
}

impl Client {
    /// How the connected node's mesh links stand: the JSON document of docs/protocol.md
    /// (counters, and per link and stream its state, resume point, lag and last error).
    pub async fn mesh_status(&self) -> Result<String, ClientError> {
        let (res, _) = self.inner.call(|req_id| Frame::MeshStatus { req_id }).await;
        match res? {
            Frame::MeshStatusResp { json, .. } => Ok(json),
            other => Err(ClientError::Protocol(unexpected("MeshStatusResp", &other))),
        }
    }

    /// Opens a replication stream (`req.req_id` is set here) and waits, at most the request
    /// timeout, for the node to accept it. A follower of a region refuses with
    /// `not_leader`; the client then connects to the leader it names for the next call.
    pub async fn replicate(&self, mut req: MeshSubscribe) -> Result<Replication, ClientError> {
        let live = self.inner.conns.get().await?;
        req.req_id = self.inner.conns.next_req_id();
        let limit = Duration::from_millis(self.inner.cfg.request_timeout_ms);
        let opened = tokio::time::timeout(limit, open(&live.conn, req))
            .await
            .unwrap_or(Err(ClientError::Timeout));
        if let Err(e) = &opened {
            // In a region only the leader serves copies: a follower names it.
            self.inner.follow_leader(e);
        }
        opened
    }
}

async fn open(conn: &quinn::Connection, req: MeshSubscribe) -> Result<Replication, ClientError> {
    let req_id = req.req_id;
    let (reader, writer, _) = open_stream(conn, Frame::MeshSubscribe(req), req_id).await?;
    Ok(Replication { reader, writer })
}

impl Replication {
    /// The next item; `Ok(None)` when the sender ended the stream.
    pub async fn next(&mut self) -> Result<Option<Replicated>, ClientError> {
        match self.reader.next().await? {
            Some(Frame::Deliver(d)) => Ok(Some(Replicated::Message(Box::new(d)))),
            Some(Frame::MeshPassed { local_seq }) => Ok(Some(Replicated::Passed(local_seq))),
            Some(Frame::Error { error, .. }) => Err(ClientError::Server(error)),
            Some(other) => Err(ClientError::Protocol(unexpected("Deliver", &other))),
            None => Ok(None),
        }
    }

    /// An item already received, without waiting; `None` when none is buffered.
    pub async fn try_next(&mut self) -> Result<Option<Replicated>, ClientError> {
        tokio::select! {
            biased;
            d = self.next() => d,
            _ = std::future::ready(()) => Ok(None),
        }
    }

    /// Lets the sender push `credit` more deliveries.
    pub async fn grant(&mut self, credit: u32) -> Result<(), ClientError> {
        Ok(self.writer.send(&Frame::Credit { credit }).await?)
    }

    /// Ends the stream from this side.
    pub async fn finish(mut self) {
        let _ = self.writer.finish().await;
    }
}
