//! UDP sockets for QUIC endpoints, with buffers sized for bursts of full packets.

use std::net::SocketAddr;
use std::sync::Arc;

/// Receive and send buffer asked for on every endpoint's socket. Linux's default (about
/// 208 KiB) overflows when a burst of full-size packets arrives faster than the runtime
/// reads them: each drop (`RcvbufErrors` in /proc/net/snmp) costs QUIC a loss recovery,
/// and a tail loss waits for a probe timeout. The kernel caps the request at
/// `net.core.rmem_max` / `net.core.wmem_max`.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Bind a UDP socket on `addr` and ask for [`UDP_BUFFER_BYTES`] of buffer each way.
/// Returns the socket and the receive buffer the kernel granted.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, usize)> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let s = socket2::SockRef::from(&socket);
    // Best effort: a smaller buffer still works, it only drops sooner under bursts.
    let _ = s.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = s.set_send_buffer_size(UDP_BUFFER_BYTES);
    let granted = s.recv_buffer_size().unwrap_or(0);
    Ok((socket, granted))
}

/// A QUIC endpoint on `addr` (accepting connections when `server` is given) whose socket
/// has the buffers of [`bind_udp`]. A receive buffer below the request is logged with
/// `what` naming the endpoint.
pub fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    what: &str,
) -> std::io::Result<quinn::Endpoint> {
    let (socket, granted) = bind_udp(addr)?;
    // Linux reports twice what it grants (the doubling covers its bookkeeping). Said once
    // per listening endpoint; a client would repeat it on every command.
    if granted < UDP_BUFFER_BYTES {
        let msg = "UDP receive buffer smaller than asked; raise net.core.rmem_max to allow it";
        match server {
            Some(_) => tracing::info!(endpoint = what, granted, asked = UDP_BUFFER_BYTES, "{msg}"),
            None => tracing::debug!(endpoint = what, granted, asked = UDP_BUFFER_BYTES, "{msg}"),
        }
    }
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn sockets_get_the_buffer_the_kernel_allows() {
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .expect("rmem_max")
            .trim()
            .parse()
            .expect("a number");
        let (socket, granted) = bind_udp("127.0.0.1:0".parse().unwrap()).expect("bind");
        // Linux grants min(request, rmem_max) and reports twice that.
        assert_eq!(granted, 2 * UDP_BUFFER_BYTES.min(rmem_max));
        assert!(socket.local_addr().unwrap().port() != 0);
    }
}
