//! The region transport over QUIC: one bidirectional stream per RPC, carrying one request
//! encoded in the [`crate::wire`] layout and, back, one reply. Nodes authenticate each
//! other with mutual TLS against the region's CA; ALPN `tern-region/1` keeps region
//! traffic apart from client traffic.
//!
//! Each node runs one endpoint: it accepts peers' connections (at most
//! [`REGION_CONNECTIONS_MAX`], each with at most [`REGION_STREAMS_PER_CONNECTION_MAX`]
//! requests open) and keeps one outgoing connection per peer, re-dialled when it fails.
//! Not done yet: binding a certificate to a node id (any certificate from the region CA may
//! speak for any node), certificate rotation, and revocation lists.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::limits::{REGION_CONNECTIONS_MAX, REGION_STREAMS_PER_CONNECTION_MAX, RPC_BYTES_MAX};
use crate::network::{serve, RaftReply, RaftRpc, Transport, TransportError};
use crate::{wire, NodeAddr, NodeId, Raft};

/// ALPN of region (node-to-node) traffic.
pub const REGION_ALPN: &[u8] = b"tern-region/1";
/// A peer connection with no traffic for this long is closed. Heartbeats keep live ones busy.
const IDLE_TIMEOUT_MS: u32 = 10_000;
/// Keep-alive on quiet connections, well under the idle timeout.
const KEEP_ALIVE_MS: u64 = 2_000;

/// The region's certificates as this node holds them.
pub struct RegionTls {
    /// CA certificates that sign every region node's certificate.
    pub ca: Vec<CertificateDer<'static>>,
    /// This node's certificate chain, signed by the region CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// This node's private key.
    pub key: PrivateKeyDer<'static>,
}

/// Why the QUIC endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// Binding the UDP socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// rustls refused the certificates or settings.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built (e.g. no usable CA).
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the TLS configuration.
    #[error("quic config: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(REGION_STREAMS_PER_CONNECTION_MAX.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(IDLE_TIMEOUT_MS).into()));
    t.keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_MS)));
    Arc::new(t)
}

fn configs(tls: &RegionTls) -> Result<(quinn::ServerConfig, quinn::ClientConfig), QuicError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in &tls.ca {
        roots.add(ca.clone())?;
    }
    let roots = Arc::new(roots);

    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build()?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())?;
    server.alpn_protocols = vec![REGION_ALPN.to_vec()];
    // Raft RPCs are not replay-safe: no 0-RTT, and no tickets that could enable it.
    server.max_early_data_size = 0;
    server.send_tls13_tickets = 0;
    let server =
        QuicServerConfig::try_from(server).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport_config());
    server.migration(false);

    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())?;
    client.alpn_protocols = vec![REGION_ALPN.to_vec()];
    client.enable_early_data = false;
    let client =
        QuicClientConfig::try_from(client).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport_config());
    Ok((server, client))
}

/// A node's region endpoint: the [`Transport`] its Raft sends with, and the server that
/// hands peers' requests to its Raft ([`QuicTransport::serve`]).
pub struct QuicTransport {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    /// One outgoing connection per peer.
    peers: Mutex<BTreeMap<NodeId, quinn::Connection>>,
}

impl QuicTransport {
    /// Binds the node's region endpoint on `addr` (port 0 picks a free port).
    pub fn bind(addr: SocketAddr, tls: &RegionTls) -> Result<QuicTransport, QuicError> {
        let (server, client) = configs(tls)?;
        let endpoint = quinn::Endpoint::server(server, addr)?;
        Ok(QuicTransport {
            endpoint,
            client,
            peers: Mutex::new(BTreeMap::new()),
        })
    }

    /// The address peers reach this node at.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves peers' requests to `raft` until [`QuicTransport::close`].
    pub fn serve(&self, raft: Raft) -> JoinHandle<()> {
        let endpoint = self.endpoint.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(REGION_CONNECTIONS_MAX));
            while let Some(incoming) = endpoint.accept().await {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    incoming.refuse();
                    continue;
                };
                let raft = raft.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match incoming.await {
                        Ok(conn) => serve_connection(conn, raft).await,
                        Err(e) => tracing::debug!(error = %e, "region handshake failed"),
                    }
                });
            }
        })
    }

    /// Closes the endpoint: every connection, both ways.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"node stopping");
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, quinn::Connection>> {
        // Never held across an await or a call that can panic.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live connection to `to`, dialling `addr` if there is none.
    async fn connection(
        &self,
        to: NodeId,
        addr: &NodeAddr,
    ) -> Result<quinn::Connection, TransportError> {
        if let Some(c) = self.lock_peers().get(&to) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let (sock, name) = resolve(&addr.quic_addr)
            .await
            .ok_or(TransportError::Unreachable(to))?;
        let conn = self
            .endpoint
            .connect_with(self.client.clone(), sock, &name)
            .map_err(|_| TransportError::Unreachable(to))?
            .await
            .map_err(|_| TransportError::Unreachable(to))?;
        self.lock_peers().insert(to, conn.clone());
        Ok(conn)
    }
}

/// `host:port` to a socket address and the TLS server name (the host).
async fn resolve(quic_addr: &str) -> Option<(SocketAddr, String)> {
    let (host, _) = quic_addr.rsplit_once(':')?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let sock = tokio::net::lookup_host(quic_addr).await.ok()?.next()?;
    Some((sock, host))
}

async fn serve_connection(conn: quinn::Connection, raft: Raft) {
    // quinn caps open streams per connection (REGION_STREAMS_PER_CONNECTION_MAX).
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let raft = raft.clone();
        tokio::spawn(async move {
            let Ok(bytes) = recv.read_to_end(RPC_BYTES_MAX).await else {
                return;
            };
            let reply = match wire::decode_rpc(&bytes) {
                Ok(rpc) => serve(&raft, rpc).await,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed region request");
                    let _ = send.reset(1u32.into());
                    return;
                }
            };
            match wire::encode_reply(&reply) {
                Ok(b) => {
                    if send.write_all(&b).await.is_ok() {
                        let _ = send.finish();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "region reply does not encode"),
            }
        });
    }
}

impl Transport for QuicTransport {
    async fn call(
        &self,
        _from: NodeId,
        to: NodeId,
        addr: &NodeAddr,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        let request = wire::encode_rpc(&rpc).map_err(|e| TransportError::Codec {
            peer: to,
            reason: e.to_string(),
        })?;
        let conn = self.connection(to, addr).await?;
        let lost = |_| TransportError::Lost(to);
        let (mut send, mut recv) = conn.open_bi().await.map_err(|_| {
            // The connection is gone; dial afresh next time.
            self.lock_peers().remove(&to);
            TransportError::Lost(to)
        })?;
        send.write_all(&request).await.map_err(lost)?;
        send.finish().map_err(|_| TransportError::Lost(to))?;
        let reply = recv
            .read_to_end(RPC_BYTES_MAX)
            .await
            .map_err(|_| TransportError::Lost(to))?;
        wire::decode_reply(&reply).map_err(|e| TransportError::Codec {
            peer: to,
            reason: e.to_string(),
        })
    }
}
