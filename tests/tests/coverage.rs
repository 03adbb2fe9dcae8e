//! baseline-sync computes the fleet's coverage on every run, with its own role: each verdict
//! on a deployed stack, and a clear error when the role lacks a coverage read. With the
//! stack's `EnableDefaultHostManagement` opt-in it also turns Default Host Management on
//! (once: no write when the setting already holds the stack's role).

use baseline_sync::{handle, HandlerError, Syncer};
use patchpilot::aws::coverage_notice::NoticeOutcome;
use patchpilot::coverage::VerdictKind;
use patchpilot::settings::Settings;
use patchpilot::sync::SyncError;
use patchpilot_tests::{emulator, DeployStack, Emulator, SetManaged, Stack, STACK};
use serde_json::{json, Value};

async fn syncer_of(emu: &Emulator, stack: &Stack) -> Syncer {
    let f = stack.function("baseline-sync");
    Syncer::from_settings(
        &emu.function_config(f).await,
        Settings::from_map(&f.environment),
    )
}

#[tokio::test]
async fn every_sync_reports_each_hosts_coverage_verdict() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let stack = emu.deploy_stack(STACK).expect("stack");
    let syncer = syncer_of(emu, &stack).await;
    // Untagged: the sweep of the same run tags them (names end in -test).
    let covered = emu
        .launch_instance("amazon-linux-2", "web-test", &[])
        .await
        .expect("al2");
    let no_agent = emu
        .launch_instance("debian-12", "db-test", &[])
        .await
        .expect("debian");
    let al2023 = emu
        .launch_instance("amazon-linux-2023", "api-test", &[])
        .await
        .expect("al2023");
    let lost = emu
        .launch_instance("amazon-linux-2", "batch-test", &[])
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
    emu.reset_request_counts().expect("reset counter");

    let result = handle(&syncer, json!({})).await.expect("sync succeeds");
    let c = &result.coverage;
    assert_eq!(c.hosts, 5, "{c:#?}");
    for (kind, n) in [
        (VerdictKind::Covered, 1),
        (VerdictKind::NotManaged, 2),
        (VerdictKind::DefaultBaseline, 1),
        (VerdictKind::MissedWindow, 0),
        (VerdictKind::Unmatched, 0),
        (VerdictKind::Excluded, 1),
    ] {
        assert_eq!(c.count(kind), n, "{kind}: {c:#?}");
    }
    let verdict = |id: &str| {
        c.uncovered
            .iter()
            .find(|h| h.instance_id == id)
            .unwrap_or_else(|| panic!("{id} not reported: {c:#?}"))
    };
    assert!(!c.uncovered.iter().any(|h| h.instance_id == covered));
    assert_eq!(verdict(&no_agent).verdict, VerdictKind::NotManaged);
    assert!(
        verdict(&no_agent).message.contains("never registered"),
        "{c:#?}"
    );
    assert_eq!(verdict(&lost).verdict, VerdictKind::NotManaged);
    assert!(
        verdict(&lost)
            .message
            .contains("PingStatus ConnectionLost since 2026-01-02 03:04 UTC"),
        "{c:#?}"
    );
    assert_eq!(verdict(&al2023).verdict, VerdictKind::DefaultBaseline);
    assert!(
        verdict(&al2023)
            .message
            .contains("AMAZON_LINUX_2023, for which the policy has no baseline")
            && verdict(&al2023)
                .message
                .contains("the prod delay does not apply"),
        "{c:#?}"
    );
    assert_eq!(verdict(&excluded).verdict, VerdictKind::Excluded);
    assert_eq!(
        c.suggested_baselines,
        vec![patchpilot::policy::OperatingSystem::AmazonLinux2023]
    );
    // Part of the result JSON.
    let v = serde_json::to_value(&result).expect("result serialises");
    assert_eq!(v["coverage"]["counts"]["not-managed"], 2);
    assert_eq!(v["coverage"]["host_management"]["state"], "off");
    // The coverage reads: one page of each list, one default baseline and one patch-group
    // listing per OS on managed nodes (AL2, AL2023), one patch-state call.
    let counts = emu.request_counts().expect("request log");
    assert_eq!(counts.get("ssm", "GetDefaultPatchBaseline"), 2);
    assert_eq!(counts.get("ssm", "GetServiceSetting"), 1);
    assert_eq!(counts.get("ssm", "DescribeInstancePatchStates"), 1);
    // Not opted in to Default Host Management: the setting is left alone.
    assert_eq!(
        stack.env("baseline-sync", "DEFAULT_HOST_MANAGEMENT_ROLE"),
        ""
    );
    assert_eq!(counts.get("ssm", "UpdateServiceSetting"), 0);
}

async fn dhmc_setting(emu: &Emulator) -> String {
    emu.ssm()
        .await
        .get_service_setting()
        .setting_id(patchpilot::aws::coverage::DHMC_SETTING_ID)
        .send()
        .await
        .expect("GetServiceSetting")
        .service_setting()
        .and_then(|s| s.setting_value())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_default_host_management_opt_in_sets_the_setting_once() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let stack = emu
        .deploy(&DeployStack {
            stack_name: STACK.to_string(),
            parameters: [(
                "EnableDefaultHostManagement".to_string(),
                "true".to_string(),
            )]
            .into(),
            ..DeployStack::default()
        })
        .expect("stack with Default Host Management");
    let role = stack.env("baseline-sync", "DEFAULT_HOST_MANAGEMENT_ROLE");
    assert_eq!(role, stack.physical_id("DefaultHostManagementRole"));
    assert_eq!(
        dhmc_setting(emu).await,
        "$None",
        "off before the first sync"
    );
    let syncer = syncer_of(emu, &stack).await;

    // A dry run plans the change and writes nothing.
    let dry = handle(&syncer, json!({"dry_run": true}))
        .await
        .expect("dry run");
    let line = format!(
        "~ service setting /ssm/managed-instance/default-ec2-instance-management-role = {role} (was $None)"
    );
    assert!(dry.plan.contains(&line), "{:#?}", dry.plan);
    assert_eq!(dhmc_setting(emu).await, "$None");

    emu.reset_request_counts().expect("reset counter");
    let first = handle(&syncer, json!({})).await.expect("first sync");
    assert!(
        first.applied.iter().any(|a| a.line == line
            && matches!(
                a.outcome,
                patchpilot::aws::patching::Outcome::Applied { .. }
            )),
        "{:#?}",
        first.applied
    );
    assert_eq!(dhmc_setting(emu).await, role);
    assert_eq!(
        emu.request_counts()
            .expect("request log")
            .get("ssm", "UpdateServiceSetting"),
        1
    );
    // The coverage of the same run already sees it on.
    let v = serde_json::to_value(&first.coverage).expect("serialises");
    assert_eq!(v["host_management"]["state"], "on", "{v:#}");

    // Second run: the setting holds the role, nothing is written at all.
    emu.reset_request_counts().expect("reset counter");
    let second = handle(&syncer, json!({})).await.expect("second sync");
    assert!(!second.plan.iter().any(|l| l.contains("service setting")));
    let counts = emu.request_counts().expect("request log");
    assert_eq!(counts.get("ssm", "UpdateServiceSetting"), 0);
    assert_eq!(counts.write_count(), 0, "{:?}", counts.writes());
    assert_eq!(second.aws_calls.writes, 0);
}

#[tokio::test]
async fn a_role_without_a_coverage_read_fails_the_sync_naming_the_action() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let template =
        patchpilot_tests::template_without("BaselineSyncFunction", "ssm:GetServiceSetting");
    let stack = emu
        .deploy(&DeployStack {
            stack_name: STACK.to_string(),
            template_path: Some(template.display().to_string()),
            ..DeployStack::default()
        })
        .expect("stack without ssm:GetServiceSetting");
    let syncer = syncer_of(emu, &stack).await;
    let err = handle(&syncer, json!({}))
        .await
        .expect_err("the coverage cannot be read");
    assert!(
        matches!(err, HandlerError::Sync(SyncError::Coverage(_))),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("the changes were applied and the tags swept")
            && text.contains("permission denied: ssm:GetServiceSetting"),
        "{text}"
    );
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "AccessDenied");
}

/// An SQS queue subscribed to the stack's report topic (SNS envelope), as a mail reader.
async fn inbox(emu: &Emulator, stack: &Stack) -> String {
    emu.inbox(&stack.env("baseline-sync", "TOPIC_ARN"), "coverage-reader")
        .await
}

/// Every SNS envelope waiting in the queue (deleted after reading).
async fn deliveries(emu: &Emulator, queue_url: &str) -> Vec<Value> {
    emu.deliveries(queue_url).await
}

fn attribute(envelope: &Value, name: &str) -> String {
    envelope["MessageAttributes"][name]["Value"]
        .as_str()
        .unwrap_or_else(|| panic!("attribute {name} in {envelope}"))
        .to_string()
}

/// The JSON notice: SQS subscribers get the `default` member of a `MessageStructure=json`
/// message.
fn notice_json(envelope: &Value) -> Value {
    serde_json::from_str(envelope["Message"].as_str().expect("Message")).expect("notice JSON")
}

#[tokio::test]
async fn a_change_in_the_uncovered_hosts_is_published_once() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let stack = emu.deploy_stack(STACK).expect("stack");
    let syncer = syncer_of(emu, &stack).await;
    let queue = inbox(emu, &stack).await;
    emu.launch_instance("amazon-linux-2", "web-test", &[])
        .await
        .expect("al2");
    let lost = emu
        .launch_instance("amazon-linux-2", "batch-test", &[])
        .await
        .expect("lost");
    emu.set_managed(&SetManaged::connection_lost(&lost, "2026-01-02T03:04:05Z"))
        .expect("set-managed");

    // First sync: one message, from baseline-sync's own role through the topic policy.
    let result = handle(&syncer, json!({})).await.expect("sync");
    assert!(
        matches!(
            result.coverage_notice,
            Some(NoticeOutcome::Published { not_covered: 1, .. })
        ),
        "{:?}",
        result.coverage_notice
    );
    let got = deliveries(emu, &queue).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let m = &got[0];
    assert_eq!(m["Subject"], "[patchpilot] coverage: 1 host not covered");
    assert_eq!(attribute(m, "type"), "coverage");
    assert_eq!(attribute(m, "status"), "FAILED");
    assert_eq!(attribute(m, "failed_count"), "1");
    let environment: Vec<String> =
        serde_json::from_str(&attribute(m, "environment")).expect("String.Array");
    assert_eq!(environment, ["test", "prod"]);
    let n = notice_json(m);
    assert_eq!(n["uncovered"][0]["instance_id"], lost.as_str());
    assert!(
        n["uncovered"][0]["message"]
            .as_str()
            .is_some_and(|s| s.contains("PingStatus ConnectionLost since 2026-01-02 03:04 UTC")),
        "{n:#}"
    );
    // Remembered in the idempotency table.
    let item = emu
        .dynamodb()
        .await
        .get_item()
        .table_name(stack.env("baseline-sync", "IDEMPOTENCY_TABLE"))
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("coverage#{STACK}")),
        )
        .send()
        .await
        .expect("GetItem");
    let item = item.item().expect("coverage record");
    assert_eq!(
        item["hosts"].as_l().expect("list")[0]
            .as_s()
            .expect("string"),
        &format!("{lost} not-managed")
    );

    // Unchanged: nothing.
    let result = handle(&syncer, json!({})).await.expect("sync");
    assert_eq!(result.coverage_notice, Some(NoticeOutcome::Unchanged));
    assert!(deliveries(emu, &queue).await.is_empty());

    // The agent answers again: a dry run says nothing, the next sync says it once.
    emu.set_managed(&SetManaged {
        instance_id: lost.clone(),
        ping_status: Some("Online".to_string()),
        ..SetManaged::default()
    })
    .expect("online");
    let result = handle(&syncer, json!({"dry_run": true}))
        .await
        .expect("dry");
    assert_eq!(result.coverage_notice, Some(NoticeOutcome::DryRun));
    assert!(deliveries(emu, &queue).await.is_empty());
    handle(&syncer, json!({})).await.expect("sync");
    let got = deliveries(emu, &queue).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        got[0]["Subject"],
        "[patchpilot] coverage: every host covered again"
    );
    assert_eq!(attribute(&got[0], "status"), "SUCCESS");
    assert_eq!(notice_json(&got[0])["covered_again"][0], lost.as_str());
    handle(&syncer, json!({})).await.expect("sync");
    assert!(deliveries(emu, &queue).await.is_empty());
}

/// The two verdicts the first test's fleet cannot show: a host stopped through its
/// environment's last window (the schedule's last run came after its last patch operation, so
/// it missed that run), and a host that matches no environment (left untagged: `unmatched:
/// skip`).
#[tokio::test]
async fn a_host_stopped_through_its_window_and_an_unmatched_host_are_reported() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let stack = emu.deploy_stack(STACK).expect("stack");
    let syncer = syncer_of(emu, &stack).await;
    let stopped = emu
        .launch_instance(
            "rhel-9",
            "billing-prod",
            &[("Patch Group", "patch_prod_0600_batch_1")],
        )
        .await
        .expect("rhel");
    emu.ec2()
        .await
        .stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .expect("StopInstances");
    let unmatched = emu
        .launch_instance("amazon-linux-2", "scratch-box", &[])
        .await
        .expect("al2");
    let result = handle(&syncer, json!({})).await.expect("sync succeeds");
    let c = &result.coverage;
    assert_eq!(c.count(VerdictKind::MissedWindow), 1, "{c:#?}");
    assert_eq!(c.count(VerdictKind::Unmatched), 1, "{c:#?}");
    let host = |id: &str| {
        c.uncovered
            .iter()
            .find(|h| h.instance_id == id)
            .unwrap_or_else(|| panic!("{id} not reported: {c:#?}"))
    };
    assert_eq!(host(&stopped).verdict, VerdictKind::MissedWindow);
    assert!(host(&stopped).message.contains("missed that run"), "{c:#?}");
    assert_eq!(host(&unmatched).verdict, VerdictKind::Unmatched);
}
