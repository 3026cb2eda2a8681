//! End to end: export an instance's profiles, apply them, and they are adopted unchanged.

use std::process::Command;
use std::time::Duration;

use aws_sdk_connect::types::{Application, ApplicationType, FlowModule, FlowModuleType};
use serde_json::Value;

use crate::harness::{INSTANCE, TestEnv};

/// Runs `connect-operator export` against the test's emulator.
pub fn export(env: &TestEnv, args: &[&str]) -> std::process::Output {
    Command::new(crate::harness::bin("connect-operator"))
        .args(["export", "--instance-id", INSTANCE, "--connect-rate", "0"])
        .args(args)
        .env("AWS_ENDPOINT_URL_CONNECT", env.emulator.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEMULATOR")
        .env("AWS_SECRET_ACCESS_KEY", "emulator-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run export")
}

fn read_dir(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn exported_profiles_are_adopted_without_create_or_update() {
    let mut env = TestEnv::new("onboard", &["--throttle-rate", "0"]).await;
    let c = env.connect();
    // 16 profiles made "in the console", of varied shapes, beside the 4 defaults: 20 in all.
    for i in 0..16 {
        let mut req =
            c.create_security_profile().instance_id(INSTANCE).security_profile_name(format!("Console Team {i}"));
        if i % 2 == 0 {
            req = req.description(format!("team {i}")).permissions("BasicAgentAccess").permissions(format!("Perm{i}"));
        }
        if i % 3 == 0 {
            req = req
                .tags("cost-center", format!("cc{i}"))
                .allowed_access_control_tags("dept", "sales")
                .tag_restricted_resources("User");
        }
        if i % 4 == 0 {
            req = req.applications(
                Application::builder()
                    .namespace("crm")
                    .application_permissions("ACCESS")
                    .r#type(ApplicationType::ThirdPartyApplication)
                    .build(),
            );
            req = req
                .allowed_flow_modules(FlowModule::builder().r#type(FlowModuleType::Mcp).flow_module_id("fm").build());
        }
        if i == 5 {
            // Two names that map to the same Kubernetes name.
            req = c.create_security_profile().instance_id(INSTANCE).security_profile_name("console team 5");
        }
        req.send().await.expect("seed profile");
    }
    c.create_security_profile().instance_id(INSTANCE).security_profile_name("Console_Team 5").send().await.unwrap();
    assert_eq!(env.emulator.profiles(INSTANCE).len(), 21);

    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/e2e-logs/{}-export", env.ns));
    let _ = std::fs::remove_dir_all(&dir);
    let out = export(&env, &["--namespace", &env.ns, "--output", dir.to_str().unwrap()]);
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    let files = read_dir(&dir);
    assert_eq!(
        files.len(),
        17,
        "defaults are left out unless asked for: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(files.iter().all(|(_, y)| y.contains("connect.cloud-operators.dev/adopt: 'true'")
        || y.contains("connect.cloud-operators.dev/adopt: \"true\"")));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"console-team-5.yaml"), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.starts_with("console-team-5")).count(),
        2,
        "the collision got a distinct name: {names:?}"
    );

    // With the defaults, to stdout.
    let all = export(&env, &["--include-defaults"]);
    let stream = String::from_utf8_lossy(&all.stdout);
    assert_eq!(stream.matches("kind: SecurityProfile").count(), 21);
    assert!(stream.contains("securityProfileName: Admin"));

    env.emulator.control("DELETE", "calls", None);
    let out = env.kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.start_operator(&[]);
    for (file, _) in &files {
        let name = file.trim_end_matches(".yaml");
        env.wait_condition(name, "Ready", "True", Duration::from_secs(60)).await;
    }
    let calls = env.emulator.calls();
    let writes: Vec<&str> = calls
        .iter()
        .map(|c| c.operation.as_str())
        .filter(|o| *o == "CreateSecurityProfile" || *o == "UpdateSecurityProfile")
        .collect();
    assert!(writes.is_empty(), "adopted as they are: {writes:?}");
    let owned = env
        .emulator
        .profiles(INSTANCE)
        .iter()
        .filter(|p| p["Tags"].get("connect.cloud-operators.dev/owner-uid").is_some_and(Value::is_string))
        .count();
    assert_eq!(owned, 17, "every exported profile now carries its owner tag");

    // A second export yields identical files (the owner tag is the operator's, not part of the spec).
    let dir2 = dir.with_extension("again");
    let _ = std::fs::remove_dir_all(&dir2);
    let out = export(&env, &["--namespace", &env.ns, "--output", dir2.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(read_dir(&dir2), files);
}

/// `export` with the Region missing says only that, and with `--region` alone the SDK does not probe
/// for one: no instance-metadata warnings in either case. (The metadata endpoint is pointed at a
/// closed local port, so that a regression shows as warnings here rather than as a request elsewhere.)
#[tokio::test]
async fn export_without_a_region_says_only_what_to_do() {
    let env = TestEnv::new("noregion", &["--throttle-rate", "0"]).await;
    let run = |args: &[&str]| {
        Command::new(crate::harness::bin("connect-operator"))
            .args(["export", "--instance-id", INSTANCE, "--connect-rate", "0"])
            .args(args)
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
            .env("AWS_ENDPOINT_URL_CONNECT", env.emulator.endpoint())
            .env("AWS_ACCESS_KEY_ID", "AKIDEMULATOR")
            .env("AWS_SECRET_ACCESS_KEY", "emulator-secret")
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .output()
            .expect("run export")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error: no AWS Region: pass --region or set AWS_REGION\n");
    assert!(out.stdout.is_empty());

    let out = run(&["--region", "us-east-1", "--include-defaults"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "nothing but the manifests");
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: SecurityProfile"));
}
