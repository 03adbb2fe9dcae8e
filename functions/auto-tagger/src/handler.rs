//! auto-tagger's handler: an EventBridge event → the instance ids it names →
//! [`patchpilot::fleet::tag_instances`] → a small JSON result.
//!
//! Events (real payloads in `events/auto-tagger/`):
//! - `EC2 Instance State-change Notification` (`aws.ec2`), states `pending` / `running`;
//! - `Tag Change on Resource` (`aws.tag`) of an EC2 instance; a change that touches only the
//!   Patch Group tag and the ownership marker is patchpilot's own write (or removal) and is
//!   ignored (no event loop even if the rule's `changed-tag-keys` filter is widened). Adding
//!   the exclusion tag is handled like any other change: the instance is re-read and, being
//!   excluded, loses the Patch Group tag patchpilot wrote (`DeleteTags`), so no maintenance
//!   window patches it any more;
//! - `SSM Managed Instance Registration` (`aws.ssm`): the `mi-*` id is the last path segment
//!   of `resources[0]` (AWS publishes no example payload; `detail` is treated as optional).
//!
//! A tag change decides from the event's own `detail.tags` (EventBridge User Guide, "Tag
//! Change on Resource": every tag of the resource after the change), not from an eventually
//! consistent re-read, and in the order of the events (`patchpilot::aws::tag_order`): two
//! racing changes of one instance converge on the newest one's group.
//!
//! Every id is checked against the format the SSM API model gives `InstanceId`
//! (`(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)`; EC2 User Guide, "Resource IDs": 8 or 17
//! characters after the hyphen) before any AWS call: anything else is a `MalformedEvent`.
//!
//! Failures are classified (`patchpilot::failure`): a malformed or unsupported event, an
//! unsupported id and an IAM denial are permanent (logged with their `errorType`, counted,
//! not retried); throttling, 5xx, timeouts and an instance EC2 does not show yet are
//! transient (Lambda retries, then the failure queue).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::Diagnostic;
use patchpilot::aws::ec2::Ec2Fleet;
use patchpilot::aws::last_good::LastGoodStore;
use patchpilot::aws::managed::ManagedInstances;
use patchpilot::aws::policy_source::{PolicySource, PolicySourceError};
use patchpilot::aws::tag_order::{TagEvent, TagOrder, Turn};
use patchpilot::aws::{denial_in, AwsError, CallLog, CallSummary, ACCESS_DENIED_ERROR_TYPE};
use patchpilot::failure::{settle, Classified, Retry, TransientFailure};
use patchpilot::fleet::{
    tag_instance_known, tag_instances, Action, FleetAdapters, FleetError, InstancePort, KnownTags,
    ManagedPort, TagOutcome,
};
use patchpilot::names::{Owner, OWNERSHIP_TAG_KEY};
use patchpilot::settings::Settings;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use tracing::info;

pub const EC2_STATE_CHANGE: &str = "EC2 Instance State-change Notification";
pub const TAG_CHANGE: &str = "Tag Change on Resource";
pub const MANAGED_INSTANCE_REGISTRATION: &str = "SSM Managed Instance Registration";
/// The function's name in logs and metrics.
pub const FUNCTION: &str = "auto-tagger";

/// What the handler needs, built once per cold start.
pub struct Tagger<E = Ec2Fleet, M = ManagedInstances> {
    pub fleet: FleetAdapters<E, M>,
    pub policy: PolicySource,
    /// The stack whose marker (`patchpilot:managed=<stack>`) the tagger writes and trusts.
    pub owner: Owner,
    /// The order of tag changes per instance (`IDEMPOTENCY_TABLE`); `None`: decide from each
    /// event alone.
    pub order: Option<TagOrder>,
}

impl Tagger {
    /// Adapters over `config` (the emulator when `AWS_ENDPOINT_URL` is set); policy, stack
    /// and deployed tag key from `settings` (`Settings::from_env()` in Lambda).
    pub fn from_settings(config: &aws_config::SdkConfig, settings: Settings) -> Tagger {
        // One client per service (each construction is cold-start time).
        let ssm = patchpilot::aws::ssm_client(config);
        let mut policy = PolicySource::from_settings(ssm.clone(), &settings);
        let mut order = None;
        if let Some(table) = &settings.idempotency_table {
            let dynamodb = patchpilot::aws::dynamodb_client(config);
            policy = policy.with_last_good(
                LastGoodStore::new(dynamodb.clone(), table, &settings.owner),
                true,
            );
            order = Some(TagOrder::new(dynamodb, table, &settings.owner));
        }
        Tagger {
            fleet: FleetAdapters {
                ec2: Ec2Fleet::new(config),
                managed: ManagedInstances::from_client(ssm),
            },
            policy,
            owner: settings.owner,
            order,
        }
    }
}

impl<E, M> Tagger<E, M> {
    /// With the embedded reference policy (no parameter), for tests and local runs.
    pub fn with_embedded_policy(
        fleet: FleetAdapters<E, M>,
        ssm: aws_sdk_ssm::Client,
    ) -> Tagger<E, M> {
        Tagger {
            fleet,
            policy: PolicySource::new(ssm, None, Duration::from_secs(60)),
            owner: Owner::default(),
            order: None,
        }
    }

    /// The same tagger for another stack.
    pub fn with_owner(mut self, owner: Owner) -> Tagger<E, M> {
        self.owner = owner;
        self
    }
}

#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("malformed event: {reason}")]
    MalformedEvent { reason: String },
    #[error("unsupported event: source `{event_source}`, detail-type `{detail_type}`; auto-tagger handles `{EC2_STATE_CHANGE}` (aws.ec2), `{TAG_CHANGE}` (aws.tag) and `{MANAGED_INSTANCE_REGISTRATION}` (aws.ssm) — check the EventBridge rule that targets this function")]
    UnsupportedEvent {
        event_source: String,
        detail_type: String,
    },
    #[error(transparent)]
    Policy(#[from] PolicySourceError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("ordering the tag changes of {instance_id} in the idempotency table: {source}")]
    Order {
        instance_id: String,
        #[source]
        source: AwsError,
    },
}

impl Classified for HandlerError {
    fn error_type(&self) -> &'static str {
        match self {
            _ if denial_in(self).is_some() => ACCESS_DENIED_ERROR_TYPE,
            HandlerError::MalformedEvent { .. } => "MalformedEvent",
            HandlerError::UnsupportedEvent { .. } => "UnsupportedEvent",
            HandlerError::Policy(e) => e.error_type(),
            HandlerError::Fleet(FleetError::NotVisible { .. }) => "InstanceNotVisible",
            HandlerError::Fleet(FleetError::UnsupportedId { .. }) => "UnsupportedInstanceId",
            HandlerError::Fleet(FleetError::Aws { .. } | FleetError::Request { .. }) => {
                "AwsCallFailed"
            }
            HandlerError::Order { .. } => "TagOrderFailed",
        }
    }

    fn retry(&self) -> Retry {
        match self {
            _ if denial_in(self).is_some() => Retry::Permanent,
            HandlerError::MalformedEvent { .. }
            | HandlerError::UnsupportedEvent { .. }
            | HandlerError::Fleet(FleetError::UnsupportedId { .. } | FleetError::Request { .. }) => {
                Retry::Permanent
            }
            HandlerError::Policy(PolicySourceError::Read { source, .. }) => source.retry(),
            // No valid policy at all (none stored yet): keep the event for a redrive.
            HandlerError::Policy(_) => Retry::Transient,
            HandlerError::Fleet(FleetError::NotVisible { .. }) => Retry::Transient,
            HandlerError::Fleet(FleetError::Aws { source, .. })
            | HandlerError::Order { source, .. } => source.retry(),
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// One Lambda invocation: [`handle`], then a permanent failure ends it without error
/// (logged, counted) and a transient one fails it so that Lambda retries.
pub async fn invoke<E: InstancePort, M: ManagedPort>(
    tagger: &Tagger<E, M>,
    event: Value,
) -> Result<Value, Diagnostic> {
    settle(FUNCTION, handle(tagger, event).await).map_err(
        |TransientFailure {
             error_type,
             error_message,
         }| Diagnostic {
            error_type: error_type.to_string(),
            error_message,
        },
    )
}

/// The handler's answer (also logged).
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub results: Vec<TagOutcome>,
    /// Why the event needed nothing (e.g. patchpilot's own tag write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    pub aws_calls: CallSummary,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct StateChangeDetail {
    instance_id: String,
    state: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TagChangeDetail {
    changed_tag_keys: Vec<String>,
    service: String,
    resource_type: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegistrationDetail {
    #[serde(default)]
    instance_id: Option<String>,
}

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Tag these instances / nodes.
    Tag { ids: Vec<String> },
    /// A tag change: tag the instances unless only these keys (patchpilot's own) changed.
    TagChange {
        ids: Vec<String>,
        changed_keys: Vec<String>,
        /// `detail.tags`, EventBridge `id` and `time`.
        event: TagEvent,
    },
    /// Nothing to do, with the reason.
    Ignore { reason: String },
}

fn malformed(detail_type: &str, e: impl std::fmt::Display) -> HandlerError {
    HandlerError::MalformedEvent {
        reason: format!("`{detail_type}` detail: {e}"),
    }
}

/// The last path segment of resource ARNs of `kind` (`instance`, `managed-instance`).
fn ids_from_arns(resources: &[String], kind: &str) -> Vec<String> {
    let marker = format!(":{kind}/");
    resources
        .iter()
        .filter_map(|arn| arn.split_once(&marker).map(|(_, id)| id.to_string()))
        .filter(|id| !id.is_empty())
        .collect()
}

/// Whether `id` is a node id of `kind` as SSM's API pattern has it
/// (`(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)`, API Reference `InstancePatchState.InstanceId`):
/// an EC2 instance `i-` + 8 or 17 word characters, an on-prem node `mi-` + 17.
fn valid_node_id(id: &str, kind: &str) -> bool {
    let word = |rest: &str| rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match kind {
        "instance" => id
            .strip_prefix("i-")
            .is_some_and(|rest| matches!(rest.len(), 8 | 17) && word(rest)),
        _ => id
            .strip_prefix("mi-")
            .is_some_and(|rest| rest.len() == 17 && word(rest)),
    }
}

/// Every id is a well-formed node id of `kind`, or the event is malformed (an absurd id is
/// never sent to EC2 or SSM). The message quotes at most 40 characters of a bad id.
fn check_ids(detail_type: &str, ids: &[String], kind: &str) -> Result<(), HandlerError> {
    match ids.iter().find(|id| !valid_node_id(id, kind)) {
        None => Ok(()),
        Some(bad) => {
            let shown: String = bad.chars().take(40).collect();
            let more = if bad.chars().count() > 40 {
                format!("… ({} characters)", bad.chars().count())
            } else {
                String::new()
            };
            let want = if kind == "instance" {
                "an EC2 instance id (`i-` and 8 or 17 characters)"
            } else {
                "a managed-node id (`mi-` and 17 characters)"
            };
            Err(malformed(
                detail_type,
                format!("`{shown}{more}` is not {want}"),
            ))
        }
    }
}

fn push_unique(ids: &mut Vec<String>, id: String) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

/// Read an event into a [`Trigger`]; every problem is an error naming what was wrong.
pub fn parse(event: Value) -> Result<Trigger, HandlerError> {
    let event: EventBridgeEvent<Value> =
        serde_json::from_value(event).map_err(|e| HandlerError::MalformedEvent {
            reason: format!(
                "not an EventBridge event ({e}); expected `detail-type`, `source` and `detail`"
            ),
        })?;
    let resources = event.resources.unwrap_or_default();
    let detail_type = event.detail_type.as_str();
    match (event.source.as_str(), detail_type) {
        ("aws.ec2", EC2_STATE_CHANGE) => {
            let d: StateChangeDetail =
                serde_json::from_value(event.detail).map_err(|e| malformed(detail_type, e))?;
            if !matches!(d.state.as_str(), "pending" | "running") {
                return Ok(Trigger::Ignore {
                    reason: format!("instance {} is `{}`, not launching", d.instance_id, d.state),
                });
            }
            let mut ids = vec![d.instance_id];
            for id in ids_from_arns(&resources, "instance") {
                push_unique(&mut ids, id);
            }
            check_ids(detail_type, &ids, "instance")?;
            Ok(Trigger::Tag { ids })
        }
        ("aws.tag", TAG_CHANGE) => {
            let d: TagChangeDetail =
                serde_json::from_value(event.detail).map_err(|e| malformed(detail_type, e))?;
            if d.service != "ec2" || d.resource_type != "instance" {
                return Ok(Trigger::Ignore {
                    reason: format!(
                        "tag change on a {} {}, not an EC2 instance",
                        d.service, d.resource_type
                    ),
                });
            }
            let mut ids = Vec::new();
            for id in ids_from_arns(&resources, "instance") {
                push_unique(&mut ids, id);
            }
            if ids.is_empty() {
                return Err(malformed(
                    detail_type,
                    format!("no EC2 instance ARN in `resources` ({resources:?})"),
                ));
            }
            check_ids(detail_type, &ids, "instance")?;
            info!(instance_ids = %ids.join(","), changed = %d.changed_tag_keys.join(","), tags = d.tags.len(), "tag change");
            Ok(Trigger::TagChange {
                ids,
                changed_keys: d.changed_tag_keys,
                event: TagEvent {
                    event_id: event.id.clone().unwrap_or_default(),
                    time: event.time.unwrap_or_else(chrono::Utc::now),
                    tags: d.tags,
                },
            })
        }
        ("aws.ssm", MANAGED_INSTANCE_REGISTRATION) => {
            let d: RegistrationDetail = if event.detail.is_null() {
                RegistrationDetail::default()
            } else {
                serde_json::from_value(event.detail).map_err(|e| malformed(detail_type, e))?
            };
            let mut ids = Vec::new();
            for id in ids_from_arns(&resources, "managed-instance") {
                push_unique(&mut ids, id);
            }
            if let Some(id) = d.instance_id {
                push_unique(&mut ids, id);
            }
            if ids.is_empty() {
                return Err(malformed(
                    detail_type,
                    "no managed-instance ARN in `resources` and no `detail.instance-id`",
                ));
            }
            check_ids(detail_type, &ids, "managed-instance")?;
            Ok(Trigger::Tag { ids })
        }
        (event_source, detail_type) => Err(HandlerError::UnsupportedEvent {
            event_source: event_source.to_string(),
            detail_type: detail_type.to_string(),
        }),
    }
}

/// Handle one event.
pub async fn handle<E: InstancePort, M: ManagedPort>(
    tagger: &Tagger<E, M>,
    event: Value,
) -> Result<Response, HandlerError> {
    let calls = CallLog::new();
    let trigger = parse(event)?;
    let (ids, event) = match trigger {
        Trigger::Ignore { reason } => return Ok(ignored(reason, &calls)),
        Trigger::Tag { ids } => (ids, None),
        Trigger::TagChange {
            ids,
            changed_keys,
            event,
        } => {
            let policy = tagger.policy.get(&calls).await?.policy;
            let own = [policy.tag_key.as_str(), OWNERSHIP_TAG_KEY];
            if changed_keys.iter().all(|k| own.contains(&k.as_str())) {
                return Ok(ignored(
                    format!(
                        "only {} changed: patchpilot's own write",
                        changed_keys.join(", ")
                    ),
                    &calls,
                ));
            }
            (ids, Some(event))
        }
    };
    let loaded = tagger.policy.get(&calls).await?;
    let results = match event {
        None => tag_instances(&ids, &loaded.policy, &tagger.owner, &tagger.fleet, &calls).await?,
        Some(event) => {
            let mut results = Vec::new();
            for id in &ids {
                results.push(tag_change(tagger, id, &event, &loaded.policy, &calls).await?);
            }
            results
        }
    };
    let aws_calls = calls.summary();
    info!(
        instances = results.len(),
        policy = %loaded.label(),
        aws_reads = aws_calls.reads,
        aws_writes = aws_calls.writes,
        aws_calls = %serde_json::to_string(&aws_calls.by_operation).unwrap_or_default(),
        "auto-tagger done"
    );
    Ok(Response {
        results,
        ignored: None,
        aws_calls,
    })
}

/// One instance of a tag-change event: in event order when the table is configured
/// (`patchpilot::aws::tag_order`: claim, decide from the event's tags, write, check).
async fn tag_change<E: InstancePort, M: ManagedPort>(
    tagger: &Tagger<E, M>,
    id: &str,
    event: &TagEvent,
    policy: &patchpilot::policy::Policy,
    calls: &CallLog,
) -> Result<TagOutcome, HandlerError> {
    let known = KnownTags {
        tags: event.tags.clone(),
        own: None,
    };
    let Some(order) = &tagger.order else {
        return Ok(
            tag_instance_known(id, &known, policy, &tagger.owner, &tagger.fleet, calls).await?,
        );
    };
    let ordered = |source| HandlerError::Order {
        instance_id: id.to_string(),
        source,
    };
    if let Turn::Superseded { newer } = order.claim(id, event, calls).await.map_err(ordered)? {
        return Ok(TagOutcome {
            instance_id: id.to_string(),
            action: Action::Unchanged,
            patch_group: None,
            reason: Some(format!(
                "superseded: a newer tag change of this instance ({newer}) decides its patch group"
            )),
        });
    }
    let outcome =
        tag_instance_known(id, &known, policy, &tagger.owner, &tagger.fleet, calls).await?;
    if !matches!(outcome.action, Action::Tagged | Action::Untagged) {
        return Ok(outcome);
    }
    // Our write may have landed after the write of a newer event's handler.
    match order.newest(id, calls).await.map_err(ordered)? {
        Some(newest) if newest.event_id != event.event_id => {
            info!(instance_id = %id, newer = %newest.time, "a newer tag change was claimed meanwhile: applying its tags");
            let known = KnownTags {
                tags: newest.tags,
                own: None,
            }
            .after(&outcome, policy, &tagger.owner);
            Ok(tag_instance_known(id, &known, policy, &tagger.owner, &tagger.fleet, calls).await?)
        }
        _ => Ok(outcome),
    }
}

fn ignored(reason: String, calls: &CallLog) -> Response {
    info!(reason = %reason, "event ignored");
    Response {
        results: Vec::new(),
        ignored: Some(reason),
        aws_calls: calls.summary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchpilot::classify::InstanceFacts;
    use patchpilot::fleet::Page;

    fn event(text: &str) -> Value {
        serde_json::from_str(text).expect("event file is JSON")
    }

    const PENDING: &str = include_str!("../../../events/auto-tagger/ec2-state-pending.json");
    const RUNNING: &str = include_str!("../../../events/auto-tagger/ec2-state-running.json");
    const TAG_ENV: &str = include_str!("../../../events/auto-tagger/tag-change-environment.json");
    const TAG_EXCLUDE: &str = include_str!("../../../events/auto-tagger/tag-change-exclude.json");
    const TAG_OWN: &str =
        include_str!("../../../events/auto-tagger/tag-change-patch-group-by-patchpilot.json");
    const REGISTRATION: &str =
        include_str!("../../../events/auto-tagger/managed-instance-registration.json");
    const STOPPING: &str = include_str!("../../../events/lookalikes/ec2-state-stopping.json");
    const VOLUME: &str = include_str!("../../../events/lookalikes/tag-change-volume.json");
    const SCHEDULED: &str = include_str!("../../../events/baseline-sync/scheduled.json");

    #[test]
    fn launch_events_name_their_instance() {
        for text in [PENDING, RUNNING] {
            assert_eq!(
                parse(event(text)).expect("parses"),
                Trigger::Tag {
                    ids: vec!["i-1234567890abcdef0".to_string()]
                }
            );
        }
    }

    #[test]
    fn a_tag_change_names_the_instance_the_changed_keys_and_carries_the_events_tags() {
        let ev = event(TAG_ENV);
        let tags: BTreeMap<String, String> =
            serde_json::from_value(ev["detail"]["tags"].clone()).expect("detail.tags");
        assert!(!tags.is_empty());
        match parse(ev.clone()).expect("parses") {
            Trigger::TagChange {
                ids,
                changed_keys,
                event,
            } => {
                assert_eq!(ids, ["i-0000000aaaaaaaaaa"]);
                assert_eq!(changed_keys, ["Environment"]);
                assert_eq!(event.tags, tags, "decided from detail.tags");
                assert_eq!(Some(event.event_id.as_str()), ev["id"].as_str());
                assert_eq!(
                    event
                        .time
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ev["time"].as_str().expect("time")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_invalid_event_ends_the_invocation_without_error_and_a_hidden_instance_with_one() {
        let ok = run(invoke(
            &offline_tagger(),
            serde_json::json!({"hello": "world"}),
        ))
        .expect("permanent: no retry");
        assert_eq!(ok["errorType"], "MalformedEvent");
        assert_eq!(ok["retried"], false);
        let ok = run(invoke(&offline_tagger(), event(SCHEDULED))).expect("permanent");
        assert_eq!(ok["errorType"], "UnsupportedEvent");
        let hidden = HandlerError::Fleet(FleetError::NotVisible {
            ids: vec!["i-0123456789abcdef0".into()],
            attempts: 5,
            waited: Duration::from_secs(3),
            message: "InvalidInstanceID.NotFound".into(),
        });
        assert_eq!(hidden.retry(), Retry::Transient);
        let throttled = HandlerError::Fleet(FleetError::aws(
            "describing",
            patchpilot::aws::AwsError::from_parts(
                patchpilot::aws::Service::Ec2,
                "DescribeInstances",
                Some("RequestLimitExceeded".into()),
                "slow down".into(),
            ),
        ));
        assert_eq!(throttled.retry(), Retry::Transient);
    }

    #[test]
    fn an_absurd_node_id_is_a_malformed_event_that_quotes_only_its_start() {
        let huge = format!("i-{}", "0".repeat(10 * 1024));
        let mut launch = event(PENDING);
        launch["detail"]["instance-id"] = Value::from(huge.clone());
        let err = parse(launch).expect_err("a 10 KB id");
        let text = err.to_string();
        assert_eq!(Diagnostic::from(err).error_type, "MalformedEvent");
        assert!(
            text.contains("(10242 characters)") && text.len() < 300,
            "{text}"
        );
        for bad in [
            "i-123",
            "i-0123456789abcdef",
            "x-1234567890abcdef0",
            "i-12345678;rm",
        ] {
            let mut e = event(PENDING);
            e["detail"]["instance-id"] = Value::from(bad);
            assert!(parse(e).is_err(), "{bad}");
        }
        // 8 characters: the older EC2 id format is still valid.
        let mut old = event(PENDING);
        old["detail"]["instance-id"] = Value::from("i-1a2b3c4d");
        old["resources"] = Value::Array(vec![]);
        assert!(parse(old).is_ok());
        // An instance ARN in `resources` with a bad id, and a registration whose node id is
        // not `mi-` + 17.
        let mut tag = event(TAG_ENV);
        tag["resources"] = serde_json::json!([format!(
            "arn:aws:ec2:us-east-1:123456789012:instance/{huge}"
        )]);
        assert!(parse(tag).is_err());
        let mut reg = event(REGISTRATION);
        reg["resources"] =
            serde_json::json!(["arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123"]);
        reg["detail"] = Value::Null;
        assert!(parse(reg).is_err());
    }

    #[test]
    fn a_registration_names_the_managed_node_from_its_arn() {
        assert_eq!(
            parse(event(REGISTRATION)).expect("parses"),
            Trigger::Tag {
                ids: vec!["mi-0123456789abcdef0".to_string()]
            }
        );
        // The detail is optional: AWS publishes no example of it.
        let mut without_detail = event(REGISTRATION);
        without_detail["detail"] = Value::Null;
        assert_eq!(
            parse(without_detail).expect("parses"),
            Trigger::Tag {
                ids: vec!["mi-0123456789abcdef0".to_string()]
            }
        );
    }

    #[test]
    fn lookalikes_are_ignored_with_the_reason() {
        match parse(event(STOPPING)).expect("parses") {
            Trigger::Ignore { reason } => assert!(reason.contains("stopping"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match parse(event(VOLUME)).expect("parses") {
            Trigger::Ignore { reason } => assert!(reason.contains("volume"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_functions_event_is_unsupported_and_says_which_events_are() {
        let err = parse(event(SCHEDULED)).expect_err("not ours");
        let text = err.to_string();
        assert!(
            text.contains("Scheduled Event") && text.contains(EC2_STATE_CHANGE),
            "{text}"
        );
        assert_eq!(Diagnostic::from(err).error_type, "UnsupportedEvent");
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let mut no_id = event(PENDING);
        if let Some(d) = no_id["detail"].as_object_mut() {
            d.remove("instance-id");
        }
        let err = parse(no_id).expect_err("no instance id");
        assert!(err.to_string().contains("instance-id"), "{err}");
        assert_eq!(Diagnostic::from(err).error_type, "MalformedEvent");

        let err = parse(serde_json::json!({"hello": "world"})).expect_err("not EventBridge");
        assert!(err.to_string().contains("detail-type"), "{err}");

        let mut no_arn = event(TAG_ENV);
        no_arn["resources"] = serde_json::json!([]);
        let err = parse(no_arn).expect_err("no resource");
        assert!(err.to_string().contains("resources"), "{err}");
    }

    /// Ports that fail the test if the handler calls AWS at all.
    struct NoAws;

    impl InstancePort for NoAws {
        async fn describe(
            &self,
            _: &[String],
            _: &CallLog,
        ) -> Result<Vec<InstanceFacts>, FleetError> {
            panic!("DescribeInstances must not be called")
        }
        async fn page(&self, _: Option<String>, _: &CallLog) -> Result<Page, FleetError> {
            panic!("DescribeInstances must not be called")
        }
        async fn create_tags(
            &self,
            _: &[String],
            _: &[(String, String)],
            _: &CallLog,
        ) -> Result<(), FleetError> {
            panic!("CreateTags must not be called")
        }
        async fn delete_tags(
            &self,
            _: &[String],
            _: &[String],
            _: &CallLog,
        ) -> Result<(), FleetError> {
            panic!("DeleteTags must not be called")
        }
    }

    impl ManagedPort for NoAws {
        async fn describe(
            &self,
            _: &[String],
            _: &CallLog,
        ) -> Result<Vec<InstanceFacts>, FleetError> {
            panic!("DescribeInstanceInformation must not be called")
        }
        async fn page(&self, _: Option<String>, _: &CallLog) -> Result<Page, FleetError> {
            panic!("DescribeInstanceInformation must not be called")
        }
        async fn add_tags(
            &self,
            _: &str,
            _: &[(String, String)],
            _: &CallLog,
        ) -> Result<(), FleetError> {
            panic!("AddTagsToResource must not be called")
        }
        async fn remove_tags(&self, _: &str, _: &[String], _: &CallLog) -> Result<(), FleetError> {
            panic!("RemoveTagsFromResource must not be called")
        }
    }

    fn offline_ssm() -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::Config::builder()
                .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
                .region(aws_sdk_ssm::config::Region::new("us-east-1"))
                .build(),
        )
    }

    fn offline_tagger() -> Tagger<NoAws, NoAws> {
        Tagger::with_embedded_policy(
            FleetAdapters {
                ec2: NoAws,
                managed: NoAws,
            },
            offline_ssm(),
        )
    }

    /// One EC2 instance whose tags are those of an event's `detail.tags`; records removals
    /// and fails the test on any tag write.
    struct OneInstance {
        facts: InstanceFacts,
        removed: std::sync::Mutex<Vec<(Vec<String>, Vec<String>)>>,
    }

    impl OneInstance {
        fn from_event(event: &Value) -> OneInstance {
            let tags: BTreeMap<String, String> =
                serde_json::from_value(event["detail"]["tags"].clone()).expect("detail.tags");
            let arn = event["resources"][0].as_str().expect("resource ARN");
            let id = arn.rsplit('/').next().expect("instance id").to_string();
            OneInstance {
                facts: InstanceFacts {
                    instance_id: id,
                    source: patchpilot::classify::FactsSource::Ec2 {
                        platform: None,
                        platform_details: Some("Linux/UNIX".to_string()),
                        instance_type: Some("t3.micro".to_string()),
                    },
                    name: tags.get("Name").cloned(),
                    tags,
                    state: Some("running".to_string()),
                },
                removed: std::sync::Mutex::new(Vec::new()),
            }
        }
    }

    impl InstancePort for OneInstance {
        async fn describe(
            &self,
            ids: &[String],
            calls: &CallLog,
        ) -> Result<Vec<InstanceFacts>, FleetError> {
            calls.record("DescribeInstances");
            assert_eq!(ids, std::slice::from_ref(&self.facts.instance_id));
            Ok(vec![self.facts.clone()])
        }
        async fn page(&self, _: Option<String>, _: &CallLog) -> Result<Page, FleetError> {
            panic!("the handler never pages")
        }
        async fn create_tags(
            &self,
            _: &[String],
            _: &[(String, String)],
            _: &CallLog,
        ) -> Result<(), FleetError> {
            panic!("an excluded instance must not be tagged")
        }
        async fn delete_tags(
            &self,
            ids: &[String],
            keys: &[String],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            calls.record("DeleteTags");
            self.removed
                .lock()
                .expect("lock")
                .push((ids.to_vec(), keys.to_vec()));
            Ok(())
        }
    }

    #[test]
    fn adding_the_exclusion_tag_removes_patchpilots_patch_group_tag() {
        let ev = event(TAG_EXCLUDE);
        match parse(ev.clone()).expect("parses") {
            Trigger::TagChange {
                ids, changed_keys, ..
            } => {
                assert_eq!(ids, ["i-0000000aaaaaaaaaa"]);
                assert_eq!(changed_keys, ["patchpilot:exclude"]);
            }
            other => panic!("{other:?}"),
        }
        let tagger = Tagger::with_embedded_policy(
            FleetAdapters {
                ec2: OneInstance::from_event(&ev),
                managed: NoAws,
            },
            offline_ssm(),
        );
        let response = run(handle(&tagger, ev)).expect("handled");
        assert_eq!(response.ignored, None);
        let r = &response.results[0];
        assert_eq!(r.action, patchpilot::fleet::Action::Untagged, "{r:?}");
        let reason = r.reason.clone().unwrap_or_default();
        assert!(
            reason.contains("patch_prod_0600_batch_1") && reason.contains("fragile"),
            "{reason}"
        );
        assert_eq!(
            response.aws_calls.by_operation.get("DeleteTags"),
            Some(&1),
            "{:?}",
            response.aws_calls
        );
        assert_eq!(response.aws_calls.writes, 1);
        let removed = tagger.fleet.ec2.removed.lock().expect("lock").clone();
        assert_eq!(
            removed,
            vec![(
                vec!["i-0000000aaaaaaaaaa".to_string()],
                vec!["Patch Group".to_string(), "patchpilot:managed".to_string()]
            )]
        );
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn patchpilots_own_tag_write_does_not_trigger_another_write() {
        let response = run(handle(&offline_tagger(), event(TAG_OWN))).expect("handled");
        assert!(response.results.is_empty());
        let reason = response.ignored.unwrap_or_default();
        assert!(reason.contains("patchpilot's own write"), "{reason}");
        assert_eq!(response.aws_calls.reads + response.aws_calls.writes, 0);
    }

    #[test]
    fn an_ignored_event_makes_no_aws_call() {
        let response = run(handle(&offline_tagger(), event(STOPPING))).expect("handled");
        assert!(response.ignored.is_some());
        let json = serde_json::to_value(&response).expect("serialisable");
        assert_eq!(json["results"], serde_json::json!([]));
        assert_eq!(json["aws_calls"]["writes"], 0);
    }

    #[test]
    fn a_denied_tag_write_is_reported_as_access_denied() {
        let ids = vec!["i-0123456789abcdef0".to_string()];
        let e = HandlerError::Fleet(FleetError::aws(
            "tagging 1 instance(s)",
            patchpilot::aws::AwsError::from_parts(
                patchpilot::aws::Service::Ec2,
                "CreateTags",
                Some("UnauthorizedOperation".into()),
                "You are not authorized to perform this operation. Encoded authorization failure message: x".into(),
            )
            .on(&ids),
        ));
        let d: Diagnostic = e.into();
        assert_eq!(d.error_type, "AccessDenied");
        assert!(
            d.error_message
                .contains("permission denied: ec2:CreateTags on i-0123456789abcdef0 — the function's IAM role (template.yaml) does not allow it"),
            "{}",
            d.error_message
        );
    }
}
