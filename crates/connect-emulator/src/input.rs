//! Validation of request members against the API model, the way Connect answers bad input:
//! `InvalidParameterException` (400) naming the member and the rule it breaks.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ApiError;
use crate::limits::{self as c, char_len};

pub type Object = Map<String, Value>;

fn invalid(field: &str, rule: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_parameter(format!("{field}: {rule}"))
}

/// The request body as an object (an empty body counts as `{}`).
pub fn body_object(body: &[u8]) -> Result<Object, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::serialization("request body must be a JSON object")),
        Err(e) => Err(ApiError::serialization(format!("request body is not valid JSON: {e}"))),
    }
}

pub fn string_len(field: &str, s: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let len = char_len(s);
    if len < min || len > max {
        return Err(invalid(field, format!("length must be between {min} and {max}, got {len}")));
    }
    Ok(())
}

pub fn opt_string(obj: &Object, field: &str, min: usize, max: usize) -> Result<Option<String>, ApiError> {
    opt_member_string(obj, field, field, min, max)
}

/// Member `key` of `obj`, reported as `field` (its full path in the request) when invalid.
pub fn opt_member_string(
    obj: &Object,
    key: &str,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            string_len(field, s, min, max)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

pub fn required_string(obj: &Object, field: &str, min: usize, max: usize) -> Result<String, ApiError> {
    opt_string(obj, field, min, max)?.ok_or_else(|| invalid(field, "is required"))
}

fn required_member_string(obj: &Object, key: &str, field: &str, min: usize, max: usize) -> Result<String, ApiError> {
    opt_member_string(obj, key, field, min, max)?.ok_or_else(|| invalid(field, "is required"))
}

pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be one of {}, got {value:?}", allowed.join(", "))))
    }
}

fn array<'a>(obj: &'a Object, field: &str, min: usize, max: usize) -> Result<Option<&'a Vec<Value>>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            if items.len() < min || items.len() > max {
                return Err(invalid(field, format!("must have between {min} and {max} items, got {}", items.len())));
            }
            Ok(Some(items))
        }
        Some(_) => Err(invalid(field, "must be a list")),
    }
}

/// A list of strings, each `item_min..=item_max` long; `allowed` restricts the values when given.
pub fn opt_string_list(
    obj: &Object,
    field: &str,
    max_items: usize,
    item_min: usize,
    item_max: usize,
    allowed: Option<&[&str]>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(items) = array(obj, field, 0, max_items)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("{field}[{i}]");
        let Value::String(s) = item else {
            return Err(invalid(&name, "must be a string"));
        };
        string_len(&name, s, item_min, item_max)?;
        if let Some(allowed) = allowed {
            one_of(&name, s, allowed)?;
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(Some(out))
}

/// A string-to-string map with at most `max_entries` entries (at least `min_entries`).
pub fn opt_string_map(
    obj: &Object,
    field: &str,
    min_entries: usize,
    max_entries: usize,
    check_key: impl Fn(&str) -> Option<String>,
    value_max: usize,
) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    let map = match obj.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid(field, "must be a map of strings")),
    };
    if map.len() < min_entries || map.len() > max_entries {
        return Err(invalid(
            field,
            format!("must have between {min_entries} and {max_entries} entries, got {}", map.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if let Some(problem) = check_key(k) {
            return Err(invalid(&format!("{field} key {k:?}"), problem));
        }
        let Value::String(v) = v else {
            return Err(invalid(&format!("{field}[{k:?}]"), "must be a string"));
        };
        string_len(&format!("{field}[{k:?}]"), v, 0, value_max)?;
        out.insert(k.clone(), v.clone());
    }
    Ok(Some(out))
}

pub fn tag_map(obj: &Object, field: &str) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    opt_string_map(obj, field, 1, c::TAGS_MAX_ENTRIES, c::tag_key_problem, c::TAG_VALUE_MAX)
}

pub fn access_control_tags(obj: &Object) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    let key_len = |k: &str| {
        let len = char_len(k);
        (!(1..=c::TAG_KEY_MAX).contains(&len)).then(|| format!("length must be between 1 and 128, got {len}"))
    };
    opt_string_map(obj, "AllowedAccessControlTags", 0, c::ACCESS_CONTROL_TAGS_MAX_ENTRIES, key_len, c::TAG_VALUE_MAX)
}

fn objects<'a>(
    obj: &'a Object,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<Vec<(String, &'a Object)>>, ApiError> {
    let Some(items) = array(obj, field, min, max)? else {
        return Ok(None);
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let name = format!("{field}[{i}]");
            match item {
                Value::Object(o) => Ok((name, o)),
                _ => Err(invalid(&name, "must be an object")),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `Applications`: normalised to `{Namespace, ApplicationPermissions, Type?}` objects.
pub fn applications(obj: &Object) -> Result<Option<Vec<Value>>, ApiError> {
    let Some(items) = objects(obj, "Applications", 0, c::APPLICATIONS_MAX_ITEMS)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (name, app) in items {
        let namespace =
            required_member_string(app, "Namespace", &format!("{name}.Namespace"), 1, c::APPLICATION_NAMESPACE_MAX)?;
        let perms_field = format!("{name}.ApplicationPermissions");
        let perms = match app.get("ApplicationPermissions") {
            None | Some(Value::Null) => return Err(invalid(&perms_field, "is required")),
            Some(_) => {
                let mut wrapper = Object::new();
                wrapper.insert(perms_field.clone(), app["ApplicationPermissions"].clone());
                let perms = opt_string_list(
                    &wrapper,
                    &perms_field,
                    c::APPLICATION_PERMISSIONS_MAX_ITEMS,
                    1,
                    c::PERMISSION_MAX,
                    None,
                )?
                .unwrap_or_default();
                if perms.is_empty() {
                    return Err(invalid(&perms_field, "must have between 1 and 50 items, got 0"));
                }
                perms
            }
        };
        let mut entry = serde_json::json!({"Namespace": namespace, "ApplicationPermissions": perms});
        if let Some(t) = opt_member_string(app, "Type", &format!("{name}.Type"), 1, 64)? {
            one_of(&format!("{name}.Type"), &t, c::APPLICATION_TYPES)?;
            entry["Type"] = Value::String(t);
        }
        out.push(entry);
    }
    Ok(Some(out))
}

/// `AllowedFlowModules`: normalised to `{Type, FlowModuleId}` objects.
pub fn flow_modules(obj: &Object) -> Result<Option<Vec<Value>>, ApiError> {
    let Some(items) = objects(obj, "AllowedFlowModules", 0, c::FLOW_MODULES_MAX_ITEMS)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (name, module) in items {
        let mut entry = Object::new();
        if let Some(t) = opt_member_string(module, "Type", &format!("{name}.Type"), 1, 64)? {
            one_of(&format!("{name}.Type"), &t, c::FLOW_MODULE_TYPES)?;
            entry.insert("Type".into(), Value::String(t));
        }
        if let Some(id) =
            opt_member_string(module, "FlowModuleId", &format!("{name}.FlowModuleId"), 1, c::FLOW_MODULE_ID_MAX)?
        {
            entry.insert("FlowModuleId".into(), Value::String(id));
        }
        out.push(Value::Object(entry));
    }
    Ok(Some(out))
}

/// `AllowedAIAgents`: normalised to `{Arn, Type}` objects.
pub fn ai_agents(obj: &Object) -> Result<Option<Vec<Value>>, ApiError> {
    let Some(items) = objects(obj, "AllowedAIAgents", 0, c::AI_AGENTS_MAX_ITEMS)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (name, agent) in items {
        let mut entry = Object::new();
        if let Some(arn) = opt_member_string(agent, "Arn", &format!("{name}.Arn"), 1, 2048)? {
            entry.insert("Arn".into(), Value::String(arn));
        }
        if let Some(t) = opt_member_string(agent, "Type", &format!("{name}.Type"), 1, 64)? {
            one_of(&format!("{name}.Type"), &t, c::AI_AGENT_TYPES)?;
            entry.insert("Type".into(), Value::String(t));
        }
        out.push(Value::Object(entry));
    }
    Ok(Some(out))
}

/// `GranularAccessControlConfiguration`, checked member by member.
pub fn granular_access_control(obj: &Object) -> Result<Option<Value>, ApiError> {
    const FIELD: &str = "GranularAccessControlConfiguration";
    let config = match obj.get(FIELD) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(invalid(FIELD, "must be an object")),
    };
    let table_field = format!("{FIELD}.DataTableAccessControlConfiguration");
    if let Some(table) = config.get("DataTableAccessControlConfiguration") {
        let Value::Object(table) = table else {
            return Err(invalid(&table_field, "must be an object"));
        };
        let primary_field = format!("{table_field}.PrimaryAttributeAccessControlConfiguration");
        if let Some(primary) = table.get("PrimaryAttributeAccessControlConfiguration") {
            let Value::Object(primary) = primary else {
                return Err(invalid(&primary_field, "must be an object"));
            };
            let mut wrapper = Object::new();
            let values_field = format!("{primary_field}.PrimaryAttributeValues");
            if let Some(v) = primary.get("PrimaryAttributeValues") {
                wrapper.insert(values_field.clone(), v.clone());
            }
            for (name, value) in
                objects(&wrapper, &values_field, 0, c::PRIMARY_ATTRIBUTE_VALUES_MAX_ITEMS)?.unwrap_or_default()
            {
                if let Some(t) = opt_member_string(value, "AccessType", &format!("{name}.AccessType"), 1, 64)? {
                    one_of(&format!("{name}.AccessType"), &t, c::ACCESS_TYPES)?;
                }
                if let Some(attr) = opt_member_string(
                    value,
                    "AttributeName",
                    &format!("{name}.AttributeName"),
                    1,
                    c::PRIMARY_ATTRIBUTE_NAME_MAX,
                )? && let Some(problem) = c::attribute_name_problem(&attr)
                {
                    return Err(invalid(&format!("{name}.AttributeName"), problem));
                }
                let values_name = format!("{name}.Values");
                let mut vw = Object::new();
                if let Some(v) = value.get("Values") {
                    vw.insert(values_name.clone(), v.clone());
                }
                for (i, v) in opt_string_list(&vw, &values_name, c::PRIMARY_VALUES_MAX_ITEMS, 1, usize::MAX, None)?
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    if !c::is_latin1_printable(v) {
                        return Err(invalid(
                            &format!("{values_name}[{i}]"),
                            "may contain only printable Latin-1 characters",
                        ));
                    }
                }
            }
        }
    }
    Ok(Some(Value::Object(config.clone())))
}

/// `MaxResults` from the query string, within `1..=max`.
pub fn max_results(
    query: &BTreeMap<String, Vec<String>>,
    key: &str,
    max: i64,
    default: i64,
) -> Result<usize, ApiError> {
    match query.get(key).and_then(|v| v.first()) {
        None => Ok(default as usize),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n as usize),
            _ => Err(invalid("MaxResults", format!("must be an integer between 1 and {max}, got {s:?}"))),
        },
    }
}
