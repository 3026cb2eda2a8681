//! The controller wiring: one watch per namespace scope, filtered to the changes that can alter what a
//! reconcile does (our own status writes do not trigger it), feeding [`super::reconcile`].

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::reflector;
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::binding_watch;
use super::context::Context;
use super::retry::error_policy;
use crate::api::{InstanceBinding, SecurityProfile};
use crate::connect::ConnectApi;

/// Runs the controller until `shutdown` completes: all namespaces when `namespaces` is empty, else those.
pub async fn run<C: ConnectApi>(
    ctx: Arc<Context<C>>,
    mut namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    namespaces.sort();
    namespaces.dedup();
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
    let bindings: Api<InstanceBinding> = Api::all(ctx.client.clone());
    let bindings_installed = match bindings.list(&kube::api::ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.is_not_found() && ctx.settings.allow_unbound => {
            warn!("the InstanceBinding CRD is not installed: every SecurityProfile acts unbound (--allow-unbound)");
            false
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => anyhow::bail!(
            "the InstanceBinding CRD is not installed: run `connect-operator crd | kubectl apply -f -` (or install the Helm chart), or run with --allow-unbound for single-team use"
        ),
        Err(e) => return Err(anyhow::anyhow!(e).context("cannot list InstanceBindings")),
    };
    let apis: Vec<Api<DeserializeGuard<SecurityProfile>>> = if namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        namespaces.iter().map(|ns| Api::namespaced(ctx.client.clone(), ns)).collect()
    };
    // One shutdown signal, shared by every namespace's controller.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let mut requeue = Vec::new();
    let mut stores = Vec::new();
    // Profiles the instance observers find changed, routed to the controller of their namespace.
    let (observed_tx, mut observed_rx) = futures::channel::mpsc::unbounded();
    ctx.observations.set_requeue(observed_tx);
    let mut routes: Vec<(Option<String>, futures::channel::mpsc::UnboundedSender<_>)> = Vec::new();
    let controllers: Vec<_> = apis.into_iter().map(|api| {
        let (reader, writer) = reflector::store();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        requeue.push(tx);
        stores.push(reader.clone());
        let (observed, changed) = futures::channel::mpsc::unbounded();
        routes.push((api_namespace(&namespaces, routes.len()), observed));
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
            .reconcile_all_on(rx)
            .reconcile_on(changed)
            .graceful_shutdown_on(shutdown.clone())
            .run(super::reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                match result {
                    Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                    Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                        info!(object = %obj, category = e.category().as_str(), reason = e.reason(), error = %e, "reconcile failed")
                    }
                    Err(e) => warn!(error = %e, "controller error"),
                }
            })
    }).collect();
    tokio::spawn(async move {
        while let Some(object) = observed_rx.next().await {
            let ns: Option<String> = object.namespace.clone();
            for (scope, tx) in &routes {
                if scope.is_none() || *scope == ns {
                    let _ = tx.unbounded_send(object.clone());
                }
            }
        }
    });
    let housekeeping = ctx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(super::context::LAST_STATUS_TTL);
        loop {
            every.tick().await;
            housekeeping.forget_expired_statuses();
        }
    });
    if bindings_installed {
        tokio::spawn(binding_watch::run(ctx.clone(), namespaces.clone(), requeue, stores));
        // Reconciling before the bindings are listed would refuse every profile for a moment.
        let _ = ctx.bindings.wait_until_ready().await;
    }
    futures::future::join_all(controllers).await;
    Ok(())
}

/// The namespace of the `i`-th controller: None (all namespaces) when `namespaces` is empty.
fn api_namespace(namespaces: &[String], i: usize) -> Option<String> {
    namespaces.get(i).cloned()
}
