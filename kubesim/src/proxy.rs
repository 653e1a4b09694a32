//! The service proxy subresource: `/api/v1/namespaces/{ns}/services/{id}/proxy/{path}` to
//! the backend registered for the service. Bodies stream through in both directions,
//! WebSocket upgrades are spliced, and the caller's credentials never reach the backend.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::http::{ApiError, Body, Ctx};

/// The parts of a proxy id: `name`, `name:port`, `scheme:name:port`.
struct ProxyId<'a> {
    scheme: &'a str,
    name: &'a str,
    port: &'a str,
}

fn parse_id(id: &str) -> Result<ProxyId<'_>, ApiError> {
    let parts: Vec<&str> = id.split(':').collect();
    let parsed = match parts.as_slice() {
        [name] => ProxyId {
            scheme: "",
            name,
            port: "",
        },
        [name, port] => ProxyId {
            scheme: "",
            name,
            port,
        },
        [scheme, name, port] => ProxyId { scheme, name, port },
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid service request \"{id}\""
            )));
        }
    };
    if !["", "http", "https"].contains(&parsed.scheme) || parsed.name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid service request \"{id}\""
        )));
    }
    Ok(parsed)
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", message)
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_headers(headers: &mut HeaderMap, keep_upgrade: bool) {
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let name = k.as_str();
            HOP_BY_HOP.contains(&name)
                || (name == "upgrade" && !keep_upgrade)
                || name == "authorization"
                || name.starts_with("impersonate-")
                || name.starts_with("x-remote-")
        })
        .cloned()
        .collect();
    for name in drop {
        headers.remove(&name);
    }
}

/// Forwards one request to the service's backend.
pub(crate) async fn forward(
    ctx: &Arc<Ctx>,
    mut req: Request<Incoming>,
    ns: &str,
    id: &str,
    rest: &str,
    remote: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let parsed = parse_id(id)?;
    let svc = ctx
        .cluster
        .service(ns, parsed.name)
        .ok_or_else(|| ApiError::not_found("services", parsed.name))?;
    if !parsed.port.is_empty()
        && !svc
            .ports
            .iter()
            .any(|p| p.name == parsed.port || p.port.to_string() == parsed.port)
    {
        return Err(unavailable(format!(
            "no service port \"{}\" found for service \"{}\"",
            parsed.port, parsed.name
        )));
    }
    let Some(backend) = svc.backend else {
        return Err(unavailable(format!(
            "no endpoints available for service \"{}\"",
            parsed.name
        )));
    };

    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let original_host = parts.headers.get(header::HOST).cloned();
    let original_uri = parts.uri.to_string();
    strip_headers(&mut parts.headers, upgrade);
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    let forwarded_for = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prior) => format!("{prior}, {}", remote.ip()),
        None => remote.ip().to_string(),
    };
    let headers = &mut parts.headers;
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(host) = original_host {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if ctx.tls { "https" } else { "http" }),
    );
    if let Ok(v) = HeaderValue::from_str(&original_uri) {
        headers.insert("x-forwarded-uri", v);
    }
    if let Ok(v) = HeaderValue::from_str(&backend.to_string()) {
        headers.insert(header::HOST, v);
    }
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = format!("/{rest}{query}")
        .parse::<Uri>()
        .map_err(|e| ApiError::bad_request(format!("invalid proxy path: {e}")))?;
    let outgoing = Request::from_parts(parts, body);

    let unreachable =
        |e: &dyn std::fmt::Display| unavailable(format!("error trying to reach service: {e}"));
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(backend))
        .await
        .map_err(|_| unreachable(&format!("dial tcp {backend}: i/o timeout")))?
        .map_err(|e| unreachable(&format!("dial tcp {backend}: connect: {e}")))?;
    let mut resp = if parsed.scheme == "https" {
        let tls = tls_connector()
            .connect(ServerName::IpAddress(backend.ip().into()), stream)
            .await
            .map_err(|e| unreachable(&format!("tls: {e}")))?;
        send(TokioIo::new(tls), outgoing)
            .await
            .map_err(|e| unreachable(&e))?
    } else {
        send(TokioIo::new(stream), outgoing)
            .await
            .map_err(|e| unreachable(&e))?
    };

    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(client), Ok(backend)) = (client_upgrade.await, backend_upgrade.await) else {
                tracing::debug!("proxied upgrade did not complete");
                return;
            };
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                tracing::debug!(error = %e, "proxied upgraded connection ended");
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    let keep_upgrade = parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    strip_headers(&mut parts.headers, keep_upgrade);
    if keep_upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    Ok(Response::from_parts(
        parts,
        body.map_err(io::Error::other).boxed_unsync(),
    ))
}

async fn send<I>(io: I, req: Request<Incoming>) -> Result<Response<Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "backend connection ended");
        }
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// The apiserver does not verify backend certificates of `https:` proxy ids.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth()
        });
    match config {
        Ok(config) => tokio_rustls::TlsConnector::from(Arc::new(config)),
        // The ring provider always supports the default versions.
        Err(_) => tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )),
    }
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_form_names_the_service() {
        for id in [
            "relay",
            "relay:http",
            "relay:8080",
            "http:relay:8080",
            "https:relay:443",
        ] {
            assert_eq!(parse_id(id).map(|p| p.name).ok(), Some("relay"), "{id}");
        }
        assert!(parse_id("ftp:relay:21").is_err());
        assert!(parse_id("a:b:c:d").is_err());
    }

    #[test]
    fn credentials_and_hop_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer x"),
            ("impersonate-user", "root"),
            ("x-remote-user", "root"),
            ("connection", "keep-alive"),
            ("accept", "*/*"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_headers(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }
}
