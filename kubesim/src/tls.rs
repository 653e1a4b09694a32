//! The simulator's own certificate authority and a serving certificate for `127.0.0.1` and
//! `localhost`, generated at start, and the rustls server configuration built from them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why the TLS material could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen failed to generate a key or certificate.
    #[error("generating the simulator's certificates failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the generated material.
    #[error("building the TLS server configuration failed: {0}")]
    Config(#[from] rustls::Error),
}

/// A CA and a server configuration whose certificate it signed.
pub struct Certs {
    /// The CA certificate, PEM; clients trust it through the kubeconfig.
    pub ca_pem: String,
    /// The server side of TLS, offering HTTP/1.1 only.
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Generates a fresh CA and serving certificate.
pub fn generate() -> Result<Certs, TlsError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "kubesim-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    leaf.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::DnsName("kubernetes.default.svc".try_into()?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certs {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_pem_ca_and_a_config() {
        let certs = generate().expect("certificates");
        assert!(certs.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            certs.server_config.alpn_protocols,
            vec![b"http/1.1".to_vec()]
        );
    }
}
