//! What the controller's watch keeps of each SecurityProfile: its metadata and instance ID, not the
//! whole object.
//!
//! A reconcile reads its object from the API server when it starts ([`read`]); the watch only has to
//! say which objects changed and how (the predicates look at generation, finalizers, annotations and
//! deletion), route the observers' requeues, and let the binding watch count the profiles of an
//! instance. Keeping the typed objects instead cost about 3 KB per profile (spec, status and three
//! conditions), 30 MB at 10,000 profiles, held for nothing between reconciles; this copy costs a
//! fifth of that.
//!
//! The read names the cached object's resourceVersion, so the API server answers from its watch cache
//! (no etcd read) with a version at least as new as the event that triggered the reconcile.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, GetParams};
use kube::core::DeserializeGuard;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Deserializer};

use crate::api::SecurityProfile;

/// A SecurityProfile as the watch keeps it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedProfile {
    pub metadata: ObjectMeta,
    /// `spec.instanceId`; None when the object does not have one as a string (its reconcile reports
    /// it as invalid).
    #[serde(default, rename = "spec", deserialize_with = "instance_id_of_spec")]
    pub instance_id: Option<String>,
}

/// Reads `spec.instanceId` and skips the rest of the spec without building it (every watch event goes
/// through here). Never fails on a spec of an unexpected shape: one object that does not parse must not
/// stop the watch of all (the reconcile's read reports it).
fn instance_id_of_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    #[derive(Deserialize)]
    #[serde(field_identifier)]
    enum Field {
        #[serde(rename = "instanceId")]
        InstanceId,
        #[serde(other)]
        Other,
    }
    struct Spec;
    impl<'de> Visitor<'de> for Spec {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a SecurityProfile spec")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut id = None;
            while let Some(field) = map.next_key::<Field>()? {
                match field {
                    Field::InstanceId => id = map.next_value::<serde_json::Value>()?.as_str().map(str::to_string),
                    Field::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(id)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Spec)
}

impl Resource for CachedProfile {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        SecurityProfile::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        SecurityProfile::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        SecurityProfile::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        SecurityProfile::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Drops from a watched object what nothing reads from the cache: managedFields, kubectl's copy of the
/// manifest, labels, owner references and the creation time (annotations stay: a change to one
/// triggers a reconcile).
pub fn slim(o: &mut CachedProfile) {
    let meta = &mut o.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    meta.creation_timestamp = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// The whole object behind a cached one, at least as new as the cache's copy; None when it is gone.
pub async fn read(
    client: &kube::Client,
    cached: &CachedProfile,
) -> Result<Option<DeserializeGuard<SecurityProfile>>, kube::Error> {
    let namespace = cached.namespace().unwrap_or_default();
    let at = GetParams { resource_version: cached.resource_version() };
    let typed: Api<SecurityProfile> = Api::namespaced(client.clone(), &namespace);
    match typed.get_with(&cached.name_any(), &at).await {
        Ok(object) => Ok(Some(DeserializeGuard(Ok(object)))),
        // Not a SecurityProfile as this operator reads one: read it again through the guard, whose
        // error says which field and why (parsing it guarded every time would parse twice).
        Err(kube::Error::SerdeError(_)) => {
            let guarded: Api<DeserializeGuard<SecurityProfile>> = Api::namespaced(client.clone(), &namespace);
            found(guarded.get_with(&cached.name_any(), &at).await)
        }
        other => found(other.map(|o| DeserializeGuard(Ok(o)))),
    }
}

/// A read's answer, None for an object that is gone.
fn found<T>(read: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match read {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: serde_json::Value) -> CachedProfile {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "connect.cloud-operators.dev/v1alpha1",
            "kind": "SecurityProfile",
            "metadata": {
                "name": "agents", "namespace": "team-a", "resourceVersion": "42", "generation": 3,
                "labels": {"team": "a"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"},
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("a SecurityProfile parses as a cached one")
    }

    /// The cache keeps the instance and what the predicates read, and drops the rest.
    #[test]
    fn keeps_the_instance_and_the_metadata_the_predicates_read() {
        let spec = serde_json::json!({"securityProfileName": "agents", "permissions": ["A", "B"],
                                      "applications": [{"namespace": "x", "applicationPermissions": ["C"]}],
                                      "instanceId": "i-1", "allowedAccessControlTags": {"k": "v"}});
        let mut p = parse(spec);
        slim(&mut p);
        assert_eq!(p.instance_id.as_deref(), Some("i-1"));
        assert_eq!((p.metadata.generation, p.resource_version().as_deref()), (Some(3), Some("42")));
        assert_eq!(p.annotations().keys().collect::<Vec<_>>(), ["keep"]);
        assert!(p.metadata.managed_fields.is_none() && p.metadata.labels.is_none());
        assert_eq!(CachedProfile::plural(&()), SecurityProfile::plural(&()));
        assert_eq!(CachedProfile::api_version(&()), SecurityProfile::api_version(&()));
    }

    /// A reconcile reads the whole object at the cached resourceVersion (the API server's watch cache
    /// answers), and an object gone since the event reads as None, not as a failure.
    #[tokio::test]
    async fn the_read_names_the_cached_version_and_a_gone_object_is_none() {
        use http::{Request, Response, StatusCode};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = paths.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let path = request.uri().to_string();
                seen.lock().unwrap().push(path.clone());
                let (status, body) = if path.contains("/securityprofiles/odd?") {
                    let object = serde_json::json!({
                        "apiVersion": "connect.cloud-operators.dev/v1alpha1", "kind": "SecurityProfile",
                        "metadata": {"name": "odd", "namespace": "team-a", "resourceVersion": "44"},
                        "spec": {"instanceId": "i-1", "securityProfileName": "odd", "permissions": 5},
                    });
                    (StatusCode::OK, object)
                } else if path.contains("/securityprofiles/agents?") {
                    let object = serde_json::json!({
                        "apiVersion": "connect.cloud-operators.dev/v1alpha1", "kind": "SecurityProfile",
                        "metadata": {"name": "agents", "namespace": "team-a", "resourceVersion": "43"},
                        "spec": {"instanceId": "i-1", "securityProfileName": "agents"},
                    });
                    (StatusCode::OK, object)
                } else {
                    (StatusCode::NOT_FOUND, serde_json::json!({"kind": "Status", "reason": "NotFound", "code": 404}))
                };
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        let client = kube::Client::new(service, "default");
        let cached = parse(serde_json::json!({"instanceId": "i-1"}));
        let full = read(&client, &cached).await.expect("read").expect("found");
        let profile = full.0.expect("parses as a SecurityProfile");
        assert_eq!((profile.spec.instance_id.as_str(), profile.resource_version().as_deref()), ("i-1", Some("43")));
        assert_eq!(
            paths.lock().unwrap()[0],
            "/apis/connect.cloud-operators.dev/v1alpha1/namespaces/team-a/securityprofiles/agents?&resourceVersion=42"
        );
        let mut odd = cached.clone();
        odd.metadata.name = Some("odd".into());
        let invalid = read(&client, &odd).await.expect("read").expect("found");
        assert!(invalid.0.is_err(), "an object that does not parse is read through the guard");
        let mut gone = cached.clone();
        gone.metadata.name = Some("gone".into());
        assert!(read(&client, &gone).await.expect("a 404 is not a failure").is_none());
    }

    /// A spec of an unexpected shape leaves the instance unknown; it never fails the watch.
    #[test]
    fn an_odd_spec_does_not_fail_the_watch() {
        assert_eq!(parse(serde_json::json!({"instanceId": 7})).instance_id, None);
        assert_eq!(parse(serde_json::json!("not an object")).instance_id, None);
        assert_eq!(parse(serde_json::json!(null)).instance_id, None);
        assert_eq!(parse(serde_json::json!(["i-1"])).instance_id, None);
        assert_eq!(parse(serde_json::json!({"instanceId": {"id": "i-1"}})).instance_id, None);
    }
}
