//! aws-sdk-connect, unmodified, against the Connect emulator: every operation, every error code each
//! operation can return, pagination, throttling (an exact token bucket on arrival) with the SDK's retries, the
//! lost-response mode, held answers, the read-after-create lag, and console edits.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_connect::Client;
use aws_sdk_connect::types::*;
use connect_emulator::{Emulator, Faults};
use connect_operator::connect::client_for_endpoint;
use support::{INSTANCE, emulator_with, error_code, no_faults};

fn client(emu: &Emulator, attempts: u32) -> Client {
    client_for_endpoint(&emu.endpoint(), "us-east-1", attempts)
}

fn full_application() -> Application {
    Application::builder()
        .namespace("com.example.crm")
        .application_permissions("ACCESS")
        .application_permissions("Contacts.View")
        .r#type(ApplicationType::ThirdPartyApplication)
        .build()
}

fn granular() -> GranularAccessControlConfiguration {
    let value =
        PrimaryAttributeValue::builder().access_type(AccessType::Allow).attribute_name("region").values("emea").build();
    GranularAccessControlConfiguration::builder()
        .data_table_access_control_configuration(
            DataTableAccessControlConfiguration::builder()
                .primary_attribute_access_control_configuration(
                    PrimaryAttributeAccessControlConfigurationItem::builder().primary_attribute_values(value).build(),
                )
                .build(),
        )
        .build()
}

/// Creates a profile named `name` with only its name set; returns (id, arn).
async fn create_named(c: &Client, name: &str) -> (String, String) {
    let out = c
        .create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
    (out.security_profile_id().unwrap().to_string(), out.security_profile_arn().unwrap().to_string())
}

#[tokio::test]
async fn create_describe_lists_update_delete_round_trip() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let out = c
        .create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name("Tier 2_agents@emea-1")
        .description("second line")
        .permissions("BasicAgentAccess")
        .permissions("OutboundCallAccess")
        .tags("team", "contact-center")
        .allowed_access_control_tags("department", "sales")
        .tag_restricted_resources("User")
        .hierarchy_restricted_resources("User")
        .allowed_access_control_hierarchy_group_id("hg-123")
        .applications(full_application())
        .allowed_flow_modules(FlowModule::builder().r#type(FlowModuleType::Mcp).flow_module_id("fm-1").build())
        .allowed_ai_agents(
            AiAgent::builder()
                .arn("arn:aws:wisdom:us-east-1:123456789012:ai-agent/a")
                .r#type(AiAgentType::ThirdParty)
                .build(),
        )
        .granular_access_control_configuration(granular())
        .send()
        .await
        .expect("create");
    let id = out.security_profile_id().expect("id").to_string();
    let arn = out.security_profile_arn().expect("arn").to_string();
    assert_eq!(arn, format!("arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE}/security-profile/{id}"));

    let d =
        c.describe_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await.expect("describe");
    let p = d.security_profile().expect("profile");
    assert_eq!(p.id(), Some(id.as_str()));
    assert_eq!(p.arn(), Some(arn.as_str()));
    assert_eq!(p.organization_resource_id(), Some(INSTANCE));
    assert_eq!(p.security_profile_name(), Some("Tier 2_agents@emea-1"));
    assert_eq!(p.description(), Some("second line"));
    assert_eq!(p.tags().unwrap()["team"], "contact-center");
    assert_eq!(p.allowed_access_control_tags().unwrap()["department"], "sales");
    assert_eq!(p.tag_restricted_resources(), ["User"]);
    assert_eq!(p.hierarchy_restricted_resources(), ["User"]);
    assert_eq!(p.allowed_access_control_hierarchy_group_id(), Some("hg-123"));
    assert_eq!(p.granular_access_control_configuration(), Some(&granular()));
    assert!(p.last_modified_time().is_some());
    assert_eq!(p.last_modified_region(), Some("us-east-1"));

    let perms =
        c.list_security_profile_permissions().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    assert_eq!(perms.permissions(), ["BasicAgentAccess", "OutboundCallAccess"]);
    let apps =
        c.list_security_profile_applications().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    assert_eq!(apps.applications(), [full_application()]);
    let modules =
        c.list_security_profile_flow_modules().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    assert_eq!(modules.allowed_flow_modules()[0].flow_module_id(), Some("fm-1"));
    assert_eq!(modules.allowed_flow_modules()[0].r#type(), Some(&FlowModuleType::Mcp));
    let agents =
        c.list_security_profile_ai_agents().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    assert_eq!(agents.allowed_ai_agents()[0].r#type(), Some(&AiAgentType::ThirdParty));

    // Update: members sent replace, empty members clear, members left out stay.
    c.update_security_profile()
        .instance_id(INSTANCE)
        .security_profile_id(&id)
        .description("changed")
        .set_permissions(Some(vec![]))
        .set_applications(Some(vec![]))
        .set_allowed_access_control_tags(Some(Default::default()))
        .send()
        .await
        .expect("update");
    let d = c.describe_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    let p = d.security_profile().unwrap();
    assert_eq!(p.description(), Some("changed"));
    assert!(p.allowed_access_control_tags().is_none_or(|t| t.is_empty()));
    assert_eq!(p.tag_restricted_resources(), ["User"], "members left out of an update stay");
    let perms =
        c.list_security_profile_permissions().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    assert!(perms.permissions().is_empty());
    let apps =
        c.list_security_profile_applications().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    assert!(apps.applications().is_empty());

    c.delete_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await.expect("delete");
    let (code, _) = error_code(
        "describe deleted",
        c.describe_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await,
    );
    assert_eq!(code, "ResourceNotFoundException");

    let ops: Vec<_> = emu.calls().iter().map(|c| c.operation.clone()).collect();
    assert_eq!(ops.first().map(String::as_str), Some("CreateSecurityProfile"));
    assert!(ops.contains(&"UpdateSecurityProfile".to_string()) && ops.contains(&"DeleteSecurityProfile".to_string()));
    assert!(emu.calls().iter().all(|c| c.seq > 0), "every call is recorded with a sequence number");
}

#[tokio::test]
async fn describe_instance_and_default_profiles() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let i = c.describe_instance().instance_id(INSTANCE).send().await.expect("describe instance");
    let i = i.instance().unwrap();
    assert_eq!(i.id(), Some(INSTANCE));
    assert_eq!(i.instance_status(), Some(&InstanceStatus::Active));
    let names: BTreeSet<String> = c
        .list_security_profiles()
        .instance_id(INSTANCE)
        .send()
        .await
        .unwrap()
        .security_profile_summary_list()
        .iter()
        .filter_map(|s| s.name().map(str::to_string))
        .collect();
    assert_eq!(names, ["Admin", "Agent", "CallCenterManager", "QualityAnalyst"].map(String::from).into());
}

#[tokio::test]
async fn create_refuses_each_model_constraint_naming_the_field() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let base = || c.create_security_profile().instance_id(INSTANCE).security_profile_name("valid");
    let many = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>();
    let cases = vec![
        (
            "bad name",
            c.create_security_profile().instance_id(INSTANCE).security_profile_name("no/slash"),
            "SecurityProfileName",
        ),
        (
            "long name",
            c.create_security_profile().instance_id(INSTANCE).security_profile_name("a".repeat(128)),
            "SecurityProfileName",
        ),
        ("long description", base().description("d".repeat(251)), "Description"),
        ("501 permissions", base().set_permissions(Some(many(501))), "Permissions"),
        ("empty permission", base().permissions(""), "Permissions[0]"),
        ("aws: tag", base().tags("aws:owner", "x"), "reserved prefix"),
        ("tag key chars", base().tags("a*b", "x"), "Tags key"),
        ("long tag value", base().tags("k", "v".repeat(257)), "Tags[\"k\"]"),
        (
            "5 ACL tags",
            base().set_allowed_access_control_tags(Some((0..5).map(|i| (format!("k{i}"), "v".into())).collect())),
            "AllowedAccessControlTags",
        ),
        (
            "11 tag-restricted",
            base().set_tag_restricted_resources(Some(vec!["User".into(); 11])),
            "TagRestrictedResources",
        ),
        ("unknown tag-restricted", base().tag_restricted_resources("Printer"), "TagRestrictedResources[0]"),
        (
            "unknown hierarchy-restricted",
            base().hierarchy_restricted_resources("Queue"),
            "HierarchyRestrictedResources[0]",
        ),
        (
            "app without permissions",
            base().applications(Application::builder().namespace("ns").build()),
            "ApplicationPermissions",
        ),
        (
            "app type",
            base().applications(
                Application::builder()
                    .namespace("ns")
                    .application_permissions("A")
                    .r#type(ApplicationType::from("ROBOT"))
                    .build(),
            ),
            "Applications[0].Type",
        ),
        ("11 apps", base().set_applications(Some(vec![full_application(); 11])), "Applications"),
        (
            "flow module type",
            base().allowed_flow_modules(
                FlowModule::builder().r#type(FlowModuleType::from("X")).flow_module_id("f").build(),
            ),
            "AllowedFlowModules[0].Type",
        ),
        (
            "granular access type",
            base().granular_access_control_configuration(
                GranularAccessControlConfiguration::builder()
                    .data_table_access_control_configuration(
                        DataTableAccessControlConfiguration::builder()
                            .primary_attribute_access_control_configuration(
                                PrimaryAttributeAccessControlConfigurationItem::builder()
                                    .primary_attribute_values(
                                        PrimaryAttributeValue::builder()
                                            .access_type(AccessType::from("DENY"))
                                            .attribute_name("a")
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            ),
            "AccessType",
        ),
        (
            "long instance id",
            c.create_security_profile().instance_id("i".repeat(101)).security_profile_name("x"),
            "InstanceId",
        ),
    ];
    for (what, req, field) in cases {
        let (code, message) = error_code(what, req.send().await);
        assert_eq!(code, "InvalidParameterException", "{what}: {message}");
        assert!(message.contains(field), "{what}: message {message:?} should name {field:?}");
    }
    let created = emu.calls().iter().filter(|c| c.succeeded()).count();
    assert_eq!(created, 0, "no invalid request created anything");
}

#[tokio::test]
async fn create_duplicate_quota_unknown_and_inactive_instance() {
    let emu = emulator_with(no_faults(), 6).await; // 4 default profiles + 2
    emu.add_instance("failed-instance", "CREATION_FAILED");
    let c = client(&emu, 1);
    create_named(&c, "one").await;
    let (code, msg) =
        error_code("dup", c.create_security_profile().instance_id(INSTANCE).security_profile_name("one").send().await);
    assert_eq!(code, "DuplicateResourceException");
    assert!(msg.contains("\"one\"") && msg.contains(INSTANCE), "{msg}");
    create_named(&c, "two").await;
    let (code, msg) = error_code(
        "quota",
        c.create_security_profile().instance_id(INSTANCE).security_profile_name("three").send().await,
    );
    assert_eq!(code, "LimitExceededException", "{msg}");
    let (code, msg) = error_code(
        "unknown instance",
        c.create_security_profile().instance_id("nope").security_profile_name("x").send().await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    assert!(msg.contains("nope"));
    let (code, _) = error_code(
        "inactive",
        c.create_security_profile().instance_id("failed-instance").security_profile_name("x").send().await,
    );
    assert_eq!(code, "InvalidRequestException");
}

/// Every operation other than Create, each with a way to meet each error code its model lists.
#[derive(Clone, Copy, Debug)]
enum Op {
    Describe,
    Update,
    Delete,
    List,
    ListPermissions,
    ListApplications,
    ListFlowModules,
    ListAiAgents,
    Search,
    Tag,
    Untag,
    ListTags,
}

const ALL_OPS: [Op; 12] = [
    Op::Describe,
    Op::Update,
    Op::Delete,
    Op::List,
    Op::ListPermissions,
    Op::ListApplications,
    Op::ListFlowModules,
    Op::ListAiAgents,
    Op::Search,
    Op::Tag,
    Op::Untag,
    Op::ListTags,
];

/// Calls `op` on (instance, profile id, ARN); `bad` sends a parameter that breaks the model.
async fn call(c: &Client, op: Op, instance: &str, id: &str, arn: &str, bad: bool) -> (String, String) {
    let max = if bad { 0 } else { 10 };
    let what = format!("{op:?}");
    match op {
        Op::Describe => {
            outcome(&what, c.describe_security_profile().instance_id(instance).security_profile_id(id).send().await)
        }
        Op::Update => {
            let desc = if bad { "x".repeat(251) } else { "ok".into() };
            outcome(
                &what,
                c.update_security_profile()
                    .instance_id(instance)
                    .security_profile_id(id)
                    .description(desc)
                    .send()
                    .await,
            )
        }
        Op::Delete => {
            outcome(&what, c.delete_security_profile().instance_id(instance).security_profile_id(id).send().await)
        }
        Op::List => outcome(&what, c.list_security_profiles().instance_id(instance).max_results(max).send().await),
        Op::ListPermissions => outcome(
            &what,
            c.list_security_profile_permissions()
                .instance_id(instance)
                .security_profile_id(id)
                .max_results(max)
                .send()
                .await,
        ),
        Op::ListApplications => outcome(
            &what,
            c.list_security_profile_applications()
                .instance_id(instance)
                .security_profile_id(id)
                .max_results(max)
                .send()
                .await,
        ),
        Op::ListFlowModules => outcome(
            &what,
            c.list_security_profile_flow_modules()
                .instance_id(instance)
                .security_profile_id(id)
                .max_results(max)
                .send()
                .await,
        ),
        Op::ListAiAgents => outcome(
            &what,
            c.list_security_profile_ai_agents()
                .instance_id(instance)
                .security_profile_id(id)
                .max_results(max)
                .send()
                .await,
        ),
        Op::Search => outcome(
            &what,
            c.search_security_profiles().instance_id(instance).max_results(if bad { 101 } else { 10 }).send().await,
        ),
        Op::Tag => {
            outcome(&what, c.tag_resource().resource_arn(arn).tags(if bad { "aws:x" } else { "k" }, "v").send().await)
        }
        Op::Untag => {
            outcome(&what, c.untag_resource().resource_arn(arn).tag_keys(if bad { "aws:x" } else { "k" }).send().await)
        }
        Op::ListTags => {
            outcome(&what, c.list_tags_for_resource().resource_arn(if bad { "not-an-arn" } else { arn }).send().await)
        }
    }
}

#[tokio::test]
async fn every_operation_returns_each_error_code_of_its_model() {
    let emu = emulator_with(no_faults(), 100).await;
    emu.add_instance("inactive", "CREATION_FAILED");
    let c = client(&emu, 1);
    let (id, arn) = create_named(&c, "errors").await;
    let missing_arn = format!("arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE}/security-profile/missing");
    for op in ALL_OPS {
        // The profile's own operations must fail here; List and Search have no profile to miss.
        if !matches!(op, Op::List | Op::Search) {
            let (code, msg) = call(&c, op, INSTANCE, "missing", &missing_arn, false).await;
            assert_eq!(code, "ResourceNotFoundException", "{op:?}: {msg}");
        }
        let (code, msg) = call(&c, op, "unknown-instance", &id, &missing_arn, false).await;
        if !matches!(op, Op::Tag | Op::Untag | Op::ListTags) {
            assert_eq!(code, "ResourceNotFoundException", "{op:?} unknown instance: {msg}");
        }
        if matches!(op, Op::Describe | Op::Delete) {
            // No member of these can break the model but the instance ID's length.
            let (code, msg) = call(&c, op, &"i".repeat(101), &id, &arn, false).await;
            assert_eq!(code, "InvalidParameterException", "{op:?}: {msg}");
            assert!(msg.contains("InstanceId"), "{msg}");
        } else {
            let (code, msg) = call(&c, op, INSTANCE, &id, &arn, true).await;
            assert_eq!(code, "InvalidParameterException", "{op:?} bad parameter: {msg}");
        }
        if !matches!(op, Op::Tag | Op::Untag | Op::ListTags) {
            let (code, msg) = call(&c, op, "inactive", &id, &arn, false).await;
            assert_eq!(code, "InvalidRequestException", "{op:?} inactive instance: {msg}");
        }
        if !matches!(op, Op::Delete) {
            let (code, msg) = call(&c, op, INSTANCE, &id, &arn, false).await;
            assert_eq!(code, "ok", "{op:?} valid call: {msg}");
        }
    }
    // TagResource past 50 tags in all is an InvalidRequestException.
    let tags: std::collections::HashMap<String, String> = (0..50).map(|i| (format!("t{i}"), "v".into())).collect();
    c.tag_resource().resource_arn(&arn).set_tags(Some(tags)).send().await.expect("50 tags fit");
    let (code, msg) = error_code("51st tag", c.tag_resource().resource_arn(&arn).tags("one-more", "v").send().await);
    assert_eq!(code, "InvalidRequestException", "{msg}");
    // DeleteSecurityProfile's own errors: AccessDenied and ResourceInUse.
    assert!(emu.with_profile(INSTANCE, &id, |p| p.delete_denied = true));
    let (code, _) =
        error_code("denied", c.delete_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await);
    assert_eq!(code, "AccessDeniedException");
    emu.with_profile(INSTANCE, &id, |p| {
        p.delete_denied = false;
        p.in_use = true;
    });
    let (code, msg) =
        error_code("in use", c.delete_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await);
    assert_eq!(code, "ResourceInUseException", "{msg}");
    // DescribeInstance: InvalidRequest (bad ID) and ResourceNotFound.
    let (code, _) = error_code("instance id", c.describe_instance().instance_id("i".repeat(101)).send().await);
    assert_eq!(code, "InvalidRequestException");
    let (code, _) = error_code("unknown instance", c.describe_instance().instance_id("nope").send().await);
    assert_eq!(code, "ResourceNotFoundException");
}

/// `("ok", "")` for a call that succeeded, else its error code and message.
fn outcome<
    T: std::fmt::Debug,
    E: aws_sdk_connect::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
>(
    what: &str,
    result: Result<T, aws_sdk_connect::error::SdkError<E, R>>,
) -> (String, String) {
    match result {
        Ok(_) => ("ok".into(), String::new()),
        Err(_) => error_code(what, result),
    }
}

fn ok_or_code(r: (String, String)) -> String {
    r.0
}

#[tokio::test]
async fn every_operation_meets_throttling_and_internal_errors() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let (id, arn) = create_named(&c, "faults").await;
    emu.set_faults(Faults { throttle_rate: 0.001, throttle_burst: 0.0, ..Faults::default() });
    for op in ALL_OPS {
        assert_eq!(ok_or_code(call(&c, op, INSTANCE, &id, &arn, false).await), "ThrottlingException", "{op:?}");
    }
    let (code, _) = error_code(
        "create throttled",
        c.create_security_profile().instance_id(INSTANCE).security_profile_name("t").send().await,
    );
    assert_eq!(code, "ThrottlingException");
    emu.set_faults(Faults { throttle_rate: 0.0, error_rate: 1.0, ..Faults::default() });
    for op in ALL_OPS {
        assert_eq!(ok_or_code(call(&c, op, INSTANCE, &id, &arn, false).await), "InternalServiceException", "{op:?}");
    }
    let (code, _) = error_code(
        "create 500",
        c.create_security_profile().instance_id(INSTANCE).security_profile_name("t").send().await,
    );
    assert_eq!(code, "InternalServiceException");
    let (code, _) = error_code("instance 500", c.describe_instance().instance_id(INSTANCE).send().await);
    assert_eq!(code, "InternalServiceException");
    let state = emu.state();
    assert!(state.instances[INSTANCE].profiles.iter().any(|p| p.id == id), "faults changed nothing");
    assert!(!state.instances[INSTANCE].profiles.iter().any(|p| p.security_profile_name == "t"));
}

#[tokio::test]
async fn pagination_of_lists_and_search() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    for i in 0..25 {
        create_named(&c, &format!("page-{i:02}")).await;
    }
    let all: Vec<String> = c
        .list_security_profiles()
        .instance_id(INSTANCE)
        .max_results(7)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|s| s.expect("page").name().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 29, "25 created + 4 defaults");
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 29, "no profile twice");
    let pages = emu.calls().iter().filter(|c| c.operation == "ListSecurityProfiles").count();
    assert_eq!(pages, 5, "29 profiles in pages of 7");

    let perms: Vec<String> = (0..120).map(|i| format!("Perm{i}")).collect();
    let (id, _) = create_named(&c, "many-perms").await;
    c.update_security_profile()
        .instance_id(INSTANCE)
        .security_profile_id(&id)
        .set_permissions(Some(perms.clone()))
        .send()
        .await
        .unwrap();
    let got: Vec<String> = c
        .list_security_profile_permissions()
        .instance_id(INSTANCE)
        .security_profile_id(&id)
        .max_results(50)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|p| p.unwrap())
        .collect();
    assert_eq!(got, perms);

    let criteria = SecurityProfileSearchCriteria::builder()
        .string_condition(
            StringCondition::builder()
                .field_name("name")
                .value("page-")
                .comparison_type(StringComparisonType::StartsWith)
                .build(),
        )
        .build();
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let out = c
            .search_security_profiles()
            .instance_id(INSTANCE)
            .search_criteria(criteria.clone())
            .max_results(10)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        assert_eq!(out.approximate_total_count(), Some(25));
        names.extend(out.security_profiles().iter().map(|p| p.security_profile_name().unwrap().to_string()));
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names.len(), 25);
    let (code, msg) =
        error_code("forged token", c.list_security_profiles().instance_id(INSTANCE).next_token("forged").send().await);
    assert_eq!(code, "InvalidParameterException", "{msg}");
}

#[tokio::test]
async fn search_by_name_and_tags() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let (_, arn) = create_named(&c, "Billing Agents").await;
    create_named(&c, "Billing").await;
    c.tag_resource().resource_arn(&arn).tags("owner", "uid-1").send().await.unwrap();
    let search = |criteria: SecurityProfileSearchCriteria| {
        let c = c.clone();
        async move {
            c.search_security_profiles()
                .instance_id(INSTANCE)
                .search_criteria(criteria)
                .send()
                .await
                .unwrap()
                .security_profiles()
                .iter()
                .map(|p| p.security_profile_name().unwrap().to_string())
                .collect::<BTreeSet<_>>()
        }
    };
    let by = |t: StringComparisonType, v: &str| {
        SecurityProfileSearchCriteria::builder()
            .string_condition(StringCondition::builder().field_name("name").value(v).comparison_type(t).build())
            .build()
    };
    assert_eq!(search(by(StringComparisonType::Exact, "Billing")).await, ["Billing".to_string()].into());
    assert_eq!(search(by(StringComparisonType::StartsWith, "Billing")).await.len(), 2);
    assert_eq!(search(by(StringComparisonType::Contains, "agents")).await, ["Billing Agents".to_string()].into());
    let tagged = c
        .search_security_profiles()
        .instance_id(INSTANCE)
        .search_filter(
            SecurityProfilesSearchFilter::builder()
                .tag_filter(
                    ControlPlaneTagFilter::builder()
                        .tag_condition(TagCondition::builder().tag_key("owner").tag_value("uid-1").build())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(tagged.security_profiles().len(), 1);
    assert_eq!(tagged.security_profiles()[0].tags().unwrap()["owner"], "uid-1");
}

#[tokio::test]
async fn tags_are_added_changed_listed_and_removed() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let (_, arn) = create_named(&c, "tagged").await;
    c.tag_resource().resource_arn(&arn).tags("a", "1").tags("b", "2").send().await.unwrap();
    c.tag_resource().resource_arn(&arn).tags("a", "changed").send().await.unwrap();
    c.untag_resource().resource_arn(&arn).tag_keys("b").send().await.unwrap();
    let tags = c.list_tags_for_resource().resource_arn(&arn).send().await.unwrap();
    let tags: Vec<(String, String)> = tags.tags().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(tags, vec![("a".to_string(), "changed".to_string())]);
    let ops: Vec<String> = emu.calls().iter().map(|c| c.operation.clone()).collect();
    assert_eq!(ops, ["CreateSecurityProfile", "TagResource", "TagResource", "UntagResource", "ListTagsForResource"]);
}

#[tokio::test]
async fn a_burst_of_20_calls_meets_429s_and_the_sdk_retries_them() {
    let emu = emulator_with(Faults::default(), 100).await; // 2 requests/s, burst 5
    let c = client(&emu, 3);
    let calls = (0..20).map(|_| {
        let c = c.clone();
        async move { c.describe_instance().instance_id(INSTANCE).send().await }
    });
    let results = futures::future::join_all(calls).await;
    let log = emu.calls();
    let throttled = log.iter().filter(|c| c.outcome == "ThrottlingException").count();
    let served = log.iter().filter(|c| c.succeeded()).count();
    assert!(throttled > 0, "a burst of 20 must meet 429s");
    assert!(log.len() > 20, "the SDK retried throttled calls ({} calls seen)", log.len());
    assert_eq!(served, results.iter().filter(|r| r.is_ok()).count());
    assert!(served > 5, "retries got calls past the burst of 5 ({served} served)");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        use aws_sdk_connect::error::ProvideErrorMetadata;
        assert_eq!(r.code(), Some("ThrottlingException"), "only throttling may fail: {r:?}");
    }
}

#[tokio::test]
async fn a_lost_create_response_leaves_the_profile_created() {
    let emu = emulator_with(Faults { throttle_rate: 0.0, lose_next_creates: 1, ..Faults::default() }, 100).await;
    // Without retries the caller sees a transport error, not an answer.
    let once = client(&emu, 1);
    let err = once
        .create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name("lost")
        .send()
        .await
        .expect_err("response lost");
    assert!(matches!(err, aws_sdk_connect::error::SdkError::DispatchFailure(_)), "{err:?}");
    let classified = connect_operator::connect::ConnectError::from_sdk(err);
    assert!(classified.outcome_unknown, "a dropped answer may have taken effect: {classified:?}");
    let state = emu.state();
    let lost: Vec<_> =
        state.instances[INSTANCE].profiles.iter().filter(|p| p.security_profile_name == "lost").collect();
    assert_eq!(lost.len(), 1, "the profile was created although its response was lost");
    // With the SDK's retries, the retry of a lost create meets DuplicateResourceException.
    emu.set_faults(Faults { throttle_rate: 0.0, lose_next_creates: 1, ..Faults::default() });
    let retrying = client(&emu, 3);
    let (code, _) = error_code(
        "retried create",
        retrying.create_security_profile().instance_id(INSTANCE).security_profile_name("lost-2").send().await,
    );
    assert_eq!(code, "DuplicateResourceException");
    let outcomes: Vec<String> = emu
        .calls()
        .iter()
        .filter(|c| c.params["body"]["SecurityProfileName"] == "lost-2")
        .map(|c| c.outcome.clone())
        .collect();
    assert_eq!(outcomes, ["ok:response-lost", "DuplicateResourceException"]);
    assert_eq!(
        emu.state().instances[INSTANCE].profiles.iter().filter(|p| p.security_profile_name == "lost-2").count(),
        1
    );
}

/// The emulator is a peer crate with its own model of Connect's limits (`connect_emulator::limits`); the
/// operator's CRD schema and validation use `connect_operator::constraints`. Both state the API model.
#[test]
fn the_emulator_and_the_operator_know_the_same_limits() {
    use connect_emulator::limits as emu;
    use connect_operator::constraints as op;
    let sizes = [
        ("INSTANCE_ID_MAX", op::INSTANCE_ID_MAX, emu::INSTANCE_ID_MAX),
        ("PROFILE_NAME_MAX", op::PROFILE_NAME_MAX, emu::PROFILE_NAME_MAX),
        ("DESCRIPTION_MAX", op::DESCRIPTION_MAX, emu::DESCRIPTION_MAX),
        ("PERMISSIONS_MAX_ITEMS", op::PERMISSIONS_MAX_ITEMS, emu::PERMISSIONS_MAX_ITEMS),
        ("PERMISSION_MAX", op::PERMISSION_MAX, emu::PERMISSION_MAX),
        ("TAGS_MAX_ENTRIES", op::TAGS_MAX_ENTRIES, emu::TAGS_MAX_ENTRIES),
        ("TAG_KEY_MAX", op::TAG_KEY_MAX, emu::TAG_KEY_MAX),
        ("TAG_VALUE_MAX", op::TAG_VALUE_MAX, emu::TAG_VALUE_MAX),
        ("ACCESS_CONTROL_TAGS_MAX_ENTRIES", op::ACCESS_CONTROL_TAGS_MAX_ENTRIES, emu::ACCESS_CONTROL_TAGS_MAX_ENTRIES),
        (
            "TAG_RESTRICTED_RESOURCES_MAX_ITEMS",
            op::TAG_RESTRICTED_RESOURCES_MAX_ITEMS,
            emu::TAG_RESTRICTED_RESOURCES_MAX_ITEMS,
        ),
        ("RESOURCE_NAME_MAX", op::RESOURCE_NAME_MAX, emu::RESOURCE_NAME_MAX),
        ("APPLICATIONS_MAX_ITEMS", op::APPLICATIONS_MAX_ITEMS, emu::APPLICATIONS_MAX_ITEMS),
        ("APPLICATION_NAMESPACE_MAX", op::APPLICATION_NAMESPACE_MAX, emu::APPLICATION_NAMESPACE_MAX),
        (
            "APPLICATION_PERMISSIONS_MAX_ITEMS",
            op::APPLICATION_PERMISSIONS_MAX_ITEMS,
            emu::APPLICATION_PERMISSIONS_MAX_ITEMS,
        ),
        ("FLOW_MODULES_MAX_ITEMS", op::FLOW_MODULES_MAX_ITEMS, emu::FLOW_MODULES_MAX_ITEMS),
        ("FLOW_MODULE_ID_MAX", op::FLOW_MODULE_ID_MAX, emu::FLOW_MODULE_ID_MAX),
        ("AI_AGENTS_MAX_ITEMS", op::AI_AGENTS_MAX_ITEMS, emu::AI_AGENTS_MAX_ITEMS),
        (
            "PRIMARY_ATTRIBUTE_VALUES_MAX_ITEMS",
            op::PRIMARY_ATTRIBUTE_VALUES_MAX_ITEMS,
            emu::PRIMARY_ATTRIBUTE_VALUES_MAX_ITEMS,
        ),
        ("PRIMARY_ATTRIBUTE_NAME_MAX", op::PRIMARY_ATTRIBUTE_NAME_MAX, emu::PRIMARY_ATTRIBUTE_NAME_MAX),
        ("PRIMARY_VALUES_MAX_ITEMS", op::PRIMARY_VALUES_MAX_ITEMS, emu::PRIMARY_VALUES_MAX_ITEMS),
        ("SEARCH_NEXT_TOKEN_MAX", op::SEARCH_NEXT_TOKEN_MAX, emu::SEARCH_NEXT_TOKEN_MAX),
    ];
    for (name, operator, emulator) in sizes {
        assert_eq!(operator, emulator, "{name}");
    }
    // The page size of every List* and SearchSecurityProfiles call the operator makes
    // (connect/operations.rs): the model's largest, which the emulator accepts and Connect too.
    assert_eq!(i64::from(op::LIST_MAX_RESULTS), emu::LIST_MAX_RESULTS, "LIST_MAX_RESULTS");
    assert_eq!(i64::from(op::SEARCH_MAX_RESULTS), emu::SEARCH_MAX_RESULTS, "SEARCH_MAX_RESULTS");
    let patterns = [
        ("PROFILE_NAME_PATTERN", op::PROFILE_NAME_PATTERN, emu::PROFILE_NAME_PATTERN),
        ("TAG_KEY_PATTERN", op::TAG_KEY_PATTERN, emu::TAG_KEY_PATTERN),
        ("RESERVED_TAG_PREFIX", op::RESERVED_TAG_PREFIX, emu::RESERVED_TAG_PREFIX),
        ("LATIN1_PRINTABLE_PATTERN", op::LATIN1_PRINTABLE_PATTERN, emu::LATIN1_PRINTABLE_PATTERN),
    ];
    for (name, operator, emulator) in patterns {
        assert_eq!(operator, emulator, "{name}");
    }
    let lists = [
        ("DEFAULT_PROFILE_NAMES", op::DEFAULT_PROFILE_NAMES, emu::DEFAULT_PROFILE_NAMES),
        ("TAG_RESTRICTED_RESOURCE_NAMES", op::TAG_RESTRICTED_RESOURCE_NAMES, emu::TAG_RESTRICTED_RESOURCE_NAMES),
        (
            "HIERARCHY_RESTRICTED_RESOURCE_NAMES",
            op::HIERARCHY_RESTRICTED_RESOURCE_NAMES,
            emu::HIERARCHY_RESTRICTED_RESOURCE_NAMES,
        ),
        ("APPLICATION_TYPES", op::APPLICATION_TYPES, emu::APPLICATION_TYPES),
        ("FLOW_MODULE_TYPES", op::FLOW_MODULE_TYPES, emu::FLOW_MODULE_TYPES),
        ("AI_AGENT_TYPES", op::AI_AGENT_TYPES, emu::AI_AGENT_TYPES),
        ("ACCESS_TYPES", op::ACCESS_TYPES, emu::ACCESS_TYPES),
        ("RESERVED_ATTRIBUTE_PREFIXES", op::RESERVED_ATTRIBUTE_PREFIXES, emu::RESERVED_ATTRIBUTE_PREFIXES),
    ];
    for (name, operator, emulator) in lists {
        assert_eq!(operator, emulator, "{name}");
    }
}

/// One plain HTTP/1.1 request to the emulator (the control API, STS): its status and body.
async fn raw_http(emu: &Emulator, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(emu.addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        emu.addr,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_string())
}

async fn control(emu: &Emulator, method: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (status, body) =
        raw_http(emu, method, &format!("/_emulator/{path}"), "application/json", &body.to_string()).await;
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

fn throttled_calls(emu: &Emulator) -> usize {
    emu.calls().iter().filter(|c| c.outcome == "ThrottlingException").count()
}

/// A client that uses the burst, then sends one call every `interval` (sequentially, on an absolute
/// schedule that starts once the burst has been answered), rotating through the read and tag operations:
/// returns (calls accepted, seconds from the burst's sending to the last call's).
async fn paced(
    emu: &Emulator,
    c: &Client,
    id: &str,
    arn: &str,
    burst: usize,
    interval: Duration,
    n: u32,
) -> (usize, f64) {
    let start = Instant::now();
    let burst_calls = (0..burst).map(|_| c.describe_instance().instance_id(INSTANCE).send());
    let results = futures::future::join_all(burst_calls).await;
    assert!(results.iter().all(|r| r.is_ok()), "the burst is served: {results:?}");
    // Every call of the burst arrived before now: from here on, calls sent at the rate are never early.
    let answered = Instant::now();
    let ops = [Op::Describe, Op::List, Op::ListPermissions, Op::Search, Op::ListTags, Op::Tag];
    let mut last = answered;
    for k in 1..=n {
        last = answered + interval * k;
        tokio::time::sleep_until(last.into()).await;
        call(c, ops[k as usize % ops.len()], INSTANCE, id, arn, false).await;
    }
    let accepted = emu.calls().iter().filter(|c| c.succeeded()).count();
    (accepted, (last - start).as_secs_f64())
}

#[tokio::test]
async fn a_client_at_exactly_the_rate_is_never_throttled_one_1_percent_faster_is() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let (id, arn) = create_named(&c, "paced").await;
    // Throttling was off: switching it on starts with a full bucket, like a new emulator.
    emu.set_faults(Faults { throttle_rate: 20.0, throttle_burst: 5.0, ..no_faults() });
    emu.clear_calls();
    let (accepted, _) = paced(&emu, &c, &id, &arn, 5, Duration::from_millis(50), 40).await;
    assert_eq!(throttled_calls(&emu), 0, "exactly 20/s after the burst: {:?}", emu.calls().last());
    assert_eq!(accepted, 45);

    // Wait for the bucket to fill again, then 1% faster than 20/s: 49.5 ms apart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emu.throttle_tokens(), 5.0, "full again after 250 ms");
    emu.clear_calls();
    let (accepted, _) = paced(&emu, &c, &id, &arn, 5, Duration::from_micros(49_500), 120).await;
    let throttled = throttled_calls(&emu);
    assert!(throttled > 0, "1% over the rate must meet ThrottlingException");
    // Throttled calls take no token: what gets through is exactly the burst plus the refill over the
    // window the emulator saw (its own arrival times: the client's clock would add its scheduling delays).
    let calls = emu.calls();
    let first = calls.iter().map(|c| c.arrived_ms).min().unwrap_or_default();
    let last = calls.iter().map(|c| c.arrived_ms).max().unwrap_or_default();
    let window = (last - first) as f64 / 1000.0;
    let expected = 5.0 + 20.0 * window;
    assert!(
        (accepted as f64 - expected).abs() <= 1.5,
        "{accepted} calls accepted in {window:.3} s, expected burst 5 + 20/s * window = {expected:.1} (±1); {throttled} throttled"
    );
}

#[tokio::test]
async fn every_connect_operation_shares_one_bucket_that_sts_control_and_new_faults_do_not_touch() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let (id, arn) = create_named(&c, "shared-bucket").await;
    // Burst 6 and a rate so low that nothing refills during the test.
    let faults = Faults { throttle_rate: 0.0001, throttle_burst: 6.0, ..no_faults() };
    emu.set_faults(faults.clone());
    emu.clear_calls();
    for i in 0..10 {
        let form = format!(
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr&RoleSessionName=s{i}"
        );
        let (status, _) = raw_http(&emu, "POST", "/", "application/x-www-form-urlencoded", &form).await;
        assert_eq!(status, 200, "AssumeRole");
        assert_eq!(control(&emu, "GET", "calls", serde_json::json!({})).await.0, 200);
        // The same faults again, and other faults with the same throttle: no refill.
        assert_eq!(control(&emu, "PUT", "faults", serde_json::json!(faults)).await.0, 200);
        emu.set_faults(Faults { error_rate: 0.0, latency_ms: 0, ..faults.clone() });
        // A console edit takes no token either.
        emu.console_edit(INSTANCE, &id, serde_json::json!({"description": format!("edit {i}")})).unwrap();
    }
    assert!((emu.throttle_tokens() - 6.0).abs() < 0.01, "STS, control and console calls took no token");
    // Six different operations take the six tokens; the seventh, of any operation, is throttled.
    for op in [Op::Describe, Op::List, Op::Search, Op::ListPermissions, Op::Tag, Op::ListTags] {
        assert_eq!(ok_or_code(call(&c, op, INSTANCE, &id, &arn, false).await), "ok", "{op:?}");
    }
    for op in [Op::Update, Op::ListAiAgents, Op::Untag] {
        assert_eq!(ok_or_code(call(&c, op, INSTANCE, &id, &arn, false).await), "ThrottlingException", "{op:?}");
    }
    let (code, _) = error_code("instance", c.describe_instance().instance_id(INSTANCE).send().await);
    assert_eq!(code, "ThrottlingException");
    let (status, body) = control(&emu, "GET", "throttle", serde_json::json!({})).await;
    assert_eq!(status, 200);
    assert!(body["tokens"].as_f64().unwrap() < 0.01, "{body}");
    // The throttled answer keeps its shape: 429, x-amzn-ErrorType ThrottlingException, "Rate exceeded".
    let last = emu.calls().last().cloned().unwrap();
    assert_eq!((last.outcome.as_str(), last.status), ("ThrottlingException", 429));
}

#[tokio::test]
async fn a_held_answer_times_out_the_caller_and_the_call_takes_effect_when_answered() {
    let emu = emulator_with(Faults { hold_answers_ms: 1500, ..no_faults() }, 100).await;
    let config = client(&emu, 1)
        .config()
        .to_builder()
        .timeout_config(
            aws_sdk_connect::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(300))
                .build(),
        )
        .build();
    let c = Client::from_conf(config);
    let sent = Instant::now();
    let err = c
        .create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name("held")
        .send()
        .await
        .expect_err("the answer is held past the timeout");
    assert!(sent.elapsed() < Duration::from_millis(1000), "the caller gave up at its timeout");
    assert!(matches!(err, aws_sdk_connect::error::SdkError::TimeoutError(_)), "{err:?}");
    let classified = connect_operator::connect::ConnectError::from_sdk(err);
    assert!(classified.outcome_unknown, "{classified:?}");
    let has_held =
        |emu: &Emulator| emu.state().instances[INSTANCE].profiles.iter().any(|p| p.security_profile_name == "held");
    assert!(!has_held(&emu), "the held call has not taken effect yet");
    assert!(emu.calls().is_empty(), "nor is it in the call log");
    tokio::time::sleep_until((sent + Duration::from_millis(1700)).into()).await;
    assert!(has_held(&emu), "the call took effect when its answer was due, though its caller had gone");
    let calls = emu.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].operation.as_str(), calls[0].outcome.as_str()), ("CreateSecurityProfile", "ok"));
    assert!(
        calls[0].at_ms - calls[0].arrived_ms >= 1490,
        "arrived {} ms, took effect {} ms",
        calls[0].arrived_ms,
        calls[0].at_ms
    );
    // Cleared, calls are answered at once again.
    emu.set_faults(no_faults());
    c.describe_instance().instance_id(INSTANCE).send().await.expect("answered within the timeout");
}

#[tokio::test]
async fn a_new_profile_is_invisible_to_reads_for_the_read_lag_but_not_to_writes() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    emu.set_faults(Faults { read_lag_ms: 1500, ..no_faults() });
    let created = Instant::now();
    let (id, arn) = create_named(&c, "lagging").await;
    // Reads do not see it yet.
    let (code, _) = error_code(
        "describe",
        c.describe_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    for op in [Op::ListPermissions, Op::ListApplications, Op::ListFlowModules, Op::ListAiAgents, Op::ListTags] {
        assert_eq!(ok_or_code(call(&c, op, INSTANCE, &id, &arn, false).await), "ResourceNotFoundException", "{op:?}");
    }
    let listed: Vec<String> = c
        .list_security_profiles()
        .instance_id(INSTANCE)
        .send()
        .await
        .unwrap()
        .security_profile_summary_list()
        .iter()
        .filter_map(|s| s.name().map(str::to_string))
        .collect();
    assert!(!listed.contains(&"lagging".to_string()), "{listed:?}");
    assert_eq!(listed.len(), 4, "the default profiles are there from the start: {listed:?}");
    let by_name = |name: &str| {
        SecurityProfileSearchCriteria::builder()
            .string_condition(
                StringCondition::builder()
                    .field_name("name")
                    .value(name)
                    .comparison_type(StringComparisonType::Exact)
                    .build(),
            )
            .build()
    };
    let found =
        c.search_security_profiles().instance_id(INSTANCE).search_criteria(by_name("lagging")).send().await.unwrap();
    assert!(found.security_profiles().is_empty());
    assert_eq!(found.approximate_total_count(), Some(0));
    // Writes do: the name is taken, and Update, Tag and Untag reach it.
    let (code, _) = error_code(
        "duplicate",
        c.create_security_profile().instance_id(INSTANCE).security_profile_name("lagging").send().await,
    );
    assert_eq!(code, "DuplicateResourceException");
    c.update_security_profile()
        .instance_id(INSTANCE)
        .security_profile_id(&id)
        .description("written while invisible")
        .send()
        .await
        .expect("update");
    c.tag_resource().resource_arn(&arn).tags("k", "v").tags("gone", "x").send().await.expect("tag");
    c.untag_resource().resource_arn(&arn).tag_keys("gone").send().await.expect("untag");
    // Delete too.
    let (other, _) = create_named(&c, "deleted-while-invisible").await;
    c.delete_security_profile().instance_id(INSTANCE).security_profile_id(&other).send().await.expect("delete");
    assert!(created.elapsed() < Duration::from_millis(1500), "the writes ran within the lag");
    // Once the lag has passed, reads see it, with the writes made meanwhile.
    tokio::time::sleep_until((created + Duration::from_millis(1600)).into()).await;
    let d =
        c.describe_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await.expect("describe");
    let p = d.security_profile().unwrap();
    assert_eq!(p.description(), Some("written while invisible"));
    assert_eq!(p.tags().unwrap().len(), 1);
    let found =
        c.search_security_profiles().instance_id(INSTANCE).search_criteria(by_name("lagging")).send().await.unwrap();
    assert_eq!(found.security_profiles().len(), 1);
    let listed = c.list_security_profiles().instance_id(INSTANCE).send().await.unwrap();
    assert!(listed.security_profile_summary_list().iter().any(|s| s.id() == Some(id.as_str())));
}

#[tokio::test]
async fn list_and_search_summaries_carry_the_model_members_and_only_update_moves_last_modified() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    c.create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name("summarised")
        .description("what it is for")
        .tags("team", "a")
        .send()
        .await
        .unwrap();
    let describe = |id: String| {
        let c = c.clone();
        async move {
            let d = c.describe_security_profile().instance_id(INSTANCE).security_profile_id(id).send().await.unwrap();
            d.security_profile().unwrap().clone()
        }
    };
    let summary = |c: Client| async move {
        let list = c.list_security_profiles().instance_id(INSTANCE).send().await.unwrap();
        list.security_profile_summary_list().iter().find(|s| s.name() == Some("summarised")).cloned().unwrap()
    };
    let s = summary(c.clone()).await;
    let id = s.id().expect("Id").to_string();
    let p = describe(id.clone()).await;
    assert_eq!(s.arn(), p.arn(), "Arn");
    assert_eq!(s.name(), Some("summarised"), "Name");
    assert_eq!(s.last_modified_time(), p.last_modified_time(), "LastModifiedTime");
    assert!(s.last_modified_time().is_some());
    assert_eq!(s.last_modified_region(), Some("us-east-1"), "LastModifiedRegion");
    let found = c
        .search_security_profiles()
        .instance_id(INSTANCE)
        .search_criteria(
            SecurityProfileSearchCriteria::builder()
                .string_condition(
                    StringCondition::builder()
                        .field_name("name")
                        .value("summarised")
                        .comparison_type(StringComparisonType::Exact)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let hit = &found.security_profiles()[0];
    assert_eq!(hit.id(), Some(id.as_str()), "Id");
    assert_eq!(hit.arn(), p.arn(), "Arn");
    assert_eq!(hit.organization_resource_id(), Some(INSTANCE), "OrganizationResourceId");
    assert_eq!(hit.security_profile_name(), Some("summarised"), "SecurityProfileName");
    assert_eq!(hit.description(), Some("what it is for"), "Description");
    assert_eq!(hit.tags().unwrap().get("team").map(String::as_str), Some("a"), "Tags");

    // Tag operations leave LastModifiedTime alone; UpdateSecurityProfile moves it.
    let before = p.last_modified_time().copied().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let arn = p.arn().unwrap();
    c.tag_resource().resource_arn(arn).tags("team", "b").send().await.unwrap();
    c.untag_resource().resource_arn(arn).tag_keys("team").send().await.unwrap();
    assert_eq!(describe(id.clone()).await.last_modified_time(), Some(&before), "tags are not a modification");
    assert_eq!(summary(c.clone()).await.last_modified_time(), Some(&before));
    c.update_security_profile().instance_id(INSTANCE).security_profile_id(&id).description("new").send().await.unwrap();
    let after = describe(id.clone()).await.last_modified_time().copied().unwrap();
    assert!(after.as_secs_f64() > before.as_secs_f64(), "Update moves LastModifiedTime: {before:?} -> {after:?}");
    assert_eq!(summary(c.clone()).await.last_modified_time(), Some(&after), "and the list shows it");
}

#[tokio::test]
async fn console_edits_and_deletes_change_profiles_without_the_api_quota() {
    let emu = emulator_with(no_faults(), 100).await;
    let c = client(&emu, 1);
    let (id, arn) = create_named(&c, "console").await;
    c.tag_resource().resource_arn(&arn).tags("keep", "1").tags("drop", "2").send().await.unwrap();
    let lm = |emu: &Emulator| {
        emu.state().instances[INSTANCE].profiles.iter().find(|p| p.id == id).map(|p| p.last_modified_time)
    };
    let created = lm(&emu).unwrap();
    emu.set_faults(Faults { throttle_rate: 0.0001, throttle_burst: 3.0, ..no_faults() });
    emu.clear_calls();
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Tags only (as TagResource / UntagResource): LastModifiedTime stays.
    let (status, p) = control(
        &emu,
        "PATCH",
        &format!("profiles/{INSTANCE}/{id}"),
        serde_json::json!({"tags": {"owner": "someone"}, "untagKeys": ["drop"]}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["Tags"], serde_json::json!({"keep": "1", "owner": "someone"}));
    assert_eq!(lm(&emu), Some(created), "a tag edit is not a modification");
    // Members of UpdateSecurityProfile (as Update): LastModifiedTime moves.
    let (status, p) = control(
        &emu,
        "PATCH",
        &format!("profiles/{INSTANCE}/{id}"),
        serde_json::json!({"description": "changed in the console", "permissions": ["BasicAgentAccess"]}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert!(lm(&emu).unwrap() > created, "a console edit of the profile modifies it");
    // Invalid edits are refused as Connect would refuse them, and change nothing.
    let (status, body) = control(
        &emu,
        "PATCH",
        &format!("profiles/{INSTANCE}/{id}"),
        serde_json::json!({"description": "x".repeat(251)}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["Message"].as_str().unwrap().contains("Description"), "{body}");
    assert!(emu.console_edit(INSTANCE, &id, serde_json::json!({"name": "renamed"})).is_err(), "not a console edit");
    let err = emu.console_edit(INSTANCE, "missing", serde_json::json!({"description": "x"})).unwrap_err();
    assert_eq!(err.code, "ResourceNotFoundException");

    // The API sees the edits, and still has its whole burst: the console took no token.
    assert!((emu.throttle_tokens() - 3.0).abs() < 0.01);
    let d = c.describe_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    let p = d.security_profile().unwrap();
    assert_eq!(p.description(), Some("changed in the console"));
    let perms =
        c.list_security_profile_permissions().instance_id(INSTANCE).security_profile_id(&id).send().await.unwrap();
    assert_eq!(perms.permissions(), ["BasicAgentAccess"]);
    let tags: BTreeSet<String> = p.tags().unwrap().keys().cloned().collect();
    assert_eq!(tags, ["keep", "owner"].map(String::from).into());

    // Console delete: refused while assigned to users, then done.
    control(&emu, "PATCH", &format!("profiles/{INSTANCE}/{id}"), serde_json::json!({"inUse": true})).await;
    let (status, body) = control(&emu, "DELETE", &format!("profiles/{INSTANCE}/{id}"), serde_json::json!({})).await;
    assert_eq!(status, 409, "{body}");
    control(
        &emu,
        "PATCH",
        &format!("profiles/{INSTANCE}/{id}"),
        serde_json::json!({"inUse": false, "deleteDenied": true}),
    )
    .await;
    let (status, body) = control(&emu, "DELETE", &format!("profiles/{INSTANCE}/{id}"), serde_json::json!({})).await;
    assert_eq!(status, 200, "a person in the console is not the API caller denied the delete: {body}");
    let (code, _) =
        error_code("gone", c.describe_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await);
    assert_eq!(code, "ResourceNotFoundException");

    // The call log tells console edits from API calls; the flags alone are not an edit.
    let console: Vec<(String, String, String)> = emu
        .calls()
        .iter()
        .filter(|c| c.operation == "Console")
        .map(|c| (c.params["action"].as_str().unwrap().to_string(), c.outcome.clone(), c.principal.clone()))
        .collect();
    let expect = |action: &str, outcome: &str| (action.to_string(), outcome.to_string(), "console".to_string());
    assert_eq!(
        console,
        [
            expect("edit", "ok"),
            expect("edit", "ok"),
            expect("edit", "InvalidParameterException"),
            expect("edit", "InvalidParameterException"),
            expect("edit", "ResourceNotFoundException"),
            expect("delete", "ResourceInUseException"),
            expect("delete", "ok"),
        ]
    );
    let api: Vec<String> =
        emu.calls().iter().filter(|c| c.operation != "Console").map(|c| c.operation.clone()).collect();
    assert_eq!(api, ["DescribeSecurityProfile", "ListSecurityProfilePermissions", "DescribeSecurityProfile"]);
}
