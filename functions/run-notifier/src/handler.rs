//! run-notifier's handler: turns a terminal maintenance-window execution or
//! `AWS-RunPatchBaseline` command event into exactly one report on the SNS topic.
//!
//! Flow: parse the event → ignore what is not ours (foreign window, other document, a
//! command a patchpilot window sent — its window's event reports it) → claim the run id
//! (`patchpilot::aws::idempotency`, see there for the failure order) → gather
//! (`patchpilot::aws::runs`) → log the full report → publish the fitted message
//! (`patchpilot::report`, `patchpilot::aws::notify`) → mark the run completed.
//!
//! Failures are classified (`patchpilot::failure`): a malformed or unsupported event, a run
//! that no longer exists (`DoesNotExistException`: the window or command was deleted), a
//! report too large to send and an IAM denial are permanent — logged with their
//! `errorType`, counted, not retried. Throttling, 5xx, timeouts, a run another invocation is
//! reporting right now, and a policy that is invalid with no last known good one stored are
//! transient: Lambda retries, then the failure queue keeps the event for a redrive.
//!
//! The policy is the parameter's, or the last known good one when the parameter's is invalid
//! (`patchpilot::aws::last_good`); every report's footer names the one it used.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use patchpilot::aws::idempotency::{Claim, Idempotency};
use patchpilot::aws::last_good::LastGoodStore;
use patchpilot::aws::notify;
use patchpilot::aws::policy_source::{LoadedPolicy, PolicySource, PolicySourceError};
use patchpilot::aws::promotion::{self, PatchReader, PromotionStore};
use patchpilot::aws::runs::{Runs, DOCUMENT};
use patchpilot::aws::{denial_in, AwsError, CallLog, CallSummary, ACCESS_DENIED_ERROR_TYPE};
use patchpilot::failure::{settle, Classified, Retry, TransientFailure};
use patchpilot::names::{self, Owner};
use patchpilot::policy::{NotifyOn, Policy};
use patchpilot::report::{RunReport, RunStatus, TooLarge, SNS_MAX_MESSAGE_BYTES};
use patchpilot::settings::{self, MissingSetting, Settings};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use tracing::{info, warn};

pub const WINDOW_EXECUTION: &str = "Maintenance Window Execution State-change Notification";
pub const COMMAND_STATUS: &str = "EC2 Command Status-change Notification";

/// Terminal `MaintenanceWindowExecution.Status` values (the rule in template.yaml).
const WINDOW_TERMINAL: [&str; 5] = [
    "SUCCESS",
    "FAILED",
    "TIMED_OUT",
    "CANCELLED",
    "SKIPPED_OVERLAPPING",
];
/// Terminal `CommandStatus` values.
const COMMAND_TERMINAL: [&str; 4] = ["Success", "Failed", "TimedOut", "Cancelled"];
/// Claim length when the invocation has no usable deadline (the function's Timeout).
const DEFAULT_CLAIM: Duration = Duration::from_secs(120);
/// Instances per log line of the full report (CloudWatch Logs events are cut at 256 KB).
const LOG_CHUNK: usize = 500;
/// The function's name in logs and metrics.
pub const FUNCTION: &str = "run-notifier";

/// What the handler needs, built once per cold start.
pub struct Notifier {
    pub ssm: aws_sdk_ssm::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub topic: notify::Notifier,
    pub idempotency: Idempotency,
    pub policy: PolicySource,
    /// Only this stack's windows (`patchpilot:managed=<stack>`) are reported.
    pub owner: Owner,
    /// Promotion (`patchpilot::promotion`): records the manifest after a source run and
    /// compares a promoted run with it. `None` without `OUTPUT_BUCKET`.
    pub promotion: Option<(PatchReader, PromotionStore)>,
}

/// A required environment variable is missing: the deployment is broken.
pub type ConfigError = MissingSetting;

impl Notifier {
    pub fn new(
        config: &aws_config::SdkConfig,
        topic_arn: &str,
        table: &str,
        policy: PolicySource,
    ) -> Notifier {
        let ssm = patchpilot::aws::ssm_client(config);
        let dynamodb = patchpilot::aws::dynamodb_client(config);
        Notifier::with_clients(config, ssm, dynamodb, topic_arn, table, policy)
    }

    /// As [`new`](Self::new), with the SSM and DynamoDB clients the policy source already
    /// uses: one client per service and process (each construction is cold-start time).
    fn with_clients(
        config: &aws_config::SdkConfig,
        ssm: aws_sdk_ssm::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        topic_arn: &str,
        table: &str,
        policy: PolicySource,
    ) -> Notifier {
        Notifier {
            ssm,
            ec2: patchpilot::aws::ec2_client(config),
            topic: notify::Notifier::new(patchpilot::aws::sns_client(config), topic_arn),
            idempotency: Idempotency::new(dynamodb, table),
            policy,
            owner: Owner::default(),
            promotion: None,
        }
    }

    /// Record and check promotions in `bucket` (the stack's output bucket).
    pub fn with_promotion(mut self, config: &aws_config::SdkConfig, bucket: &str) -> Notifier {
        self.promotion = Some((
            PatchReader::from_client(self.ssm.clone()),
            PromotionStore::new(config, bucket),
        ));
        self
    }

    /// The report topic and the idempotency table (`TOPIC_ARN`, `IDEMPOTENCY_TABLE`), without
    /// which run-notifier cannot work. `main` checks them at init, before any SDK work, so a
    /// deployment that lacks one fails its init rather than each event.
    pub fn required_settings(settings: &Settings) -> Result<(String, String), ConfigError> {
        let required = |value, name, meaning| {
            Settings::required(value, name, "run-notifier", meaning).map(str::to_string)
        };
        let topic = required(&settings.topic_arn, settings::TOPIC_ARN, "the report topic")?;
        let table = required(
            &settings.idempotency_table,
            settings::IDEMPOTENCY_TABLE,
            "the idempotency table",
        )?;
        Ok((topic, table))
    }

    /// From `settings` (`Settings::from_env()` in Lambda): `TOPIC_ARN` and
    /// `IDEMPOTENCY_TABLE` (required), the policy settings and the stack.
    pub fn from_settings(
        config: &aws_config::SdkConfig,
        settings: Settings,
    ) -> Result<Notifier, ConfigError> {
        let (topic, table) = Self::required_settings(&settings)?;
        // An invalid policy parameter must not stop the reports: the last known good policy
        // (stored by baseline-sync in the same table) is used instead.
        let ssm = patchpilot::aws::ssm_client(config);
        let dynamodb = patchpilot::aws::dynamodb_client(config);
        let policy = PolicySource::from_settings(ssm.clone(), &settings).with_last_good(
            LastGoodStore::new(dynamodb.clone(), &table, &settings.owner),
            true,
        );
        let notifier = Notifier::with_clients(config, ssm, dynamodb, &topic, &table, policy)
            .with_owner(settings.owner);
        Ok(match settings.deployment.output_bucket.as_deref() {
            Some(bucket) if !bucket.is_empty() => notifier.with_promotion(config, bucket),
            _ => {
                warn!("OUTPUT_BUCKET is not set (template.yaml sets it for run-notifier): promotions are neither recorded nor checked");
                notifier
            }
        })
    }

    /// The same notifier for another stack.
    pub fn with_owner(mut self, owner: Owner) -> Notifier {
        self.owner = owner;
        self
    }
}

#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("malformed `{detail_type}` event: {reason}; expected the payload AWS documents (see events/run-notifier/)")]
    MalformedEvent { detail_type: String, reason: String },
    #[error("run-notifier does not handle `{detail_type}` events; check the EventBridge rules in template.yaml")]
    UnsupportedEvent { detail_type: String },
    #[error(transparent)]
    Policy(#[from] PolicySourceError),
    #[error("cannot read run {run_id}: {source}")]
    Gather {
        run_id: String,
        #[source]
        source: AwsError,
    },
    #[error("run {run_id} is being reported by another invocation until {until}; this delivery will be retried")]
    InProgress {
        run_id: String,
        until: DateTime<Utc>,
    },
    #[error("idempotency table: {0}; check IDEMPOTENCY_TABLE and dynamodb permissions")]
    Idempotency(#[source] AwsError),
    #[error("cannot publish the report of run {run_id} to the topic: {source}")]
    Publish {
        run_id: String,
        #[source]
        source: AwsError,
    },
    #[error("report of run {run_id}: {source}")]
    TooLarge {
        run_id: String,
        #[source]
        source: TooLarge,
    },
}

impl Classified for HandlerError {
    fn error_type(&self) -> &'static str {
        match self {
            _ if denial_in(self).is_some() => ACCESS_DENIED_ERROR_TYPE,
            HandlerError::MalformedEvent { .. } => "MalformedEvent",
            HandlerError::UnsupportedEvent { .. } => "UnsupportedEvent",
            HandlerError::Policy(e) => e.error_type(),
            HandlerError::Gather { source, .. } if source.is_gone() => "RunGone",
            HandlerError::Gather { .. } => "RunUnreadable",
            HandlerError::InProgress { .. } => "ReportInProgress",
            HandlerError::Idempotency(_) => "IdempotencyStoreFailed",
            HandlerError::Publish { .. } => "PublishFailed",
            HandlerError::TooLarge { .. } => "ReportTooLarge",
        }
    }

    fn retry(&self) -> Retry {
        match self {
            _ if denial_in(self).is_some() => Retry::Permanent,
            HandlerError::MalformedEvent { .. }
            | HandlerError::UnsupportedEvent { .. }
            | HandlerError::TooLarge { .. } => Retry::Permanent,
            HandlerError::Policy(PolicySourceError::Read { source, .. }) => source.retry(),
            // Invalid and no last known good policy stored: keep the event for a redrive.
            HandlerError::Policy(_) => Retry::Transient,
            HandlerError::InProgress { .. } => Retry::Transient,
            HandlerError::Gather { source, .. }
            | HandlerError::Publish { source, .. }
            | HandlerError::Idempotency(source) => source.retry(),
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
pub async fn invoke(
    n: &Notifier,
    payload: Value,
    deadline: SystemTime,
) -> Result<Value, Diagnostic> {
    settle(FUNCTION, handle(n, payload, deadline).await).map_err(
        |TransientFailure {
             error_type,
             error_message,
         }| Diagnostic {
            error_type: error_type.to_string(),
            error_message,
        },
    )
}

/// What happened to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The report was published.
    Published,
    /// The run was already reported (a duplicate delivery).
    Duplicate,
    /// `notify_on: failure` and the run had no failure.
    Suppressed,
    /// Not a run patchpilot reports (see `reason`).
    Ignored,
}

/// The handler's answer (also logged).
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_bytes: Option<usize>,
    pub truncated: bool,
    pub aws_calls: CallSummary,
}

impl Response {
    fn new(outcome: Outcome, run_id: Option<&str>, calls: &CallLog) -> Response {
        Response {
            outcome,
            run_id: run_id.map(str::to_string),
            reason: None,
            status: None,
            subject: None,
            message_id: None,
            message_bytes: None,
            truncated: false,
            aws_calls: calls.summary(),
        }
    }

    fn ignored(run_id: Option<&str>, reason: String, calls: &CallLog) -> Response {
        info!(run_id = run_id.unwrap_or("-"), reason = %reason, "event ignored");
        Response {
            reason: Some(reason),
            ..Response::new(Outcome::Ignored, run_id, calls)
        }
    }
}

/// `detail` of `Maintenance Window Execution State-change Notification`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WindowExecutionDetail {
    pub window_id: String,
    pub window_execution_id: String,
    pub status: String,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
}

/// `detail` of `EC2 Command Status-change Notification`. Our own struct: every parameter
/// value is an array of strings in real events, which `aws_lambda_events`' type does not
/// model.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommandStatusDetail {
    pub command_id: String,
    pub document_name: String,
    pub status: String,
    #[serde(default)]
    pub requested_date_time: Option<String>,
    #[serde(default)]
    pub expire_after: Option<String>,
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, Vec<String>>,
}

fn detail<T: serde::de::DeserializeOwned>(
    detail_type: &str,
    value: Value,
) -> Result<T, HandlerError> {
    serde_json::from_value(value).map_err(|e| HandlerError::MalformedEvent {
        detail_type: detail_type.to_string(),
        reason: format!("detail: {e}"),
    })
}

/// Handle one event. `deadline` is the invocation's (the claim on the run expires with it).
pub async fn handle(
    n: &Notifier,
    payload: Value,
    deadline: SystemTime,
) -> Result<Response, HandlerError> {
    let calls = CallLog::new();
    let event: EventBridgeEvent<Value> =
        serde_json::from_value(payload).map_err(|e| HandlerError::MalformedEvent {
            detail_type: "(unknown)".to_string(),
            reason: format!("not an EventBridge event: {e}"),
        })?;
    let response = match event.detail_type.as_str() {
        WINDOW_EXECUTION => {
            let d: WindowExecutionDetail = detail(WINDOW_EXECUTION, event.detail)?;
            window_event(n, d, deadline, &calls).await?
        }
        COMMAND_STATUS => {
            let d: CommandStatusDetail = detail(COMMAND_STATUS, event.detail)?;
            command_event(n, d, deadline, &calls).await?
        }
        other => {
            return Err(HandlerError::UnsupportedEvent {
                detail_type: other.to_string(),
            })
        }
    };
    info!(
        outcome = ?response.outcome,
        run_id = response.run_id.as_deref().unwrap_or("-"),
        calls = %response.aws_calls,
        "done"
    );
    Ok(response)
}

fn environments(policy: &Policy) -> Vec<&str> {
    policy
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect()
}

async fn window_event(
    n: &Notifier,
    d: WindowExecutionDetail,
    deadline: SystemTime,
    calls: &CallLog,
) -> Result<Response, HandlerError> {
    let run_id = d.window_execution_id.clone();
    if !WINDOW_TERMINAL.contains(&d.status.as_str()) {
        return Ok(Response::ignored(
            Some(&run_id),
            format!("window execution is {}, not finished", d.status),
            calls,
        ));
    }
    let loaded = n.policy.get(calls).await?;
    let policy = &loaded.policy;
    let runs = Runs::new(&n.ssm, &n.ec2, calls, &policy.tag_key);
    let gather = |source| HandlerError::Gather {
        run_id: run_id.clone(),
        source,
    };
    let window = runs.window(&d.window_id).await.map_err(gather)?;
    let Some(environment) = window
        .environment_if_owned(&n.owner, &environments(policy))
        .map(str::to_string)
    else {
        return Ok(Response::ignored(
            Some(&run_id),
            format!(
                "maintenance window {} ({}) is not this stack's: it belongs to {}, and this stack reports windows tagged {} or unmarked windows named {} for an environment of the policy",
                window.window_id,
                window.name,
                n.owner.ownership(window.marker.as_deref()).describe(),
                n.owner,
                names::window_name("<environment>")
            ),
            calls,
        ));
    };
    report_once(n, &loaded, &run_id, deadline, calls, || async {
        let mut report = runs.window_report(&window, &environment, &run_id).await?;
        if let Some((reader, store)) = &n.promotion {
            report.promotion =
                promotion::after_run(reader, store, policy, &environment, &report, calls).await?;
        }
        Ok(report)
    })
    .await
}

async fn command_event(
    n: &Notifier,
    d: CommandStatusDetail,
    deadline: SystemTime,
    calls: &CallLog,
) -> Result<Response, HandlerError> {
    let run_id = d.command_id.clone();
    if d.document_name != DOCUMENT {
        return Ok(Response::ignored(
            Some(&run_id),
            format!("document {} is not {DOCUMENT}", d.document_name),
            calls,
        ));
    }
    if !COMMAND_TERMINAL.contains(&d.status.as_str()) {
        return Ok(Response::ignored(
            Some(&run_id),
            format!("command is {}, not finished", d.status),
            calls,
        ));
    }
    let loaded = n.policy.get(calls).await?;
    let policy = &loaded.policy;
    let runs = Runs::new(&n.ssm, &n.ec2, calls, &policy.tag_key);
    let gather = |source| HandlerError::Gather {
        run_id: run_id.clone(),
        source,
    };
    let command = runs.command(&run_id).await.map_err(gather)?;
    // A patchpilot window's own commands are reported once, with the window's execution.
    let window_names: BTreeSet<String> = environments(policy)
        .into_iter()
        .map(names::window_name)
        .collect();
    if let Some(execution) = runs
        .window_execution_of(&command, &window_names)
        .await
        .map_err(gather)?
    {
        return Ok(Response::ignored(
            Some(&run_id),
            format!(
                "sent by maintenance window execution {execution}, which is reported as a whole"
            ),
            calls,
        ));
    }
    let envs = environments(policy);
    report_once(n, &loaded, &run_id, deadline, calls, || async {
        runs.command_report(&command, &envs).await
    })
    .await
}

/// Claim → gather → log → publish (or suppress) → complete; the claim is released when
/// gathering or publishing fails, so the retry can report at once.
async fn report_once<F, Fut>(
    n: &Notifier,
    loaded: &LoadedPolicy,
    run_id: &str,
    deadline: SystemTime,
    calls: &CallLog,
    gather: F,
) -> Result<Response, HandlerError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<RunReport, AwsError>>,
{
    let now = Utc::now();
    let until = DateTime::<Utc>::from(deadline);
    let until = if until > now {
        until
    } else {
        now + chrono::Duration::from_std(DEFAULT_CLAIM).unwrap_or(chrono::Duration::minutes(2))
    };
    match n
        .idempotency
        .claim(run_id, now, until, calls)
        .await
        .map_err(HandlerError::Idempotency)?
    {
        Claim::Acquired => {}
        Claim::Completed => {
            info!(run_id = %run_id, "already reported; duplicate delivery ignored");
            return Ok(Response::new(Outcome::Duplicate, Some(run_id), calls));
        }
        Claim::InProgress { until } => {
            return Err(HandlerError::InProgress {
                run_id: run_id.to_string(),
                until,
            })
        }
    }
    let policy = &loaded.policy;
    let report = match gather().await {
        Ok(mut r) => {
            r.policy = Some(loaded.label());
            r
        }
        Err(source) => {
            release(n, run_id, calls).await;
            return Err(HandlerError::Gather {
                run_id: run_id.to_string(),
                source,
            });
        }
    };
    log_full_report(&report);
    let status = report.status();
    if policy.notifications.notify_on == NotifyOn::Failure && status != RunStatus::Failed {
        n.idempotency
            .complete(run_id, Utc::now(), None, calls)
            .await
            .map_err(HandlerError::Idempotency)?;
        let mut r = Response::new(Outcome::Suppressed, Some(run_id), calls);
        r.status = Some(status);
        r.reason = Some("notify_on: failure, and the run had no failure".to_string());
        return Ok(r);
    }
    let message = match report.fit(&policy.notifications.subject_prefix, SNS_MAX_MESSAGE_BYTES) {
        Ok(m) => m,
        Err(source) => {
            release(n, run_id, calls).await;
            return Err(HandlerError::TooLarge {
                run_id: run_id.to_string(),
                source,
            });
        }
    };
    let message_id = match n.topic.publish(&message, calls).await {
        Ok(id) => id,
        Err(source) => {
            release(n, run_id, calls).await;
            return Err(HandlerError::Publish {
                run_id: run_id.to_string(),
                source,
            });
        }
    };
    // The mail is out. Failing to record that only risks a second mail on a redelivery.
    if let Err(e) = n
        .idempotency
        .complete(run_id, Utc::now(), Some(&message_id), calls)
        .await
    {
        warn!(run_id = %run_id, error = %e, "report published but not recorded as completed; a redelivery after the claim expires would send it again");
    }
    Ok(Response {
        status: Some(status),
        subject: Some(message.subject.clone()),
        message_id: Some(message_id),
        message_bytes: Some(message.size()),
        truncated: message.truncated,
        ..Response::new(Outcome::Published, Some(run_id), calls)
    })
}

async fn release(n: &Notifier, run_id: &str, calls: &CallLog) {
    if let Err(e) = n.idempotency.release(run_id, calls).await {
        warn!(run_id = %run_id, error = %e, "claim not released; a retry waits until it expires");
    }
}

/// The full report, in log lines CloudWatch Logs keeps whole: the summary with the first
/// lists, then every instance in chunks.
fn log_full_report(report: &RunReport) {
    use patchpilot::report::Keep;
    let summary = report.json(Keep {
        failed: 0,
        reboot_pending: 0,
        patched: 0,
        missed: 0,
    });
    info!(run_id = %report.run.run_id(), report = %summary, "run report (summary)");
    let parts = report.instances.len().div_ceil(LOG_CHUNK).max(1);
    for (k, chunk) in report.instances.chunks(LOG_CHUNK).enumerate() {
        let json = serde_json::to_string(chunk).unwrap_or_default();
        info!(run_id = %report.run.run_id(), part = k + 1, parts, instances = %json, "run report (instances)");
    }
    if !report.missed.is_empty() {
        let json = serde_json::to_string(&report.missed).unwrap_or_default();
        info!(run_id = %report.run.run_id(), missed = %json, "run report (missed targets)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(file: &str) -> Value {
        let text = match file {
            "window-execution-success" => {
                include_str!("../../../events/run-notifier/window-execution-success.json")
            }
            "window-execution-failed" => {
                include_str!("../../../events/run-notifier/window-execution-failed.json")
            }
            "command-success" => include_str!("../../../events/run-notifier/command-success.json"),
            "command-failed" => include_str!("../../../events/run-notifier/command-failed.json"),
            "window-execution-in-progress" => {
                include_str!("../../../events/lookalikes/window-execution-in-progress.json")
            }
            "command-run-shell-script" => {
                include_str!("../../../events/lookalikes/command-run-shell-script.json")
            }
            "command-in-progress" => {
                include_str!("../../../events/lookalikes/command-in-progress.json")
            }
            other => panic!("no event file {other}"),
        };
        serde_json::from_str(text).expect("event files are JSON")
    }

    fn parts(v: Value) -> (String, Value) {
        let e: EventBridgeEvent<Value> = serde_json::from_value(v).expect("envelope");
        (e.detail_type, e.detail)
    }

    #[test]
    fn window_execution_events_parse() {
        for f in ["window-execution-success", "window-execution-failed"] {
            let (t, d) = parts(event(f));
            assert_eq!(t, WINDOW_EXECUTION);
            let d: WindowExecutionDetail = detail(&t, d).expect("detail parses");
            assert_eq!(d.window_id, "mw-0ed7251d3fcf6e0c2");
            assert!(WINDOW_TERMINAL.contains(&d.status.as_str()));
        }
        let (t, d) = parts(event("window-execution-in-progress"));
        let d: WindowExecutionDetail = detail(&t, d).expect("detail parses");
        assert!(!WINDOW_TERMINAL.contains(&d.status.as_str()));
    }

    #[test]
    fn command_events_parse_with_array_parameters() {
        let (t, d) = parts(event("command-failed"));
        assert_eq!(t, COMMAND_STATUS);
        let d: CommandStatusDetail = detail(&t, d).expect("detail parses");
        assert_eq!(d.document_name, DOCUMENT);
        assert_eq!(d.status, "Failed");
        assert_eq!(d.parameters["Operation"], ["Install"]);
        let (t, d) = parts(event("command-success"));
        let d: CommandStatusDetail = detail(&t, d).expect("detail parses");
        assert_eq!(d.status, "Success");
        let (t, d) = parts(event("command-run-shell-script"));
        let d: CommandStatusDetail = detail(&t, d).expect("detail parses");
        assert_ne!(d.document_name, DOCUMENT);
        let (t, d) = parts(event("command-in-progress"));
        let d: CommandStatusDetail = detail(&t, d).expect("detail parses");
        assert!(!COMMAND_TERMINAL.contains(&d.status.as_str()));
    }

    #[test]
    fn a_detail_without_its_id_is_a_malformed_event_naming_the_field() {
        let mut v = event("window-execution-failed");
        if let Some(d) = v.get_mut("detail").and_then(Value::as_object_mut) {
            d.remove("window-execution-id");
        }
        let (t, d) = parts(v);
        let err = detail::<WindowExecutionDetail>(&t, d).expect_err("missing id");
        assert!(err.to_string().contains("window-execution-id"), "{err}");
        let diag = Diagnostic::from(err);
        assert_eq!(diag.error_type, "MalformedEvent");
    }

    #[test]
    fn errors_map_to_meaningful_error_types() {
        let e = HandlerError::InProgress {
            run_id: "r".into(),
            until: Utc::now(),
        };
        assert_eq!(Diagnostic::from(e).error_type, "ReportInProgress");
        let e = HandlerError::UnsupportedEvent {
            detail_type: "Scheduled Event".into(),
        };
        let d = Diagnostic::from(e);
        assert_eq!(d.error_type, "UnsupportedEvent");
        assert!(d.error_message.contains("Scheduled Event"));
    }

    #[test]
    fn a_denied_publish_is_reported_as_access_denied() {
        let e = HandlerError::Publish {
            run_id: "r-1".into(),
            source: patchpilot::aws::AwsError::from_parts(
                patchpilot::aws::Service::Sns,
                "Publish",
                Some("AuthorizationError".into()),
                "User: arn:aws:sts::1:assumed-role/r/f is not authorized to perform: SNS:Publish on resource: arn:aws:sns:eu-west-1:1:patchpilot-reports because no identity-based policy allows the SNS:Publish action".into(),
            ),
        };
        let d: Diagnostic = e.into();
        assert_eq!(d.error_type, "AccessDenied");
        assert!(
            d.error_message.contains(
                "permission denied: SNS:Publish on arn:aws:sns:eu-west-1:1:patchpilot-reports"
            ),
            "{}",
            d.error_message
        );
    }

    #[test]
    fn the_topic_and_table_are_required() {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let env: std::collections::BTreeMap<String, String> = [(
            "TOPIC_ARN".to_string(),
            "arn:aws:sns:eu-west-1:1:t".to_string(),
        )]
        .into();
        let err = Notifier::from_settings(&config, Settings::from_map(&env))
            .err()
            .expect("no table");
        assert!(err.to_string().contains("IDEMPOTENCY_TABLE"), "{err}");
    }
}
