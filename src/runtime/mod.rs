//! Process runtime: metrics, health endpoints (and the readiness check behind `/readyz`), leader
//! election.
//!
//! The HTTP server of `/metrics`, `/healthz` and `/readyz` is hand-written on hyper 1's connection API
//! (about 45 lines: three fixed paths, no routing, TLS or middleware) because hyper is already
//! in the dependency tree through kube and the AWS SDK, and the two timeouts it needs
//! ([`HEADER_READ_TIMEOUT`], [`CONNECTION_LIFETIME`]) are one builder call and one `tokio::time::timeout`.
//! The maintained alternative is axum (a `Router` with three routes, served by `axum::serve`); it is
//! worth its extra dependencies once the endpoints need more than this (routing, a body, TLS, auth).

pub mod leader;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

pub use metrics::Metrics;

/// What the health and metrics endpoints report.
#[derive(Default)]
pub struct Health {
    /// Whether the operator can serve: set and cleared by [`ReadinessCheck`] only, true while the API
    /// server answers and every collection the operator watches can be listed (both CRDs installed).
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

/// A collection the operator must be able to list to be ready: what one of its watches lists.
#[derive(Debug, Clone)]
pub struct Listable {
    pub resource: ApiResource,
    /// Where the watch lists it: None for all namespaces (and for a cluster-scoped kind).
    pub namespace: Option<String>,
    /// Whether the kind may be missing (its CRD not installed: 404) with the operator still ready.
    pub optional: bool,
}

impl Listable {
    fn describe(&self) -> String {
        let (plural, group) = (&self.resource.plural, &self.resource.group);
        match &self.namespace {
            Some(ns) => format!("{plural}.{group} in namespace {ns}"),
            None => format!("{plural}.{group}"),
        }
    }
}

/// What one readiness check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The API server answered, and every required collection could be listed.
    Ready,
    /// The API server answered but refused a list (a CRD not installed, RBAC): why.
    Refused(String),
    /// The API server did not answer (unreachable, TLS, timeout): why.
    Unreachable(String),
}

/// How often [`ReadinessCheck::run`] checks again.
pub const READINESS_EVERY: Duration = Duration::from_secs(10);

/// The readiness behind `/readyz`: a LIST with limit 1 of each collection the operator watches. It
/// sets [`Health::ready`] on success and clears it on failure; `/healthz` (liveness) ignores it.
pub struct ReadinessCheck {
    client: kube::Client,
    listables: Vec<Listable>,
    health: Arc<Health>,
    last: Option<Readiness>,
}

impl ReadinessCheck {
    pub fn new(client: kube::Client, listables: Vec<Listable>, health: Arc<Health>) -> Self {
        Self { client, listables, health, last: None }
    }

    /// One check: lists each collection, sets [`Health::ready`], logs a change.
    pub async fn check(&mut self) -> Readiness {
        let readiness = self.list_each().await;
        self.health.ready.store(readiness == Readiness::Ready, Ordering::Relaxed);
        if self.last.as_ref() != Some(&readiness) {
            match &readiness {
                Readiness::Ready => tracing::info!("ready: the API server answered and every watched kind lists"),
                Readiness::Refused(reason) => tracing::warn!(%reason, "not ready: the API server refused a list"),
                Readiness::Unreachable(reason) => tracing::warn!(%reason, "not ready: the API server does not answer"),
            }
            self.last = Some(readiness.clone());
        }
        readiness
    }

    async fn list_each(&self) -> Readiness {
        for listable in &self.listables {
            let api: Api<DynamicObject> = match &listable.namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &listable.resource),
                None => Api::all_with(self.client.clone(), &listable.resource),
            };
            match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() && listable.optional => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {
                    return Readiness::Refused(format!("{} is not found: is its CRD installed?", listable.describe()));
                }
                Err(kube::Error::Api(s)) => {
                    return Readiness::Refused(format!("cannot list {}: {}", listable.describe(), s.message));
                }
                Err(e) => return Readiness::Unreachable(format!("cannot list {}: {e}", listable.describe())),
            }
        }
        Readiness::Ready
    }

    /// Checks until the API server answers (after 0.5 s, then doubling up to [`READINESS_EVERY`]);
    /// returns the first answer, ready or refused.
    pub async fn until_answered(&mut self) -> Readiness {
        let mut wait = Duration::from_millis(500);
        loop {
            match self.check().await {
                Readiness::Unreachable(_) => tokio::time::sleep(wait).await,
                answered => return answered,
            }
            wait = (wait * 2).min(READINESS_EVERY);
        }
    }

    /// Checks every [`READINESS_EVERY`], for ever (spawn it).
    pub async fn run(mut self) {
        let mut every = tokio::time::interval(READINESS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.check().await;
        }
    }
}

fn respond(path: &str, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => {
            metrics.set_leader(health.leading.load(Ordering::Relaxed));
            (200, metrics::CONTENT_TYPE, metrics.render())
        }
        "/healthz" => (200, "text/plain", "ok\n".to_string()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => (200, "text/plain", "ready\n".to_string()),
        "/readyz" => (503, "text/plain", "not ready\n".to_string()),
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
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the mock API server does.
    #[derive(Clone, Copy, PartialEq)]
    enum Server {
        /// No answer (a connection error).
        Down,
        /// Lists both kinds.
        Up,
        /// Answers 404 for the InstanceBindings (their CRD is not installed).
        BindingsMissing,
    }

    /// A kube client whose API server behaves as `server` says at the time of each request; the paths
    /// it was asked for are recorded.
    fn mock_api(server: Arc<Mutex<Server>>) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        use http::{Request, Response, StatusCode};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let recorded = paths.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let path = request.uri().to_string();
                recorded.lock().unwrap().push(path.clone());
                let state = *server.lock().unwrap();
                let (status, body) = match state {
                    Server::Down => {
                        send.send_error(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
                        continue;
                    }
                    Server::BindingsMissing if path.contains("/instancebindings") => (
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                           "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"}),
                    ),
                    _ => (
                        StatusCode::OK,
                        serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}),
                    ),
                };
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        (kube::Client::new(service, "default"), paths)
    }

    fn listables(namespaces: &[&str], bindings_optional: bool) -> Vec<Listable> {
        let resource = |kind: &str, plural: &str| ApiResource {
            group: "connect.cloud-operators.dev".into(),
            version: "v1alpha1".into(),
            api_version: "connect.cloud-operators.dev/v1alpha1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let mut all: Vec<Listable> = namespaces
            .iter()
            .map(|ns| Listable {
                resource: resource("SecurityProfile", "securityprofiles"),
                namespace: Some(ns.to_string()),
                optional: false,
            })
            .collect();
        all.push(Listable {
            resource: resource("InstanceBinding", "instancebindings"),
            namespace: None,
            optional: bindings_optional,
        });
        all
    }

    /// Ready only while the API server answers and lists both kinds; not ready again when it stops;
    /// `/healthz` answers 200 throughout.
    #[tokio::test]
    async fn ready_only_while_the_api_server_lists_both_kinds() {
        let server = Arc::new(Mutex::new(Server::Down));
        let (client, paths) = mock_api(server.clone());
        let health = Arc::new(Health::default());
        let metrics = Metrics::default();
        let mut check = ReadinessCheck::new(client, listables(&["team-a"], false), health.clone());
        let readyz = |h: &Health| respond("/readyz", &metrics, h).status().as_u16();
        let healthz = |h: &Health| respond("/healthz", &metrics, h).status().as_u16();

        assert_eq!((readyz(&health), healthz(&health)), (503, 200), "not ready before any check");
        assert!(matches!(check.check().await, Readiness::Unreachable(_)));
        assert_eq!((readyz(&health), healthz(&health)), (503, 200), "the API server does not answer");

        *server.lock().unwrap() = Server::Up;
        assert_eq!(check.check().await, Readiness::Ready);
        assert_eq!(readyz(&health), 200);
        let asked = std::mem::take(&mut *paths.lock().unwrap());
        let listed = |collection: &str| {
            let path = format!("/apis/connect.cloud-operators.dev/v1alpha1/{collection}?");
            asked.iter().any(|p| p.starts_with(&path) && p.contains("limit=1"))
        };
        assert!(listed("namespaces/team-a/securityprofiles"), "{asked:?}");
        assert!(listed("instancebindings"), "{asked:?}");

        *server.lock().unwrap() = Server::BindingsMissing;
        let Readiness::Refused(reason) = check.check().await else { panic!("a 404 is an answer") };
        assert!(reason.contains("instancebindings.connect.cloud-operators.dev is not found"), "{reason}");
        assert_eq!((readyz(&health), healthz(&health)), (503, 200), "the InstanceBinding CRD is gone");

        *server.lock().unwrap() = Server::Up;
        assert_eq!(check.check().await, Readiness::Ready);
        *server.lock().unwrap() = Server::Down;
        assert!(matches!(check.check().await, Readiness::Unreachable(_)));
        assert_eq!((readyz(&health), healthz(&health)), (503, 200), "not ready again when the API server goes");
    }

    /// With --allow-unbound the InstanceBinding CRD may be missing (the controller runs without it).
    #[tokio::test]
    async fn an_optional_kind_may_be_missing() {
        let server = Arc::new(Mutex::new(Server::BindingsMissing));
        let (client, _) = mock_api(server);
        let health = Arc::new(Health::default());
        let mut check = ReadinessCheck::new(client, listables(&[], true), health.clone());
        assert_eq!(check.check().await, Readiness::Ready);
        assert!(health.ready.load(Ordering::Relaxed));
    }

    /// Waiting for the API server: unreachable attempts are retried, the first answer ends the wait.
    #[tokio::test]
    async fn until_answered_waits_for_an_answer() {
        let server = Arc::new(Mutex::new(Server::Down));
        let (client, paths) = mock_api(server.clone());
        let health = Arc::new(Health::default());
        let mut check = ReadinessCheck::new(client, listables(&["team-a"], false), health.clone());
        let up_later = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            *up_later.lock().unwrap() = Server::BindingsMissing;
        });
        let answer = tokio::time::timeout(Duration::from_secs(10), check.until_answered()).await.expect("answered");
        assert!(matches!(answer, Readiness::Refused(_)), "{answer:?}");
        assert!(!health.ready.load(Ordering::Relaxed));
        assert!(paths.lock().unwrap().len() >= 3, "it retried: {:?}", paths.lock().unwrap());
    }

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
