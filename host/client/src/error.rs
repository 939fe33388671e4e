//! The client's error type.

use tern_net::NetError;
use tern_proto::ErrorBody;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection to `server` could be established (resolution, handshake or timeout).
    #[error("connect to {server}: {source}")]
    Connect {
        /// The address that was tried last.
        server: String,
        /// What went wrong with it.
        #[source]
        source: NetError,
    },
    /// The transport failed: connection lost, stream reset, undecodable frame, CA file unreadable.
    #[error("transport: {0}")]
    Net(#[from] NetError),
    /// The node refused the request: a non-retryable error, or a retryable one that
    /// persisted through every attempt.
    #[error("node error {}: {}", .0.code, .0.message)]
    Server(ErrorBody),
    /// An attempt got no answer within `request_timeout_ms` (after the last retry).
    #[error("request timed out")]
    Timeout,
    /// The client (or the subscription) was closed.
    #[error("client closed")]
    Closed,
    /// The node sent a frame this client did not expect.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The client configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The request is invalid before it is sent (too large, too many messages, bad name).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ClientError {
    /// Whether retrying the same request (same message ids) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout => true,
            ClientError::Net(e) => !matches!(
                e,
                NetError::Tls(_) | NetError::Pem(_) | NetError::CertGen(_)
            ),
            ClientError::Server(e) => e.code.is_retryable(),
            ClientError::Closed
            | ClientError::Protocol(_)
            | ClientError::Config(_)
            | ClientError::Invalid(_) => false,
        }
    }
}

/// A copy of `e` for each of several waiters failed by the same cause.
/// `std::io::Error` and `rcgen::Error` are not `Clone`, so they are rebuilt from kind and text.
pub(crate) fn dup_net_error(e: &NetError) -> NetError {
    match e {
        NetError::Io(e) => NetError::Io(std::io::Error::new(e.kind(), e.to_string())),
        NetError::Tls(e) => NetError::Tls(e.clone()),
        NetError::Read(e) => NetError::Read(e.clone()),
        NetError::Write(e) => NetError::Write(e.clone()),
        NetError::Connection(e) => NetError::Connection(e.clone()),
        NetError::Connect(e) => NetError::Connect(e.clone()),
        NetError::Decode(e) => NetError::Decode(e.clone()),
        NetError::TruncatedStream => NetError::TruncatedStream,
        other => NetError::Pem(other.to_string()),
    }
}

/// A copy of `e` for each caller failed by the same connect attempt.
pub(crate) fn dup_client_error(e: &ClientError) -> ClientError {
    match e {
        ClientError::Connect { server, source } => ClientError::Connect {
            server: server.clone(),
            source: dup_net_error(source),
        },
        ClientError::Net(e) => ClientError::Net(dup_net_error(e)),
        ClientError::Server(b) => ClientError::Server(b.clone()),
        ClientError::Timeout => ClientError::Timeout,
        ClientError::Closed => ClientError::Closed,
        ClientError::Protocol(s) => ClientError::Protocol(s.clone()),
        ClientError::Config(s) => ClientError::Config(s.clone()),
        ClientError::Invalid(s) => ClientError::Invalid(s.clone()),
    }
}

/// An I/O-kind transport error with a fixed explanation.
pub(crate) fn io_error(kind: std::io::ErrorKind, what: impl Into<String>) -> NetError {
    NetError::Io(std::io::Error::new(kind, what.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_proto::ErrorCode;

    #[test]
    fn retryable_classification() {
        let server = |code| {
            ClientError::Server(ErrorBody {
                code,
                message: String::new(),
            })
        };
        assert!(server(ErrorCode::Busy).is_retryable());
        assert!(server(ErrorCode::ShuttingDown).is_retryable());
        assert!(!server(ErrorCode::NoStream).is_retryable());
        assert!(ClientError::Timeout.is_retryable());
        assert!(ClientError::Net(NetError::TruncatedStream).is_retryable());
        assert!(!ClientError::Net(NetError::Pem("x".into())).is_retryable());
        assert!(!ClientError::Closed.is_retryable());
        assert!(!ClientError::Protocol("x".into()).is_retryable());
    }

    #[test]
    fn duplicated_errors_keep_kind_and_text() {
        let e = io_error(std::io::ErrorKind::UnexpectedEof, "gone");
        let d = dup_net_error(&e);
        assert_eq!(e.to_string(), d.to_string());
        match d {
            NetError::Io(io) => assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof),
            other => panic!("unexpected {other:?}"),
        }
    }
}
