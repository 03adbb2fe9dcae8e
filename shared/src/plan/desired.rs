//! Desired state: what the policy says should exist in SSM, fully derived (names, rules,
//! schedules, targets, tasks) and in SSM's own vocabulary, so comparing it with what exists
//! is a plain equality check.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::names::{self, PatchGroup};
use crate::policy::{Environment, OperatingSystem, Policy};
use crate::promotion::{PromotionState, OS_TAG_KEY};
use crate::schedule::Schedule;

/// The document every patch task runs.
pub const RUN_PATCH_BASELINE: &str = "AWS-RunPatchBaseline";

/// Settings that come from the deployment, not the policy (template.yaml environment, read by
/// `settings::Settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// `OUTPUT_BUCKET`: used when the policy names no bucket.
    pub output_bucket: Option<String>,
    /// `MAINTENANCE_WINDOW_ROLE_ARN`: the role window tasks run with; `None` = SSM's
    /// service-linked role.
    pub window_role_arn: Option<String>,
    /// `DEFAULT_HOST_MANAGEMENT_ROLE`: the role name the Default Host Management service
    /// setting must hold (the stack's `EnableDefaultHostManagement` opt-in); `None` = leave
    /// the setting alone.
    pub default_host_management_role: Option<String>,
    /// The promotion state of each environment with `approval.mode: promote` (read from the
    /// output bucket, `crate::promotion`); an environment without one is held.
    pub promotions: BTreeMap<String, PromotionState>,
    /// Promoted environments whose state could not be read, with why: held (never install
    /// something unvetted because a read failed).
    pub promotion_errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSpec {
    /// Filter key → values, keys sorted (SSM does not care about filter order).
    pub filters: BTreeMap<String, Vec<String>>,
    pub compliance_level: String,
    pub enable_non_security: bool,
    pub approve_after_days: Option<u32>,
    pub approve_until_date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaselineSpec {
    pub name: String,
    pub environment: String,
    pub os: OperatingSystem,
    pub description: String,
    pub rules: Vec<RuleSpec>,
    pub approved_patches: Vec<String>,
    pub approved_patches_compliance_level: String,
    pub rejected_patches: Vec<String>,
    pub rejected_patches_action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowSpec {
    pub name: String,
    pub environment: String,
    pub description: String,
    pub schedule: String,
    pub timezone: String,
    pub offset_days: Option<u32>,
    pub duration_hours: u32,
    pub cutoff_hours: u32,
    /// Always false: a window only runs on the instances its targets name.
    pub allow_unassociated_targets: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetSpec {
    pub window: String,
    /// = the patch group (the article names targets after their group).
    pub name: String,
    pub description: String,
    /// `tag:<tag key>`
    pub key: String,
    pub value: String,
    /// A promoted environment's per-OS target also requires `tag:patchpilot:os` = this OS.
    pub os: Option<OperatingSystem>,
    /// OwnerInformation: the batch, shown in Run Command history.
    pub owner_information: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskSpec {
    pub window: String,
    pub name: String,
    pub description: String,
    /// Name of the target (patch group) the task runs on.
    pub target: String,
    /// = batch number: batch 1 (Linux) runs before batch 2 (Windows).
    pub priority: u32,
    pub max_concurrency: String,
    pub max_errors: String,
    /// `AWS-RunPatchBaseline` parameters (Operation, RebootOption), values as SSM lists.
    pub parameters: BTreeMap<String, Vec<String>>,
    pub output_s3_bucket: Option<String>,
    pub output_s3_prefix: Option<String>,
    pub service_role_arn: Option<String>,
}

/// One patch group registered with one baseline (per OS: SSM allows one baseline per group
/// and operating system).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RegistrationSpec {
    pub patch_group: String,
    pub os: OperatingSystem,
    pub baseline: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    pub baselines: Vec<BaselineSpec>,
    pub registrations: Vec<RegistrationSpec>,
    pub windows: Vec<WindowSpec>,
    pub targets: Vec<TargetSpec>,
    pub tasks: Vec<TaskSpec>,
}

/// The patch groups of an environment, one per batch, in batch order. Empty when the
/// window has no fixed start time (validation reports that as an error).
pub fn patch_groups(policy: &Policy, env: &Environment) -> Vec<PatchGroup> {
    let Some(time) = Schedule::parse(&env.window.schedule)
        .ok()
        .and_then(|s| s.fixed_time())
    else {
        return Vec::new();
    };
    (1..=policy.batches.len())
        .filter_map(|n| u32::try_from(n).ok())
        .map(|n| PatchGroup::new(&env.name, time, n))
        .collect()
}

/// Derive the whole desired SSM state from a validated policy.
pub fn desired_state(policy: &Policy, deployment: &Deployment) -> DesiredState {
    let mut state = DesiredState::default();
    for env in &policy.environments {
        let groups = patch_groups(policy, env);
        let promotion = promotion_of(env, deployment);
        for rules in &policy.baselines {
            let baseline = baseline_spec(env, rules, Some(&promotion));
            for group in &groups {
                state.registrations.push(RegistrationSpec {
                    patch_group: group.to_string(),
                    os: rules.os,
                    baseline: baseline.name.clone(),
                });
            }
            state.baselines.push(baseline);
        }

        let window = names::window_name(&env.name);
        state.windows.push(WindowSpec {
            name: window.clone(),
            environment: env.name.clone(),
            description: format!(
                "patchpilot: {} patching window. Managed by patchpilot; change the policy, not the console.",
                env.name
            ),
            schedule: env.window.schedule.clone(),
            timezone: env.window.timezone.clone(),
            offset_days: env.window.offset_days,
            duration_hours: env.window.duration_hours,
            cutoff_hours: env.window.cutoff_hours,
            allow_unassociated_targets: false,
            enabled: true,
        });

        let bucket = policy
            .output
            .s3_bucket
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| deployment.output_bucket.clone());
        for (group, batch) in groups.iter().zip(&policy.batches) {
            let platforms = batch
                .platforms
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            // One (target, task) for the batch, or for a promoted environment that installs a
            // manifest one per OS of the batch, at the batch's priority.
            let mut units: Vec<(Option<OperatingSystem>, String, Option<String>)> = Vec::new();
            match &promotion {
                Promotion::Installs(state) => {
                    for rules in policy
                        .baselines
                        .iter()
                        .filter(|b| batch.platforms.contains(&b.os.platform()))
                    {
                        let list = state.manifest.lists.get(&rules.os).cloned();
                        let why = match &list {
                            Some(_) => format!(
                                "installs manifest {} of {}'s run of {}",
                                crate::promotion::short(&state.manifest.hash),
                                state.source,
                                state.run_date
                            ),
                            None => format!(
                                "scan only: {}'s run of {} installed nothing on {}",
                                state.source,
                                state.run_date,
                                rules.os.as_str()
                            ),
                        };
                        units.push((Some(rules.os), why, list));
                    }
                }
                Promotion::Held(reason) => {
                    units.push((None, format!("held, scan only: {reason}"), None))
                }
                Promotion::None => units.push((None, String::new(), None)),
            }
            for (os, why, list) in units {
                let suffix = os.map(|o| format!("_{}", o.as_str())).unwrap_or_default();
                let target = format!("{}{suffix}", names::target_name(group));
                state.targets.push(TargetSpec {
                    window: window.clone(),
                    name: target.clone(),
                    description: match os {
                        Some(o) => format!(
                            "{} hosts of {} (batch {}) tagged {OS_TAG_KEY}={}",
                            platforms,
                            env.name,
                            group.batch,
                            o.as_str()
                        ),
                        None => format!(
                            "{} hosts of {} (batch {})",
                            platforms, env.name, group.batch
                        ),
                    },
                    key: format!("tag:{}", policy.tag_key),
                    value: group.to_string(),
                    os,
                    owner_information: format!("batch {} ({})", group.batch, batch.name),
                });
                let operation = match (&promotion, &list) {
                    (Promotion::None, _) => policy.operation.as_str(),
                    (_, Some(_)) => policy.operation.as_str(),
                    (_, None) => "Scan",
                };
                let mut parameters = BTreeMap::new();
                parameters.insert("Operation".to_string(), vec![operation.to_string()]);
                parameters.insert(
                    "RebootOption".to_string(),
                    vec![batch.reboot.as_str().to_string()],
                );
                if let (Some(url), "Install") = (&list, operation) {
                    parameters.insert("InstallOverrideList".to_string(), vec![url.clone()]);
                }
                let mut description = format!(
                    "{} {} on {} (batch {}, {})",
                    RUN_PATCH_BASELINE, operation, group, group.batch, batch.name
                );
                if let Some(o) = os {
                    let _ = std::fmt::Write::write_fmt(
                        &mut description,
                        format_args!(", {}", o.as_str()),
                    );
                }
                if !why.is_empty() {
                    description = format!("{description}: {why}");
                }
                state.tasks.push(TaskSpec {
                    window: window.clone(),
                    name: format!(
                        "{}{}",
                        names::task_name(&env.name, group.batch, &batch.name),
                        os.map(|o| format!("-{}", o.as_str())).unwrap_or_default()
                    ),
                    description: truncate(&description, 128),
                    target,
                    priority: group.batch,
                    max_concurrency: batch.max_concurrency.clone(),
                    max_errors: batch.max_errors.clone(),
                    parameters,
                    output_s3_prefix: bucket.as_ref().map(|_| {
                        format!(
                            "{}/{}",
                            policy.output.s3_prefix.trim_end_matches('/'),
                            env.name
                        )
                    }),
                    output_s3_bucket: bucket.clone(),
                    service_role_arn: deployment.window_role_arn.clone(),
                });
            }
        }
    }
    state.registrations.sort();
    state
}

/// How a promoted environment runs (`approval.mode: promote`).
enum Promotion<'a> {
    /// Not a promoted environment.
    None,
    /// Held (no source run recorded yet, or the gate held the last one): scan only.
    Held(String),
    /// The gate passed or an operator forced it: install the manifest.
    Installs(&'a PromotionState),
}

fn promotion_of<'a>(env: &Environment, deployment: &'a Deployment) -> Promotion<'a> {
    let Some(source) = env.approval.promotes_from() else {
        return Promotion::None;
    };
    if let Some(e) = deployment.promotion_errors.get(&env.name) {
        return Promotion::Held(format!("promotion state unreadable ({e})"));
    }
    match deployment.promotions.get(&env.name) {
        Some(state) if state.decision.verdict.installs() => Promotion::Installs(state),
        Some(state) => Promotion::Held(state.decision.reason.clone()),
        None => Promotion::Held(format!("no run of {source} recorded yet")),
    }
}

/// SSM's task/target `Description`: 1-128 characters.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn baseline_spec(
    env: &Environment,
    rules: &crate::policy::BaselineRules,
    promotion: Option<&Promotion<'_>>,
) -> BaselineSpec {
    let os = rules.os;
    let delay_allowed = os.supports_approval_delay();
    // A promotion that installs approves up to the source run's date: compliance scans
    // (which ignore the override list) then judge by the same cut-off.
    let promoted_until = match promotion {
        Some(Promotion::Installs(state)) => Some(state.run_date.clone()),
        _ => None,
    };
    let promoted = promoted_until.is_some();
    let rule_specs = rules
        .rules
        .iter()
        .map(|r| {
            // SSM needs ApproveAfterDays or ApproveUntilDate on every rule except for
            // Ubuntu/Debian, where it rejects both (no release dates in apt repositories).
            let until = promoted_until
                .clone()
                .or_else(|| env.approval.approve_until_date.clone())
                .filter(|_| delay_allowed);
            // A rule without its own delay follows the environment's cut-off date when
            // there is one, else the environment's delay (0 = on release).
            let after = if !delay_allowed
                || (until.is_some() && (r.approve_after_days.is_none() || promoted))
            {
                None
            } else {
                Some(
                    r.approve_after_days
                        .or(env.approval.approve_after_days)
                        .unwrap_or(0),
                )
            };
            RuleSpec {
                filters: r.filters.clone(),
                compliance_level: r.compliance_level.as_str().to_string(),
                // EnableNonSecurity exists only for Linux baselines.
                enable_non_security: r.enable_non_security
                    && os.platform() == crate::policy::Platform::Linux,
                approve_until_date: if after.is_some() { None } else { until },
                approve_after_days: after,
            }
        })
        .collect();
    let delay_text = match (
        delay_allowed,
        env.approval.approve_after_days,
        &promoted_until.or_else(|| env.approval.approve_until_date.clone()),
    ) {
        (false, _, _) => "no approval delay (not supported for this OS)".to_string(),
        (true, _, Some(d)) => format!("approves patches released until {d}"),
        (true, Some(n), None) => format!("approves patches {n} days after release"),
        (true, None, None) => "approves patches on release".to_string(),
    };
    BaselineSpec {
        name: names::baseline_name(&env.name, os),
        environment: env.name.clone(),
        os,
        description: format!(
            "patchpilot {} baseline for {}: {}. {}",
            env.name,
            os.as_str(),
            rules
                .description
                .clone()
                .unwrap_or_else(|| "approval rules from the policy".to_string()),
            delay_text
        ),
        rules: rule_specs,
        approved_patches: rules.approved_patches.clone(),
        approved_patches_compliance_level: rules
            .approved_patches_compliance_level
            .as_str()
            .to_string(),
        rejected_patches: rules.rejected_patches.clone(),
        rejected_patches_action: rules.rejected_patches_action.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> DesiredState {
        desired_state(
            &Policy::reference(),
            &Deployment {
                output_bucket: Some("patchpilot-output".into()),
                window_role_arn: None,
                default_host_management_role: None,
                promotions: BTreeMap::new(),
                promotion_errors: BTreeMap::new(),
            },
        )
    }

    #[test]
    fn reference_policy_derives_twelve_baselines_two_windows_four_targets_four_tasks() {
        let d = reference();
        assert_eq!(d.baselines.len(), 12);
        assert_eq!(d.windows.len(), 2);
        assert_eq!(d.targets.len(), 4);
        assert_eq!(d.tasks.len(), 4);
        // 2 environments x 2 groups x 6 OSes; 4 registrations per OS.
        assert_eq!(d.registrations.len(), 24);
        for os in Policy::reference().baselines.iter().map(|b| b.os) {
            assert_eq!(
                d.registrations.iter().filter(|r| r.os == os).count(),
                4,
                "{os}"
            );
        }
    }

    #[test]
    fn prod_baseline_approves_fourteen_days_later_than_test() {
        let d = reference();
        let rhel = |env: &str| {
            d.baselines
                .iter()
                .find(|b| b.name == format!("patchpilot-{env}-REDHAT_ENTERPRISE_LINUX"))
                .map(|b| b.rules[0].approve_after_days)
        };
        assert_eq!(rhel("test"), Some(Some(0)));
        assert_eq!(rhel("prod"), Some(Some(14)));
    }

    #[test]
    fn ubuntu_baselines_carry_no_approval_delay() {
        let d = reference();
        for b in d
            .baselines
            .iter()
            .filter(|b| b.os == OperatingSystem::Ubuntu)
        {
            assert!(b
                .rules
                .iter()
                .all(|r| r.approve_after_days.is_none() && r.approve_until_date.is_none()));
        }
    }

    #[test]
    fn linux_batch_runs_before_windows_batch() {
        let d = reference();
        let test_tasks: Vec<_> = d
            .tasks
            .iter()
            .filter(|t| t.window == "patchpilot-test")
            .map(|t| (t.priority, t.target.as_str()))
            .collect();
        assert_eq!(
            test_tasks,
            [
                (1, "patch_test_0600_batch_1"),
                (2, "patch_test_0600_batch_2")
            ]
        );
        let t = &d.tasks[0];
        assert_eq!(t.parameters["Operation"], ["Install"]);
        assert_eq!(t.output_s3_bucket.as_deref(), Some("patchpilot-output"));
        assert_eq!(
            t.output_s3_prefix.as_deref(),
            Some("patchpilot/run-command/test")
        );
    }

    #[test]
    fn targets_select_the_patch_group_tag() {
        let d = reference();
        let t = &d.targets[0];
        assert_eq!(
            (t.key.as_str(), t.value.as_str()),
            ("tag:Patch Group", "patch_test_0600_batch_1")
        );
        assert_eq!(t.name, "patch_test_0600_batch_1");
    }
}
