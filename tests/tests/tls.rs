//! TLS on real QUIC: a node serving a configured certificate is reachable by clients that
//! trust its CA; clients that trust another CA, offer another ALPN, or try to send 0-RTT
//! data get nothing; a node with a development certificate keeps the same CA across
//! restarts so clients keep trusting it.

use std::sync::Arc;

use tern_client::{Client, ClientConfig, ClientError};
use tern_tests::TestNode;

#[tokio::test]
async fn configured_certificate_and_trust() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = tern_net::dev_certs(certs_dir.path()).unwrap();
    let node = TestNode::start_with(|c| {
        c.tls.cert = Some(certs.cert.clone());
        c.tls.key = Some(certs.key.clone());
    })
    .await;
    assert!(
        node.node().dev_ca().is_none(),
        "no development CA with a configured certificate"
    );
    assert!(!node.ca().exists(), "no development CA is written");

    let client = Client::connect(ClientConfig::new(vec![node.addr()], certs.ca.clone()))
        .await
        .expect("a client trusting the CA connects");
    client.list_streams().await.unwrap();
    client.close().await;

    let other_dir = tempfile::tempdir().unwrap();
    let other = tern_net::dev_certs(other_dir.path()).unwrap();
    let mut cfg = ClientConfig::new(vec![node.addr()], other.ca.clone());
    cfg.connect_timeout_ms = 2_000;
    match Client::connect(cfg).await {
        Err(ClientError::Connect { .. }) => {}
        other => panic!("a client trusting another CA must not connect: {other:?}"),
    }
    node.stop().await;
}

fn raw_tls(ca: &std::path::Path, alpn: &[u8], early_data: bool) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in tern_net::load_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.enable_early_data = early_data;
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ))
}

#[tokio::test]
async fn wrong_alpn_is_refused_and_zero_rtt_is_never_accepted() {
    let node = TestNode::start().await;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = node.node().local_addr();

    ep.set_default_client_config(raw_tls(&node.ca(), b"h3", false));
    let r = ep.connect(addr, "localhost").unwrap().await;
    assert!(r.is_err(), "a handshake without the tern ALPN fails");

    // With early data enabled on the client, a second connection still cannot use 0-RTT:
    // the node issues no session tickets and accepts no early data.
    ep.set_default_client_config(raw_tls(&node.ca(), tern_proto::ALPN, true));
    let first = ep.connect(addr, "localhost").unwrap().await.unwrap();
    first.close(0u32.into(), b"done");
    let connecting = ep.connect(addr, "localhost").unwrap();
    match connecting.into_0rtt() {
        Err(connecting) => {
            connecting.await.expect("a full handshake still works");
        }
        Ok(_) => panic!("0-RTT must not be available"),
    }
    node.stop().await;
}

#[tokio::test]
async fn development_ca_survives_restart() {
    let mut node = TestNode::start().await;
    let before = std::fs::read(node.ca()).unwrap();
    node.restart().await;
    assert_eq!(
        std::fs::read(node.ca()).unwrap(),
        before,
        "the CA is kept, not regenerated"
    );
    let client = node.client().await;
    client.list_streams().await.unwrap();
    client.close().await;
    node.stop().await;
}
