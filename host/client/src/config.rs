//! Client and subscription settings.

use std::path::PathBuf;

use tern_net::TransportLimits;
use tern_proto::limits::NAME_BYTES_MAX;
use tern_proto::StartPosition;

use crate::error::ClientError;

/// How a [`crate::Client`] connects, times out and retries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Node addresses as `host:port`; tried in order, rotating to the next one on failure.
    pub servers: Vec<String>,
    /// PEM file with the CA certificate(s) that signed the nodes' certificates.
    pub ca: PathBuf,
    /// Name checked against the node certificate. Default `localhost`.
    pub server_name: String,
    /// Client name sent in `Hello` (shows up in node logs).
    pub client_name: String,
    /// Time allowed to resolve, handshake and exchange `Hello` with one node. Default 2 s:
    /// a node that is down never answers, and each one tried in turn costs this long.
    pub connect_timeout_ms: u64,
    /// Time allowed for one attempt of one request before it counts as failed. Default 30 s.
    pub request_timeout_ms: u64,
    /// Attempts per request (the first try plus retries), always with the same message ids.
    /// Default 5.
    pub publish_attempts_max: u32,
    /// Upper bound of the first retry delay; doubles on each retry. Default 100 ms.
    pub backoff_initial_ms: u64,
    /// Largest retry delay. Default 5 s.
    pub backoff_max_ms: u64,
    /// Publish requests (single or batch) in flight at once per client. Default 1024.
    pub inflight_max: usize,
    /// QUIC limits of the connection. A client's defaults differ from a node's in how
    /// soon it gives up on a silent node: keep-alives every 500 ms and an idle timeout of
    /// 2 s (the smaller of the client's and the node's applies). A node that was killed,
    /// stopped or cut off fails the requests waiting on it after 2 s, which the client
    /// retries at another member, instead of after the request timeout.
    pub transport: TransportLimits,
}

impl ClientConfig {
    /// Settings with defaults for everything but the servers and the CA file.
    pub fn new(servers: Vec<String>, ca: PathBuf) -> ClientConfig {
        ClientConfig {
            servers,
            ca,
            server_name: "localhost".to_string(),
            client_name: "tern-client".to_string(),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 30_000,
            publish_attempts_max: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
            inflight_max: 1024,
            transport: TransportLimits {
                idle_timeout_ms: 2_000,
                keep_alive_ms: 500,
                ..TransportLimits::default()
            },
        }
    }

    /// Refuse settings the client cannot work with.
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: &str| Err(ClientError::Config(what.to_string()));
        if self.servers.is_empty() {
            return bad("servers is empty");
        }
        if self.servers.iter().any(|s| s.trim().is_empty()) {
            return bad("servers holds an empty address");
        }
        if self.server_name.is_empty() {
            return bad("server_name is empty");
        }
        if self.client_name.len() > NAME_BYTES_MAX {
            return bad("client_name is longer than 1024 bytes");
        }
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return bad("timeouts must be above 0 ms");
        }
        let t = &self.transport;
        if t.keep_alive_ms == 0 || t.keep_alive_ms >= t.idle_timeout_ms {
            return bad("transport.keep_alive_ms must be above 0 and below idle_timeout_ms");
        }
        if self.publish_attempts_max == 0 {
            return bad("publish_attempts_max must be at least 1");
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return bad("backoff_initial_ms exceeds backoff_max_ms");
        }
        if self.inflight_max == 0 || self.inflight_max > tokio::sync::Semaphore::MAX_PERMITS {
            return bad("inflight_max must be at least 1 (and below the semaphore limit)");
        }
        Ok(())
    }
}

/// What a [`crate::Client::subscribe`] call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Subject filter (wildcards allowed); selects the stream bound to it.
    pub subject: String,
    /// Consumer group; `None` subscribes ephemerally (no acks, no redelivery).
    pub group: Option<String>,
    /// Where a new ephemeral subscription or a new group starts.
    pub start: StartPosition,
    /// Deliveries the node may push before the application has taken them. Default 1000.
    pub window: u32,
    /// Redelivery after this long without an ack; 0 = node default. Groups only.
    pub ack_wait_ms: u32,
    /// Deliveries before a message is dead-lettered; 0 = node default. Groups only.
    pub max_deliveries: u32,
}

impl SubscribeOptions {
    /// An ephemeral subscription from the start of the stream with a window of 1000.
    pub fn new(subject: impl Into<String>) -> SubscribeOptions {
        SubscribeOptions {
            subject: subject.into(),
            group: None,
            start: StartPosition::Start,
            window: 1000,
            ack_wait_ms: 0,
            max_deliveries: 0,
        }
    }

    /// The same options as a member of consumer group `group`.
    pub fn group(mut self, group: impl Into<String>) -> SubscribeOptions {
        self.group = Some(group.into());
        self
    }

    /// The same options starting at `start`.
    pub fn start(mut self, start: StartPosition) -> SubscribeOptions {
        self.start = start;
        self
    }

    /// The same options with a credit window of `window` deliveries.
    pub fn window(mut self, window: u32) -> SubscribeOptions {
        self.window = window;
        self
    }

    /// Refuse options the node would reject at the frame level.
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: &str| Err(ClientError::Invalid(what.to_string()));
        if self.subject.is_empty() || self.subject.len() > NAME_BYTES_MAX {
            return bad("subject must be 1..=1024 bytes");
        }
        if self
            .group
            .as_ref()
            .is_some_and(|g| g.is_empty() || g.len() > NAME_BYTES_MAX)
        {
            return bad("group must be 1..=1024 bytes");
        }
        if self.window == 0 {
            return bad("window must be at least 1");
        }
        Ok(())
    }
}

impl Default for SubscribeOptions {
    /// The defaults of [`SubscribeOptions::new`] with an empty subject (set one before use).
    fn default() -> Self {
        SubscribeOptions::new(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = ClientConfig::new(vec!["127.0.0.1:7420".into()], "ca.pem".into());
        assert_eq!(c.server_name, "localhost");
        assert_eq!(c.connect_timeout_ms, 2_000);
        assert_eq!(c.transport.idle_timeout_ms, 2_000);
        assert_eq!(c.transport.keep_alive_ms, 500);
        assert_eq!(c.request_timeout_ms, 30_000);
        assert_eq!(c.publish_attempts_max, 5);
        assert_eq!(c.backoff_initial_ms, 100);
        assert_eq!(c.backoff_max_ms, 5_000);
        assert_eq!(c.inflight_max, 1024);
        assert!(c.validate().is_ok());
        let s = SubscribeOptions::new("orders.>");
        assert_eq!(s.window, 1000);
        assert_eq!(s.group, None);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn invalid_settings_are_refused() {
        let ok = ClientConfig::new(vec!["127.0.0.1:7420".into()], "ca.pem".into());
        let mut c = ok.clone();
        c.servers.clear();
        assert!(matches!(c.validate(), Err(ClientError::Config(_))));
        let mut c = ok.clone();
        c.publish_attempts_max = 0;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.transport.keep_alive_ms = c.transport.idle_timeout_ms;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.inflight_max = 0;
        assert!(c.validate().is_err());
        let mut c = ok;
        c.backoff_initial_ms = 10_000;
        assert!(c.validate().is_err());
        assert!(SubscribeOptions::new("a").window(0).validate().is_err());
        assert!(SubscribeOptions::new("").validate().is_err());
        assert!(SubscribeOptions::new("a").group("").validate().is_err());
    }
}
