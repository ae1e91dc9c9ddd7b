//! `--metrics-addr ADDR`: the crate's shutdown metrics (feature `metrics`) in Prometheus' text
//! format at `http://ADDR/metrics`, through `metrics-exporter-prometheus`.
//!
//! A pull exporter has a catch a push one does not: the stop the crate records at `finish` is
//! seen only if a scrape comes before the process exits. So the gateway serves the endpoint
//! itself (a plain thread, no runtime: it must outlive the runtime's shutdown) and, after
//! `finish`, waits for one more scrape, at most [`LINGER`]. A stop that never reaches `finish`
//! (SIGKILLed) is recorded by the next start instead, which any scrape of the new process sees.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How long the gateway waits after `finish` for the scrape that carries the stop.
pub const LINGER: Duration = Duration::from_secs(5);

/// Bucket bounds of the shutdown histograms, in seconds: from a quick stop to a long drain.
const BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The endpoint: how many scrapes it has answered.
pub struct Endpoint {
    scrapes: Arc<AtomicU64>,
}

/// Installs the Prometheus recorder and serves it on `addr` (before the flight record is
/// judged: the next start records the previous stop's metrics at install).
pub fn serve(addr: &str) -> Result<Endpoint, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("shutdown_".into()), BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("--metrics-addr: {e}"))?;
    let listener = TcpListener::bind(addr).map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let scrapes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&scrapes);
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if answer(stream, &handle) {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .map_err(|e| e.to_string())?;
    crate::say(&format!("metrics on http://{bound}/metrics"));
    Ok(Endpoint { scrapes })
}

impl Endpoint {
    /// After `finish`: waits until a scrape has carried what was recorded by now, at most
    /// `limit`. Returns whether one did.
    pub fn wait_for_scrape(&self, limit: Duration) -> bool {
        let before = self.scrapes.load(Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.scrapes.load(Ordering::SeqCst) > before {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// Answers one request: `GET /metrics` gets the text format; anything else a 404. Returns
/// whether it was a scrape that got its answer. Bounded: a client that sends nothing is
/// dropped after a second.
fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let scrape = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?");
    let (status, body) = if scrape {
        handle.run_upkeep();
        ("200 OK", handle.render())
    } else {
        ("404 Not Found", "not found: try /metrics\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).is_ok() && scrape
}
