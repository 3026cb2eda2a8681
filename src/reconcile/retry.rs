//! When to run a reconcile again: after a failure, from the error's own [`Retry`] decision; after a
//! success, one jittered resync interval later.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;

use super::context::{Context, Settings, Terminal, key};
use super::error::{Error, Retry};

/// The controller's error policy: remembers terminal failures for their generation and requeues the
/// rest per [`retry_after`].
pub fn error_policy<C, K: Resource>(obj: Arc<K>, err: &Error, ctx: Arc<Context<C>>) -> Action {
    let key = key(obj.meta());
    let failures = {
        let mut map = ctx.failures.lock().expect("failures lock");
        let n = map.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if err.retry() == Retry::WhenSpecChanges {
        let terminal = Terminal { generation: obj.meta().generation, lifted_by_adoption: err.lifted_by_adoption() };
        ctx.terminal.lock().expect("terminal lock").insert(key, terminal);
    }
    match retry_after(&ctx.settings, err, failures) {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    }
}

/// When to retry after `err`, the `failures`-th in a row (None: when the spec changes).
pub fn retry_after(s: &Settings, err: &Error, failures: u32) -> Option<Duration> {
    match err.retry() {
        Retry::WhenSpecChanges => None,
        // The binding watch requeues at once when a binding changes; a namespace's labels (which the
        // bindings' selectors match) have no watch, so look again slowly. Costs no Connect call.
        Retry::WhenBindingsChange => Some(jitter(s.slow_retry)),
        Retry::Slowly => Some(jitter(s.slow_retry)),
        Retry::Backoff => Some(backoff(s, failures)),
    }
}

/// `retry_base * 2^(failures-1)`, capped at `retry_max`, with ±25% jitter.
pub fn backoff(s: &Settings, failures: u32) -> Duration {
    let exp = s.retry_base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    jitter(exp.min(s.retry_max))
}

/// Retries are spread ±25%.
fn jitter(d: Duration) -> Duration {
    crate::domain::jitter(d, 0.25)
}

/// The next observation of an in-sync profile: the resync interval ±10%.
pub fn resync_delay(s: &Settings) -> Duration {
    crate::domain::jitter(s.resync, 0.1)
}
