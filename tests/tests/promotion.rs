//! Promotion (issue 13) against the emulator: prod installs exactly what test installed two
//! weeks earlier, for all six OSes of the reference scenario, and nothing released in between;
//! the gate holds prod after a bad test run until a forced promotion.
//!
//! The stack is deployed from `template.yaml` and both functions run in-process with their own
//! keys and environment (every call authorized against their roles, as in AWS): baseline-sync
//! creates the baselines, windows, targets and tasks; the emulator's execute-window hook runs
//! `AWS-RunPatchBaseline` on each host from its patch catalogue at the given time (approval
//! rules, `InstallOverrideList` fetched from S3 as the instance); run-notifier reports each run
//! and records the promotion. What a host installed is read back through the emulator's own
//! `installed-packages` hook (its ground truth), not through patchpilot's reader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use baseline_sync::{handle as sync, Syncer};
use patchpilot::names::{self, PatchGroup};
use patchpilot::promotion::PromotionState;
use patchpilot::settings::Settings;
use patchpilot_tests::{
    ami, emulator, Emulator, ExecuteWindow, Outcome as HostOutcome, Stack, WindowRun, ACCOUNT_ID,
    REGION, STACK,
};
use run_notifier::{handle as notify, Notifier, Outcome};
use serde::Deserialize;
use serde_json::{json, Value};

const WINDOW_SUCCESS: &str =
    include_str!("../../events/run-notifier/window-execution-success.json");
const WINDOW_FAILED: &str = include_str!("../../events/run-notifier/window-execution-failed.json");

/// The article's six OSes: (AMI catalogue key, SSM OperatingSystem, name stem, batch).
const FLEET: [(&str, &str, &str, u32); 6] = [
    ("amazon-linux-2", "AMAZON_LINUX_2", "amazon-linux", 1),
    ("centos-7", "CENTOS", "centos-linux", 1),
    ("rhel-9", "REDHAT_ENTERPRISE_LINUX", "redhat-linux", 1),
    ("sles-15", "SUSE", "suse-linux", 1),
    ("ubuntu-22.04", "UBUNTU", "ubuntu-linux", 1),
    ("windows-2022", "WINDOWS", "windows", 2),
];

/// The reference policy's runs in November 2026: test on the first Saturday, prod on the
/// third, both 06:00 Europe/Zurich (05:00 UTC); the next test run on December's first Saturday.
const TEST_RUN: &str = "2026-11-07T05:00:00Z";
const PROD_RUN: &str = "2026-11-21T05:00:00Z";
const NEXT_TEST_RUN: &str = "2026-12-05T05:00:00Z";

/// One patch per OS released on 2026-11-14, between the test and the prod run (besides the
/// catalogue's own, e.g. Amazon Linux 2 openssl 1.0.2k-24.amzn2.0.12 of 2026-11-10): each is
/// approved by the OS's baseline rules, so only the promotion keeps it out of prod.
fn released_in_between() -> Value {
    json!({"Add": [
        {"OperatingSystem": "AMAZON_LINUX_2", "Name": "curl", "Arch": "x86_64", "Epoch": "0",
         "Version": "8.3.0", "Release": "1.amzn2.0.9", "Released": "2026-11-14",
         "Classification": "Security", "Severity": "Important", "Advisory": "ALAS2-2026-2799"},
        {"OperatingSystem": "CENTOS", "Name": "kernel", "Arch": "x86_64", "Epoch": "0",
         "Version": "3.10.0", "Release": "1160.126.1.el7", "Released": "2026-11-14",
         "Classification": "Security", "Severity": "Important", "Advisory": "CESA-2026:8302"},
        {"OperatingSystem": "REDHAT_ENTERPRISE_LINUX", "Name": "sudo", "Arch": "x86_64",
         "Epoch": "0", "Version": "1.9.5p2", "Release": "10.el9_5", "Released": "2026-11-14",
         "Classification": "Security", "Severity": "Important", "Advisory": "RHSA-2026:8301"},
        {"OperatingSystem": "SUSE", "Name": "curl", "Arch": "x86_64", "Epoch": "0",
         "Version": "8.0.1", "Release": "150400.5.50.1", "Released": "2026-11-14",
         "Classification": "Security", "Severity": "Important",
         "Advisory": "SUSE-SU-2026:3999-1"},
        {"OperatingSystem": "UBUNTU", "Name": "openssh-server", "Arch": "amd64",
         "Version": "1:8.9p1-3ubuntu0.14", "Released": "2026-11-14", "Classification": "net",
         "Severity": "Optional", "Advisory": "USN-7750-1", "Repository": "jammy-security"},
        {"OperatingSystem": "WINDOWS", "KBId": "KB5051150", "Product": "WindowsServer2022",
         "Title": "2026-11 Security Update for Microsoft server operating system version 21H2 for x64-based Systems (KB5051150)",
         "Released": "2026-11-14", "Classification": "SecurityUpdates", "Severity": "Critical"}
    ]})
}

/// The `Title`s of [`released_in_between`] as the agent reports them.
const IN_BETWEEN_TITLES: [&str; 6] = [
    "curl.x86_64:0:8.3.0-1.amzn2.0.9",
    "kernel.x86_64:0:3.10.0-1160.126.1.el7",
    "sudo.x86_64:0:1.9.5p2-10.el9_5",
    "curl.x86_64:0:8.0.1-150400.5.50.1",
    "openssh-server.amd64:1:8.9p1-3ubuntu0.14",
    "KB5051150",
];

struct Scenario {
    stack: Stack,
    syncer: Syncer,
    notifier: Notifier,
    queue_url: String,
    /// `<stem>-<env>` -> instance id.
    hosts: BTreeMap<String, String>,
}

impl Scenario {
    async fn new(emu: &Emulator) -> Scenario {
        let stack = emu.deploy_stack(STACK).expect("deploy the stack");
        let mut hosts = BTreeMap::new();
        for env in ["test", "prod"] {
            for (os, _, stem, batch) in FLEET {
                assert!(ami(os).is_some(), "{os} is in the AMI catalogue");
                let name = format!("{stem}-{env}");
                let group = PatchGroup::new(env, (6, 0), batch).to_string();
                let id = emu
                    .launch_instance(os, &name, &[("Patch Group", &group), ("Environment", env)])
                    .await
                    .expect("launch");
                hosts.insert(name, id);
            }
        }
        let sync_fn = stack.function("baseline-sync");
        let syncer = Syncer::from_settings(
            &emu.function_config(sync_fn).await,
            Settings::from_map(&sync_fn.environment),
        );
        let notify_fn = stack.function("run-notifier");
        let notifier = Notifier::from_settings(
            &emu.function_config(notify_fn).await,
            Settings::from_map(&notify_fn.environment),
        )
        .expect("run-notifier's settings are complete");
        let queue_url = emu
            .inbox(&stack.env("run-notifier", "TOPIC_ARN"), "promotion-reader")
            .await;
        Scenario {
            stack,
            syncer,
            notifier,
            queue_url,
            hosts,
        }
    }

    fn bucket(&self) -> &str {
        self.stack.physical_id("OutputBucket")
    }

    fn host(&self, stem: &str, env: &str) -> &str {
        &self.hosts[&format!("{stem}-{env}")]
    }

    async fn sync(&self, event: Value) {
        let result = sync(&self.syncer, event).await.expect("baseline-sync");
        assert!(result.is_complete(), "{result:?}");
    }

    async fn window_id(&self, emu: &Emulator, env: &str) -> String {
        let name = names::window_name(env);
        let out = emu
            .ssm()
            .await
            .describe_maintenance_windows()
            .filters(
                aws_sdk_ssm::types::MaintenanceWindowFilter::builder()
                    .key("Name")
                    .values(&name)
                    .build(),
            )
            .send()
            .await
            .expect("DescribeMaintenanceWindows");
        let ids: Vec<&str> = out
            .window_identities()
            .iter()
            .filter_map(|w| w.window_id())
            .collect();
        assert_eq!(ids.len(), 1, "one window named {name}");
        ids[0].to_string()
    }

    /// Runs `env`'s window at `at` and delivers its state-change event to run-notifier;
    /// returns the run and the JSON report read from the topic.
    async fn run(&self, emu: &Emulator, env: &str, at: &str, fail: &[&str]) -> (WindowRun, Value) {
        let mut request = ExecuteWindow::new(self.window_id(emu, env).await).at(at);
        for id in fail {
            request = request.with(id, HostOutcome::failed(1));
        }
        let run = emu.execute_window(&request).expect("execute window");
        let template = if run.status == "SUCCESS" {
            WINDOW_SUCCESS
        } else {
            WINDOW_FAILED
        };
        let mut event: Value = serde_json::from_str(template).expect("event file is JSON");
        event["detail"]["window-id"] = Value::String(run.window_id.clone());
        event["detail"]["window-execution-id"] = Value::String(run.window_execution_id.clone());
        event["detail"]["status"] = Value::String(run.status.clone());
        event["resources"] = json!([format!(
            "arn:aws:ssm:{REGION}:{ACCOUNT_ID}:maintenancewindow/{}",
            run.window_id
        )]);
        let response = notify(
            &self.notifier,
            event,
            SystemTime::now() + Duration::from_secs(120),
        )
        .await
        .expect("run-notifier");
        assert_eq!(response.outcome, Outcome::Published, "{response:?}");
        let mut mails = emu.deliveries(&self.queue_url).await;
        assert_eq!(mails.len(), 1, "one report per run");
        let report: Value =
            serde_json::from_str(mails.remove(0)["Message"].as_str().expect("message"))
                .expect("JSON report");
        (run, report)
    }

    fn state(&self, emu: &Emulator, env: &str) -> PromotionState {
        let text = emu
            .s3_object(self.bucket(), &patchpilot::promotion::state_key(env))
            .expect("read state")
            .unwrap_or_else(|| panic!("no promotion state for {env}"));
        serde_json::from_str(&text).expect("promotion state")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Package {
    #[serde(rename = "KBId")]
    kb_id: String,
    title: String,
    installed_time: String,
    base: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Packages {
    packages: Vec<Package>,
}

/// What the emulator says is installed on `id` and was installed at or after `since` (ISO):
/// (KB id / `name.arch`, title with the version).
fn installed_since(emu: &Emulator, id: &str, since: &str) -> BTreeSet<(String, String)> {
    let answer = emu.installed_packages(id).expect("installed-packages");
    let packages: Packages = serde_json::from_value(answer).expect("packages");
    packages
        .packages
        .into_iter()
        .filter(|p| !p.base && p.installed_time.as_str() >= since)
        .map(|p| (p.kb_id, p.title))
        .collect()
}

/// Every task's `Operation` and `InstallOverrideList` in `env`'s window, by task name.
/// The names of a window's targets, sorted.
async fn target_names(emu: &Emulator, window_id: &str) -> Vec<String> {
    let out = emu
        .ssm()
        .await
        .describe_maintenance_window_targets()
        .window_id(window_id)
        .send()
        .await
        .expect("DescribeMaintenanceWindowTargets");
    let mut names: Vec<String> = out
        .targets()
        .iter()
        .filter_map(|t| t.name().map(str::to_string))
        .collect();
    names.sort();
    names
}

async fn tasks(emu: &Emulator, window_id: &str) -> BTreeMap<String, (String, Option<String>)> {
    let out = emu
        .ssm()
        .await
        .describe_maintenance_window_tasks()
        .window_id(window_id)
        .send()
        .await
        .expect("DescribeMaintenanceWindowTasks");
    let ssm = emu.ssm().await;
    let mut tasks = BTreeMap::new();
    for t in out.tasks() {
        let task = ssm
            .get_maintenance_window_task()
            .window_id(window_id)
            .window_task_id(t.window_task_id().expect("task id"))
            .send()
            .await
            .expect("GetMaintenanceWindowTask");
        let params = task
            .task_invocation_parameters()
            .and_then(|p| p.run_command())
            .and_then(|r| r.parameters())
            .cloned()
            .unwrap_or_default();
        let first = |k: &str| params.get(k).and_then(|v| v.first()).cloned();
        tasks.insert(
            task.name().unwrap_or_default().to_string(),
            (
                first("Operation").unwrap_or_default(),
                first("InstallOverrideList"),
            ),
        );
    }
    tasks
}

fn promotion_lines(report: &Value) -> Vec<String> {
    report["promotion"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn prod_installs_what_test_installed_and_the_gate_holds_it_after_a_bad_run() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    emu.reset().expect("reset");
    let s = Scenario::new(emu).await;

    // 1. The first sync: prod is held (no test run recorded yet), so it only scans.
    s.sync(json!({})).await;
    let prod_window = s.window_id(emu, "prod").await;
    let held = tasks(emu, &prod_window).await;
    assert_eq!(held.len(), 2, "one task per batch while held: {held:?}");
    assert!(
        held.values()
            .all(|(op, list)| op == "Scan" && list.is_none()),
        "{held:?}"
    );

    // 2. Test's run on the first Saturday; run-notifier records the manifest.
    let (test_run, test_report) = s.run(emu, "test", TEST_RUN, &[]).await;
    assert_eq!(test_run.status, "SUCCESS");
    let lines = promotion_lines(&test_report);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("prod installs manifest")),
        "{lines:?}"
    );
    let state = s.state(emu, "prod");
    assert!(state.decision.verdict.installs(), "{state:?}");
    assert_eq!(state.run_date, "2026-11-07");
    let tested: BTreeMap<&str, BTreeSet<(String, String)>> = FLEET
        .iter()
        .map(|(_, os, stem, _)| (*os, installed_since(emu, s.host(stem, "test"), TEST_RUN)))
        .collect();
    for (os, set) in &tested {
        assert!(!set.is_empty(), "test's {os} host installed something");
    }

    // 3. New patches reach the repositories; the next sync gives prod one task per OS with
    // its override list.
    emu.change_catalogue(&released_in_between())
        .expect("catalogue");
    s.sync(json!({})).await;
    let promoted = tasks(emu, &prod_window).await;
    assert_eq!(promoted.len(), 6, "one task per (batch, OS): {promoted:?}");
    for (name, (op, list)) in &promoted {
        assert_eq!(op, "Install", "{name}");
        let url = list
            .as_deref()
            .unwrap_or_else(|| panic!("{name} has a list"));
        assert!(
            url.contains(&state.manifest.hash),
            "{name}: {url} is the manifest's"
        );
    }

    // 4. Prod's run two weeks later installs exactly the manifest: per OS the same (package or
    // KB, version) as test, none of what was released in between.
    let (_, prod_report) = s.run(emu, "prod", PROD_RUN, &[]).await;
    for (_, os, stem, _) in FLEET {
        let got = installed_since(emu, s.host(stem, "prod"), PROD_RUN);
        assert_eq!(got, tested[os], "{os}: prod installed what test installed");
        for title in IN_BETWEEN_TITLES {
            assert!(
                !got.iter().any(|(kb, t)| t == title || kb == title),
                "{os}: {title} was released after test's run"
            );
        }
    }
    // The catalogue's own in-between releases stay out too (2026-11-10 openssl, Windows' 11-10
    // cumulative update), although prod's baseline rules would approve them.
    let al2 = installed_since(emu, s.host("amazon-linux", "prod"), PROD_RUN);
    assert!(al2
        .iter()
        .any(|(_, t)| t == "openssl.x86_64:1:1.0.2k-24.amzn2.0.11"));
    assert!(!al2.iter().any(|(_, t)| t.contains("amzn2.0.12")));
    let win = installed_since(emu, s.host("windows", "prod"), PROD_RUN);
    assert!(!win.iter().any(|(kb, _)| kb == "KB5051010"), "{win:?}");
    // The prod report compares each host with the manifest.
    let lines = promotion_lines(&prod_report);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("6/6 host(s) installed exactly the manifest")),
        "{lines:?}"
    );

    // 5. A bad test run: one host fails. Prod is held (scan only), and the report says so.
    let failing = s.host("redhat-linux", "test").to_string();
    let (bad_run, bad_report) = s.run(emu, "test", NEXT_TEST_RUN, &[&failing]).await;
    assert_eq!(bad_run.status, "FAILED", "{bad_run:?}");
    let lines = promotion_lines(&bad_report);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("prod is held (scan only): 1/6 failed in test")),
        "{lines:?}"
    );
    let held_state = s.state(emu, "prod");
    assert!(!held_state.decision.verdict.installs(), "{held_state:?}");
    s.sync(json!({})).await;
    let held = tasks(emu, &prod_window).await;
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.values().all(|(op, _)| op == "Scan"), "{held:?}");
    // Held again, the per-OS targets go with their tasks: only the batches' targets remain.
    assert_eq!(
        target_names(emu, &prod_window).await,
        ["patch_prod_0600_batch_1", "patch_prod_0600_batch_2"]
    );

    // 6. An operator forces the promotion: prod installs the new manifest again.
    s.sync(json!({"promote": "force"})).await;
    let forced = s.state(emu, "prod");
    assert_eq!(forced.manifest.hash, held_state.manifest.hash);
    assert!(forced.decision.verdict.installs(), "{forced:?}");
    assert!(forced.forced_by.is_some(), "{forced:?}");
    let after = tasks(emu, &prod_window).await;
    assert_eq!(after.len(), 6, "{after:?}");
    // RHEL's test host failed, so the forced manifest has nothing for RHEL: it scans; every
    // other OS installs its list of the forced manifest.
    for (name, (op, list)) in &after {
        if name.ends_with("-REDHAT_ENTERPRISE_LINUX") {
            assert_eq!((op.as_str(), list), ("Scan", &None), "{name}");
        } else {
            assert_eq!(op, "Install", "{name}");
            assert!(
                list.as_deref()
                    .is_some_and(|u| u.contains(&forced.manifest.hash)),
                "{name}: {list:?}"
            );
        }
    }
    assert!(
        forced
            .manifest
            .lists
            .keys()
            .all(|os| os.as_str() != "REDHAT_ENTERPRISE_LINUX"),
        "{forced:?}"
    );
    // Forcing again is refused: nothing is held any more.
    let err = sync(&s.syncer, json!({"promote": "force"}))
        .await
        .expect_err("nothing to force");
    assert!(err.to_string().contains("nothing to force"), "{err}");
}
