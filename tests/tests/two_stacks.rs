//! Two patchpilot stacks in one account and Region (`patchpilot` and `patchpilot-dev`), both
//! deployed from template.yaml into the emulator, each function running with its own key and
//! settings (IAM enforced). Stack A syncs first; stack B, with the same policy, must report
//! A's resources as conflicts and change nothing of A's — and its role could not have.

use std::collections::BTreeMap;

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{PatchOrchestratorFilter, ResourceTypeForTagging};
use baseline_sync::{handle, HandlerError, Syncer};
use patchpilot::aws::policy_source::PolicySource;
use patchpilot::aws::CallLog;
use patchpilot::fleet::Action;
use patchpilot::settings::Settings;
use patchpilot_tests::{emulator, Emulator, Stack, ACCOUNT_ID, REGION};
use serde_json::{json, Value};

const A: &str = "patchpilot";
const B: &str = "patchpilot-dev";

async fn syncer(emu: &Emulator, stack: &Stack) -> Syncer {
    let f = stack.function("baseline-sync");
    Syncer::from_settings(
        &emu.function_config(f).await,
        Settings::from_map(&f.environment),
    )
}

/// Everything patchpilot manages in the account, read by the administrator: baselines (with
/// rules, groups, modification dates and tags), patch-group registrations, windows (with
/// modification dates and tags), their targets and tasks (in full), and the instances' tags.
#[derive(Debug, PartialEq)]
struct Snapshot {
    baselines: BTreeMap<String, String>,
    patch_groups: Vec<String>,
    windows: BTreeMap<String, String>,
    targets: BTreeMap<String, String>,
    tasks: BTreeMap<String, String>,
    instance_tags: BTreeMap<String, BTreeMap<String, String>>,
}

async fn resource_tags(emu: &Emulator, kind: ResourceTypeForTagging, id: &str) -> String {
    let tags = emu
        .ssm()
        .await
        .list_tags_for_resource()
        .resource_type(kind)
        .resource_id(id)
        .send()
        .await
        .expect("ListTagsForResource");
    format!("{:?}", tags.tag_list())
}

async fn snapshot(emu: &Emulator) -> Snapshot {
    let ssm = emu.ssm().await;
    let mut baselines = BTreeMap::new();
    let listed = ssm
        .describe_patch_baselines()
        .filters(
            PatchOrchestratorFilter::builder()
                .key("OWNER")
                .values("Self")
                .build(),
        )
        .max_results(100)
        .send()
        .await
        .expect("DescribePatchBaselines");
    for b in listed.baseline_identities() {
        let id = b.baseline_id().expect("id");
        let g = ssm
            .get_patch_baseline()
            .baseline_id(id)
            .send()
            .await
            .expect("GetPatchBaseline");
        let tags = resource_tags(emu, ResourceTypeForTagging::PatchBaseline, id).await;
        baselines.insert(
            id.to_string(),
            format!(
                "{:?}",
                (
                    g.name(),
                    g.operating_system(),
                    g.description(),
                    g.approval_rules(),
                    g.global_filters(),
                    g.approved_patches(),
                    g.rejected_patches(),
                    g.patch_groups(),
                    g.modified_date(),
                    tags,
                )
            ),
        );
    }
    let mut patch_groups: Vec<String> = ssm
        .describe_patch_groups()
        .max_results(100)
        .send()
        .await
        .expect("DescribePatchGroups")
        .mappings()
        .iter()
        .map(|m| format!("{m:?}"))
        .collect();
    patch_groups.sort();
    let mut windows = BTreeMap::new();
    let mut targets = BTreeMap::new();
    let mut tasks = BTreeMap::new();
    let listed = ssm
        .describe_maintenance_windows()
        .send()
        .await
        .expect("DescribeMaintenanceWindows");
    for w in listed.window_identities() {
        let id = w.window_id().expect("id");
        let g = ssm
            .get_maintenance_window()
            .window_id(id)
            .send()
            .await
            .expect("GetMaintenanceWindow");
        let tags = resource_tags(emu, ResourceTypeForTagging::MaintenanceWindow, id).await;
        windows.insert(
            id.to_string(),
            format!(
                "{:?}",
                (
                    g.name(),
                    g.schedule(),
                    g.schedule_timezone(),
                    g.duration(),
                    g.cutoff(),
                    g.enabled(),
                    g.allow_unassociated_targets(),
                    g.modified_date(),
                    tags,
                )
            ),
        );
        for t in ssm
            .describe_maintenance_window_targets()
            .window_id(id)
            .send()
            .await
            .expect("DescribeMaintenanceWindowTargets")
            .targets()
        {
            targets.insert(
                t.window_target_id().expect("target id").to_string(),
                format!("{t:?}"),
            );
        }
        for t in ssm
            .describe_maintenance_window_tasks()
            .window_id(id)
            .send()
            .await
            .expect("DescribeMaintenanceWindowTasks")
            .tasks()
        {
            let task_id = t.window_task_id().expect("task id");
            let g = ssm
                .get_maintenance_window_task()
                .window_id(id)
                .window_task_id(task_id)
                .send()
                .await
                .expect("GetMaintenanceWindowTask");
            tasks.insert(
                task_id.to_string(),
                format!(
                    "{t:?} {:?}",
                    (
                        g.task_invocation_parameters(),
                        g.service_role_arn(),
                        g.max_concurrency(),
                        g.max_errors(),
                        g.targets(),
                    )
                ),
            );
        }
    }
    let mut instance_tags = BTreeMap::new();
    let out = emu
        .ec2()
        .await
        .describe_instances()
        .send()
        .await
        .expect("DescribeInstances");
    for i in out.reservations().iter().flat_map(|r| r.instances()) {
        instance_tags.insert(
            i.instance_id().expect("id").to_string(),
            i.tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
        );
    }
    Snapshot {
        baselines,
        patch_groups,
        windows,
        targets,
        tasks,
        instance_tags,
    }
}

fn running_event(id: &str) -> Value {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../events/auto-tagger/ec2-state-running.json"
    ))
    .expect("event file is JSON");
    event["detail"]["instance-id"] = Value::String(id.to_string());
    event["resources"] = json!([format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{id}")]);
    event
}

#[tokio::test]
async fn a_second_stack_reports_the_first_stacks_resources_as_conflicts_and_changes_nothing() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let a = emu.deploy_stack(A).expect("stack A");
    let b = emu.deploy_stack(B).expect("stack B");
    assert_eq!(a.env("baseline-sync", "PATCHPILOT_STACK"), A);
    assert_eq!(b.env("baseline-sync", "PATCHPILOT_STACK"), B);
    let mut instances = Vec::new();
    for (os, name, env) in [
        ("rhel-9", "db-01-test", "test"),
        ("windows-2022", "app-01-prod", "prod"),
        ("ubuntu-22.04", "web-01-prod", "prod"),
    ] {
        instances.push(
            emu.launch_instance(os, name, &[("Environment", env)])
                .await
                .expect("launch"),
        );
    }

    // Stack A sets up the reference policy and its sweep tags the fleet, marked as A's.
    let sync_a = syncer(emu, &a).await;
    let result = handle(&sync_a, json!({})).await.expect("A syncs");
    assert_eq!(result.counts.created, 46, "{:?}", result.plan);
    let sweep = result.sweep.expect("A swept");
    assert_eq!(sweep.count(Action::Tagged), 3, "{sweep:?}");
    let before = snapshot(emu).await;
    assert_eq!(before.baselines.len(), 12);
    assert_eq!(before.windows.len(), 2);
    for (id, tags) in &before.instance_tags {
        assert_eq!(
            tags.get("patchpilot:managed").map(String::as_str),
            Some(A),
            "{id}"
        );
    }

    // B's plan (what `patchpilot plan` shows, with B's key): every baseline and window is
    // A's, a conflict naming stack A; no change at all.
    let sync_b = syncer(emu, &b).await;
    let f = b.function("baseline-sync");
    let config_b = emu.function_config(f).await;
    let settings_b = Settings::from_map(&f.environment);
    let ssm_b = aws_sdk_ssm::Client::new(&config_b);
    let calls = CallLog::new();
    let policy = PolicySource::from_settings(ssm_b.clone(), &settings_b)
        .fetch(&calls)
        .await
        .expect("B reads the shared policy parameter");
    let plan = patchpilot::sync::plan_only(
        &ssm_b,
        &settings_b.owner,
        &policy,
        &settings_b.deployment,
        &calls,
    )
    .await
    .expect("B plans");
    assert!(plan.changes.is_empty(), "{:?}", plan.lines());
    let conflicts: Vec<String> = plan.conflicts.iter().map(ToString::to_string).collect();
    for env in ["test", "prod"] {
        for os in [
            "WINDOWS",
            "REDHAT_ENTERPRISE_LINUX",
            "UBUNTU",
            "AMAZON_LINUX_2",
            "CENTOS",
            "SUSE",
        ] {
            let resource = format!("baseline patchpilot-{env}-{os}");
            let c = plan
                .conflicts
                .iter()
                .find(|c| c.resource == resource)
                .unwrap_or_else(|| panic!("no conflict for {resource}: {conflicts:#?}"));
            assert!(
                c.message.contains("patchpilot:managed=patchpilot"),
                "{resource}: {}",
                c.message
            );
        }
        let resource = format!("window patchpilot-{env}");
        let c = plan
            .conflicts
            .iter()
            .find(|c| c.resource == resource)
            .unwrap_or_else(|| panic!("no conflict for {resource}: {conflicts:#?}"));
        assert!(
            c.message.contains("patchpilot:managed=patchpilot"),
            "{resource}: {}",
            c.message
        );
    }

    // B syncs (apply and sweep): incomplete because of the conflicts, and not one write.
    emu.reset_request_counts().expect("reset counter");
    let err = handle(&sync_b, json!({}))
        .await
        .expect_err("B's sync is incomplete");
    let requests = emu.request_counts().expect("request log");
    assert!(
        matches!(
            err,
            HandlerError::Incomplete {
                failed: 0,
                access_denied: 0,
                conflicts,
                ..
            } if conflicts == plan.conflicts.len()
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("patchpilot:managed=patchpilot"),
        "{err}"
    );
    // Not one write to SSM or EC2. The one write is B remembering its own (valid) policy as
    // its last known good one: item `policy#<B>` in B's own idempotency table.
    assert_eq!(
        requests.writes(),
        BTreeMap::from([("dynamodb:PutItem".to_string(), 1)]),
        "B wrote"
    );
    // B's sweep read the fleet and left A's instances alone.
    assert!(requests.get("ec2", "DescribeInstances") >= 1);
    assert_eq!(requests.get("ec2", "CreateTags"), 0);

    // B's auto-tagger on a restart of A's instance does not take it over either.
    let t = b.function("auto-tagger");
    let tagger_b = auto_tagger::Tagger::from_settings(
        &emu.function_config(t).await,
        Settings::from_map(&t.environment),
    );
    emu.reset_request_counts().expect("reset counter");
    let response = auto_tagger::handle(&tagger_b, running_event(&instances[0]))
        .await
        .expect("B's auto-tagger handles the event");
    assert_ne!(response.results[0].action, Action::Tagged, "{response:?}");
    assert_eq!(response.aws_calls.writes, 0, "{response:?}");
    assert_eq!(emu.request_counts().expect("log").write_count(), 0);

    let after = snapshot(emu).await;
    assert_eq!(before, after, "B changed something of A's");

    // And B's role could not have: a direct update of one of A's baselines with B's key is
    // denied (the role only changes baselines marked with its own stack).
    let (a_baseline, _) = after.baselines.iter().next().expect("a baseline of A's");
    let denied = ssm_b
        .update_patch_baseline()
        .baseline_id(a_baseline)
        .description("taken over by patchpilot-dev")
        .send()
        .await
        .expect_err("B may not update A's baseline");
    let code = denied.code().unwrap_or_default().to_string();
    let message = denied.message().unwrap_or_default().to_string();
    assert!(code.contains("AccessDenied"), "{code}: {message}");
    assert!(
        message.contains("ssm:UpdatePatchBaseline"),
        "{code}: {message}"
    );
    // The same holds for A's windows.
    let (a_window, _) = after.windows.iter().next().expect("a window of A's");
    let denied = ssm_b
        .delete_maintenance_window()
        .window_id(a_window)
        .send()
        .await
        .expect_err("B may not delete A's window");
    assert!(
        denied.code().unwrap_or_default().contains("AccessDenied"),
        "{denied:?}"
    );
    assert_eq!(
        snapshot(emu).await,
        after,
        "the denied calls changed nothing"
    );
}
