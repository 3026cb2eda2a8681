//! Prometheus metrics in the text exposition format, without a metrics framework: a handful of
//! counters and one histogram.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    reconciles: Mutex<BTreeMap<(String, String), u64>>,
    reconcile_duration: Mutex<Histogram>,
    connect_calls: Mutex<BTreeMap<(String, String), u64>>,
    throttled: Mutex<u64>,
    limiter_wait_seconds: Mutex<f64>,
    status_writes: Mutex<u64>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// One reconcile: `result` is `success` or `error`, `category` the error's step category.
    pub fn reconcile(&self, result: &str, category: &str, took: Duration) {
        *self.reconciles.lock().expect("metrics").entry((result.into(), category.into())).or_default() += 1;
        let mut h = self.reconcile_duration.lock().expect("metrics");
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// One Connect call: `outcome` is `ok` or the error code.
    pub fn connect_call(&self, operation: &str, outcome: &str) {
        *self.connect_calls.lock().expect("metrics").entry((operation.into(), outcome.into())).or_default() += 1;
        if outcome == "ThrottlingException" {
            *self.throttled.lock().expect("metrics") += 1;
        }
    }

    pub fn limiter_wait(&self, waited: Duration) {
        *self.limiter_wait_seconds.lock().expect("metrics") += waited.as_secs_f64();
    }

    pub fn status_write(&self) {
        *self.status_writes.lock().expect("metrics") += 1;
    }

    /// Total Connect calls so far (all operations and outcomes).
    pub fn connect_calls_total(&self) -> u64 {
        self.connect_calls.lock().expect("metrics").values().sum()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP connect_operator_reconciles_total Reconciles by result and error category.");
        let _ = writeln!(out, "# TYPE connect_operator_reconciles_total counter");
        for ((result, category), n) in self.reconciles.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "connect_operator_reconciles_total{{result=\"{}\",category=\"{}\"}} {n}",
                escape(result),
                escape(category)
            );
        }
        let h = self.reconcile_duration.lock().expect("metrics");
        let _ = writeln!(out, "# HELP connect_operator_reconcile_duration_seconds Time per reconcile.");
        let _ = writeln!(out, "# TYPE connect_operator_reconcile_duration_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let n = h.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "connect_operator_reconcile_duration_seconds_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(out, "connect_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "connect_operator_reconcile_duration_seconds_sum {}", h.sum);
        let _ = writeln!(out, "connect_operator_reconcile_duration_seconds_count {}", h.count);
        drop(h);
        let _ = writeln!(
            out,
            "# HELP connect_operator_connect_calls_total Calls to Amazon Connect by operation and outcome."
        );
        let _ = writeln!(out, "# TYPE connect_operator_connect_calls_total counter");
        for ((op, outcome), n) in self.connect_calls.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "connect_operator_connect_calls_total{{operation=\"{}\",outcome=\"{}\"}} {n}",
                escape(op),
                escape(outcome)
            );
        }
        let _ = writeln!(
            out,
            "# HELP connect_operator_connect_throttled_total Connect calls answered with ThrottlingException."
        );
        let _ = writeln!(out, "# TYPE connect_operator_connect_throttled_total counter");
        let _ = writeln!(out, "connect_operator_connect_throttled_total {}", self.throttled.lock().expect("metrics"));
        let _ = writeln!(
            out,
            "# HELP connect_operator_rate_limiter_wait_seconds_total Time calls waited for the client-side rate limiter."
        );
        let _ = writeln!(out, "# TYPE connect_operator_rate_limiter_wait_seconds_total counter");
        let _ = writeln!(
            out,
            "connect_operator_rate_limiter_wait_seconds_total {}",
            self.limiter_wait_seconds.lock().expect("metrics")
        );
        let _ = writeln!(out, "# HELP connect_operator_status_writes_total Status patches sent to the API server.");
        let _ = writeln!(out, "# TYPE connect_operator_status_writes_total counter");
        let _ = writeln!(out, "connect_operator_status_writes_total {}", self.status_writes.lock().expect("metrics"));
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
        let text = m.render();
        assert!(text.contains("connect_operator_reconciles_total{result=\"success\",category=\"\"} 1"));
        assert!(text.contains("connect_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("connect_operator_reconcile_duration_seconds_bucket{le=\"0.025\"} 0"));
        assert!(
            text.contains("connect_operator_connect_calls_total{operation=\"CreateSecurityProfile\",outcome=\"ok\"} 1")
        );
        assert!(text.contains("connect_operator_connect_throttled_total 1"));
        assert_eq!(m.connect_calls_total(), 2);
    }
}
