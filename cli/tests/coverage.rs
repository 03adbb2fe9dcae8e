//! `patchpilot coverage` against the local AWS emulator: every host with its verdict, and
//! the reads growing only with the fleet.

use std::process::{Command, Output};

use patchpilot_tests::SetManaged;

fn coverage(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchpilot"))
        .arg("coverage")
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", patchpilot_tests::REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("PATCHPILOT_STACK")
        .output()
        .expect("the patchpilot binary runs")
}

#[tokio::test]
async fn coverage_lists_every_host_with_its_verdict_and_the_missing_baselines() {
    let emu = patchpilot_tests::emulator();
    let _guard = emu.exclusive().await;
    let tagged = [("Patch Group", "patch_test_0600_batch_1")];
    let al2 = emu
        .launch_instance("amazon-linux-2", "web-test", &tagged)
        .await
        .expect("al2");
    let al2023 = emu
        .launch_instance("amazon-linux-2023", "api-test", &tagged)
        .await
        .expect("al2023");
    let debian = emu
        .launch_instance("debian-12", "db-test", &tagged)
        .await
        .expect("debian");
    let lost = emu
        .launch_instance("amazon-linux-2", "batch-test", &tagged)
        .await
        .expect("lost");
    emu.set_managed(&SetManaged::connection_lost(&lost, "2026-01-02T03:04:05Z"))
        .expect("set-managed");
    let excluded = emu
        .launch_instance(
            "amazon-linux-2",
            "legacy-test",
            &[("patchpilot:exclude", "yes")],
        )
        .await
        .expect("excluded");
    emu.reset_request_counts().expect("reset counts");

    let o = coverage(emu.endpoint(), &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let row = |id: &str| {
        out.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{out}"))
            .to_string()
    };
    // No baseline is registered yet: even AL2 gets the account default (run baseline-sync).
    assert!(row(&al2).ends_with("default-baseline"), "{out}");
    assert!(row(&al2023).contains("AMAZON_LINUX_2023"), "{out}");
    assert!(row(&debian).contains("not registered"), "{out}");
    assert!(row(&debian).ends_with("not-managed"), "{out}");
    assert!(row(&lost).ends_with("not-managed"), "{out}");
    assert!(row(&excluded).ends_with("excluded"), "{out}");
    for part in [
        "PingStatus ConnectionLost since 2026-01-02 03:04 UTC",
        "never registered",
        "for which the policy has no baseline",
        "the policy's AMAZON_LINUX_2 baseline is not registered for patch_test_0600_batch_1 yet; run baseline-sync",
        "5 host(s): 0 covered, 2 not-managed, 2 default-baseline, 0 missed-window, 0 unmatched, 1 excluded",
        "Default Host Management: off",
        "suggested baselines: AMAZON_LINUX_2023",
    ] {
        assert!(out.contains(part), "missing {part:?}:\n{out}");
    }
    // Reads only, and few: one page of each list, one OS lookup per OS present.
    let counts = emu.request_counts().expect("request log");
    assert_eq!(
        counts.write_count(),
        0,
        "coverage wrote: {:?}",
        counts.writes()
    );
    assert_eq!(counts.get("ec2", "DescribeInstances"), 1);
    assert_eq!(counts.get("ssm", "DescribeInstanceInformation"), 1);
    assert_eq!(counts.get("ssm", "GetDefaultPatchBaseline"), 2);
    assert_eq!(counts.get("ssm", "DescribePatchGroups"), 2);
    assert_eq!(counts.get("ssm", "DescribeInstancePatchStates"), 1);
    assert_eq!(counts.get("ssm", "GetServiceSetting"), 1);
}

#[tokio::test]
async fn coverage_json_has_a_verdict_per_host() {
    let emu = patchpilot_tests::emulator();
    let _guard = emu.exclusive().await;
    let id = emu
        .launch_instance("rocky-9", "app-test", &[])
        .await
        .expect("rocky");
    let o = coverage(emu.endpoint(), &["--json", "--stack", "patchpilot-dev"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("coverage --json is JSON");
    assert_eq!(v["stack"], "patchpilot-dev");
    let hosts = v["coverage"]["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["instance_id"], id.as_str());
    assert_eq!(hosts[0]["verdict"]["verdict"], "not-managed");
    assert_eq!(hosts[0]["verdict"]["reason"], "never-registered");
    assert_eq!(v["coverage"]["counts"]["not-managed"], 1);
    assert_eq!(v["coverage"]["host_management"]["state"], "off");
}

#[test]
fn an_unreachable_account_is_a_clear_error() {
    let o = coverage("http://127.0.0.1:9", &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("coverage: listing instances") && err.contains("AWS_ENDPOINT_URL"),
        "{err}"
    );
}

fn patchpilot(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchpilot"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", patchpilot_tests::REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("PATCHPILOT_STACK")
        .output()
        .expect("the patchpilot binary runs")
}

#[tokio::test]
async fn render_fleet_suggests_a_valid_baseline_for_each_os_the_policy_lacks() {
    let emu = patchpilot_tests::emulator();
    let _guard = emu.exclusive().await;
    // AL2 has a baseline in the reference policy; AL2023 does not; the unmanaged Debian host
    // is not patched by any baseline, so it needs none yet.
    emu.launch_instance("amazon-linux-2", "web-test", &[])
        .await
        .expect("al2");
    for name in ["api-test", "api-prod"] {
        emu.launch_instance("amazon-linux-2023", name, &[])
            .await
            .expect("al2023");
    }
    emu.launch_instance("debian-12", "db-test", &[])
        .await
        .expect("debian");

    let o = patchpilot(emu.endpoint(), &["render", "--fleet"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let fleet = &out[out
        .find("\nFLEET\n")
        .unwrap_or_else(|| panic!("no FLEET section:\n{out}"))..];
    assert!(
        fleet.contains("AMAZON_LINUX_2023: 2 host(s); rules of ")
            && fleet.contains("AWS-AmazonLinux2023DefaultPatchBaseline"),
        "{fleet}"
    );
    assert!(
        !fleet.contains("DEBIAN") && !fleet.contains("os: AMAZON_LINUX_2\n"),
        "{fleet}"
    );
    let snippet = &fleet[fleet.find("  - os: AMAZON_LINUX_2023").expect("snippet")..];
    assert!(snippet.contains("CLASSIFICATION: ["), "{snippet}");

    // The snippet added to the policy validates, and the fleet then needs nothing more.
    let policy = std::env::temp_dir().join(format!("patchpilot-fleet-{}.yaml", std::process::id()));
    let base = std::fs::read_to_string(patchpilot_tests::repo_root().join("examples/policy.yaml"))
        .expect("examples/policy.yaml");
    std::fs::write(&policy, format!("{base}\n{snippet}")).expect("write policy");
    let path = policy.display().to_string();
    let v = patchpilot(emu.endpoint(), &["validate", &path]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let again = patchpilot(emu.endpoint(), &["render", "--fleet", "--json", &path]);
    let doc: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&again.stdout),
            String::from_utf8_lossy(&again.stderr)
        )
    });
    assert_eq!(doc["suggested_baselines"], serde_json::json!([]), "{doc:#}");
    std::fs::remove_file(&policy).ok();
}
