//! The default transport end to end, on 127.0.0.1 only: the address guard, redirects,
//! response caps and TLS failures.

#[path = "common/server.rs"]
mod server;

use std::time::Duration;

use bytes::Bytes;
use dataops_webhooks::transport::guard::{AddressPolicy, BlockedRange};
use dataops_webhooks::transport::{
    HttpTransport, Transport, TransportErrorKind, TransportRequest, DEFAULT_EXCERPT_BYTES,
};
use dataops_webhooks::webhook::{NewWebhook, Scope, WebhookError};
use dataops_webhooks::{ManageError, WebhookDispatcher};
use http::HeaderMap;
use server::{Reply, TestServer};
use url::Url;

fn request(url: &str) -> TransportRequest {
    TransportRequest::new(
        Url::parse(url).expect("url"),
        HeaderMap::new(),
        Bytes::from_static(b"{}"),
        Duration::from_secs(5),
    )
}

fn open() -> HttpTransport {
    HttpTransport::builder()
        .address_policy(AddressPolicy::allow_private())
        .build()
        .expect("transport")
}

#[tokio::test]
async fn the_guard_refuses_loopback_in_every_form_and_sends_nothing() {
    let server = TestServer::start(Reply::Status(200, "")).await;
    let guarded = HttpTransport::builder().build().expect("transport");
    let port = server.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ] {
        let err = guarded.send(request(&url)).await.expect_err("refused");
        assert_eq!(
            err.kind(),
            TransportErrorKind::BlockedAddress,
            "{url}: {err}"
        );
        assert!(err.to_string().contains("address policy"), "{err}");
    }
    assert!(
        server.requests().is_empty(),
        "a refused request reached the server"
    );

    let response = open()
        .send(request(&server.url("/")))
        .await
        .expect("allowed");
    assert_eq!(response.status, 200);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn the_guard_refuses_loopback_webhooks_at_configuration() {
    let d = WebhookDispatcher::builder().build().expect("dispatcher");
    let result = d
        .webhooks()
        .create(NewWebhook::new(
            Scope::Organization,
            "http://127.0.0.1:8080/hook",
        ))
        .await;
    assert!(
        matches!(
            result,
            Err(ManageError::Invalid(WebhookError::BlockedAddress {
                range: BlockedRange::Loopback,
                ..
            }))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let target = TestServer::start(Reply::Status(200, "")).await;
    let redirecting = TestServer::start(Reply::Redirect(target.url("/elsewhere"))).await;
    let response = open()
        .send(request(&redirecting.url("/")))
        .await
        .expect("response");
    assert_eq!(response.status, 302);
    assert!(target.requests().is_empty());
}

#[tokio::test]
async fn responses_are_excerpted_and_capped() {
    let chatty = TestServer::start(Reply::Big(100 * 1024)).await;
    let response = open()
        .send(request(&chatty.url("/")))
        .await
        .expect("response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), DEFAULT_EXCERPT_BYTES);

    let flood = TestServer::start(Reply::Big(2 * 1024 * 1024)).await;
    let err = open()
        .send(request(&flood.url("/")))
        .await
        .expect_err("too large");
    assert_eq!(err.kind(), TransportErrorKind::ResponseTooLarge, "{err}");

    let small_cap = HttpTransport::builder()
        .address_policy(AddressPolicy::allow_private())
        .max_response_bytes(50 * 1024)
        .build()
        .expect("transport");
    let err = small_cap
        .send(request(&chatty.url("/")))
        .await
        .expect_err("too large");
    assert_eq!(err.kind(), TransportErrorKind::ResponseTooLarge, "{err}");
}

#[tokio::test]
async fn tls_to_a_plain_http_server_is_a_tls_error() {
    let plain = TestServer::start(Reply::Status(200, "")).await;
    let url = format!("https://127.0.0.1:{}/", plain.addr.port());
    let err = open()
        .send(request(&url))
        .await
        .expect_err("handshake fails");
    assert_eq!(err.kind(), TransportErrorKind::Tls, "{err}");
}

#[tokio::test]
async fn a_slow_endpoint_times_out() {
    let slow = TestServer::start(Reply::Slow(Duration::from_secs(3), 200)).await;
    let mut req = request(&slow.url("/"));
    req.timeout = Duration::from_millis(200);
    let err = open().send(req).await.expect_err("timeout");
    assert!(err.is_timeout(), "{err}");
}

/// A server that reads the request's first bytes, then ends the connection: with a TCP reset
/// (`SO_LINGER` 0) or a plain close.
async fn cutting_server(reset: bool) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut start = [0u8; 64];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut start).await;
            if reset {
                let _ = socket.set_zero_linger();
            }
            drop(socket);
        }
    });
    addr
}

#[tokio::test]
async fn a_connection_reset_or_closed_mid_request_is_a_connect_error() {
    for reset in [true, false] {
        let addr = cutting_server(reset).await;
        let err = open()
            .send(request(&format!("http://{addr}/")))
            .await
            .expect_err("no response");
        assert_eq!(
            err.kind(),
            TransportErrorKind::Connect,
            "reset: {reset}: {err}"
        );
    }
}

#[tokio::test]
async fn an_allowed_range_reaches_its_addresses_and_no_other() {
    let server = TestServer::start(Reply::Status(200, "")).await;
    let policy = AddressPolicy::public_only().allow_range("127.0.0.0/8".parse().expect("cidr"));
    let transport = HttpTransport::builder()
        .address_policy(policy.clone())
        .build()
        .expect("transport");
    let response = transport
        .send(request(&server.url("/allowed")))
        .await
        .expect("127.0.0.0/8 is allowed");
    assert_eq!(response.status, 200);
    assert_eq!(server.requests().len(), 1);
    // Other private ranges stay refused, at configuration already (nothing is sent).
    let d = WebhookDispatcher::builder()
        .address_policy(policy)
        .build()
        .expect("dispatcher");
    for url in [
        "http://10.0.0.1/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/",
    ] {
        let refused = d
            .webhooks()
            .create(NewWebhook::new(Scope::Project("p".into()), url))
            .await;
        assert!(
            matches!(
                refused,
                Err(ManageError::Invalid(WebhookError::BlockedAddress { .. }))
            ),
            "{url}: {refused:?}"
        );
    }
    let allowed = d
        .webhooks()
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            server.url("/hook"),
        ))
        .await
        .expect("a loopback URL is allowed");
    let outcome = dataops_webhooks::Dispatcher::send_test(&d, &allowed.id)
        .await
        .expect("test send");
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(server.requests().len(), 2);
}

/// A loopback forward proxy that records each request's first line and
/// `Proxy-Authorization`, and answers plain requests itself with 204 (a `CONNECT` with 403).
async fn recording_proxy() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let mut lines = text.split("\r\n");
                let first = lines.next().unwrap_or_default().to_owned();
                let header = |name: &str| {
                    text.split("\r\n")
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let auth = header("proxy-authorization");
                let length: usize = header("content-length").parse().unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = socket.read_exact(&mut body).await;
                let connect = first.starts_with("CONNECT ");
                log.lock().expect("lock").push((first, auth));
                let answer: &[u8] = if connect {
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"
                } else {
                    b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
                };
                let _ = socket.write_all(answer).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn requests_go_through_the_proxy_and_the_guard_still_refuses_blocked_targets() {
    use base64::Engine as _;
    use dataops_webhooks::transport::EgressProxy;
    let (proxy_addr, seen) = recording_proxy().await;
    let proxy = EgressProxy::new(&format!("http://webhooks:s3cret@{proxy_addr}")).expect("proxy");
    assert!(!format!("{proxy:?}").contains("s3cret"));
    // Targets on loopback are allowed by the policy; the proxy's own address needs nothing.
    let allowing = HttpTransport::builder()
        .address_policy(
            AddressPolicy::public_only().allow_range("127.0.0.0/8".parse().expect("cidr")),
        )
        .proxy(proxy.clone())
        .build()
        .expect("transport");
    let target = "http://127.0.0.1:9/hook?x=1";
    let response = allowing
        .send(request(target))
        .await
        .expect("through the proxy");
    assert_eq!(response.status, 204, "the proxy answered");
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("webhooks:s3cret")
    );
    {
        let log = seen.lock().expect("lock");
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].0, format!("POST {target} HTTP/1.1"), "absolute form");
        assert_eq!(log[0].1, expected_auth, "credentials sent to the proxy");
    }

    // An https:// target is tunnelled: the proxy is asked to CONNECT (this one refuses).
    let tunnelled = allowing.send(request("https://127.0.0.1:9/secure")).await;
    assert!(tunnelled.is_err(), "the recording proxy refuses tunnels");
    {
        let log = seen.lock().expect("lock");
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[1].0, "CONNECT 127.0.0.1:9 HTTP/1.1");
        assert_eq!(
            log[1].1, expected_auth,
            "credentials on the tunnel request too"
        );
    }

    // The default policy refuses loopback targets before the proxy is asked.
    let guarded = HttpTransport::builder()
        .proxy(proxy)
        .build()
        .expect("transport");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::ffff:127.0.0.1]:9/",
    ] {
        let err = guarded.send(request(url)).await.expect_err("refused");
        assert_eq!(
            err.kind(),
            TransportErrorKind::BlockedAddress,
            "{url}: {err}"
        );
    }
    assert_eq!(
        seen.lock().expect("lock").len(),
        2,
        "the proxy saw no refused request"
    );
}
