//! Plugin administration: deploy, list, roll back, remove, attach, detach.

use std::sync::Arc;

use bytes::Bytes;
use tern_proto::{ErrorCode, Frame, PluginDeploy};

use crate::error::ClientError;
use crate::{unexpected, Client};

/// A plugin deployment request (see `tern plugin deploy`).
#[derive(Debug, Clone, Default)]
pub struct Deploy {
    pub name: String,
    /// `dedup-key`, `route`, `residency` or `resolve`; the node reads it from the
    /// component's exports when absent.
    pub hook: Option<String>,
    /// Recorded in the audit trail.
    pub by: String,
    pub params: Vec<(String, String)>,
    /// Attach to this stream's chain for the plugin's hook.
    pub stream: Option<String>,
    /// `reject`, `allow` or `skip` for that attachment; the hook's default when absent.
    pub fallback: Option<String>,
    pub component: Bytes,
}

impl Client {
    /// Deploys a new version of a plugin; returns the version now active. Sent once, never
    /// retried: each deploy creates a version, so a lost answer must be checked with
    /// [`Client::list_plugins`] rather than repeated.
    pub async fn deploy_plugin(&self, d: Deploy) -> Result<u32, ClientError> {
        let req_id = self.inner.conns.next_req_id();
        let frame = Frame::PluginDeploy(PluginDeploy {
            req_id,
            name: d.name,
            hook: d.hook,
            by: d.by,
            params: d.params,
            stream: d.stream,
            fallback: d.fallback,
            component: d.component,
        });
        version(self.inner.call_once(req_id, Arc::new(frame)).await?)
    }

    /// Makes the previous version of `name` active again; returns it. Sent once (see
    /// [`Client::deploy_plugin`]).
    pub async fn rollback_plugin(&self, name: &str, by: &str) -> Result<u32, ClientError> {
        let req_id = self.inner.conns.next_req_id();
        let frame = Frame::PluginRollback {
            req_id,
            name: name.to_string(),
            by: by.to_string(),
        };
        version(self.inner.call_once(req_id, Arc::new(frame)).await?)
    }

    /// Removes a plugin with all its versions, attachments and key-value entries.
    pub async fn remove_plugin(&self, name: &str, by: &str) -> Result<(), ClientError> {
        let (res, uncertain) = self
            .inner
            .call(|req_id| Frame::PluginRemove {
                req_id,
                name: name.to_string(),
                by: by.to_string(),
            })
            .await;
        match res {
            Ok(Frame::Done { .. }) => Ok(()),
            Ok(other) => Err(ClientError::Protocol(unexpected("Done", &other))),
            Err(ClientError::Server(e)) if uncertain && e.code == ErrorCode::PluginNotFound => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Attaches plugin `name` to `stream` for its hook (at the end of the chain; an
    /// attached plugin keeps its place and takes the new fallback).
    pub async fn attach_plugin(
        &self,
        stream: &str,
        name: &str,
        fallback: Option<&str>,
    ) -> Result<(), ClientError> {
        let (res, _) = self
            .inner
            .call(|req_id| Frame::PluginAttach {
                req_id,
                stream: stream.to_string(),
                name: name.to_string(),
                fallback: fallback.map(str::to_string),
            })
            .await;
        done(res?)
    }

    /// Detaches plugin `name` from `stream`.
    pub async fn detach_plugin(&self, stream: &str, name: &str) -> Result<(), ClientError> {
        let (res, _) = self
            .inner
            .call(|req_id| Frame::PluginDetach {
                req_id,
                stream: stream.to_string(),
                name: name.to_string(),
            })
            .await;
        done(res?)
    }

    /// Plugins, chains and the audit trail, as the JSON document of docs/protocol.md.
    pub async fn list_plugins(&self) -> Result<String, ClientError> {
        let (res, _) = self.inner.call(|req_id| Frame::PluginList { req_id }).await;
        match res? {
            Frame::PluginListResp { json, .. } => Ok(json),
            other => Err(ClientError::Protocol(unexpected("PluginListResp", &other))),
        }
    }
}

fn version(frame: Frame) -> Result<u32, ClientError> {
    match frame {
        Frame::PluginOk { version, .. } => Ok(version),
        Frame::Error { error, .. } => Err(ClientError::Server(error)),
        other => Err(ClientError::Protocol(unexpected("PluginOk", &other))),
    }
}

fn done(frame: Frame) -> Result<(), ClientError> {
    match frame {
        Frame::Done { .. } => Ok(()),
        other => Err(ClientError::Protocol(unexpected("Done", &other))),
    }
}
