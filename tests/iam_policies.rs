//! The IAM policies of deploy/ (deploy/iam-policy.json for the operator's own identity,
//! deploy/iam/binding-role-policy.json and deploy/iam/binding-role-trust-policy.json for a team's
//! InstanceBinding role), enforced by the Connect emulator's IAM, exercised with aws-sdk-connect and STS
//! (aws-config's AssumeRoleProvider with session tags and an ExternalId) the way the operator calls them:
//! team A's role cannot touch team B's profiles, a role cannot be assumed with another team's namespace
//! tag or without the ExternalId, and the operator's identity can never rewrite or remove an ownership tag.

mod support;

use std::collections::HashMap;

use aws_sdk_connect::Client;
use aws_sdk_connect::config::{BehaviorVersion, Credentials, ProvideCredentials, Region};
use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};
use connect_emulator::iam::{IamConfig, IamRole, IamUser};
use connect_emulator::{DEFAULT_INSTANCE_ID, Emulator, EmulatorConfig, Faults};
use serde_json::Value;

const INSTANCE: &str = DEFAULT_INSTANCE_ID;
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const OPERATOR_ROLE: &str = "arn:aws:iam::123456789012:role/connect-operator";
const OPERATOR_KEY: &str = "AKIDOPERATOR";
const EXTERNAL_ID: &str = "connect-operator-ext-7f3a";
const OWNER: &str = "connect.cloud-operators.dev/owner-uid";
const NAMESPACE: &str = "connect.cloud-operators.dev/namespace";

fn role_arn(team: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/connect-{team}")
}

/// A deploy/ policy with `vars` and this file's operator, account and instance filled in.
fn deploy_policy(path: &str, vars: &[(&str, &str)]) -> Value {
    let common = [
        ("OPERATOR_ROLE_ARN", OPERATOR_ROLE),
        ("EXTERNAL_ID", EXTERNAL_ID),
        ("REGION", REGION),
        ("ACCOUNT_ID", ACCOUNT),
        ("INSTANCE_ID", INSTANCE),
    ];
    let all: Vec<(&str, &str)> = vars.iter().chain(common.iter()).copied().collect();
    support::deploy_policy(path, &all)
}

/// A team's binding role: team `a` trusts the operator for namespaces `team-a` and `team-a-staging`,
/// binding `a`.
fn team_role(team: &str) -> IamRole {
    let (ns1, ns2) = (format!("team-{team}"), format!("team-{team}-staging"));
    let vars = [("BINDING_NAME", team), ("NAMESPACE_1", ns1.as_str()), ("NAMESPACE_2", ns2.as_str())];
    IamRole {
        arn: role_arn(team),
        trust_policy: deploy_policy("deploy/iam/binding-role-trust-policy.json", &vars),
        policies: vec![deploy_policy("deploy/iam/binding-role-policy.json", &vars)],
        max_session_duration: 3600,
    }
}

async fn emulator() -> Emulator {
    let iam = IamConfig {
        users: vec![IamUser {
            access_key_id: OPERATOR_KEY.into(),
            arn: OPERATOR_ROLE.into(),
            policies: vec![deploy_policy("deploy/iam-policy.json", &[])],
        }],
        roles: vec![team_role("a"), team_role("b")],
    };
    let faults = Faults { throttle_rate: 0.0, ..Faults::default() };
    let config = EmulatorConfig { faults, iam: Some(iam), ..EmulatorConfig::default() };
    Emulator::start(config).await.expect("the emulator starts with the deploy/ policies")
}

/// The operator's own identity's configuration (its access key), pointed at the emulator for Connect and STS.
async fn operator_config(emu: &Emulator) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(emu.endpoint())
        .credentials_provider(Credentials::new(OPERATOR_KEY, "operator-secret", None, None, "static"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

async fn operator(emu: &Emulator) -> Client {
    Client::new(&operator_config(emu).await)
}

/// An AssumeRole of `role` by the operator's identity, with `external_id` and the session tags `tags`.
async fn assume(
    emu: &Emulator,
    role: &str,
    session: &str,
    external_id: Option<&str>,
    tags: &[(&str, &str)],
) -> aws_config::sts::AssumeRoleProvider {
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name(session)
        .region(Region::new(REGION))
        .configure(&operator_config(emu).await);
    if let Some(id) = external_id {
        builder = builder.external_id(id);
    }
    if !tags.is_empty() {
        builder = builder.tags(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>());
    }
    builder.build().await
}

/// A Connect client for team `team`'s binding role, its session tagged as the operator tags it.
async fn team_client(emu: &Emulator, team: &str) -> Client {
    let namespace = format!("team-{team}");
    let provider = assume(
        emu,
        &role_arn(team),
        &format!("csp-{namespace}"),
        Some(EXTERNAL_ID),
        &[("namespace", &namespace), ("binding", team)],
    )
    .await;
    provider.provide_credentials().await.unwrap_or_else(|e| panic!("team {team} assumes its role: {e:?}"));
    let config =
        aws_sdk_connect::config::Builder::from(&operator_config(emu).await).credentials_provider(provider).build();
    Client::from_conf(config)
}

fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    what: &str,
    result: Result<T, SdkError<E, R>>,
) -> String {
    match result {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e.code().map(str::to_string).unwrap_or_else(|| format!("<no code: {e:?}>")),
    }
}

fn denied<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    what: &str,
    result: Result<T, SdkError<E, R>>,
) {
    assert_eq!(code(what, result), "AccessDeniedException", "{what}");
}

/// Creates a profile with the ownership tags of `namespace` (and `extra` tags); its id and ARN.
async fn create_owned(c: &Client, name: &str, namespace: &str) -> (String, String) {
    let out = c
        .create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name(name)
        .tags(OWNER, uuid::Uuid::new_v4().to_string())
        .tags(NAMESPACE, namespace)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name} in {namespace}: {e:?}"));
    (out.security_profile_id().unwrap().to_string(), out.security_profile_arn().unwrap().to_string())
}

async fn update(c: &Client, id: &str, description: &str) -> Result<(), String> {
    c.update_security_profile()
        .instance_id(INSTANCE)
        .security_profile_id(id)
        .description(description)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("<no code>").to_string())
}

fn tags_of(emu: &Emulator, id: &str) -> std::collections::BTreeMap<String, String> {
    emu.state().instances[INSTANCE].profiles.iter().find(|p| p.id == id).expect("the profile exists").tags.clone()
}

#[tokio::test]
async fn team_b_cannot_touch_team_a_profiles_and_team_a_can() {
    let emu = emulator().await;
    let (a, b) = (team_client(&emu, "a").await, team_client(&emu, "b").await);
    let (id, arn) = create_owned(&a, "team-a-agents", "team-a").await;

    denied(
        "B updates A's profile",
        b.update_security_profile().instance_id(INSTANCE).security_profile_id(&id).description("b").send().await,
    );
    denied(
        "B deletes A's profile",
        b.delete_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await,
    );
    denied("B tags A's profile", b.tag_resource().resource_arn(&arn).tags("cost-center", "b").send().await);
    denied("B untags A's profile", b.untag_resource().resource_arn(&arn).tag_keys("cost-center").send().await);
    denied("B takes A's profile over", b.tag_resource().resource_arn(&arn).tags(NAMESPACE, "team-b").send().await);
    denied(
        "B creates a profile in A's namespace",
        b.create_security_profile()
            .instance_id(INSTANCE)
            .security_profile_name("sneaky")
            .tags(OWNER, "x")
            .tags(NAMESPACE, "team-a")
            .send()
            .await,
    );
    // Reads are not restricted: both may see the profile.
    b.describe_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await.expect("B reads");

    // The call log names the session that was refused.
    let refused: Vec<_> = emu.calls().into_iter().filter(|c| c.outcome == "AccessDeniedException").collect();
    assert_eq!(refused.len(), 6, "{refused:?}");
    assert!(refused.iter().all(|c| c.principal == role_arn("b") && c.status == 403), "{refused:?}");
    assert!(
        refused.iter().all(|c| c.session == format!("arn:aws:sts::{ACCOUNT}:assumed-role/connect-b/csp-team-b")),
        "{refused:?}"
    );
    assert_eq!(tags_of(&emu, &id)[NAMESPACE], "team-a", "nothing changed");

    // Team A changes its own profile.
    update(&a, &id, "updated by A").await.expect("A updates its own profile");
    a.tag_resource().resource_arn(&arn).tags("cost-center", "a").send().await.expect("A tags its own profile");
    a.untag_resource().resource_arn(&arn).tag_keys("cost-center").send().await.expect("A untags its own profile");
    denied("A rewrites its owner tag", a.tag_resource().resource_arn(&arn).tags(OWNER, "other").send().await);
    denied("A removes its namespace tag", a.untag_resource().resource_arn(&arn).tag_keys(NAMESPACE).send().await);
    a.delete_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await.expect("A deletes it");
    assert!(emu.state().instances[INSTANCE].profiles.iter().all(|p| p.id != id));
}

/// What is tried, the ExternalId sent, the session tags.
type AssumeCase<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>);

#[tokio::test]
async fn a_team_role_cannot_be_assumed_with_another_namespace_or_without_the_external_id() {
    let emu = emulator().await;
    let team_a = role_arn("a");
    let cases: [AssumeCase; 6] = [
        ("another team's namespace", Some(EXTERNAL_ID), vec![("namespace", "team-b"), ("binding", "a")]),
        ("another binding", Some(EXTERNAL_ID), vec![("namespace", "team-a"), ("binding", "b")]),
        ("an extra tag", Some(EXTERNAL_ID), vec![("namespace", "team-a"), ("binding", "a"), ("admin", "true")]),
        ("no ExternalId", None, vec![("namespace", "team-a"), ("binding", "a")]),
        ("a wrong ExternalId", Some("wrong-external-id"), vec![("namespace", "team-a"), ("binding", "a")]),
        ("no binding tag", Some(EXTERNAL_ID), vec![("namespace", "team-a")]),
    ];
    for (what, external_id, tags) in &cases {
        emu.clear_calls();
        let provider = assume(&emu, &team_a, "csp-team-a", *external_id, tags).await;
        let err = provider.provide_credentials().await.expect_err(what);
        let calls = emu.calls();
        assert_eq!(calls.len(), 1, "{what}: {calls:?}");
        assert_eq!((calls[0].operation.as_str(), calls[0].outcome.as_str()), ("AssumeRole", "AccessDenied"), "{what}");
        assert_eq!(calls[0].status, 403);
        assert!(format!("{err:?}").contains("AccessDenied"), "{what}: {err:?}");
    }
    // The role's second namespace, and the right tags and ExternalId: allowed.
    for namespace in ["team-a", "team-a-staging"] {
        let provider =
            assume(&emu, &team_a, "csp-x", Some(EXTERNAL_ID), &[("namespace", namespace), ("binding", "a")]).await;
        provider.provide_credentials().await.unwrap_or_else(|e| panic!("{namespace}: {e:?}"));
    }
    // Without session tags the session assumes, but may change nothing: its policy needs the namespace tag.
    let untagged = assume(&emu, &team_a, "csp-untagged", Some(EXTERNAL_ID), &[]).await;
    let config =
        aws_sdk_connect::config::Builder::from(&operator_config(&emu).await).credentials_provider(untagged).build();
    let c = Client::from_conf(config);
    denied(
        "an untagged session creates",
        c.create_security_profile()
            .instance_id(INSTANCE)
            .security_profile_name("untagged")
            .tags(OWNER, "x")
            .tags(NAMESPACE, "team-a")
            .send()
            .await,
    );
    // Team B's role does not trust team A's namespace either.
    let provider =
        assume(&emu, &role_arn("b"), "csp-team-a", Some(EXTERNAL_ID), &[("namespace", "team-a"), ("binding", "b")])
            .await;
    assert!(format!("{:?}", provider.provide_credentials().await.expect_err("B's role")).contains("AccessDenied"));
}

#[tokio::test]
async fn the_operator_can_never_rewrite_or_remove_an_ownership_tag() {
    let emu = emulator().await;
    let op = operator(&emu).await;
    let (id, arn) = create_owned(&op, "owned", "team-a").await;
    let before = tags_of(&emu, &id);

    denied("overwrite the owner tag", op.tag_resource().resource_arn(&arn).tags(OWNER, "another-uid").send().await);
    denied("overwrite the namespace tag", op.tag_resource().resource_arn(&arn).tags(NAMESPACE, "team-b").send().await);
    denied(
        "overwrite the owner tag along with another",
        op.tag_resource().resource_arn(&arn).tags("cost-center", "x").tags(OWNER, "another-uid").send().await,
    );
    denied("remove the owner tag", op.untag_resource().resource_arn(&arn).tag_keys(OWNER).send().await);
    denied("remove the namespace tag", op.untag_resource().resource_arn(&arn).tag_keys(NAMESPACE).send().await);
    assert_eq!(tags_of(&emu, &id), before, "the ownership tags are unchanged");

    // Other tags of an owned profile, and the profile itself, it may change.
    op.tag_resource().resource_arn(&arn).tags("cost-center", "x").send().await.expect("tag an owned profile");
    op.untag_resource().resource_arn(&arn).tag_keys("cost-center").send().await.expect("untag an owned profile");
    update(&op, &id, "changed").await.expect("update an owned profile");
    op.delete_security_profile().instance_id(INSTANCE).security_profile_id(&id).send().await.expect("delete it");
}

#[tokio::test]
async fn the_operator_cannot_change_unowned_profiles_but_can_claim_them() {
    let emu = emulator().await;
    let op = operator(&emu).await;
    let admin =
        emu.state().instances[INSTANCE].profiles.iter().find(|p| p.security_profile_name == "Admin").unwrap().clone();
    assert!(admin.tags.is_empty());

    assert_eq!(update(&op, &admin.id, "pwned").await, Err("AccessDeniedException".into()), "update Admin");
    denied(
        "delete Admin",
        op.delete_security_profile().instance_id(INSTANCE).security_profile_id(&admin.id).send().await,
    );
    denied("untag Admin", op.untag_resource().resource_arn(&admin.arn).tag_keys("x").send().await);
    denied("tag Admin without claiming it", op.tag_resource().resource_arn(&admin.arn).tags("x", "y").send().await);
    denied(
        "claim Admin without the namespace tag",
        op.tag_resource().resource_arn(&admin.arn).tags(OWNER, "uid-1").send().await,
    );
    let message = op
        .update_security_profile()
        .instance_id(INSTANCE)
        .security_profile_id(&admin.id)
        .description("x")
        .send()
        .await
        .expect_err("update Admin")
        .message()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        message,
        format!(
            "User: {OPERATOR_ROLE} is not authorized to perform: connect:UpdateSecurityProfile on resource: {} \
             with an explicit deny in an identity-based policy",
            admin.arn
        )
    );

    // Claiming: both ownership tags at once, then the profile is the operator's to change.
    op.tag_resource()
        .resource_arn(&admin.arn)
        .tags(OWNER, "uid-1")
        .tags(NAMESPACE, "team-a")
        .send()
        .await
        .expect("claim Admin with the ownership tags");
    update(&op, &admin.id, "claimed").await.expect("update the claimed profile");
    denied(
        "claim it again",
        op.tag_resource().resource_arn(&admin.arn).tags(OWNER, "uid-2").tags(NAMESPACE, "team-a").send().await,
    );
    assert_eq!(tags_of(&emu, &admin.id)[OWNER], "uid-1");
}

#[tokio::test]
async fn the_operator_creates_only_with_both_ownership_tags() {
    let emu = emulator().await;
    let op = operator(&emu).await;
    let create = |name: &str, tags: &[(&str, &str)]| {
        let mut req = op.create_security_profile().instance_id(INSTANCE).security_profile_name(name);
        for (k, v) in tags {
            req = req.tags(*k, *v);
        }
        req.send()
    };
    denied("no tags", create("none", &[]).await);
    denied("only the owner tag", create("owner", &[(OWNER, "uid")]).await);
    denied("only the namespace tag", create("ns", &[(NAMESPACE, "team-a")]).await);
    create("both", &[(OWNER, "uid"), (NAMESPACE, "team-a")]).await.expect("create with both tags");
    let names: Vec<String> =
        emu.state().instances[INSTANCE].profiles.iter().map(|p| p.security_profile_name.clone()).collect();
    assert!(
        names.contains(&"both".to_string()) && !names.iter().any(|n| ["none", "owner", "ns"].contains(&n.as_str()))
    );

    // Reads need no tag; a caller the emulator's IAM does not know is refused even those.
    op.list_security_profiles().instance_id(INSTANCE).send().await.expect("list");
    let stranger = connect_operator_free_client(&emu, "AKIDSTRANGER").await;
    denied("an unknown access key lists", stranger.list_security_profiles().instance_id(INSTANCE).send().await);
}

/// A client signing with an access key the emulator's IAM does not list.
async fn connect_operator_free_client(emu: &Emulator, key: &str) -> Client {
    let config = aws_sdk_connect::config::Builder::from(&operator_config(emu).await)
        .credentials_provider(Credentials::new(key, "secret", None, None, "static"))
        .build();
    Client::from_conf(config)
}

/// A profile owned before the namespace tag existed (owner-uid only) gets it once, from the operator's
/// own identity; after that it is as fixed as the owner tag.
#[tokio::test]
async fn the_operator_adds_a_missing_namespace_tag_once() {
    let emu = emulator().await;
    let config = emu.iam();
    emu.set_iam(None).expect("IAM off");
    let legacy = operator(&emu)
        .await
        .create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name("legacy")
        .tags(OWNER, "old-uid")
        .send()
        .await
        .expect("created before IAM was configured");
    emu.set_iam(config).expect("IAM back on");
    let arn = legacy.security_profile_arn().unwrap();
    let op = operator(&emu).await;
    denied(
        "add the namespace tag with an owner tag",
        op.tag_resource().resource_arn(arn).tags(NAMESPACE, "team-a").tags(OWNER, "old-uid").send().await,
    );
    op.tag_resource().resource_arn(arn).tags(NAMESPACE, "team-a").send().await.expect("add the missing namespace tag");
    denied("change it afterwards", op.tag_resource().resource_arn(arn).tags(NAMESPACE, "team-b").send().await);
    let id = legacy.security_profile_id().unwrap();
    assert_eq!(tags_of(&emu, id).get(NAMESPACE).map(String::as_str), Some("team-a"));
}
