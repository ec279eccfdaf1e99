//! HTTPS with rustls from `web_server.ssl` (PEM certificate chain and key).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use scribe_domain::config::SslConfig;

pub fn server_config(ssl: &SslConfig) -> Result<ServerConfig, String> {
    if ssl.key_file_password.is_some() {
        // rustls reads only unencrypted keys; Project-W (uvicorn) could decrypt.
        return Err(format!(
            "web_server.ssl.key_file_password is set, but encrypted private keys are not supported: \
             decrypt the key (e.g. `openssl pkey -in {} -out key.pem`) and remove the password",
            ssl.key_file.display()
        ));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ssl.cert_file)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|err| {
            format!(
                "web_server.ssl.cert_file {}: cannot read a PEM certificate chain: {err}",
                ssl.cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "web_server.ssl.cert_file {}: no certificate found",
            ssl.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&ssl.key_file).map_err(|err| {
        format!(
            "web_server.ssl.key_file {}: cannot read a PEM private key: {err}",
            ssl.key_file.display()
        )
    })?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|err| {
            format!("web_server.ssl: the certificate and key don't form a valid TLS setup: {err}")
        })
}
