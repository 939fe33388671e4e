//! TLS for QUIC: TLS 1.3 only, ALPN `tern/1`, no 0-RTT, no session tickets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::NetError;

/// QUIC limits applied to every connection.
#[derive(Debug, Clone)]
pub struct TransportLimits {
    /// Concurrent bidirectional streams a peer may open. Default 64.
    pub streams_per_connection_max: u32,
    /// A connection with no traffic for this long is closed. Default 30 s.
    pub idle_timeout_ms: u32,
    /// Keep-alive interval, below the idle timeout. Default 5 s.
    pub keep_alive_ms: u32,
    /// Per-stream receive window. Default 8 MiB.
    pub stream_window_bytes: u32,
    /// Per-connection receive window. Default 32 MiB.
    pub connection_window_bytes: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            streams_per_connection_max: 64,
            idle_timeout_ms: 30_000,
            keep_alive_ms: 5_000,
            stream_window_bytes: 8 * 1024 * 1024,
            connection_window_bytes: 32 * 1024 * 1024,
        }
    }
}

fn transport(l: &TransportLimits) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(l.streams_per_connection_max.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_millis(l.idle_timeout_ms.into()))
            .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))),
    ));
    t.keep_alive_interval(Some(Duration::from_millis(l.keep_alive_ms.into())));
    t.stream_receive_window(l.stream_window_bytes.into());
    t.receive_window(l.connection_window_bytes.into());
    t.send_window(u64::from(l.connection_window_bytes));
    Arc::new(t)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A QUIC server configuration from a certificate chain and key.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    limits: &TransportLimits,
) -> Result<quinn::ServerConfig, NetError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![tern_proto::ALPN.to_vec()];
    // Publishes are not replay-safe: no 0-RTT, and no tickets that could enable it.
    tls.max_early_data_size = 0;
    tls.send_tls13_tickets = 0;
    let quic = QuicServerConfig::try_from(tls)
        .map_err(|e| NetError::Pem(format!("quic server config: {e}")))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport(limits));
    cfg.migration(false);
    Ok(cfg)
}

/// A QUIC client configuration trusting the CA certificates in `ca_pem`.
pub fn client_config(
    ca_pem: &Path,
    limits: &TransportLimits,
) -> Result<quinn::ClientConfig, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca_pem)? {
        roots.add(cert)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![tern_proto::ALPN.to_vec()];
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls)
        .map_err(|e| NetError::Pem(format!("quic client config: {e}")))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport(limits));
    Ok(cfg)
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let pem = std::fs::read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(NetError::Pem(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, NetError> {
    let pem = std::fs::read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())?
        .ok_or_else(|| NetError::Pem(format!("{}: no private key found", path.display())))
}

/// Paths of the development CA and the node certificate it signed.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate clients must be told to trust.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Generate, on first use, a development CA and a certificate for `localhost`,
/// `127.0.0.1` and `::1` signed by it, under `dir`; later calls reuse them.
pub fn dev_certs(dir: &Path) -> Result<DevCerts, NetError> {
    let out = DevCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    };
    if out.ca.exists() && out.cert.exists() && out.key.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(dir)?;
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_params = ca_params("tern development CA")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let (node_cert, node_key) = loopback_cert("tern node", &issuer)?;
    // Write the key first and the CA last: a crash in between leaves no CA, so the next
    // start regenerates everything instead of trusting a half-written set.
    write_private(&out.key, node_key.serialize_pem().as_bytes())?;
    std::fs::write(&out.cert, node_cert.pem())?;
    std::fs::write(&out.ca, ca_cert.pem())?;
    Ok(out)
}

fn ca_params(name: &str) -> Result<rcgen::CertificateParams, NetError> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok(p)
}

/// A certificate for `localhost`, `127.0.0.1` and `::1`, signed by `issuer`.
fn loopback_cert(
    name: &str,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> Result<(rcgen::Certificate, rcgen::KeyPair), NetError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    for ip in ["127.0.0.1", "::1"] {
        let ip = ip.parse().map_err(|_| NetError::Pem("ip".into()))?;
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    Ok((params.signed_by(&key, issuer)?, key))
}

const REGION_CA_NAME: &str = "tern development region CA";

/// The certificates a node speaks to its region peers with (mutual TLS).
pub struct RegionCerts {
    /// The region CA, which every peer's certificate must chain to.
    pub ca: Vec<CertificateDer<'static>>,
    /// This node's certificate.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Development region certificates: a region CA kept in `ca_dir/region-ca.pem` (made by
/// the first node of the region to start, and shared by every node given the same
/// directory), and a fresh loopback certificate for this node signed by it.
///
/// The CA file holds the CA's private key: this is for a region on one machine (tests,
/// trying tern out). A real region uses certificates from the operator's own CA.
pub fn region_dev_certs(ca_dir: &Path) -> Result<RegionCerts, NetError> {
    let (ca, _, issuer) = region_ca(ca_dir)?;
    let (cert, key) = loopback_cert("tern region node", &issuer)?;
    Ok(RegionCerts {
        ca,
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| NetError::Pem(format!("region key: {e}")))?,
    })
}

/// Development client-facing certificates for a node of a region: like [`dev_certs`], but
/// signed by the region CA of `ca_dir`, so one CA file (`data_dir/ca.pem`, the region CA
/// certificate) lets clients trust every node of the region.
pub fn region_client_certs(ca_dir: &Path, data_dir: &Path) -> Result<DevCerts, NetError> {
    let (_, ca_pem, issuer) = region_ca(ca_dir)?;
    std::fs::create_dir_all(data_dir)?;
    let out = DevCerts {
        ca: data_dir.join("ca.pem"),
        cert: data_dir.join("node.pem"),
        key: data_dir.join("node.key"),
    };
    let (cert, key) = loopback_cert("tern node", &issuer)?;
    write_private(&out.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&out.cert, cert.pem())?;
    std::fs::write(&out.ca, ca_pem)?;
    Ok(out)
}

/// The region CA certificate, its PEM text, and an issuer, from `ca_dir/region-ca.pem`
/// (made on first use).
type RegionCa = (
    Vec<CertificateDer<'static>>,
    String,
    rcgen::Issuer<'static, rcgen::KeyPair>,
);

fn region_ca(ca_dir: &Path) -> Result<RegionCa, NetError> {
    std::fs::create_dir_all(ca_dir)?;
    let path = ca_dir.join("region-ca.pem");
    if !path.exists() {
        let key = rcgen::KeyPair::generate()?;
        let cert = ca_params(REGION_CA_NAME)?.self_signed(&key)?;
        static TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = ca_dir.join(format!(".region-ca.{}.{n}.tmp", std::process::id()));
        write_private(
            &tmp,
            format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes(),
        )?;
        std::fs::File::open(&tmp)?.sync_all()?;
        // Nodes of a region may start together: the first link wins, the others use it.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    let pem = std::fs::read_to_string(&path)?;
    let key_at = pem
        .find("-----BEGIN PRIVATE KEY-----")
        .ok_or_else(|| NetError::Pem(format!("{}: no private key", path.display())))?;
    let key = rcgen::KeyPair::from_pem(&pem[key_at..])?;
    // The same parameters the CA certificate was made from: same subject, same key.
    let issuer = rcgen::Issuer::new(ca_params(REGION_CA_NAME)?, key);
    Ok((load_certs(&path)?, pem[..key_at].to_owned(), issuer))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}
