//! Leader election through a coordination.k8s.io/v1 Lease, so that two replicas are safe: only the
//! holder reconciles; a standby takes over when the holder stops renewing for the lease duration. A
//! holder that cannot renew in time stops reconciling (the process exits, and restarts as a candidate).

use std::time::Duration;

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
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn expired(spec: &LeaseSpec, duration: Duration) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else { return true };
    let secs = spec.lease_duration_seconds.map(|s| s as u64).unwrap_or(duration.as_secs());
    let age = jiff::Timestamp::now().duration_since(renewed.0).as_secs_f64();
    age > secs as f64
}

/// One attempt to take or keep the lease; `Ok(true)` when this replica holds it afterwards.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> kube::Result<bool> {
    let duration_secs = cfg.duration.as_secs().max(1) as i32;
    match api.get_opt(&cfg.name).await? {
        None => {
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
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            let ours = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
            let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
            if !ours && !free && !expired(spec, cfg.duration) {
                return Ok(false);
            }
            if !ours {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(duration_secs);
            spec.renew_time = Some(now());
            // The resourceVersion in `lease` makes this a compare-and-swap.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaseConfig) {
    let mut announced = false;
    loop {
        match try_acquire(api, cfg).await {
            Ok(true) => {
                info!(lease = %cfg.name, identity = %cfg.identity, "acquired the leader lease");
                return;
            }
            Ok(false) if !announced => {
                info!(lease = %cfg.name, "another replica leads; standing by");
                announced = true;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "leader election: cannot read or write the lease"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Renews the lease until it is lost; returns when this replica no longer holds it.
pub async fn hold(api: &Api<Lease>, cfg: &LeaseConfig) {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        match try_acquire(api, cfg).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                warn!(lease = %cfg.name, "the leader lease was taken by another replica");
                return;
            }
            Err(e) => {
                warn!(error = %e, "cannot renew the leader lease");
                if last_renewal.elapsed() >= cfg.duration {
                    return;
                }
            }
        }
    }
}

/// Gives the lease up on shutdown so a standby takes over at once.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else { return };
    let Some(spec) = lease.spec.as_mut() else { return };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %cfg.name, "released the leader lease"),
        Err(e) => warn!(error = %e, "could not release the leader lease"),
    }
}
