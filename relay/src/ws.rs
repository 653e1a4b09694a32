//! The WebSocket form of the log endpoint: the same checks, then one text message per event.
//! Only the handshake and the message framing live here; [`crate::stream::pump`] drives it.

use futures::{SinkExt as _, StreamExt as _};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use podlogs::LogEvent;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::encode::Encoder;
use crate::server::{Body, StreamWork};
use crate::stream::{Closed, Sink, pump};

/// A request asking to become a WebSocket, with what is needed to answer it.
pub(crate) struct Upgrade {
    accept: String,
    on_upgrade: OnUpgrade,
}

impl Upgrade {
    /// The upgrade a request asks for, or `None` for a plain request.
    pub(crate) fn from_request(req: &mut Request<Incoming>) -> Option<Upgrade> {
        let headers = req.headers();
        let has_token = |name: header::HeaderName, token: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|part| part.trim().eq_ignore_ascii_case(token))
                })
        };
        if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
            return None;
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .and_then(|v| v.to_str().ok())
            != Some("13")
        {
            return None;
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(req);
        Some(Upgrade { accept, on_upgrade })
    }

    /// Answers 101 and streams `events` as messages once the connection is handed over.
    pub(crate) fn respond(self, events: podlogs::LogStream, work: StreamWork) -> Response<Body> {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let mut work = work;
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(%error, "websocket upgrade failed");
                    return;
                }
            };
            let socket =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let mut sink = MessageSink {
                socket,
                encoder: &mut work.encoder,
            };
            pump(
                events,
                &mut sink,
                work.options.clone(),
                work.stopping.clone(),
            )
            .await;
            let _ = sink.socket.close(None).await;
        });

        let mut response = Response::new(BodyExt::boxed(Empty::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&self.accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        headers.insert(
            crate::server::SCHEMA_HEADER,
            HeaderValue::from(podlogs::SCHEMA_VERSION),
        );
        response
    }
}

/// One text message per event, without the trailing newline.
struct MessageSink<'a> {
    socket: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    encoder: &'a mut Encoder,
}

impl Sink for MessageSink<'_> {
    async fn send(&mut self, events: &[LogEvent]) -> Result<u64, Closed> {
        let mut bytes = 0;
        for event in events {
            let mut buf = Vec::new();
            self.encoder.encode(event, &mut buf);
            while buf.last() == Some(&b'\n') {
                buf.pop();
            }
            if buf.is_empty() {
                continue;
            }
            bytes += buf.len() as u64;
            let text = String::from_utf8_lossy(&buf).into_owned();
            self.socket
                .feed(Message::text(text))
                .await
                .map_err(|_| Closed)?;
        }
        self.socket.flush().await.map_err(|_| Closed)?;
        Ok(bytes)
    }

    async fn closed(&mut self) {
        // Reading also answers pings; anything the client sends besides a close is ignored.
        loop {
            match self.socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    }
}
