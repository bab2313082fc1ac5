//! TLS for `amqps://`, with rustls (ring provider): the Mozilla roots by default or a custom
//! CA, and a client certificate for the EXTERNAL mechanism. Only builds configuration and
//! wraps a TCP stream; the protocol above it is unchanged.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::Error;

/// Where TLS trust and identity come from.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client's certificate chain (for EXTERNAL, or brokers that require one).
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client's private key.
    pub key_file: Option<PathBuf>,
    /// The name to verify the broker's certificate against, when not the host connected to.
    pub server_name: Option<String>,
}

fn tls_error(what: impl std::fmt::Display) -> Error {
    Error::Tls(what.to_string())
}

impl TlsOptions {
    /// A rustls client configuration from these options.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, Error> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in
                    CertificateDer::pem_file_iter(path).map_err(|e| tls_error(format!("{}: {e}", path.display())))?
                {
                    roots.add(cert.map_err(tls_error)?).map_err(tls_error)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| tls_error(format!("{}: {e}", cert.display())))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(tls_error)?;
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(format!("{}: {e}", key.display())))?;
                builder.with_client_auth_cert(chain, key).map_err(tls_error)
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(tls_error("a client certificate needs both certfile and keyfile")),
        }
    }

    /// Runs the TLS handshake over `tcp` for `host`.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
        let config = self.client_config()?;
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_owned()).map_err(tls_error)?;
        TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(tls_error)
    }
}
