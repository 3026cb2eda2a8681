//! SearchSecurityProfiles: the operation and its matching of `SearchCriteria` and `SearchFilter.TagFilter`.

use serde_json::{Value, json};

use super::pages::{decode_token, page};
use super::{Connect, Profile, ReadView};
use crate::ApiError;
use crate::input::{self, Object};
use crate::limits as c;

impl Connect {
    pub(super) fn search_security_profiles(&self, body: &Object, view: ReadView) -> Result<Value, ApiError> {
        let instance_id = input::required_string(body, "InstanceId", 1, c::INSTANCE_ID_MAX)?;
        let instance = self.instance(&instance_id)?;
        let max = match body.get("MaxResults") {
            None | Some(Value::Null) => 100,
            Some(v) => match v.as_i64() {
                Some(n) if (1..=c::SEARCH_MAX_RESULTS).contains(&n) => n as usize,
                _ => {
                    return Err(ApiError::invalid_parameter(format!(
                        "MaxResults: must be an integer between 1 and 100, got {v}"
                    )));
                }
            },
        };
        let token = input::opt_string(body, "NextToken", 1, c::SEARCH_NEXT_TOKEN_MAX)?;
        let offset = decode_token(token.as_ref(), "search")?;
        let criteria = body.get("SearchCriteria");
        let tag_filter = body.get("SearchFilter").and_then(|f| f.get("TagFilter"));
        let mut hits = Vec::new();
        for p in instance.profiles.iter().filter(|p| view.sees(p)) {
            let by_criteria = match criteria {
                Some(c) => matches_criteria(c, p)?,
                None => true,
            };
            if by_criteria && tag_filter.is_none_or(|f| matches_tag_filter(f, p)) {
                let mut summary = json!({"Id": p.id, "OrganizationResourceId": instance.id, "Arn": p.arn,
                    "SecurityProfileName": p.security_profile_name, "Tags": p.tags});
                if let Some(d) = &p.description {
                    summary["Description"] = json!(d);
                }
                hits.push(summary);
            }
        }
        let total = hits.len();
        let (items, next) = page(&hits, offset, max, "search");
        Ok(json!({"SecurityProfiles": items, "NextToken": next, "ApproximateTotalCount": total}))
    }
}

fn string_condition_matches(cond: &Value, p: &Profile) -> Result<bool, ApiError> {
    let field = cond.get("FieldName").and_then(Value::as_str).unwrap_or_default();
    let value = cond.get("Value").and_then(Value::as_str).unwrap_or_default();
    let subject = match field.to_ascii_lowercase().as_str() {
        "name" | "securityprofilename" => p.security_profile_name.as_str(),
        "description" => p.description.as_deref().unwrap_or_default(),
        _ => {
            return Err(ApiError::invalid_parameter(format!(
                "SearchCriteria.StringCondition.FieldName: {field:?} is not searchable (use name or description)"
            )));
        }
    };
    match cond.get("ComparisonType").and_then(Value::as_str) {
        Some("EXACT") => Ok(subject == value),
        Some("STARTS_WITH") => Ok(subject.starts_with(value)),
        Some("CONTAINS") => Ok(subject.to_lowercase().contains(&value.to_lowercase())),
        other => Err(ApiError::invalid_parameter(format!(
            "SearchCriteria.StringCondition.ComparisonType: must be one of STARTS_WITH, CONTAINS, EXACT, got {other:?}"
        ))),
    }
}

fn matches_criteria(criteria: &Value, p: &Profile) -> Result<bool, ApiError> {
    if let Some(cond) = criteria.get("StringCondition") {
        return string_condition_matches(cond, p);
    }
    if let Some(Value::Array(all)) = criteria.get("AndConditions") {
        for c in all {
            if !matches_criteria(c, p)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(Value::Array(any)) = criteria.get("OrConditions") {
        for c in any {
            if matches_criteria(c, p)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    Ok(true)
}

fn tag_condition_matches(cond: &Value, p: &Profile) -> bool {
    let key = cond.get("TagKey").and_then(Value::as_str).unwrap_or_default();
    match (p.tags.get(key), cond.get("TagValue").and_then(Value::as_str)) {
        (Some(v), Some(want)) => v == want,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn matches_tag_filter(filter: &Value, p: &Profile) -> bool {
    if let Some(cond) = filter.get("TagCondition") {
        return tag_condition_matches(cond, p);
    }
    if let Some(Value::Array(all)) = filter.get("AndConditions") {
        return all.iter().all(|c| tag_condition_matches(c, p));
    }
    if let Some(Value::Array(any)) = filter.get("OrConditions") {
        return any.iter().any(|group| group.as_array().is_some_and(|g| g.iter().all(|c| tag_condition_matches(c, p))));
    }
    true
}
