//! run-notifier against the local AWS emulator: `template.yaml` is deployed into the emulator
//! and the handler runs with run-notifier's own key and environment, so every call it makes is
//! authorized against its role. The reference scenario's test window is created the way
//! baseline-sync creates it (this stack's marker, the stack's bucket and window role), run with
//! the emulator's execute-window hook (rate control, statuses, cutoff as AWS documents them),
//! and the handler is driven in-process with the payloads in `events/run-notifier/` (ids
//! swapped for the emulated run's). The report is read back through an SQS subscription of the
//! topic (SNS envelope, `RawMessageDelivery` false).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use aws_sdk_ssm::types::{
    MaintenanceWindowResourceType, MaintenanceWindowRunCommandParameters,
    MaintenanceWindowTaskInvocationParameters, MaintenanceWindowTaskType, Target,
};
use lambda_runtime::Diagnostic;
use patchpilot::aws::last_good::LastGoodStore;
use patchpilot::aws::policy_source::PolicySource;
use patchpilot::aws::runs::Runs;
use patchpilot::aws::CallLog;
use patchpilot::failure::{Classified, Retry};
use patchpilot::names::{self, PatchGroup, OWNERSHIP_TAG_KEY};
use patchpilot::policy::Policy;
use patchpilot::report::{Keep, RunReport, SNS_MAX_MESSAGE_BYTES};
use patchpilot::settings::Settings;
use patchpilot_tests::{
    ami, emulator, Emulator, ExecuteWindow, Fault, Outcome as HostOutcome, Stack, WindowRun,
    ACCOUNT_ID, REGION, STACK,
};
use run_notifier::{handle, invoke, HandlerError, Notifier, Outcome, Response};
use serde_json::Value;

const WINDOW_FAILED: &str = include_str!("../../events/run-notifier/window-execution-failed.json");
const WINDOW_SUCCESS: &str =
    include_str!("../../events/run-notifier/window-execution-success.json");
const COMMAND_SUCCESS: &str = include_str!("../../events/run-notifier/command-success.json");

/// Where baseline-sync points the test window's output: under the prefix the stack's bucket
/// policy lets instances write to.
const PREFIX: &str = "patchpilot/run-command/test";

/// The article's twelve hosts: (AMI catalogue key, name stem, batch).
const FLEET: [(&str, &str, u32); 6] = [
    ("amazon-linux-2", "amazon-linux", 1),
    ("centos-7", "centos-linux", 1),
    ("rhel-9", "redhat-linux", 1),
    ("sles-15", "suse-linux", 1),
    ("ubuntu-22.04", "ubuntu-linux", 1),
    ("windows-2022", "windows", 2),
];

struct Setup {
    notifier: Notifier,
    queue_url: String,
    /// Host name (`redhat-linux-test`) -> instance id.
    hosts: BTreeMap<String, String>,
    stack: Stack,
}

impl Setup {
    fn bucket(&self) -> &str {
        self.stack.physical_id("OutputBucket")
    }

    fn table(&self) -> String {
        self.stack.env("run-notifier", "IDEMPOTENCY_TABLE")
    }
}

/// How a test window's tasks are set up (the reference policy's batches unless changed).
#[derive(Clone)]
struct WindowSetup {
    /// Overrides every batch's MaxConcurrency / MaxErrors.
    rate: Option<(&'static str, &'static str)>,
    cutoff_behavior: Option<&'static str>,
    owned: bool,
    /// Output prefix (default [`PREFIX`], where the bucket policy lets instances write).
    prefix: &'static str,
}

impl WindowSetup {
    const REFERENCE: WindowSetup = WindowSetup {
        rate: None,
        cutoff_behavior: None,
        owned: true,
        prefix: PREFIX,
    };
}

fn group(env: &str, batch: u32) -> String {
    PatchGroup::new(env, (6, 0), batch).to_string()
}

async fn launch(emu: &Emulator, os: &str, count: i32, tags: &[(&str, &str)]) -> Vec<String> {
    let image = ami(os).expect("catalogue AMI");
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let out = emu
        .ec2()
        .await
        .run_instances()
        .image_id(&image.ami_id)
        .instance_type(InstanceType::T3Micro)
        .min_count(count)
        .max_count(count)
        .tag_specifications(spec.build())
        .send()
        .await
        .expect("RunInstances");
    out.instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

/// The stack (topic, table, bucket, policy parameter `embedded-default`), an SQS queue
/// subscribed to the topic (SNS envelope), and the notifier with run-notifier's own key and
/// environment.
async fn infrastructure(emu: &Emulator) -> (Notifier, String, Stack) {
    let stack = emu.deploy_stack(STACK).expect("deploy the stack");
    infrastructure_of(emu, stack).await
}

async fn infrastructure_of(emu: &Emulator, stack: Stack) -> (Notifier, String, Stack) {
    let queue_url = emu
        .inbox(&stack.env("run-notifier", "TOPIC_ARN"), "report-reader")
        .await;
    let function = stack.function("run-notifier");
    let notifier = Notifier::from_settings(
        &emu.function_config(function).await,
        Settings::from_map(&function.environment),
    )
    .expect("run-notifier's settings are complete");
    (notifier, queue_url, stack)
}

/// A maintenance window as baseline-sync creates it: derived names, this stack's ownership
/// marker, one target per batch named after its patch group, one AWS-RunPatchBaseline task per
/// batch with the batch number as priority, the stack's window role, and output to the stack's
/// bucket.
async fn create_window(
    emu: &Emulator,
    stack: &Stack,
    name: &str,
    env: &str,
    how: &WindowSetup,
) -> String {
    let ssm = emu.ssm().await;
    let mut create = ssm
        .create_maintenance_window()
        .name(name)
        .schedule("cron(0 6 ? * SAT#1 *)")
        .schedule_timezone("Europe/Zurich")
        .duration(4)
        .cutoff(1)
        .allow_unassociated_targets(false);
    if how.owned {
        create = create.tags(
            aws_sdk_ssm::types::Tag::builder()
                .key(OWNERSHIP_TAG_KEY)
                .value(&stack.stack_name)
                .build()
                .expect("tag"),
        );
    }
    let window_id = create
        .send()
        .await
        .expect("CreateMaintenanceWindow")
        .window_id()
        .expect("window id")
        .to_string();
    let policy = Policy::reference();
    for (k, batch) in policy.batches.iter().enumerate() {
        let number = u32::try_from(k + 1).expect("small");
        let g = PatchGroup::new(env, (6, 0), number);
        let target_id = ssm
            .register_target_with_maintenance_window()
            .window_id(&window_id)
            .resource_type(MaintenanceWindowResourceType::Instance)
            .name(names::target_name(&g))
            .targets(
                Target::builder()
                    .key(format!("tag:{}", policy.tag_key))
                    .values(g.to_string())
                    .build(),
            )
            .send()
            .await
            .expect("RegisterTargetWithMaintenanceWindow")
            .window_target_id()
            .expect("target id")
            .to_string();
        let run_command = MaintenanceWindowRunCommandParameters::builder()
            .parameters("Operation", vec![policy.operation.as_str().to_string()])
            .parameters("RebootOption", vec![batch.reboot.as_str().to_string()])
            .output_s3_bucket_name(stack.physical_id("OutputBucket"))
            .output_s3_key_prefix(how.prefix)
            .build();
        let (concurrency, errors) = how
            .rate
            .map(|(c, e)| (c.to_string(), e.to_string()))
            .unwrap_or_else(|| (batch.max_concurrency.clone(), batch.max_errors.clone()));
        let mut task = ssm
            .register_task_with_maintenance_window()
            .window_id(&window_id)
            .name(names::task_name(env, number, &batch.name))
            .task_arn("AWS-RunPatchBaseline")
            .task_type(MaintenanceWindowTaskType::RunCommand)
            .priority(i32::try_from(number).expect("small"))
            .service_role_arn(stack.env("baseline-sync", "MAINTENANCE_WINDOW_ROLE_ARN"))
            .max_concurrency(concurrency)
            .max_errors(errors);
        if let Some(behavior) = how.cutoff_behavior {
            task = task.cutoff_behavior(behavior.into());
        }
        task.targets(
            Target::builder()
                .key("WindowTargetIds")
                .values(target_id)
                .build(),
        )
        .task_invocation_parameters(
            MaintenanceWindowTaskInvocationParameters::builder()
                .run_command(run_command)
                .build(),
        )
        .send()
        .await
        .expect("RegisterTaskWithMaintenanceWindow");
    }
    window_id
}

/// The reference scenario: twelve hosts tagged as in the article, the test window, the topic.
async fn reference_scenario(emu: &Emulator) -> (Setup, String) {
    scenario(emu, &WindowSetup::REFERENCE).await
}

async fn scenario(emu: &Emulator, how: &WindowSetup) -> (Setup, String) {
    let stack = emu.deploy_stack(STACK).expect("deploy the stack");
    scenario_on(emu, how, stack).await
}

/// The scenario on an already deployed stack (e.g. one with a permission removed).
async fn scenario_on(emu: &Emulator, how: &WindowSetup, stack: Stack) -> (Setup, String) {
    let mut hosts = BTreeMap::new();
    for env in ["test", "prod"] {
        for (os, stem, batch) in FLEET {
            let name = format!("{stem}-{env}");
            let g = group(env, batch);
            let ids = launch(
                emu,
                os,
                1,
                &[("Name", &name), ("Patch Group", &g), ("Environment", env)],
            )
            .await;
            hosts.insert(name, ids[0].clone());
        }
    }
    let (notifier, queue_url, stack) = infrastructure_of(emu, stack).await;
    let window_id = create_window(emu, &stack, &names::window_name("test"), "test", how).await;
    (
        Setup {
            notifier,
            queue_url,
            hosts,
            stack,
        },
        window_id,
    )
}

/// `events/run-notifier/<file>` with the emulated run's window and execution ids.
fn window_event(template: &str, run: &WindowRun) -> Value {
    let mut event: Value = serde_json::from_str(template).expect("event file is JSON");
    event["detail"]["window-id"] = Value::String(run.window_id.clone());
    event["detail"]["window-execution-id"] = Value::String(run.window_execution_id.clone());
    event["resources"] = serde_json::json!([format!(
        "arn:aws:ssm:{REGION}:{ACCOUNT_ID}:maintenancewindow/{}",
        run.window_id
    )]);
    event
}

fn command_event(command_id: &str, instance_ids: &[String]) -> Value {
    let mut event: Value = serde_json::from_str(COMMAND_SUCCESS).expect("event file is JSON");
    event["detail"]["command-id"] = Value::String(command_id.to_string());
    event["resources"] = Value::Array(
        instance_ids
            .iter()
            .map(|i| Value::String(format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{i}")))
            .collect(),
    );
    event
}

fn deadline() -> SystemTime {
    SystemTime::now() + Duration::from_secs(120)
}

/// Every SNS envelope waiting in the queue (deleted after reading).
async fn deliveries(emu: &Emulator, queue_url: &str) -> Vec<Value> {
    emu.deliveries(queue_url).await
}

fn attribute<'a>(envelope: &'a Value, name: &str) -> (&'a str, &'a str) {
    let a = &envelope["MessageAttributes"][name];
    (
        a["Type"]
            .as_str()
            .unwrap_or_else(|| panic!("attribute {name} type")),
        a["Value"]
            .as_str()
            .unwrap_or_else(|| panic!("attribute {name} value")),
    )
}

/// The same report, gathered again through the shared adapters (for the email body, which
/// only email subscribers receive).
async fn regather(emu: &Emulator, run: &WindowRun) -> RunReport {
    let ssm = emu.ssm().await;
    let ec2 = emu.ec2().await;
    let calls = CallLog::new();
    let runs = Runs::new(&ssm, &ec2, &calls, "Patch Group");
    let window = runs.window(&run.window_id).await.expect("window");
    runs.window_report(&window, "test", &run.window_execution_id)
        .await
        .expect("report")
}

fn published(r: &Response) {
    assert_eq!(r.outcome, Outcome::Published, "{r:?}");
}

#[tokio::test]
async fn a_failed_windows_host_and_two_pending_reboots_make_exactly_one_clear_report() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let h = |name: &str| setup.hosts[name].clone();
    let run = emu
        .execute_window(&ExecuteWindow {
            fail_instances: vec![h("windows-test")],
            reboot_pending_instances: vec![h("redhat-linux-test"), h("suse-linux-test")],
            ..ExecuteWindow::new(&window_id)
        })
        .expect("execute window");
    assert_eq!(run.status, "FAILED");
    emu.reset_request_counts().expect("reset counter");

    let response = handle(
        &setup.notifier,
        window_event(WINDOW_FAILED, &run),
        deadline(),
    )
    .await
    .expect("handled");
    published(&response);
    let counts = emu.request_counts().expect("counter");
    let messages = deliveries(emu, &setup.queue_url).await;
    assert_eq!(messages.len(), 1, "exactly one report: {messages:#?}");
    let envelope = &messages[0];
    assert_eq!(envelope["Type"], "Notification");
    let subject = envelope["Subject"].as_str().expect("subject");
    assert_eq!(
        subject,
        "[patchpilot] test 06:00 - 5/6 patched, 1 failed, 2 need reboot"
    );
    assert!(subject.len() < 100 && subject.is_ascii());
    assert_eq!(attribute(envelope, "environment"), ("String", "test"));
    assert_eq!(attribute(envelope, "status"), ("String", "FAILED"));
    assert_eq!(attribute(envelope, "failed_count"), ("Number", "1"));

    // SQS subscribers get the `default` member: the JSON report.
    let report: Value =
        serde_json::from_str(envelope["Message"].as_str().expect("message")).expect("JSON report");
    assert_eq!(report["kind"], "window");
    assert_eq!(report["window_name"], "patchpilot-test");
    assert_eq!(report["execution_id"], run.window_execution_id.as_str());
    assert_eq!(report["status"], "FAILED");
    assert_eq!(report["run_status"], "FAILED");
    assert_eq!(
        report["counts"],
        serde_json::json!({"targets": 6, "patched": 5, "failed": 1, "reboot_pending": 2, "missed": 0})
    );
    let failed = &report["failed"][0];
    assert_eq!(failed["instance_id"], h("windows-test").as_str());
    assert_eq!(failed["name"], "windows-test");
    assert_eq!(failed["batch"], 2);
    assert_eq!(failed["response_code"], 1);
    // Links a browser can open: the S3 console page of the log object (the instance uploaded
    // it under the bucket policy), and the Run Command output page.
    let log = failed["log_url"].as_str().expect("log url");
    let bucket = setup.bucket();
    assert!(
        log.starts_with(&format!(
            "https://{REGION}.console.aws.amazon.com/s3/object/{bucket}?region={REGION}&bucketType=general&prefix={PREFIX}/"
        )) && log.contains(&h("windows-test"))
            && log.contains("PatchWindows/stdout"),
        "{log}"
    );
    let key = log.split("prefix=").nth(1).expect("key in the link");
    assert!(
        emu.s3_object(bucket, key)
            .expect("s3-object hook")
            .is_some_and(|body| body.contains("Failed")),
        "the log the link points at exists"
    );
    let output = failed["output_url"].as_str().expect("output url");
    assert_eq!(
        output,
        format!(
            "https://{REGION}.console.aws.amazon.com/systems-manager/run-command/{}/{}?region={REGION}",
            run.tasks[1].command_ids[0],
            h("windows-test")
        )
    );
    assert!(failed["patches"]["failed"].as_u64().is_some_and(|n| n > 0));
    let reboots: Vec<&str> = report["reboot_pending"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(reboots.len(), 2);
    assert!(reboots.contains(&"redhat-linux-test") && reboots.contains(&"suse-linux-test"));
    assert_eq!(report["patched"].as_array().map(Vec::len), Some(3));
    let batches: Vec<(u64, &str, &str)> = report["batches"]
        .as_array()
        .expect("batches")
        .iter()
        .map(|b| {
            (
                b["number"].as_u64().expect("number"),
                b["name"].as_str().expect("name"),
                b["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        batches,
        [
            (1, "patch_test_0600_batch_1", "SUCCESS"),
            (2, "patch_test_0600_batch_2", "FAILED")
        ]
    );
    assert_eq!(
        report["full_report"],
        format!("s3://{}/{PREFIX}/", setup.bucket())
    );

    // The email body (only email subscribers get it) of the same report.
    // test is the source of prod's promotion (the reference policy): a failed host and its
    // failed patches hold prod, and the report says so first.
    let promotion: Vec<String> = report["promotion"]
        .as_array()
        .expect("a promotion section")
        .iter()
        .map(|l| l.as_str().expect("a line").to_string())
        .collect();
    // (how many of the Windows host's patches fail is the emulator's draw: one or more)
    assert!(
        promotion.first().is_some_and(|l| l
            .starts_with("prod is held (scan only): 1/6 failed in test, ")
            && l.contains(" patch(es) failed to install; ")
            && l.ends_with(
                "it installs again after the next good test run or `patchpilot promote --force`"
            )),
        "{promotion:#?}"
    );
    // The rest of the report is what the run's own records say: gathered again without the
    // notifier (which adds the promotion), it is the same.
    let mut again = regather(emu, &run).await;
    again.promotion = promotion;
    // The footer names the policy the report was made with (the stack's parameter).
    let policy = report["policy"].as_str().unwrap_or_default().to_string();
    assert!(
        policy.starts_with("/patchpilot/policy version 1 (sha256 "),
        "{policy}"
    );
    again.policy = Some(policy);
    assert_eq!(
        serde_json::from_str::<Value>(&again.json(Keep::ALL)).expect("JSON"),
        report,
        "the regathered report is the published one"
    );
    let body = again.text_body(Keep::ALL);
    println!("{subject}\n\n{body}");
    assert!(
        body.contains("prod is held (scan only): 1/6 failed in test"),
        "{body}"
    );
    let at = |needle: &str| {
        body.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{body}"))
    };
    assert!(at("Result: 5/6 patched, 1 failed, 2 need reboot, 0 missed") < at("FAILED (1):"));
    assert!(at("FAILED (1):") < at("REBOOT PENDING (2):"));
    assert!(at("REBOOT PENDING (2):") < at("PATCHED (3):"));
    assert!(body.contains(&format!(
        "{} (windows-test) - batch 2: command Failed, exit code 1",
        h("windows-test")
    )));
    assert!(body.contains(&format!("    log in S3: {log}")));
    assert!(body.contains(&format!("    output: {output}")));
    assert!(
        !body.contains("s3.amazonaws.com") && !report.to_string().contains("s3.amazonaws.com"),
        "no bare S3 URL a browser cannot open"
    );

    // Cheap: no per-instance call outside the paginated lists.
    assert_eq!(counts.get("sns", "Publish"), 1);
    assert_eq!(counts.get("dynamodb", "PutItem"), 2, "claim + completed");
    assert_eq!(counts.get("ssm", "ListCommands"), 2, "one per command");
    assert_eq!(counts.get("ssm", "DescribeInstancePatchStates"), 1);
    assert_eq!(
        counts.get("ssm", "ListCommandInvocations"),
        3,
        "one page per command + one status-filtered page for the failure"
    );
    println!("AWS calls for the 12-instance fleet: {:?}", counts.counts);
    // Recording the promotion (test is prod's source): per host the run reached without
    // failing, its patch records (no Inventory: the titles carry the versions); then the
    // manifest, one override list per OS with something installed, and the state.
    let reached_ok = 5;
    assert_eq!(counts.get("ssm", "DescribeInstancePatches"), reached_ok);
    assert_eq!(counts.get("ssm", "ListInventoryEntries"), 0);
    let s3_puts = counts.starting_with("s3:PUT ");
    assert!(
        (2..=2 + reached_ok).contains(&s3_puts),
        "manifest, state and at most one list per host's OS: {:?}",
        counts.counts
    );
    // + one DescribeInstanceInformation for the hosts' OS (50 ids a call)
    let promotion = reached_ok + 1 + s3_puts;
    assert!(
        counts.total - promotion <= 20,
        "the report itself: {:?}",
        counts.counts
    );
}

#[tokio::test]
async fn a_duplicate_event_sends_nothing_more() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    let event = window_event(WINDOW_SUCCESS, &run);
    let first = handle(&setup.notifier, event.clone(), deadline())
        .await
        .expect("first delivery");
    published(&first);
    assert_eq!(deliveries(emu, &setup.queue_url).await.len(), 1);
    emu.reset_request_counts().expect("reset counter");

    let second = handle(&setup.notifier, event, deadline())
        .await
        .expect("second delivery");
    assert_eq!(second.outcome, Outcome::Duplicate);
    assert!(deliveries(emu, &setup.queue_url).await.is_empty());
    let counts = emu.request_counts().expect("counter");
    assert_eq!(counts.get("sns", "Publish"), 0);
    assert_eq!(
        counts.service_total("ssm"),
        2,
        "only the ownership check before the idempotency record: {:?}",
        counts.counts
    );
}

#[tokio::test]
async fn two_concurrent_deliveries_of_one_event_send_one_mail() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    let event = window_event(WINDOW_SUCCESS, &run);
    // EventBridge delivers at least once: the same event twice, at the same time. Both run
    // interleaved on this task, each request a real HTTP call to the emulator.
    let (a, b) = tokio::join!(
        handle(&setup.notifier, event.clone(), deadline()),
        handle(&setup.notifier, event.clone(), deadline())
    );
    let outcomes: Vec<String> = [&a, &b]
        .iter()
        .map(|r| match r {
            Ok(resp) => format!("{:?}", resp.outcome),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    let published_count = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(resp) if resp.outcome == Outcome::Published))
        .count();
    println!("concurrent deliveries: {outcomes:?}");
    assert_eq!(published_count, 1, "{outcomes:?}");
    // The other one saw the claim: a duplicate, or (claim still in progress) an error that
    // Lambda retries; the retry is a duplicate.
    for r in [a, b] {
        match r {
            Ok(resp) if resp.outcome == Outcome::Published => {}
            Ok(resp) => assert_eq!(resp.outcome, Outcome::Duplicate),
            Err(_) => {
                let retry = handle(&setup.notifier, event.clone(), deadline())
                    .await
                    .expect("the retry");
                assert_eq!(retry.outcome, Outcome::Duplicate);
            }
        }
    }
    assert_eq!(
        deliveries(emu, &setup.queue_url).await.len(),
        1,
        "exactly one mail: {outcomes:?}"
    );
}

#[tokio::test]
async fn a_report_in_progress_elsewhere_fails_so_the_delivery_is_retried() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    // Another invocation holds the claim (its Lambda deadline is in the future).
    use aws_sdk_dynamodb::types::AttributeValue;
    let until = chrono::Utc::now().timestamp() + 90;
    emu.dynamodb()
        .await
        .put_item()
        .table_name(setup.table())
        .item("id", AttributeValue::S(run.window_execution_id.clone()))
        .item("status", AttributeValue::S("IN_PROGRESS".into()))
        .item("expires_at", AttributeValue::N(until.to_string()))
        .send()
        .await
        .expect("PutItem");
    let err = handle(
        &setup.notifier,
        window_event(WINDOW_SUCCESS, &run),
        deadline(),
    )
    .await
    .expect_err("in progress elsewhere");
    assert!(matches!(err, HandlerError::InProgress { .. }), "{err}");
    assert_eq!(err.retry(), Retry::Transient);
    assert_eq!(Diagnostic::from(err).error_type, "ReportInProgress");
    assert!(deliveries(emu, &setup.queue_url).await.is_empty());

    // The other invocation crashed: once its claim expired, a retry reports the run.
    emu.dynamodb()
        .await
        .put_item()
        .table_name(setup.table())
        .item("id", AttributeValue::S(run.window_execution_id.clone()))
        .item("status", AttributeValue::S("IN_PROGRESS".into()))
        .item("expires_at", AttributeValue::N((until - 600).to_string()))
        .send()
        .await
        .expect("PutItem");
    let retry = handle(
        &setup.notifier,
        window_event(WINDOW_SUCCESS, &run),
        deadline(),
    )
    .await
    .expect("retry");
    published(&retry);
    assert_eq!(deliveries(emu, &setup.queue_url).await.len(), 1);
}

#[tokio::test]
async fn a_patch_now_command_outside_a_window_is_reported_and_a_window_command_is_not() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    // A window run first: its commands' events are left to the window's report.
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    let window_command = run.command_ids[0].clone();
    let ignored = handle(
        &setup.notifier,
        command_event(&window_command, &run.tasks[0].instance_ids),
        deadline(),
    )
    .await
    .expect("window command event");
    assert_eq!(ignored.outcome, Outcome::Ignored);
    assert!(
        ignored
            .reason
            .as_deref()
            .is_some_and(|r| r.contains(&run.window_execution_id)),
        "{ignored:?}"
    );

    // "Patch now" on prod batch 1, with one of its hosts stopped.
    let stopped = setup.hosts["centos-linux-prod"].clone();
    emu.ec2()
        .await
        .stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .expect("StopInstances");
    let ssm = emu.ssm().await;
    let sent = ssm
        .send_command()
        .document_name("AWS-RunPatchBaseline")
        .targets(
            Target::builder()
                .key("tag:Patch Group")
                .values(group("prod", 1))
                .build(),
        )
        .parameters("Operation", vec!["Install".to_string()])
        .parameters("RebootOption", vec!["RebootIfNeeded".to_string()])
        .output_s3_bucket_name(setup.bucket())
        .output_s3_key_prefix("patchpilot/run-command/patch-now")
        .send()
        .await
        .expect("SendCommand");
    let command_id = sent
        .command()
        .and_then(|c| c.command_id())
        .expect("command id")
        .to_string();
    let reached: Vec<String> = ["amazon-linux", "redhat-linux", "suse-linux", "ubuntu-linux"]
        .iter()
        .map(|s| setup.hosts[&format!("{s}-prod")].clone())
        .collect();
    let response = handle(
        &setup.notifier,
        command_event(&command_id, &reached),
        deadline(),
    )
    .await
    .expect("command event");
    published(&response);
    let messages = deliveries(emu, &setup.queue_url).await;
    assert_eq!(messages.len(), 1, "only the patch-now report");
    let envelope = &messages[0];
    assert_eq!(
        envelope["Subject"],
        "[patchpilot] prod patch now - 4/5 patched, 1 missed (TimedOut)",
        "a command that could not be delivered to every target ends Delivery Timed Out (SendCommand's MaxErrors defaults to 0)"
    );
    assert_eq!(attribute(envelope, "environment"), ("String", "prod"));
    assert_eq!(attribute(envelope, "status"), ("String", "FAILED"));
    assert_eq!(attribute(envelope, "failed_count"), ("Number", "0"));
    let report: Value =
        serde_json::from_str(envelope["Message"].as_str().expect("message")).expect("JSON");
    assert_eq!(report["kind"], "command");
    assert_eq!(report["command_id"], command_id.as_str());
    assert_eq!(report["missed"][0]["instance_id"], stopped.as_str());
    assert_eq!(report["missed"][0]["name"], "centos-linux-prod");
    assert_eq!(report["missed"][0]["reason"], "not-running");
    assert_eq!(report["missed"][0]["detail"], "stopped");
    assert_eq!(
        report["full_report"],
        format!(
            "s3://{}/patchpilot/run-command/patch-now/{command_id}/",
            setup.bucket()
        )
    );
}

#[tokio::test]
async fn a_malformed_event_is_a_clear_error_and_sends_nothing() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    let mut event = window_event(WINDOW_FAILED, &run);
    event["detail"]
        .as_object_mut()
        .expect("detail object")
        .remove("window-execution-id");
    let err = handle(&setup.notifier, event, deadline())
        .await
        .expect_err("malformed");
    let message = err.to_string();
    assert!(
        message.contains("Maintenance Window Execution State-change Notification")
            && message.contains("window-execution-id"),
        "{message}"
    );
    assert_eq!(err.retry(), Retry::Permanent);
    assert_eq!(Diagnostic::from(err).error_type, "MalformedEvent");
    let err = handle(
        &setup.notifier,
        serde_json::json!(["not", "an", "event"]),
        deadline(),
    )
    .await
    .expect_err("not an event");
    assert!(
        err.to_string().contains("not an EventBridge event"),
        "{err}"
    );
    assert!(deliveries(emu, &setup.queue_url).await.is_empty());
}

#[tokio::test]
async fn a_window_patchpilot_does_not_own_is_ignored() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, _) = reference_scenario(emu).await;
    let foreign = create_window(
        emu,
        &setup.stack,
        "db-maintenance",
        "test",
        &WindowSetup {
            owned: false,
            ..WindowSetup::REFERENCE
        },
    )
    .await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&foreign))
        .expect("execute window");
    emu.reset_request_counts().expect("reset counter");
    let response = handle(
        &setup.notifier,
        window_event(WINDOW_FAILED, &run),
        deadline(),
    )
    .await
    .expect("handled");
    assert_eq!(response.outcome, Outcome::Ignored);
    assert!(
        response
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("db-maintenance")
                && r.contains("not this stack's")
                && r.contains("no patchpilot:managed tag")),
        "{response:?}"
    );
    let counts = emu.request_counts().expect("counter");
    assert_eq!(counts.write_count(), 0, "{:?}", counts.counts);
    assert!(deliveries(emu, &setup.queue_url).await.is_empty());
}

#[tokio::test]
async fn five_thousand_instances_make_one_message_within_256_kb_from_paginated_calls() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    const FLEET_SIZE: usize = 5_000;
    let g = group("test", 1);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.extend(
            launch(
                emu,
                "amazon-linux-2",
                1000,
                &[("Patch Group", &g), ("Environment", "test")],
            )
            .await,
        );
    }
    assert_eq!(ids.len(), FLEET_SIZE);
    let (notifier, queue_url, stack) = infrastructure(emu).await;
    let window_id = create_window(
        emu,
        &stack,
        &names::window_name("test"),
        "test",
        &WindowSetup::REFERENCE,
    )
    .await;
    let fail: Vec<String> = ids.iter().step_by(500).cloned().collect();
    let reboot: Vec<String> = ids.iter().skip(3).step_by(100).cloned().collect();
    let run = emu
        .execute_window(&ExecuteWindow {
            fail_instances: fail.clone(),
            reboot_pending_instances: reboot.clone(),
            ..ExecuteWindow::new(&window_id)
        })
        .expect("execute window");
    emu.reset_request_counts().expect("reset counter");

    let response = handle(&notifier, window_event(WINDOW_FAILED, &run), deadline())
        .await
        .expect("handled");
    published(&response);
    let counts = emu.request_counts().expect("counter");
    let size = response.message_bytes.expect("size");
    assert!(size <= SNS_MAX_MESSAGE_BYTES, "{size} bytes");
    assert!(response.truncated);
    println!(
        "5,000 instances: message {size} bytes; AWS calls {} ({:?})",
        counts.total, counts.counts
    );

    let messages = deliveries(emu, &queue_url).await;
    assert_eq!(messages.len(), 1);
    let report: Value = serde_json::from_str(messages[0]["Message"].as_str().expect("message"))
        .expect("JSON report");
    assert_eq!(report["counts"]["targets"], FLEET_SIZE);
    assert_eq!(report["counts"]["failed"], fail.len());
    assert_eq!(report["failed"].as_array().map(Vec::len), Some(fail.len()));
    assert_eq!(
        report["reboot_pending"].as_array().map(Vec::len),
        Some(reboot.len())
    );
    let omitted = report["omitted"]["patched"].as_u64().expect("omitted");
    assert!(omitted > 0, "the success list was cut");
    assert_eq!(
        report["patched"].as_array().map(Vec::len).expect("patched") as u64 + omitted,
        (FLEET_SIZE - fail.len() - reboot.len()) as u64
    );

    // Paginated, and bounded by the fleet size / page size, not one call per instance.
    let lci = counts.get("ssm", "ListCommandInvocations");
    let dips = counts.get("ssm", "DescribeInstancePatchStates");
    assert!(
        (100..=102).contains(&lci),
        "ListCommandInvocations pages: {lci}"
    );
    assert!(
        (100..=101).contains(&dips),
        "DescribeInstancePatchStates: {dips}"
    );
    assert!(counts.get("ec2", "DescribeInstances") <= 6);
    // test is prod's source: the promotion reads, per host the run reached without failing,
    // its patch records (one page each: fewer than 100 records), no Inventory (the titles
    // carry the versions), the hosts' OS (50 ids per DescribeInstanceInformation), and
    // writes the manifest, its list and the state.
    let reached_ok = (FLEET_SIZE - fail.len()) as u64;
    assert_eq!(counts.get("ssm", "DescribeInstancePatches"), reached_ok);
    assert_eq!(counts.get("ssm", "ListInventoryEntries"), 0);
    let s3_puts = counts.starting_with("s3:PUT ");
    assert_eq!(
        s3_puts, 3,
        "manifest, AMAZON_LINUX_2.yaml, state: {:?}",
        counts.counts
    );
    let promotion = reached_ok + reached_ok.div_ceil(50) + s3_puts;
    assert!(
        counts.total - promotion <= 230,
        "the report itself: {:?}",
        counts.counts
    );
    let promotion_lines = report["promotion"].as_array().expect("promotion section");
    assert!(
        promotion_lines
            .first()
            .and_then(Value::as_str)
            .is_some_and(|l| l.starts_with("prod is held (scan only): 10/5000 failed in test, ")),
        "{promotion_lines:?}"
    );
    assert_eq!(
        promotion_lines.get(1).and_then(Value::as_str),
        Some("  AMAZON_LINUX_2: 3 patch(es) from 4990 host(s)"),
        "one manifest entry per (package, version), however many hosts installed it"
    );

    // The email body carries the explicit marker pointing at the full output.
    let again = regather(emu, &run).await;
    let message = again
        .fit("[patchpilot]", SNS_MAX_MESSAGE_BYTES)
        .expect("fits");
    assert!(
        message.text.contains(&format!(
            "… and {omitted} more (full report: s3://{}/{PREFIX}/{}/)",
            stack.physical_id("OutputBucket"),
            run.command_ids[0]
        )),
        "marker missing"
    );
}

// ------------------------------------------------------------------------------------------
// What AWS records when a run is cut short or cannot reach a host ("Understanding command
// statuses", "Run commands at scale", CutoffBehavior), as the emulator now produces it.
// ------------------------------------------------------------------------------------------

/// The one report published for `run`: (subject, JSON report, email body). Whatever the run,
/// the subject's counts are the body's and the JSON's.
async fn the_report(emu: &Emulator, setup: &Setup, run: &WindowRun) -> (String, Value, String) {
    let mut event = window_event(WINDOW_FAILED, run);
    event["detail"]["status"] = Value::String(run.status.clone());
    let response = handle(&setup.notifier, event, deadline())
        .await
        .expect("handled");
    published(&response);
    let messages = deliveries(emu, &setup.queue_url).await;
    assert_eq!(messages.len(), 1, "exactly one report: {messages:#?}");
    let subject = messages[0]["Subject"]
        .as_str()
        .expect("subject")
        .to_string();
    let report: Value = serde_json::from_str(messages[0]["Message"].as_str().expect("message"))
        .expect("JSON report");
    let body = regather(emu, run).await.text_body(Keep::ALL);
    println!("{subject}\n\n{body}");
    let c = &report["counts"];
    let n = |k: &str| c[k].as_u64().expect("count");
    assert!(
        subject.contains(&format!("{}/{} patched", n("patched"), n("targets"))),
        "{subject} vs {c}"
    );
    assert!(
        body.contains(&format!(
            "Result: {}/{} patched, {} failed, {} need reboot, {} missed",
            n("patched"),
            n("targets"),
            n("failed"),
            n("reboot_pending"),
            n("missed")
        )),
        "{body}"
    );
    for (key, word) in [
        ("failed", "failed"),
        ("reboot_pending", "need reboot"),
        ("missed", "missed"),
    ] {
        assert_eq!(
            subject.contains(&format!(", {} {word}", n(key))),
            n(key) > 0,
            "{subject}"
        );
    }
    (subject, report, body)
}

/// The test Linux hosts in the order Run Command sends to them (sorted ids).
fn linux_test_hosts(setup: &Setup) -> Vec<String> {
    let mut ids: Vec<String> = FLEET
        .iter()
        .filter(|(_, _, batch)| *batch == 1)
        .map(|(_, stem, _)| setup.hosts[&format!("{stem}-test")].clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn incomplete_and_failed_commands_are_told_apart() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    // MaxErrors 2: one failure leaves the command Incomplete, two make it Failed.
    let (setup, window_id) = scenario(
        emu,
        &WindowSetup {
            rate: Some(("50%", "2")),
            ..WindowSetup::REFERENCE
        },
    )
    .await;
    let linux = linux_test_hosts(&setup);
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id).with(&linux[0], HostOutcome::failed(2)))
        .expect("execute window");
    let (subject, report, body) = the_report(emu, &setup, &run).await;
    assert_eq!(subject, "[patchpilot] test 06:00 - 5/6 patched, 1 failed");
    assert!(
        body.contains("1. patch_test_0600_batch_1: FAILED - command Incomplete: 1 error(s), 0 not delivered, below the error threshold MaxErrors 2"),
        "{body}"
    );
    // The API has no Incomplete status: Status Failed, StatusDetails Incomplete.
    assert_eq!(report["batches"][0]["command_statuses"][0], "Incomplete");
    assert_eq!(report["failed"][0]["patches"]["failed"], 2);

    let run = emu
        .execute_window(
            &ExecuteWindow::new(&window_id)
                .with(&linux[0], HostOutcome::failed(1))
                .with(&linux[1], HostOutcome::failed(1)),
        )
        .expect("execute window");
    let (_, _, body) = the_report(emu, &setup, &run).await;
    assert!(
        body.contains("1. patch_test_0600_batch_1: FAILED - command Failed: error threshold MaxErrors 2 reached, 2 error(s)"),
        "{body}"
    );
}

#[tokio::test]
async fn hosts_never_attempted_after_the_error_threshold_are_reported_as_such() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    // One at a time, no error allowed: Run Command stops after the first failure.
    let (setup, window_id) = scenario(
        emu,
        &WindowSetup {
            rate: Some(("1", "0")),
            ..WindowSetup::REFERENCE
        },
    )
    .await;
    let linux = linux_test_hosts(&setup);
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id).with(&linux[1], HostOutcome::failed(1)))
        .expect("execute window");
    let results: BTreeMap<&str, &str> = run.tasks[0]
        .instance_results
        .iter()
        .map(|r| (r.instance_id.as_str(), r.status_details.as_str()))
        .collect();
    assert_eq!(
        linux
            .iter()
            .map(|i| results[i.as_str()])
            .collect::<Vec<_>>(),
        [
            "Success",
            "Failed",
            "Terminated",
            "Terminated",
            "Terminated"
        ]
    );
    let (subject, report, body) = the_report(emu, &setup, &run).await;
    assert_eq!(
        subject,
        "[patchpilot] test 06:00 - 2/6 patched, 1 failed, 3 missed"
    );
    assert_eq!(
        body.matches("not attempted (error threshold reached)")
            .count(),
        3,
        "{body}"
    );
    assert!(
        body.contains("1. patch_test_0600_batch_1: FAILED - command Failed: error threshold MaxErrors 0 reached, 1 error(s), 3 instance(s) not attempted"),
        "{body}"
    );
    // The Windows batch still ran.
    assert!(
        body.contains("2. patch_test_0600_batch_2: SUCCESS"),
        "{body}"
    );
    let reasons: Vec<&str> = report["missed"]
        .as_array()
        .expect("missed")
        .iter()
        .filter_map(|m| m["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["not-attempted"; 3]);
}

#[tokio::test]
async fn stopped_and_unreachable_hosts_are_missed_with_the_reason_and_the_time() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let stopped = setup.hosts["centos-linux-test"].clone();
    let offline = setup.hosts["suse-linux-test"].clone();
    let run = emu
        .execute_window(
            &ExecuteWindow::new(&window_id)
                .with(&stopped, HostOutcome::STOPPED)
                .with(&offline, HostOutcome::UNREACHABLE),
        )
        .expect("execute window");
    let details: BTreeMap<&str, &str> = run.tasks[0]
        .instance_results
        .iter()
        .map(|r| (r.instance_id.as_str(), r.status_details.as_str()))
        .collect();
    // AWS tries them: a stopped node's command times out undelivered, an agent that lost its
    // connection makes it undeliverable; neither counts against MaxErrors.
    assert_eq!(details[stopped.as_str()], "DeliveryTimedOut");
    assert_eq!(details[offline.as_str()], "Undeliverable");
    let (subject, report, body) = the_report(emu, &setup, &run).await;
    assert_eq!(subject, "[patchpilot] test 06:00 - 4/6 patched, 2 missed");
    let missed: BTreeMap<&str, &Value> = report["missed"]
        .as_array()
        .expect("missed")
        .iter()
        .map(|m| (m["instance_id"].as_str().expect("id"), m))
        .collect();
    assert_eq!(missed[stopped.as_str()]["reason"], "not-running");
    assert_eq!(missed[stopped.as_str()]["detail"], "stopped");
    assert_eq!(missed[offline.as_str()]["reason"], "offline");
    assert_eq!(missed[offline.as_str()]["detail"], "ConnectionLost");
    for m in missed.values() {
        assert!(m["at"].is_string(), "a time for {m}");
    }
    assert!(
        body.contains(&format!(
            "{stopped} (centos-linux-test) in patch_test_0600_batch_1: stopped through the window and missed that run ("
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "{offline} (suse-linux-test) in patch_test_0600_batch_1: not managed by SSM right now: PingStatus ConnectionLost since "
        )),
        "{body}"
    );
    assert_eq!(report["batches"][0]["status"], "FAILED");
}

#[tokio::test]
async fn a_batch_whose_target_selects_no_instance_says_so() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    // The only test Windows host is gone: batch 2's target selects nobody.
    emu.ec2()
        .await
        .terminate_instances()
        .instance_ids(&setup.hosts["windows-test"])
        .send()
        .await
        .expect("TerminateInstances");
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    assert_eq!(run.tasks[1].status, "FAILED", "{:?}", run.tasks[1]);
    let (subject, _, body) = the_report(emu, &setup, &run).await;
    assert_eq!(subject, "[patchpilot] test 06:00 - 5/5 patched");
    assert!(
        body.contains("2. patch_test_0600_batch_2: FAILED - no instance selected: its target matched no managed instance, nothing was patched"),
        "{body}"
    );
}

#[tokio::test]
async fn tasks_cancelled_at_the_cutoff_and_batches_never_started_are_reported() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    // CANCEL_TASK: at the cutoff (Duration 4 h - Cutoff 1 h) running invocations are cancelled.
    let (setup, window_id) = scenario(
        emu,
        &WindowSetup {
            cutoff_behavior: Some("CANCEL_TASK"),
            ..WindowSetup::REFERENCE
        },
    )
    .await;
    let mut request = ExecuteWindow::new(&window_id);
    for id in linux_test_hosts(&setup) {
        request = request.with(&id, HostOutcome::slow(200));
    }
    let run = emu.execute_window(&request).expect("execute window");
    assert_eq!(run.status, "TIMED_OUT", "{run:?}");
    let (subject, report, body) = the_report(emu, &setup, &run).await;
    assert!(subject.ends_with("(TIMED_OUT)"), "{subject}");
    assert_eq!(report["counts"]["patched"], 0, "{report}");
    assert!(
        body.contains("the window's Duration ended before every task finished"),
        "{body}"
    );
    assert!(
        body.contains(
            "cancelled before it finished (the window's cutoff with CutoffBehavior CANCEL_TASK"
        ),
        "{body}"
    );
    assert!(
        body.contains("2. patch_test_0600_batch_2: TIMED_OUT - not started: the window reached its cutoff before this batch began"),
        "{body}"
    );
}

#[tokio::test]
async fn a_window_that_overruns_its_duration_ends_timed_out_and_says_so() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let slow = setup.hosts["ubuntu-linux-test"].clone();
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id).with(&slow, HostOutcome::slow(300)))
        .expect("execute window");
    assert_eq!(run.status, "TIMED_OUT");
    let (subject, _, body) = the_report(emu, &setup, &run).await;
    assert!(subject.ends_with("(TIMED_OUT)"), "{subject}");
    assert!(
        body.contains("the window's Duration ended before every task finished"),
        "{body}"
    );
}

/// run-notifier with one permission less: the report cannot be published, the invocation
/// fails with AccessDenied naming the action (so Lambda retries and the alarm fires), and the
/// idempotency claim is released for the retry.
#[tokio::test]
async fn without_sns_publish_the_report_fails_with_access_denied_naming_it() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let path = patchpilot_tests::template_without("RunNotifierFunction", "sns:Publish");
    let stack = emu
        .deploy(&patchpilot_tests::DeployStack {
            stack_name: STACK.into(),
            template_path: Some(path.display().to_string()),
            ..Default::default()
        })
        .expect("deploy the stack without sns:Publish");
    let (setup, window_id) = scenario_on(emu, &WindowSetup::REFERENCE, stack).await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    let err = handle(
        &setup.notifier,
        window_event(WINDOW_SUCCESS, &run),
        deadline(),
    )
    .await
    .expect_err("publishing is denied");
    let message = err.to_string();
    assert!(
        message.contains("sns:Publish") || message.contains("SNS:Publish"),
        "{message}"
    );
    assert!(message.contains("permission denied"), "{message}");
    // The same role is denied on every retry: permanent (logged, counted), not retried.
    assert_eq!(err.retry(), Retry::Permanent);
    assert_eq!(Diagnostic::from(err).error_type, "AccessDenied");
    assert!(deliveries(emu, &setup.queue_url).await.is_empty());
}

/// A policy whose output prefix lies outside what the stack's bucket policy grants: the agents
/// cannot upload their logs (their instance profile, AmazonSSMManagedInstanceCore, has no S3
/// write). The run report says the logs are missing and why, instead of linking to nothing.
#[tokio::test]
async fn logs_the_instances_could_not_upload_are_reported_missing_with_the_reason() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = scenario(
        emu,
        &WindowSetup {
            prefix: "team-logs/patching",
            ..WindowSetup::REFERENCE
        },
    )
    .await;
    let run = emu
        .execute_window(
            &ExecuteWindow::new(&window_id)
                .with(&setup.hosts["windows-test"], HostOutcome::failed(1)),
        )
        .expect("execute window");
    let (_, report, body) = the_report(emu, &setup, &run).await;
    assert!(
        body.contains(
            "Logs: 6 instance log(s) missing in S3 - the instance could not upload it to"
        ),
        "{body}"
    );
    assert!(
        body.contains("is not authorized to perform: s3:PutObject"),
        "{body}"
    );
    assert!(
        body.contains("    log in S3: missing - the instance could not upload it to"),
        "{body}"
    );
    assert!(report["failed"][0]["log_url"].is_null());
    assert!(report["failed"][0]["log_missing"]
        .as_str()
        .is_some_and(|m| m.contains("AccessDenied")));
}

/// Two deliveries of one run's event at the same time (EventBridge delivers at least once):
/// exactly one mail. The loser is told the run is in progress (transient: Lambda retries it)
/// or finds it completed; its retry sends nothing.
#[tokio::test]
async fn concurrent_duplicate_deliveries_send_exactly_one_mail() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    let event = window_event(WINDOW_SUCCESS, &run);
    let (a, b) = tokio::join!(
        handle(&setup.notifier, event.clone(), deadline()),
        handle(&setup.notifier, event.clone(), deadline())
    );
    let outcomes = [&a, &b];
    let published_count = outcomes
        .iter()
        .filter(|r| matches!(r, Ok(r) if r.outcome == Outcome::Published))
        .count();
    assert_eq!(published_count, 1, "{a:?} / {b:?}");
    for r in outcomes {
        match r {
            Ok(r) => assert!(
                matches!(r.outcome, Outcome::Published | Outcome::Duplicate),
                "{r:?}"
            ),
            Err(e) => assert_eq!(e.retry(), Retry::Transient, "{e}"),
        }
    }
    // Lambda's retry of the loser.
    let retry = handle(&setup.notifier, event, deadline())
        .await
        .expect("retry");
    assert_eq!(retry.outcome, Outcome::Duplicate);
    assert_eq!(deliveries(emu, &setup.queue_url).await.len(), 1);
}

/// S3 throttles the promotion record on every attempt the SDK makes (`SlowDown` 503, five
/// times): a transient failure. The invocation fails (Lambda retries it) instead of
/// publishing a report that says the promotion was NOT recorded; the run's claim is
/// released, and the retry records the promotion and sends the one, complete report.
#[tokio::test]
async fn a_throttled_promotion_record_fails_the_invocation_and_the_retry_sends_the_whole_report() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    // S3 requests are logged by method and path (path-style: the endpoint is an IP address).
    let state = format!(
        "PUT /{}/patchpilot/promotion/prod/state.json",
        setup.bucket()
    );
    emu.inject_fault(&Fault {
        status: Some(503),
        message: Some("Please reduce your request rate.".to_string()),
        ..Fault::new("s3", &state, "SlowDown", 5)
    })
    .expect("inject fault");
    let event = window_event(WINDOW_SUCCESS, &run);
    let err = handle(&setup.notifier, event.clone(), deadline())
        .await
        .expect_err("the record is throttled");
    assert_eq!(err.retry(), Retry::Transient, "{err}");
    assert!(err.to_string().contains("SlowDown"), "{err}");
    let failed = invoke(&setup.notifier, event.clone(), deadline()).await;
    assert!(failed.is_ok(), "the fault was used up: {failed:?}");
    let messages = deliveries(emu, &setup.queue_url).await;
    assert_eq!(messages.len(), 1, "only the retry published");
    let report: Value =
        serde_json::from_str(messages[0]["Message"].as_str().expect("message")).expect("JSON");
    let promotion: Vec<&str> = report["promotion"]
        .as_array()
        .expect("a promotion section")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        promotion
            .first()
            .is_some_and(|l| l.starts_with("prod installs manifest ")),
        "{promotion:#?}"
    );
    assert!(!promotion.iter().any(|l| l.contains("NOT recorded")));
    // A later delivery of the same event is a duplicate.
    let again = handle(&setup.notifier, event, deadline())
        .await
        .expect("duplicate");
    assert_eq!(again.outcome, Outcome::Duplicate);
    assert!(deliveries(emu, &setup.queue_url).await.is_empty());
}

/// The window was deleted before its execution's event was handled
/// (`DoesNotExistException`): every retry would fail the same way, so the invocation logs
/// `RunGone`, counts it, and ends without error — no retries, no dead letter.
#[tokio::test]
async fn a_window_that_no_longer_exists_is_a_permanent_failure() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    emu.ssm()
        .await
        .delete_maintenance_window()
        .window_id(&window_id)
        .send()
        .await
        .expect("DeleteMaintenanceWindow");
    let event = window_event(WINDOW_SUCCESS, &run);
    let err = handle(&setup.notifier, event.clone(), deadline())
        .await
        .expect_err("the window is gone");
    assert!(err.to_string().contains("DoesNotExistException"), "{err}");
    assert_eq!(err.error_type(), "RunGone");
    assert_eq!(err.retry(), Retry::Permanent);
    let answer = invoke(&setup.notifier, event, deadline())
        .await
        .expect("permanent: the invocation succeeds");
    assert_eq!(answer["errorType"], "RunGone", "{answer}");
    assert_eq!(answer["retried"], false);
    assert!(deliveries(emu, &setup.queue_url).await.is_empty());
}

/// The policy parameter turns invalid between the run and its event: the report is still
/// published, made with the last known good policy baseline-sync stored, and its footer says
/// so (parameter, version, hash).
#[tokio::test]
async fn an_invalid_policy_parameter_still_reports_on_the_last_known_good_policy() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (setup, window_id) = reference_scenario(emu).await;
    let stack = &setup.stack;
    let sync = stack.function("baseline-sync");
    let sync_config = emu.function_config(sync).await;
    let sync_settings = Settings::from_map(&sync.environment);
    let good = PolicySource::from_settings(aws_sdk_ssm::Client::new(&sync_config), &sync_settings)
        .fetch(&CallLog::new())
        .await
        .expect("valid policy");
    LastGoodStore::new(
        aws_sdk_dynamodb::Client::new(&sync_config),
        &setup.table(),
        &sync_settings.owner,
    )
    .remember(&good.stored(), &CallLog::new())
    .await
    .expect("stored by baseline-sync");
    emu.ssm()
        .await
        .put_parameter()
        .name(stack.env("run-notifier", "POLICY_PARAMETER"))
        .value("environments: [{name: test}]\n")
        .overwrite(true)
        .send()
        .await
        .expect("put an invalid policy");
    // A cold notifier: it reads the parameter now.
    let function = stack.function("run-notifier");
    let notifier = Notifier::from_settings(
        &emu.function_config(function).await,
        Settings::from_map(&function.environment),
    )
    .expect("run-notifier's settings are complete");
    let run = emu
        .execute_window(&ExecuteWindow::new(&window_id))
        .expect("execute window");
    let response = handle(&notifier, window_event(WINDOW_SUCCESS, &run), deadline())
        .await
        .expect("reported on the last known good policy");
    published(&response);
    let messages = deliveries(emu, &setup.queue_url).await;
    assert_eq!(messages.len(), 1);
    let report: Value = serde_json::from_str(messages[0]["Message"].as_str().expect("message"))
        .expect("JSON report");
    let policy = report["policy"].as_str().unwrap_or_default();
    let short = &good.sha256[..12];
    for part in [
        "/patchpilot/policy version 1",
        short,
        "the last known good policy",
    ] {
        assert!(policy.contains(part), "missing {part}: {policy}");
    }
}
