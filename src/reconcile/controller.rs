//! The controller wiring: one watch per namespace scope, filtered to the changes that can alter what a
//! reconcile does (our own status writes do not trigger it), feeding [`super::reconcile`].

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use kube::Resource;
use kube::api::{Api, ApiResource};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use tracing::{Instrument, warn};

use super::binding_watch;
use super::cache::CachedProfile;
use super::context::Context;
use super::retry::error_policy;
use crate::api::{InstanceBinding, SecurityProfile};
use crate::connect::ConnectApi;
use crate::runtime::Listable;

/// What the controllers watch and cache ([`super::cache`]).
type Watched = CachedProfile;

/// Runs the controller until `shutdown` completes: all namespaces when `namespaces` is empty, else those.
pub async fn run<C: ConnectApi>(
    ctx: Arc<Context<C>>,
    mut namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    namespaces.sort();
    namespaces.dedup();
    check_profiles_listable(&ctx, &namespaces).await?;
    let bindings_installed = bindings_installed(&ctx).await?;
    // One shutdown signal, shared by every namespace's controller.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    // Profiles the instance observers find changed, routed to the controller of their namespace.
    let (observed_tx, observed_rx) = futures::channel::mpsc::unbounded();
    ctx.observations.set_requeue(observed_tx);
    let mut wiring = Wiring::default();
    let scopes = scopes(&ctx, &namespaces);
    let concurrency = scope_concurrency(ctx.settings.concurrency, scopes.len());
    let controllers: Vec<_> = scopes
        .into_iter()
        .enumerate()
        .map(|(i, api)| {
            let namespace = api_namespace(&namespaces, i);
            scope_controller(&ctx, api, namespace, concurrency, &mut wiring, shutdown.clone())
        })
        .collect();
    tokio::spawn(route_observed(observed_rx, wiring.routes));
    if let Some(url) = ctx.settings.events_queue_url.clone() {
        // Drift found by events: the profiles Connect's CloudTrail events name are requeued at once.
        tokio::spawn(super::events_queue::run(ctx.clone(), url));
    }
    tokio::spawn(forget_expired_statuses_periodically(ctx.clone()));
    tokio::spawn(requeue_due_periodically(ctx.clone()));
    if bindings_installed {
        tokio::spawn(binding_watch::run(ctx.clone(), namespaces.clone(), wiring.requeue, wiring.stores));
        // Reconciling before the bindings are listed would refuse every profile for a moment.
        let _ = ctx.bindings.wait_until_ready().await;
    }
    futures::future::join_all(controllers).await;
    Ok(())
}

/// What the controller lists, for the readiness check ([`crate::runtime::ReadinessCheck`]): the
/// SecurityProfiles where it watches them (all namespaces, or each of `namespaces`), and the
/// InstanceBindings, optional with `allow_unbound` as [`run`] then starts without their CRD.
pub fn listables(namespaces: &[String], allow_unbound: bool) -> Vec<Listable> {
    let profiles = ApiResource::erase::<SecurityProfile>(&());
    let scopes: std::collections::BTreeSet<Option<String>> = match namespaces {
        [] => [None].into(),
        _ => namespaces.iter().cloned().map(Some).collect(),
    };
    let mut all: Vec<Listable> = scopes
        .into_iter()
        .map(|namespace| Listable { resource: profiles.clone(), namespace, optional: false })
        .collect();
    let bindings = ApiResource::erase::<InstanceBinding>(&());
    all.push(Listable { resource: bindings, namespace: None, optional: allow_unbound });
    all
}

/// Fails when the SecurityProfile CRD is not installed, or when SecurityProfiles cannot be listed in
/// all namespaces and all are watched (a namespaced watch may lack the cluster-wide right).
async fn check_profiles_listable<C: ConnectApi>(ctx: &Context<C>, namespaces: &[String]) -> anyhow::Result<()> {
    let probe: Api<Watched> = Api::all(ctx.client.clone());
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
    Ok(())
}

/// Whether the InstanceBinding CRD is installed; its absence is an error unless `--allow-unbound`.
async fn bindings_installed<C: ConnectApi>(ctx: &Context<C>) -> anyhow::Result<bool> {
    let bindings: Api<InstanceBinding> = Api::all(ctx.client.clone());
    match bindings.list(&kube::api::ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_not_found() && ctx.settings.allow_unbound => {
            warn!("the InstanceBinding CRD is not installed: every SecurityProfile acts unbound (--allow-unbound)");
            Ok(false)
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => anyhow::bail!(
            "the InstanceBinding CRD is not installed: run `connect-operator crd | kubectl apply -f -` (or install the Helm chart), or run with --allow-unbound for single-team use"
        ),
        Err(e) => Err(anyhow::anyhow!(e).context("cannot list InstanceBindings")),
    }
}

/// One API per watch: all namespaces, or one per watched namespace.
fn scopes<C>(ctx: &Context<C>, namespaces: &[String]) -> Vec<Api<Watched>> {
    if namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        namespaces.iter().map(|ns| Api::namespaced(ctx.client.clone(), ns)).collect()
    }
}

/// Each scope's share of `--concurrency`, a limit for the whole operator: every reconcile in flight holds
/// its future (tens of KiB while an SDK call waits in the limiter), so ten `--namespace` scopes must not
/// hold ten times as many. At least one each.
fn scope_concurrency(total: u16, scopes: usize) -> u16 {
    let scopes = u16::try_from(scopes.max(1)).unwrap_or(u16::MAX);
    (total / scopes).max(1)
}

/// What the scopes' controllers hand to the rest: their requeue-all channels and stores (for the
/// binding watch), and the route of observed changes to each.
#[derive(Default)]
struct Wiring {
    requeue: Vec<UnboundedSender<()>>,
    stores: Vec<Store<Watched>>,
    routes: Vec<(Option<String>, UnboundedSender<ObjectRef<Watched>>)>,
}

/// The controller of one scope (`namespace`, None for all): its filtered watch feeding reconciles, each
/// in its span; it registers its channels and store in `wiring`.
fn scope_controller<C: ConnectApi, S: Future<Output = ()> + Send + Sync + 'static>(
    ctx: &Arc<Context<C>>,
    api: Api<Watched>,
    namespace: Option<String>,
    concurrency: u16,
    wiring: &mut Wiring,
    shutdown: S,
) -> impl Future<Output = ()> + use<C, S> {
    let (reader, writer) = reflector::store();
    let (tx, rx) = futures::channel::mpsc::unbounded();
    wiring.requeue.push(tx);
    wiring.stores.push(reader.clone());
    let (observed, changed) = futures::channel::mpsc::unbounded();
    wiring.routes.push((namespace, observed));
    Controller::for_stream(trigger(api, writer), reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .reconcile_all_on(rx)
        .reconcile_on(changed)
        .graceful_shutdown_on(shutdown)
        .run(reconcile_in_span, error_policy, ctx.clone())
        .for_each(|result| async move { log_outcome(result) })
}

/// The watch of one scope, cached in `writer`'s store, filtered to the changes that can alter what a
/// reconcile does: generation, finalizers, annotations, deletion (not our own status writes).
fn trigger(
    api: Api<Watched>,
    writer: Writer<Watched>,
) -> impl futures::Stream<Item = Result<Watched, watcher::Error>> + Send + 'static {
    let deletion = |o: &Watched| o.meta().deletion_timestamp.as_ref().map(|_| 1u64);
    watcher(api, watcher::Config::default().page_size(100))
        .default_backoff()
        .modify(super::cache::slim)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers).combine(predicates::annotations).combine(deletion),
            Default::default(),
        )
}

/// [`super::reconcile`] of the whole object behind a cached one, in the span of its object: every line
/// a reconcile logs carries its namespace, name, generation and instance. An object gone since the
/// event has nothing left to reconcile.
fn reconcile_in_span<C: ConnectApi>(
    obj: Arc<Watched>,
    ctx: Arc<Context<C>>,
) -> impl Future<Output = Result<Action, super::Error>> + Send + 'static {
    let span = reconcile_span(&obj);
    async move {
        match super::cache::read(&ctx.client, &obj).await.map_err(super::Error::ReadObject)? {
            Some(full) => super::reconcile(Arc::new(full), ctx).await,
            None => Ok(Action::await_change()),
        }
    }
    .instrument(span)
}

/// The span of one reconcile (`instance` is empty for an object that does not parse). The object's
/// name is `profile`: a field called `name` would collide with the span's own `name` in JSON logs.
fn reconcile_span(obj: &Watched) -> tracing::Span {
    let meta = obj.meta();
    let instance = obj.instance_id.as_deref().unwrap_or_default();
    tracing::info_span!(
        "reconcile",
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        profile = meta.name.as_deref().unwrap_or_default(),
        generation = meta.generation,
        instance,
    )
}

/// Logs what a reconcile came to: failures at warn, with the error's reason and category.
fn log_outcome(
    result: Result<(ObjectRef<Watched>, Action), kube::runtime::controller::Error<super::Error, watcher::Error>>,
) {
    match result {
        Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
        Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
            warn!(object = %obj, reason = e.reason(), category = e.category().as_str(), error = %e, "reconcile failed")
        }
        Err(e) => warn!(error = %e, "controller error"),
    }
}

/// Sends each profile an instance observer found changed to the controller of its namespace.
async fn route_observed(
    mut observed: UnboundedReceiver<ObjectRef<Watched>>,
    routes: Vec<(Option<String>, UnboundedSender<ObjectRef<Watched>>)>,
) {
    while let Some(object) = observed.next().await {
        let ns: Option<String> = object.namespace.clone();
        for (scope, tx) in &routes {
            if scope.is_none() || *scope == ns {
                let _ = tx.unbounded_send(object.clone());
            }
        }
    }
}

/// Drops the expired status copies of [`Context`] even when no reconcile runs.
pub(super) async fn forget_expired_statuses_periodically<C>(ctx: Arc<Context<C>>) {
    let mut every = tokio::time::interval(super::context::LAST_STATUS_TTL);
    loop {
        every.tick().await;
        ctx.forget_expired_statuses();
    }
}

/// How often the resync task looks for due profiles: the resync's granularity (its jitter is ±10% of
/// ten minutes by default).
pub(super) const RESYNC_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The resync: requeues the in-sync profiles whose next observation is due ([`Context::requeue_due`]).
pub(super) async fn requeue_due_periodically<C>(ctx: Arc<Context<C>>) {
    let mut every = tokio::time::interval(RESYNC_SWEEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let n = ctx.requeue_due();
        if n > 0 {
            tracing::debug!(profiles = n, "resync: requeued the profiles due for observation");
        }
    }
}

/// The namespace of the `i`-th controller: None (all namespaces) when `namespaces` is empty.
fn api_namespace(namespaces: &[String], i: usize) -> Option<String> {
    namespaces.get(i).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readiness lists what the watches list: the SecurityProfiles of each watched namespace (once
    /// each), the InstanceBindings; their CRD may be missing only in single-team mode.
    #[test]
    fn readiness_lists_what_the_watches_list() {
        let scope = |l: &Listable| (l.resource.plural.clone(), l.namespace.clone(), l.optional);
        let namespaces = ["b".to_string(), "a".to_string(), "a".to_string()];
        let listed: Vec<_> = listables(&namespaces, false).iter().map(scope).collect();
        assert_eq!(
            listed,
            [
                ("securityprofiles".to_string(), Some("a".to_string()), false),
                ("securityprofiles".to_string(), Some("b".to_string()), false),
                ("instancebindings".to_string(), None, false),
            ]
        );
        let listed: Vec<_> = listables(&[], true).iter().map(scope).collect();
        assert_eq!(
            listed,
            [("securityprofiles".to_string(), None, false), ("instancebindings".to_string(), None, true)]
        );
    }

    /// `--concurrency` bounds the whole operator: scopes share it, each keeps at least one.
    #[test]
    fn scopes_share_the_concurrency() {
        assert_eq!(scope_concurrency(128, 1), 128);
        assert_eq!(scope_concurrency(128, 10), 12);
        assert_eq!(scope_concurrency(4, 10), 1);
        assert_eq!(scope_concurrency(128, 0), 128);
        assert_eq!(scope_concurrency(u16::MAX, 100_000), 1);
    }
}
