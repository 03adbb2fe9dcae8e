//! `patchpilot schedule --bucket` and `patchpilot promote [--force]` against the local AWS
//! emulator: the gate's state as run-notifier stores it in the stack's output bucket.

use std::process::{Command, Output};

use patchpilot::aws::promotion::PromotionStore;
use patchpilot::aws::CallLog;
use patchpilot::promotion::{PromotionState, Verdict};
use patchpilot_tests::STACK;

fn patchpilot(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchpilot"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", patchpilot_tests::REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("USER", "alice")
        .env_remove("AWS_PROFILE")
        .env_remove("OUTPUT_BUCKET")
        .output()
        .expect("the patchpilot binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The state run-notifier writes after a test run in which 2 of 6 hosts failed.
fn held_state(bucket: &str) -> PromotionState {
    serde_json::from_value(serde_json::json!({
        "format": 1,
        "environment": "prod",
        "source": "test",
        "execution_id": "0123abcd-0123-4567-89ab-0123456789ab",
        "run_date": "2026-12-05",
        "decision": {
            "verdict": "held", "reached": 6, "failed": 2, "failed_patches": 2,
            "max_failed_percent": 0,
            "reason": "2/6 failed in test, 2 patch(es) failed to install"
        },
        "decided_at": "2026-12-05T07:12:00Z",
        "manifest": {
            "hash": "9f2c0e1d4b7a9f2c0e1d4b7a9f2c0e1d4b7a9f2c0e1d4b7a9f2c0e1d4b7a9f2c",
            "url": format!("s3://{bucket}/patchpilot/promotion/prod/9f2c/manifest.json"),
            "lists": {},
            "patches": 17
        }
    }))
    .expect("a promotion state")
}

#[tokio::test]
async fn schedule_shows_the_gate_and_promote_force_releases_a_held_prod() {
    let emu = patchpilot_tests::emulator();
    let _guard = emu.exclusive().await;
    emu.reset().expect("reset");
    let stack = emu.deploy_stack(STACK).expect("deploy the stack");
    let bucket = stack.physical_id("OutputBucket").to_string();
    let endpoint = emu.endpoint();

    // Nothing recorded yet: prod is held, and `schedule` says why.
    let o = patchpilot(endpoint, &["schedule", "-n", "1", "--bucket", &bucket]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("prod: held (scan only): no run of its source recorded yet"),
        "{}",
        text(&o)
    );
    // Forcing with nothing recorded is refused.
    let o = patchpilot(endpoint, &["promote", "--force", "--bucket", &bucket]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("nothing to force: no run of the source of `prod` is recorded yet"),
        "{}",
        text(&o)
    );

    // A bad test run was recorded: held, with the reason, in `schedule` and `promote`.
    let store = PromotionStore::new(&emu.sdk_config().await, &bucket);
    let calls = CallLog::new();
    store
        .write_state(&held_state(&bucket), &calls)
        .await
        .expect("write the state");
    for args in [
        vec!["schedule", "-n", "1", "--bucket", &bucket],
        vec!["promote", "--bucket", &bucket],
    ] {
        let o = patchpilot(endpoint, &args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            text(&o).contains(
                "prod: prod is held (scan only): 2/6 failed in test, 2 patch(es) failed to install"
            ),
            "{args:?}: {}",
            text(&o)
        );
    }

    // Forced: the state says by whom, and a second force is refused.
    let o = patchpilot(endpoint, &["promote", "--force", "--bucket", &bucket]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("prod: forced. prod installs manifest 9f2c0e1d4b7a (17 patch(es) from test's run of 2026-12-05), forced by patchpilot promote --force (alice)"),
        "{}",
        text(&o)
    );
    let state = store
        .read_state("prod", &calls)
        .await
        .expect("read")
        .expect("state");
    assert_eq!(state.decision.verdict, Verdict::Forced);
    let o = patchpilot(endpoint, &["promote", "--force", "--bucket", &bucket]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nothing to force"), "{}", text(&o));

    // An environment that does not promote is named as such.
    let o = patchpilot(
        endpoint,
        &["promote", "--environment", "test", "--bucket", &bucket],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("`test` is not an environment with approval mode: promote"),
        "{}",
        text(&o)
    );
}
