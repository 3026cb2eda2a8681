//! Edits a person makes in the Connect console, outside the Connect API (the control API's
//! `PATCH`/`DELETE /_emulator/profiles/{instance}/{id}`): they change a profile as UpdateSecurityProfile,
//! TagResource, UntagResource and DeleteSecurityProfile would, with the same validation, but take no
//! token from the API quota.

use serde_json::{Value, json};

use super::profile::ProfileFields;
use super::{Connect, Profile, not_found};
use crate::ApiError;
use crate::input::{self, Object};
use crate::limits as c;

/// The UpdateSecurityProfile members a console edit may change: its key (camelCase) and the API's name.
/// Their values are in the API's shape (e.g. `applications: [{"Namespace": ..., "ApplicationPermissions": [...]}]`).
const UPDATE_MEMBERS: &[(&str, &str)] = &[
    ("description", "Description"),
    ("permissions", "Permissions"),
    ("allowedAccessControlTags", "AllowedAccessControlTags"),
    ("tagRestrictedResources", "TagRestrictedResources"),
    ("hierarchyRestrictedResources", "HierarchyRestrictedResources"),
    ("allowedAccessControlHierarchyGroupId", "AllowedAccessControlHierarchyGroupId"),
    ("applications", "Applications"),
    ("allowedFlowModules", "AllowedFlowModules"),
    ("allowedAIAgents", "AllowedAIAgents"),
    ("granularAccessControlConfiguration", "GranularAccessControlConfiguration"),
];

/// Keys that set the emulator-only flags of a profile, not anything a console edit would change.
pub const FLAG_KEYS: &[&str] = &["inUse", "deleteDenied"];

impl Connect {
    fn any_profile_mut(&mut self, instance_id: &str, profile_id: &str) -> Result<&mut Profile, ApiError> {
        self.instances
            .get_mut(instance_id)
            .ok_or_else(|| not_found("Instance", instance_id))?
            .profiles
            .iter_mut()
            .find(|p| p.id == profile_id)
            .ok_or_else(|| not_found("Security profile", profile_id))
    }

    /// Applies a console edit: `inUse` / `deleteDenied` (flags), any UpdateSecurityProfile member in
    /// camelCase (as Update: LastModifiedTime and LastModifiedRegion change), `tags` (added or changed, as
    /// TagResource) and `untagKeys` (removed, as UntagResource); tags leave LastModifiedTime alone, as the tag
    /// operations do. All or nothing: an invalid member changes nothing. Returns the profile after the edit.
    pub fn console_edit(
        &mut self,
        instance_id: &str,
        profile_id: &str,
        edit: &Object,
        now: f64,
    ) -> Result<Profile, ApiError> {
        let mut update = Object::new();
        for (key, value) in edit {
            if let Some((_, member)) = UPDATE_MEMBERS.iter().find(|(k, _)| k == key) {
                update.insert((*member).to_string(), value.clone());
            } else if !FLAG_KEYS.contains(&key.as_str()) && key != "tags" && key != "untagKeys" {
                let known: Vec<&str> = FLAG_KEYS
                    .iter()
                    .copied()
                    .chain(UPDATE_MEMBERS.iter().map(|(k, _)| *k))
                    .chain(["tags", "untagKeys"])
                    .collect();
                return Err(ApiError::invalid_parameter(format!(
                    "{key:?} is not a console edit (known: {})",
                    known.join(", ")
                )));
            }
        }
        let flag = |key: &str| match edit.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid_parameter(format!("{key}: must be a boolean"))),
        };
        let (in_use, delete_denied) = (flag("inUse")?, flag("deleteDenied")?);
        let fields = (!update.is_empty()).then(|| ProfileFields::parse(&update)).transpose()?;
        let tags = input::tag_map(edit, "tags")?;
        let untag = input::opt_string_list(edit, "untagKeys", c::TAGS_MAX_ENTRIES, 1, c::TAG_KEY_MAX, None)?;
        for k in untag.iter().flatten() {
            if let Some(problem) = c::tag_key_problem(k) {
                return Err(ApiError::invalid_parameter(format!("untagKeys {k:?}: {problem}")));
            }
        }
        let region = self.region.clone();
        let profile = self.any_profile_mut(instance_id, profile_id)?;
        if let Some(tags) = &tags {
            let merged = profile.tags.keys().chain(tags.keys()).collect::<std::collections::BTreeSet<_>>().len();
            if merged > c::TAGS_MAX_ENTRIES {
                return Err(ApiError::new(
                    "InvalidRequestException",
                    400,
                    format!("A resource can have at most {} tags; this edit would leave {merged}", c::TAGS_MAX_ENTRIES),
                ));
            }
        }
        if let Some(b) = in_use {
            profile.in_use = b;
        }
        if let Some(b) = delete_denied {
            profile.delete_denied = b;
        }
        if let Some(fields) = fields {
            fields.apply_to(profile);
            profile.last_modified_time = now;
            profile.last_modified_region = region;
        }
        if let Some(tags) = tags {
            profile.tags.extend(tags);
        }
        for k in untag.into_iter().flatten() {
            profile.tags.remove(&k);
        }
        Ok(profile.clone())
    }

    /// Deletes a profile as a person in the console would: refused (ResourceInUseException) while it is
    /// assigned to users, but not subject to the API caller's permissions (`deleteDenied`).
    pub fn console_delete(&mut self, instance_id: &str, profile_id: &str) -> Result<(), ApiError> {
        let profile = self.any_profile_mut(instance_id, profile_id)?;
        if profile.in_use {
            let mut e = ApiError::new(
                "ResourceInUseException",
                409,
                format!("Security profile {profile_id} is assigned to one or more users"),
            );
            e.extra = Some(json!({"ResourceType": "USER", "ResourceId": profile.arn}));
            return Err(e);
        }
        self.instances.get_mut(instance_id).expect("found").profiles.retain(|p| p.id != profile_id);
        Ok(())
    }
}
