//! baseline-sync's job, independent of Lambda: observe SSM, plan against the policy, apply
//! (unless dry-run), then sweep the fleet's Patch Group tags. The CLI's `plan` uses the
//! same [`plan_only`].

use std::time::Instant;

use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

use crate::aws::coverage::{CoverageError, CoverageReader};
use crate::aws::coverage_notice::NoticeOutcome;
use crate::aws::ec2::Ec2Fleet;
use crate::aws::host_management::{self, SettingState};
use crate::aws::managed::ManagedInstances;
use crate::aws::patching::{self, AppliedChange, ApplyReport, Outcome};
use crate::aws::policy_source::LoadedPolicy;
use crate::aws::{AwsError, CallLog, CallSummary};
use crate::coverage::{CoverageSummary, VerdictKind};
use crate::fleet::{self, FleetAdapters, FleetError, SweepReport};
use crate::names::Owner;
use crate::plan::{self, ChangeKind, Conflict, Deployment, Plan};
use crate::policy::Problem;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Plan only: no write call at all (the sweep reports what it would tag).
    pub dry_run: bool,
    /// Also sweep the fleet's Patch Group tags.
    pub sweep: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: u32,
    pub failed: usize,
    pub conflicts: usize,
}

/// What one sync did; returned by the Lambda and logged as one JSON record.
#[derive(Debug, Clone, Serialize)]
pub struct SyncResult {
    pub dry_run: bool,
    pub policy_source: String,
    pub warnings: Vec<Problem>,
    /// The plan, one line per change (`+` create, `~` update, `-` delete, `!` conflict).
    pub plan: Vec<String>,
    pub conflicts: Vec<Conflict>,
    /// Outcome of each change (empty for a dry run).
    pub applied: Vec<AppliedChange>,
    pub counts: Counts,
    pub sweep: Option<SweepReport>,
    /// Which hosts Patch Manager will not patch as the policy intends, and why (computed on
    /// every run, after the sweep).
    pub coverage: CoverageSummary,
    /// Whether the coverage message went out (set by baseline-sync's handler; `None` when
    /// no topic is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage_notice: Option<NoticeOutcome>,
    pub aws_calls: CallSummary,
    pub duration_ms: u64,
}

impl SyncResult {
    /// Changes that failed or were skipped, and conflicts: the sync did not reach the
    /// policy's state.
    pub fn is_complete(&self) -> bool {
        self.counts.failed == 0 && self.counts.conflicts == 0
    }
}

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("cannot read the current patching setup from SSM, nothing was changed: {0}")]
    Observe(#[source] AwsError),
    #[error("fleet tag sweep failed: {0}")]
    Sweep(#[source] FleetError),
    #[error("the changes were applied and the tags swept, but the fleet's coverage could not be read: {0}")]
    Coverage(#[source] Box<CoverageError>),
}

/// Observe and plan for `owner`'s stack, without writing.
pub async fn plan_only(
    ssm: &aws_sdk_ssm::Client,
    owner: &Owner,
    policy: &LoadedPolicy,
    deployment: &Deployment,
    calls: &CallLog,
) -> Result<Plan, SyncError> {
    let observed = patching::observe(ssm, owner, calls)
        .await
        .map_err(SyncError::Observe)?;
    let desired = plan::desired_state(&policy.policy, deployment);
    Ok(plan::plan(&desired, &observed, owner))
}

/// One full sync. Errors only when nothing could be done (SSM unreadable) or the sweep
/// broke; individual failed changes are in the result (see [`SyncResult::is_complete`]).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ssm: &aws_sdk_ssm::Client,
    fleet_adapters: &FleetAdapters<Ec2Fleet, ManagedInstances>,
    coverage_reader: &CoverageReader,
    owner: &Owner,
    policy: &LoadedPolicy,
    deployment: &Deployment,
    options: SyncOptions,
    calls: &CallLog,
) -> Result<SyncResult, SyncError> {
    let started = Instant::now();
    let plan = plan_only(ssm, owner, policy, deployment, calls).await?;
    let mut lines = plan.lines();
    for line in &lines {
        info!(dry_run = options.dry_run, change = %line, "planned");
    }
    let mut report = if options.dry_run {
        ApplyReport::default()
    } else {
        patching::apply(ssm, owner, calls, &plan).await
    };
    if let Some(role) = &deployment.default_host_management_role {
        ensure_host_management(ssm, role, options.dry_run, calls, &mut lines, &mut report).await;
    }
    let sweep = if options.sweep {
        Some(
            fleet::sweep(
                &policy.policy,
                owner,
                fleet_adapters,
                calls,
                options.dry_run,
            )
            .await
            .map_err(SyncError::Sweep)?,
        )
    } else {
        None
    };
    let coverage = coverage_reader
        .coverage(&policy.policy, chrono::Utc::now(), calls)
        .await
        .map_err(|e| SyncError::Coverage(Box::new(e)))?;
    let os_tags = tag_operating_systems(
        &policy.policy,
        fleet_adapters,
        &coverage,
        options.dry_run,
        calls,
        &mut report,
    )
    .await;
    lines.extend(os_tags);
    let coverage = coverage.summary();
    log_coverage(&coverage);
    let counts = Counts {
        created: report.count(ChangeKind::Create),
        updated: report.count(ChangeKind::Update),
        deleted: report.count(ChangeKind::Delete),
        unchanged: plan.unchanged,
        failed: report
            .changes
            .iter()
            .filter(|c| !matches!(c.outcome, Outcome::Applied { .. }))
            .count(),
        conflicts: plan.conflicts.len(),
    };
    for c in &plan.conflicts {
        warn!(resource = %c.resource, "conflict: {}", c.message);
    }
    Ok(SyncResult {
        dry_run: options.dry_run,
        policy_source: policy.source.clone(),
        warnings: policy.warnings.clone(),
        plan: lines,
        conflicts: plan.conflicts,
        applied: report.changes,
        counts,
        sweep,
        coverage,
        coverage_notice: None,
        aws_calls: calls.summary(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The stack opted in to Default Host Management: the service setting must hold `role`. A
/// difference is one more `~` plan line and, unless dry-run, one more applied (or failed)
/// change, so a failure makes the sync incomplete like any other change. Nothing is written
/// when the setting already holds the role.
async fn ensure_host_management(
    ssm: &aws_sdk_ssm::Client,
    role: &str,
    dry_run: bool,
    calls: &CallLog,
    lines: &mut Vec<String>,
    report: &mut ApplyReport,
) {
    let failed = |line: String, e: AwsError| AppliedChange {
        line,
        kind: ChangeKind::Update,
        outcome: Outcome::Failed {
            error: e.to_string(),
            access_denied: e.is_access_denied(),
        },
    };
    let current = match host_management::check(ssm, role, calls).await {
        Ok(SettingState::InPlace) => return,
        Ok(SettingState::Differs { current }) => current,
        Err(e) => {
            let line = host_management::change_line(role, "unreadable");
            warn!(error = %e, "cannot read the Default Host Management setting");
            if !dry_run {
                report.changes.push(failed(line, e));
            }
            return;
        }
    };
    let line = host_management::change_line(role, &current);
    info!(dry_run, change = %line, "planned");
    lines.push(line.clone());
    if dry_run {
        return;
    }
    report
        .changes
        .push(match host_management::set(ssm, role, calls).await {
            Ok(()) => {
                info!(role, "Default Host Management turned on");
                AppliedChange {
                    line,
                    kind: ChangeKind::Update,
                    outcome: Outcome::Applied { id: None },
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot set the Default Host Management setting");
                failed(line, e)
            }
        });
}

/// One structured record: the count per verdict and the hosts that are not covered.
fn log_coverage(c: &CoverageSummary) {
    let uncovered = serde_json::to_string(&c.uncovered).unwrap_or_default();
    let suggested: Vec<&str> = c.suggested_baselines.iter().map(|o| o.as_str()).collect();
    let fields = (
        c.count(VerdictKind::Covered),
        c.count(VerdictKind::NotManaged),
        c.count(VerdictKind::DefaultBaseline),
        c.count(VerdictKind::MissedWindow),
        c.count(VerdictKind::Unmatched),
        c.count(VerdictKind::Excluded),
    );
    let uncovered_count = c.uncovered.len();
    if uncovered_count > 0 {
        warn!(
            hosts = c.hosts,
            covered = fields.0,
            not_managed = fields.1,
            default_baseline = fields.2,
            missed_window = fields.3,
            unmatched = fields.4,
            excluded = fields.5,
            suggested_baselines = %suggested.join(","),
            host_management = %c.host_management,
            uncovered = %uncovered,
            "coverage: {uncovered_count} host(s) not covered"
        );
    } else {
        info!(
            hosts = c.hosts,
            covered = fields.0,
            host_management = %c.host_management,
            "coverage: every host covered"
        );
    }
}

/// EC2 `CreateTags` resources per call (the sweep writes at most this many at once too).
const OS_TAG_CHUNK: usize = 500;

/// A promoted environment's per-OS targets select `patchpilot:os=<OS>`
/// (`crate::promotion`): keep that tag at the OS SSM reports for every node of a promoted
/// environment's patch groups. Returns the plan lines; failures are failed changes (the sync
/// is then incomplete), never silent.
async fn tag_operating_systems(
    policy: &crate::policy::Policy,
    adapters: &FleetAdapters<Ec2Fleet, ManagedInstances>,
    coverage: &crate::coverage::Coverage,
    dry_run: bool,
    calls: &CallLog,
    report: &mut ApplyReport,
) -> Vec<String> {
    use crate::fleet::{InstancePort, ManagedPort};
    use crate::promotion::OS_TAG_KEY;
    use std::collections::{BTreeMap, BTreeSet};

    let groups: BTreeSet<String> = policy
        .environments
        .iter()
        .filter(|e| e.approval.promotes_from().is_some())
        .flat_map(|e| plan::patch_groups(policy, e))
        .map(|g| g.to_string())
        .collect();
    let mut ec2: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut managed: Vec<(String, &'static str)> = Vec::new();
    for h in &coverage.hosts {
        let (Some(group), Some(os)) = (&h.patch_group, h.os) else {
            continue;
        };
        if !groups.contains(group) || h.os_tag.as_deref() == Some(os.as_str()) {
            continue;
        }
        if h.instance_id.starts_with("mi-") {
            managed.push((h.instance_id.clone(), os.as_str()));
        } else {
            ec2.entry(os.as_str())
                .or_default()
                .push(h.instance_id.clone());
        }
    }
    let mut lines = Vec::new();
    let failed = |line: String, e: FleetError, report: &mut ApplyReport| {
        warn!(change = %line, error = %e, "OS tag not written");
        let access_denied =
            matches!(&e, FleetError::Aws { source, .. } if source.is_access_denied());
        report.changes.push(AppliedChange {
            line,
            kind: ChangeKind::Update,
            outcome: Outcome::Failed {
                error: e.to_string(),
                access_denied,
            },
        });
    };
    for (os, ids) in ec2 {
        for chunk in ids.chunks(OS_TAG_CHUNK) {
            let line = format!("~ tag {} {OS_TAG_KEY}={os}", chunk.join(", "));
            info!(dry_run, change = %line, "planned");
            lines.push(line.clone());
            if dry_run {
                continue;
            }
            let tags = [(OS_TAG_KEY.to_string(), os.to_string())];
            if let Err(e) = adapters.ec2.create_tags(chunk, &tags, calls).await {
                failed(line, e, report);
            }
        }
    }
    for (id, os) in managed {
        let line = format!("~ tag {id} {OS_TAG_KEY}={os}");
        info!(dry_run, change = %line, "planned");
        lines.push(line.clone());
        if dry_run {
            continue;
        }
        let tags = [(OS_TAG_KEY.to_string(), os.to_string())];
        if let Err(e) = adapters.managed.add_tags(&id, &tags, calls).await {
            failed(line, e, report);
        }
    }
    lines
}
