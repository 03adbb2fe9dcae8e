//! `patchpilot plan` against the local AWS emulator: the same lines as baseline-sync's dry-run.

use std::process::{Command, Output};

fn plan(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchpilot"))
        .arg("plan")
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", patchpilot_tests::REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("OUTPUT_BUCKET")
        .env_remove("MAINTENANCE_WINDOW_ROLE_ARN")
        .output()
        .expect("the patchpilot binary runs")
}

#[tokio::test]
async fn an_empty_account_needs_the_whole_reference_setup() {
    let emu = patchpilot_tests::emulator();
    let _guard = emu.exclusive().await;
    let o = plan(emu.endpoint(), &["--output-bucket", "patchpilot-output"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.matches("+ baseline patchpilot-").count(), 12, "{out}");
    assert_eq!(out.matches("+ register patch group ").count(), 24, "{out}");
    assert_eq!(out.matches("+ window patchpilot-").count(), 2, "{out}");
    assert_eq!(out.matches("+ target ").count(), 4, "{out}");
    assert_eq!(out.matches("+ task ").count(), 4, "{out}");
    assert!(
        out.contains("+ baseline patchpilot-prod-REDHAT_ENTERPRISE_LINUX (REDHAT_ENTERPRISE_LINUX): 2 rule(s), approve after 14 days"),
        "{out}"
    );
    assert!(out.contains("to create, 0 to update, 0 to delete"), "{out}");
    // Reads only.
    let counts = emu.request_counts().expect("request log");
    assert_eq!(counts.write_count(), 0, "plan wrote: {:?}", counts.writes());
}

#[tokio::test]
async fn plan_json_lists_each_change_with_its_kind() {
    let emu = patchpilot_tests::emulator();
    let _guard = emu.exclusive().await;
    let o = plan(emu.endpoint(), &["--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan --json is JSON");
    let changes = v["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 12 + 24 + 2 + 4 + 4);
    assert!(changes.iter().all(|c| c["kind"] == "create"));
    assert_eq!(v["conflicts"].as_array().map(Vec::len), Some(0));
}

#[test]
fn an_unreachable_account_is_a_clear_error() {
    // Port 9 (discard) on loopback: nothing listens there.
    let o = plan("http://127.0.0.1:9", &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot read the current patching setup from SSM, nothing was changed")
            && err.contains("AWS_ENDPOINT_URL"),
        "{err}"
    );
}
