//! The Kafka sink over mutual TLS. tansu speaks plaintext, so a TLS front end in this test
//! (rustls, a CA, server and client certificates made for the run) terminates TLS on the port
//! the broker advertises, asks for a client certificate, and relays to the broker. Events sent
//! with the CA and the client certificate arrive; a sink that does not trust the CA delivers
//! nothing, says why, and when stopped keeps the event in its spool for the next run.

#[path = "support/common.rs"]
mod common;
#[path = "support/kafka.rs"]
mod kafka;

use std::{sync::Arc, time::Duration};

use common::{exec_event, free_port, wait_for, Dir};
use kafka::{client_with_topic, consume, start_broker};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use vigil_exporters::{config::ExportersConfig, sinks::kafka::KafkaTls, Exporters};

/// A CA, and the server's and the client's certificates it signed, as PEM files in `dir`.
fn make_pki(dir: &Dir) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vigil test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, sans) in [
        ("server", vec!["127.0.0.1".to_string(), "localhost".into()]),
        ("client", vec!["vigil-agent".to_string()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(sans)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// Terminates TLS on `listener` (client certificate required) and relays to the broker.
async fn tls_front(dir: &Dir, listener: TcpListener, broker: u16) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // a client that does not trust us, or has no certificate
                };
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", broker)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
}

fn exporters(dir: &Dir, port: u16, tls: &str) -> Exporters {
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: kafka\n  type: kafka\n  brokers: ['127.0.0.1:{port}']\n  topic: vigil\n  linger_ms: 20\n  timeout_secs: 1\n  tls: {tls}\n",
        dir.join("spool").display()
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    ex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_broker_over_mutual_tls_and_an_unknown_ca_is_refused() {
    let dir = Dir::new("kafka-tls");
    make_pki(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    let broker_port = free_port();
    let _broker = start_broker(broker_port, tls_port);
    tls_front(&dir, listener, broker_port).await;

    let files = format!(
        "{{ca_file: {}, cert_file: {}, key_file: {}}}",
        dir.join("ca.pem").display(),
        dir.join("client.pem").display(),
        dir.join("client.key").display()
    );
    let tls: KafkaTls = serde_yaml::from_str(&files).unwrap();
    let client = client_with_topic(tls_port, Some(Arc::new(tls.client_config().unwrap()))).await;

    // Public roots only: the broker's certificate is not trusted, nothing is delivered.
    let mut untrusting = exporters(&dir, tls_port, "{}");
    untrusting.submit(&exec_event(
        "exec-0",
        1,
        "/usr/bin/true",
        "untrusted".into(),
    ));
    let retried = wait_for(
        || untrusting.stats()["kafka"]["retries"].as_u64().unwrap() > 0,
        20,
    )
    .await;
    let stats = untrusting.stats();
    untrusting.shutdown(Duration::from_millis(100)).await;
    assert!(retried, "{stats}");
    assert_eq!(stats["kafka"]["delivered"], 0, "{stats}");

    let mut ex = exporters(&dir, tls_port, &files);
    for n in 0..100 {
        ex.submit(&exec_event(
            &format!("exec-{}", n % 5),
            n,
            "/usr/bin/true",
            format!("tls-{n}"),
        ));
    }
    let delivered = wait_for(
        || ex.stats()["kafka"]["delivered"].as_u64().unwrap() >= 100,
        30,
    )
    .await;
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;
    assert!(delivered, "{stats}");
    let args: Vec<String> = consume(&client)
        .await
        .into_values()
        .flatten()
        .map(|(_, a)| a)
        .collect();
    // The event the untrusting sink still held when it was stopped was spooled, and the next
    // sink with the same name and spool delivered it first.
    assert_eq!(args.len(), 101, "{args:?}");
    assert!(args.contains(&"untrusted".to_string()), "{args:?}");
    assert_eq!(args.iter().filter(|a| a.starts_with("tls-")).count(), 100);
}
