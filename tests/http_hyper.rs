//! Issue 20: the plain-hyper recipe of `shutdown_forensics::http` (its module docs): a
//! hand-written accept loop with `TrackedStream`, `TrackedService` and hyper-util's
//! `GracefulShutdown`. A real client stays on a stream; the graceful shutdown waits for it,
//! the counts and the stuck snapshot name it, and it ends when the client goes.

use std::io::{Read, Write};
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use shutdown_forensics::http::{counts, TrackedService, TrackedStream};
use shutdown_forensics::report::HttpState;

#[test]
fn the_hyper_recipe_tracks_a_stream_that_holds_the_graceful_shutdown() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (state_tx, state_rx) = std::sync::mpsc::channel();
    let server = rt.spawn(async move {
        let graceful = GracefulShutdown::new();
        let builder = Builder::new(TokioExecutor::new());
        let app = Router::new().route(
            "/events",
            get(|| async {
                let ticks = futures_util::stream::unfold(0u64, |n| async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let e = Event::default().data(format!("tick {n}"));
                    Some((Ok::<_, std::convert::Infallible>(e), n + 1))
                });
                Sse::new(ticks)
            }),
        );
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted.unwrap();
                    let stream = TrackedStream::new(stream).unwrap();
                    let conn = stream.connection().clone();
                    state_tx.send(conn.clone()).unwrap();
                    let service = TowerToHyperService::new(TrackedService::new(app.clone(), conn));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    tokio::spawn(graceful.watch(conn.into_owned()));
                }
                _ = &mut stop_rx => break,
            }
        }
        graceful.shutdown().await;
    });

    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("data: tick 1") {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let conn = state_rx.recv().unwrap();
    assert_eq!(conn.peer(), client.local_addr().unwrap());
    assert_eq!(conn.state(), HttpState::Streaming);
    let c = counts();
    assert_eq!((c.connections, c.requests), (1, 1));

    stop_tx.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !server.is_finished(),
        "the stream holds the graceful shutdown"
    );
    // The snapshot names it (no subscriber needed: the connections are the crate's table).
    let snap = shutdown_forensics::ShutdownLayer::new()
        .handle()
        .stuck_snapshot();
    let first = &snap.findings[0];
    let peer = client.local_addr().unwrap();
    assert!(
        first.starts_with("GET /events streaming ") && first.contains(&format!("s to {peer}, ")),
        "{first}"
    );

    drop(client); // the client goes: the stream ends, the shutdown completes
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the graceful shutdown completes once the client is gone")
            .unwrap();
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counts().connections > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(counts(), Default::default());
}
