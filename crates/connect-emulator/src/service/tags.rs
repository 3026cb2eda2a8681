//! The tag operations (TagResource, UntagResource, ListTagsForResource) on instances and security profiles.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Connect, ReadView, not_found};
use crate::ApiError;
use crate::input::{self, Object};
use crate::limits as c;

impl Connect {
    /// The tag map of the resource an ARN names: an instance or one of its security profiles.
    pub(super) fn tags_of(&self, arn: &str) -> Result<&BTreeMap<String, String>, ApiError> {
        if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
            return Err(ApiError::invalid_parameter(format!("resourceArn: {arn:?} is not a valid ARN")));
        }
        for instance in self.instances.values() {
            if instance.arn == arn {
                return Ok(&instance.tags);
            }
            if let Some(p) = instance.profiles.iter().find(|p| p.arn == arn) {
                return Ok(&p.tags);
            }
        }
        Err(not_found("Resource", arn))
    }

    /// The tags as a read sees them: a profile created too recently is not found yet.
    pub(super) fn visible_tags_of(&self, arn: &str, view: ReadView) -> Result<&BTreeMap<String, String>, ApiError> {
        let tags = self.tags_of(arn)?;
        let profile = self.instances.values().flat_map(|i| &i.profiles).find(|p| p.arn == arn);
        match profile {
            Some(p) if !view.sees(p) => Err(not_found("Resource", arn)),
            _ => Ok(tags),
        }
    }

    fn tags_of_mut(&mut self, arn: &str) -> Result<&mut BTreeMap<String, String>, ApiError> {
        self.tags_of(arn)?;
        for instance in self.instances.values_mut() {
            if instance.arn == arn {
                return Ok(&mut instance.tags);
            }
            if let Some(p) = instance.profiles.iter_mut().find(|p| p.arn == arn) {
                return Ok(&mut p.tags);
            }
        }
        unreachable!("tags_of found the resource")
    }

    pub(super) fn tag_resource(&mut self, arn: &str, body: &Object) -> Result<Value, ApiError> {
        let tags = input::tag_map(body, "tags")?.ok_or_else(|| ApiError::invalid_parameter("tags: is required"))?;
        let current = self.tags_of(arn)?;
        let merged = current.keys().chain(tags.keys()).collect::<std::collections::BTreeSet<_>>().len();
        if merged > c::TAGS_MAX_ENTRIES {
            return Err(ApiError::new(
                "InvalidRequestException",
                400,
                format!("A resource can have at most {} tags; this request would leave {merged}", c::TAGS_MAX_ENTRIES),
            ));
        }
        self.tags_of_mut(arn)?.extend(tags);
        Ok(json!({}))
    }

    pub(super) fn untag_resource(
        &mut self,
        arn: &str,
        query: &BTreeMap<String, Vec<String>>,
    ) -> Result<Value, ApiError> {
        let keys = query.get("tagKeys").cloned().unwrap_or_default();
        if keys.is_empty() || keys.len() > c::TAGS_MAX_ENTRIES {
            return Err(ApiError::invalid_parameter(format!(
                "tagKeys: must have between 1 and 50 items, got {}",
                keys.len()
            )));
        }
        for k in &keys {
            if let Some(problem) = c::tag_key_problem(k) {
                return Err(ApiError::invalid_parameter(format!("tagKeys {k:?}: {problem}")));
            }
        }
        let tags = self.tags_of_mut(arn)?;
        for k in keys {
            tags.remove(&k);
        }
        Ok(json!({}))
    }
}
