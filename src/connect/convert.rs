//! Spec types to aws-sdk-connect types.

use std::collections::BTreeMap;

use aws_sdk_connect::operation::create_security_profile::builders::CreateSecurityProfileFluentBuilder;
use aws_sdk_connect::types as sdk;

use aws_sdk_connect::operation::update_security_profile::builders::UpdateSecurityProfileFluentBuilder;

use super::Target;
use crate::api::{self, SecurityProfileSpec};
use crate::domain::state::normalize_granular;
use crate::domain::{ProfileState, ProfileUpdate};

/// A spec enum from Connect's string; `None` for a value this operator does not know.
fn from_str_enum<T: serde::de::DeserializeOwned>(s: Option<&str>) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s?.to_string())).ok()
}

pub fn from_sdk_application(a: &sdk::Application) -> api::Application {
    api::Application {
        namespace: a.namespace().unwrap_or_default().to_string(),
        application_permissions: a.application_permissions().to_vec(),
        application_type: from_str_enum(a.r#type().map(|t| t.as_str())),
    }
}

pub fn from_sdk_flow_module(m: &sdk::FlowModule) -> api::FlowModule {
    api::FlowModule {
        module_type: from_str_enum(m.r#type().map(|t| t.as_str())),
        flow_module_id: m.flow_module_id().map(str::to_string),
    }
}

pub fn from_sdk_ai_agent(a: &sdk::AiAgent) -> api::AiAgent {
    api::AiAgent { arn: a.arn().map(str::to_string), agent_type: from_str_enum(a.r#type().map(|t| t.as_str())) }
}

fn from_sdk_granular(g: &sdk::GranularAccessControlConfiguration) -> api::GranularAccessControlConfiguration {
    let values = g
        .data_table_access_control_configuration()
        .and_then(|d| d.primary_attribute_access_control_configuration())
        .map(|p| {
            p.primary_attribute_values()
                .iter()
                .map(|v| api::PrimaryAttributeValue {
                    access_type: from_str_enum(v.access_type().map(|t| t.as_str())),
                    attribute_name: v.attribute_name().map(str::to_string),
                    values: Some(v.values().to_vec()),
                })
                .collect()
        });
    api::GranularAccessControlConfiguration {
        data_table_access_control_configuration: Some(api::DataTableAccessControlConfiguration {
            primary_attribute_access_control_configuration: Some(api::PrimaryAttributeAccessControlConfiguration {
                primary_attribute_values: values,
            }),
        }),
    }
}

/// The members DescribeSecurityProfile returns, normalised for planning (`listed` is not read here).
pub fn described_state(p: &sdk::SecurityProfile) -> ProfileState {
    ProfileState {
        description: p.description().unwrap_or_default().to_string(),
        allowed_access_control_tags: p.allowed_access_control_tags().cloned().unwrap_or_default().into_iter().collect(),
        allowed_access_control_hierarchy_group_id: p
            .allowed_access_control_hierarchy_group_id()
            .unwrap_or_default()
            .to_string(),
        tag_restricted_resources: p.tag_restricted_resources().iter().cloned().collect(),
        hierarchy_restricted_resources: p.hierarchy_restricted_resources().iter().cloned().collect(),
        granular_access_control_configuration: normalize_granular(
            p.granular_access_control_configuration().map(from_sdk_granular).as_ref(),
        ),
        listed: None,
    }
}

/// UpdateSecurityProfile with exactly the members the plan sets.
pub fn update_request(
    builder: UpdateSecurityProfileFluentBuilder,
    u: &ProfileUpdate,
) -> UpdateSecurityProfileFluentBuilder {
    builder
        .set_description(u.description.clone())
        .set_permissions(u.permissions.clone())
        .set_allowed_access_control_tags(
            u.allowed_access_control_tags.as_ref().map(|m| m.clone().into_iter().collect()),
        )
        .set_allowed_access_control_hierarchy_group_id(u.allowed_access_control_hierarchy_group_id.clone())
        .set_tag_restricted_resources(u.tag_restricted_resources.clone())
        .set_hierarchy_restricted_resources(u.hierarchy_restricted_resources.clone())
        .set_applications(u.applications.as_ref().map(|a| a.iter().map(application).collect()))
        .set_allowed_flow_modules(u.allowed_flow_modules.as_ref().map(|m| m.iter().map(flow_module).collect()))
        .set_allowed_ai_agents(u.allowed_ai_agents.as_ref().map(|a| a.iter().map(ai_agent).collect()))
        .set_granular_access_control_configuration(u.granular_access_control_configuration.as_ref().map(|g| match g {
            Some(g) => granular(g),
            None => sdk::GranularAccessControlConfiguration::builder().build(),
        }))
}

fn enum_str<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("spec enums serialize to strings, got {other:?}"),
    }
}

pub fn application(a: &api::Application) -> sdk::Application {
    sdk::Application::builder()
        .namespace(&a.namespace)
        .set_application_permissions(Some(a.application_permissions.clone()))
        .set_type(a.application_type.as_ref().map(|t| sdk::ApplicationType::from(enum_str(t).as_str())))
        .build()
}

pub fn flow_module(m: &api::FlowModule) -> sdk::FlowModule {
    sdk::FlowModule::builder()
        .set_type(m.module_type.as_ref().map(|t| sdk::FlowModuleType::from(enum_str(t).as_str())))
        .set_flow_module_id(m.flow_module_id.clone())
        .build()
}

pub fn ai_agent(a: &api::AiAgent) -> sdk::AiAgent {
    sdk::AiAgent::builder()
        .set_arn(a.arn.clone())
        .set_type(a.agent_type.as_ref().map(|t| sdk::AiAgentType::from(enum_str(t).as_str())))
        .build()
}

pub fn granular(g: &api::GranularAccessControlConfiguration) -> sdk::GranularAccessControlConfiguration {
    let table = g.data_table_access_control_configuration.as_ref().map(|d| {
        let primary = d.primary_attribute_access_control_configuration.as_ref().map(|p| {
            let values = p.primary_attribute_values.as_ref().map(|vs| {
                vs.iter()
                    .map(|v| {
                        sdk::PrimaryAttributeValue::builder()
                            .set_access_type(
                                v.access_type.as_ref().map(|t| sdk::AccessType::from(enum_str(t).as_str())),
                            )
                            .set_attribute_name(v.attribute_name.clone())
                            .set_values(v.values.clone())
                            .build()
                    })
                    .collect()
            });
            sdk::PrimaryAttributeAccessControlConfigurationItem::builder().set_primary_attribute_values(values).build()
        });
        sdk::DataTableAccessControlConfiguration::builder()
            .set_primary_attribute_access_control_configuration(primary)
            .build()
    });
    sdk::GranularAccessControlConfiguration::builder().set_data_table_access_control_configuration(table).build()
}

/// CreateSecurityProfile with every member of the spec.
pub fn create_request(
    builder: CreateSecurityProfileFluentBuilder,
    target: &Target,
    spec: &SecurityProfileSpec,
    tags: &BTreeMap<String, String>,
) -> CreateSecurityProfileFluentBuilder {
    builder
        .instance_id(&target.instance_id)
        .security_profile_name(&spec.security_profile_name)
        .set_description(spec.description.clone())
        .set_permissions(spec.permissions.clone())
        .set_allowed_access_control_tags(
            spec.allowed_access_control_tags.as_ref().map(|m| m.clone().into_iter().collect()),
        )
        .set_allowed_access_control_hierarchy_group_id(spec.allowed_access_control_hierarchy_group_id.clone())
        .set_tag_restricted_resources(spec.tag_restricted_resources.as_ref().map(|r| r.iter().map(enum_str).collect()))
        .set_hierarchy_restricted_resources(
            spec.hierarchy_restricted_resources.as_ref().map(|r| r.iter().map(enum_str).collect()),
        )
        .set_applications(spec.applications.as_ref().map(|a| a.iter().map(application).collect()))
        .set_allowed_flow_modules(spec.allowed_flow_modules.as_ref().map(|m| m.iter().map(flow_module).collect()))
        .set_allowed_ai_agents(spec.allowed_ai_agents.as_ref().map(|a| a.iter().map(ai_agent).collect()))
        .set_granular_access_control_configuration(spec.granular_access_control_configuration.as_ref().map(granular))
        .set_tags((!tags.is_empty()).then(|| tags.clone().into_iter().collect()))
}
