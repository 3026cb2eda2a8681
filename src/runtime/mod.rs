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

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` in the background; returns the bound address.
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
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
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
