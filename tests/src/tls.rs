//! TLS for tests: a throwaway CA with server and client certificates (rcgen), written as PEM
//! files, and a TLS terminator on loopback that forwards the decrypted stream to a plain
//! endpoint (the real broker, or a scripted peer). RabbitMQ itself is left untouched.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// PEM files of a CA, a server certificate for 127.0.0.1/localhost and a client certificate.
pub struct Pki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The client certificate chain.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

fn signed(name: &str, sans: Vec<String>, issuer: &Issuer<'_, KeyPair>) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::new(sans).expect("names");
    params.distinguished_name.push(DnType::CommonName, name);
    (params.signed_by(&key, issuer).expect("signed"), key)
}

impl Pki {
    /// A fresh CA and certificates, in a new temporary directory.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(crate::unique_name("amqp-tls"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_key = KeyPair::generate().expect("a key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "amqp-rs test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed");
        let ca_der = ca_cert.der().clone();
        let issuer = Issuer::new(ca_params, ca_key);
        let (server, server_key) = signed("localhost", vec!["localhost".into(), "127.0.0.1".into()], &issuer);
        let (client, client_key) = signed("amqp-client", vec!["amqp-client".into()], &issuer);
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            ca_der,
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
        }
    }

    /// Terminates TLS on an ephemeral loopback port and forwards to `upstream`. With
    /// `require_client_cert`, clients must present a certificate signed by the CA.
    pub async fn terminator(&self, upstream: String, require_client_cert: bool) -> u16 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let builder = rustls::ServerConfig::builder();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().expect("verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(self.server_chain.clone(), key).expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let port = listener.local_addr().expect("bound").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut plain) = TcpStream::connect(&upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        port
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
