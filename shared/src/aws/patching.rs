//! SSM Patch Manager and Maintenance Windows: read what exists ([`observe`]) and carry out
//! a plan ([`apply`]). Every call is recorded in the [`CallLog`].
//!
//! Read cost grows with the number of baselines and windows, never with instances:
//! DescribePatchBaselines + DescribePatchGroups + DescribeMaintenanceWindows (paged), then
//! per patchpilot-named baseline ListTagsForResource + GetPatchBaseline, per
//! patchpilot-named window ListTagsForResource + GetMaintenanceWindow +
//! DescribeMaintenanceWindowTargets + DescribeMaintenanceWindowTasks, and per task
//! GetMaintenanceWindowTask (DescribeMaintenanceWindowTasks does not return
//! TaskInvocationParameters, where Operation/RebootOption/S3 output live).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ssm::types::{
    MaintenanceWindowResourceType, MaintenanceWindowRunCommandParameters,
    MaintenanceWindowTaskInvocationParameters, MaintenanceWindowTaskType, OperatingSystem as SdkOs,
    PatchAction, PatchBaselineIdentity, PatchComplianceLevel, PatchFilter, PatchFilterGroup,
    PatchFilterKey, PatchOrchestratorFilter, PatchRule, PatchRuleGroup, ResourceTypeForTagging,
    Tag, Target,
};
use aws_sdk_ssm::Client;
use serde::Serialize;
use tracing::{info, warn};

use super::{AwsError, CallLog, Service};
use crate::names::{self, Owner, OWNERSHIP_TAG_KEY};
use crate::plan::{
    BaselineSpec, Change, ChangeKind, ObservedBaseline, ObservedRegistration, ObservedState,
    ObservedTarget, ObservedTask, ObservedWindow, Plan, Ref, RuleSpec, TargetSpec, TaskSpec,
    WindowSpec,
};
use crate::policy::OperatingSystem;

/// The target key of a task that runs on registered window targets.
const WINDOW_TARGET_IDS: &str = "WindowTargetIds";

fn build_err(operation: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError::Call {
        operation,
        code: Some("BuildError".to_string()),
        message: e.to_string(),
    }
}

/// `patchpilot:managed=<stack>` on everything patchpilot creates.
fn ownership_tag(owner: &Owner, operation: &'static str) -> Result<Tag, AwsError> {
    let (key, value) = owner.tag();
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| build_err(operation, e))
}

// ---------------------------------------------------------------------------------------
// observe
// ---------------------------------------------------------------------------------------

/// Read the patching setup of the account (region) as the planner needs it. Definitions,
/// targets and tasks are read only for `owner`'s resources (the only ones it may change).
pub async fn observe(
    ssm: &Client,
    owner: &Owner,
    calls: &CallLog,
) -> Result<ObservedState, AwsError> {
    let mut state = ObservedState::default();

    for identity in list_own_baselines(ssm, calls).await? {
        let (Some(id), Some(name)) = (identity.baseline_id(), identity.baseline_name()) else {
            continue;
        };
        let os = identity
            .operating_system()
            .and_then(|o| OperatingSystem::parse(o.as_str()));
        // Only patchpilot-named baselines can be ours; others are kept for names in
        // conflict messages without spending calls on them.
        let Some((environment, _)) = names::parse_baseline_name(name) else {
            state.baselines.push(ObservedBaseline {
                id: id.to_string(),
                name: name.to_string(),
                os,
                marker: None,
                spec: None,
            });
            continue;
        };
        let marker = marker(ssm, calls, ResourceTypeForTagging::PatchBaseline, id).await?;
        let spec = if owner.owns(marker.as_deref()) {
            Some(read_baseline(ssm, calls, id, &environment).await?)
        } else {
            None
        };
        state.baselines.push(ObservedBaseline {
            id: id.to_string(),
            name: name.to_string(),
            os,
            marker,
            spec,
        });
    }

    state.registrations = list_registrations(ssm, calls).await?;

    for window in list_windows(ssm, calls).await? {
        let (Some(id), Some(name)) = (window.window_id(), window.name()) else {
            continue;
        };
        let Some(environment) = names::parse_window_name(name) else {
            continue;
        };
        let marker = marker(ssm, calls, ResourceTypeForTagging::MaintenanceWindow, id).await?;
        if !owner.owns(marker.as_deref()) {
            state.windows.push(ObservedWindow {
                id: id.to_string(),
                name: name.to_string(),
                marker,
                spec: None,
            });
            continue;
        }
        let spec = read_window(ssm, calls, id, environment).await?;
        let targets = read_targets(ssm, calls, id, name).await?;
        let tasks = read_tasks(ssm, calls, id, name, &targets).await?;
        state.windows.push(ObservedWindow {
            id: id.to_string(),
            name: name.to_string(),
            marker,
            spec: Some(spec),
        });
        state.targets.extend(targets);
        state.tasks.extend(tasks);
    }
    Ok(state)
}

async fn list_own_baselines(
    ssm: &Client,
    calls: &CallLog,
) -> Result<Vec<PatchBaselineIdentity>, AwsError> {
    let owner = PatchOrchestratorFilter::builder()
        .key("OWNER")
        .values("Self")
        .build();
    let mut out = Vec::new();
    let mut token = None;
    loop {
        calls.record("DescribePatchBaselines");
        let page = ssm
            .describe_patch_baselines()
            .filters(owner.clone())
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, "DescribePatchBaselines", e))?;
        out.extend(page.baseline_identities().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// The value of the resource's `patchpilot:managed` tag (the stack that created it).
async fn marker(
    ssm: &Client,
    calls: &CallLog,
    resource_type: ResourceTypeForTagging,
    id: &str,
) -> Result<Option<String>, AwsError> {
    calls.record("ListTagsForResource");
    let tags = ssm
        .list_tags_for_resource()
        .resource_type(resource_type)
        .resource_id(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(Service::Ssm, "ListTagsForResource", e).on(&[id]))?;
    Ok(tags
        .tag_list()
        .iter()
        .find(|t| t.key() == OWNERSHIP_TAG_KEY)
        .map(|t| t.value().to_string()))
}

async fn read_baseline(
    ssm: &Client,
    calls: &CallLog,
    id: &str,
    environment: &str,
) -> Result<BaselineSpec, AwsError> {
    const OP: &str = "GetPatchBaseline";
    calls.record(OP);
    let b = ssm
        .get_patch_baseline()
        .baseline_id(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
    let os = b
        .operating_system()
        .and_then(|o| OperatingSystem::parse(o.as_str()))
        .ok_or_else(|| AwsError::missing(OP, "OperatingSystem"))?;
    let rules = b
        .approval_rules()
        .map(|g| g.patch_rules())
        .unwrap_or_default()
        .iter()
        .map(|r| RuleSpec {
            filters: r
                .patch_filter_group()
                .map(|g| g.patch_filters())
                .unwrap_or_default()
                .iter()
                .map(|f| (f.key().as_str().to_string(), f.values().to_vec()))
                .collect(),
            compliance_level: r
                .compliance_level()
                .map(|c| c.as_str().to_string())
                .unwrap_or_else(|| "UNSPECIFIED".to_string()),
            enable_non_security: r.enable_non_security().unwrap_or(false),
            approve_after_days: r.approve_after_days().and_then(|d| u32::try_from(d).ok()),
            approve_until_date: r.approve_until_date().map(str::to_string),
        })
        .collect();
    Ok(BaselineSpec {
        name: b.name().unwrap_or_default().to_string(),
        environment: environment.to_string(),
        os,
        description: b.description().unwrap_or_default().to_string(),
        rules,
        approved_patches: b.approved_patches().to_vec(),
        approved_patches_compliance_level: b
            .approved_patches_compliance_level()
            .map(|c| c.as_str().to_string())
            .unwrap_or_else(|| "UNSPECIFIED".to_string()),
        rejected_patches: b.rejected_patches().to_vec(),
        rejected_patches_action: b
            .rejected_patches_action()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| "ALLOW_AS_DEPENDENCY".to_string()),
    })
}

async fn list_registrations(
    ssm: &Client,
    calls: &CallLog,
) -> Result<Vec<ObservedRegistration>, AwsError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        calls.record("DescribePatchGroups");
        let page = ssm
            .describe_patch_groups()
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, "DescribePatchGroups", e))?;
        for m in page.mappings() {
            let (Some(group), Some(identity)) = (m.patch_group(), m.baseline_identity()) else {
                continue;
            };
            let Some(baseline_id) = identity.baseline_id() else {
                continue;
            };
            out.push(ObservedRegistration {
                patch_group: group.to_string(),
                baseline_id: baseline_id.to_string(),
                os: identity
                    .operating_system()
                    .and_then(|o| OperatingSystem::parse(o.as_str())),
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn list_windows(
    ssm: &Client,
    calls: &CallLog,
) -> Result<Vec<aws_sdk_ssm::types::MaintenanceWindowIdentity>, AwsError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        calls.record("DescribeMaintenanceWindows");
        let page = ssm
            .describe_maintenance_windows()
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, "DescribeMaintenanceWindows", e))?;
        out.extend(page.window_identities().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn read_window(
    ssm: &Client,
    calls: &CallLog,
    id: &str,
    environment: &str,
) -> Result<WindowSpec, AwsError> {
    const OP: &str = "GetMaintenanceWindow";
    calls.record(OP);
    let w = ssm
        .get_maintenance_window()
        .window_id(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
    let hours = |v: Option<i32>| v.and_then(|h| u32::try_from(h).ok()).unwrap_or(0);
    Ok(WindowSpec {
        name: w.name().unwrap_or_default().to_string(),
        environment: environment.to_string(),
        description: w.description().unwrap_or_default().to_string(),
        schedule: w.schedule().unwrap_or_default().to_string(),
        timezone: w.schedule_timezone().unwrap_or("Etc/UTC").to_string(),
        offset_days: w
            .schedule_offset()
            .and_then(|d| u32::try_from(d).ok())
            .filter(|d| *d > 0),
        duration_hours: hours(w.duration()),
        cutoff_hours: hours(Some(w.cutoff())),
        allow_unassociated_targets: w.allow_unassociated_targets(),
        enabled: w.enabled(),
    })
}

async fn read_targets(
    ssm: &Client,
    calls: &CallLog,
    window_id: &str,
    window: &str,
) -> Result<Vec<ObservedTarget>, AwsError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        calls.record("DescribeMaintenanceWindowTargets");
        let page = ssm
            .describe_maintenance_window_targets()
            .window_id(window_id)
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, "DescribeMaintenanceWindowTargets", e))?;
        for t in page.targets() {
            let Some(id) = t.window_target_id() else {
                continue;
            };
            // The patch-group tag, and for a promoted environment's per-OS target the
            // `patchpilot:os` tag (`crate::promotion`).
            let os_key = format!("tag:{}", crate::promotion::OS_TAG_KEY);
            let first = t
                .targets()
                .iter()
                .find(|t| t.key() != Some(os_key.as_str()));
            let os = t
                .targets()
                .iter()
                .find(|t| t.key() == Some(os_key.as_str()))
                .map(|t| {
                    t.values()
                        .first()
                        .and_then(|v| crate::policy::OperatingSystem::parse(v))
                });
            out.push(ObservedTarget {
                window_id: window_id.to_string(),
                id: id.to_string(),
                spec: TargetSpec {
                    window: window.to_string(),
                    name: t.name().unwrap_or_default().to_string(),
                    description: t.description().unwrap_or_default().to_string(),
                    key: first.and_then(|t| t.key()).unwrap_or_default().to_string(),
                    value: first.map(|t| t.values().join(",")).unwrap_or_default(),
                    // An unreadable OS value differs from every desired target: replaced.
                    os: os.flatten(),
                    owner_information: t.owner_information().unwrap_or_default().to_string(),
                },
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn read_tasks(
    ssm: &Client,
    calls: &CallLog,
    window_id: &str,
    window: &str,
    targets: &[ObservedTarget],
) -> Result<Vec<ObservedTask>, AwsError> {
    let target_names: HashMap<&str, &str> = targets
        .iter()
        .map(|t| (t.id.as_str(), t.spec.name.as_str()))
        .collect();
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        calls.record("DescribeMaintenanceWindowTasks");
        let page = ssm
            .describe_maintenance_window_tasks()
            .window_id(window_id)
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, "DescribeMaintenanceWindowTasks", e))?;
        ids.extend(
            page.tasks()
                .iter()
                .filter_map(|t| t.window_task_id().map(str::to_string)),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut out = Vec::new();
    for task_id in ids {
        const OP: &str = "GetMaintenanceWindowTask";
        calls.record(OP);
        let t = ssm
            .get_maintenance_window_task()
            .window_id(window_id)
            .window_task_id(&task_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
        let target = t
            .targets()
            .iter()
            .find(|t| t.key() == Some(WINDOW_TARGET_IDS))
            .and_then(|t| t.values().first())
            .map(|id| {
                target_names
                    .get(id.as_str())
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| id.clone())
            })
            .unwrap_or_default();
        let run = t.task_invocation_parameters().and_then(|p| p.run_command());
        let parameters: BTreeMap<String, Vec<String>> = run
            .and_then(|r| r.parameters())
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        out.push(ObservedTask {
            window_id: window_id.to_string(),
            id: task_id.clone(),
            document: t.task_arn().unwrap_or_default().to_string(),
            spec: TaskSpec {
                window: window.to_string(),
                name: t.name().unwrap_or_default().to_string(),
                description: t.description().unwrap_or_default().to_string(),
                target,
                priority: u32::try_from(t.priority()).unwrap_or(0),
                max_concurrency: t.max_concurrency().unwrap_or_default().to_string(),
                max_errors: t.max_errors().unwrap_or_default().to_string(),
                parameters,
                output_s3_bucket: run
                    .and_then(|r| r.output_s3_bucket_name())
                    .map(str::to_string),
                output_s3_prefix: run
                    .and_then(|r| r.output_s3_key_prefix())
                    .map(str::to_string),
                service_role_arn: t
                    .service_role_arn()
                    .or_else(|| run.and_then(|r| r.service_role_arn()))
                    .map(str::to_string),
            },
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// apply
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Done; `id` of the created resource where there is one.
    Applied { id: Option<String> },
    Failed {
        error: String,
        /// IAM denied the call (the error names the action): fix the deployment's role.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        access_denied: bool,
    },
    /// Not attempted because a change it depends on failed.
    Skipped { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedChange {
    pub line: String,
    pub kind: ChangeKind,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub changes: Vec<AppliedChange>,
}

impl ApplyReport {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes
            .iter()
            .filter(|c| c.kind == kind && matches!(c.outcome, Outcome::Applied { .. }))
            .count()
    }

    pub fn failed(&self) -> impl Iterator<Item = &AppliedChange> {
        self.changes
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. } | Outcome::Skipped { .. }))
    }
}

/// Ids of resources created during this apply, by name, so later changes can use them.
#[derive(Default)]
struct Created {
    baselines: HashMap<String, String>,
    windows: HashMap<String, String>,
    /// `window/target name` → window target id.
    targets: HashMap<String, String>,
}

impl Created {
    fn resolve(map: &HashMap<String, String>, r: &Ref) -> Result<String, String> {
        match r {
            Ref::Id(id) => Ok(id.clone()),
            Ref::Created(name) => map
                .get(name)
                .cloned()
                .ok_or_else(|| format!("depends on `{name}`, which was not created")),
        }
    }
}

/// Carry out a plan in its order; what it creates is marked as `owner`'s. A failing change
/// does not stop the others; a change whose prerequisite failed is skipped with the reason.
pub async fn apply(ssm: &Client, owner: &Owner, calls: &CallLog, plan: &Plan) -> ApplyReport {
    let mut created = Created::default();
    let mut report = ApplyReport::default();
    for planned in &plan.changes {
        let outcome = match apply_one(ssm, owner, calls, &planned.change, &mut created).await {
            Ok(Ok(id)) => {
                info!(change = %planned.line, "applied");
                Outcome::Applied { id }
            }
            Ok(Err(reason)) => {
                warn!(change = %planned.line, %reason, "skipped");
                Outcome::Skipped { reason }
            }
            Err(e) => {
                warn!(change = %planned.line, error = %e, "failed");
                Outcome::Failed {
                    error: e.to_string(),
                    access_denied: e.is_access_denied(),
                }
            }
        };
        report.changes.push(AppliedChange {
            line: planned.line.clone(),
            kind: planned.kind,
            outcome,
        });
    }
    report
}

/// `Ok(Ok(id))` applied, `Ok(Err(reason))` skipped, `Err` failed.
async fn apply_one(
    ssm: &Client,
    owner: &Owner,
    calls: &CallLog,
    change: &Change,
    created: &mut Created,
) -> Result<Result<Option<String>, String>, AwsError> {
    match change {
        Change::CreateBaseline { spec } => {
            const OP: &str = "CreatePatchBaseline";
            calls.record(OP);
            let out = ssm
                .create_patch_baseline()
                .name(&spec.name)
                .operating_system(SdkOs::from(spec.os.as_str()))
                .description(&spec.description)
                .approval_rules(rule_group(spec, OP)?)
                .set_approved_patches(Some(spec.approved_patches.clone()))
                .approved_patches_compliance_level(PatchComplianceLevel::from(
                    spec.approved_patches_compliance_level.as_str(),
                ))
                .set_rejected_patches(Some(spec.rejected_patches.clone()))
                .rejected_patches_action(PatchAction::from(spec.rejected_patches_action.as_str()))
                .tags(ownership_tag(owner, OP)?)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            let id = out
                .baseline_id()
                .ok_or_else(|| AwsError::missing(OP, "BaselineId"))?;
            created.baselines.insert(spec.name.clone(), id.to_string());
            Ok(Ok(Some(id.to_string())))
        }
        Change::UpdateBaseline { id, spec } => {
            const OP: &str = "UpdatePatchBaseline";
            calls.record(OP);
            // Replace=true: fields patchpilot manages are set exactly as the policy says
            // (an emptied list really empties it).
            ssm.update_patch_baseline()
                .baseline_id(id)
                .name(&spec.name)
                .description(&spec.description)
                .approval_rules(rule_group(spec, OP)?)
                .set_approved_patches(Some(spec.approved_patches.clone()))
                .approved_patches_compliance_level(PatchComplianceLevel::from(
                    spec.approved_patches_compliance_level.as_str(),
                ))
                .set_rejected_patches(Some(spec.rejected_patches.clone()))
                .rejected_patches_action(PatchAction::from(spec.rejected_patches_action.as_str()))
                .replace(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::DeleteBaseline { id, .. } => {
            const OP: &str = "DeletePatchBaseline";
            calls.record(OP);
            ssm.delete_patch_baseline()
                .baseline_id(id)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::RegisterPatchGroup {
            patch_group,
            baseline,
            ..
        } => {
            const OP: &str = "RegisterPatchBaselineForPatchGroup";
            let id = match Created::resolve(&created.baselines, baseline) {
                Ok(id) => id,
                Err(reason) => return Ok(Err(reason)),
            };
            calls.record(OP);
            ssm.register_patch_baseline_for_patch_group()
                .baseline_id(&id)
                .patch_group(patch_group)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::DeregisterPatchGroup {
            patch_group,
            baseline_id,
            ..
        } => {
            const OP: &str = "DeregisterPatchBaselineForPatchGroup";
            calls.record(OP);
            ssm.deregister_patch_baseline_for_patch_group()
                .baseline_id(baseline_id)
                .patch_group(patch_group)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::CreateWindow { spec } => {
            const OP: &str = "CreateMaintenanceWindow";
            calls.record(OP);
            let out = ssm
                .create_maintenance_window()
                .name(&spec.name)
                .description(&spec.description)
                .schedule(&spec.schedule)
                .schedule_timezone(&spec.timezone)
                .set_schedule_offset(spec.offset_days.and_then(|d| i32::try_from(d).ok()))
                .duration(hours(spec.duration_hours))
                .cutoff(hours(spec.cutoff_hours))
                .allow_unassociated_targets(spec.allow_unassociated_targets)
                .tags(ownership_tag(owner, OP)?)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            let id = out
                .window_id()
                .ok_or_else(|| AwsError::missing(OP, "WindowId"))?;
            created.windows.insert(spec.name.clone(), id.to_string());
            Ok(Ok(Some(id.to_string())))
        }
        Change::UpdateWindow { id, spec } => {
            const OP: &str = "UpdateMaintenanceWindow";
            calls.record(OP);
            // Replace=true so that removing ScheduleOffset from the policy removes it.
            ssm.update_maintenance_window()
                .window_id(id)
                .name(&spec.name)
                .description(&spec.description)
                .schedule(&spec.schedule)
                .schedule_timezone(&spec.timezone)
                .set_schedule_offset(spec.offset_days.and_then(|d| i32::try_from(d).ok()))
                .duration(hours(spec.duration_hours))
                .cutoff(hours(spec.cutoff_hours))
                .allow_unassociated_targets(spec.allow_unassociated_targets)
                .enabled(spec.enabled)
                .replace(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::DeleteWindow { id, .. } => {
            const OP: &str = "DeleteMaintenanceWindow";
            calls.record(OP);
            ssm.delete_maintenance_window()
                .window_id(id)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::RegisterTarget { window, spec } => {
            const OP: &str = "RegisterTargetWithMaintenanceWindow";
            let window_id = match Created::resolve(&created.windows, window) {
                Ok(id) => id,
                Err(reason) => return Ok(Err(reason)),
            };
            calls.record(OP);
            let out = ssm
                .register_target_with_maintenance_window()
                .window_id(&window_id)
                .resource_type(MaintenanceWindowResourceType::Instance)
                .set_targets(Some(tag_targets(spec)))
                .owner_information(&spec.owner_information)
                .name(&spec.name)
                .description(&spec.description)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            let id = out
                .window_target_id()
                .ok_or_else(|| AwsError::missing(OP, "WindowTargetId"))?;
            created
                .targets
                .insert(format!("{}/{}", spec.window, spec.name), id.to_string());
            Ok(Ok(Some(id.to_string())))
        }
        Change::UpdateTarget {
            window_id,
            target_id,
            spec,
        } => {
            const OP: &str = "UpdateMaintenanceWindowTarget";
            calls.record(OP);
            ssm.update_maintenance_window_target()
                .window_id(window_id)
                .window_target_id(target_id)
                .set_targets(Some(tag_targets(spec)))
                .owner_information(&spec.owner_information)
                .name(&spec.name)
                .description(&spec.description)
                .replace(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::DeregisterTarget {
            window_id,
            target_id,
            ..
        } => {
            const OP: &str = "DeregisterTargetFromMaintenanceWindow";
            calls.record(OP);
            // Safe: refuse if a task (maybe someone else's) still runs on this target.
            ssm.deregister_target_from_maintenance_window()
                .window_id(window_id)
                .window_target_id(target_id)
                .safe(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::RegisterTask {
            window,
            target,
            spec,
        } => {
            const OP: &str = "RegisterTaskWithMaintenanceWindow";
            let window_id = match Created::resolve(&created.windows, window) {
                Ok(id) => id,
                Err(reason) => return Ok(Err(reason)),
            };
            let target_id = match Created::resolve(&created.targets, target) {
                Ok(id) => id,
                Err(reason) => return Ok(Err(reason)),
            };
            calls.record(OP);
            let out = ssm
                .register_task_with_maintenance_window()
                .window_id(&window_id)
                .targets(
                    Target::builder()
                        .key(WINDOW_TARGET_IDS)
                        .values(&target_id)
                        .build(),
                )
                .task_arn(crate::plan::desired::RUN_PATCH_BASELINE)
                .task_type(MaintenanceWindowTaskType::RunCommand)
                .set_service_role_arn(spec.service_role_arn.clone())
                .task_invocation_parameters(invocation(spec))
                .priority(i32::try_from(spec.priority).unwrap_or(i32::MAX))
                .max_concurrency(&spec.max_concurrency)
                .max_errors(&spec.max_errors)
                .name(&spec.name)
                .description(&spec.description)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(out.window_task_id().map(str::to_string)))
        }
        Change::UpdateTask {
            window_id,
            task_id,
            target,
            spec,
        } => {
            const OP: &str = "UpdateMaintenanceWindowTask";
            let target_id = match Created::resolve(&created.targets, target) {
                Ok(id) => id,
                Err(reason) => return Ok(Err(reason)),
            };
            calls.record(OP);
            ssm.update_maintenance_window_task()
                .window_id(window_id)
                .window_task_id(task_id)
                .targets(
                    Target::builder()
                        .key(WINDOW_TARGET_IDS)
                        .values(&target_id)
                        .build(),
                )
                .task_arn(crate::plan::desired::RUN_PATCH_BASELINE)
                .set_service_role_arn(spec.service_role_arn.clone())
                .task_invocation_parameters(invocation(spec))
                .priority(i32::try_from(spec.priority).unwrap_or(i32::MAX))
                .max_concurrency(&spec.max_concurrency)
                .max_errors(&spec.max_errors)
                .name(&spec.name)
                .description(&spec.description)
                .replace(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
        Change::DeregisterTask {
            window_id, task_id, ..
        } => {
            const OP: &str = "DeregisterTaskFromMaintenanceWindow";
            calls.record(OP);
            ssm.deregister_task_from_maintenance_window()
                .window_id(window_id)
                .window_task_id(task_id)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
            Ok(Ok(None))
        }
    }
}

fn hours(h: u32) -> i32 {
    i32::try_from(h).unwrap_or(i32::MAX)
}

fn rule_group(spec: &BaselineSpec, operation: &'static str) -> Result<PatchRuleGroup, AwsError> {
    let mut rules = Vec::new();
    for r in &spec.rules {
        let mut filters = Vec::new();
        for (key, values) in &r.filters {
            filters.push(
                PatchFilter::builder()
                    .key(PatchFilterKey::from(key.as_str()))
                    .set_values(Some(values.clone()))
                    .build()
                    .map_err(|e| build_err(operation, e))?,
            );
        }
        let group = PatchFilterGroup::builder()
            .set_patch_filters(Some(filters))
            .build()
            .map_err(|e| build_err(operation, e))?;
        let mut rule = PatchRule::builder()
            .patch_filter_group(group)
            .compliance_level(PatchComplianceLevel::from(r.compliance_level.as_str()))
            .set_approve_after_days(r.approve_after_days.and_then(|d| i32::try_from(d).ok()))
            .set_approve_until_date(r.approve_until_date.clone());
        // EnableNonSecurity is Linux-only; SSM rejects it on Windows baselines.
        if spec.os.platform() == crate::policy::Platform::Linux {
            rule = rule.enable_non_security(r.enable_non_security);
        }
        rules.push(rule.build());
    }
    PatchRuleGroup::builder()
        .set_patch_rules(Some(rules))
        .build()
        .map_err(|e| build_err(operation, e))
}

/// The target's tags: SSM selects nodes carrying all of them ("If you specify more than one
/// key-value pair, a node must be tagged with all the tag keys and values you specify", SSM
/// User Guide, "Examples: Register targets with a maintenance window").
fn tag_targets(spec: &TargetSpec) -> Vec<Target> {
    let mut targets = vec![Target::builder().key(&spec.key).values(&spec.value).build()];
    if let Some(os) = spec.os {
        targets.push(
            Target::builder()
                .key(format!("tag:{}", crate::promotion::OS_TAG_KEY))
                .values(os.as_str())
                .build(),
        );
    }
    targets
}

fn invocation(spec: &TaskSpec) -> MaintenanceWindowTaskInvocationParameters {
    let parameters: HashMap<String, Vec<String>> = spec.parameters.clone().into_iter().collect();
    MaintenanceWindowTaskInvocationParameters::builder()
        .run_command(
            MaintenanceWindowRunCommandParameters::builder()
                .set_parameters(Some(parameters))
                .set_output_s3_bucket_name(spec.output_s3_bucket.clone())
                .set_output_s3_key_prefix(spec.output_s3_prefix.clone())
                .set_service_role_arn(spec.service_role_arn.clone())
                .build(),
        )
        .build()
}
