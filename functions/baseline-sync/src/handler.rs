//! baseline-sync handler: which trigger → which kind of sync.
//!
//! | trigger | payload | sync |
//! |---|---|---|
//! | EventBridge schedule | `Scheduled Event` (source `aws.events`) | apply + sweep |
//! | policy parameter changed | `Parameter Store Change` (source `aws.ssm`) | re-read the policy now, apply + sweep |
//! | manual invoke | `{"dry_run": true}` / `{}` | plan only / apply + sweep |
//!
//! Every run, dry or not, ends with the fleet's coverage (`patchpilot::coverage`): logged as
//! one record (counts per verdict, the uncovered hosts) and returned in the result. A run
//! that is not dry then publishes one coverage message on the report topic when the set of
//! uncovered hosts differs from the last message's (`patchpilot::coverage_notice`; the last
//! one is remembered in the idempotency table), including once when every host is covered
//! again.
//!
//! The policy: a valid one is remembered as the last known good policy (item
//! `policy#<stack>` of the idempotency table, with its version and hash; written only when it
//! changed), which auto-tagger and run-notifier fall back to. An invalid one changes nothing
//! and is reported in **one** message on the report topic (`type=policy`, every problem
//! listed, once per invalid text), and the invocation ends without error: a retry would read
//! the same text.
//!
//! Failures are classified (`patchpilot::failure`): an unsupported event, an invalid policy,
//! conflicts with another owner's resources and IAM denials are permanent (logged with their
//! `errorType`, counted, not retried); failed AWS calls are as their error says (throttling,
//! 5xx, timeouts transient).

use std::time::Duration;

use aws_config::SdkConfig;
use lambda_runtime::Diagnostic;
use patchpilot::aws::coverage::CoverageReader;
use patchpilot::aws::coverage_notice::{CoverageNoticeError, CoverageNotifier, NoticeOutcome};
use patchpilot::aws::ec2::Ec2Fleet;
use patchpilot::aws::last_good::{InvalidPolicy, LastGoodStore, PolicyInvalidNotifier};
use patchpilot::aws::managed::ManagedInstances;
use patchpilot::aws::patching::Outcome;
use patchpilot::aws::policy_source::{PolicySource, PolicySourceError};
use patchpilot::aws::promotion::{self, PromotionStore};
use patchpilot::aws::{denial_in, AwsError, CallLog, ACCESS_DENIED_ERROR_TYPE};
use patchpilot::failure::{retry_in, settle, Classified, Retry, TransientFailure};
use patchpilot::fleet::FleetAdapters;
use patchpilot::names::Owner;
use patchpilot::plan::Deployment;
use patchpilot::policy::Policy;
use patchpilot::settings::Settings;
use patchpilot::sync::{self, SyncError, SyncOptions, SyncResult};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;
use tracing::{error, info, warn};

/// Everything built once per cold start.
pub struct Syncer {
    ssm: aws_sdk_ssm::Client,
    fleet: FleetAdapters<Ec2Fleet, ManagedInstances>,
    coverage: CoverageReader,
    /// The coverage message (`TOPIC_ARN`, `IDEMPOTENCY_TABLE`); `None` when either is unset.
    notice: Option<CoverageNotifier>,
    /// The invalid-policy message (same settings).
    invalid_notice: Option<PolicyInvalidNotifier>,
    policy: PolicySource,
    deployment: Deployment,
    /// The stack whose resources (`patchpilot:managed=<stack>`) this syncer manages.
    owner: Owner,
    /// The promotion states in the output bucket (`patchpilot::promotion`); `None` without
    /// an output bucket (a promoted environment is then held).
    promotions: Option<PromotionStore>,
}

impl Syncer {
    /// From `settings` (`Settings::from_env()` in Lambda): policy parameter and cache, stack,
    /// deployed tag key, output bucket and window role.
    pub fn from_settings(config: &SdkConfig, settings: Settings) -> Syncer {
        // One client per service (each construction is cold-start time).
        let ssm = patchpilot::aws::ssm_client(config);
        let dynamodb = settings
            .idempotency_table
            .as_ref()
            .map(|_| patchpilot::aws::dynamodb_client(config));
        let mut policy = PolicySource::from_settings(ssm.clone(), &settings);
        if let (Some(table), Some(dynamodb)) = (&settings.idempotency_table, &dynamodb) {
            // Kept here, never fallen back to: an invalid policy changes nothing.
            policy = policy.with_last_good(
                LastGoodStore::new(dynamodb.clone(), table, &settings.owner),
                false,
            );
        }
        let mut syncer =
            Syncer::build(config, policy, ssm, settings.deployment).with_owner(settings.owner);
        match (&settings.topic_arn, &settings.idempotency_table, dynamodb) {
            (Some(topic), Some(table), Some(dynamodb)) => {
                let sns = patchpilot::aws::sns_client(config);
                syncer.notice = Some(CoverageNotifier::from_clients(
                    sns.clone(),
                    dynamodb.clone(),
                    topic,
                    table,
                    &syncer.owner,
                ));
                syncer.invalid_notice = Some(PolicyInvalidNotifier::from_clients(
                    sns,
                    dynamodb,
                    topic,
                    table,
                    &syncer.owner,
                ));
            }
            _ => warn!(
                "TOPIC_ARN or IDEMPOTENCY_TABLE is not set (template.yaml sets both for baseline-sync): coverage changes are logged, not published"
            ),
        }
        syncer
    }

    /// For tests: an explicit policy parameter and deployment settings.
    pub fn with(
        config: &SdkConfig,
        policy_parameter: Option<String>,
        deployment: Deployment,
    ) -> Syncer {
        let ssm = patchpilot::aws::ssm_client(config);
        let policy = PolicySource::new(ssm.clone(), policy_parameter, Duration::from_secs(60));
        Syncer::build(config, policy, ssm, deployment)
    }

    fn build(
        config: &SdkConfig,
        policy: PolicySource,
        ssm: aws_sdk_ssm::Client,
        deployment: Deployment,
    ) -> Syncer {
        let ec2 = patchpilot::aws::ec2_client(config);
        Syncer {
            policy,
            fleet: FleetAdapters {
                ec2: Ec2Fleet::from_client(ec2.clone()),
                managed: ManagedInstances::from_client(ssm.clone()),
            },
            coverage: CoverageReader::from_clients(ssm.clone(), ec2),
            notice: None,
            invalid_notice: None,
            ssm,
            promotions: deployment
                .output_bucket
                .as_deref()
                .filter(|b| !b.is_empty())
                .map(|b| PromotionStore::new(config, b)),
            deployment,
            owner: Owner::default(),
        }
    }

    /// The same syncer for another stack.
    pub fn with_owner(mut self, owner: Owner) -> Syncer {
        self.owner = owner;
        self
    }

    /// The stack this syncer manages.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }
}

#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("unsupported event: {0}. baseline-sync accepts an EventBridge `Scheduled Event`, a `Parameter Store Change` of the policy parameter, or a manual `{{\"dry_run\": true}}` / `{{}}`")]
    UnsupportedEvent(String),
    #[error(transparent)]
    Policy(#[from] PolicySourceError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("the sync was applied, but {0}")]
    CoverageNotice(#[source] Box<CoverageNoticeError>),
    #[error("forced promotion refused, nothing changed: {0}")]
    Promotion(String),
    #[error("{policy}; and its message could not be published: {source}")]
    InvalidPolicyNotice {
        policy: Box<PolicySourceError>,
        #[source]
        source: AwsError,
    },
    #[error("the policy is valid, but remembering it as the last known good policy failed: {0}")]
    LastGood(#[source] AwsError),
    #[error("sync incomplete: {failed} change(s) failed or were skipped{}, {conflicts} conflict(s); first: {first}. Everything else was applied; see the logged result", if *access_denied > 0 { format!(" ({access_denied} denied by IAM)") } else { String::new() })]
    Incomplete {
        failed: usize,
        /// Failed changes IAM denied: the role in template.yaml lacks a permission.
        access_denied: usize,
        conflicts: usize,
        first: String,
    },
}

impl Classified for HandlerError {
    fn error_type(&self) -> &'static str {
        match self {
            _ if denial_in(self).is_some() => ACCESS_DENIED_ERROR_TYPE,
            HandlerError::Incomplete { access_denied, .. } if *access_denied > 0 => {
                ACCESS_DENIED_ERROR_TYPE
            }
            HandlerError::UnsupportedEvent(_) => "UnsupportedEvent",
            HandlerError::Policy(e) => e.error_type(),
            HandlerError::InvalidPolicyNotice { .. } => "PolicyInvalidNotPublished",
            HandlerError::LastGood(_) => "LastGoodPolicyNotStored",
            HandlerError::Sync(SyncError::Observe(_)) => "SsmUnreadable",
            HandlerError::Sync(SyncError::Sweep(_)) => "SweepFailed",
            HandlerError::Sync(SyncError::Coverage(_)) => "CoverageUnreadable",
            HandlerError::CoverageNotice(_) => "CoverageNotPublished",
            HandlerError::Promotion(_) => "PromotionRefused",
            HandlerError::Incomplete {
                failed: 0,
                conflicts,
                ..
            } if *conflicts > 0 => "Conflict",
            HandlerError::Incomplete { .. } => "SyncIncomplete",
        }
    }

    fn retry(&self) -> Retry {
        match self {
            _ if denial_in(self).is_some() => Retry::Permanent,
            HandlerError::UnsupportedEvent(_) => Retry::Permanent,
            // Nothing to force: the same request is refused the same way.
            HandlerError::Promotion(_) => Retry::Permanent,
            // Reported in its message; a retry would read the same text.
            HandlerError::Policy(e) if e.is_invalid() => Retry::Permanent,
            // Every failed change denied by IAM, or nothing failed but conflicts with another
            // owner's resources: the same run fails the same way.
            HandlerError::Incomplete {
                failed,
                access_denied,
                ..
            } if *failed == *access_denied => Retry::Permanent,
            HandlerError::Incomplete { .. } => Retry::Transient,
            other => retry_in(other),
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

/// The function's name in logs and metrics.
pub const FUNCTION: &str = "baseline-sync";

/// One Lambda invocation: [`handle`], then a permanent failure ends it without error
/// (logged, counted) and a transient one fails it so that Lambda retries.
pub async fn invoke(syncer: &Syncer, event: Value) -> Result<Value, Diagnostic> {
    settle(FUNCTION, handle(syncer, event).await).map_err(
        |TransientFailure {
             error_type,
             error_message,
         }| Diagnostic {
            error_type: error_type.to_string(),
            error_message,
        },
    )
}

/// A manual invocation: `{}` or `{"dry_run": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manual {
    #[serde(default)]
    dry_run: bool,
    /// Skip the fleet tag sweep (default: sweep).
    #[serde(default = "yes")]
    sweep: bool,
    /// `"force"`: promote the manifest a held environment waits on, then sync.
    #[serde(default)]
    promote: Option<Promote>,
    /// With `promote`: the promoted environment (default: every held one).
    #[serde(default)]
    environment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Promote {
    Force,
}

fn yes() -> bool {
    true
}

/// What the event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub kind: &'static str,
    pub options: SyncOptions,
    /// Re-read the policy now instead of using the warm cache.
    pub fresh_policy: bool,
    /// `{"promote": "force"}`: `Some(None)` every held environment, `Some(Some(env))` one.
    pub force_promotion: Option<Option<String>>,
}

pub fn trigger(event: &Value) -> Result<Trigger, HandlerError> {
    let Some(obj) = event.as_object() else {
        return Err(HandlerError::UnsupportedEvent(format!(
            "payload is {event}, not a JSON object"
        )));
    };
    match (
        obj.get("source").and_then(Value::as_str),
        obj.get("detail-type").and_then(Value::as_str),
    ) {
        (Some("aws.events"), Some("Scheduled Event")) => Ok(Trigger {
            kind: "schedule",
            options: SyncOptions {
                dry_run: false,
                sweep: true,
            },
            fresh_policy: false,
            force_promotion: None,
        }),
        (Some("aws.ssm"), Some("Parameter Store Change")) => Ok(Trigger {
            kind: "policy-change",
            options: SyncOptions {
                dry_run: false,
                sweep: true,
            },
            fresh_policy: true,
            force_promotion: None,
        }),
        // run-notifier wrote a promotion state (S3 EventBridge notification, template.yaml):
        // apply it now rather than at the next scheduled sync. The rule admits only
        // `…/state.json`; any other object (a manifest, Run Command output) is not ours to act on.
        (Some("aws.s3"), Some("Object Created")) => {
            let key = event
                .pointer("/detail/object/key")
                .and_then(Value::as_str)
                .unwrap_or("(no detail.object.key)");
            let is_state = key
                .strip_prefix(patchpilot::promotion::PREFIX)
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|rest| rest.strip_suffix("/state.json"))
                .is_some_and(|env| !env.is_empty() && !env.contains('/'));
            if !is_state {
                return Err(HandlerError::UnsupportedEvent(format!(
                    "S3 Object Created for `{key}`, not a promotion state \
                     ({}/<environment>/state.json)",
                    patchpilot::promotion::PREFIX
                )));
            }
            Ok(Trigger {
                kind: "promotion",
                options: SyncOptions {
                    dry_run: false,
                    sweep: false,
                },
                fresh_policy: false,
                force_promotion: None,
            })
        }
        (Some(source), detail_type) => Err(HandlerError::UnsupportedEvent(format!(
            "source `{source}`, detail-type `{}`",
            detail_type.unwrap_or("(none)")
        ))),
        (None, _) => {
            let manual: Manual = serde_json::from_value(event.clone()).map_err(|e| {
                HandlerError::UnsupportedEvent(format!("manual invocation {event}: {e}"))
            })?;
            Ok(Trigger {
                kind: if manual.dry_run {
                    "manual-dry-run"
                } else {
                    "manual"
                },
                options: SyncOptions {
                    dry_run: manual.dry_run,
                    sweep: manual.sweep,
                },
                fresh_policy: true,
                force_promotion: manual.promote.map(|Promote::Force| manual.environment),
            })
        }
    }
}

/// Handle one invocation; the result JSON is also logged as one structured record.
pub async fn handle(syncer: &Syncer, event: Value) -> Result<SyncResult, HandlerError> {
    let trigger = trigger(&event).inspect_err(|e| error!(error = %e, "rejected event"))?;
    let calls = CallLog::new();
    let policy = match if trigger.fresh_policy {
        syncer.policy.fetch(&calls).await
    } else {
        syncer.policy.get(&calls).await
    } {
        Ok(p) => p,
        Err(e) => {
            error!(error = %e, "policy unusable: nothing changed");
            if e.is_invalid() && !trigger.options.dry_run {
                return Err(report_invalid(syncer, e, &calls).await);
            }
            return Err(e.into());
        }
    };
    if !trigger.options.dry_run {
        if let Some(store) = syncer.policy.last_good() {
            store
                .remember(&policy.stored(), &calls)
                .await
                .map_err(HandlerError::LastGood)?;
        }
    }
    if let Some(which) = &trigger.force_promotion {
        force_promotions(syncer, &policy.policy, which.as_deref(), &calls)
            .await
            .inspect_err(|e| error!(error = %e, "forced promotion refused"))?;
    }
    let deployment = with_promotions(syncer, &policy.policy, &calls).await;
    let result = sync::run(
        &syncer.ssm,
        &syncer.fleet,
        &syncer.coverage,
        &syncer.owner,
        &policy,
        &deployment,
        trigger.options,
        &calls,
    )
    .await
    .inspect_err(|e| error!(error = %e, "sync failed"))?;
    let mut result = result;
    if let Some(notice) = &syncer.notice {
        result.coverage_notice = Some(if result.dry_run {
            NoticeOutcome::DryRun
        } else {
            let environments: Vec<String> = policy
                .policy
                .environments
                .iter()
                .map(|e| e.name.clone())
                .collect();
            notice
                .publish_if_changed(&result.coverage, &environments, &calls)
                .await
                .map_err(|e| HandlerError::CoverageNotice(Box::new(e)))
                .inspect_err(|e| error!(error = %e, "coverage message failed"))?
        });
        result.aws_calls = calls.summary();
    }
    let c = &result.counts;
    info!(
        trigger = trigger.kind,
        dry_run = result.dry_run,
        created = c.created,
        updated = c.updated,
        deleted = c.deleted,
        unchanged = c.unchanged,
        failed = c.failed,
        conflicts = c.conflicts,
        aws_reads = result.aws_calls.reads,
        aws_writes = result.aws_calls.writes,
        duration_ms = result.duration_ms,
        result = %serde_json::to_string(&result).unwrap_or_default(),
        "sync finished"
    );
    if !result.is_complete() {
        let denied = |a: &&patchpilot::aws::patching::AppliedChange| {
            matches!(
                a.outcome,
                Outcome::Failed {
                    access_denied: true,
                    ..
                }
            )
        };
        let access_denied = result.applied.iter().filter(denied).count();
        // A denial first: fixing the role is what the operator must do.
        let first = result
            .applied
            .iter()
            .find(denied)
            .or_else(|| {
                result
                    .applied
                    .iter()
                    .find(|a| !matches!(a.outcome, Outcome::Applied { .. }))
            })
            .map(|a| format!("{} ({:?})", a.line, a.outcome))
            .or_else(|| result.conflicts.first().map(|c| c.to_string()))
            .unwrap_or_default();
        return Err(HandlerError::Incomplete {
            failed: c.failed,
            access_denied,
            conflicts: c.conflicts,
            first,
        });
    }
    Ok(result)
}

/// `{"promote": "force"}`: every held promoted environment (or the one named) installs the
/// manifest it waits on. Refused, with nothing changed, when there is none to force.
async fn force_promotions(
    syncer: &Syncer,
    policy: &Policy,
    only: Option<&str>,
    calls: &CallLog,
) -> Result<(), HandlerError> {
    let Some(store) = &syncer.promotions else {
        return Err(HandlerError::Promotion(
            "OUTPUT_BUCKET is not set: there are no promotion states".to_string(),
        ));
    };
    let promoted: Vec<&str> = policy
        .environments
        .iter()
        .filter(|e| e.approval.promotes_from().is_some())
        .map(|e| e.name.as_str())
        .filter(|e| only.is_none_or(|o| o == *e))
        .collect();
    if promoted.is_empty() {
        return Err(HandlerError::Promotion(match only {
            Some(e) => format!("`{e}` is not an environment with approval mode: promote"),
            None => "no environment of the policy has approval mode: promote".to_string(),
        }));
    }
    let mut forced = 0;
    let mut refusals = Vec::new();
    for env in promoted {
        match promotion::force(
            store,
            env,
            "baseline-sync invocation {\"promote\": \"force\"}",
            calls,
        )
        .await
        {
            Ok(state) => {
                info!(environment = env, state = %state.describe(), "promotion forced");
                forced += 1;
            }
            Err(e) => refusals.push(format!("{env}: {e}")),
        }
    }
    if forced == 0 {
        return Err(HandlerError::Promotion(refusals.join("; ")));
    }
    Ok(())
}

/// The deployment with each promoted environment's state (an unreadable one holds it).
async fn with_promotions(syncer: &Syncer, policy: &Policy, calls: &CallLog) -> Deployment {
    let mut deployment = syncer.deployment.clone();
    for env in policy
        .environments
        .iter()
        .filter(|e| e.approval.promotes_from().is_some())
    {
        let Some(store) = &syncer.promotions else {
            deployment
                .promotion_errors
                .insert(env.name.clone(), "OUTPUT_BUCKET is not set".to_string());
            continue;
        };
        match store.read_state(&env.name, calls).await {
            Ok(Some(state)) => {
                info!(environment = %env.name, state = %state.describe(), "promotion");
                deployment.promotions.insert(env.name.clone(), state);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(environment = %env.name, error = %e, "promotion state unreadable: held");
                deployment
                    .promotion_errors
                    .insert(env.name.clone(), e.to_string());
            }
        }
    }
    deployment
}

/// Publish the one message about an invalid policy (unless this text was reported before),
/// and answer the error to end with: the policy error (permanent: the message is out), or
/// the failed publish (retried as its AWS error says).
async fn report_invalid(syncer: &Syncer, e: PolicySourceError, calls: &CallLog) -> HandlerError {
    let Some(notice) = &syncer.invalid_notice else {
        return e.into();
    };
    let last_good = match syncer.policy.last_good() {
        Some(store) => store.read(calls).await.ok().flatten(),
        None => None,
    };
    let environments = last_good
        .as_ref()
        .and_then(|s| patchpilot::policy::Policy::load(&s.text, chrono::Utc::now()).ok())
        .map(|(p, _)| p.environments.iter().map(|e| e.name.clone()).collect())
        .unwrap_or_default();
    let invalid = InvalidPolicy {
        policy: invalid_label(syncer, &e),
        sha256: e.sha256().unwrap_or_default().to_string(),
        problems: e.problems(),
        last_known_good: last_good.map(|s| s.label()),
        environments,
    };
    let prefix = patchpilot::policy::Policy::reference()
        .notifications
        .subject_prefix;
    match notice.publish_once(&invalid, &prefix, calls).await {
        Ok(message_id) => {
            info!(
                message_id = message_id.as_deref().unwrap_or("(sent before)"),
                problems = invalid.problems.len(),
                "invalid policy reported"
            );
            e.into()
        }
        Err(source) => HandlerError::InvalidPolicyNotice {
            policy: Box::new(e),
            source,
        },
    }
}

fn invalid_label(syncer: &Syncer, e: &PolicySourceError) -> String {
    let parameter = syncer.policy.parameter().unwrap_or("embedded");
    match e {
        PolicySourceError::Invalid {
            version, sha256, ..
        } => patchpilot::aws::last_good::label(parameter, Some(*version), sha256),
        other => patchpilot::aws::last_good::label(parameter, None, other.sha256().unwrap_or("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> Value {
        let text = match name {
            "scheduled" => include_str!("../../../events/baseline-sync/scheduled.json"),
            "parameter-change" => {
                include_str!("../../../events/baseline-sync/parameter-change.json")
            }
            "manual-dry-run" => include_str!("../../../events/baseline-sync/manual-dry-run.json"),
            "manual-apply" => include_str!("../../../events/baseline-sync/manual-apply.json"),
            "promotion-recorded" => {
                include_str!("../../../events/baseline-sync/promotion-recorded.json")
            }
            "manual-force-promotion" => {
                include_str!("../../../events/baseline-sync/manual-force-promotion.json")
            }
            other => panic!("no event file {other}"),
        };
        serde_json::from_str(text).expect("event files are JSON")
    }

    #[test]
    fn the_daily_schedule_applies_and_sweeps() {
        let t = trigger(&event("scheduled")).expect("accepted");
        assert_eq!(
            t.options,
            SyncOptions {
                dry_run: false,
                sweep: true
            }
        );
        assert!(!t.fresh_policy);
    }

    #[test]
    fn a_policy_edit_rereads_the_policy_and_applies() {
        let t = trigger(&event("parameter-change")).expect("accepted");
        assert_eq!(t.kind, "policy-change");
        assert!(t.fresh_policy && !t.options.dry_run);
    }

    #[test]
    fn manual_invocations_choose_dry_run_or_apply() {
        assert!(
            trigger(&event("manual-dry-run"))
                .expect("ok")
                .options
                .dry_run
        );
        assert!(!trigger(&event("manual-apply")).expect("ok").options.dry_run);
    }

    #[test]
    fn a_recorded_promotion_syncs_without_the_sweep() {
        let t = trigger(&event("promotion-recorded")).expect("accepted");
        assert_eq!(t.kind, "promotion");
        assert!(!t.options.dry_run && !t.options.sweep && t.force_promotion.is_none());
    }

    #[test]
    fn other_objects_in_the_bucket_are_rejected() {
        for file in [
            include_str!("../../../events/lookalikes/s3-promotion-manifest-created.json"),
            include_str!("../../../events/lookalikes/s3-run-command-output-created.json"),
        ] {
            let ev: Value = serde_json::from_str(file).expect("json");
            let e = trigger(&ev).expect_err("not a state").to_string();
            assert!(e.contains("not a promotion state"), "{e}");
        }
        let mut ev = event("promotion-recorded");
        ev["detail"]["object"]["key"] = Value::from("patchpilot/promotion/a/b/state.json");
        assert!(trigger(&ev).is_err());
        ev["detail"]["object"] = serde_json::json!({});
        assert!(trigger(&ev).is_err());
    }

    #[test]
    fn a_forced_promotion_names_every_held_environment_or_one() {
        let t = trigger(&event("manual-force-promotion")).expect("accepted");
        assert_eq!(t.force_promotion, Some(None));
        assert!(!t.options.dry_run);
        let t = trigger(&serde_json::json!({"promote": "force", "environment": "prod"}))
            .expect("accepted");
        assert_eq!(t.force_promotion, Some(Some("prod".to_string())));
        let e = trigger(&serde_json::json!({"promote": "yes"}))
            .expect_err("unknown value")
            .to_string();
        assert!(e.contains("force"), "{e}");
    }

    #[test]
    fn unknown_events_are_rejected_with_what_was_wrong() {
        let lookalike: Value = serde_json::from_str(include_str!(
            "../../../events/auto-tagger/ec2-state-running.json"
        ))
        .expect("json");
        let e = trigger(&lookalike)
            .expect_err("not for baseline-sync")
            .to_string();
        assert!(
            e.contains("aws.ec2") && e.contains("EC2 Instance State-change Notification"),
            "{e}"
        );
        let e = trigger(&serde_json::json!({"dryrun": true}))
            .expect_err("typo")
            .to_string();
        assert!(e.contains("dryrun"), "{e}");
        let e = trigger(&serde_json::json!([1, 2]))
            .expect_err("array")
            .to_string();
        assert!(e.contains("not a JSON object"), "{e}");
        let d: Diagnostic = HandlerError::UnsupportedEvent("x".into()).into();
        assert_eq!(d.error_type, "UnsupportedEvent");
    }

    fn denied(action: &'static str) -> patchpilot::aws::AwsError {
        patchpilot::aws::AwsError::from_parts(
            patchpilot::aws::Service::Ssm,
            action,
            Some("AccessDeniedException".to_string()),
            "not authorized".to_string(),
        )
    }

    #[test]
    fn a_denial_is_reported_as_access_denied() {
        let d: Diagnostic =
            HandlerError::Sync(SyncError::Observe(denied("DescribePatchBaselines"))).into();
        assert_eq!(d.error_type, "AccessDenied");
        assert!(
            d.error_message
                .contains("permission denied: ssm:DescribePatchBaselines"),
            "{}",
            d.error_message
        );
        let d: Diagnostic = HandlerError::Policy(PolicySourceError::Read {
            parameter: "/p".into(),
            source: denied("GetParameter"),
        })
        .into();
        assert_eq!(d.error_type, "AccessDenied");
        let d: Diagnostic = HandlerError::Incomplete {
            failed: 2,
            access_denied: 1,
            conflicts: 0,
            first: "x".into(),
        }
        .into();
        assert_eq!(d.error_type, "AccessDenied");
        assert!(
            d.error_message.contains("(1 denied by IAM)"),
            "{}",
            d.error_message
        );
        let d: Diagnostic = HandlerError::Incomplete {
            failed: 2,
            access_denied: 0,
            conflicts: 0,
            first: "x".into(),
        }
        .into();
        assert_eq!(d.error_type, "SyncIncomplete");
    }
}
