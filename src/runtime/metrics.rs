//! Prometheus metrics, kept in a `prometheus-client` registry and served in the Prometheus text
//! exposition format (0.0.4): a handful of counters, one histogram and the leader gauge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    result: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabels {
    priority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    region: String,
    instance: String,
}

/// The operator's metrics; names and labels are what the chart's PrometheusRule queries. The
/// registry appends `_total` to counters' names and a period to their help texts.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Histogram,
    connect_calls: Family<CallLabels, Counter>,
    connect_calls_total: AtomicU64,
    throttled: Counter,
    limiter_wait_seconds: Counter<f64, AtomicU64>,
    status_writes: Counter,
    leader: Gauge,
    calls_by_priority: Family<PriorityLabels, Counter>,
    wait_by_priority: Family<PriorityLabels, Counter<f64, AtomicU64>>,
    reads_saved: Counter,
    listing_success: Family<InstanceLabels, Gauge<f64, AtomicU64>>,
    revoked: Gauge,
    events_queue_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("connect_operator"),
            reconciles: Family::default(),
            reconcile_duration: Histogram::new(BUCKETS),
            connect_calls: Family::default(),
            connect_calls_total: AtomicU64::new(0),
            throttled: Counter::default(),
            limiter_wait_seconds: Counter::default(),
            status_writes: Counter::default(),
            leader: Gauge::default(),
            calls_by_priority: Family::default(),
            wait_by_priority: Family::default(),
            reads_saved: Counter::default(),
            listing_success: Family::default(),
            revoked: Gauge::default(),
            events_queue_up: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register("reconciles", "Reconciles by result and error category", m.reconciles.clone());
        r.register("reconcile_duration_seconds", "Time per reconcile", m.reconcile_duration.clone());
        r.register("connect_calls", "Calls to Amazon Connect by operation and outcome", m.connect_calls.clone());
        r.register("connect_throttled", "Connect calls answered with ThrottlingException", m.throttled.clone());
        r.register(
            "rate_limiter_wait_seconds",
            "Time calls waited for the client-side rate limiter",
            m.limiter_wait_seconds.clone(),
        );
        r.register("status_writes", "Status patches sent to the API server", m.status_writes.clone());
        r.register("leader", "Whether this replica holds the leader lease", m.leader.clone());
        r.register(
            "connect_calls_by_priority",
            "Calls to Amazon Connect by priority (user work or background observation)",
            m.calls_by_priority.clone(),
        );
        r.register(
            "rate_limiter_wait_by_priority_seconds",
            "Time calls waited for the client-side rate limiter, by priority",
            m.wait_by_priority.clone(),
        );
        r.register(
            "reads_saved",
            "Profile reads an instance listing made unnecessary (confirmed unchanged)",
            m.reads_saved.clone(),
        );
        r.register(
            "instance_listing_last_success_timestamp_seconds",
            "When each observed instance was last listed (Unix time)",
            m.listing_success.clone(),
        );
        r.register(
            "revoked_profiles",
            "SecurityProfiles whose profile exists in Connect but whose InstanceBinding no longer allows it (PermissionRevoked, BindingRevoked)",
            m.revoked.clone(),
        );
        r.register(
            "events_queue_up",
            "Whether the queue of Connect's CloudTrail events is being read (0 when it cannot be, or --events-queue-url is not set)",
            m.events_queue_up.clone(),
        );
        m
    }
}

impl Metrics {
    /// One reconcile: `result` is `success` or `error`, `category` the error's step category.
    pub fn reconcile(&self, result: &str, category: &str, took: Duration) {
        self.reconciles.get_or_create(&ReconcileLabels { result: result.into(), category: category.into() }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// One Connect call: `outcome` is `ok` or the error code.
    pub fn connect_call(&self, operation: &str, outcome: &str) {
        self.connect_calls.get_or_create(&CallLabels { operation: operation.into(), outcome: outcome.into() }).inc();
        self.connect_calls_total.fetch_add(1, Ordering::Relaxed);
        if outcome == "ThrottlingException" {
            self.throttled.inc();
        }
    }

    pub fn limiter_wait(&self, waited: Duration) {
        self.limiter_wait_seconds.inc_by(waited.as_secs_f64());
    }

    /// One attempt of a Connect call at `priority`, after waiting `waited` for the rate limiter.
    pub fn prioritized_call(&self, priority: &str, waited: Duration) {
        let labels = PriorityLabels { priority: priority.into() };
        self.calls_by_priority.get_or_create(&labels).inc();
        self.wait_by_priority.get_or_create(&labels).inc_by(waited.as_secs_f64());
    }

    /// Profiles an instance listing confirmed unchanged (each one a read saved).
    pub fn reads_saved(&self, n: u64) {
        self.reads_saved.inc_by(n);
    }

    /// A successful listing of an instance.
    pub fn instance_listed(&self, region: &str, instance: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let labels = InstanceLabels { region: region.into(), instance: instance.into() };
        self.listing_success.get_or_create(&labels).set(now.as_secs_f64());
    }

    /// Whether the events queue is being read.
    pub fn set_events_queue_up(&self, up: bool) {
        self.events_queue_up.set(i64::from(up));
    }

    /// How many profiles are revoked now.
    pub fn set_revoked(&self, n: usize) {
        self.revoked.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn status_write(&self) {
        self.status_writes.inc();
    }

    /// Whether this replica holds the leader lease (or leader election is off).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Total Connect calls so far (all operations and outcomes).
    pub fn connect_calls_total(&self) -> u64 {
        self.connect_calls_total.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.reconcile("success", "", Duration::from_millis(30));
        m.connect_call("CreateSecurityProfile", "ok");
        m.connect_call("DescribeSecurityProfile", "ThrottlingException");
        m.limiter_wait(Duration::from_millis(1500));
        m.status_write();
        m.set_leader(true);
        let text = m.render();
        assert!(text.contains("connect_operator_reconciles_total{result=\"success\",category=\"\"} 1\n"), "{text}");
        assert!(text.contains("connect_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("connect_operator_reconcile_duration_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("connect_operator_reconcile_duration_seconds_bucket{le=\"30\"} 1\n"));
        assert!(text.contains("connect_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("connect_operator_reconcile_duration_seconds_count 1\n"));
        assert!(
            text.contains(
                "connect_operator_connect_calls_total{operation=\"CreateSecurityProfile\",outcome=\"ok\"} 1\n"
            )
        );
        assert!(text.contains("connect_operator_connect_throttled_total 1\n"));
        assert!(text.contains("connect_operator_rate_limiter_wait_seconds_total 1.5\n"));
        assert!(text.contains("connect_operator_status_writes_total 1\n"));
        assert!(text.contains("connect_operator_leader 1\n"));
        assert_eq!(m.connect_calls_total(), 2);
    }

    /// The names, types and help texts are those the chart's PrometheusRule and dashboards know. A
    /// labelled family without any series yet is left out (as the Go client does).
    #[test]
    fn declares_the_families_the_rules_and_dashboards_know() {
        let m = Metrics::default();
        let declared = |text: &str| text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(declared(&m.render()), 8, "{}", m.render());
        m.reconcile("error", "validation", Duration::from_secs(1));
        m.connect_call("DescribeSecurityProfile", "ok");
        m.prioritized_call("background", Duration::from_millis(250));
        m.instance_listed("eu-west-2", "i-1");
        let text = m.render();
        let declared: Vec<&str> = text.lines().filter(|l| l.starts_with("# ")).collect();
        assert_eq!(
            declared,
            [
                "# HELP connect_operator_reconciles_total Reconciles by result and error category.",
                "# TYPE connect_operator_reconciles_total counter",
                "# HELP connect_operator_reconcile_duration_seconds Time per reconcile.",
                "# TYPE connect_operator_reconcile_duration_seconds histogram",
                "# HELP connect_operator_connect_calls_total Calls to Amazon Connect by operation and outcome.",
                "# TYPE connect_operator_connect_calls_total counter",
                "# HELP connect_operator_connect_throttled_total Connect calls answered with ThrottlingException.",
                "# TYPE connect_operator_connect_throttled_total counter",
                "# HELP connect_operator_rate_limiter_wait_seconds_total Time calls waited for the client-side rate limiter.",
                "# TYPE connect_operator_rate_limiter_wait_seconds_total counter",
                "# HELP connect_operator_status_writes_total Status patches sent to the API server.",
                "# TYPE connect_operator_status_writes_total counter",
                "# HELP connect_operator_leader Whether this replica holds the leader lease.",
                "# TYPE connect_operator_leader gauge",
                "# HELP connect_operator_connect_calls_by_priority_total Calls to Amazon Connect by priority (user work or background observation).",
                "# TYPE connect_operator_connect_calls_by_priority_total counter",
                "# HELP connect_operator_rate_limiter_wait_by_priority_seconds_total Time calls waited for the client-side rate limiter, by priority.",
                "# TYPE connect_operator_rate_limiter_wait_by_priority_seconds_total counter",
                "# HELP connect_operator_reads_saved_total Profile reads an instance listing made unnecessary (confirmed unchanged).",
                "# TYPE connect_operator_reads_saved_total counter",
                "# HELP connect_operator_instance_listing_last_success_timestamp_seconds When each observed instance was last listed (Unix time).",
                "# TYPE connect_operator_instance_listing_last_success_timestamp_seconds gauge",
                "# HELP connect_operator_revoked_profiles SecurityProfiles whose profile exists in Connect but whose InstanceBinding no longer allows it (PermissionRevoked, BindingRevoked).",
                "# TYPE connect_operator_revoked_profiles gauge",
                "# HELP connect_operator_events_queue_up Whether the queue of Connect's CloudTrail events is being read (0 when it cannot be, or --events-queue-url is not set).",
                "# TYPE connect_operator_events_queue_up gauge",
            ]
        );
    }

    #[test]
    fn escapes_label_values() {
        let m = Metrics::default();
        m.connect_call("Op", "a\"b\\c\nd");
        assert!(m.render().contains(r#"outcome="a\"b\\c\nd"} 1"#), "{}", m.render());
    }
}
