//! Process runtime: metrics, health endpoints, leader election.

pub mod leader;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub use metrics::Metrics;

/// What the health and metrics endpoints report.
#[derive(Default)]
pub struct Health {
    /// Set once the operator can serve: the API server answered and the CRD is installed.
    pub ready: AtomicBool,
    /// Whether this replica holds the lease (or leader election is off).
    pub leading: AtomicBool,
}

/// Completes on SIGTERM or SIGINT: the one shutdown signal of the process.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing reconciles in flight");
}

/// How long a client may take to send a request's head.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long one connection may stay open (a scrape takes milliseconds; keep-alive reconnects).
pub const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` in the background; returns the bound address.
/// Slow clients are cut off: [`HEADER_READ_TIMEOUT`] for the request head, [`CONNECTION_LIFETIME`] in all.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, health: Arc<Health>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (metrics, health) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (metrics, health) = (metrics.clone(), health.clone());
                    async move { Ok::<_, std::convert::Infallible>(respond(req.uri().path(), &metrics, &health)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                // A client that trickles its request (or keeps a connection forever) cannot hold a task.
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            });
        }
    });
    Ok(bound)
}

fn respond(path: &str, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => {
            metrics.set_leader(health.leading.load(Ordering::Relaxed));
            (200, metrics::CONTENT_TYPE, metrics.render())
        }
        "/healthz" => (200, "text/plain", "ok\n".to_string()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => (200, "text/plain", "ready\n".to_string()),
        "/readyz" => (503, "text/plain", "starting\n".to_string()),
        _ => (404, "text/plain", "not found: try /metrics, /healthz, /readyz\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client that sends half a request head and then nothing is disconnected (it used to hold the
    /// connection, and a task, for as long as it liked).
    #[tokio::test]
    async fn a_client_that_never_finishes_its_request_head_is_cut_off() {
        let addr = serve(([127, 0, 0, 1], 0).into(), Arc::new(Metrics::default()), Arc::new(Health::default()))
            .await
            .expect("binds");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.expect("writes");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(HEADER_READ_TIMEOUT * 3, stream.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the server kept the connection open past {:?}", HEADER_READ_TIMEOUT * 3);
        let answer = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
}
