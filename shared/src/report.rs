//! The run report: what one patch run (a maintenance-window execution, or an
//! `AWS-RunPatchBaseline` command sent outside a window) did to each instance, and how it is
//! told — one SNS message with an email subject, a plain-text body read top-down, message
//! attributes for subscription filters and a JSON form for machine subscribers.
//!
//! Pure and synchronous: the adapters in `aws::runs` gather a [`RunReport`], this module
//! classifies and renders it. Nothing here knows about SNS beyond its documented limits:
//!
//! - Publish `Subject`: ASCII text that begins with a letter, number or punctuation mark, no
//!   line breaks or control characters, **less than 100 characters** (SNS Publish API
//!   reference; SNS rewrites a subject with non-ASCII characters), so the separator is `-`,
//!   not an em dash.
//! - Publish `Message`: at most 256 KB (262,144 bytes, not characters); with
//!   `MessageStructure=json` the whole JSON document (`default` + `email`) counts, and message
//!   attributes count towards the same limit. [`RunReport::fit`] keeps the message inside a
//!   byte budget by cutting the success list first (then reboot-pending, missed, failed),
//!   each with an explicit "… and N more (full report: s3://…)" marker.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::wording;

/// SNS Publish: "at most 256 KB in size (262,144 bytes, not 262,144 characters)".
pub const SNS_MAX_MESSAGE_BYTES: usize = 262_144;
/// The `type` message attribute of a run report.
pub const RUN_TYPE: &str = "run";
/// SNS Publish `Subject`: "must be less than 100 characters long".
pub const SNS_MAX_SUBJECT_CHARS: usize = 99;
/// Headroom under the SNS limit for the attribute names/types SNS adds to the size.
const SAFETY_BYTES: usize = 1_024;

/// What ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunKind {
    /// A maintenance-window execution (`Maintenance Window Execution State-change
    /// Notification`).
    Window {
        window_id: String,
        window_name: String,
        execution_id: String,
    },
    /// An `AWS-RunPatchBaseline` command sent outside a window ("patch now").
    Command { command_id: String },
}

impl RunKind {
    /// The id the run is known by (and deduplicated on): execution id or command id.
    pub fn run_id(&self) -> &str {
        match self {
            RunKind::Window { execution_id, .. } => execution_id,
            RunKind::Command { command_id } => command_id,
        }
    }
}

/// One batch of the run: a window task (in execution = priority order) or the single command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchRun {
    /// 1-based batch number (= task priority in patchpilot's windows).
    pub number: u32,
    /// The patch group(s) the batch targets, e.g. `patch_test_0600_batch_1`.
    pub name: String,
    /// Task execution status (`SUCCESS`, `FAILED`, …) or command status (`Success`, …).
    pub status: String,
    pub command_ids: Vec<String>,
    /// `ListCommands` counters, summed over the batch's commands.
    pub target_count: u32,
    pub error_count: u32,
    pub delivery_timed_out_count: u32,
    /// The batch's command status(es): `Success`, `Failed` (the error threshold was
    /// reached), `Incomplete` (some invocations did not succeed, below the threshold), …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command_statuses: Vec<String>,
    /// The task's `MaxErrors` (error threshold), e.g. `1` or `25%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<String>,
    /// The task execution's `StatusDetails`: why a task that sent no command did not run
    /// (e.g. "No Instances In Tag", an AccessDenied of its service role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<String>,
}

/// Patch counts of an instance after the run (`DescribeInstancePatchStates`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PatchCounts {
    pub installed: u32,
    pub installed_other: u32,
    pub installed_pending_reboot: u32,
    pub missing: u32,
    pub failed: u32,
    pub not_applicable: u32,
    /// `Install` or `Scan`.
    pub operation: String,
    pub operation_end: Option<DateTime<Utc>>,
}

/// One instance the run's command reached (a command invocation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceRun {
    pub instance_id: String,
    /// `Name` tag (EC2) or node name (on-prem), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub batch: u32,
    pub command_id: String,
    /// Invocation `Status`: `Success`, `Failed`, `TimedOut`, `Cancelled`, `Undeliverable`, …
    pub status: String,
    /// Invocation `StatusDetails`: `Success`, `Failed`, `DeliveryTimedOut`,
    /// `ExecutionTimedOut`, `Undeliverable`, `Terminated`, …
    pub status_details: String,
    /// The plugin's exit code (only fetched for failed invocations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code: Option<i32>,
    /// The output log in S3, as an S3 console link (see [`crate::console`]): a browser cannot
    /// open the `StandardOutputUrl` of a private bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// Why there is no log in S3 although the command names an output bucket (the agent's
    /// upload failed), when the invocation says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_missing: Option<String>,
    /// The Run Command console page with this instance's output of the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_url: Option<String>,
    /// When the invocation was requested (`RequestedDateTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patches: Option<PatchCounts>,
}

/// Why an instance of a targeted patch group was not patched at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "kebab-case")]
pub enum MissReason {
    /// EC2 instance not running (`stopped`, `stopping`, `pending`): windows only target
    /// running instances.
    NotRunning(String),
    /// Running, but SSM does not know it (no agent, no instance profile, no network path).
    NotManaged,
    /// SSM knows it but it is not online (`PingStatus` `ConnectionLost` / `Inactive`) and no
    /// invocation was made.
    Offline(String),
    /// The command could not be delivered (`Undeliverable`: the node is stopped or does not
    /// respond; `Delivery Timed Out`): it was sent, never ran.
    Undeliverable(String),
    /// The command was never sent to it: the batch's error threshold (`MaxErrors`) was reached
    /// first and Run Command cancelled the remaining invocations (`Terminated`, "Understanding
    /// command statuses").
    NotAttempted,
    /// Online, yet the run sent it no command (e.g. tagged after the run started).
    NotInvoked,
}

impl MissReason {
    /// The email's line for it; `at` is [`MissedTarget::at`]. Not running, not managed and
    /// offline read as the coverage verdicts of the same situations (`crate::wording`).
    pub fn describe(&self, at: Option<&DateTime<Utc>>) -> String {
        let when = || {
            at.map(|t| format!(" ({})", wording::time(t)))
                .unwrap_or_default()
        };
        match self {
            MissReason::NotRunning(state) => {
                format!(
                    "{}{}",
                    wording::not_running_through_window(state, None),
                    when()
                )
            }
            MissReason::NotManaged => format!("{}{}", wording::never_registered(), when()),
            // `at` is the last ping here: "since".
            MissReason::Offline(ping) => wording::connection_lost(ping, at),
            MissReason::Undeliverable(details) => {
                format!("command not delivered ({details}){}", when())
            }
            MissReason::NotAttempted => {
                format!("not attempted (error threshold reached){}", when())
            }
            MissReason::NotInvoked => format!("online, but the run sent it no command{}", when()),
        }
    }
}

/// An instance of a targeted patch group that the run did not reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissedTarget {
    pub instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_group: Option<String>,
    #[serde(flatten)]
    pub reason: MissReason,
    /// When it happened (the invocation's time, or when the instance stopped), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// How an instance that was reached came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The command failed, timed out while executing or was cancelled, or a patch failed.
    Failed,
    /// Patched, but installed patches wait for a reboot (`RebootOption=NoReboot`, or a reboot
    /// that did not happen).
    RebootPending,
    Patched,
    /// Reached by nobody: the invocation was never delivered (reported as a missed target).
    Missed,
}

impl InstanceRun {
    /// Classify: delivery problems are missed targets, not failures of the patching itself.
    pub fn outcome(&self) -> Outcome {
        let details = self.status_details.replace(' ', "");
        if matches!(
            details.as_str(),
            "DeliveryTimedOut" | "Undeliverable" | "Terminated" | "InvalidPlatform"
        ) || self.status == "Undeliverable"
        {
            return Outcome::Missed;
        }
        let patch_failed = self.patches.as_ref().is_some_and(|p| p.failed > 0);
        if self.status != "Success" || patch_failed {
            return Outcome::Failed;
        }
        if self
            .patches
            .as_ref()
            .is_some_and(|p| p.installed_pending_reboot > 0)
        {
            Outcome::RebootPending
        } else {
            Outcome::Patched
        }
    }

    /// Why an instance the run did not reach (see [`Outcome::Missed`]) was missed.
    fn miss_reason(&self) -> MissReason {
        if self.status_details.replace(' ', "") == "Terminated" {
            return MissReason::NotAttempted;
        }
        MissReason::Undeliverable(if self.status_details.is_empty() {
            self.status.clone()
        } else {
            self.status_details.clone()
        })
    }

    fn label(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => format!("{} ({n})", self.instance_id),
            _ => self.instance_id.clone(),
        }
    }

    /// Why it failed, in one line: status, exit code, patch counts.
    fn failure_reason(&self) -> String {
        let mut parts = Vec::new();
        if self.status == "Success" {
            parts.push("command succeeded".to_string());
        } else if self.status == "Cancelled" {
            parts.push(
                "command cancelled before it finished (the window's cutoff with CutoffBehavior CANCEL_TASK, or an operator)"
                    .to_string(),
            );
        } else if self.status_details.is_empty() || self.status_details == self.status {
            parts.push(format!("command {}", self.status));
        } else {
            parts.push(format!("command {} ({})", self.status, self.status_details));
        }
        if let Some(code) = self.response_code {
            parts.push(format!("exit code {code}"));
        }
        if let Some(p) = &self.patches {
            if p.failed > 0 {
                parts.push(format!("{} patch(es) failed to install", p.failed));
            }
            if p.missing > 0 {
                parts.push(format!("{} missing", p.missing));
            }
        } else {
            parts.push("no patch state reported".to_string());
        }
        parts.join(", ")
    }
}

/// Overall verdict, the `status` message attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Every targeted instance patched, nothing waits for a reboot.
    Success,
    /// Every targeted instance patched, some wait for a reboot.
    RebootPending,
    /// An instance failed or was missed, or the run itself did not complete.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "SUCCESS",
            RunStatus::RebootPending => "REBOOT_PENDING",
            RunStatus::Failed => "FAILED",
        }
    }
}

/// Everything known about one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub run: RunKind,
    /// Environment (`test`, `prod`); `unknown` when no patchpilot patch group says it.
    pub environment: String,
    /// When the run is scheduled (`06:00`, from the patch group) or `patch now`.
    pub label: String,
    /// Window execution status (`SUCCESS`, `FAILED`, `TIMED_OUT`, …) or command status.
    pub run_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_status_details: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// `AWS-RunPatchBaseline` Operation (`Install` / `Scan`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub batches: Vec<BatchRun>,
    pub instances: Vec<InstanceRun>,
    pub missed: Vec<MissedTarget>,
    /// Where the complete output lives: the Run Command output prefix in S3
    /// (`s3://bucket/prefix/<command-id>/` for one command, the prefix for several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_report: Option<String>,
    /// Promotion (`crate::promotion`): for a source environment's run, what the promoted
    /// environment will install or why it is held; for a promoted environment's run, each
    /// host against the manifest. One line each; empty when promotion does not apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotion: Vec<String>,
    /// Which policy the report was made with (parameter, version, hash; whether it is the
    /// last known good one): the footer's last line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// Counts of a run, as the subject and the summary line tell them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Instances of the targeted patch groups (reached + missed).
    pub targets: usize,
    /// Patched, including those waiting for a reboot.
    pub patched: usize,
    pub failed: usize,
    pub reboot_pending: usize,
    pub missed: usize,
}

/// How many entries of each list a rendering shows (the rest are counted in a marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub failed: usize,
    pub reboot_pending: usize,
    pub patched: usize,
    pub missed: usize,
}

impl Keep {
    pub const ALL: Keep = Keep {
        failed: usize::MAX,
        reboot_pending: usize::MAX,
        patched: usize::MAX,
        missed: usize::MAX,
    };
}

/// A message attribute (`String` or `Number`), for SNS subscription filter policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribute {
    pub data_type: &'static str,
    pub value: String,
}

/// The rendered SNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    /// `MessageStructure=json` document: `{"default": <report JSON>, "email": <text>}`.
    pub message: String,
    pub attributes: BTreeMap<String, Attribute>,
    /// The plain-text body (the `email` member).
    pub text: String,
    /// The JSON report (the `default` member).
    pub json: String,
    /// Whether any list was cut.
    pub truncated: bool,
}

impl Message {
    /// Bytes SNS counts against the 256 KB limit: message plus attribute names, types, values.
    pub fn size(&self) -> usize {
        self.message.len() + attributes_size(&self.attributes)
    }
}

fn attributes_size(attributes: &BTreeMap<String, Attribute>) -> usize {
    attributes
        .iter()
        .map(|(k, a)| k.len() + a.data_type.len() + a.value.len())
        .sum()
}

/// The report could not be made to fit (only possible with an absurdly small budget).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the report does not fit in {budget} bytes even with every instance list cut ({size} bytes)"
)]
pub struct TooLarge {
    pub budget: usize,
    pub size: usize,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    source: &'static str,
    version: u32,
    #[serde(flatten)]
    run: &'a RunKind,
    environment: &'a str,
    label: &'a str,
    status: RunStatus,
    run_status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_status_details: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<&'a str>,
    counts: Counts,
    batches: &'a [BatchRun],
    failed: Vec<&'a InstanceRun>,
    reboot_pending: Vec<&'a InstanceRun>,
    patched: Vec<&'a InstanceRun>,
    missed: Vec<&'a MissedTarget>,
    /// Entries left out of each list above (0 = complete).
    omitted: Omitted,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_report: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    promotion: &'a [String],
    /// The policy the report was made with.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
}

#[derive(Serialize, Default, Clone, Copy)]
struct Omitted {
    failed: usize,
    reboot_pending: usize,
    patched: usize,
    missed: usize,
}

impl RunReport {
    /// Reached instances by outcome, each list in batch then instance-id order; missed targets
    /// are the listed ones plus invocations that were never delivered.
    fn partition(&self) -> Partition<'_> {
        let mut p = Partition::default();
        let mut sorted: Vec<&InstanceRun> = self.instances.iter().collect();
        sorted.sort_by(|a, b| (a.batch, &a.instance_id).cmp(&(b.batch, &b.instance_id)));
        for i in sorted {
            match i.outcome() {
                Outcome::Failed => p.failed.push(i),
                Outcome::RebootPending => p.reboot_pending.push(i),
                Outcome::Patched => p.patched.push(i),
                Outcome::Missed => p.undelivered.push(i),
            }
        }
        p
    }

    /// Missed targets: the adapters' list plus never-delivered invocations, by instance id.
    pub fn missed_targets(&self) -> Vec<MissedTarget> {
        let mut all: Vec<MissedTarget> = self.missed.clone();
        for i in self.partition().undelivered {
            if all.iter().any(|m| m.instance_id == i.instance_id) {
                continue;
            }
            all.push(MissedTarget {
                instance_id: i.instance_id.clone(),
                name: i.name.clone(),
                patch_group: None,
                reason: i.miss_reason(),
                at: i.requested,
            });
        }
        all.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        all
    }

    pub fn counts(&self) -> Counts {
        let p = self.partition();
        let missed = self.missed_targets().len();
        Counts {
            targets: p.failed.len() + p.reboot_pending.len() + p.patched.len() + missed,
            patched: p.reboot_pending.len() + p.patched.len(),
            failed: p.failed.len(),
            reboot_pending: p.reboot_pending.len(),
            missed,
        }
    }

    /// Whether the run itself completed (windows: `SUCCESS`/`FAILED`; commands:
    /// `Success`/`Failed`); `TIMED_OUT`, `CANCELLED`, `SKIPPED_OVERLAPPING` did not.
    fn run_completed(&self) -> bool {
        matches!(
            self.run_status.as_str(),
            "SUCCESS" | "FAILED" | "Success" | "Failed"
        )
    }

    pub fn status(&self) -> RunStatus {
        let c = self.counts();
        if c.failed > 0 || c.missed > 0 || !self.run_completed() {
            RunStatus::Failed
        } else if c.reboot_pending > 0 {
            RunStatus::RebootPending
        } else {
            RunStatus::Success
        }
    }

    /// `[patchpilot] test 06:00 - 5/6 patched, 1 failed, 2 need reboot`: ASCII, no control
    /// characters, under 100 characters.
    pub fn subject(&self, prefix: &str) -> String {
        let c = self.counts();
        let mut s = format!(
            "{prefix} {} {} - {}/{} patched",
            self.environment, self.label, c.patched, c.targets
        );
        if c.failed > 0 {
            let _ = write!(s, ", {} failed", c.failed);
        }
        if c.reboot_pending > 0 {
            let _ = write!(s, ", {} need reboot", c.reboot_pending);
        }
        if c.missed > 0 {
            let _ = write!(s, ", {} missed", c.missed);
        }
        if !self.run_completed() {
            let _ = write!(s, " ({})", self.run_status);
        }
        sanitize_subject(&s)
    }

    /// Message attributes for subscription filter policies; `type` tells run reports (`run`)
    /// from baseline-sync's coverage messages (`coverage`, `crate::coverage_notice`).
    pub fn attributes(&self) -> BTreeMap<String, Attribute> {
        let c = self.counts();
        BTreeMap::from([
            (
                "type".to_string(),
                Attribute {
                    data_type: "String",
                    value: RUN_TYPE.to_string(),
                },
            ),
            (
                "environment".to_string(),
                Attribute {
                    data_type: "String",
                    value: self.environment.clone(),
                },
            ),
            (
                "status".to_string(),
                Attribute {
                    data_type: "String",
                    value: self.status().as_str().to_string(),
                },
            ),
            (
                "failed_count".to_string(),
                Attribute {
                    data_type: "Number",
                    value: c.failed.to_string(),
                },
            ),
        ])
    }

    fn omitted(&self, keep: Keep) -> Omitted {
        let p = self.partition();
        let missed = self.missed_targets().len();
        Omitted {
            failed: p.failed.len().saturating_sub(keep.failed),
            reboot_pending: p.reboot_pending.len().saturating_sub(keep.reboot_pending),
            patched: p.patched.len().saturating_sub(keep.patched),
            missed: missed.saturating_sub(keep.missed),
        }
    }

    fn more_marker(&self, n: usize) -> String {
        let location = self
            .full_report
            .as_deref()
            .unwrap_or("the run-notifier log in CloudWatch Logs");
        format!("  … and {n} more (full report: {location})\n")
    }

    /// The email body: summary, failures (reason and log link first), reboot pending,
    /// patched (one line each), missed targets; each list cut after `keep` entries with an
    /// explicit marker.
    pub fn text_body(&self, keep: Keep) -> String {
        let p = self.partition();
        let missed = self.missed_targets();
        let c = self.counts();
        let mut t = String::new();
        // Summary.
        match &self.run {
            RunKind::Window {
                window_id,
                window_name,
                execution_id,
            } => {
                let _ = writeln!(
                    t,
                    "Patch run of maintenance window {window_name} ({window_id}), environment {}.",
                    self.environment
                );
                let _ = writeln!(t, "Execution {execution_id}: {}", self.run_status_line());
            }
            RunKind::Command { command_id } => {
                let _ = writeln!(
                    t,
                    "Patch run outside a maintenance window (AWS-RunPatchBaseline), environment {}.",
                    self.environment
                );
                let _ = writeln!(t, "Command {command_id}: {}", self.run_status_line());
            }
        }
        if let (Some(start), Some(end)) = (self.start, self.end) {
            let _ = writeln!(
                t,
                "Ran {} to {} UTC.",
                start.format("%Y-%m-%d %H:%M"),
                end.format("%H:%M")
            );
        }
        let _ = writeln!(
            t,
            "Result: {}/{} patched, {} failed, {} need reboot, {} missed{}.",
            c.patched,
            c.targets,
            c.failed,
            c.reboot_pending,
            c.missed,
            self.operation
                .as_deref()
                .map(|o| format!(" (Operation {o})"))
                .unwrap_or_default()
        );
        let missing_logs: Vec<&InstanceRun> = self
            .instances
            .iter()
            .filter(|i| i.log_missing.is_some())
            .collect();
        if let Some(first) = missing_logs.first() {
            let _ = writeln!(
                t,
                "Logs: {} instance log(s) missing in S3 - {} (the instance profile or the bucket policy must allow s3:PutObject; see README, Deploy).",
                missing_logs.len(),
                first.log_missing.as_deref().unwrap_or_default()
            );
        }
        if !self.promotion.is_empty() {
            t.push_str("\nPromotion:\n");
            for line in &self.promotion {
                let _ = writeln!(t, "  {line}");
            }
        }
        if !self.batches.is_empty() {
            t.push_str("\nBatches, in order:\n");
            for b in &self.batches {
                let _ = writeln!(t, "  {}", self.batch_line(b));
            }
        }
        // Failures first: what to act on, why, where the log is.
        if !p.failed.is_empty() {
            let _ = writeln!(t, "\nFAILED ({}):", p.failed.len());
            for i in p.failed.iter().take(keep.failed) {
                let _ = writeln!(
                    t,
                    "  {} - batch {}: {}",
                    i.label(),
                    i.batch,
                    i.failure_reason()
                );
                if let Some(url) = &i.output_url {
                    let _ = writeln!(t, "    output: {url}");
                }
                let log = match (&i.log_url, &i.log_missing) {
                    (Some(url), _) => url.clone(),
                    (None, Some(why)) => format!("missing - {why}"),
                    (None, None) if self.full_report.is_some() => {
                        "none (the invocation wrote no output to S3)".to_string()
                    }
                    (None, None) => "(no S3 output configured)".to_string(),
                };
                let _ = writeln!(t, "    log in S3: {log}");
            }
            if p.failed.len() > keep.failed {
                t.push_str(&self.more_marker(p.failed.len() - keep.failed));
            }
        }
        if !p.reboot_pending.is_empty() {
            let _ = writeln!(t, "\nREBOOT PENDING ({}):", p.reboot_pending.len());
            for i in p.reboot_pending.iter().take(keep.reboot_pending) {
                let pending = i
                    .patches
                    .as_ref()
                    .map(|p| p.installed_pending_reboot)
                    .unwrap_or(0);
                let _ = writeln!(
                    t,
                    "  {} - batch {}: {pending} installed patch(es) wait for a reboot",
                    i.label(),
                    i.batch
                );
            }
            if p.reboot_pending.len() > keep.reboot_pending {
                t.push_str(&self.more_marker(p.reboot_pending.len() - keep.reboot_pending));
            }
        }
        if !p.patched.is_empty() {
            let _ = writeln!(t, "\nPATCHED ({}):", p.patched.len());
            for i in p.patched.iter().take(keep.patched) {
                let installed = i.patches.as_ref().map(|p| p.installed).unwrap_or(0);
                let _ = writeln!(t, "  {} b{} {installed} installed", i.label(), i.batch);
            }
            if p.patched.len() > keep.patched {
                t.push_str(&self.more_marker(p.patched.len() - keep.patched));
            }
        }
        if !missed.is_empty() {
            let _ = writeln!(t, "\nMISSED TARGETS ({}):", missed.len());
            for m in missed.iter().take(keep.missed) {
                let label = match &m.name {
                    Some(n) if !n.is_empty() => format!("{} ({n})", m.instance_id),
                    _ => m.instance_id.clone(),
                };
                let group = m
                    .patch_group
                    .as_deref()
                    .map(|g| format!(" in {g}"))
                    .unwrap_or_default();
                let _ = writeln!(t, "  {label}{group}: {}", m.reason.describe(m.at.as_ref()));
            }
            if missed.len() > keep.missed {
                t.push_str(&self.more_marker(missed.len() - keep.missed));
            }
        }
        if let Some(location) = &self.full_report {
            let _ = write!(t, "\nRun Command output: {location}\n");
        }
        if let Some(policy) = &self.policy {
            let _ = write!(t, "\nPolicy: {policy}\n");
        }
        t
    }

    /// One batch, in the operator's words: what the task and its command ended as and why.
    fn batch_line(&self, b: &BatchRun) -> String {
        let head = format!("{}. {}: {}", b.number, b.name, b.status);
        if b.command_ids.is_empty() {
            let details = b
                .status_details
                .as_deref()
                .filter(|d| !d.is_empty() && *d != b.status)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let no_instances = details.replace(' ', "").contains("NoInstancesInTag")
                || b.status_details.is_none() && b.status == "FAILED";
            return match b.status.as_str() {
                "CANCELLED" | "CANCELLING" => format!(
                    "{head} - not started: cancelled (the window reached its cutoff before this batch began){details}"
                ),
                "TIMED_OUT" => format!(
                    "{head} - not started: the window reached its cutoff before this batch began{details}"
                ),
                "SKIPPED_OVERLAPPING" | "PENDING" => format!("{head} - not started{details}"),
                _ if no_instances => format!(
                    "{head} - no instance selected: its target matched no managed instance, nothing was patched"
                ),
                _ => format!("{head} - not run{details}"),
            };
        }
        if b.target_count == 0
            && b.command_statuses
                .iter()
                .all(|s| s.replace(' ', "") == "NoInstancesInTag")
        {
            return format!(
                "{head} - no instance selected: its target matched no managed instance, nothing was patched; command {}",
                b.command_ids.join(", ")
            );
        }
        let not_attempted = self
            .instances
            .iter()
            .filter(|i| i.batch == b.number && i.miss_reason() == MissReason::NotAttempted)
            .filter(|i| i.outcome() == Outcome::Missed)
            .count();
        let threshold = b
            .max_errors
            .as_deref()
            .map(|m| format!(" MaxErrors {m}"))
            .unwrap_or_default();
        let command = if b.command_statuses.iter().any(|s| s == "Failed") {
            format!(
                "command Failed: error threshold{threshold} reached, {} error(s){}",
                b.error_count,
                if not_attempted > 0 {
                    format!(", {not_attempted} instance(s) not attempted")
                } else {
                    String::new()
                }
            )
        } else if b.command_statuses.iter().any(|s| s == "Incomplete") {
            format!(
                "command Incomplete: {} error(s), {} not delivered, below the error threshold{threshold}",
                b.error_count, b.delivery_timed_out_count
            )
        } else if b.command_statuses.is_empty() {
            format!(
                "{} error(s), {} not delivered",
                b.error_count, b.delivery_timed_out_count
            )
        } else {
            format!("command {}", b.command_statuses.join(", "))
        };
        format!(
            "{head} - {command}; {} target(s); command {}",
            b.target_count,
            b.command_ids.join(", ")
        )
    }

    fn run_status_line(&self) -> String {
        let status = match self.run_status_details.as_deref() {
            Some(d) if !d.is_empty() && d != self.run_status => {
                format!("{} ({d})", self.run_status)
            }
            _ => self.run_status.clone(),
        };
        match self.run_status.as_str() {
            "TIMED_OUT" => format!(
                "{status} - the window's Duration ended before every task finished; what did not finish is listed below"
            ),
            "CANCELLED" => format!("{status} - the run was cancelled before it finished"),
            _ => status,
        }
    }

    /// The JSON form for machine subscribers (and, with [`Keep::ALL`], the full report logged).
    pub fn json(&self, keep: Keep) -> String {
        let p = self.partition();
        let missed = self.missed_targets();
        let report = JsonReport {
            source: "patchpilot",
            version: 1,
            run: &self.run,
            environment: &self.environment,
            label: &self.label,
            status: self.status(),
            run_status: &self.run_status,
            run_status_details: self.run_status_details.as_deref(),
            start: self.start,
            end: self.end,
            operation: self.operation.as_deref(),
            counts: self.counts(),
            batches: &self.batches,
            failed: p.failed.iter().take(keep.failed).copied().collect(),
            reboot_pending: p
                .reboot_pending
                .iter()
                .take(keep.reboot_pending)
                .copied()
                .collect(),
            patched: p.patched.iter().take(keep.patched).copied().collect(),
            missed: missed.iter().take(keep.missed).collect(),
            omitted: self.omitted(keep),
            full_report: self.full_report.as_deref(),
            promotion: &self.promotion,
            policy: self.policy.as_deref(),
        };
        // Serialising plain data (strings, numbers, timestamps) cannot fail.
        serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The message for a given cut.
    pub fn render(&self, prefix: &str, keep: Keep) -> Message {
        let text = self.text_body(keep);
        let json = self.json(keep);
        let envelope = serde_json::json!({ "default": json, "email": text });
        let o = self.omitted(keep);
        Message {
            subject: self.subject(prefix),
            message: envelope.to_string(),
            attributes: self.attributes(),
            text,
            json,
            truncated: o.failed + o.reboot_pending + o.patched + o.missed > 0,
        }
    }

    /// The largest rendering within `budget` bytes (use [`SNS_MAX_MESSAGE_BYTES`]): cut the
    /// patched list first, then reboot-pending, missed targets, and failures last.
    pub fn fit(&self, prefix: &str, budget: usize) -> Result<Message, TooLarge> {
        let budget = budget.saturating_sub(SAFETY_BYTES);
        let full = self.render(prefix, Keep::ALL);
        if full.size() <= budget {
            return Ok(full);
        }
        let p = self.partition();
        let lens = [
            p.patched.len(),
            p.reboot_pending.len(),
            self.missed_targets().len(),
            p.failed.len(),
        ];
        let mut keep = Keep::ALL;
        for (step, len) in lens.into_iter().enumerate() {
            let with = |keep: Keep, n: usize| {
                let mut k = keep;
                match step {
                    0 => k.patched = n,
                    1 => k.reboot_pending = n,
                    2 => k.missed = n,
                    _ => k.failed = n,
                }
                k
            };
            let zero = with(keep, 0);
            if self.render(prefix, zero).size() > budget {
                keep = zero;
                continue;
            }
            // Largest n in [0, len] that fits: sizes grow with n.
            let (mut lo, mut hi) = (0usize, len);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if self.render(prefix, with(keep, mid)).size() <= budget {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            return Ok(self.render(prefix, with(keep, lo)));
        }
        let last = self.render(prefix, keep);
        Err(TooLarge {
            budget,
            size: last.size(),
        })
    }
}

#[derive(Default)]
struct Partition<'a> {
    failed: Vec<&'a InstanceRun>,
    reboot_pending: Vec<&'a InstanceRun>,
    patched: Vec<&'a InstanceRun>,
    undelivered: Vec<&'a InstanceRun>,
}

/// SNS subject rules: printable ASCII only (anything else becomes `-` or `?`), no line
/// breaks, fewer than 100 characters (cut with `...`).
pub fn sanitize_subject(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '\u{2013}' | '\u{2014}' => '-',
            c if c.is_ascii_graphic() || c == ' ' => c,
            c if c.is_whitespace() => ' ',
            _ => '?',
        })
        .collect();
    out = out.trim().to_string();
    if out.len() > SNS_MAX_SUBJECT_CHARS {
        out.truncate(SNS_MAX_SUBJECT_CHARS - 3);
        out.push_str("...");
    }
    if out.is_empty() {
        out.push_str("patchpilot report");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 2, h, m, 0)
            .single()
            .expect("valid time")
    }

    fn counts(installed: u32, pending: u32, failed: u32) -> PatchCounts {
        PatchCounts {
            installed,
            installed_other: 3,
            installed_pending_reboot: pending,
            missing: failed,
            failed,
            not_applicable: 120,
            operation: "Install".into(),
            operation_end: Some(at(6, 30)),
        }
    }

    fn instance(id: &str, name: &str, batch: u32, status: &str, p: PatchCounts) -> InstanceRun {
        InstanceRun {
            instance_id: id.into(),
            name: Some(name.into()),
            batch,
            command_id: format!("cmd-batch-{batch}"),
            status: status.into(),
            status_details: status.into(),
            response_code: (status == "Failed").then_some(1),
            log_url: Some(crate::console::s3_object(
                "us-east-1",
                "out",
                &format!("patchpilot/run-command/cmd-batch-{batch}/{id}/stdout"),
            )),
            output_url: Some(crate::console::command_output(
                "us-east-1",
                &format!("cmd-batch-{batch}"),
                id,
            )),
            requested: Some(at(6, 1)),
            log_missing: None,
            patches: Some(p),
        }
    }

    /// The reference scenario's test window: five Linux hosts (batch 1), one Windows host
    /// (batch 2); the Windows host fails, two Linux hosts wait for a reboot.
    fn reference_run() -> RunReport {
        RunReport {
            run: RunKind::Window {
                window_id: "mw-0ed7251d3fcf6e0c2".into(),
                window_name: "patchpilot-test".into(),
                execution_id: "b60fb56e-776c-4e5c-84ee-123456789012".into(),
            },
            environment: "test".into(),
            label: "06:00".into(),
            run_status: "FAILED".into(),
            run_status_details: Some("One or more tasks in the orchestration failed.".into()),
            start: Some(at(6, 0)),
            end: Some(at(6, 52)),
            operation: Some("Install".into()),
            batches: vec![
                BatchRun {
                    number: 1,
                    name: "patch_test_0600_batch_1".into(),
                    status: "SUCCESS".into(),
                    command_ids: vec!["cmd-batch-1".into()],
                    target_count: 5,
                    error_count: 0,
                    delivery_timed_out_count: 0,
                    command_statuses: vec!["Success".into()],
                    max_errors: Some("25%".into()),
                    status_details: None,
                },
                BatchRun {
                    number: 2,
                    name: "patch_test_0600_batch_2".into(),
                    status: "FAILED".into(),
                    command_ids: vec!["cmd-batch-2".into()],
                    target_count: 1,
                    error_count: 1,
                    delivery_timed_out_count: 0,
                    command_statuses: vec!["Failed".into()],
                    max_errors: Some("25%".into()),
                    status_details: None,
                },
            ],
            instances: vec![
                instance(
                    "i-amazon",
                    "amazon-linux-test",
                    1,
                    "Success",
                    counts(12, 0, 0),
                ),
                instance(
                    "i-centos",
                    "centos-linux-test",
                    1,
                    "Success",
                    counts(14, 0, 0),
                ),
                instance(
                    "i-redhat",
                    "redhat-linux-test",
                    1,
                    "Success",
                    counts(11, 2, 0),
                ),
                instance("i-suse", "suse-linux-test", 1, "Success", counts(10, 1, 0)),
                instance(
                    "i-ubuntu",
                    "ubuntu-linux-test",
                    1,
                    "Success",
                    counts(20, 0, 0),
                ),
                instance("i-windows", "windows-test", 2, "Failed", counts(5, 0, 2)),
            ],
            missed: vec![],
            full_report: Some("s3://out/patchpilot/run-command/".into()),
            promotion: Vec::new(),
            policy: Some("/patchpilot/policy version 3 (sha256 ba7816bf8f01)".into()),
        }
    }

    #[test]
    fn the_footer_ends_with_the_policy_the_report_was_made_with() {
        let r = reference_run();
        let text = r.text_body(Keep::ALL);
        assert!(
            text.trim_end()
                .ends_with("Policy: /patchpilot/policy version 3 (sha256 ba7816bf8f01)"),
            "{text}"
        );
    }

    #[test]
    fn reference_run_subject_counts_patched_failed_and_reboots() {
        let r = reference_run();
        assert_eq!(
            r.subject("[patchpilot]"),
            "[patchpilot] test 06:00 - 5/6 patched, 1 failed, 2 need reboot"
        );
        assert_eq!(r.status(), RunStatus::Failed);
        let a = r.attributes();
        assert_eq!(a["environment"].value, "test");
        assert_eq!(a["status"].value, "FAILED");
        assert_eq!(a["type"].value, "run");
        assert_eq!(
            a["failed_count"],
            Attribute {
                data_type: "Number",
                value: "1".into()
            }
        );
    }

    #[test]
    fn body_reads_summary_then_failures_then_reboots_then_patched_then_missed() {
        let mut r = reference_run();
        r.missed.push(MissedTarget {
            instance_id: "i-stopped".into(),
            name: Some("oracle-test".into()),
            patch_group: Some("patch_test_0600_batch_1".into()),
            reason: MissReason::NotRunning("stopped".into()),
            at: None,
        });
        let body = r.text_body(Keep::ALL);
        let pos = |needle: &str| {
            body.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing from:\n{body}"))
        };
        assert!(pos("Result: 5/7 patched, 1 failed, 2 need reboot, 1 missed") < pos("FAILED (1)"));
        assert!(pos("FAILED (1)") < pos("REBOOT PENDING (2)"));
        assert!(pos("REBOOT PENDING (2)") < pos("PATCHED (3)"));
        assert!(pos("PATCHED (3)") < pos("MISSED TARGETS (1)"));
        // The failure says why and where the log is, right under it.
        let failure = &body[pos("FAILED (1)")..pos("REBOOT PENDING")];
        assert!(failure.contains("i-windows (windows-test) - batch 2: command Failed, exit code 1, 2 patch(es) failed to install"), "{failure}");
        assert!(failure.contains("output: https://us-east-1.console.aws.amazon.com/systems-manager/run-command/cmd-batch-2/i-windows?region=us-east-1"), "{failure}");
        assert!(failure.contains("log in S3: https://us-east-1.console.aws.amazon.com/s3/object/out?region=us-east-1&bucketType=general&prefix=patchpilot/run-command/cmd-batch-2/i-windows/stdout"), "{failure}");
        assert!(
            !body.contains("s3.amazonaws.com"),
            "links a browser can open:\n{body}"
        );
        assert!(body
            .contains("i-stopped (oracle-test) in patch_test_0600_batch_1: stopped through the window and missed that run"));
        assert!(!body.contains("more (full report"), "nothing was cut");
    }

    #[test]
    fn undelivered_invocations_are_missed_targets_not_failures() {
        let mut r = reference_run();
        let mut lost = instance("i-lost", "lost-test", 1, "TimedOut", counts(0, 0, 0));
        lost.status_details = "DeliveryTimedOut".into();
        lost.patches = None;
        r.instances.push(lost);
        let c = r.counts();
        assert_eq!((c.targets, c.failed, c.missed), (7, 1, 1));
        assert!(r.subject("[pp]").ends_with(", 1 missed"));
        let missed = r.missed_targets();
        assert_eq!(
            missed[0].reason,
            MissReason::Undeliverable("DeliveryTimedOut".into())
        );
        let mut timed_out = instance("i-slow", "slow-test", 1, "TimedOut", counts(1, 0, 0));
        timed_out.status_details = "ExecutionTimedOut".into();
        assert_eq!(timed_out.outcome(), Outcome::Failed);
    }

    #[test]
    fn all_success_is_success_and_reboots_alone_are_reboot_pending() {
        let mut r = reference_run();
        r.instances.retain(|i| i.status == "Success");
        r.run_status = "SUCCESS".into();
        assert_eq!(r.status(), RunStatus::RebootPending);
        for i in &mut r.instances {
            if let Some(p) = i.patches.as_mut() {
                p.installed_pending_reboot = 0;
            }
        }
        assert_eq!(r.status(), RunStatus::Success);
        assert_eq!(
            r.subject("[patchpilot]"),
            "[patchpilot] test 06:00 - 5/5 patched"
        );
    }

    #[test]
    fn an_incomplete_run_is_a_failure_and_says_so_in_the_subject() {
        let mut r = reference_run();
        r.instances
            .retain(|i| i.status == "Success" && i.batch == 1);
        r.run_status = "TIMED_OUT".into();
        assert_eq!(r.status(), RunStatus::Failed);
        assert!(r.subject("[patchpilot]").ends_with("(TIMED_OUT)"));
    }

    #[test]
    fn subject_is_ascii_and_under_100_characters_whatever_the_input() {
        let mut r = reference_run();
        r.environment =
            "a-very-long-environment-name-that-nobody-should-use-but-someone-will".into();
        r.label = "06:00 — Zürich".into();
        let s = r.subject("[patchpilot — ops]");
        assert!(s.len() < 100, "{} chars: {s}", s.len());
        assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b)), "{s}");
        assert!(s.ends_with("..."));
        assert_eq!(sanitize_subject("a\nb — c"), "a b - c");
        assert_eq!(sanitize_subject("  "), "patchpilot report");
    }

    #[test]
    fn json_form_has_the_same_counts_and_lists() {
        let r = reference_run();
        let v: serde_json::Value = serde_json::from_str(&r.json(Keep::ALL)).expect("valid JSON");
        assert_eq!(v["kind"], "window");
        assert_eq!(v["execution_id"], "b60fb56e-776c-4e5c-84ee-123456789012");
        assert_eq!(v["status"], "FAILED");
        assert_eq!(v["counts"]["patched"], 5);
        assert_eq!(v["counts"]["reboot_pending"], 2);
        assert_eq!(v["failed"][0]["instance_id"], "i-windows");
        assert_eq!(v["failed"][0]["response_code"], 1);
        assert_eq!(v["patched"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["omitted"]["patched"], 0);
        assert_eq!(v["batches"][1]["name"], "patch_test_0600_batch_2");
    }

    #[test]
    fn message_is_the_sns_json_structure_with_default_and_email() {
        let r = reference_run();
        let m = r.fit("[patchpilot]", SNS_MAX_MESSAGE_BYTES).expect("fits");
        assert!(!m.truncated);
        let v: serde_json::Value = serde_json::from_str(&m.message).expect("JSON");
        assert_eq!(v["email"].as_str(), Some(m.text.as_str()));
        let inner: serde_json::Value =
            serde_json::from_str(v["default"].as_str().expect("default is a string"))
                .expect("default holds the JSON report");
        assert_eq!(inner["environment"], "test");
        assert_eq!(v.as_object().map(|o| o.len()), Some(2));
    }

    fn big_run(n: usize) -> RunReport {
        let mut r = reference_run();
        r.instances = (0..n)
            .map(|k| {
                let status = if k % 500 == 7 { "Failed" } else { "Success" };
                let pending = u32::from(k % 100 == 3);
                let mut i = instance(
                    &format!("i-{k:017x}"),
                    &format!("web-{k:05}-test"),
                    1 + u32::from(k % 4 == 0),
                    status,
                    counts(10, pending, u32::from(status == "Failed")),
                );
                i.command_id = "0b3a7a42-6f1d-4c1e-9a51-5d5ed3c2a001".into();
                i.log_url = Some(crate::console::s3_object("us-east-1", "patchpilot-output-123456789012-us-east-1", &format!("patchpilot/run-command/0b3a7a42-6f1d-4c1e-9a51-5d5ed3c2a001/i-{k:017x}/awsrunShellScript/PatchLinux/stdout")));
                i.output_url = Some(crate::console::command_output("us-east-1", "0b3a7a42-6f1d-4c1e-9a51-5d5ed3c2a001", &format!("i-{k:017x}")));
                i
            })
            .collect();
        r
    }

    #[test]
    fn five_thousand_instances_fit_in_256_kb_with_the_success_list_cut() {
        let r = big_run(5_000);
        let c = r.counts();
        assert_eq!((c.targets, c.failed, c.reboot_pending), (5_000, 10, 50));
        let m = r.fit("[patchpilot]", SNS_MAX_MESSAGE_BYTES).expect("fits");
        assert!(m.size() <= SNS_MAX_MESSAGE_BYTES, "{} bytes", m.size());
        assert!(m.truncated);
        // Failures and reboots are complete; successes were cut with the marker.
        assert_eq!(m.text.matches("    log in S3: ").count(), 10);
        assert!(m.text.contains("REBOOT PENDING (50)"));
        let marker = m
            .text
            .lines()
            .find(|l| {
                l.contains("… and ")
                    && l.contains("more (full report: s3://out/patchpilot/run-command/)")
            })
            .unwrap_or_else(|| panic!("no truncation marker in the body"));
        let shown = m.text[m.text.find("PATCHED (4940)").expect("patched section")..]
            .lines()
            .filter(|l| l.contains(" installed"))
            .count();
        let omitted: usize = marker
            .trim()
            .trim_start_matches("… and ")
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("marker counts the omitted");
        assert_eq!(shown + omitted, 4_940);
        let v: serde_json::Value = serde_json::from_str(&m.json).expect("JSON");
        assert_eq!(v["omitted"]["patched"], omitted);
        assert_eq!(v["failed"].as_array().map(Vec::len), Some(10));
        // The cut keeps as much as fits: one more success would not.
        assert!(
            m.size() > SNS_MAX_MESSAGE_BYTES - 2 * SAFETY_BYTES - 2_000,
            "{} bytes",
            m.size()
        );
    }

    #[test]
    fn failures_are_cut_last_and_only_when_nothing_else_is_left() {
        let mut r = big_run(3_000);
        for i in &mut r.instances {
            i.status = "Failed".into();
            i.status_details = "Failed".into();
        }
        let m = r.fit("[patchpilot]", SNS_MAX_MESSAGE_BYTES).expect("fits");
        assert!(m.size() <= SNS_MAX_MESSAGE_BYTES);
        assert!(m.text.contains("FAILED (3000)"));
        assert!(m.text.contains("more (full report:"));
        let v: serde_json::Value = serde_json::from_str(&m.json).expect("JSON");
        assert!(v["omitted"]["failed"].as_u64().is_some_and(|n| n > 0));
    }

    #[test]
    fn a_budget_too_small_for_the_summary_is_an_error() {
        let r = reference_run();
        let err = r.fit("[patchpilot]", 1_500).expect_err("cannot fit");
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn without_s3_output_the_marker_points_at_the_log() {
        let mut r = big_run(5_000);
        r.full_report = None;
        let m = r.fit("[patchpilot]", SNS_MAX_MESSAGE_BYTES).expect("fits");
        assert!(m
            .text
            .contains("more (full report: the run-notifier log in CloudWatch Logs)"));
    }

    #[test]
    fn command_runs_are_labelled_as_outside_a_window() {
        let mut r = reference_run();
        r.run = RunKind::Command {
            command_id: "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b".into(),
        };
        r.label = "patch now".into();
        r.run_status = "Failed".into();
        assert_eq!(r.run.run_id(), "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b");
        assert!(r
            .subject("[patchpilot]")
            .starts_with("[patchpilot] test patch now - 5/6"));
        assert!(r
            .text_body(Keep::ALL)
            .starts_with("Patch run outside a maintenance window"));
        let v: serde_json::Value = serde_json::from_str(&r.json(Keep::ALL)).expect("JSON");
        assert_eq!(v["kind"], "command");
    }

    #[test]
    fn hosts_the_error_threshold_stopped_are_not_attempted_and_the_batch_says_why() {
        let mut r = reference_run();
        r.batches[0].status = "FAILED".into();
        r.batches[0].command_statuses = vec!["Failed".into()];
        r.batches[0].max_errors = Some("1".into());
        r.batches[0].error_count = 2;
        for id in ["i-centos", "i-redhat"] {
            let i = r
                .instances
                .iter_mut()
                .find(|i| i.instance_id == id)
                .expect("host");
            i.status = "Failed".into();
            i.status_details = "Failed".into();
            i.patches = Some(counts(3, 0, 1));
        }
        for id in ["i-suse", "i-ubuntu"] {
            let i = r
                .instances
                .iter_mut()
                .find(|i| i.instance_id == id)
                .expect("host");
            // "Terminated": the parent command exceeded its MaxErrors limit and subsequent
            // command invocations were canceled by the system.
            i.status = "Cancelled".into();
            i.status_details = "Terminated".into();
            i.patches = None;
        }
        let c = r.counts();
        assert_eq!((c.targets, c.patched, c.failed, c.missed), (6, 1, 3, 2));
        let body = r.text_body(Keep::ALL);
        assert!(
            body.contains("1. patch_test_0600_batch_1: FAILED - command Failed: error threshold MaxErrors 1 reached, 2 error(s), 2 instance(s) not attempted"),
            "{body}"
        );
        assert!(body.contains("i-suse (suse-linux-test): not attempted (error threshold reached) (2024-03-02 06:01 UTC)"), "{body}");
        assert!(
            body.contains("2. patch_test_0600_batch_2: FAILED - command Failed"),
            "{body}"
        );
        assert_eq!(
            r.subject("[pp]"),
            "[pp] test 06:00 - 1/6 patched, 3 failed, 2 missed"
        );
        assert!(
            body.contains("Result: 1/6 patched, 3 failed, 0 need reboot, 2 missed"),
            "{body}"
        );
    }

    #[test]
    fn incomplete_is_told_apart_from_failed() {
        let mut r = reference_run();
        r.batches[1].command_statuses = vec!["Incomplete".into()];
        let body = r.text_body(Keep::ALL);
        assert!(
            body.contains("2. patch_test_0600_batch_2: FAILED - command Incomplete: 1 error(s), 0 not delivered, below the error threshold MaxErrors 25%"),
            "{body}"
        );
    }

    #[test]
    fn a_batch_whose_target_selected_nobody_says_so() {
        let mut r = reference_run();
        r.batches[1].command_ids.clear();
        r.batches[1].target_count = 0;
        r.batches[1].command_statuses.clear();
        r.instances.retain(|i| i.batch != 2);
        let body = r.text_body(Keep::ALL);
        assert!(
            body.contains("2. patch_test_0600_batch_2: FAILED - no instance selected: its target matched no managed instance"),
            "{body}"
        );
        r.batches[1].status = "CANCELLED".into();
        assert!(r.text_body(Keep::ALL).contains(
            "not started: cancelled (the window reached its cutoff before this batch began)"
        ));
        r.batches[1].status = "TIMED_OUT".into();
        assert!(r.text_body(Keep::ALL).contains(
            "2. patch_test_0600_batch_2: TIMED_OUT - not started: the window reached its cutoff"
        ));
        r.batches[1].status = "FAILED".into();
        r.batches[1].status_details = Some("AccessDeniedException: User: arn:aws:sts::1:assumed-role/w/AWS-SSM is not authorized to perform: ssm:SendCommand".into());
        let body = r.text_body(Keep::ALL);
        assert!(
            body.contains("2. patch_test_0600_batch_2: FAILED - not run (AccessDeniedException: User: arn:aws:sts::1:assumed-role/w/AWS-SSM is not authorized to perform: ssm:SendCommand)"),
            "{body}"
        );
    }

    #[test]
    fn a_window_that_timed_out_says_what_that_means() {
        let mut r = reference_run();
        r.run_status = "TIMED_OUT".into();
        r.run_status_details = None;
        let body = r.text_body(Keep::ALL);
        assert!(
            body.contains("TIMED_OUT - the window's Duration ended before every task finished"),
            "{body}"
        );
        assert!(r.subject("[pp]").ends_with("(TIMED_OUT)"));
        assert_eq!(r.status(), RunStatus::Failed);
    }

    #[test]
    fn cancelled_invocations_are_failures_with_the_cutoff_named() {
        let mut i = instance("i-x", "x-test", 1, "Cancelled", counts(1, 0, 0));
        i.status_details = "Cancelled".into();
        assert_eq!(i.outcome(), Outcome::Failed);
        assert!(i.failure_reason().contains("CutoffBehavior CANCEL_TASK"));
    }

    /// The subject and the body's result line are built from the same counts: for every
    /// shape of run they say the same numbers.
    #[test]
    fn subject_counts_always_agree_with_the_body() {
        let mut runs = vec![reference_run(), big_run(300)];
        let mut missed = reference_run();
        missed.missed.push(MissedTarget {
            instance_id: "i-gone".into(),
            name: None,
            patch_group: None,
            reason: MissReason::NotManaged,
            at: None,
        });
        runs.push(missed);
        for r in runs {
            let c = r.counts();
            let subject = r.subject("[pp]");
            let body = r.text_body(Keep::ALL);
            assert!(subject.contains(&format!("{}/{} patched", c.patched, c.targets)));
            assert!(body.contains(&format!(
                "Result: {}/{} patched, {} failed, {} need reboot, {} missed",
                c.patched, c.targets, c.failed, c.reboot_pending, c.missed
            )));
            for (n, word) in [
                (c.failed, "failed"),
                (c.reboot_pending, "need reboot"),
                (c.missed, "missed"),
            ] {
                assert_eq!(
                    subject.contains(&format!(", {n} {word}")),
                    n > 0,
                    "{subject}"
                );
            }
        }
    }
}
