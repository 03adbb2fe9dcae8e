//! The auto-tagger against the local AWS emulator: template.yaml is deployed, the handler is
//! built from the function's settings and driven in-process with the payloads in
//! `events/auto-tagger/` (ids swapped for the emulator's), every request signed with the
//! function's own key (the emulator enforces its role), and the AWS requests are counted by
//! the emulator. The fleet sweep runs as baseline-sync, which runs it in production. The
//! administrator key only sets up fixtures (instances, other people's tags) and reads back.

use std::collections::BTreeMap;
use std::time::Duration;

use auto_tagger::{handle, invoke, Tagger};
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use lambda_runtime::Diagnostic;
use patchpilot::aws::ec2::{Ec2Fleet, NotFoundRetry};
use patchpilot::aws::last_good::LastGoodStore;
use patchpilot::aws::managed::ManagedInstances;
use patchpilot::aws::policy_source::PolicySource;
use patchpilot::aws::CallLog;
use patchpilot::classify::InstanceFacts;
use patchpilot::failure::{Classified, Retry};
use patchpilot::fleet::{sweep, Action, FleetAdapters, FleetError, InstancePort, Page};
use patchpilot::names::Owner;
use patchpilot::policy::Policy;
use patchpilot::settings::Settings;
use patchpilot_tests::{
    ami, emulator, DeployStack, Emulator, Fault, ManagedInstance, Stack, ACCOUNT_ID, REGION, STACK,
};
use serde_json::Value;

const RUNNING: &str = include_str!("../../events/auto-tagger/ec2-state-running.json");
const PENDING: &str = include_str!("../../events/auto-tagger/ec2-state-pending.json");
const TAG_CHANGE: &str = include_str!("../../events/auto-tagger/tag-change-environment.json");
const TAG_EXCLUDE: &str = include_str!("../../events/auto-tagger/tag-change-exclude.json");
const REGISTRATION: &str =
    include_str!("../../events/auto-tagger/managed-instance-registration.json");

/// Short NotFound backoff so the retry tests take milliseconds.
const FAST_RETRY: NotFoundRetry = NotFoundRetry {
    attempts: 4,
    initial_delay: Duration::from_millis(10),
    max_delay: Duration::from_millis(40),
};

/// The deployed stack's function `name`: its settings (its environment as template.yaml
/// resolves it) and the SDK configuration signed with its own key, so every request is
/// authorized against its role.
async fn function(emu: &Emulator, stack: &Stack, name: &str) -> (SdkConfig, Settings) {
    let f = stack.function(name);
    (
        emu.function_config(f).await,
        Settings::from_map(&f.environment),
    )
}

/// Fleet adapters over `config`, with the short NotFound backoff.
fn adapters(config: &SdkConfig) -> FleetAdapters<Ec2Fleet, ManagedInstances> {
    FleetAdapters {
        ec2: Ec2Fleet::new(config).with_not_found_retry(FAST_RETRY),
        managed: ManagedInstances::new(config).with_not_found_retry(FAST_RETRY),
    }
}

/// Deploys stack `name` and builds its auto-tagger as Lambda does
/// (`Tagger::from_settings`), warm: the policy parameter has been read once, and the
/// request counter is zeroed after that read.
async fn deployed_tagger(emu: &Emulator, name: &str) -> (Stack, Tagger) {
    let stack = emu.deploy_stack(name).expect("stack");
    let (config, settings) = function(emu, &stack, "auto-tagger").await;
    let mut tagger = Tagger::from_settings(&config, settings);
    tagger.fleet = adapters(&config);
    tagger
        .policy
        .get(&CallLog::new())
        .await
        .expect("the stack's policy parameter is readable by the auto-tagger");
    emu.reset_request_counts().expect("reset counter");
    (stack, tagger)
}

async fn tagger(emu: &Emulator) -> Tagger {
    deployed_tagger(emu, STACK).await.1
}

/// What the fleet sweep runs with in production: baseline-sync's key and settings, and
/// the policy read from the stack's parameter with that key.
struct Sweeper {
    policy: Policy,
    owner: Owner,
    adapters: FleetAdapters<Ec2Fleet, ManagedInstances>,
}

async fn sweeper(emu: &Emulator) -> Sweeper {
    let stack = emu.deploy_stack(STACK).expect("stack");
    let (config, settings) = function(emu, &stack, "baseline-sync").await;
    let loaded = PolicySource::from_settings(aws_sdk_ssm::Client::new(&config), &settings)
        .fetch(&CallLog::new())
        .await
        .expect("the stack's policy parameter is readable by baseline-sync");
    assert_eq!(loaded.policy, Policy::reference(), "embedded-default");
    Sweeper {
        policy: loaded.policy,
        owner: settings.owner,
        adapters: adapters(&config),
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("event file is JSON")
}

fn instance_arn(id: &str) -> Value {
    Value::String(format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{id}"))
}

/// The documented `running` event, for `ids` (the first in `detail`, all in `resources`).
fn running_event(ids: &[&str]) -> Value {
    let mut event = json(RUNNING);
    event["detail"]["instance-id"] = Value::String(ids[0].to_string());
    event["resources"] = Value::Array(ids.iter().map(|id| instance_arn(id)).collect());
    event
}

async fn tags_of(emu: &Emulator, id: &str) -> BTreeMap<String, String> {
    let out = emu
        .ec2()
        .await
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.tags())
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

fn counts(emu: &Emulator) -> patchpilot_tests::RequestCounts {
    emu.request_counts().expect("request counter")
}

#[tokio::test]
async fn the_articles_12_instances_each_get_the_articles_patch_group() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let oses = [
        ("windows-2022", "windows"),
        ("rhel-9", "redhat-linux"),
        ("ubuntu-22.04", "ubuntu-linux"),
        ("amazon-linux-2", "amazon-linux"),
        ("centos-7", "centos-linux"),
        ("sles-15", "suse-linux"),
    ];
    let mut fleet = Vec::new();
    for env in ["Test", "Prod"] {
        for (os, name) in oses {
            let name = format!("i-{name}-{}", env.to_lowercase());
            let id = emu
                .launch_instance(os, &name, &[("Environment", env)])
                .await
                .expect("launch");
            let batch = if os.starts_with("windows") { 2 } else { 1 };
            let group = format!("patch_{}_0600_batch_{batch}", env.to_lowercase());
            fleet.push((id, name, group));
        }
    }
    emu.reset_request_counts().expect("reset counter");
    for (id, name, group) in &fleet {
        let response = handle(&tagger, running_event(&[id])).await.expect(name);
        assert_eq!(response.results.len(), 1, "{response:?}");
        let r = &response.results[0];
        assert_eq!(r.action, Action::Tagged, "{name}: {r:?}");
        assert_eq!(r.patch_group.as_deref(), Some(group.as_str()), "{name}");
        // One describe, one write, whatever the OS: the platform is in DescribeInstances.
        let calls = &response.aws_calls.by_operation;
        assert_eq!(calls.get("DescribeInstances"), Some(&1), "{name}");
        assert_eq!(calls.get("CreateTags"), Some(&1), "{name}");
        assert_eq!(calls.len(), 2, "{name}: {calls:?}");
    }
    let requests = counts(emu);
    assert_eq!(requests.get("ec2", "CreateTags"), 12);
    assert_eq!(requests.get("ec2", "DescribeInstances"), 12);
    assert_eq!(requests.get("ec2", "DescribeImages"), 0);
    for (id, name, group) in &fleet {
        let tags = tags_of(emu, id).await;
        assert_eq!(tags.get("Patch Group"), Some(group), "{name}");
        assert_eq!(
            tags.get("patchpilot:managed").map(String::as_str),
            Some("patchpilot"),
            "{name}"
        );
    }
}

/// DESIGN §6: ≤ 1 describe + ≤ 1 write per event. Amazon Linux 2, Ubuntu and CentOS AMIs
/// report only `PlatformDetails` `Linux/UNIX`; that is enough for the Linux batch, so the
/// first event of such a launch costs exactly one DescribeInstances and one CreateTags, and
/// no DescribeImages.
#[tokio::test]
async fn a_linux_unix_launch_costs_one_describe_and_one_write() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    for os in ["amazon-linux-2", "ubuntu-22.04", "centos-7"] {
        let id = emu
            .launch_instance(os, &format!("{os}-test"), &[])
            .await
            .expect("launch");
        emu.reset_request_counts().expect("reset counter");
        let response = handle(&tagger, running_event(&[&id])).await.expect(os);
        let r = &response.results[0];
        assert_eq!(r.action, Action::Tagged, "{os}: {r:?}");
        assert_eq!(
            r.patch_group.as_deref(),
            Some("patch_test_0600_batch_1"),
            "{os}"
        );
        let requests = counts(emu);
        assert_eq!(requests.get("ec2", "DescribeInstances"), 1, "{os}");
        assert_eq!(requests.get("ec2", "CreateTags"), 1, "{os}");
        assert_eq!(requests.get("ec2", "DescribeImages"), 0, "{os}");
        assert_eq!(requests.total, 2, "{os}: {:?}", requests.counts);
        assert_eq!(
            response.aws_calls.by_operation,
            [
                ("CreateTags".to_string(), 1),
                ("DescribeInstances".to_string(), 1)
            ]
            .into_iter()
            .collect(),
            "{os}"
        );
    }
}

#[tokio::test]
async fn several_instances_in_one_event_cost_one_describe_and_one_write_per_patch_group() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let a = emu
        .launch_instance("amazon-linux-2", "web-1-test", &[])
        .await
        .expect("launch");
    let b = emu
        .launch_instance("ubuntu-22.04", "web-2-test", &[])
        .await
        .expect("launch");
    let c = emu
        .launch_instance("windows-2022", "app-1-prod", &[])
        .await
        .expect("launch");
    emu.reset_request_counts().expect("reset counter");
    let response = handle(&tagger, running_event(&[&a, &b, &c]))
        .await
        .expect("handled");
    assert_eq!(response.results.len(), 3);
    assert!(response.results.iter().all(|r| r.action == Action::Tagged));
    let requests = counts(emu);
    assert_eq!(requests.get("ec2", "DescribeInstances"), 1);
    assert_eq!(requests.get("ec2", "DescribeImages"), 0);
    assert_eq!(
        requests.get("ec2", "CreateTags"),
        2,
        "one per distinct value"
    );
    assert_eq!(
        tags_of(emu, &b)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_test_0600_batch_1")
    );
    assert_eq!(
        tags_of(emu, &c)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_prod_0600_batch_2")
    );
}

#[tokio::test]
async fn a_second_event_for_the_same_instance_makes_zero_write_calls() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .launch_instance("centos-7", "db-test", &[])
        .await
        .expect("launch");
    let mut pending = json(PENDING);
    pending["detail"]["instance-id"] = Value::String(id.clone());
    pending["resources"] = Value::Array(vec![instance_arn(&id)]);
    let first = handle(&tagger, pending).await.expect("pending handled");
    assert_eq!(first.results[0].action, Action::Tagged);

    emu.reset_request_counts().expect("reset counter");
    let second = handle(&tagger, running_event(&[&id]))
        .await
        .expect("running handled");
    assert_eq!(second.results[0].action, Action::Unchanged);
    let requests = counts(emu);
    assert_eq!(requests.write_count(), 0, "{:?}", requests.writes());
    assert_eq!(requests.get("ec2", "DescribeInstances"), 1);
    assert_eq!(second.aws_calls.writes, 0);
}

#[tokio::test]
async fn an_instance_whose_environment_tag_changes_moves_group() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .launch_instance("amazon-linux-2", "web-01", &[("Environment", "test")])
        .await
        .expect("launch");
    handle(&tagger, running_event(&[&id]))
        .await
        .expect("launch handled");
    assert_eq!(
        tags_of(emu, &id)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_test_0600_batch_1")
    );

    // Someone re-tags the instance prod; EventBridge sends the documented tag-change event.
    emu.ec2()
        .await
        .create_tags()
        .resources(&id)
        .tags(Tag::builder().key("Environment").value("prod").build())
        .send()
        .await
        .expect("re-tag");
    emu.reset_request_counts().expect("reset counter");
    let mut event = json(TAG_CHANGE);
    event["resources"] = Value::Array(vec![instance_arn(&id)]);
    let response = handle(&tagger, event).await.expect("tag change handled");
    assert_eq!(response.results[0].action, Action::Tagged);
    assert_eq!(
        tags_of(emu, &id)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_prod_0600_batch_1")
    );
    assert_eq!(counts(emu).get("ec2", "CreateTags"), 1);
}

#[tokio::test]
async fn a_manual_patch_group_tag_is_kept() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .launch_instance(
            "rhel-9",
            "db-prod",
            &[("Environment", "prod"), ("Patch Group", "dba-special")],
        )
        .await
        .expect("launch");
    emu.reset_request_counts().expect("reset counter");
    let response = handle(&tagger, running_event(&[&id]))
        .await
        .expect("handled");
    let r = &response.results[0];
    assert_eq!(r.action, Action::RespectedManual);
    let reason = r.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("dba-special") && reason.contains("patch_prod_0600_batch_1"),
        "{reason}"
    );
    assert_eq!(counts(emu).write_count(), 0);
    assert_eq!(
        tags_of(emu, &id)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("dba-special")
    );
}

#[tokio::test]
async fn an_excluded_instance_is_skipped_with_the_reason() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .launch_instance(
            "sles-15",
            "legacy-prod",
            &[("patchpilot:exclude", "patched by the vendor")],
        )
        .await
        .expect("launch");
    emu.reset_request_counts().expect("reset counter");
    let response = handle(&tagger, running_event(&[&id]))
        .await
        .expect("handled");
    let r = &response.results[0];
    assert_eq!(r.action, Action::Excluded);
    assert!(
        r.reason
            .as_deref()
            .is_some_and(|s| s.contains("patched by the vendor")),
        "{r:?}"
    );
    assert_eq!(counts(emu).write_count(), 0);
    assert!(!tags_of(emu, &id).await.contains_key("Patch Group"));
}

#[tokio::test]
async fn not_found_right_after_launch_is_retried_then_tagged() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .launch_instance("windows-2022", "app-test", &[])
        .await
        .expect("launch");
    emu.inject_fault(&Fault::new(
        "ec2",
        "DescribeInstances",
        "InvalidInstanceID.NotFound",
        2,
    ))
    .expect("fault");
    emu.reset_request_counts().expect("reset counter");
    let response = handle(&tagger, running_event(&[&id]))
        .await
        .expect("handled");
    assert_eq!(response.results[0].action, Action::Tagged);
    assert_eq!(counts(emu).get("ec2", "DescribeInstances"), 3);
    assert_eq!(
        tags_of(emu, &id)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_test_0600_batch_2")
    );
}

#[tokio::test]
async fn an_instance_ec2_never_sees_fails_the_invocation_for_eventbridge_to_retry() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    emu.inject_fault(&Fault::new(
        "ec2",
        "DescribeInstances",
        "InvalidInstanceID.NotFound",
        10,
    ))
    .expect("fault");
    let err = handle(&tagger, running_event(&["i-0aaaaaaaaaaaaaaaa"]))
        .await
        .expect_err("never visible");
    let text = err.to_string();
    assert!(
        text.contains("i-0aaaaaaaaaaaaaaaa") && text.contains("4 DescribeInstances attempts"),
        "{text}"
    );
    // Transient: Lambda retries the event, and dead-letters it only after that.
    assert_eq!(err.retry(), Retry::Transient);
    assert_eq!(Diagnostic::from(err).error_type, "InstanceNotVisible");
    assert_eq!(counts(emu).get("ec2", "DescribeInstances"), 4);
}

#[tokio::test]
async fn a_terminated_instance_is_gone_and_not_tagged() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .launch_instance("ubuntu-22.04", "tmp-test", &[])
        .await
        .expect("launch");
    emu.ec2()
        .await
        .terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("terminate");
    emu.reset_request_counts().expect("reset counter");
    let response = handle(&tagger, running_event(&[&id]))
        .await
        .expect("handled");
    assert_eq!(response.results[0].action, Action::Gone);
    assert_eq!(counts(emu).write_count(), 0);
}

#[tokio::test]
async fn a_malformed_event_gives_a_clear_error_and_touches_nothing() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let mut event = json(RUNNING);
    event["detail"] = serde_json::json!({"state": "running"});
    let err = handle(&tagger, event).await.expect_err("no instance id");
    let text = err.to_string();
    assert!(
        text.contains("EC2 Instance State-change Notification") && text.contains("instance-id"),
        "{text}"
    );
    assert_eq!(Diagnostic::from(err).error_type, "MalformedEvent");

    let mut event = json(RUNNING);
    event["detail-type"] = Value::String("EC2 Spot Instance Interruption Warning".to_string());
    let err = handle(&tagger, event)
        .await
        .expect_err("unknown detail-type");
    assert!(
        err.to_string()
            .contains("EC2 Spot Instance Interruption Warning"),
        "{err}"
    );
    assert_eq!(err.retry(), Retry::Permanent, "the same event fails again");
    assert_eq!(Diagnostic::from(err).error_type, "UnsupportedEvent");
    assert_eq!(counts(emu).total, 0);
}

#[tokio::test]
async fn an_on_prem_managed_instance_is_tagged_through_ssm() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .register_managed_instance(&ManagedInstance {
            platform_type: "Linux".to_string(),
            platform_name: "Ubuntu".to_string(),
            platform_version: "22.04".to_string(),
            name: Some("db-onprem-prod".to_string()),
            tags: BTreeMap::new(),
        })
        .expect("register");
    let mut event = json(REGISTRATION);
    event["resources"] = Value::Array(vec![Value::String(format!(
        "arn:aws:ssm:{REGION}:{ACCOUNT_ID}:managed-instance/{id}"
    ))]);
    event["detail"]["instance-id"] = Value::String(id.clone());
    emu.reset_request_counts().expect("reset counter");
    let response = handle(&tagger, event).await.expect("handled");
    let r = &response.results[0];
    assert_eq!(r.action, Action::Tagged, "{r:?}");
    assert_eq!(r.patch_group.as_deref(), Some("patch_prod_0600_batch_1"));
    let requests = counts(emu);
    assert_eq!(requests.get("ssm", "AddTagsToResource"), 1);
    assert_eq!(requests.get("ec2", "CreateTags"), 0);
    let tags = emu
        .ssm()
        .await
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::ManagedInstance)
        .resource_id(&id)
        .send()
        .await
        .expect("ListTagsForResource");
    let tags: BTreeMap<&str, &str> = tags
        .tag_list()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags.get("Patch Group"), Some(&"patch_prod_0600_batch_1"));
    assert_eq!(tags.get("patchpilot:managed"), Some(&"patchpilot"));
}

/// `count` instances of `os` in one RunInstances call, all with `tags`.
async fn launch_many(emu: &Emulator, os: &str, count: i32, tags: &[(&str, &str)]) {
    let image = ami(os).expect("catalogue AMI");
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    emu.ec2()
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
}

#[tokio::test]
async fn the_sweep_tags_2000_untagged_instances_with_at_most_4_create_tags_calls() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    for _ in 0..2 {
        launch_many(emu, "amazon-linux-2", 500, &[("Environment", "test")]).await;
        launch_many(emu, "windows-2022", 500, &[("Environment", "prod")]).await;
    }
    let Sweeper {
        policy,
        owner,
        adapters,
    } = sweeper(emu).await;

    emu.reset_request_counts().expect("reset counter");
    let calls = CallLog::new();
    let dry = sweep(&policy, &owner, &adapters, &calls, true)
        .await
        .expect("dry run");
    assert_eq!(dry.count(Action::WouldTag), 2000);
    assert_eq!(counts(emu).write_count(), 0, "a dry run writes nothing");

    emu.reset_request_counts().expect("reset counter");
    let calls = CallLog::new();
    let report = sweep(&policy, &owner, &adapters, &calls, false)
        .await
        .expect("sweep");
    assert_eq!(report.instances, 2000);
    assert_eq!(report.count(Action::Tagged), 2000);
    let requests = counts(emu);
    let create_tags = requests.get("ec2", "CreateTags");
    // Two patch groups of 1000 instances: one call each (the bound is 4 = 2 values × ≤ 1000
    // ids per call; the sweep groups across pages, so it needs only 2).
    assert_eq!(create_tags, 2, "{create_tags} CreateTags calls");
    assert_eq!(requests.write_count(), create_tags);
    assert_eq!(report.write_calls() as u64, create_tags);
    let by_group: BTreeMap<&str, usize> = report.writes.iter().fold(BTreeMap::new(), |mut m, w| {
        *m.entry(w.patch_group.as_deref().unwrap_or_default())
            .or_default() += w.instance_ids.len();
        m
    });
    assert_eq!(by_group.get("patch_test_0600_batch_1"), Some(&1000));
    assert_eq!(by_group.get("patch_prod_0600_batch_2"), Some(&1000));
    let json = serde_json::to_value(&report).expect("report serialises");
    assert_eq!(json["counts"]["tagged"], 2000);
    let sample = &report.writes[0].instance_ids[0];
    let tags = tags_of(emu, sample).await;
    assert_eq!(
        tags.get("Patch Group"),
        report.writes[0].patch_group.as_ref()
    );
    assert_eq!(
        tags.get("patchpilot:managed").map(String::as_str),
        Some("patchpilot")
    );

    emu.reset_request_counts().expect("reset counter");
    let calls = CallLog::new();
    let again = sweep(&policy, &owner, &adapters, &calls, false)
        .await
        .expect("second sweep");
    assert_eq!(again.count(Action::Unchanged), 2000);
    assert_eq!(counts(emu).write_count(), 0, "second sweep writes nothing");
    assert_eq!(calls.summary().writes, 0);
}

/// The documented tag-change event of an operator adding `patchpilot:exclude`, for `id`.
fn exclude_event(id: &str) -> Value {
    let mut event = json(TAG_EXCLUDE);
    event["resources"] = Value::Array(vec![instance_arn(id)]);
    event
}

async fn add_tag(emu: &Emulator, id: &str, key: &str, value: &str) {
    emu.ec2()
        .await
        .create_tags()
        .resources(id)
        .tags(Tag::builder().key(key).value(value).build())
        .send()
        .await
        .expect("CreateTags by the operator");
}

#[tokio::test]
async fn excluding_a_host_patchpilot_tagged_removes_its_patch_group() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .launch_instance("amazon-linux-2", "web-01-prod", &[("Environment", "prod")])
        .await
        .expect("launch");
    let launched = handle(&tagger, running_event(&[&id]))
        .await
        .expect("launch handled");
    assert_eq!(launched.results[0].action, Action::Tagged);
    let tags = tags_of(emu, &id).await;
    assert_eq!(
        tags.get("Patch Group").map(String::as_str),
        Some("patch_prod_0600_batch_1")
    );
    assert_eq!(
        tags.get("patchpilot:managed").map(String::as_str),
        Some("patchpilot")
    );

    // The operator excludes the fragile host; EventBridge delivers the tag-change event.
    add_tag(emu, &id, "patchpilot:exclude", "fragile, patched by hand").await;
    emu.reset_request_counts().expect("reset counter");
    let response = handle(&tagger, exclude_event(&id))
        .await
        .expect("exclusion handled");
    // Counted before the checks below, which read the tags through the emulator too.
    let requests = counts(emu);
    assert_eq!(requests.get("ec2", "DeleteTags"), 1);
    // One EC2 write; the tag change's claim in the idempotency table is the other write.
    assert_eq!(requests.write_count(), 2, "{:?}", requests.writes());
    assert_eq!(requests.get("dynamodb", "PutItem"), 1);
    assert_eq!(requests.get("ec2", "DescribeInstances"), 1);
    assert_eq!(response.aws_calls.by_operation.get("DeleteTags"), Some(&1));
    let r = &response.results[0];
    assert_eq!(r.action, Action::Untagged, "{r:?}");
    let reason = r.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("patch_prod_0600_batch_1") && reason.contains("fragile"),
        "{reason}"
    );
    let tags = tags_of(emu, &id).await;
    assert!(!tags.contains_key("Patch Group"), "{tags:?}");
    assert!(!tags.contains_key("patchpilot:managed"), "{tags:?}");
    // Only patchpilot's keys went: the operator's tags stay.
    assert_eq!(
        tags.get("patchpilot:exclude").map(String::as_str),
        Some("fragile, patched by hand")
    );
    assert_eq!(tags.get("Environment").map(String::as_str), Some("prod"));
    assert_eq!(tags.get("Name").map(String::as_str), Some("web-01-prod"));

    // The same event again (EventBridge delivers at least once): nothing left to remove.
    emu.reset_request_counts().expect("reset counter");
    let again = handle(&tagger, exclude_event(&id))
        .await
        .expect("repeat handled");
    assert_eq!(again.results[0].action, Action::Excluded);
    let requests = counts(emu);
    assert_eq!(
        requests.write_count() - requests.get("dynamodb", "PutItem"),
        0,
        "only the claim: {:?}",
        requests.writes()
    );
    assert_eq!(again.aws_calls.by_operation.get("DeleteTags"), None);

    // A launch-type event (reboot, restart) does not tag it again either.
    emu.reset_request_counts().expect("reset counter");
    let restarted = handle(&tagger, running_event(&[&id]))
        .await
        .expect("running handled");
    assert_eq!(restarted.results[0].action, Action::Excluded);
    assert_eq!(counts(emu).write_count(), 0);
}

#[tokio::test]
async fn a_manual_patch_group_tag_on_an_excluded_host_is_kept_and_reported() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let id = emu
        .launch_instance(
            "rhel-9",
            "db-01-prod",
            &[("Environment", "prod"), ("Patch Group", "dba-special")],
        )
        .await
        .expect("launch");
    add_tag(emu, &id, "patchpilot:exclude", "fragile").await;
    emu.reset_request_counts().expect("reset counter");
    let response = handle(&tagger, exclude_event(&id))
        .await
        .expect("exclusion handled");
    let r = &response.results[0];
    assert_eq!(r.action, Action::Excluded, "{r:?}");
    let reason = r.reason.clone().unwrap_or_default();
    for part in [
        "dba-special",
        "set by a person",
        "remove it by hand to stop patching",
    ] {
        assert!(reason.contains(part), "missing {part}: {reason}");
    }
    let requests = counts(emu);
    assert_eq!(
        requests.write_count(),
        requests.get("dynamodb", "PutItem"),
        "only the tag change's claim: {:?}",
        requests.writes()
    );
    assert_eq!(
        tags_of(emu, &id)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("dba-special")
    );
}

async fn managed_tags(emu: &Emulator, id: &str) -> BTreeMap<String, String> {
    emu.ssm()
        .await
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::ManagedInstance)
        .resource_id(id)
        .send()
        .await
        .expect("ListTagsForResource")
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

#[tokio::test]
async fn the_sweep_untags_excluded_hosts_patchpilot_tagged() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let web = emu
        .launch_instance("amazon-linux-2", "web-01-test", &[])
        .await
        .expect("launch");
    let app = emu
        .launch_instance("windows-2022", "app-01-prod", &[])
        .await
        .expect("launch");
    let kept = emu
        .launch_instance("ubuntu-22.04", "build-test", &[])
        .await
        .expect("launch");
    let manual = emu
        .launch_instance(
            "rhel-9",
            "db-01-prod",
            &[
                ("Patch Group", "dba-special"),
                ("patchpilot:exclude", "yes"),
            ],
        )
        .await
        .expect("launch");
    let node = emu
        .register_managed_instance(&ManagedInstance {
            platform_type: "Linux".to_string(),
            platform_name: "Ubuntu".to_string(),
            platform_version: "22.04".to_string(),
            name: Some("db-onprem-test".to_string()),
            tags: BTreeMap::new(),
        })
        .expect("register");
    let Sweeper {
        policy,
        owner,
        adapters,
    } = sweeper(emu).await;
    let first = sweep(&policy, &owner, &adapters, &CallLog::new(), false)
        .await
        .expect("first sweep");
    assert_eq!(first.count(Action::Tagged), 4, "{first:?}");

    // Two EC2 hosts (different patch groups) and the on-prem node are excluded.
    add_tag(emu, &web, "patchpilot:exclude", "fragile").await;
    add_tag(emu, &app, "patchpilot:exclude", "vendor patches it").await;
    emu.ssm()
        .await
        .add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::ManagedInstance)
        .resource_id(&node)
        .tags(
            aws_sdk_ssm::types::Tag::builder()
                .key("patchpilot:exclude")
                .value("yes")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("exclude the node");

    emu.reset_request_counts().expect("reset counter");
    let dry = sweep(&policy, &owner, &adapters, &CallLog::new(), true)
        .await
        .expect("dry run");
    assert_eq!(dry.count(Action::WouldUntag), 3, "{dry:?}");
    assert_eq!(counts(emu).write_count(), 0, "a dry run writes nothing");

    emu.reset_request_counts().expect("reset counter");
    let calls = CallLog::new();
    let report = sweep(&policy, &owner, &adapters, &calls, false)
        .await
        .expect("sweep");
    assert_eq!(report.count(Action::Untagged), 3, "{report:?}");
    assert_eq!(report.count(Action::Excluded), 1);
    assert_eq!(report.count(Action::Unchanged), 1);
    let requests = counts(emu);
    assert_eq!(
        requests.get("ec2", "DeleteTags"),
        1,
        "both EC2 hosts in one call"
    );
    assert_eq!(requests.get("ssm", "RemoveTagsFromResource"), 1);
    assert_eq!(requests.write_count(), 2, "{:?}", requests.writes());
    let json = serde_json::to_value(&report).expect("report serialises");
    assert_eq!(json["counts"]["untagged"], 3);
    assert_eq!(json["writes"][0]["operation"], "delete");
    let manual_reason = report
        .attention
        .iter()
        .find(|o| o.instance_id == manual)
        .and_then(|o| o.reason.clone())
        .unwrap_or_default();
    assert!(
        manual_reason.contains("remove it by hand"),
        "{manual_reason}"
    );

    for id in [&web, &app] {
        let tags = tags_of(emu, id).await;
        assert!(!tags.contains_key("Patch Group"), "{id}: {tags:?}");
        assert!(!tags.contains_key("patchpilot:managed"), "{id}: {tags:?}");
        assert!(tags.contains_key("patchpilot:exclude"), "{id}: {tags:?}");
    }
    let node_tags = managed_tags(emu, &node).await;
    assert!(!node_tags.contains_key("Patch Group"), "{node_tags:?}");
    assert!(
        !node_tags.contains_key("patchpilot:managed"),
        "{node_tags:?}"
    );
    assert_eq!(
        tags_of(emu, &kept)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_test_0600_batch_1")
    );
    assert_eq!(
        tags_of(emu, &manual)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("dba-special")
    );

    emu.reset_request_counts().expect("reset counter");
    let again = sweep(&policy, &owner, &adapters, &CallLog::new(), false)
        .await
        .expect("second sweep");
    assert_eq!(again.count(Action::Excluded), 4);
    assert_eq!(counts(emu).write_count(), 0, "second sweep writes nothing");
}

/// Without `ec2:CreateTags` in its role the auto-tagger cannot tag a launch: the error is
/// AccessDenied naming the action, a permanent failure (the same role is denied again on a
/// retry): logged, counted in the PermanentFailures metric and not retried; the instance has
/// no Patch Group tag.
#[tokio::test]
async fn without_create_tags_a_launch_fails_as_access_denied_naming_the_action() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let template = patchpilot_tests::template_without("AutoTaggerFunction", "ec2:CreateTags");
    let stack = emu
        .deploy(&DeployStack {
            stack_name: STACK.to_string(),
            template_path: Some(template.display().to_string()),
            ..DeployStack::default()
        })
        .expect("stack without ec2:CreateTags");
    let (config, settings) = function(emu, &stack, "auto-tagger").await;
    let mut tagger = Tagger::from_settings(&config, settings);
    tagger.fleet = adapters(&config);
    let id = emu
        .launch_instance("amazon-linux-2", "web-01-test", &[("Environment", "test")])
        .await
        .expect("launch");
    emu.reset_request_counts().expect("reset counter");
    let err = handle(&tagger, running_event(&[&id]))
        .await
        .expect_err("tagging is denied");
    let text = err.to_string();
    assert!(
        text.contains("ec2:CreateTags") && text.contains(&id),
        "{text}"
    );
    let requests = counts(emu);
    assert_eq!(
        requests.get("ec2", "CreateTags"),
        1,
        "{:?}",
        requests.counts
    );
    assert_eq!(err.retry(), Retry::Permanent);
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "AccessDenied", "{diagnostic:?}");
    assert!(
        diagnostic.error_message.contains("ec2:CreateTags"),
        "{diagnostic:?}"
    );
    let tags = tags_of(emu, &id).await;
    assert!(!tags.contains_key("Patch Group"), "{tags:?}");
    assert!(!tags.contains_key("patchpilot:managed"), "{tags:?}");
}

/// EC2 as eventual consistency can show it right after a tag change: every
/// `DescribeInstances` answers the instance's real facts but the tags of `snapshot` (taken
/// before the change); the first answer comes `first_delay` late. Writes go to the emulator.
struct StaleReads {
    inner: Ec2Fleet,
    snapshot: BTreeMap<String, String>,
    first_delay: std::sync::Mutex<Option<Duration>>,
}

impl InstancePort for StaleReads {
    async fn describe(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> Result<Vec<InstanceFacts>, FleetError> {
        let delay = self
            .first_delay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut facts = self.inner.describe(ids, calls).await?;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        for f in &mut facts {
            f.tags = self.snapshot.clone();
            f.name = self.snapshot.get("Name").cloned();
        }
        Ok(facts)
    }
    async fn page(&self, token: Option<String>, calls: &CallLog) -> Result<Page, FleetError> {
        self.inner.page(token, calls).await
    }
    async fn create_tags(
        &self,
        ids: &[String],
        tags: &[(String, String)],
        calls: &CallLog,
    ) -> Result<(), FleetError> {
        self.inner.create_tags(ids, tags, calls).await
    }
    async fn delete_tags(
        &self,
        ids: &[String],
        keys: &[String],
        calls: &CallLog,
    ) -> Result<(), FleetError> {
        self.inner.delete_tags(ids, keys, calls).await
    }
}

/// The documented tag-change event of `id` with `tags` as `detail.tags`, at `time`.
fn tag_change_event(id: &str, event_id: &str, time: &str, tags: &[(&str, &str)]) -> Value {
    let mut event = json(TAG_CHANGE);
    event["id"] = Value::String(event_id.to_string());
    event["time"] = Value::String(time.to_string());
    event["resources"] = Value::Array(vec![instance_arn(id)]);
    event["detail"]["tags"] = tags
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    event
}

/// Two tag changes of one host race: Environment=test (older) and Environment=prod (newer)
/// are handled at the same time, EC2's reads still show the old tags, and the older event's
/// handler writes last. The host ends in the prod group: decided from the events' own tags,
/// in their order (the older write is followed by a consistent check that re-applies the
/// newest tags). Deciding from the stale read left it in the test group, where patches have
/// no delay.
#[tokio::test]
async fn racing_tag_changes_converge_on_the_newest_ones_group() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let (stack, warm) = deployed_tagger(emu, STACK).await;
    let (config, _) = function(emu, &stack, "auto-tagger").await;
    let id = emu
        .launch_instance("amazon-linux-2", "web-07", &[("Environment", "test")])
        .await
        .expect("launch");
    add_tag(emu, &id, "Environment", "prod").await;
    let stale = BTreeMap::from([
        ("Environment".to_string(), "test".to_string()),
        ("Name".to_string(), "web-07".to_string()),
    ]);
    let tagger = Tagger {
        fleet: FleetAdapters {
            ec2: StaleReads {
                inner: Ec2Fleet::new(&config).with_not_found_retry(FAST_RETRY),
                snapshot: stale.clone(),
                first_delay: std::sync::Mutex::new(Some(Duration::from_millis(400))),
            },
            managed: ManagedInstances::new(&config),
        },
        policy: warm.policy,
        owner: warm.owner,
        order: warm.order,
    };
    let older = tag_change_event(
        &id,
        "0b8bb2b4-0001-4c2f-9a51-000000000001",
        "2026-12-01T08:00:00Z",
        &[("Environment", "test"), ("Name", "web-07")],
    );
    let newer = tag_change_event(
        &id,
        "0b8bb2b4-0002-4c2f-9a51-000000000002",
        "2026-12-01T08:00:05Z",
        &[("Environment", "prod"), ("Name", "web-07")],
    );
    // Both at once; the older one's read answers late, so its write lands after the newer's.
    let (a, b) = tokio::join!(handle(&tagger, older.clone()), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        handle(&tagger, newer.clone()).await
    });
    let (a, b) = (a.expect("older handled"), b.expect("newer handled"));
    assert_eq!(
        tags_of(emu, &id)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_prod_0600_batch_1"),
        "older: {:?}, newer: {:?}",
        a.results,
        b.results
    );

    // Redelivered later, oldest last: the older event is superseded and writes nothing.
    emu.reset_request_counts().expect("reset counter");
    let again = handle(&tagger, older).await.expect("redelivery handled");
    let reason = again.results[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("superseded"), "{reason}");
    assert_eq!(counts(emu).get("ec2", "CreateTags"), 0);
    assert_eq!(
        tags_of(emu, &id)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_prod_0600_batch_1")
    );
}

/// A 10 KB instance id is a malformed event: the invocation ends without error (a retry
/// would fail the same way), nothing is sent to EC2.
#[tokio::test]
async fn an_absurd_instance_id_is_rejected_before_any_aws_call() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let tagger = tagger(emu).await;
    let huge = format!("i-{}", "0".repeat(10 * 1024));
    let answer = invoke(&tagger, running_event(&[&huge]))
        .await
        .expect("permanent: the invocation succeeds");
    assert_eq!(answer["errorType"], "MalformedEvent", "{answer}");
    assert_eq!(answer["retried"], false);
    assert!(
        answer["errorMessage"]
            .as_str()
            .is_some_and(|m| m.len() < 600),
        "the id is not echoed whole: {answer}"
    );
    assert_eq!(counts(emu).total, 0);
}

/// The policy parameter turns invalid: the auto-tagger keeps tagging with the last known
/// good policy baseline-sync stored (version and hash), instead of failing every event.
#[tokio::test]
async fn an_invalid_policy_parameter_leaves_the_tagger_on_the_last_known_good_policy() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let stack = emu.deploy_stack(STACK).expect("stack");
    let parameter = stack.env("auto-tagger", "POLICY_PARAMETER");
    let table = stack.env("auto-tagger", "IDEMPOTENCY_TABLE");
    // baseline-sync loaded the valid policy and remembered it, with its own key.
    let (sync_config, sync_settings) = function(emu, &stack, "baseline-sync").await;
    let good = PolicySource::from_settings(aws_sdk_ssm::Client::new(&sync_config), &sync_settings)
        .fetch(&CallLog::new())
        .await
        .expect("valid policy");
    let store = LastGoodStore::new(
        aws_sdk_dynamodb::Client::new(&sync_config),
        &table,
        &sync_settings.owner,
    );
    assert!(store
        .remember(&good.stored(), &CallLog::new())
        .await
        .expect("stored"));
    // Someone puts a policy with an error.
    emu.ssm()
        .await
        .put_parameter()
        .name(&parameter)
        .value("tag_key: Patch Group\nenvironments: 7\n")
        .overwrite(true)
        .send()
        .await
        .expect("put invalid policy");

    let (config, settings) = function(emu, &stack, "auto-tagger").await;
    let mut tagger = Tagger::from_settings(&config, settings);
    tagger.fleet = adapters(&config);
    let loaded = tagger
        .policy
        .fetch(&CallLog::new())
        .await
        .expect("the last known good policy");
    assert!(loaded.fallback.is_some(), "{loaded:?}");
    assert_eq!(loaded.sha256, good.sha256);
    assert!(
        loaded.label().contains("last known good"),
        "{}",
        loaded.label()
    );
    let id = emu
        .launch_instance("amazon-linux-2", "web-09", &[("Environment", "prod")])
        .await
        .expect("launch");
    let response = handle(&tagger, running_event(&[&id]))
        .await
        .expect("tagged on the last known good policy");
    assert_eq!(response.results[0].action, Action::Tagged);
    assert_eq!(
        tags_of(emu, &id)
            .await
            .get("Patch Group")
            .map(String::as_str),
        Some("patch_prod_0600_batch_1")
    );
}
