//! `patchpilot render`: everything patchpilot derives from a policy — patch groups, the
//! baselines with their rules and approval per environment, the maintenance windows with
//! their next runs, targets and tasks — as the operator would see them in the console.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use patchpilot::names::{Owner, PatchGroup};
use patchpilot::plan::desired::{self, BaselineSpec};
use patchpilot::plan::Deployment;
use patchpilot::policy::{Environment, Policy};
use patchpilot::schedule::{parse_timezone, Schedule};
use serde::Serialize;

use crate::table::Table;

/// The SSM document every window task runs (the article's choice).
pub const TASK_DOCUMENT: &str = "AWS-RunPatchBaseline";
/// How many upcoming runs each window shows.
pub const NEXT_RUNS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rendered {
    pub tag_key: String,
    pub patch_groups: Vec<RenderedGroup>,
    pub baselines: Vec<RenderedBaseline>,
    pub windows: Vec<RenderedWindow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedGroup {
    pub name: String,
    pub environment: String,
    pub batch: u32,
    pub batch_name: String,
    pub platforms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedBaseline {
    pub name: String,
    pub environment: String,
    pub operating_system: String,
    pub description: String,
    /// One line per rule, e.g. `CLASSIFICATION=Security,Bugfix PRODUCT=* -> CRITICAL`.
    pub rules: Vec<RenderedRule>,
    /// Human summary of the approval of this baseline, e.g. `14 days after release`.
    pub approval: String,
    pub approved_patches: Vec<String>,
    pub rejected_patches: Vec<String>,
    pub rejected_patches_action: String,
    /// Patch groups registered with this baseline (every group of its environment).
    pub patch_groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedRule {
    pub filters: BTreeMap<String, Vec<String>>,
    pub compliance_level: String,
    pub enable_non_security: bool,
    /// ApproveAfterDays sent to SSM; `None` for Ubuntu/Debian (not supported) or when
    /// `approve_until_date` is used.
    pub approve_after_days: Option<u32>,
    pub approve_until_date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedWindow {
    pub name: String,
    pub environment: String,
    pub schedule: String,
    pub timezone: String,
    pub offset_days: Option<u32>,
    pub duration_hours: u32,
    pub cutoff_hours: u32,
    /// Next runs in the window's timezone, RFC 3339 with the local offset.
    pub next_runs: Vec<String>,
    pub targets: Vec<RenderedTarget>,
    pub tasks: Vec<RenderedTask>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedTarget {
    pub name: String,
    pub resource_type: String,
    /// `tag:<tag key>`
    pub key: String,
    pub values: Vec<String>,
    /// OwnerInformation: the batch, shown in Run Command history.
    pub owner_information: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedTask {
    pub name: String,
    pub priority: u32,
    pub document: String,
    /// The window target (by name) this task runs on.
    pub target: String,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub max_concurrency: String,
    pub max_errors: String,
    /// Output bucket: the policy's, else `OUTPUT_BUCKET`; `None` = output stays in SSM.
    pub output_s3_bucket: Option<String>,
    pub output_s3_prefix: Option<String>,
    /// `MAINTENANCE_WINDOW_ROLE_ARN`; `None` = SSM's service-linked role.
    pub service_role_arn: Option<String>,
}

/// A policy that validation accepted but that still cannot be rendered (kept as an error
/// rather than a panic, in case validation and rendering ever disagree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ownership marker, `patchpilot:managed=<stack>`.
fn owned_tags(owner: &Owner) -> BTreeMap<String, String> {
    let (key, value) = owner.tag();
    BTreeMap::from([(key.to_string(), value.to_string())])
}

/// The patch groups of an environment, in batch order, as `(batch number, group)`.
pub fn environment_groups(
    policy: &Policy,
    env: &Environment,
) -> Result<Vec<(u32, PatchGroup)>, RenderError> {
    let groups = desired::patch_groups(policy, env);
    if groups.is_empty() && !policy.batches.is_empty() {
        return Err(RenderError(format!(
            "environment `{}`: window schedule `{}` has no fixed start time to name the patch groups after",
            env.name, env.window.schedule
        )));
    }
    Ok(groups.into_iter().map(|g| (g.batch, g)).collect())
}

/// A human summary of a baseline's approval, e.g. `14 days after release`.
fn approval_summary(spec: &BaselineSpec) -> String {
    if !spec.os.supports_approval_delay() {
        return format!(
            "on release ({} cannot delay approval: no release dates)",
            spec.os.as_str()
        );
    }
    let mut texts: Vec<String> = spec
        .rules
        .iter()
        .map(|r| match (r.approve_after_days, &r.approve_until_date) {
            (_, Some(date)) => format!("released until {date}"),
            (Some(0) | None, None) => "on release (0 days)".to_string(),
            (Some(1), None) => "1 day after release".to_string(),
            (Some(n), None) => format!("{n} days after release"),
        })
        .collect();
    texts.dedup();
    texts.join("; ")
}

/// Everything baseline-sync would create for this policy (the planner's desired state, so
/// render and sync cannot disagree), plus next runs. `now` anchors the next runs.
pub fn render(
    policy: &Policy,
    owner: &Owner,
    deployment: &Deployment,
    now: DateTime<Utc>,
) -> Result<Rendered, RenderError> {
    let desired = desired::desired_state(policy, deployment);

    let mut patch_groups = Vec::new();
    for env in &policy.environments {
        for ((n, group), batch) in environment_groups(policy, env)?.iter().zip(&policy.batches) {
            patch_groups.push(RenderedGroup {
                name: group.to_string(),
                environment: env.name.clone(),
                batch: *n,
                batch_name: batch.name.clone(),
                platforms: batch.platforms.iter().map(|p| p.to_string()).collect(),
            });
        }
    }

    let baselines = desired
        .baselines
        .iter()
        .map(|b| RenderedBaseline {
            name: b.name.clone(),
            environment: b.environment.clone(),
            operating_system: b.os.as_str().to_string(),
            description: b.description.clone(),
            rules: b
                .rules
                .iter()
                .map(|r| RenderedRule {
                    filters: r.filters.clone(),
                    compliance_level: r.compliance_level.clone(),
                    enable_non_security: r.enable_non_security,
                    approve_after_days: r.approve_after_days,
                    approve_until_date: r.approve_until_date.clone(),
                })
                .collect(),
            approval: approval_summary(b),
            approved_patches: b.approved_patches.clone(),
            rejected_patches: b.rejected_patches.clone(),
            rejected_patches_action: b.rejected_patches_action.clone(),
            patch_groups: desired
                .registrations
                .iter()
                .filter(|r| r.baseline == b.name)
                .map(|r| r.patch_group.clone())
                .collect(),
            tags: owned_tags(owner),
        })
        .collect();

    let mut windows = Vec::new();
    for w in &desired.windows {
        let schedule = Schedule::parse(&w.schedule)
            .map_err(|e| RenderError(format!("window `{}`: {e}", w.name)))?;
        let tz = parse_timezone(&w.timezone)
            .map_err(|e| RenderError(format!("window `{}`: {e}", w.name)))?;
        let next_runs = schedule
            .next_runs(NEXT_RUNS, now, tz, w.offset_days.unwrap_or(0))
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        windows.push(RenderedWindow {
            name: w.name.clone(),
            environment: w.environment.clone(),
            schedule: w.schedule.clone(),
            timezone: w.timezone.clone(),
            offset_days: w.offset_days,
            duration_hours: w.duration_hours,
            cutoff_hours: w.cutoff_hours,
            next_runs,
            targets: desired
                .targets
                .iter()
                .filter(|t| t.window == w.name)
                .map(|t| RenderedTarget {
                    name: t.name.clone(),
                    resource_type: "INSTANCE".to_string(),
                    key: t.key.clone(),
                    values: vec![t.value.clone()],
                    owner_information: t.owner_information.clone(),
                })
                .collect(),
            tasks: desired
                .tasks
                .iter()
                .filter(|t| t.window == w.name)
                .map(|t| RenderedTask {
                    name: t.name.clone(),
                    priority: t.priority,
                    document: TASK_DOCUMENT.to_string(),
                    target: t.target.clone(),
                    parameters: t.parameters.clone(),
                    max_concurrency: t.max_concurrency.clone(),
                    max_errors: t.max_errors.clone(),
                    output_s3_bucket: t.output_s3_bucket.clone(),
                    output_s3_prefix: t.output_s3_prefix.clone(),
                    service_role_arn: t.service_role_arn.clone(),
                })
                .collect(),
            tags: owned_tags(owner),
        });
    }

    Ok(Rendered {
        tag_key: policy.tag_key.clone(),
        patch_groups,
        baselines,
        windows,
    })
}

fn filters_text(filters: &BTreeMap<String, Vec<String>>) -> String {
    filters
        .iter()
        .map(|(k, v)| format!("{k}={}", v.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn local_run(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%a %Y-%m-%d %H:%M %:z").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// The operator's view: one table per resource kind.
pub fn to_text(r: &Rendered) -> String {
    let mut out = String::new();

    out.push_str(&format!("Patch groups (instance tag `{}`)\n", r.tag_key));
    let mut t = Table::new(["PATCH GROUP", "ENVIRONMENT", "BATCH", "PLATFORMS"]);
    for g in &r.patch_groups {
        t.row([
            g.name.clone(),
            g.environment.clone(),
            format!("{} ({})", g.batch, g.batch_name),
            g.platforms.join(", "),
        ]);
    }
    out.push_str(&t.render());

    out.push_str(&format!("\nPatch baselines ({})\n", r.baselines.len()));
    let mut t = Table::new(["BASELINE", "OS", "APPROVAL", "RULES", "PATCH GROUPS"]);
    for b in &r.baselines {
        let rules = b
            .rules
            .iter()
            .map(|rule| {
                let mut s = format!(
                    "{} -> {}",
                    filters_text(&rule.filters),
                    rule.compliance_level
                );
                if rule.enable_non_security {
                    s.push_str(" +non-security");
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ");
        t.row([
            b.name.clone(),
            b.operating_system.clone(),
            b.approval.clone(),
            rules,
            b.patch_groups.join(", "),
        ]);
    }
    out.push_str(&t.render());

    out.push_str(&format!("\nMaintenance windows ({})\n", r.windows.len()));
    let mut t = Table::new([
        "WINDOW",
        "SCHEDULE",
        "TIMEZONE",
        "DURATION/CUTOFF",
        "NEXT RUNS (window timezone)",
    ]);
    for w in &r.windows {
        let schedule = match w.offset_days {
            Some(d) if d > 0 => format!("{} +{d}d", w.schedule),
            _ => w.schedule.clone(),
        };
        t.row([
            w.name.clone(),
            schedule,
            w.timezone.clone(),
            format!("{}h / {}h", w.duration_hours, w.cutoff_hours),
            w.next_runs
                .iter()
                .map(|s| local_run(s))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    out.push_str(&t.render());

    out.push_str("\nWindow targets\n");
    let mut t = Table::new(["WINDOW", "TARGET", "RESOURCE", "TARGETS"]);
    for w in &r.windows {
        for target in &w.targets {
            t.row([
                w.name.clone(),
                target.name.clone(),
                target.resource_type.clone(),
                format!("{} = {}", target.key, target.values.join(",")),
            ]);
        }
    }
    out.push_str(&t.render());

    out.push_str("\nWindow tasks\n");
    let mut t = Table::new([
        "WINDOW",
        "PRIORITY",
        "TASK",
        "DOCUMENT",
        "TARGET",
        "PARAMETERS",
        "CONCURRENCY/ERRORS",
        "OUTPUT",
    ]);
    for w in &r.windows {
        for task in &w.tasks {
            let params = task
                .parameters
                .iter()
                .map(|(k, v)| format!("{k}={}", v.join(",")))
                .collect::<Vec<_>>()
                .join(" ");
            let output = match (&task.output_s3_bucket, &task.output_s3_prefix) {
                (Some(bucket), Some(prefix)) => format!("s3://{bucket}/{prefix}"),
                (Some(bucket), None) => format!("s3://{bucket}"),
                (None, _) => "$OUTPUT_BUCKET (set at deploy)".to_string(),
            };
            t.row([
                w.name.clone(),
                task.priority.to_string(),
                task.name.clone(),
                task.document.clone(),
                task.target.clone(),
                params,
                format!("{} / {}", task.max_concurrency, task.max_errors),
                output,
            ]);
        }
    }
    out.push_str(&t.render());
    out
}

/// `render --fleet`: after the resources, the baselines the fleet needs and the policy lacks.
pub fn suggestions_to_text(suggestions: &[patchpilot::suggest::BaselineSuggestion]) -> String {
    let mut out = String::from("\nFLEET\n");
    if suggestions.is_empty() {
        out.push_str(
            "every OS found on managed nodes has a baseline in the policy; nothing to add\n",
        );
        return out;
    }
    out.push_str(
        "OSes with managed nodes but no baseline in the policy (they get the account's default \
         baseline, outside the policy's approval delays):\n",
    );
    for s in suggestions {
        let from = s
            .template_baseline
            .as_deref()
            .map(|id| format!("rules of {id}"))
            .unwrap_or_else(|| "the account has no default baseline for it".to_string());
        out.push_str(&format!("  {}: {} host(s); {from}\n", s.os, s.hosts));
    }
    out.push_str("\nadd to the policy's `baselines:`\n\n");
    for s in suggestions {
        out.push_str(&s.yaml);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    fn reference() -> Rendered {
        render(
            &Policy::reference(),
            &Owner::default(),
            &Deployment::default(),
            now(),
        )
        .expect("reference policy renders")
    }

    #[test]
    fn the_article_has_four_patch_groups() {
        let names: Vec<_> = reference()
            .patch_groups
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(
            names,
            [
                "patch_test_0600_batch_1",
                "patch_test_0600_batch_2",
                "patch_prod_0600_batch_1",
                "patch_prod_0600_batch_2"
            ]
        );
    }

    #[test]
    fn twelve_baselines_each_registered_with_its_environments_groups() {
        let r = reference();
        assert_eq!(r.baselines.len(), 12);
        let rhel_prod = r
            .baselines
            .iter()
            .find(|b| b.name == "patchpilot-prod-REDHAT_ENTERPRISE_LINUX")
            .expect("prod RHEL baseline");
        assert_eq!(
            rhel_prod.patch_groups,
            ["patch_prod_0600_batch_1", "patch_prod_0600_batch_2"]
        );
        assert_eq!(
            rhel_prod.tags.get("patchpilot:managed").map(String::as_str),
            Some("patchpilot")
        );
    }

    #[test]
    fn prod_baseline_approves_14_days_later_than_test() {
        let r = reference();
        let days = |name: &str| {
            r.baselines.iter().find(|b| b.name == name).map(|b| {
                b.rules
                    .iter()
                    .map(|x| x.approve_after_days)
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(days("patchpilot-test-SUSE"), Some(vec![Some(0)]));
        assert_eq!(days("patchpilot-prod-SUSE"), Some(vec![Some(14)]));
        assert_eq!(
            days("patchpilot-prod-REDHAT_ENTERPRISE_LINUX"),
            Some(vec![Some(14), Some(14)])
        );
    }

    #[test]
    fn ubuntu_cannot_delay_approval_and_says_so() {
        let r = reference();
        let ubuntu = r
            .baselines
            .iter()
            .find(|b| b.name == "patchpilot-prod-UBUNTU")
            .expect("prod Ubuntu baseline");
        assert!(ubuntu.rules.iter().all(|x| x.approve_after_days.is_none()));
        assert!(
            ubuntu.approval.contains("cannot delay"),
            "{}",
            ubuntu.approval
        );
    }

    #[test]
    fn linux_batch_runs_before_windows_batch() {
        let r = reference();
        let test = &r.windows[0];
        assert_eq!(test.name, "patchpilot-test");
        let tasks: Vec<_> = test
            .tasks
            .iter()
            .map(|t| (t.priority, t.name.as_str(), t.target.as_str()))
            .collect();
        assert_eq!(
            tasks,
            [
                (
                    1,
                    "patchpilot-test-batch-1-linux",
                    "patch_test_0600_batch_1"
                ),
                (
                    2,
                    "patchpilot-test-batch-2-windows",
                    "patch_test_0600_batch_2"
                ),
            ]
        );
        assert_eq!(test.tasks[0].document, "AWS-RunPatchBaseline");
        assert_eq!(
            test.tasks[0].parameters.get("Operation"),
            Some(&vec!["Install".to_string()])
        );
    }

    #[test]
    fn targets_select_instances_by_the_patch_group_tag() {
        let r = reference();
        let t = &r.windows[1].targets[1];
        assert_eq!(t.name, "patch_prod_0600_batch_2");
        assert_eq!(t.key, "tag:Patch Group");
        assert_eq!(t.values, ["patch_prod_0600_batch_2"]);
    }

    #[test]
    fn windows_show_their_next_three_saturdays_in_zurich_time() {
        let r = reference();
        assert_eq!(
            r.windows[0].next_runs,
            [
                "2026-12-05T06:00:00+01:00",
                "2027-01-02T06:00:00+01:00",
                "2027-02-06T06:00:00+01:00"
            ]
        );
        assert_eq!(r.windows[1].next_runs[0], "2026-12-19T06:00:00+01:00");
    }

    #[test]
    fn tasks_write_their_output_to_the_stacks_bucket() {
        let deployment = Deployment {
            output_bucket: Some("patchpilot-output".to_string()),
            window_role_arn: Some("arn:aws:iam::123456789012:role/mw".to_string()),
            default_host_management_role: None,
            promotions: Default::default(),
            promotion_errors: Default::default(),
        };
        let r =
            render(&Policy::reference(), &Owner::default(), &deployment, now()).expect("renders");
        let task = &r.windows[0].tasks[0];
        assert_eq!(task.output_s3_bucket.as_deref(), Some("patchpilot-output"));
        assert_eq!(
            task.service_role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/mw")
        );
        assert!(to_text(&r).contains("s3://patchpilot-output/patchpilot/run-command"));
        let without = to_text(&reference());
        assert!(
            without.contains("$OUTPUT_BUCKET (set at deploy)"),
            "{without}"
        );
    }

    #[test]
    fn text_has_every_section() {
        let text = to_text(&reference());
        for needle in [
            "Patch groups (instance tag `Patch Group`)",
            "Patch baselines (12)",
            "Maintenance windows (2)",
            "Window targets",
            "Window tasks",
            "patchpilot-prod-WINDOWS",
            "Sat 2026-12-05 06:00 +01:00",
        ] {
            assert!(text.contains(needle), "missing {needle}:\n{text}");
        }
    }
}
