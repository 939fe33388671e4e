//! Stream administration, and the generic request/response call with retries.

use std::sync::Arc;

use tern_proto::limits::{NAME_BYTES_MAX, STREAM_SUBJECTS_MAX};
use tern_proto::{ErrorCode, Frame, StreamConfig, StreamInfo};
use tokio::sync::oneshot;

use crate::error::ClientError;
use crate::request::Waiter;
use crate::retry::sleep_backoff;
use crate::{unexpected, Client, Inner};

impl Inner {
    /// After a `not_leader` answer, point the connection at the region's leader.
    pub(crate) fn follow_leader(&self, err: &ClientError) {
        if let ClientError::Server(e) = err {
            self.follow_leader_body(e);
        }
    }

    pub(crate) fn follow_leader_body(&self, e: &tern_proto::ErrorBody) {
        if e.code == ErrorCode::NotLeader {
            self.conns.redirect(&e.message);
        }
    }

    /// Send one attempt of a request and wait for its response frame (which may be `Error`).
    pub(crate) async fn call_once(
        &self,
        req_id: u64,
        frame: Arc<Frame>,
    ) -> Result<Frame, ClientError> {
        let live = self.conns.get().await?;
        let (tx, rx) = oneshot::channel();
        live.requests.send(req_id, frame, Waiter::Reply(tx)).await;
        // The waiter is always completed unless the runtime is shutting down.
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Send a request built by `build(req_id)` with retries (as for publishes), returning the
    /// first non-error response, and whether an earlier attempt may have taken effect
    /// unseen (it was sent, then the connection failed or the answer timed out).
    pub(crate) async fn call(
        &self,
        build: impl Fn(u64) -> Frame,
    ) -> (Result<Frame, ClientError>, bool) {
        let mut uncertain = false;
        let mut attempt = 0u32;
        loop {
            let last = attempt + 1 >= self.cfg.publish_attempts_max;
            let req_id = self.conns.next_req_id();
            let err = match self.call_once(req_id, Arc::new(build(req_id))).await {
                Ok(Frame::Error { error, .. }) => ClientError::Server(error),
                Ok(frame) => return (Ok(frame), uncertain),
                Err(e) => e,
            };
            self.follow_leader(&err);
            if !err.is_retryable() || last {
                return (Err(err), uncertain);
            }
            uncertain |= matches!(err, ClientError::Net(_) | ClientError::Timeout);
            tracing::debug!(attempt, error = %err, "request retrying");
            sleep_backoff(
                attempt,
                self.cfg.backoff_initial_ms,
                self.cfg.backoff_max_ms,
            )
            .await;
            attempt += 1;
        }
    }
}

impl Client {
    /// Create a stream, or return the existing one when it has the same configuration
    /// (a different one fails with `ErrorCode::StreamExists`).
    pub async fn create_stream(&self, config: StreamConfig) -> Result<StreamInfo, ClientError> {
        check_name("stream name", &config.name)?;
        if config.subjects.len() > STREAM_SUBJECTS_MAX {
            return Err(ClientError::Invalid(format!(
                "{} subjects, over the limit of {STREAM_SUBJECTS_MAX}",
                config.subjects.len()
            )));
        }
        for s in &config.subjects {
            check_name("subject", s)?;
        }
        let (res, _) = self
            .inner
            .call(|req_id| Frame::StreamAdd {
                req_id,
                config: config.clone(),
            })
            .await;
        stream_info(res?)
    }

    /// The configuration and counters of stream `name`.
    pub async fn stream_info(&self, name: &str) -> Result<StreamInfo, ClientError> {
        check_name("stream name", name)?;
        let (res, _) = self
            .inner
            .call(|req_id| Frame::StreamGet {
                req_id,
                name: name.to_string(),
            })
            .await;
        stream_info(res?)
    }

    /// Every stream of the node.
    pub async fn list_streams(&self) -> Result<Vec<StreamInfo>, ClientError> {
        let (res, _) = self.inner.call(|req_id| Frame::StreamList { req_id }).await;
        match res? {
            Frame::StreamListResp { streams, .. } => Ok(streams),
            other => Err(ClientError::Protocol(unexpected("StreamListResp", &other))),
        }
    }

    /// Delete stream `name` and its messages. `StreamNotFound` after an attempt whose outcome
    /// was lost (connection failure or timeout) counts as success: that attempt deleted it.
    pub async fn delete_stream(&self, name: &str) -> Result<(), ClientError> {
        check_name("stream name", name)?;
        let (res, uncertain) = self
            .inner
            .call(|req_id| Frame::StreamRemove {
                req_id,
                name: name.to_string(),
            })
            .await;
        match res {
            Ok(Frame::Done { .. }) => Ok(()),
            Ok(other) => Err(ClientError::Protocol(unexpected("Done", &other))),
            Err(ClientError::Server(e)) if uncertain && e.code == ErrorCode::StreamNotFound => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn stream_info(frame: Frame) -> Result<StreamInfo, ClientError> {
    match frame {
        Frame::StreamInfo { info, .. } => Ok(info),
        other => Err(ClientError::Protocol(unexpected("StreamInfo", &other))),
    }
}

/// Refuse a name the node's decoder would reject.
pub(crate) fn check_name(what: &str, s: &str) -> Result<(), ClientError> {
    if s.is_empty() || s.len() > NAME_BYTES_MAX {
        return Err(ClientError::Invalid(format!(
            "{what} must be 1..={NAME_BYTES_MAX} bytes, is {}",
            s.len()
        )));
    }
    Ok(())
}
