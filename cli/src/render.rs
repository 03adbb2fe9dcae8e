//! `patchpilot render`: everything patchpilot derives from a policy — patch groups, the
//! baselines with their rules and approval per environment, the maintenance windows with
//! their next runs, targets and tasks — as the operator would see them in the console.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use patchpilot::names::{self, PatchGroup, OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE};
use patchpilot::policy::{Environment, OperatingSystem, Policy};
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
    pub description: Option<String>,
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
    /// Output bucket; `None` = the `OUTPUT_BUCKET` of the deployed stack.
    pub output_s3_bucket: Option<String>,
    pub output_s3_prefix: String,
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

fn owned_tags() -> BTreeMap<String, String> {
    BTreeMap::from([(
        OWNERSHIP_TAG_KEY.to_string(),
        OWNERSHIP_TAG_VALUE.to_string(),
    )])
}

/// The patch groups of an environment, in batch order.
pub fn environment_groups(
    policy: &Policy,
    env: &Environment,
) -> Result<Vec<(u32, PatchGroup)>, RenderError> {
    let schedule = Schedule::parse(&env.window.schedule).map_err(|e| {
        RenderError(format!(
            "environments[{}].window.schedule: {e}",
            env_index(policy, env)
        ))
    })?;
    let time = schedule.fixed_time().ok_or_else(|| {
        RenderError(format!(
            "environments[{}].window.schedule `{}` has no fixed start time to name the patch groups after",
            env_index(policy, env),
            env.window.schedule
        ))
    })?;
    (1..=policy.batches.len())
        .map(|i| {
            let n = u32::try_from(i).map_err(|_| RenderError("too many batches".to_string()))?;
            Ok((n, PatchGroup::new(&env.name, time, n)))
        })
        .collect()
}

fn env_index(policy: &Policy, env: &Environment) -> usize {
    policy
        .environments
        .iter()
        .position(|e| e.name == env.name)
        .unwrap_or_default()
}

/// The approval settings for one rule of one baseline, and a human summary.
fn approval_for(
    env: &Environment,
    os: OperatingSystem,
    rule_override: Option<u32>,
) -> (Option<u32>, Option<String>, String) {
    if !os.supports_approval_delay() {
        return (
            None,
            None,
            format!(
                "on release ({} cannot delay approval: no release dates)",
                os.as_str()
            ),
        );
    }
    if let Some(days) = rule_override {
        return (
            Some(days),
            None,
            format!("{days} days after release (rule)"),
        );
    }
    if let Some(date) = &env.approval.approve_until_date {
        return (None, Some(date.clone()), format!("released until {date}"));
    }
    let days = env.approval.approve_after_days.unwrap_or(0);
    let summary = match days {
        0 => "on release (0 days)".to_string(),
        1 => "1 day after release".to_string(),
        n => format!("{n} days after release"),
    };
    (Some(days), None, summary)
}

/// Derive every resource from the policy. `now` anchors the windows' next runs.
pub fn render(policy: &Policy, now: DateTime<Utc>) -> Result<Rendered, RenderError> {
    let mut patch_groups = Vec::new();
    let mut baselines = Vec::new();
    let mut windows = Vec::new();
    let target_key = format!("tag:{}", policy.tag_key);

    for env in &policy.environments {
        let groups = environment_groups(policy, env)?;
        let group_names: Vec<String> = groups.iter().map(|(_, g)| g.to_string()).collect();
        for ((n, group), batch) in groups.iter().zip(&policy.batches) {
            patch_groups.push(RenderedGroup {
                name: group.to_string(),
                environment: env.name.clone(),
                batch: *n,
                batch_name: batch.name.clone(),
                platforms: batch.platforms.iter().map(|p| p.to_string()).collect(),
            });
        }

        for rules in &policy.baselines {
            let mut summary = String::new();
            let rendered_rules = rules
                .rules
                .iter()
                .map(|rule| {
                    let (after, until, text) = approval_for(env, rules.os, rule.approve_after_days);
                    if summary.is_empty() {
                        summary = text;
                    }
                    RenderedRule {
                        filters: rule.filters.clone(),
                        compliance_level: rule.compliance_level.as_str().to_string(),
                        enable_non_security: rule.enable_non_security,
                        approve_after_days: after,
                        approve_until_date: until,
                    }
                })
                .collect();
            baselines.push(RenderedBaseline {
                name: names::baseline_name(&env.name, rules.os),
                environment: env.name.clone(),
                operating_system: rules.os.as_str().to_string(),
                description: rules.description.clone(),
                rules: rendered_rules,
                approval: summary,
                approved_patches: rules.approved_patches.clone(),
                rejected_patches: rules.rejected_patches.clone(),
                rejected_patches_action: rules.rejected_patches_action.as_str().to_string(),
                patch_groups: group_names.clone(),
                tags: owned_tags(),
            });
        }

        let schedule = Schedule::parse(&env.window.schedule)
            .map_err(|e| RenderError(format!("environment `{}`: {e}", env.name)))?;
        let tz = parse_timezone(&env.window.timezone)
            .map_err(|e| RenderError(format!("environment `{}`: {e}", env.name)))?;
        let next_runs = schedule
            .next_runs(NEXT_RUNS, now, tz, env.window.offset_days.unwrap_or(0))
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        let targets = groups
            .iter()
            .map(|(_, g)| RenderedTarget {
                name: names::target_name(g),
                resource_type: "INSTANCE".to_string(),
                key: target_key.clone(),
                values: vec![g.to_string()],
            })
            .collect();
        let tasks = groups
            .iter()
            .zip(&policy.batches)
            .map(|((n, g), batch)| RenderedTask {
                name: names::task_name(&env.name, *n, &batch.name),
                priority: *n,
                document: TASK_DOCUMENT.to_string(),
                target: names::target_name(g),
                parameters: BTreeMap::from([
                    (
                        "Operation".to_string(),
                        vec![policy.operation.as_str().to_string()],
                    ),
                    (
                        "RebootOption".to_string(),
                        vec![batch.reboot.as_str().to_string()],
                    ),
                ]),
                max_concurrency: batch.max_concurrency.clone(),
                max_errors: batch.max_errors.clone(),
                output_s3_bucket: policy.output.s3_bucket.clone(),
                output_s3_prefix: policy.output.s3_prefix.clone(),
            })
            .collect();
        windows.push(RenderedWindow {
            name: names::window_name(&env.name),
            environment: env.name.clone(),
            schedule: env.window.schedule.clone(),
            timezone: env.window.timezone.clone(),
            offset_days: env.window.offset_days,
            duration_hours: env.window.duration_hours,
            cutoff_hours: env.window.cutoff_hours,
            next_runs,
            targets,
            tasks,
            tags: owned_tags(),
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
            let bucket = task
                .output_s3_bucket
                .clone()
                .unwrap_or_else(|| "$OUTPUT_BUCKET".to_string());
            t.row([
                w.name.clone(),
                task.priority.to_string(),
                task.name.clone(),
                task.document.clone(),
                task.target.clone(),
                params,
                format!("{} / {}", task.max_concurrency, task.max_errors),
                format!("s3://{bucket}/{}", task.output_s3_prefix),
            ]);
        }
    }
    out.push_str(&t.render());
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
        render(&Policy::reference(), now()).expect("reference policy renders")
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
            Some("true")
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
