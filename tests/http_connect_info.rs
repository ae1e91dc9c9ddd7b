//! Issue 20: `shutdown_forensics::http::serve` gives handlers `ConnectInfo` as `axum::serve`
//! does. A real server on a loopback port and real TCP clients: a handler extracting
//! `ConnectInfo<SocketAddr>` answers with the address it got, which must be the client
//! socket's own local address; the connection and its requests are still tracked.

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers with the peer the extractor gave, and how many requests the crate tracks now (this
/// one included when it is tracked).
async fn whoami(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    let tracked = shutdown_forensics::http::counts().requests;
    format!("{peer} tracked={tracked}")
}

/// A connect-info type of the app's own, built from the client's address.
#[derive(Clone, Debug)]
struct ClientPort(u16);

impl Connected<SocketAddr> for ClientPort {
    fn connect_info(peer: SocketAddr) -> Self {
        Self(peer.port())
    }
}

async fn port(ConnectInfo(ClientPort(port)): ConnectInfo<ClientPort>) -> String {
    port.to_string()
}

/// Sends `GET path` on `stream` (keep-alive unless `close`) and returns the status line and
/// the body (the bodies here are short and sent with a content-length).
async fn get_on(stream: &mut TcpStream, path: &str, close: bool) -> (String, String) {
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        if body.len() >= len {
            let status = head.lines().next().unwrap_or_default().to_owned();
            return (status, body[..len].to_owned());
        }
    }
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    (listener, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_gets_the_clients_real_address() {
    let (listener, addr) = bind().await;
    let router = Router::new().route("/", get(whoami));
    let server = tokio::spawn(async move {
        shutdown_forensics::http::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    // Two connections (two client ports), two keep-alive requests on the first.
    let mut first = TcpStream::connect(addr).await.expect("connect");
    let mut second = TcpStream::connect(addr).await.expect("connect");
    let first_addr = first.local_addr().expect("client address");
    let second_addr = second.local_addr().expect("client address");
    assert_ne!(first_addr, second_addr);
    for (which, me, close) in [
        (0, first_addr, false),
        (0, first_addr, true),
        (1, second_addr, true),
    ] {
        let stream = if which == 0 { &mut first } else { &mut second };
        let (status, body) = get_on(stream, "/", close).await;
        assert!(status.contains(" 200 "), "{status}: {body}");
        let (peer, tracked) = body.split_once(" tracked=").expect("body");
        assert_eq!(peer, me.to_string(), "ConnectInfo is the client's address");
        let tracked: usize = tracked.parse().expect("count");
        assert!(tracked >= 1, "the request itself is tracked: {body}");
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_own_connect_info_type_is_built_from_the_clients_address() {
    let (listener, addr) = bind().await;
    let router = Router::new().route("/port", get(port));
    let server = tokio::spawn(async move {
        shutdown_forensics::http::serve(
            listener,
            router.into_make_service_with_connect_info::<ClientPort>(),
        )
        .await
    });
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let me = client.local_addr().expect("client address");
    let (status, body) = get_on(&mut client, "/port", true).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(body, me.port().to_string());
    server.abort();
}

/// As under `axum::serve(listener, router)`: without `into_make_service_with_connect_info` no
/// request carries it, and the extractor rejects the request (500), naming what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_router_has_no_connect_info_as_under_axum_serve() {
    for plain_axum in [true, false] {
        let (listener, addr) = bind().await;
        let router = Router::new().route("/", get(whoami));
        let server = if plain_axum {
            tokio::spawn(async move { axum::serve(listener, router).await })
        } else {
            tokio::spawn(async move { shutdown_forensics::http::serve(listener, router).await })
        };
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (status, body) = get_on(&mut client, "/", true).await;
        assert!(
            status.contains(" 500 "),
            "plain axum {plain_axum}: {status}: {body}"
        );
        assert!(
            body.contains("ConnectInfo"),
            "plain axum {plain_axum}: {body}"
        );
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_make_service_is_served_too() {
    let (listener, addr) = bind().await;
    let router = Router::new().route("/", get(|| async { "ok" }));
    let server = tokio::spawn(async move {
        shutdown_forensics::http::serve(listener, router.into_make_service()).await
    });
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let (status, body) = get_on(&mut client, "/", true).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(body, "ok");
    server.abort();
}
