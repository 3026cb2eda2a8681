//! Leader election through a coordination.k8s.io/v1 Lease, so that two replicas are safe: only the
//! holder reconciles; a standby takes over when the holder stops renewing for the lease duration. A
//! holder that cannot renew in time stops reconciling (the process exits, and restarts as a candidate).
//!
//! As in client-go, a standby never compares its clock with the holder's `renewTime`: it notes on its
//! own monotonic clock when it saw the lease record change, and takes over only when the lease
//! duration has passed since then without a change. Clock skew between nodes cannot make it take a
//! lease that is still being renewed.
//!
//! Hand-written, on purpose for that takeover rule ([`Observer`]): the maintained crates,
//! kube-leader-election (`LeaseLock::try_acquire_or_renew`) and kube-lease-manager (`LeaseManager`),
//! decide expiry by comparing the holder's `renewTime` plus `leaseDurationSeconds` with the local wall
//! clock (as of the versions read when this was written), so a standby whose clock runs ahead of the
//! holder's can take a lease that is still renewed. The rest is ordinary: a Lease read and a replace
//! guarded by its resourceVersion (a compare-and-swap, as client-go does), a renew deadline shorter than
//! the duration, release on shutdown. Switching to one of those crates is reasonable once it times
//! expiry on the candidate's own monotonic clock; the tests of this module are then its acceptance
//! tests (a lease another replica renews is never taken, a renewal time in the future does not delay
//! the takeover, any change restarts the wait).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (pod name, else hostname and pid).
    pub identity: String,
    pub duration: Duration,
    /// How often the holder renews, and candidates retry.
    pub renew_every: Duration,
    /// How long the holder keeps leading without a successful renewal; shorter than `duration`, so
    /// that it stops before a standby can take over.
    pub renew_deadline: Duration,
}

impl LeaseConfig {
    /// `duration` with the holder renewing every third of it and giving up after two thirds
    /// (client-go's defaults are 15s, 2s and 10s).
    pub fn new(name: String, namespace: String, identity: String, duration: Duration) -> Self {
        LeaseConfig { name, namespace, identity, renew_every: duration / 3, renew_deadline: duration * 2 / 3, duration }
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// What a lease says, as far as its expiry goes: any change of it is a sign of life of its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub renew_time: Option<jiff::Timestamp>,
    pub resource_version: Option<String>,
    /// The holder's `leaseDurationSeconds`.
    pub duration: Option<Duration>,
}

impl Record {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Record {
            holder: spec.and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            resource_version: lease.metadata.resource_version.clone(),
            duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }
}

/// What to do with a lease that was just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It is ours: renew it.
    Renew,
    /// Nobody holds it, or its holder has not renewed it for its duration: take it.
    Take,
    /// Another replica holds it and renewed it less than its duration ago, as seen from here.
    Wait,
}

/// A candidate's memory of the lease: the record it last saw and when it first saw it, on this
/// process's monotonic clock (client-go's `observedRecord` and `observedTime`).
#[derive(Debug, Default)]
pub struct Observer {
    seen: Option<(Record, Instant)>,
}

impl Observer {
    /// Notes `record`, read at `at`, and decides. `default_duration` applies when the lease does not
    /// say its own.
    pub fn decide(&mut self, record: Record, identity: &str, default_duration: Duration, at: Instant) -> Decision {
        let duration = record.duration.unwrap_or(default_duration);
        let decision = match &record.holder {
            Some(holder) if holder == identity => Decision::Renew,
            None => Decision::Take,
            Some(_) => match &self.seen {
                Some((seen, since)) if *seen == record && at.saturating_duration_since(*since) >= duration => {
                    Decision::Take
                }
                _ => Decision::Wait,
            },
        };
        self.observe(record, at);
        decision
    }

    /// Notes `record` (read or written by this replica) at `at`; keeps the earlier time when it is
    /// unchanged.
    pub fn observe(&mut self, record: Record, at: Instant) {
        if self.seen.as_ref().is_none_or(|(seen, _)| *seen != record) {
            self.seen = Some((record, at));
        }
    }
}

/// Takes part in the election for one lease.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observer: Observer,
    /// When the last attempt that took or renewed the lease started: its write landed after that.
    renewed: Option<Instant>,
}

impl Elector {
    pub fn new(api: Api<Lease>, cfg: LeaseConfig) -> Self {
        Elector { api, cfg, observer: Observer::default(), renewed: None }
    }

    /// One attempt to take or keep the lease; `Ok(true)` when this replica holds it afterwards.
    pub async fn try_acquire(&mut self) -> kube::Result<bool> {
        let started = Instant::now();
        let held = self.take_or_renew().await?;
        if held {
            self.renewed = Some(started);
        }
        Ok(held)
    }

    async fn take_or_renew(&mut self) -> kube::Result<bool> {
        let cfg = &self.cfg;
        let duration_secs = cfg.duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observer.observe(Record::of(&created), Instant::now());
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        // Seen when the answer came, as client-go's observedTime: the later, the safer.
        let decision = self.observer.decide(Record::of(&lease), &cfg.identity, cfg.duration, Instant::now());
        if decision == Decision::Wait {
            return Ok(false);
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if decision == Decision::Take {
            spec.holder_identity = Some(cfg.identity.clone());
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now());
        // The resourceVersion in `lease` makes this a compare-and-swap.
        match self.api.replace(&cfg.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observer.observe(Record::of(&written), Instant::now());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&mut self) {
        let mut announced = false;
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    info!(lease = %self.cfg.name, identity = %self.cfg.identity, "acquired the leader lease");
                    return;
                }
                Ok(false) if !announced => {
                    info!(lease = %self.cfg.name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election: cannot read or write the lease"),
            }
            tokio::time::sleep(self.cfg.renew_every).await;
        }
    }

    /// Renews the lease until it is lost, or not renewed within the renew deadline; returns when
    /// this replica must stop leading. Call right after [`Elector::acquire`].
    pub async fn hold(&mut self) {
        loop {
            tokio::time::sleep(self.cfg.renew_every).await;
            let renewed = *self.renewed.get_or_insert_with(Instant::now);
            let left = self.cfg.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    warn!(lease = %self.cfg.name, "the leader lease was taken by another replica");
                    return;
                }
                Ok(Err(e)) if renewed.elapsed() < self.cfg.renew_deadline => {
                    warn!(error = %e, "cannot renew the leader lease; retrying");
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot renew the leader lease");
                    return;
                }
                Err(_) => {
                    warn!(deadline = ?self.cfg.renew_deadline, "could not renew the leader lease in time");
                    return;
                }
            }
        }
    }

    /// Gives the lease up on shutdown so a standby takes over at once.
    pub async fn release(&self) {
        let cfg = &self.cfg;
        let Ok(Some(mut lease)) = self.api.get_opt(&cfg.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(now());
        match self.api.replace(&cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %cfg.name, "released the leader lease"),
            Err(e) => warn!(error = %e, "could not release the leader lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn record(holder: Option<&str>, renewed: &str, rv: &str) -> Record {
        Record {
            holder: holder.map(str::to_string),
            renew_time: Some(renewed.parse().unwrap()),
            resource_version: Some(rv.to_string()),
            duration: Some(15 * SECOND),
        }
    }

    #[test]
    fn a_lease_another_replica_renews_is_never_taken() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        for i in 0..10u32 {
            // Renewed every 5s; the holder's clock says the renewal is an hour old.
            let r = record(Some("a"), &format!("2020-01-01T00:00:{:02}Z", i * 5), &i.to_string());
            assert_eq!(o.decide(r, "b", 15 * SECOND, t0 + 5 * i * SECOND), Decision::Wait, "read {i}");
        }
    }

    #[test]
    fn a_standby_takes_over_a_lease_duration_after_it_last_saw_a_change() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        // The holder's renewTime is far in the past by our clock: that alone does not expire it.
        let r = record(Some("a"), "2000-01-01T00:00:00Z", "7");
        assert_eq!(o.decide(r.clone(), "b", 15 * SECOND, t0), Decision::Wait);
        assert_eq!(o.decide(r.clone(), "b", 15 * SECOND, t0 + 14 * SECOND), Decision::Wait);
        assert_eq!(o.decide(r.clone(), "b", 15 * SECOND, t0 + 15 * SECOND), Decision::Take);
    }

    #[test]
    fn a_renewal_time_in_the_future_does_not_delay_the_takeover() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let r = record(Some("a"), "2999-01-01T00:00:00Z", "7");
        assert_eq!(o.decide(r.clone(), "b", 15 * SECOND, t0), Decision::Wait);
        assert_eq!(o.decide(r, "b", 15 * SECOND, t0 + 15 * SECOND), Decision::Take);
    }

    #[test]
    fn any_change_restarts_the_wait() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let r = record(Some("a"), "2020-01-01T00:00:00Z", "1");
        assert_eq!(o.decide(r.clone(), "b", 15 * SECOND, t0), Decision::Wait);
        // Same renewTime but a new resourceVersion (e.g. a write of another field), then a new holder.
        let r2 = Record { resource_version: Some("2".into()), ..r.clone() };
        assert_eq!(o.decide(r2.clone(), "b", 15 * SECOND, t0 + 10 * SECOND), Decision::Wait);
        assert_eq!(o.decide(r2.clone(), "b", 15 * SECOND, t0 + 20 * SECOND), Decision::Wait);
        let r3 = Record { holder: Some("c".into()), ..r2.clone() };
        assert_eq!(o.decide(r3.clone(), "b", 15 * SECOND, t0 + 25 * SECOND), Decision::Wait);
        assert_eq!(o.decide(r3, "b", 15 * SECOND, t0 + 40 * SECOND), Decision::Take);
    }

    #[test]
    fn the_lease_s_own_duration_applies() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let r = Record { duration: Some(3 * SECOND), ..record(Some("a"), "2020-01-01T00:00:00Z", "1") };
        assert_eq!(o.decide(r.clone(), "b", 15 * SECOND, t0), Decision::Wait);
        assert_eq!(o.decide(r.clone(), "b", 15 * SECOND, t0 + 3 * SECOND), Decision::Take);
        let r = Record { duration: None, resource_version: Some("2".into()), ..r };
        assert_eq!(o.decide(r.clone(), "b", 10 * SECOND, t0 + 4 * SECOND), Decision::Wait);
        assert_eq!(o.decide(r, "b", 10 * SECOND, t0 + 14 * SECOND), Decision::Take);
    }

    #[test]
    fn an_own_or_free_lease_needs_no_wait() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        assert_eq!(o.decide(record(Some("b"), "2020-01-01T00:00:00Z", "1"), "b", 15 * SECOND, t0), Decision::Renew);
        assert_eq!(o.decide(record(None, "2020-01-01T00:00:00Z", "2"), "b", 15 * SECOND, t0), Decision::Take);
        let lease = Lease {
            metadata: ObjectMeta { resource_version: Some("3".into()), ..ObjectMeta::default() },
            spec: Some(LeaseSpec { holder_identity: Some(String::new()), ..LeaseSpec::default() }),
        };
        assert_eq!(Record::of(&lease).holder, None, "an empty holderIdentity is no holder");
        assert_eq!(o.decide(Record::of(&lease), "b", 15 * SECOND, t0), Decision::Take);
    }

    #[test]
    fn the_holder_stops_before_a_standby_may_take_over() {
        let cfg = LeaseConfig::new("l".into(), "ns".into(), "a".into(), 15 * SECOND);
        assert_eq!((cfg.renew_every, cfg.renew_deadline), (5 * SECOND, 10 * SECOND));
        assert!(cfg.renew_deadline < cfg.duration);
    }
}
