//! The controller: for each SecurityProfile, `validate -> (create | observe) -> update_status`, with a
//! finalizer for deletion. Pure steps live in [`validate`] and [`status`]; Connect is reached only
//! through [`ConnectApi`].

pub mod plan;
pub mod status;
pub mod validate;

#[cfg(test)]
mod scenarios;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::api::{
    ADOPT_ANNOTATION, DeletionPolicy, FINALIZER, OWNER_UID_TAG, ROLE_ANNOTATION, SecurityProfile, SecurityProfileStatus,
};
use crate::connect::{ConnectApi, ConnectError, ErrorClass, FoundProfile, ProfileRef, Target};
use crate::runtime::Metrics;
use status::{Identity, Outcome, reason};

/// Field manager of the operator's writes.
pub const MANAGER: &str = "connect-operator";

/// Tunables of the controller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Re-observe every profile this often (drift repair), with ±10% jitter.
    pub resync: Duration,
    /// First retry delay of a recoverable error; doubles per failure, with jitter.
    pub retry_base: Duration,
    /// Cap of the recoverable backoff.
    pub retry_max: Duration,
    /// Delay of quota and unknown-instance retries.
    pub slow_retry: Duration,
    /// Reconciles in parallel.
    pub concurrency: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(600),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            slow_retry: Duration::from_secs(300),
            concurrency: 4,
        }
    }
}

/// One error type; each variant says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed while {step}: {source}")]
    Kube {
        step: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("Connect call failed while {step}: {source}")]
    Connect {
        step: &'static str,
        #[source]
        source: ConnectError,
    },
    /// The spec breaks a rule; the status says which. Retried only when the spec changes.
    #[error("invalid spec: {0}")]
    Invalid(String),
    /// No Region in the spec and none configured for the operator.
    #[error("no AWS Region: set spec.region or AWS_REGION for the operator")]
    NoRegion,
}

impl Error {
    /// Step category, for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kubernetes",
            Error::Connect { .. } => "connect",
            Error::Invalid(_) => "validation",
            Error::NoRegion => "configuration",
        }
    }
}

pub struct Context<C> {
    pub client: kube::Client,
    pub connect: C,
    pub default_region: Option<String>,
    pub settings: Settings,
    reporter: Reporter,
    failures: Mutex<HashMap<String, u32>>,
    /// When each in-sync profile is next due for observation (drift check); until then a reconcile
    /// triggered by a metadata change (finalizer, annotation) costs no Connect call.
    next_observe: Mutex<HashMap<String, std::time::Instant>>,
    /// The status this process last wrote, by object UID. The watch cache can lag behind our own
    /// writes; the operator is the only writer of status, so its last write is the freshest view.
    last_status: Mutex<HashMap<String, SecurityProfileStatus>>,
    /// Role annotations of namespaces, read at most once a minute each.
    namespace_roles: Mutex<HashMap<String, (Option<String>, std::time::Instant)>>,
    pub metrics: Arc<Metrics>,
}

impl<C: ConnectApi> Context<C> {
    pub fn new(
        client: kube::Client,
        connect: C,
        default_region: Option<String>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.to_string());
        Self {
            reporter: Reporter { controller: MANAGER, instance },
            client,
            connect,
            default_region,
            settings,
            failures: Mutex::new(HashMap::new()),
            next_observe: Mutex::new(HashMap::new()),
            last_status: Mutex::new(HashMap::new()),
            namespace_roles: Mutex::new(HashMap::new()),
            metrics,
        }
    }
}

impl<C> Context<C> {
    /// The IAM role the namespace's annotation names, if any (cached for a minute).
    async fn namespace_role(&self, ns: &str) -> Option<String> {
        if let Some((role, at)) = self.namespace_roles.lock().expect("roles lock").get(ns)
            && at.elapsed() < Duration::from_secs(60)
        {
            return role.clone();
        }
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let role = match api.get_opt(ns).await {
            Ok(n) => n.and_then(|n| n.annotations().get(ROLE_ANNOTATION).cloned()),
            Err(e) => {
                warn!(namespace = ns, error = %e, "cannot read the namespace's role annotation; using the operator's credentials");
                None
            }
        };
        self.namespace_roles
            .lock()
            .expect("roles lock")
            .insert(ns.to_string(), (role.clone(), std::time::Instant::now()));
        role
    }
}

fn key(meta: &kube::api::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

/// Runs the controller until SIGTERM/SIGINT: all namespaces when `namespaces` is empty, else those.
pub async fn run<C: ConnectApi>(ctx: Arc<Context<C>>, namespaces: Vec<String>) -> anyhow::Result<()> {
    let probe: Api<DeserializeGuard<SecurityProfile>> = Api::all(ctx.client.clone());
    if let Err(e) = probe.list(&kube::api::ListParams::default().limit(1)).await {
        if matches!(&e, kube::Error::Api(s) if s.is_not_found()) {
            anyhow::bail!(
                "the SecurityProfile CRD is not installed: run `connect-operator crd | kubectl apply -f -` (or install the Helm chart)"
            );
        }
        if namespaces.is_empty() {
            return Err(anyhow::anyhow!(e).context("cannot list SecurityProfiles in all namespaces"));
        }
    }
    let apis: Vec<Api<DeserializeGuard<SecurityProfile>>> = if namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        namespaces.iter().map(|ns| Api::namespaced(ctx.client.clone(), ns)).collect()
    };
    let controllers = apis.into_iter().map(|api| {
        let (reader, writer) = reflector::store();
        // Only changes that can alter what the reconcile does trigger it; our own status writes do not.
        let deletion = |o: &DeserializeGuard<SecurityProfile>| o.meta().deletion_timestamp.as_ref().map(|_| 1u64);
        let trigger = watcher(api, watcher::Config::default().page_size(100))
            .default_backoff()
            // The cache keeps what reconciles read: not managedFields nor kubectl's copy of the manifest.
            .modify(|o: &mut DeserializeGuard<SecurityProfile>| {
                o.managed_fields_mut().clear();
                o.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
            })
            .reflect(writer)
            .applied_objects()
            .predicate_filter(
                predicates::generation
                    .combine(predicates::finalizers)
                    .combine(predicates::annotations)
                    .combine(deletion),
                Default::default(),
            );
        Controller::for_stream(trigger, reader)
            .with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency))
            .graceful_shutdown_on(shutdown_signal())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                match result {
                    Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                    Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                        info!(object = %obj, category = e.category(), error = %e, "reconcile failed")
                    }
                    Err(e) => warn!(error = %e, "controller error"),
                }
            })
    });
    futures::future::join_all(controllers).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down: finishing reconciles in flight");
}

/// Entry point for one object.
pub async fn reconcile<C: ConnectApi>(
    obj: Arc<DeserializeGuard<SecurityProfile>>,
    ctx: Arc<Context<C>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = match &obj.0 {
        Ok(profile) => reconcile_profile(profile, &ctx).await,
        Err(invalid) => report_invalid_object(invalid, &ctx).await,
    };
    match &result {
        Ok(_) => {
            ctx.metrics.reconcile("success", "", started.elapsed());
            ctx.failures.lock().expect("failures lock").remove(&key(obj.meta()));
        }
        Err(e) => ctx.metrics.reconcile("error", e.category(), started.elapsed()),
    }
    result
}

/// Requeue policy by error class; recoverable errors back off exponentially with jitter.
pub fn error_policy<C: ConnectApi>(
    obj: Arc<DeserializeGuard<SecurityProfile>>,
    err: &Error,
    ctx: Arc<Context<C>>,
) -> Action {
    let failures = {
        let mut map = ctx.failures.lock().expect("failures lock");
        let n = map.entry(key(obj.meta())).or_insert(0);
        *n += 1;
        *n
    };
    match retry_after(&ctx.settings, err, failures) {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    }
}

/// When to retry after `err`, the `failures`-th in a row: never (until the spec changes) for terminal
/// errors, slowly for quota and unknown-instance errors, with exponential backoff for the rest.
pub fn retry_after(s: &Settings, err: &Error, failures: u32) -> Option<Duration> {
    match err {
        Error::Invalid(_) => None,
        Error::Connect { source, .. } => match source.class {
            ErrorClass::Terminal | ErrorClass::Duplicate => None,
            ErrorClass::Quota | ErrorClass::NotFound => Some(jitter(s.slow_retry)),
            ErrorClass::Recoverable | ErrorClass::InUse => Some(backoff(s, failures)),
        },
        Error::NoRegion => Some(jitter(s.slow_retry)),
        Error::Kube { .. } => Some(backoff(s, failures)),
    }
}

/// `retry_base * 2^(failures-1)`, capped at `retry_max`, with ±25% jitter.
pub fn backoff(s: &Settings, failures: u32) -> Duration {
    let exp = s.retry_base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    jitter(exp.min(s.retry_max))
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.75..1.25))
}

/// The instance ID inside a profile ARN (`...:instance/{instance}/security-profile/{id}`).
pub fn instance_of_arn(arn: &str) -> Option<&str> {
    arn.split_once(":instance/")?.1.split('/').next()
}

async fn reconcile_profile<C: ConnectApi>(cached: &SecurityProfile, ctx: &Context<C>) -> Result<Action, Error> {
    let fresher = cached.uid().and_then(|uid| {
        let mut last = ctx.last_status.lock().expect("last_status lock");
        let ours = last.get(&uid)?;
        if cached.status.as_ref().is_some_and(|c| status::unchanged(Some(c), ours)) {
            // The cache has caught up with our last write: it needs no copy any more.
            last.remove(&uid);
            return None;
        }
        Some(ours.clone())
    });
    let profile = &match fresher {
        Some(status) if cached.status.as_ref() != Some(&status) => {
            let mut p = cached.clone();
            p.status = Some(status);
            p
        }
        _ => cached.clone(),
    };
    let ns = profile.namespace().unwrap_or_default();
    let api: Api<SecurityProfile> = Api::namespaced(ctx.client.clone(), &ns);
    if profile.metadata.deletion_timestamp.is_some() {
        return cleanup(profile, &api, ctx).await;
    }
    ensure_finalizer(profile, &api).await?;
    let generation = profile.metadata.generation;
    let status = profile.status.as_ref();
    if let Some(terminal) = status::terminal_for_generation(status, generation)
        && !(wants_adoption(profile) && terminal.reason == "DuplicateResourceException")
    {
        // Already reported for this generation: nothing to do until the spec changes.
        return Ok(Action::await_change());
    }
    let current_instance = status.and_then(|s| s.security_profile_arn.as_deref()).and_then(instance_of_arn);
    if let Err(errors) = validate::validate_spec(&profile.spec, current_instance) {
        let message = format!("{}. Fix the spec; nothing was sent to Connect.", validate::describe(&errors));
        let outcome = Outcome::failed(reason::VALIDATION_FAILED, &message, has_ready_profile(profile));
        write_status(profile, &api, ctx, Identity::Keep, &outcome).await?;
        return Err(Error::Invalid(message));
    }
    let Some(region) = profile.spec.region.clone().or_else(|| ctx.default_region.clone()) else {
        let message = "No AWS Region: set spec.region, or AWS_REGION for the operator";
        write_status(profile, &api, ctx, Identity::Keep, &Outcome::failed(reason::NO_REGION, message, false)).await?;
        return Err(Error::NoRegion);
    };
    let role_arn = ctx.namespace_role(&ns).await;
    let target = Target { region, instance_id: profile.spec.instance_id.clone(), role_arn };
    if let Some(wait) = not_due(profile, ctx) {
        return Ok(Action::requeue(wait));
    }
    let pipeline = Pipeline { profile, api: &api, ctx, target: &target };
    match status.and_then(|s| s.security_profile_id.clone()) {
        None => pipeline.acquire().await,
        Some(id) => pipeline.sync(&id).await,
    }
}

/// How long until an in-sync profile is due for its next observation, if it is not due yet.
fn not_due<C>(profile: &SecurityProfile, ctx: &Context<C>) -> Option<Duration> {
    let status = profile.status.as_ref()?;
    let current = status.security_profile_id.is_some()
        && status.observed_generation == profile.metadata.generation
        && profile.condition(status::READY).is_some_and(|c| c.status == "True")
        && profile.condition(status::SYNCED).is_some_and(|c| c.status == "True");
    let due = *ctx.next_observe.lock().expect("next_observe lock").get(&key(&profile.metadata))?;
    let now = std::time::Instant::now();
    (current && due > now).then(|| due - now)
}

/// Records a successful sync: the next observation is one (jittered) resync interval away.
fn synced<C>(profile: &SecurityProfile, ctx: &Context<C>) -> Action {
    let wait = jitter_resync(&ctx.settings);
    ctx.next_observe
        .lock()
        .expect("next_observe lock")
        .insert(key(&profile.metadata), std::time::Instant::now() + wait);
    Action::requeue(wait)
}

fn wants_adoption(profile: &SecurityProfile) -> bool {
    profile.annotations().get(ADOPT_ANNOTATION).is_some_and(|v| v == "true")
}

fn jitter_resync(s: &Settings) -> Duration {
    s.resync.mul_f64(rand::random_range(0.9..1.1))
}

/// True when the status says a profile exists and matched its spec when last synced.
fn has_ready_profile(profile: &SecurityProfile) -> bool {
    profile.status.as_ref().and_then(|s| s.security_profile_id.as_ref()).is_some()
        && profile.condition(status::READY).is_some_and(|c| c.status == "True")
}

/// The tags a created profile carries: the spec's, plus the owner tag with this resource's UID.
pub fn tags_with_owner(profile: &SecurityProfile) -> BTreeMap<String, String> {
    let mut tags = profile.spec.tags.clone().unwrap_or_default();
    tags.insert(OWNER_UID_TAG.into(), profile.uid().unwrap_or_default());
    tags
}

/// One reconcile of one valid, live resource in one Region and instance.
struct Pipeline<'a, C> {
    profile: &'a SecurityProfile,
    api: &'a Api<SecurityProfile>,
    ctx: &'a Context<C>,
    target: &'a Target,
}

impl<C: ConnectApi> Pipeline<'_, C> {
    fn name(&self) -> &str {
        &self.profile.spec.security_profile_name
    }

    fn uid(&self) -> String {
        self.profile.uid().unwrap_or_default()
    }

    /// No profile in status yet: adopt one (by annotation, or ours from a create whose answer was
    /// lost), or create it.
    async fn acquire(&self) -> Result<Action, Error> {
        if wants_adoption(self.profile) {
            let found = self
                .ctx
                .connect
                .find_profile_by_name(self.target, self.name())
                .await
                .map_err(|source| Error::Connect { step: "looking up the profile to adopt", source })?;
            if let Some(found) = found {
                return self.take_over(found, "Adopted").await;
            }
        }
        self.create().await
    }

    /// Takes `found` as this resource's profile unless another resource owns it.
    async fn take_over(&self, found: FoundProfile, how: &str) -> Result<Action, Error> {
        match found.tags.get(OWNER_UID_TAG) {
            Some(owner) if *owner != self.uid() => {
                let message = format!(
                    "Security profile {:?} ({}) in instance {} belongs to another SecurityProfile (UID {owner}); it is never taken over. Choose another securityProfileName.",
                    self.name(),
                    found.profile.id,
                    self.target.instance_id
                );
                let e = ConnectError::new(ErrorClass::Terminal, reason::PROFILE_OWNED_ELSEWHERE, message);
                self.fail(e, "adopting the profile").await
            }
            _ => {
                let ProfileRef { id, arn } = found.profile;
                publish(
                    self.ctx,
                    self.profile,
                    EventType::Normal,
                    how,
                    format!("{how} security profile {:?} ({id}) in instance {}", self.name(), self.target.instance_id),
                )
                .await;
                // Record the identity first, so that a crash from here on cannot lose it.
                let outcome = Outcome::failed(reason::CREATING, "Bringing the adopted profile to the spec", false);
                let identity = Identity::Set { id: id.clone(), arn, last_modified: None };
                let current = write_status(self.profile, self.api, self.ctx, identity, &outcome).await?;
                let mut profile = self.profile.clone();
                profile.status = Some(current);
                Box::pin(Pipeline { profile: &profile, ..*self }.sync(&id)).await
            }
        }
    }

    async fn create(&self) -> Result<Action, Error> {
        let generation = self.profile.metadata.generation.unwrap_or_default();
        let created = match self
            .ctx
            .connect
            .create_profile(self.target, &self.profile.spec, &tags_with_owner(self.profile))
            .await
        {
            Ok(p) => p,
            Err(e) if e.class == ErrorClass::Duplicate => {
                // The name is taken: by our own earlier create whose answer was lost, or by someone else.
                let found = self
                    .ctx
                    .connect
                    .find_profile_by_name(self.target, self.name())
                    .await
                    .map_err(|source| Error::Connect { step: "looking up a profile by name", source })?;
                return match found {
                    Some(f) if f.tags.get(OWNER_UID_TAG) == Some(&self.uid()) => self.take_over(f, "Recovered").await,
                    Some(f) if f.tags.contains_key(OWNER_UID_TAG) => self.take_over(f, "Adopted").await,
                    Some(f) if wants_adoption(self.profile) => self.take_over(f, "Adopted").await,
                    Some(f) => {
                        let message = format!(
                            "A security profile named {:?} ({}) already exists in instance {} and no SecurityProfile owns it. Choose another securityProfileName, or adopt it with the annotation {ADOPT_ANNOTATION}: \"true\"",
                            self.name(),
                            f.profile.id,
                            self.target.instance_id
                        );
                        self.fail(ConnectError { message, ..e }, "creating the profile").await
                    }
                    None => {
                        // Search is eventually consistent: the profile exists but is not listed yet.
                        let e = ConnectError::new(
                            ErrorClass::Recoverable,
                            "DuplicateResourceException",
                            format!("the name {:?} is taken but the profile is not searchable yet", self.name()),
                        );
                        self.fail(e, "creating the profile").await
                    }
                };
            }
            Err(e) if e.outcome_unknown => {
                // The create may have happened (timeout, dropped connection). Look before anything
                // else: a profile with this name that carries our UID is ours.
                return match self.ctx.connect.find_profile_by_name(self.target, self.name()).await {
                    Ok(Some(f)) if f.tags.get(OWNER_UID_TAG) == Some(&self.uid()) => {
                        self.take_over(f, "Recovered").await
                    }
                    // Not there, not searchable yet, or the lookup failed too: report the create's
                    // error and retry; a later create meets DuplicateResource if the profile exists,
                    // and that path adopts it by the same rule.
                    _ => self.fail(e, "creating the profile").await,
                };
            }
            Err(e) => return self.fail(e, "creating the profile").await,
        };
        publish(
            self.ctx,
            self.profile,
            EventType::Normal,
            "Created",
            format!(
                "Created security profile {:?} ({}) in instance {}",
                self.name(),
                created.id,
                self.target.instance_id
            ),
        )
        .await;
        let outcome = Outcome::in_sync(self.name(), &created.id, generation);
        let identity = Identity::Set { id: created.id, arn: created.arn, last_modified: None };
        write_status(self.profile, self.api, self.ctx, identity, &outcome).await?;
        Ok(synced(self.profile, self.ctx))
    }

    /// observe -> plan -> apply -> status, for the profile `id` the status names.
    async fn sync(&self, id: &str) -> Result<Action, Error> {
        let status = self.profile.status.clone().unwrap_or_default();
        let generation = self.profile.metadata.generation;
        // A full read when the spec changed or Connect changed the profile since the last full read.
        let mut full = status.observed_generation != generation || status.connect_last_modified_time.is_none();
        let mut observed = match self.ctx.connect.observe_profile(self.target, id, full).await {
            Ok(o) => o,
            Err(e) if e.class == ErrorClass::NotFound => {
                publish(
                    self.ctx,
                    self.profile,
                    EventType::Warning,
                    "Recreating",
                    format!("Security profile {id} was deleted outside the operator; creating it again"),
                )
                .await;
                return self.create().await;
            }
            Err(e) => return self.fail(e, "reading the profile").await,
        };
        if !full && observed.last_modified != status.connect_last_modified_time {
            full = true;
        }
        if observed.name != *self.name() {
            let message = format!(
                "spec.securityProfileName: is immutable: profile {id} is named {:?} in Connect, the spec says {:?}. Set it back, or create a new SecurityProfile; nothing was changed in Connect.",
                observed.name,
                self.name()
            );
            let outcome = Outcome::failed(reason::VALIDATION_FAILED, &message, false);
            write_status(self.profile, self.api, self.ctx, Identity::Keep, &outcome).await?;
            return Err(Error::Invalid(message));
        }
        if let Some(owner) = observed.tags.get(OWNER_UID_TAG)
            && *owner != self.uid()
        {
            let message = format!(
                "Security profile {id} belongs to another SecurityProfile (UID {owner}); this resource will not change it."
            );
            let e = ConnectError::new(ErrorClass::Terminal, reason::PROFILE_OWNED_ELSEWHERE, message);
            return self.fail(e, "reading the profile").await;
        }
        let desired_tags = tags_with_owner(self.profile);
        let mut update = plan::plan_update(&self.profile.spec, &observed.state);
        let mut tags = plan::plan_tags(&desired_tags, &observed.tags);
        let differs = !(update.is_empty() && tags.is_empty());
        if !full && !differs {
            // Nothing changed since the last full read: done, with one call.
            return self.in_sync(id, &observed.arn, observed.last_modified).await;
        }
        if observed.state.listed.is_none() {
            observed = match self.ctx.connect.observe_profile(self.target, id, true).await {
                Ok(o) => o,
                Err(e) => return self.fail(e, "reading the profile").await,
            };
            update = plan::plan_update(&self.profile.spec, &observed.state);
            tags = plan::plan_tags(&desired_tags, &observed.tags);
        }
        let wrote = !(update.is_empty() && tags.is_empty());
        if !update.is_empty()
            && let Err(e) = self.ctx.connect.update_profile(self.target, id, &update.update).await
        {
            return self.fail(e, "updating the profile").await;
        }
        if !tags.set.is_empty()
            && let Err(e) = self.ctx.connect.tag_profile(self.target, &observed.arn, &tags.set).await
        {
            return self.fail(e, "tagging the profile").await;
        }
        if !tags.remove.is_empty()
            && let Err(e) = self.ctx.connect.untag_profile(self.target, &observed.arn, &tags.remove).await
        {
            return self.fail(e, "untagging the profile").await;
        }
        if wrote {
            let mut fields: Vec<String> = update.changed.iter().map(|f| f.to_string()).collect();
            fields.extend(tags.set.keys().chain(tags.remove.iter()).map(|k| format!("tags[{k}]")));
            let drift = status.observed_generation == generation;
            let (reason, what) = if drift { ("DriftRepaired", "Restored") } else { ("Updated", "Updated") };
            publish(
                self.ctx,
                self.profile,
                EventType::Normal,
                reason,
                format!("{what} {} of profile {id}", fields.join(", ")),
            )
            .await;
        }
        // After a write Connect's LastModifiedTime moved: read in full next time.
        self.in_sync(id, &observed.arn, if wrote { None } else { observed.last_modified }).await
    }

    async fn in_sync(&self, id: &str, arn: &str, last_modified: Option<String>) -> Result<Action, Error> {
        let generation = self.profile.metadata.generation.unwrap_or_default();
        let outcome = Outcome::in_sync(self.name(), id, generation);
        let identity = Identity::Set { id: id.to_string(), arn: arn.to_string(), last_modified };
        write_status(self.profile, self.api, self.ctx, identity, &outcome).await?;
        Ok(synced(self.profile, self.ctx))
    }

    async fn fail(&self, e: ConnectError, step: &'static str) -> Result<Action, Error> {
        fail(self.profile, self.api, self.ctx, e, step).await
    }
}

/// Records a failed Connect call in the status (and an Event when the reason is new), then returns it.
async fn fail<C: ConnectApi>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
    e: ConnectError,
    step: &'static str,
) -> Result<Action, Error> {
    let retry = match e.class {
        ErrorClass::Terminal | ErrorClass::Duplicate => {
            "Fix the spec; it is retried when the spec changes.".to_string()
        }
        ErrorClass::Quota | ErrorClass::NotFound => format!("Retrying every {}s.", ctx.settings.slow_retry.as_secs()),
        ErrorClass::Recoverable | ErrorClass::InUse => "Retrying with backoff.".to_string(),
    };
    let what = match (e.class, step) {
        (ErrorClass::NotFound, "creating the profile") => format!(
            "Connect instance {:?} was not found in region {}: check spec.instanceId and spec.region ({}).",
            profile.spec.instance_id,
            profile.spec.region.as_deref().or(ctx.default_region.as_deref()).unwrap_or("?"),
            e.message
        ),
        (ErrorClass::Quota, _) => format!(
            "The security-profile quota of instance {} is reached: {}. Delete unused profiles or ask AWS for a higher quota.",
            profile.spec.instance_id, e.message
        ),
        (ErrorClass::Terminal, _) if e.code == reason::PROFILE_OWNED_ELSEWHERE => e.message.clone(),
        _ => format!("{step}: {}.", e.message.trim_end_matches('.')),
    };
    let message = format!("{what} {retry}");
    ctx.next_observe.lock().expect("next_observe lock").remove(&key(&profile.metadata));
    write_status(profile, api, ctx, Identity::Keep, &Outcome::failed(&e.code, &message, has_ready_profile(profile)))
        .await?;
    Err(Error::Connect { step, source: ConnectError { message, ..e } })
}

/// Writes the status (server-side apply) unless it would change nothing but timestamps; returns it.
async fn write_status<C: ConnectApi>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
    identity: Identity,
    outcome: &Outcome,
) -> Result<SecurityProfileStatus, Error> {
    let current = profile.status.as_ref();
    let next =
        status::next_status(current, identity, profile.metadata.generation, outcome, Time(jiff::Timestamp::now()));
    if status::unchanged(current, &next) {
        return Ok(next);
    }
    let old_reason = profile.condition(status::SYNCED).map(|c| c.reason.clone());
    apply_status(api, &profile.name_any(), &next).await?;
    ctx.metrics.status_write();
    if let Some(uid) = profile.uid() {
        ctx.last_status.lock().expect("last_status lock").insert(uid, next.clone());
    }
    // A failure gets a Warning Event when its reason is new; `Creating` is progress, not a failure.
    if !outcome.synced
        && outcome.synced_reason != reason::CREATING
        && old_reason.as_deref() != Some(outcome.synced_reason.as_str())
    {
        publish(ctx, profile, EventType::Warning, &outcome.synced_reason, outcome.synced_message.clone()).await;
    }
    Ok(next)
}

async fn apply_status<K>(api: &Api<K>, name: &str, status: &SecurityProfileStatus) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": "connect.cloud-operators.dev/v1alpha1",
        "kind": "SecurityProfile",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Kube { step: "writing status", source })?;
    Ok(())
}

async fn publish<C: ConnectApi>(
    ctx: &Context<C>,
    profile: &SecurityProfile,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_about(ctx, profile.object_ref(&()), type_, reason, note).await
}

/// Who reports the operator's Events.
struct Reporter {
    controller: &'static str,
    instance: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum EventType {
    Normal,
    Warning,
}

/// Posts an events.k8s.io/v1 Event about `regarding`. kube's `Recorder` keeps every Event it sent (to
/// count repeats as a series); the operator only reports changes, so it goes without that cache and
/// the memory it holds for every object.
async fn publish_about<C>(ctx: &Context<C>, regarding: ObjectReference, type_: EventType, reason: &str, note: String) {
    let ns = regarding.namespace.clone().unwrap_or_else(|| "default".into());
    let now = jiff::Timestamp::now();
    let mut note = note;
    if note.len() > MAX_EVENT_NOTE {
        let mut end = MAX_EVENT_NOTE - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    let event = KubeEvent {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{}.{:x}", regarding.name.as_deref().unwrap_or("object"), now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(format!("{type_:?}")),
        reason: Some(reason.into()),
        note: Some(note),
        action: Some("Reconcile".into()),
        reporting_controller: Some(ctx.reporter.controller.into()),
        reporting_instance: Some(ctx.reporter.instance.clone()),
        regarding: Some(regarding),
        ..Default::default()
    };
    let api: Api<KubeEvent> = Api::namespaced(ctx.client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

/// The API server's limit on an Event's note.
const MAX_EVENT_NOTE: usize = 1024;

async fn ensure_finalizer(profile: &SecurityProfile, api: &Api<SecurityProfile>) -> Result<(), Error> {
    if profile.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let rv = profile.resource_version().unwrap_or_default();
    let ops = if profile.metadata.finalizers.is_some() {
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
               {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    } else {
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
               {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("valid JSON patch");
    api.patch(&profile.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|source| Error::Kube { step: "adding the finalizer", source })?;
    Ok(())
}

async fn remove_finalizer<K>(api: &Api<K>, meta: &kube::api::ObjectMeta) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    let Some(i) = finalizers.iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let ops = json!([{"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
                     {"op": "remove", "path": format!("/metadata/finalizers/{i}")}]);
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("valid JSON patch");
    match api.patch(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::<()>::Json(patch)).await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(source) => Err(Error::Kube { step: "removing the finalizer", source }),
    }
}

/// Deletion: with `deletionPolicy: Delete` (the default) the profile goes first; Retain leaves it.
async fn cleanup<C: ConnectApi>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
) -> Result<Action, Error> {
    if !profile.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let id = profile.status.as_ref().and_then(|s| s.security_profile_id.clone());
    let policy = profile.spec.deletion_policy.unwrap_or_default();
    if let (Some(id), DeletionPolicy::Delete) = (id, policy) {
        let region = profile.spec.region.clone().or_else(|| ctx.default_region.clone()).ok_or(Error::NoRegion)?;
        let role_arn = ctx.namespace_role(&profile.namespace().unwrap_or_default()).await;
        let target = Target { region, instance_id: profile.spec.instance_id.clone(), role_arn };
        match ctx.connect.delete_profile(&target, &id).await {
            Ok(()) => {
                publish(
                    ctx,
                    profile,
                    EventType::Normal,
                    "Deleted",
                    format!("Deleted security profile {id} from instance {}", target.instance_id),
                )
                .await
            }
            Err(e) if e.class == ErrorClass::NotFound => {}
            Err(e) => {
                let hint = match e.class {
                    ErrorClass::InUse => {
                        "The profile is still assigned to users; reassign them, or set deletionPolicy: Retain."
                    }
                    _ if e.code == "AccessDeniedException" => {
                        "The operator may not delete this profile; grant connect:DeleteSecurityProfile, or set deletionPolicy: Retain."
                    }
                    _ => "Retrying with backoff.",
                };
                let message = format!("Cannot delete security profile {id}: {}. {hint}", e.message);
                let reason = if e.class == ErrorClass::InUse { reason::DELETE_BLOCKED } else { e.code.as_str() };
                write_status(
                    profile,
                    api,
                    ctx,
                    Identity::Keep,
                    &Outcome::failed(reason, &message, has_ready_profile(profile)),
                )
                .await?;
                return Err(Error::Connect {
                    step: "deleting the profile",
                    source: ConnectError { class: ErrorClass::Recoverable, message, ..e },
                });
            }
        }
    }
    remove_finalizer(api, &profile.metadata).await?;
    if let Some(uid) = profile.uid() {
        ctx.last_status.lock().expect("last_status lock").remove(&uid);
    }
    ctx.next_observe.lock().expect("next_observe lock").remove(&key(&profile.metadata));
    Ok(Action::await_change())
}

/// An object the operator cannot read as a SecurityProfile (it bypassed the schema): say so in its
/// status, never call Connect, and keep serving every other object.
async fn report_invalid_object<C: ConnectApi>(
    invalid: &kube::core::error_boundary::InvalidObject,
    ctx: &Context<C>,
) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let api: Api<DeserializeGuard<SecurityProfile>> = Api::namespaced(ctx.client.clone(), &ns);
    let raw: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &kube::discovery::ApiResource::erase::<SecurityProfile>(&()));
    let current =
        raw.get_opt(&name).await.map_err(|source| Error::Kube { step: "reading an invalid object", source })?;
    let current_status: Option<SecurityProfileStatus> =
        current.as_ref().and_then(|o| o.data.get("status")).and_then(|s| serde_json::from_value(s.clone()).ok());
    if meta.deletion_timestamp.is_some()
        && current_status.as_ref().and_then(|s| s.security_profile_id.as_ref()).is_none()
    {
        // Nothing was created in Connect: nothing to clean up.
        remove_finalizer(&api, meta).await?;
        return Ok(Action::await_change());
    }
    let message = format!(
        "The object does not match the SecurityProfile schema: {}. Fix the manifest; nothing was sent to Connect.",
        invalid.error
    );
    let next = status::next_status(
        current_status.as_ref(),
        Identity::Keep,
        meta.generation,
        &Outcome::failed(reason::INVALID_OBJECT, &message, false),
        Time(jiff::Timestamp::now()),
    );
    if !status::unchanged(current_status.as_ref(), &next) {
        // Some API servers (1.20) validate the whole object on a status write and refuse it for an object
        // that bypassed the schema: the Event below is then the only report, and the object waits for a
        // change instead of retrying a write that cannot succeed.
        if let Err(e) = apply_status(&api, &name, &next).await {
            warn!(namespace = %ns, name = %name, error = %e, "cannot record the InvalidObject status; reporting it as an Event");
        }
        let reference = ObjectRef::<SecurityProfile>::new(&name).within(&ns);
        let mut regarding = ObjectReference::from(reference);
        regarding.uid = meta.uid.clone();
        publish_about(ctx, regarding, EventType::Warning, reason::INVALID_OBJECT, message.clone()).await;
    }
    Err(Error::Invalid(message))
}
