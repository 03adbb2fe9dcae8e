//! baseline-sync against the emulator: the article's setup from an empty account, then
//! idempotence, in-place edits, ownership and safety.

use aws_sdk_ssm::types::{
    OperatingSystem, ParameterType, PatchFilter, PatchFilterGroup, PatchFilterKey, PatchRule,
    PatchRuleGroup,
};
use baseline_sync::{handle, invoke, HandlerError, Syncer};
use patchpilot::failure::{Classified, Retry};
use patchpilot::policy::REFERENCE_POLICY_YAML;
use patchpilot::settings::Settings;
use patchpilot::sync::SyncResult;
use patchpilot_tests::{emulator, DeployStack, Emulator, Stack, STACK};
use serde_json::json;

/// Deploys stack `name` and builds its baseline-sync as Lambda does
/// (`Syncer::from_settings`): the function's environment as template.yaml resolves it, every
/// request signed with the function's own key. The policy is the stack's parameter
/// (`embedded-default` = the reference policy until a test overwrites it).
async fn deployed_syncer(emu: &Emulator, name: &str) -> (Stack, Syncer) {
    let stack = emu.deploy_stack(name).expect("stack");
    let syncer = syncer_of(emu, &stack).await;
    (stack, syncer)
}

async fn syncer_of(emu: &Emulator, stack: &Stack) -> Syncer {
    let f = stack.function("baseline-sync");
    Syncer::from_settings(
        &emu.function_config(f).await,
        Settings::from_map(&f.environment),
    )
}

async fn syncer(emu: &Emulator) -> (Stack, Syncer) {
    deployed_syncer(emu, STACK).await
}

/// The administrator overwrites the stack's policy parameter (what an operator does).
async fn put_policy(emu: &Emulator, stack: &Stack, policy_yaml: &str) {
    emu.ssm()
        .await
        .put_parameter()
        .name(stack.env("baseline-sync", "POLICY_PARAMETER"))
        .value(policy_yaml)
        .r#type(ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .expect("PutParameter");
}

async fn apply(s: &Syncer) -> SyncResult {
    handle(s, json!({})).await.expect("sync succeeds")
}

fn writes(emu: &Emulator) -> std::collections::BTreeMap<String, u64> {
    emu.request_counts().expect("request log").writes()
}

async fn baselines(emu: &Emulator) -> Vec<(String, String)> {
    let out = emu
        .ssm()
        .await
        .describe_patch_baselines()
        .filters(
            aws_sdk_ssm::types::PatchOrchestratorFilter::builder()
                .key("OWNER")
                .values("Self")
                .build(),
        )
        .max_results(100)
        .send()
        .await
        .expect("DescribePatchBaselines");
    let mut v: Vec<_> = out
        .baseline_identities()
        .iter()
        .map(|b| {
            (
                b.baseline_name().unwrap_or_default().to_string(),
                b.baseline_id().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn baseline_id(emu: &Emulator, name: &str) -> String {
    baselines(emu)
        .await
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("baseline {name} exists"))
}

async fn windows(emu: &Emulator) -> Vec<aws_sdk_ssm::types::MaintenanceWindowIdentity> {
    let mut w = emu
        .ssm()
        .await
        .describe_maintenance_windows()
        .send()
        .await
        .expect("DescribeMaintenanceWindows")
        .window_identities()
        .to_vec();
    w.sort_by(|a, b| a.name().cmp(&b.name()));
    w
}

#[tokio::test]
async fn one_run_builds_the_articles_setup_from_an_empty_account() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (stack, s) = syncer(emu).await;
    let result = apply(&s).await;
    assert_eq!(
        result.counts.created,
        12 + 24 + 2 + 4 + 4,
        "{:#?}",
        result.plan
    );
    assert_eq!(result.counts.failed, 0);
    let ssm = emu.ssm().await;

    // 12 baselines, one per OS and environment, with the article's rules.
    let names: Vec<String> = baselines(emu).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 12, "{names:?}");
    for env in ["test", "prod"] {
        for os in [
            "WINDOWS",
            "REDHAT_ENTERPRISE_LINUX",
            "UBUNTU",
            "AMAZON_LINUX_2",
            "CENTOS",
            "SUSE",
        ] {
            assert!(
                names.contains(&format!("patchpilot-{env}-{os}")),
                "{env} {os}: {names:?}"
            );
        }
    }
    let rhel_prod = ssm
        .get_patch_baseline()
        .baseline_id(baseline_id(emu, "patchpilot-prod-REDHAT_ENTERPRISE_LINUX").await)
        .send()
        .await
        .expect("GetPatchBaseline");
    let rules = rhel_prod.approval_rules().expect("rules").patch_rules();
    assert_eq!(
        rules[0].approve_after_days(),
        Some(14),
        "prod approves 14 days after release"
    );
    assert_eq!(
        rhel_prod.operating_system(),
        Some(&OperatingSystem::RedhatEnterpriseLinux)
    );
    let ubuntu_prod = ssm
        .get_patch_baseline()
        .baseline_id(baseline_id(emu, "patchpilot-prod-UBUNTU").await)
        .send()
        .await
        .expect("GetPatchBaseline");
    let ubuntu_rule = &ubuntu_prod.approval_rules().expect("rules").patch_rules()[0];
    assert_eq!(
        ubuntu_rule.approve_after_days(),
        None,
        "Ubuntu cannot delay approval"
    );
    let tags = ssm
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::PatchBaseline)
        .resource_id(baseline_id(emu, "patchpilot-test-WINDOWS").await)
        .send()
        .await
        .expect("ListTagsForResource");
    assert!(tags
        .tag_list()
        .iter()
        .any(|t| t.key() == "patchpilot:managed" && t.value() == "patchpilot"));

    // 4 patch-group registrations per OS.
    let groups = ssm
        .describe_patch_groups()
        .send()
        .await
        .expect("DescribePatchGroups");
    assert_eq!(groups.mappings().len(), 24);
    for os in [
        OperatingSystem::Windows,
        OperatingSystem::Ubuntu,
        OperatingSystem::Suse,
    ] {
        let n = groups
            .mappings()
            .iter()
            .filter(|m| m.baseline_identity().and_then(|b| b.operating_system()) == Some(&os))
            .count();
        assert_eq!(n, 4, "{os:?}");
    }

    // 2 windows with the article's schedules and a timezone.
    let w = windows(emu).await;
    let schedules: Vec<_> = w
        .iter()
        .map(|w| {
            (
                w.name().unwrap_or_default(),
                w.schedule().unwrap_or_default(),
                w.schedule_timezone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        schedules,
        [
            ("patchpilot-prod", "cron(0 6 ? * SAT#3 *)", "Europe/Zurich"),
            ("patchpilot-test", "cron(0 6 ? * SAT#1 *)", "Europe/Zurich")
        ]
    );
    let test_window = w[1].window_id().expect("id").to_string();
    let got = ssm
        .get_maintenance_window()
        .window_id(&test_window)
        .send()
        .await
        .expect("GetMaintenanceWindow");
    assert!(!got.allow_unassociated_targets());
    assert_eq!((got.duration(), got.cutoff()), (Some(4), 1));

    // 2 targets per window, named after their patch group, selecting it by tag.
    let targets = ssm
        .describe_maintenance_window_targets()
        .window_id(&test_window)
        .send()
        .await
        .expect("DescribeMaintenanceWindowTargets");
    let mut t: Vec<_> = targets
        .targets()
        .iter()
        .map(|t| {
            (
                t.name().unwrap_or_default().to_string(),
                t.targets()[0].key().unwrap_or_default().to_string(),
                t.targets()[0].values().join(","),
            )
        })
        .collect();
    t.sort();
    assert_eq!(
        t,
        [
            (
                "patch_test_0600_batch_1".into(),
                "tag:Patch Group".into(),
                "patch_test_0600_batch_1".into()
            ),
            (
                "patch_test_0600_batch_2".into(),
                "tag:Patch Group".into(),
                "patch_test_0600_batch_2".into()
            ),
        ]
    );

    // 2 tasks per window: AWS-RunPatchBaseline Install, Linux (priority 1) before Windows (2).
    let tasks = ssm
        .describe_maintenance_window_tasks()
        .window_id(&test_window)
        .send()
        .await
        .expect("DescribeMaintenanceWindowTasks");
    let mut by_priority: Vec<_> = tasks
        .tasks()
        .iter()
        .map(|t| {
            (
                t.priority(),
                t.name().unwrap_or_default().to_string(),
                t.window_task_id().unwrap_or_default().to_string(),
            )
        })
        .collect();
    by_priority.sort();
    assert_eq!(
        by_priority
            .iter()
            .map(|(p, n, _)| (*p, n.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "patchpilot-test-batch-1-linux"),
            (2, "patchpilot-test-batch-2-windows")
        ]
    );
    let task = ssm
        .get_maintenance_window_task()
        .window_id(&test_window)
        .window_task_id(&by_priority[0].2)
        .send()
        .await
        .expect("GetMaintenanceWindowTask");
    assert_eq!(task.task_arn(), Some("AWS-RunPatchBaseline"));
    let run = task
        .task_invocation_parameters()
        .and_then(|p| p.run_command())
        .expect("run command parameters");
    assert_eq!(
        run.parameters().and_then(|p| p.get("Operation")),
        Some(&vec!["Install".to_string()])
    );
    assert_eq!(
        run.output_s3_bucket_name(),
        Some(stack.env("baseline-sync", "OUTPUT_BUCKET").as_str())
    );
    assert_eq!(
        run.output_s3_key_prefix(),
        Some("patchpilot/run-command/test")
    );
    assert_eq!(
        task.service_role_arn(),
        Some(
            stack
                .env("baseline-sync", "MAINTENANCE_WINDOW_ROLE_ARN")
                .as_str()
        )
    );
}

#[tokio::test]
async fn a_second_run_makes_zero_write_calls() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (_stack, s) = syncer(emu).await;
    apply(&s).await;
    emu.reset_request_counts().expect("reset counter");
    let again = apply(&s).await;
    assert_eq!(writes(emu), Default::default(), "second run wrote");
    assert!(again.plan.is_empty(), "{:?}", again.plan);
    assert_eq!(again.counts.unchanged, 46);
    assert_eq!(again.aws_calls.writes, 0);
    // Reads grow with baselines and windows: 3 listings + 2 per baseline + per window
    // (tags, window, targets, tasks) + 1 per task, + policy + sweep pages, + the coverage of
    // an empty fleet (one page of each fleet list, the Default Host Management setting), + the
    // last known good policy (unchanged: read, not written).
    assert!(
        again.aws_calls.reads <= 3 + 24 + 8 + 4 + 1 + 4 + 3 + 1,
        "{:?}",
        again.aws_calls
    );
}

#[tokio::test]
async fn editing_one_field_changes_exactly_that_resource_in_place() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (stack, s) = syncer(emu).await;
    apply(&s).await;
    let before = windows(emu).await;

    // The test window gets 3 hours instead of 4.
    let edited = REFERENCE_POLICY_YAML.replacen("duration_hours: 4", "duration_hours: 3", 1);
    put_policy(emu, &stack, &edited).await;
    emu.reset_request_counts().expect("reset counter");
    let result = apply(&s).await;
    assert_eq!(result.plan, ["~ window patchpilot-test: Duration 4 → 3"]);
    let w = writes(emu);
    // The edited policy is also remembered as the last known good one.
    assert_eq!(
        w.into_iter().collect::<Vec<_>>(),
        [
            ("dynamodb:PutItem".to_string(), 1),
            ("ssm:UpdateMaintenanceWindow".to_string(), 1)
        ]
    );
    let after = windows(emu).await;
    assert_eq!(
        before.iter().map(|w| w.window_id()).collect::<Vec<_>>(),
        after.iter().map(|w| w.window_id()).collect::<Vec<_>>(),
        "updated in place, same ids"
    );
    assert_eq!(after[1].duration(), Some(3));

    // A baseline edit: the prod delay changes, ids and registrations survive.
    let id_before = baseline_id(emu, "patchpilot-prod-SUSE").await;
    let edited = edited.replace("approve_after_days: 14", "approve_after_days: 21");
    put_policy(emu, &stack, &edited).await;
    let result = apply(&s).await;
    assert_eq!(result.counts.updated, 5, "{:?}", result.plan); // every prod OS but Ubuntu
    assert!(
        result
            .plan
            .iter()
            .any(|l| l.starts_with("~ baseline patchpilot-prod-SUSE:")
                && l.contains("ApproveAfterDays 14 → 21")),
        "{:?}",
        result.plan
    );
    assert_eq!(baseline_id(emu, "patchpilot-prod-SUSE").await, id_before);
    let groups = emu
        .ssm()
        .await
        .describe_patch_groups()
        .send()
        .await
        .expect("groups");
    assert_eq!(
        groups.mappings().len(),
        24,
        "registrations survive the update"
    );
}

#[tokio::test]
async fn a_foreign_baseline_with_a_clashing_name_is_left_alone_and_reported() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let ssm = emu.ssm().await;
    let rules = PatchRuleGroup::builder()
        .patch_rules(
            PatchRule::builder()
                .patch_filter_group(
                    PatchFilterGroup::builder()
                        .patch_filters(
                            PatchFilter::builder()
                                .key(PatchFilterKey::Classification)
                                .values("Updates")
                                .build()
                                .expect("filter"),
                        )
                        .build()
                        .expect("group"),
                )
                .approve_after_days(3)
                .build(),
        )
        .build()
        .expect("rules");
    let foreign = ssm
        .create_patch_baseline()
        .name("patchpilot-test-WINDOWS")
        .operating_system(OperatingSystem::Windows)
        .approval_rules(rules)
        .description("hand-made by the Windows team")
        .send()
        .await
        .expect("CreatePatchBaseline")
        .baseline_id()
        .expect("id")
        .to_string();
    let (_stack, s) = syncer(emu).await;
    let err = handle(&s, json!({}))
        .await
        .expect_err("a conflict leaves the sync incomplete");
    assert!(
        matches!(
            err,
            HandlerError::Incomplete {
                conflicts: 1,
                failed: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("patchpilot-test-WINDOWS"), "{err}");
    // A conflict repeats on every run: logged and counted, not retried.
    assert_eq!(err.error_type(), "Conflict");
    assert_eq!(err.retry(), Retry::Permanent);

    let b = ssm
        .get_patch_baseline()
        .baseline_id(&foreign)
        .send()
        .await
        .expect("still there");
    assert_eq!(b.description(), Some("hand-made by the Windows team"));
    assert!(
        b.patch_groups().is_empty(),
        "no group registered with the foreign baseline"
    );
    let names: Vec<_> = baselines(emu).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 12, "11 of ours + the foreign one: {names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| *n == "patchpilot-test-WINDOWS")
            .count(),
        1
    );
}

#[tokio::test]
async fn deleting_an_environment_removes_only_its_resources() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let ssm = emu.ssm().await;
    // Someone else's baseline and window, which must survive.
    let other_window = ssm
        .create_maintenance_window()
        .name("db-team-window")
        .schedule("cron(0 2 ? * SUN *)")
        .duration(2)
        .cutoff(1)
        .allow_unassociated_targets(false)
        .send()
        .await
        .expect("CreateMaintenanceWindow")
        .window_id()
        .expect("id")
        .to_string();
    let (stack, s) = syncer(emu).await;
    apply(&s).await;

    let policy = patchpilot::policy::Policy::reference();
    let mut without_prod = policy.clone();
    without_prod.environments.retain(|e| e.name != "prod");
    let yaml = serde_norway::to_string(&without_prod).expect("policy serialises");
    put_policy(emu, &stack, &yaml).await;
    let result = apply(&s).await;
    assert_eq!(result.counts.deleted, 12 + 6 + 1, "{:?}", result.plan);
    assert!(
        result.plan.iter().all(|l| l.contains("prod")),
        "{:?}",
        result.plan
    );

    let names: Vec<_> = baselines(emu).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 6);
    assert!(
        names.iter().all(|n| n.starts_with("patchpilot-test-")),
        "{names:?}"
    );
    let w: Vec<_> = windows(emu)
        .await
        .iter()
        .map(|w| w.window_id().unwrap_or_default().to_string())
        .collect();
    assert_eq!(w.len(), 2);
    assert!(w.contains(&other_window));
}

#[tokio::test]
async fn dry_run_writes_nothing_and_returns_the_plan() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (_stack, s) = syncer(emu).await;
    emu.reset_request_counts().expect("reset counter");
    let result = handle(&s, json!({"dry_run": true})).await.expect("dry run");
    assert!(result.dry_run);
    assert_eq!(result.plan.len(), 46);
    assert!(result.applied.is_empty());
    assert_eq!(writes(emu), Default::default());
    assert!(baselines(emu).await.is_empty());
}

/// An invalid policy changes nothing in SSM or EC2 and is reported in one message on the
/// report topic (every problem, and the last known good policy the other functions keep
/// using); the invocation ends without error (a retry reads the same text), and the next
/// run does not repeat the message.
#[tokio::test]
async fn an_invalid_policy_changes_nothing_and_is_reported_once() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let broken = REFERENCE_POLICY_YAML.replacen("duration_hours: 4", "duration_hours: 30", 1);
    let (stack, s) = syncer(emu).await;
    let queue = emu
        .inbox(&stack.env("baseline-sync", "TOPIC_ARN"), "policy-reader")
        .await;
    // A valid policy first: applied, and remembered as the last known good one.
    put_policy(emu, &stack, REFERENCE_POLICY_YAML).await;
    apply(&s).await;
    emu.deliveries(&queue).await;
    let baselines_before = baselines(emu).await;
    put_policy(emu, &stack, &broken).await;
    emu.reset_request_counts().expect("reset counter");
    let err = handle(&s, json!({})).await.expect_err("invalid policy");
    let msg = err.to_string();
    assert!(
        msg.contains("environments[0].window.duration_hours"),
        "{msg}"
    );
    assert_eq!(err.retry(), Retry::Permanent);
    let d: lambda_runtime::Diagnostic = err.into();
    assert_eq!(d.error_type, "PolicyInvalid");
    // Nothing changed: the only writes are the message and remembering that it was sent.
    let w = writes(emu);
    assert_eq!(
        w.keys().cloned().collect::<Vec<_>>(),
        ["dynamodb:PutItem", "sns:Publish"],
        "{w:?}"
    );
    assert_eq!(baselines(emu).await, baselines_before);
    let messages = emu.deliveries(&queue).await;
    assert_eq!(messages.len(), 1, "one message: {messages:?}");
    let m = &messages[0];
    assert_eq!(m["MessageAttributes"]["type"]["Value"], "policy");
    assert_eq!(m["MessageAttributes"]["status"]["Value"], "FAILED");
    // A queue subscriber gets the JSON member (the email member is the same, as text).
    let notice: serde_json::Value =
        serde_json::from_str(m["Message"].as_str().expect("message")).expect("JSON notice");
    assert_eq!(notice["type"], "policy");
    let problems: Vec<&str> = notice["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    // Errors only: the reference policy's Ubuntu warning is not a reason it is invalid.
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("duration_hours")),
        "{problems:?}"
    );
    assert!(
        notice["last_known_good"]
            .as_str()
            .is_some_and(|g| g.contains("version 2")),
        "{notice}"
    );

    // The daily run with the same invalid text: ends without error, no second message.
    emu.reset_request_counts().expect("reset counter");
    let answer = invoke(&s, json!({})).await.expect("permanent: no retry");
    assert_eq!(answer["errorType"], "PolicyInvalid");
    assert_eq!(writes(emu), Default::default());
    assert!(emu.deliveries(&queue).await.is_empty());
}

/// A valid policy is remembered once with its version and SHA-256, where the other
/// functions read it; an unchanged one is not written again.
#[tokio::test]
async fn a_valid_policy_is_remembered_as_the_last_known_good_one() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (stack, s) = syncer(emu).await;
    put_policy(emu, &stack, REFERENCE_POLICY_YAML).await;
    handle(&s, json!({"sweep": false})).await.expect("sync");
    let item = emu
        .dynamodb()
        .await
        .get_item()
        .table_name(stack.env("baseline-sync", "IDEMPOTENCY_TABLE"))
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("policy#{STACK}")),
        )
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("policy#<stack> stored");
    assert_eq!(item["version"].as_n().ok().map(String::as_str), Some("2"));
    assert_eq!(
        item["sha256"].as_s().ok().map(String::as_str),
        Some(patchpilot::aws::last_good::sha256_hex(REFERENCE_POLICY_YAML).as_str())
    );
    assert_eq!(
        item["text"].as_s().ok().map(String::as_str),
        Some(REFERENCE_POLICY_YAML)
    );
    emu.reset_request_counts().expect("reset counter");
    handle(&s, json!({"sweep": false}))
        .await
        .expect("second sync");
    assert_eq!(writes(emu), Default::default());
}

#[tokio::test]
async fn the_sweep_tags_the_fleet_the_auto_tagger_missed() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let mut ids = Vec::new();
    for (os, name, env) in [
        ("rhel-9", "i-redhat-linux-test", "test"),
        ("windows-2022", "i-windows-prod", "prod"),
    ] {
        ids.push(
            emu.launch_instance(os, name, &[("Environment", env)])
                .await
                .expect("launch"),
        );
    }
    let (_stack, s) = syncer(emu).await;
    let result = apply(&s).await;
    let sweep = result.sweep.expect("sweep ran");
    assert_eq!(sweep.count(patchpilot::fleet::Action::Tagged), 2);
    let out = emu
        .ec2()
        .await
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .expect("DescribeInstances");
    let mut groups: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some("Patch Group"))
                .and_then(|t| t.value())
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        ["patch_prod_0600_batch_2", "patch_test_0600_batch_1"]
    );
}

#[tokio::test]
async fn a_failing_change_does_not_stop_independent_ones_and_the_next_run_converges() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (_stack, s) = syncer(emu).await;
    // The first CreateMaintenanceWindow (test's) is refused; nothing retries a 400.
    emu.inject_fault(&patchpilot_tests::Fault::new(
        "ssm",
        "CreateMaintenanceWindow",
        "ResourceLimitExceededException",
        1,
    ))
    .expect("fault");
    let err = handle(&s, json!({})).await.expect_err("one window failed");
    // The window failed, its 2 targets and 2 tasks were skipped; everything else applied.
    assert!(
        matches!(
            err,
            HandlerError::Incomplete {
                failed: 5,
                conflicts: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("ResourceLimitExceededException"),
        "{err}"
    );
    assert_eq!(baselines(emu).await.len(), 12);
    assert_eq!(windows(emu).await.len(), 1);

    let result = apply(&s).await;
    assert_eq!(result.counts.created, 1 + 2 + 2, "{:?}", result.plan);
    assert_eq!(windows(emu).await.len(), 2);
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_not_dropped() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (_stack, s) = syncer(emu).await;
    emu.inject_fault(&patchpilot_tests::Fault::new(
        "ssm",
        "DescribePatchBaselines",
        "ThrottlingException",
        2,
    ))
    .expect("fault");
    emu.reset_request_counts().expect("reset");
    let result = apply(&s).await;
    assert_eq!(result.counts.created, 46);
    let counts = emu.request_counts().expect("counts");
    assert_eq!(
        counts.get("ssm", "DescribePatchBaselines"),
        3,
        "two throttled attempts, then success"
    );
}

/// Without `ssm:CreatePatchBaseline` in its role, baseline-sync cannot create a baseline:
/// every create is denied and reported naming the action (Lambda `errorType`
/// AccessDenied), the registrations that need those baselines are skipped, and the changes
/// that do not need them (windows, their targets and tasks) are still applied.
#[tokio::test]
async fn without_create_patch_baseline_the_denial_is_reported_and_the_rest_applied() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let template =
        patchpilot_tests::template_without("BaselineSyncFunction", "ssm:CreatePatchBaseline");
    let stack = emu
        .deploy(&DeployStack {
            stack_name: STACK.to_string(),
            template_path: Some(template.display().to_string()),
            ..DeployStack::default()
        })
        .expect("stack without ssm:CreatePatchBaseline");
    let s = syncer_of(emu, &stack).await;
    emu.reset_request_counts().expect("reset counter");
    let err = handle(&s, json!({}))
        .await
        .expect_err("the baselines cannot be created");
    let requests = emu.request_counts().expect("request log");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            HandlerError::Incomplete {
                access_denied: 12,
                conflicts: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        text.contains("ssm:CreatePatchBaseline") && text.contains("12 denied by IAM"),
        "{text}"
    );
    let d: lambda_runtime::Diagnostic = err.into();
    assert_eq!(d.error_type, "AccessDenied", "{d:?}");
    assert!(d.error_message.contains("ssm:CreatePatchBaseline"), "{d:?}");

    // Each baseline was tried once and denied; nothing that needs one was attempted.
    assert_eq!(requests.get("ssm", "CreatePatchBaseline"), 12);
    assert_eq!(requests.get("ssm", "RegisterPatchBaselineForPatchGroup"), 0);
    assert!(baselines(emu).await.is_empty());
    // Windows, targets and tasks do not need a baseline: applied.
    assert_eq!(requests.get("ssm", "CreateMaintenanceWindow"), 2);
    assert_eq!(
        requests.get("ssm", "RegisterTargetWithMaintenanceWindow"),
        4
    );
    assert_eq!(requests.get("ssm", "RegisterTaskWithMaintenanceWindow"), 4);
    let w = windows(emu).await;
    assert_eq!(
        w.iter()
            .map(|w| w.name().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["patchpilot-prod", "patchpilot-test"]
    );
}
