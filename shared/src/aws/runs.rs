//! Reads what a patch run did: maintenance-window executions, their tasks and task
//! invocations, Run Command commands and invocations, instance patch states, and the members
//! of the targeted patch groups (to find the ones the run missed) — and builds the domain's
//! [`RunReport`].
//!
//! Cost on a large fleet: every list call is paginated at the API's maximum page size, and
//! calls that summarise are preferred:
//! - `ListCommands` (one call per command) gives the counters (`TargetCount`, `ErrorCount`,
//!   `DeliveryTimedOutCount`) and the S3 output location;
//! - `ListCommandInvocations` is read without `Details` (50 per page) for everyone, and with
//!   `Details` only status-filtered (`Failed`, `TimedOut`, `Cancelled`) for the exit codes of
//!   the few that failed;
//! - `DescribeInstancePatchStates` takes at most 50 instance ids per call;
//! - the patch-group members come from `DescribeInstances` filtered by the tag (1,000 per
//!   page); `DescribeInstanceInformation` is asked only about members the run did not reach,
//!   and about on-prem nodes of the groups.
//!
//! A 5,000-instance run therefore costs about 2 × 5,000 / 50 + a dozen calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_ssm::types::{
    CommandFilter, CommandFilterKey, InstanceInformationStringFilter, MaintenanceWindowFilter,
    ResourceTypeForTagging,
};
use chrono::{DateTime, Utc};
use tracing::{debug, info};

use super::{AwsError, CallLog, Service};
use crate::console;
use crate::names::{self, Owner, Ownership, PatchGroup, OWNERSHIP_TAG_KEY};
use crate::report::{
    BatchRun, InstanceRun, MissReason, MissedTarget, PatchCounts, RunKind, RunReport,
};

/// `ListCommandInvocations` / `ListCommands` `MaxResults`: 1–50.
const COMMAND_PAGE: i32 = 50;
/// `DescribeInstancePatchStates`: at most 50 `InstanceIds`, `MaxResults` 10–100.
const PATCH_STATE_IDS: usize = 50;
/// `DescribeInstanceInformation` `MaxResults`: 5–50; a filter takes at most 50 values here.
const INFO_PAGE: i32 = 50;
/// `DescribeMaintenanceWindow*` `MaxResults`: 10–100.
const WINDOW_PAGE: i32 = 100;
/// `DescribeInstances` `MaxResults`: 5–1000.
const EC2_PAGE: i32 = 1000;
/// `DescribeInstances` filter values: at most 200 per filter.
const EC2_FILTER_VALUES: usize = 200;
/// Longest maintenance window (`Duration` 1–24 h): a window command was requested at most this
/// long after its execution started.
const MAX_WINDOW_HOURS: i64 = 24;

pub const DOCUMENT: &str = "AWS-RunPatchBaseline";

/// A maintenance window and whether patchpilot owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowInfo {
    pub window_id: String,
    pub name: String,
    /// Value of its `patchpilot:managed` tag: the stack that created it.
    pub marker: Option<String>,
}

impl WindowInfo {
    /// Owned = `owner`'s marker (`patchpilot:managed=<stack>`); a window without any marker
    /// is accepted only when its name is `patchpilot-<env>` for an environment of the policy
    /// (a window created before tags). Another stack's window is never this stack's.
    pub fn environment_if_owned<'a>(
        &'a self,
        owner: &Owner,
        environments: &[&str],
    ) -> Option<&'a str> {
        let from_name = names::parse_window_name(&self.name);
        match owner.ownership(self.marker.as_deref()) {
            Ownership::Ours => Some(from_name.unwrap_or("unknown")),
            Ownership::Stack(_) => None,
            Ownership::Unmarked => from_name.filter(|e| environments.contains(e)),
        }
    }
}

/// One Run Command command (`ListCommands`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo {
    pub command_id: String,
    pub document_name: String,
    pub status: String,
    pub status_details: String,
    pub requested: Option<DateTime<Utc>>,
    pub target_count: u32,
    pub error_count: u32,
    pub delivery_timed_out_count: u32,
    pub output_bucket: Option<String>,
    pub output_prefix: Option<String>,
    /// `OutputS3Region`: where the output bucket is (empty = the command's Region).
    pub output_region: Option<String>,
    /// `MaxErrors`: the command's error threshold.
    pub max_errors: Option<String>,
    pub operation: Option<String>,
    pub instance_ids: Vec<String>,
    /// `Targets` as (key, values), e.g. (`tag:Patch Group`, [`patch_test_0600_batch_1`]).
    pub targets: Vec<(String, Vec<String>)>,
}

impl CommandInfo {
    /// The status the console shows: `StatusDetails` when it is more precise than `Status`
    /// (the API has no `Incomplete` status: such a command is `Failed` with `StatusDetails`
    /// `Incomplete`, "Understanding command statuses").
    pub fn detailed_status(&self) -> String {
        if self.status_details.is_empty() {
            self.status.clone()
        } else {
            self.status_details.clone()
        }
    }

    /// The Region of the output bucket (`OutputS3Region`, else the command's own Region).
    pub fn output_region(&self, default: &str) -> String {
        self.output_region
            .clone()
            .unwrap_or_else(|| default.to_string())
    }

    /// `s3://bucket/prefix/<command-id>/`: where Run Command writes this command's output.
    pub fn output_location(&self) -> Option<String> {
        let bucket = self.output_bucket.as_deref().filter(|b| !b.is_empty())?;
        let prefix = self
            .output_prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty());
        Some(match prefix {
            Some(p) => format!("s3://{bucket}/{p}/{}/", self.command_id),
            None => format!("s3://{bucket}/{}/", self.command_id),
        })
    }

    fn output_prefix_location(&self) -> Option<String> {
        let bucket = self.output_bucket.as_deref().filter(|b| !b.is_empty())?;
        Some(
            match self
                .output_prefix
                .as_deref()
                .map(|p| p.trim_matches('/'))
                .filter(|p| !p.is_empty())
            {
                Some(p) => format!("s3://{bucket}/{p}/"),
                None => format!("s3://{bucket}/"),
            },
        )
    }
}

/// A member of a targeted patch group, as EC2 or SSM knows it.
#[derive(Debug, Clone)]
struct Member {
    instance_id: String,
    name: Option<String>,
    patch_group: Option<String>,
    /// EC2 state name; `None` for on-prem nodes.
    state: Option<String>,
    /// SSM ping status when known (on-prem nodes come from SSM).
    ping: Option<String>,
    /// Since when it is in that state, when EC2 or SSM say (a stop's time from
    /// `StateTransitionReason`, the agent's `LastPingDateTime`).
    since: Option<DateTime<Utc>>,
}

/// Why the agent could not upload an invocation's output, as it writes it into the output:
/// `Failed to upload output to S3 bucket <bucket>: <error>` (the wording is the emulator's; the
/// agent's exact text is not published, README "Verified only in the emulator").
fn upload_failure(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Failed to upload output to S3 bucket ")
        })
        .map(|rest| format!("the instance could not upload it to {}", rest.trim()))
}

/// Who a run's commands reached.
struct Reached {
    /// Instances with an invocation that ran, or that Run Command cancelled itself
    /// (`Terminated`: the error threshold; reported as "not attempted" by the report).
    delivered: BTreeSet<String>,
    /// Instances whose invocation was never delivered (`Undeliverable`, `Delivery Timed Out`):
    /// what EC2 and SSM say of them now (stopped since …, agent offline since …) explains it
    /// better than the invocation status, so they are looked up like unreached members.
    undelivered: BTreeSet<String>,
}

fn reached(runs: &[InstanceRun]) -> Reached {
    let (undelivered, delivered): (Vec<&InstanceRun>, Vec<&InstanceRun>) =
        runs.iter().partition(|r| {
            matches!(
                r.status_details.replace(' ', "").as_str(),
                "Undeliverable" | "DeliveryTimedOut"
            )
        });
    Reached {
        delivered: delivered.iter().map(|r| r.instance_id.clone()).collect(),
        undelivered: undelivered.iter().map(|r| r.instance_id.clone()).collect(),
    }
}

/// `DescribeInstancePatchStates` for any number of instances: at most 50 `InstanceIds` per call
/// (`MaxResults` 10–100), every page read. The run report and the coverage read share it.
pub async fn instance_patch_states(
    ssm: &aws_sdk_ssm::Client,
    instance_ids: &[String],
    calls: &CallLog,
) -> Result<Vec<aws_sdk_ssm::types::InstancePatchState>, AwsError> {
    let mut out = Vec::new();
    for chunk in instance_ids.chunks(PATCH_STATE_IDS) {
        let mut token = None;
        loop {
            calls.record("DescribeInstancePatchStates");
            let page = ssm
                .describe_instance_patch_states()
                .set_instance_ids(Some(chunk.to_vec()))
                .max_results(PATCH_STATE_IDS as i32)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk(Service::Ssm, "DescribeInstancePatchStates", e).on(chunk)
                })?;
            out.extend(page.instance_patch_states().iter().cloned());
            token = page.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

/// A node as `DescribeInstanceInformation` reports it.
struct NodeInfo {
    instance_id: String,
    ping: String,
    name: Option<String>,
    last_ping: Option<DateTime<Utc>>,
}

/// The time in an EC2 `StateTransitionReason` such as
/// `User initiated (2026-12-05 05:00:00 GMT)` (EC2 API reference, Instance).
fn transition_time(reason: &str) -> Option<DateTime<Utc>> {
    let inner = reason.rsplit_once('(')?.1.strip_suffix(')')?;
    let inner = inner
        .strip_suffix(" GMT")
        .or_else(|| inner.strip_suffix(" UTC"))
        .unwrap_or(inner);
    chrono::NaiveDateTime::parse_from_str(inner, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

fn to_chrono(t: &aws_sdk_ssm::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// The reading side of a run; every call is recorded in the [`CallLog`].
pub struct Runs<'a> {
    ssm: &'a aws_sdk_ssm::Client,
    ec2: &'a aws_sdk_ec2::Client,
    calls: &'a CallLog,
    tag_key: &'a str,
}

impl<'a> Runs<'a> {
    /// `tag_key` is the policy's patch-group tag (`Patch Group`).
    pub fn new(
        ssm: &'a aws_sdk_ssm::Client,
        ec2: &'a aws_sdk_ec2::Client,
        calls: &'a CallLog,
        tag_key: &'a str,
    ) -> Runs<'a> {
        Runs {
            ssm,
            ec2,
            calls,
            tag_key,
        }
    }

    /// The Region the clients talk to (for console links).
    fn region(&self) -> &str {
        self.ssm
            .config()
            .region()
            .map(|r| r.as_ref())
            .unwrap_or("us-east-1")
    }

    /// `GetMaintenanceWindow` + `ListTagsForResource`.
    pub async fn window(&self, window_id: &str) -> Result<WindowInfo, AwsError> {
        self.calls.record("GetMaintenanceWindow");
        let w = self
            .ssm
            .get_maintenance_window()
            .window_id(window_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, "GetMaintenanceWindow", e))?;
        self.calls.record("ListTagsForResource");
        let tags = self
            .ssm
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::MaintenanceWindow)
            .resource_id(window_id)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(Service::Ssm, "ListTagsForResource", e).on(&[window_id])
            })?;
        let marker = tags
            .tag_list()
            .iter()
            .find(|t| t.key() == OWNERSHIP_TAG_KEY)
            .map(|t| t.value().to_string());
        Ok(WindowInfo {
            window_id: window_id.to_string(),
            name: w.name().unwrap_or_default().to_string(),
            marker,
        })
    }

    /// `ListCommands` for one command: status, counters, output location, parameters.
    pub async fn command(&self, command_id: &str) -> Result<CommandInfo, AwsError> {
        self.calls.record("ListCommands");
        let out = self
            .ssm
            .list_commands()
            .command_id(command_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, "ListCommands", e))?;
        let c = out
            .commands()
            .first()
            .ok_or_else(|| AwsError::missing("ListCommands", "Commands"))?;
        Ok(CommandInfo {
            command_id: command_id.to_string(),
            document_name: c.document_name().unwrap_or_default().to_string(),
            status: c
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            status_details: c.status_details().unwrap_or_default().to_string(),
            requested: c.requested_date_time().and_then(to_chrono),
            target_count: count(c.target_count()),
            error_count: count(c.error_count()),
            delivery_timed_out_count: count(c.delivery_timed_out_count()),
            output_bucket: c.output_s3_bucket_name().map(str::to_string),
            output_prefix: c.output_s3_key_prefix().map(str::to_string),
            output_region: c
                .output_s3_region()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            max_errors: c.max_errors().map(str::to_string),
            operation: c
                .parameters()
                .and_then(|p| p.get("Operation"))
                .and_then(|v| v.first())
                .cloned(),
            instance_ids: c.instance_ids().to_vec(),
            targets: c
                .targets()
                .iter()
                .map(|t| (t.key().unwrap_or_default().to_string(), t.values().to_vec()))
                .collect(),
        })
    }

    /// The maintenance-window execution a command was sent by, if any, among the windows
    /// named `window_names`: a window's Run Command task invocation records the command id
    /// as its `ExecutionId`. Such commands are reported with their window, not on their own.
    pub async fn window_execution_of(
        &self,
        command: &CommandInfo,
        window_names: &BTreeSet<String>,
    ) -> Result<Option<String>, AwsError> {
        let Some(requested) = command.requested else {
            return Ok(None);
        };
        for name in window_names {
            self.calls.record("DescribeMaintenanceWindows");
            let windows = self
                .ssm
                .describe_maintenance_windows()
                .filters(
                    MaintenanceWindowFilter::builder()
                        .key("Name")
                        .values(name)
                        .build(),
                )
                .max_results(WINDOW_PAGE)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, "DescribeMaintenanceWindows", e))?;
            for w in windows.window_identities() {
                let Some(window_id) = w.window_id() else {
                    continue;
                };
                let after = requested - chrono::Duration::hours(MAX_WINDOW_HOURS);
                // The filters take whole seconds; round outwards so an execution that started
                // in the same second as the command is not cut off.
                let before = requested + chrono::Duration::minutes(1);
                let mut token = None;
                loop {
                    self.calls.record("DescribeMaintenanceWindowExecutions");
                    let page = self
                        .ssm
                        .describe_maintenance_window_executions()
                        .window_id(window_id)
                        .filters(
                            MaintenanceWindowFilter::builder()
                                .key("ExecutedAfter")
                                .values(after.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                                .build(),
                        )
                        .filters(
                            MaintenanceWindowFilter::builder()
                                .key("ExecutedBefore")
                                .values(before.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                                .build(),
                        )
                        .max_results(WINDOW_PAGE)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| {
                            AwsError::from_sdk(
                                Service::Ssm,
                                "DescribeMaintenanceWindowExecutions",
                                e,
                            )
                        })?;
                    for ex in page.window_executions() {
                        let Some(execution_id) = ex.window_execution_id() else {
                            continue;
                        };
                        for task in self.execution_tasks(execution_id).await? {
                            let invocations =
                                self.task_invocations(execution_id, &task.task_id).await?;
                            if invocations.iter().any(|i| i.0 == command.command_id) {
                                return Ok(Some(execution_id.to_string()));
                            }
                        }
                    }
                    token = page.next_token().map(str::to_string);
                    if token.is_none() {
                        break;
                    }
                }
            }
        }
        Ok(None)
    }

    /// Execution tasks in batch order (tasks run in priority order, so by start time).
    async fn execution_tasks(&self, execution_id: &str) -> Result<Vec<ExecTask>, AwsError> {
        let mut tasks = Vec::new();
        let mut token = None;
        loop {
            self.calls.record("DescribeMaintenanceWindowExecutionTasks");
            let page = self
                .ssm
                .describe_maintenance_window_execution_tasks()
                .window_execution_id(execution_id)
                .max_results(WINDOW_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk(Service::Ssm, "DescribeMaintenanceWindowExecutionTasks", e)
                })?;
            for t in page.window_execution_task_identities() {
                tasks.push(ExecTask {
                    task_id: t.task_execution_id().unwrap_or_default().to_string(),
                    status: t
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    status_details: t
                        .status_details()
                        .filter(|d| !d.is_empty())
                        .map(str::to_string),
                    task_arn: t.task_arn().unwrap_or_default().to_string(),
                    start: t.start_time().and_then(to_chrono),
                });
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        tasks.sort_by(|a, b| (a.start, &a.task_id).cmp(&(b.start, &b.task_id)));
        Ok(tasks)
    }

    /// (command id, window target id) per task invocation.
    async fn task_invocations(
        &self,
        execution_id: &str,
        task_id: &str,
    ) -> Result<Vec<(String, Option<String>)>, AwsError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.calls
                .record("DescribeMaintenanceWindowExecutionTaskInvocations");
            let page = self
                .ssm
                .describe_maintenance_window_execution_task_invocations()
                .window_execution_id(execution_id)
                .task_id(task_id)
                .max_results(WINDOW_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk(
                        Service::Ssm,
                        "DescribeMaintenanceWindowExecutionTaskInvocations",
                        e,
                    )
                })?;
            for i in page.window_execution_task_invocation_identities() {
                if let Some(command_id) = i.execution_id() {
                    out.push((
                        command_id.to_string(),
                        i.window_target_id().map(str::to_string),
                    ));
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Window target id -> (name, patch groups it selects by the policy's tag).
    async fn window_targets(
        &self,
        window_id: &str,
    ) -> Result<BTreeMap<String, (String, Vec<String>)>, AwsError> {
        let tag_target = format!("tag:{}", self.tag_key);
        let mut out = BTreeMap::new();
        let mut token = None;
        loop {
            self.calls.record("DescribeMaintenanceWindowTargets");
            let page = self
                .ssm
                .describe_maintenance_window_targets()
                .window_id(window_id)
                .max_results(WINDOW_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk(Service::Ssm, "DescribeMaintenanceWindowTargets", e)
                })?;
            for t in page.targets() {
                let groups = t
                    .targets()
                    .iter()
                    .filter(|x| x.key() == Some(tag_target.as_str()))
                    .flat_map(|x| x.values().iter().cloned())
                    .collect();
                out.insert(
                    t.window_target_id().unwrap_or_default().to_string(),
                    (t.name().unwrap_or_default().to_string(), groups),
                );
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Every invocation of a command (without details), then the failed ones with details
    /// (status-filtered) for their exit code and log URL.
    async fn invocations(
        &self,
        command: &CommandInfo,
        batch: u32,
    ) -> Result<Vec<InstanceRun>, AwsError> {
        let mut runs: Vec<InstanceRun> = Vec::new();
        let mut token = None;
        loop {
            self.calls.record("ListCommandInvocations");
            let page = self
                .ssm
                .list_command_invocations()
                .command_id(&command.command_id)
                .details(false)
                .max_results(COMMAND_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, "ListCommandInvocations", e))?;
            for i in page.command_invocations() {
                let Some(instance_id) = i.instance_id() else {
                    continue;
                };
                runs.push(InstanceRun {
                    instance_id: instance_id.to_string(),
                    name: i
                        .instance_name()
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                    batch,
                    command_id: command.command_id.clone(),
                    status: i
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    status_details: i.status_details().unwrap_or_default().to_string(),
                    response_code: None,
                    log_url: i
                        .standard_output_url()
                        .filter(|u| !u.is_empty())
                        .map(|u| console::s3_link(&command.output_region(self.region()), u)),
                    output_url: Some(console::command_output(
                        self.region(),
                        &command.command_id,
                        instance_id,
                    )),
                    requested: i.requested_date_time().and_then(to_chrono),
                    log_missing: None,
                    patches: None,
                });
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        // Details (plugins: exit code, per-plugin output URL, output text) only where needed,
        // so a clean 5,000-instance command makes no such call: status-filtered for the failing
        // statuses actually present; the whole command once when an instance that ran has no
        // log in the output bucket (its output says why the agent could not upload it).
        let index: HashMap<String, usize> = runs
            .iter()
            .enumerate()
            .map(|(k, r)| (r.instance_id.clone(), k))
            .collect();
        let logs_missing = command
            .output_bucket
            .as_deref()
            .is_some_and(|b| !b.is_empty())
            && runs.iter().any(|r| {
                r.log_url.is_none()
                    && r.outcome() != crate::report::Outcome::Missed
                    && r.status != "Cancelled"
            });
        let passes: Vec<Option<String>> = if logs_missing {
            vec![None]
        } else {
            runs.iter()
                .filter(|r| matches!(r.status.as_str(), "Failed" | "TimedOut" | "Cancelled"))
                .map(|r| r.status.clone())
                .collect::<BTreeSet<String>>()
                .into_iter()
                .map(Some)
                .collect()
        };
        for status in passes {
            let filter = match &status {
                Some(status) => Some(
                    CommandFilter::builder()
                        .key(CommandFilterKey::Status)
                        .value(status)
                        .build()
                        .map_err(|_| AwsError::missing("ListCommandInvocations", "filter"))?,
                ),
                None => None,
            };
            let mut token = None;
            loop {
                self.calls.record("ListCommandInvocations");
                let page = self
                    .ssm
                    .list_command_invocations()
                    .command_id(&command.command_id)
                    .details(true)
                    .set_filters(filter.clone().map(|f| vec![f]))
                    .max_results(COMMAND_PAGE)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(Service::Ssm, "ListCommandInvocations", e))?;
                for i in page.command_invocations() {
                    let Some(k) = i.instance_id().and_then(|id| index.get(id)) else {
                        continue;
                    };
                    let run = &mut runs[*k];
                    let Some(plugin) = i.command_plugins().first() else {
                        continue;
                    };
                    if run.status != "Success" {
                        run.response_code = Some(plugin.response_code());
                    }
                    if run.log_url.is_none() {
                        run.log_url = plugin
                            .standard_output_url()
                            .filter(|u| !u.is_empty())
                            .map(|u| console::s3_link(&command.output_region(self.region()), u));
                    }
                    if run.log_url.is_none() {
                        run.log_missing = upload_failure(plugin.output().unwrap_or_default());
                    }
                }
                token = page.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(runs)
    }

    /// `DescribeInstancePatchStates` of these instances (see [`instance_patch_states`]).
    async fn patch_states(
        &self,
        instance_ids: &[String],
    ) -> Result<HashMap<String, (PatchCounts, String)>, AwsError> {
        let mut out = HashMap::new();
        for s in instance_patch_states(self.ssm, instance_ids, self.calls).await? {
            out.insert(
                s.instance_id().to_string(),
                (
                    PatchCounts {
                        installed: count(s.installed_count()),
                        installed_other: count(s.installed_other_count()),
                        installed_pending_reboot: count(
                            s.installed_pending_reboot_count().unwrap_or(0),
                        ),
                        missing: count(s.missing_count()),
                        failed: count(s.failed_count()),
                        not_applicable: count(s.not_applicable_count()),
                        operation: s.operation().as_str().to_string(),
                        operation_end: to_chrono(s.operation_end_time()),
                    },
                    s.patch_group().to_string(),
                ),
            );
        }
        Ok(out)
    }

    /// Members of patch groups: EC2 instances with the tag (not terminated), then on-prem
    /// nodes with it.
    async fn group_members(&self, groups: &[String]) -> Result<Vec<Member>, AwsError> {
        let mut members = Vec::new();
        if groups.is_empty() {
            return Ok(members);
        }
        let tag_filter = format!("tag:{}", self.tag_key);
        for chunk in groups.chunks(EC2_FILTER_VALUES) {
            let filter = aws_sdk_ec2::types::Filter::builder()
                .name(&tag_filter)
                .set_values(Some(chunk.to_vec()))
                .build();
            members.extend(self.describe_instances(filter).await?);
        }
        // On-prem (`mi-*`) nodes are not in EC2; SSM filters them by tag itself.
        for chunk in groups.chunks(INFO_PAGE as usize) {
            let filters = vec![
                InstanceInformationStringFilter::builder()
                    .key("ResourceType")
                    .values("ManagedInstance")
                    .build()
                    .map_err(|_| AwsError::missing("DescribeInstanceInformation", "filter"))?,
                InstanceInformationStringFilter::builder()
                    .key(&tag_filter)
                    .set_values(Some(chunk.to_vec()))
                    .build()
                    .map_err(|_| AwsError::missing("DescribeInstanceInformation", "filter"))?,
            ];
            for info in self.instance_information(filters).await? {
                members.push(Member {
                    instance_id: info.instance_id,
                    name: info.name,
                    patch_group: None,
                    state: None,
                    ping: Some(info.ping),
                    since: info.last_ping,
                });
            }
        }
        Ok(members)
    }

    /// EC2 instances by id (names and patch groups of a command's instances).
    async fn instances_by_id(&self, ids: &[String]) -> Result<Vec<Member>, AwsError> {
        let mut members = Vec::new();
        let ec2_ids: Vec<String> = ids
            .iter()
            .filter(|i| i.starts_with("i-"))
            .cloned()
            .collect();
        for chunk in ec2_ids.chunks(EC2_FILTER_VALUES) {
            // A filter, not `InstanceIds`: an unknown id in `InstanceIds` fails the whole call.
            let filter = aws_sdk_ec2::types::Filter::builder()
                .name("instance-id")
                .set_values(Some(chunk.to_vec()))
                .build();
            members.extend(self.describe_instances(filter).await?);
        }
        Ok(members)
    }

    async fn describe_instances(
        &self,
        filter: aws_sdk_ec2::types::Filter,
    ) -> Result<Vec<Member>, AwsError> {
        let mut members = Vec::new();
        let mut token = None;
        loop {
            self.calls.record("DescribeInstances");
            let page = self
                .ec2
                .describe_instances()
                .filters(filter.clone())
                .max_results(EC2_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ec2, "DescribeInstances", e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                if state == "terminated" || state == "shutting-down" {
                    continue;
                }
                let tag = |key: &str| {
                    i.tags()
                        .iter()
                        .find(|t| t.key() == Some(key))
                        .and_then(|t| t.value())
                        .map(str::to_string)
                };
                let since = (state != "running")
                    .then(|| i.state_transition_reason().and_then(transition_time))
                    .flatten();
                members.push(Member {
                    instance_id: i.instance_id().unwrap_or_default().to_string(),
                    name: tag("Name"),
                    patch_group: tag(self.tag_key),
                    state: Some(state),
                    ping: None,
                    since,
                });
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(members)
    }

    /// Instance id, ping status, name and last ping from `DescribeInstanceInformation`.
    async fn instance_information(
        &self,
        filters: Vec<InstanceInformationStringFilter>,
    ) -> Result<Vec<NodeInfo>, AwsError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.calls.record("DescribeInstanceInformation");
            let page = self
                .ssm
                .describe_instance_information()
                .set_filters(Some(filters.clone()))
                .max_results(INFO_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, "DescribeInstanceInformation", e))?;
            for i in page.instance_information_list() {
                out.push(NodeInfo {
                    instance_id: i.instance_id().unwrap_or_default().to_string(),
                    ping: i
                        .ping_status()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                    name: i.name().map(str::to_string),
                    last_ping: i.last_ping_date_time().and_then(to_chrono),
                });
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Members the run did not reach, with the reason: not running, not managed by SSM,
    /// offline, or online but not invoked.
    async fn missed(
        &self,
        members: &[Member],
        reached: &Reached,
    ) -> Result<Vec<MissedTarget>, AwsError> {
        let undelivered_ids = &reached.undelivered;
        let unreached: Vec<&Member> = members
            .iter()
            .filter(|m| !reached.delivered.contains(&m.instance_id))
            .collect();
        let running_ec2: Vec<String> = unreached
            .iter()
            .filter(|m| m.state.as_deref() == Some("running"))
            .map(|m| m.instance_id.clone())
            .collect();
        let mut ping: HashMap<String, (String, Option<DateTime<Utc>>)> = HashMap::new();
        for chunk in running_ec2.chunks(INFO_PAGE as usize) {
            let filter = InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .set_values(Some(chunk.to_vec()))
                .build()
                .map_err(|_| AwsError::missing("DescribeInstanceInformation", "filter"))?;
            for node in self.instance_information(vec![filter]).await? {
                ping.insert(node.instance_id, (node.ping, node.last_ping));
            }
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for m in unreached {
            if !seen.insert(m.instance_id.clone()) {
                continue;
            }
            let mut since = m.since;
            let undelivered = undelivered_ids.contains(&m.instance_id);
            let reason = match (&m.state, &m.ping) {
                (Some(state), _) if state != "running" => MissReason::NotRunning(state.clone()),
                (Some(_), _) => match ping.get(&m.instance_id) {
                    None => MissReason::NotManaged,
                    Some((p, _)) if p == "Online" => MissReason::NotInvoked,
                    Some((p, last)) => {
                        since = *last;
                        MissReason::Offline(p.to_string())
                    }
                },
                (None, Some(p)) if p != "Online" => MissReason::Offline(p.clone()),
                (None, _) => MissReason::NotInvoked,
            };
            if undelivered && reason == MissReason::NotInvoked {
                // Online now, yet its invocation was not delivered: the invocation's own
                // status (Undeliverable / Delivery Timed Out) says why (report::missed_targets).
                continue;
            }
            out.push(MissedTarget {
                instance_id: m.instance_id.clone(),
                name: m.name.clone(),
                patch_group: m.patch_group.clone(),
                reason,
                at: since,
            });
        }
        Ok(out)
    }

    /// Adds patch states and names to reached instances.
    async fn enrich(
        &self,
        runs: &mut [InstanceRun],
        names: &HashMap<String, String>,
    ) -> Result<BTreeSet<String>, AwsError> {
        let ids: Vec<String> = runs
            .iter()
            .filter(|r| r.outcome_needs_patch_state())
            .map(|r| r.instance_id.clone())
            .collect();
        let states = self.patch_states(&ids).await?;
        let mut groups = BTreeSet::new();
        for r in runs.iter_mut() {
            if let Some(n) = names.get(&r.instance_id) {
                r.name = Some(n.clone());
            }
            if let Some((p, g)) = states.get(&r.instance_id) {
                r.patches = Some(p.clone());
                if !g.is_empty() {
                    groups.insert(g.clone());
                }
            }
        }
        Ok(groups)
    }

    /// The report of a maintenance-window execution.
    pub async fn window_report(
        &self,
        window: &WindowInfo,
        environment: &str,
        execution_id: &str,
    ) -> Result<RunReport, AwsError> {
        self.calls.record("GetMaintenanceWindowExecution");
        let ex = self
            .ssm
            .get_maintenance_window_execution()
            .window_execution_id(execution_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, "GetMaintenanceWindowExecution", e))?;
        let tasks = self.execution_tasks(execution_id).await?;
        let targets = self.window_targets(&window.window_id).await?;
        let mut batches = Vec::new();
        let mut runs = Vec::new();
        let mut commands = Vec::new();
        for (position, task) in tasks.iter().enumerate() {
            let invocations = self.task_invocations(execution_id, &task.task_id).await?;
            let target_names: BTreeSet<String> = invocations
                .iter()
                .filter_map(|(_, t)| t.as_ref())
                .filter_map(|t| targets.get(t))
                .map(|(name, _)| name.clone())
                .collect();
            let number = target_names
                .iter()
                .filter_map(|n| target_group(n))
                .map(|g| g.batch)
                .min()
                .unwrap_or_else(|| u32::try_from(position + 1).unwrap_or(u32::MAX));
            // A task that sent nothing (not started by the cutoff, denied) has no invocation to
            // name its target: its batch's target is the one whose patch group has its number.
            let name = if target_names.is_empty() {
                targets
                    .values()
                    .map(|(name, _)| name)
                    .find(|name| target_group(name).is_some_and(|g| g.batch == number))
                    .cloned()
                    .unwrap_or_else(|| task.task_arn.clone())
            } else {
                target_names.into_iter().collect::<Vec<_>>().join(", ")
            };
            let mut batch = BatchRun {
                number,
                name,
                status: task.status.clone(),
                command_ids: Vec::new(),
                target_count: 0,
                error_count: 0,
                delivery_timed_out_count: 0,
                command_statuses: Vec::new(),
                max_errors: None,
                status_details: task.status_details.clone(),
            };
            for (command_id, _) in invocations {
                let command = self.command(&command_id).await?;
                if command.document_name != DOCUMENT {
                    debug!(command_id = %command_id, document = %command.document_name, "not a patch command; skipped");
                    continue;
                }
                batch.target_count += command.target_count;
                batch.error_count += command.error_count;
                batch.delivery_timed_out_count += command.delivery_timed_out_count;
                let status = command.detailed_status();
                if !batch.command_statuses.contains(&status) {
                    batch.command_statuses.push(status);
                }
                batch.max_errors = batch.max_errors.take().or(command.max_errors.clone());
                batch.command_ids.push(command_id);
                runs.extend(self.invocations(&command, number).await?);
                commands.push(command);
            }
            batches.push(batch);
        }
        let groups: Vec<String> = targets
            .values()
            .flat_map(|(_, g)| g.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let members = self.group_members(&groups).await?;
        let names: HashMap<String, String> = members
            .iter()
            .filter_map(|m| m.name.clone().map(|n| (m.instance_id.clone(), n)))
            .collect();
        self.enrich(&mut runs, &names).await?;
        let reached = reached(&runs);
        let missed = self.missed(&members, &reached).await?;
        let label = groups
            .iter()
            .filter_map(|g| g.parse::<PatchGroup>().ok())
            .map(|g| format!("{:02}:{:02}", g.hour, g.minute))
            .next()
            .unwrap_or_else(|| window.name.clone());
        let report = RunReport {
            run: RunKind::Window {
                window_id: window.window_id.clone(),
                window_name: window.name.clone(),
                execution_id: execution_id.to_string(),
            },
            environment: environment.to_string(),
            label,
            run_status: ex
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            run_status_details: ex.status_details().map(str::to_string),
            start: ex.start_time().and_then(to_chrono),
            end: ex.end_time().and_then(to_chrono),
            operation: commands.iter().find_map(|c| c.operation.clone()),
            batches,
            instances: runs,
            missed,
            // A command that selected nobody (NoInstancesInTag) wrote no output anywhere.
            full_report: full_report(
                &commands
                    .iter()
                    .filter(|c| c.target_count > 0)
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            promotion: Vec::new(),
            policy: None,
        };
        info!(
            execution_id = %execution_id,
            instances = report.instances.len(),
            missed = report.missed.len(),
            calls = %self.calls.summary(),
            "window run gathered"
        );
        Ok(report)
    }

    /// The report of a command sent outside a window.
    pub async fn command_report(
        &self,
        command: &CommandInfo,
        environments: &[&str],
    ) -> Result<RunReport, AwsError> {
        let mut runs = self.invocations(command, 1).await?;
        let tag_target = format!("tag:{}", self.tag_key);
        let target_groups: Vec<String> = command
            .targets
            .iter()
            .filter(|(k, _)| *k == tag_target)
            .flat_map(|(_, v)| v.iter().cloned())
            .collect();
        // Tag-targeted: the members of those groups; id-targeted: exactly those instances.
        let members = if target_groups.is_empty() {
            let mut ids: Vec<String> = command.instance_ids.clone();
            ids.extend(runs.iter().map(|r| r.instance_id.clone()));
            ids.sort();
            ids.dedup();
            self.instances_by_id(&ids).await?
        } else {
            self.group_members(&target_groups).await?
        };
        let names: HashMap<String, String> = members
            .iter()
            .filter_map(|m| m.name.clone().map(|n| (m.instance_id.clone(), n)))
            .collect();
        let mut groups = self.enrich(&mut runs, &names).await?;
        groups.extend(members.iter().filter_map(|m| m.patch_group.clone()));
        groups.extend(target_groups.iter().cloned());
        let reached = reached(&runs);
        let candidates: Vec<Member> = if target_groups.is_empty() {
            members
                .into_iter()
                .filter(|m| command.instance_ids.contains(&m.instance_id))
                .collect()
        } else {
            members
        };
        let missed = self.missed(&candidates, &reached).await?;
        let envs: BTreeSet<String> = groups
            .iter()
            .filter_map(|g| g.parse::<PatchGroup>().ok())
            .map(|g| g.environment)
            .filter(|e| environments.contains(&e.as_str()))
            .collect();
        let environment = if envs.is_empty() {
            "unknown".to_string()
        } else {
            envs.into_iter().collect::<Vec<_>>().join("+")
        };
        let batch = BatchRun {
            number: 1,
            name: if groups.is_empty() {
                "instances".to_string()
            } else {
                groups.iter().cloned().collect::<Vec<_>>().join(", ")
            },
            status: command.status.clone(),
            command_ids: vec![command.command_id.clone()],
            target_count: command.target_count,
            error_count: command.error_count,
            delivery_timed_out_count: command.delivery_timed_out_count,
            command_statuses: vec![command.detailed_status()],
            max_errors: command.max_errors.clone(),
            status_details: None,
        };
        let end = runs
            .iter()
            .filter_map(|r| r.patches.as_ref().and_then(|p| p.operation_end))
            .max();
        Ok(RunReport {
            run: RunKind::Command {
                command_id: command.command_id.clone(),
            },
            environment,
            label: "patch now".to_string(),
            run_status: command.status.clone(),
            run_status_details: Some(command.status_details.clone()).filter(|d| !d.is_empty()),
            start: command.requested,
            end: end.filter(|_| command.requested.is_some()),
            operation: command.operation.clone(),
            batches: vec![batch],
            instances: runs,
            missed,
            full_report: command.output_location(),
            promotion: Vec::new(),
            policy: None,
        })
    }
}

struct ExecTask {
    task_id: String,
    status: String,
    /// Why it ended so (`StatusDetails`), e.g. "No Instances In Tag" or an AccessDenied.
    status_details: Option<String>,
    task_arn: String,
    start: Option<DateTime<Utc>>,
}

/// One command: its output folder; several: their common output prefix.
fn full_report(commands: &[CommandInfo]) -> Option<String> {
    match commands {
        [] => None,
        [one] => one.output_location(),
        many => {
            let prefixes: BTreeSet<String> = many
                .iter()
                .filter_map(CommandInfo::output_prefix_location)
                .collect();
            (prefixes.len() == 1)
                .then(|| prefixes.into_iter().next())
                .flatten()
        }
    }
}

impl InstanceRun {
    /// Patch states exist only for instances the command reached.
    fn outcome_needs_patch_state(&self) -> bool {
        !matches!(self.outcome(), crate::report::Outcome::Missed)
    }
}

/// The patch group a window target is named after: the group itself, or for a promoted
/// environment's per-OS target `<group>_<OS>` (`crate::promotion`).
fn target_group(name: &str) -> Option<PatchGroup> {
    name.parse::<PatchGroup>().ok().or_else(|| {
        crate::policy::OperatingSystem::ALL.iter().find_map(|os| {
            name.strip_suffix(os.as_str())?
                .strip_suffix('_')?
                .parse::<PatchGroup>()
                .ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(bucket: Option<&str>, prefix: Option<&str>, id: &str) -> CommandInfo {
        CommandInfo {
            command_id: id.into(),
            document_name: DOCUMENT.into(),
            status: "Success".into(),
            status_details: "Success".into(),
            requested: None,
            target_count: 1,
            error_count: 0,
            delivery_timed_out_count: 0,
            output_bucket: bucket.map(str::to_string),
            output_prefix: prefix.map(str::to_string),
            output_region: None,
            max_errors: Some("0".into()),
            operation: Some("Install".into()),
            instance_ids: vec![],
            targets: vec![],
        }
    }

    #[test]
    fn an_upload_failure_is_read_from_the_invocation_output() {
        let output = "Patch group: g\nInstalled: 3\n----------ERROR-------\nFailed to upload output to S3 bucket out: AccessDenied: User: x is not authorized to perform: s3:PutObject";
        assert_eq!(
            upload_failure(output).as_deref(),
            Some("the instance could not upload it to out: AccessDenied: User: x is not authorized to perform: s3:PutObject")
        );
        assert_eq!(upload_failure("Installed: 3"), None);
    }

    #[test]
    fn a_stop_time_is_read_from_the_state_transition_reason() {
        assert_eq!(
            transition_time("User initiated (2026-12-05 05:00:00 GMT)").map(|t| t.to_rfc3339()),
            Some("2026-12-05T05:00:00+00:00".to_string())
        );
        assert_eq!(transition_time(""), None);
        assert_eq!(transition_time("Server.SpotInstanceTermination"), None);
    }

    #[test]
    fn output_location_is_the_command_folder_under_the_prefix() {
        let c = command(Some("out"), Some("patchpilot/run-command/"), "c1");
        assert_eq!(
            c.output_location().as_deref(),
            Some("s3://out/patchpilot/run-command/c1/")
        );
        assert_eq!(
            command(Some("out"), None, "c1")
                .output_location()
                .as_deref(),
            Some("s3://out/c1/")
        );
        assert_eq!(command(None, Some("p"), "c1").output_location(), None);
    }

    #[test]
    fn several_commands_point_at_their_common_prefix() {
        let a = command(Some("out"), Some("patchpilot/run-command"), "c1");
        let b = command(Some("out"), Some("patchpilot/run-command"), "c2");
        assert_eq!(
            full_report(&[a.clone(), b]).as_deref(),
            Some("s3://out/patchpilot/run-command/")
        );
        assert_eq!(
            full_report(&[a]).as_deref(),
            Some("s3://out/patchpilot/run-command/c1/")
        );
        let other = command(Some("elsewhere"), None, "c3");
        assert_eq!(
            full_report(&[command(Some("out"), None, "c1"), other]),
            None
        );
    }

    #[test]
    fn window_ownership_prefers_the_tag_and_accepts_a_policy_name() {
        let envs = ["test", "prod"];
        let owner = Owner::default();
        let tagged = WindowInfo {
            window_id: "mw-1".into(),
            name: "patchpilot-test".into(),
            marker: Some("patchpilot".into()),
        };
        assert_eq!(tagged.environment_if_owned(&owner, &envs), Some("test"));
        let by_name = WindowInfo {
            marker: None,
            ..tagged.clone()
        };
        assert_eq!(by_name.environment_if_owned(&owner, &envs), Some("test"));
        let foreign = WindowInfo {
            name: "db-maintenance".into(),
            marker: None,
            ..tagged.clone()
        };
        assert_eq!(foreign.environment_if_owned(&owner, &envs), None);
        let unknown_env = WindowInfo {
            name: "patchpilot-staging".into(),
            marker: None,
            ..tagged.clone()
        };
        assert_eq!(unknown_env.environment_if_owned(&owner, &envs), None);
        // Another stack's window, even one named like ours, is not reported here; that
        // stack's run-notifier reports it.
        let other_stack = WindowInfo {
            marker: Some("patchpilot-dev".into()),
            ..tagged.clone()
        };
        assert_eq!(other_stack.environment_if_owned(&owner, &envs), None);
        assert_eq!(
            other_stack.environment_if_owned(&Owner::new("patchpilot-dev"), &envs),
            Some("test")
        );
    }
}
