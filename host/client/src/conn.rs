//! The shared connection: one QUIC connection (plus its request channel) to one node,
//! re-established on failure, rotating through the configured servers.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_net::{FrameReader, FrameWriter, NetError};
use tern_proto::limits::FRAME_BYTES_MAX;
use tern_proto::{Frame, PROTOCOL_VERSION};

use crate::error::{dup_client_error, io_error, ClientError};
use crate::lock;
use crate::request::RequestChannel;
use crate::ClientConfig;

/// QUIC application close code for an orderly close.
const CLOSE_NORMAL: u32 = 0;
/// Least time between two moves to another server on `not_leader` answers that name no
/// leader (the region is electing one).
const ROTATE_EVERY: Duration = Duration::from_millis(500);

/// An established connection with its request channel.
pub(crate) struct Live {
    /// The QUIC connection; subscriptions open their own streams on it.
    pub(crate) conn: quinn::Connection,
    /// The pipelined request stream.
    pub(crate) requests: RequestChannel,
    /// Index into `ClientConfig::servers` of the node connected to.
    server_index: usize,
}

impl Live {
    /// Whether both the connection and its request stream still work.
    fn healthy(&self) -> bool {
        self.conn.close_reason().is_none() && !self.requests.is_failed()
    }
}

/// Lazily bound client endpoints, one per address family.
#[derive(Default)]
struct Endpoints {
    v4: Option<quinn::Endpoint>,
    v6: Option<quinn::Endpoint>,
}

/// Owns the current connection and replaces it when it fails.
pub(crate) struct ConnHolder {
    cfg: Arc<ClientConfig>,
    quic: quinn::ClientConfig,
    endpoints: Mutex<Endpoints>,
    /// The connection in use; `None` before the first connect, after close, or after failure.
    current: Mutex<Option<Arc<Live>>>,
    /// Serializes (re)connecting so that concurrent failures cause one reconnect.
    connecting: tokio::sync::Mutex<()>,
    /// Connect attempts completed (under `connecting`), so that callers who waited for an
    /// attempt can tell that it happened.
    connect_attempts: AtomicU64,
    /// How the last completed connect attempt failed; `None` when it succeeded.
    last_failure: Mutex<Option<ClientError>>,
    /// Server to try first on the next connect.
    next_server: AtomicUsize,
    closed: AtomicBool,
    next_req_id: AtomicU64,
    /// Largest payload the connected node accepts (from `HelloOk`); 0 until known.
    message_bytes_max: AtomicU32,
    /// When a `not_leader` answer without a leader last moved the client on.
    rotated_at: Mutex<Option<std::time::Instant>>,
}

impl ConnHolder {
    pub(crate) fn new(cfg: Arc<ClientConfig>, quic: quinn::ClientConfig) -> ConnHolder {
        ConnHolder {
            cfg,
            quic,
            endpoints: Mutex::new(Endpoints::default()),
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            connect_attempts: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            next_server: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            next_req_id: AtomicU64::new(1),
            rotated_at: Mutex::new(None),
            message_bytes_max: AtomicU32::new(0),
        }
    }

    /// A request id unique for the lifetime of the client.
    pub(crate) fn next_req_id(&self) -> u64 {
        self.next_req_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Payload limit announced by the last node connected to; 0 when not known yet.
    pub(crate) fn message_bytes_max(&self) -> u32 {
        self.message_bytes_max.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The working connection, connecting (once, for all concurrent callers) when there is none.
    pub(crate) async fn get(&self) -> Result<Arc<Live>, ClientError> {
        if self.is_closed() {
            return Err(ClientError::Closed);
        }
        if let Some(live) = lock(&self.current).as_ref().filter(|l| l.healthy()) {
            return Ok(live.clone());
        }
        let attempts_seen = self.connect_attempts.load(Ordering::Acquire);
        let _guard = self.connecting.lock().await;
        if self.is_closed() {
            return Err(ClientError::Closed);
        }
        let stale = {
            let mut cur = lock(&self.current);
            if let Some(live) = cur.as_ref().filter(|l| l.healthy()) {
                return Ok(live.clone());
            }
            cur.take()
        };
        if self.connect_attempts.load(Ordering::Acquire) != attempts_seen {
            // An attempt ran while this caller waited for it; share its failure instead of
            // making every waiter wait out a connect timeout of its own, one after another.
            if let Some(e) = lock(&self.last_failure).as_ref() {
                return Err(dup_client_error(e));
            }
        }
        if let Some(stale) = stale {
            // Start with another node: this one just failed us.
            stale.conn.close(CLOSE_NORMAL.into(), b"reconnecting");
            self.next_server.store(
                (stale.server_index + 1) % self.cfg.servers.len(),
                Ordering::Relaxed,
            );
        }
        let res = self.connect_any().await;
        *lock(&self.last_failure) = res.as_ref().err().map(dup_client_error);
        self.connect_attempts.fetch_add(1, Ordering::Release);
        let live = res?;
        if self.is_closed() {
            live.conn.close(CLOSE_NORMAL.into(), b"client closed");
            return Err(ClientError::Closed);
        }
        *lock(&self.current) = Some(live.clone());
        Ok(live)
    }

    /// A node answered `not_leader`: the next request goes to the leader it named (the
    /// configured server with that address), or, when it named none, to the next server,
    /// at most once per [`ROTATE_EVERY`] so a burst of refusals moves the client once.
    pub(crate) fn redirect(&self, leader: &str) {
        let n = self.cfg.servers.len();
        let mut cur = lock(&self.current);
        let Some(live) = cur.as_ref() else { return };
        let named = self.cfg.servers.iter().position(|s| s == leader);
        let target = match named {
            Some(i) if i == live.server_index => return,
            Some(i) => i,
            None => {
                let mut at = lock(&self.rotated_at);
                if at.is_some_and(|t| t.elapsed() < ROTATE_EVERY) {
                    return;
                }
                *at = Some(std::time::Instant::now());
                (live.server_index + 1) % n
            }
        };
        if let Some(live) = cur.take() {
            tracing::debug!(to = %self.cfg.servers[target], "not the leader; moving");
            live.conn
                .close(CLOSE_NORMAL.into(), b"moving to the region leader");
        }
        self.next_server.store(target, Ordering::Relaxed);
    }

    /// Try every server once, starting at `next_server`; the error is the last one seen.
    async fn connect_any(&self) -> Result<Arc<Live>, ClientError> {
        let n = self.cfg.servers.len();
        let first = self.next_server.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let index = (first + k) % n;
            match self.connect_one(index).await {
                Ok(live) => {
                    self.next_server.store(index, Ordering::Relaxed);
                    return Ok(live);
                }
                Err(e) => {
                    tracing::warn!(server = %self.cfg.servers[index], error = %e, "connect failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Config("servers is empty".into())))
    }

    /// Resolve, handshake and exchange `Hello` with server `index`, within the connect timeout.
    async fn connect_one(&self, index: usize) -> Result<Arc<Live>, ClientError> {
        let server = &self.cfg.servers[index];
        let limit = Duration::from_millis(self.cfg.connect_timeout_ms);
        match tokio::time::timeout(limit, self.dial(index)).await {
            Ok(res) => res,
            Err(_) => Err(ClientError::Connect {
                server: server.clone(),
                source: io_error(
                    ErrorKind::TimedOut,
                    format!("no session within {} ms", self.cfg.connect_timeout_ms),
                ),
            }),
        }
    }

    async fn dial(&self, index: usize) -> Result<Arc<Live>, ClientError> {
        let server = &self.cfg.servers[index];
        let wrap = |source: NetError| ClientError::Connect {
            server: server.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(server.as_str())
            .await
            .map_err(|e| wrap(e.into()))?
            .collect();
        let mut last = wrap(io_error(ErrorKind::NotFound, "address resolved to nothing"));
        for addr in addrs {
            match self.dial_addr(index, addr).await {
                Ok(live) => return Ok(live),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn dial_addr(&self, index: usize, addr: SocketAddr) -> Result<Arc<Live>, ClientError> {
        let wrap = |source: NetError| ClientError::Connect {
            server: self.cfg.servers[index].clone(),
            source,
        };
        let endpoint = self.endpoint_for(addr).map_err(|e| wrap(e.into()))?;
        let conn = endpoint
            .connect_with(self.quic.clone(), addr, &self.cfg.server_name)
            .map_err(|e| wrap(e.into()))?
            .await
            .map_err(|e| wrap(e.into()))?;
        match self.hello(&conn).await {
            Ok((reader, writer, message_bytes_max)) => {
                self.message_bytes_max
                    .store(message_bytes_max, Ordering::Relaxed);
                let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
                tracing::debug!(%addr, "connected");
                Ok(Arc::new(Live {
                    requests: RequestChannel::start(conn.clone(), reader, writer, timeout),
                    conn,
                    server_index: index,
                }))
            }
            Err(e) => {
                conn.close(CLOSE_NORMAL.into(), b"hello failed");
                Err(match e {
                    ClientError::Net(source) => wrap(source),
                    other => other,
                })
            }
        }
    }

    /// Open the request stream and exchange `Hello`/`HelloOk` on it.
    async fn hello(
        &self,
        conn: &quinn::Connection,
    ) -> Result<(FrameReader, FrameWriter, u32), ClientError> {
        let (send, recv) = conn.open_bi().await.map_err(NetError::from)?;
        let mut writer = FrameWriter::new(send);
        let mut reader = FrameReader::new(recv, FRAME_BYTES_MAX);
        writer
            .send(&Frame::Hello {
                version: PROTOCOL_VERSION,
                client: self.cfg.client_name.clone(),
            })
            .await?;
        match reader.next().await? {
            Some(Frame::HelloOk {
                version,
                message_bytes_max,
                node,
            }) => {
                if version != PROTOCOL_VERSION {
                    return Err(ClientError::Protocol(format!(
                        "node {node} answered Hello with version {version}"
                    )));
                }
                Ok((reader, writer, message_bytes_max))
            }
            Some(Frame::Error { error, .. }) => Err(ClientError::Server(error)),
            Some(other) => Err(ClientError::Protocol(format!(
                "expected HelloOk, got frame kind {:#04x}",
                other.kind()
            ))),
            None => Err(io_error(
                ErrorKind::UnexpectedEof,
                "node finished the stream before HelloOk",
            )
            .into()),
        }
    }

    /// The client endpoint for `addr`'s address family, bound on first use.
    fn endpoint_for(&self, addr: SocketAddr) -> std::io::Result<quinn::Endpoint> {
        let mut eps = lock(&self.endpoints);
        let (slot, bind) = if addr.is_ipv4() {
            (&mut eps.v4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        } else {
            (&mut eps.v6, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
        };
        if let Some(ep) = slot {
            return Ok(ep.clone());
        }
        let ep = tern_net::endpoint(bind, None, "client")?;
        *slot = Some(ep.clone());
        Ok(ep)
    }

    /// Refuse new work, let outstanding requests finish (at most `drain`), flush and finish
    /// the request stream, close the connection and wait until the close is sent.
    pub(crate) async fn close(&self, drain: Duration) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.connecting.lock().await;
        let live = lock(&self.current).take();
        let linger = Duration::from_millis(self.cfg.connect_timeout_ms);
        if let Some(live) = live {
            live.requests.wait_idle(drain).await;
            live.requests.finish(linger).await;
            live.conn.close(CLOSE_NORMAL.into(), b"client closed");
        }
        let endpoints: Vec<quinn::Endpoint> = {
            let eps = lock(&self.endpoints);
            eps.v4.iter().chain(eps.v6.iter()).cloned().collect()
        };
        for ep in endpoints {
            let _ = tokio::time::timeout(linger, ep.wait_idle()).await;
        }
    }
}

impl Drop for ConnHolder {
    fn drop(&mut self) {
        if let Some(live) = lock(&self.current).take() {
            live.conn.close(CLOSE_NORMAL.into(), b"client dropped");
        }
    }
}
