//! tern's QUIC transport: rustls configurations (TLS 1.3 only, fixed ALPN, 0-RTT off on
//! both sides), development certificates, endpoints on UDP sockets with large buffers, and
//! length-prefixed frame I/O on QUIC streams.

mod frames;
mod tls;
mod udp;

pub use frames::{FrameReader, FrameWriter};
pub use tls::{
    client_config, dev_certs, load_certs, load_key, region_client_certs, region_dev_certs,
    server_config, DevCerts, RegionCerts, TransportLimits,
};
pub use udp::{endpoint, UDP_BUFFER_BYTES};

/// Failures of the transport boundary.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// File or socket I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration was refused.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// A certificate could not be generated.
    #[error("certificate generation: {0}")]
    CertGen(#[from] rcgen::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{0}")]
    Pem(String),
    /// Reading from a QUIC stream failed.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// Writing to a QUIC stream failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Connecting failed before the handshake started.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The peer sent bytes that are not a valid frame.
    #[error("protocol: {0}")]
    Decode(#[from] tern_proto::DecodeError),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    TruncatedStream,
}
