//! `patchpilot schedule`: when each environment's window runs next (local time and UTC),
//! which batches run in it, and whether the approval delay of an environment that promotes
//! from another one matches the real gap between their runs.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use patchpilot::policy::{Environment, Policy};
use patchpilot::schedule::{parse_timezone, Schedule};

use crate::render::{environment_groups, RenderError};
use crate::table::Table;

/// One environment's upcoming runs.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentRuns {
    pub environment: String,
    pub window: String,
    pub schedule: String,
    pub timezone: Tz,
    pub offset_days: u32,
    /// (batch number, batch name, patch group) in task-priority order.
    pub batches: Vec<(u32, String, String)>,
    pub runs: Vec<DateTime<Tz>>,
}

/// One run of the source environment and the first run of the promoted one after it.
#[derive(Debug, Clone, PartialEq)]
pub struct GapCheck {
    pub from: DateTime<Tz>,
    pub to: Option<DateTime<Tz>>,
    /// Calendar days between the two runs (in each window's own timezone).
    pub gap_days: Option<i64>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delay equals the gap: the promoted environment installs what the other one had.
    Match,
    /// Gap longer than the delay: patches released in between reach prod untested.
    Untested { days: i64 },
    /// Gap shorter than the delay: prod misses patches the other environment already has.
    Behind { days: i64 },
    /// The promoted environment has no run after this one.
    NoRun,
    /// `approval.mode: promote`: the promoted run installs this run's manifest (if the gate
    /// passes), whatever the gap.
    Manifest,
}

/// An environment that promotes from another one (`approval.promote_from`).
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub from: String,
    pub to: String,
    /// `None` when the environment uses `approve_until_date` or promotes a manifest.
    pub delay_days: Option<u32>,
    /// `approval.mode: promote`: the gate's `max_failed` percentage.
    pub gate_max_failed: Option<u32>,
    pub checks: Vec<GapCheck>,
    /// Baseline OSes whose approval cannot be delayed (Ubuntu, Debian).
    pub undelayable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleView {
    pub from: DateTime<Utc>,
    pub environments: Vec<EnvironmentRuns>,
    pub promotions: Vec<Promotion>,
}

fn window_of(env: &Environment) -> Result<(Schedule, Tz, u32), RenderError> {
    let schedule = Schedule::parse(&env.window.schedule)
        .map_err(|e| RenderError(format!("environment `{}`: {e}", env.name)))?;
    let tz = parse_timezone(&env.window.timezone)
        .map_err(|e| RenderError(format!("environment `{}`: {e}", env.name)))?;
    Ok((schedule, tz, env.window.offset_days.unwrap_or(0)))
}

fn local_date(t: &DateTime<Tz>) -> NaiveDate {
    t.date_naive()
}

/// Compute the view for the next `count` runs after `from`.
pub fn compute(
    policy: &Policy,
    count: usize,
    from: DateTime<Utc>,
) -> Result<ScheduleView, RenderError> {
    let mut environments = Vec::new();
    for env in &policy.environments {
        let (schedule, tz, offset) = window_of(env)?;
        let batches = environment_groups(policy, env)?
            .into_iter()
            .zip(&policy.batches)
            .map(|((n, g), b)| (n, b.name.clone(), g.to_string()))
            .collect();
        environments.push(EnvironmentRuns {
            environment: env.name.clone(),
            window: patchpilot::names::window_name(&env.name),
            schedule: env.window.schedule.clone(),
            timezone: tz,
            offset_days: offset,
            batches,
            runs: schedule.next_runs(count, from, tz, offset),
        });
    }

    let mut promotions = Vec::new();
    for env in &policy.environments {
        let Some(source_name) = &env.approval.promote_from else {
            continue;
        };
        let Some(source) = policy.environment(source_name) else {
            return Err(RenderError(format!(
                "environment `{}`: approval.promote_from names `{source_name}`, which is not an environment",
                env.name
            )));
        };
        let (src_schedule, src_tz, src_offset) = window_of(source)?;
        let (dst_schedule, dst_tz, dst_offset) = window_of(env)?;
        let promotes = env.approval.mode == patchpilot::policy::ApprovalMode::Promote;
        let delay = if promotes || env.approval.approve_until_date.is_some() {
            None
        } else {
            Some(env.approval.approve_after_days.unwrap_or(0))
        };
        let checks = src_schedule
            .next_runs(count, from, src_tz, src_offset)
            .into_iter()
            .map(|src_run| {
                let next = dst_schedule
                    .next_runs(1, src_run.with_timezone(&Utc), dst_tz, dst_offset)
                    .into_iter()
                    .next();
                let gap = next
                    .as_ref()
                    .map(|dst_run| (local_date(dst_run) - local_date(&src_run)).num_days());
                let verdict = match (gap, delay) {
                    (None, _) => Verdict::NoRun,
                    (Some(_), _) if promotes => Verdict::Manifest,
                    (Some(_), None) => Verdict::Match,
                    (Some(g), Some(d)) => {
                        let d = i64::from(d);
                        match g.cmp(&d) {
                            std::cmp::Ordering::Equal => Verdict::Match,
                            std::cmp::Ordering::Greater => Verdict::Untested { days: g - d },
                            std::cmp::Ordering::Less => Verdict::Behind { days: d - g },
                        }
                    }
                };
                GapCheck {
                    from: src_run,
                    to: next,
                    gap_days: gap,
                    verdict,
                }
            })
            .collect();
        // A promoted environment's override lists pin apt packages too.
        let undelayable = policy
            .baselines
            .iter()
            .filter(|b| !promotes && !b.os.supports_approval_delay())
            .map(|b| b.os.as_str().to_string())
            .collect();
        promotions.push(Promotion {
            from: source.name.clone(),
            to: env.name.clone(),
            delay_days: delay,
            gate_max_failed: promotes
                .then(|| env.approval.gate().max_failed_percent().unwrap_or_default()),
            checks,
            undelayable,
        });
    }

    Ok(ScheduleView {
        from,
        environments,
        promotions,
    })
}

fn fmt_local(t: &DateTime<Tz>) -> String {
    t.format("%a %Y-%m-%d %H:%M %Z").to_string()
}

fn fmt_utc(t: &DateTime<Tz>) -> String {
    t.with_timezone(&Utc)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// Text for the terminal. Returns the text and whether any approval check failed.
pub fn to_text(view: &ScheduleView) -> (String, bool) {
    let mut out = format!("Runs after {}\n", view.from.format("%Y-%m-%d %H:%M UTC"));
    for env in &view.environments {
        let offset = if env.offset_days > 0 {
            format!(" + {} day(s) offset", env.offset_days)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "\n{} ({}): {}{} in {}\n",
            env.environment, env.window, env.schedule, offset, env.timezone
        ));
        let order = env
            .batches
            .iter()
            .map(|(n, name, group)| format!("batch {n} {name} ({group})"))
            .collect::<Vec<_>>()
            .join(" -> ");
        out.push_str(&format!("  batches, in order: {order}\n"));
        let mut t = Table::new(["  #", "LOCAL", "UTC"]);
        for (i, run) in env.runs.iter().enumerate() {
            t.row([format!("  {}", i + 1), fmt_local(run), fmt_utc(run)]);
        }
        if t.is_empty() {
            out.push_str("  no upcoming run\n");
        } else {
            out.push_str(&t.render());
        }
    }

    let mut failed = false;
    for p in &view.promotions {
        let delay = match (p.gate_max_failed, p.delay_days) {
            (Some(max), _) => format!(
                "installs {}'s manifest if at most {max}% of its hosts failed and no patch failed",
                p.from
            ),
            (None, Some(d)) => format!("approval delay {d} day(s)"),
            (None, None) => "approval by fixed date (approve_until_date)".to_string(),
        };
        out.push_str(&format!(
            "\n{} -> {} gap ({} promotes from {}, {delay})\n",
            p.from, p.to, p.to, p.from
        ));
        let mut t = Table::new(
            [
                "  ".to_string() + &p.from.to_uppercase(),
                p.to.to_uppercase(),
                "GAP".to_string(),
                "APPROVAL CHECK".to_string(),
            ]
            .each_ref()
            .map(String::as_str),
        );
        for c in &p.checks {
            let (to, gap) = match (&c.to, c.gap_days) {
                (Some(to), Some(g)) => (fmt_local(to), format!("{g} days")),
                _ => ("-".to_string(), "-".to_string()),
            };
            let verdict = match &c.verdict {
                Verdict::Match => "ok".to_string(),
                Verdict::Manifest => format!("installs this {} run's manifest", p.from),
                Verdict::Untested { days } => {
                    failed = true;
                    format!(
                        "WARNING: {} installs patches released in the {days} day(s) before its run that {} never had",
                        p.to, p.from
                    )
                }
                Verdict::Behind { days } => {
                    failed = true;
                    format!(
                        "WARNING: {} lags {}: patches from the last {days} day(s) before the {} run are not yet approved",
                        p.to, p.from, p.from
                    )
                }
                Verdict::NoRun => {
                    failed = true;
                    format!("WARNING: {} has no run after this one", p.to)
                }
            };
            t.row([format!("  {}", fmt_local(&c.from)), to, gap, verdict]);
        }
        out.push_str(&t.render());
        if !p.undelayable.is_empty() {
            out.push_str(&format!(
                "  note: {} baselines cannot delay approval (SSM has no release dates for them): {} may install patches {} never had\n",
                p.undelayable.join(", "),
                p.to,
                p.from
            ));
        }
    }
    (out, failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn from() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    #[test]
    fn test_runs_first_saturdays_and_prod_third_saturdays() {
        let view = compute(&Policy::reference(), 3, from()).expect("computes");
        let days = |i: usize| {
            view.environments[i]
                .runs
                .iter()
                .map(|r| r.format("%Y-%m-%d %H:%M").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            days(0),
            ["2026-12-05 06:00", "2027-01-02 06:00", "2027-02-06 06:00"]
        );
        assert_eq!(
            days(1),
            ["2026-12-19 06:00", "2027-01-16 06:00", "2027-02-20 06:00"]
        );
    }

    /// The reference policy with prod on a plain 14-day delay behind test.
    fn delay_policy() -> Policy {
        let mut policy = Policy::reference();
        policy.environments[1].approval.mode = patchpilot::policy::ApprovalMode::Delay;
        policy.environments[1].approval.gate = None;
        policy
    }

    #[test]
    fn a_promoted_prod_installs_each_test_runs_manifest() {
        let view = compute(&Policy::reference(), 3, from()).expect("computes");
        let p = &view.promotions[0];
        assert_eq!(p.delay_days, None);
        assert_eq!(p.gate_max_failed, Some(0));
        assert!(p.checks.iter().all(|c| c.verdict == Verdict::Manifest));
        assert!(p.undelayable.is_empty(), "the override lists pin Ubuntu");
        let (text, failed) = to_text(&view);
        assert!(!failed, "{text}");
        assert!(
            text.contains(
                "installs test's manifest if at most 0% of its hosts failed and no patch failed"
            ) && text.contains("installs this test run's manifest"),
            "{text}"
        );
    }

    #[test]
    fn prod_approval_delay_matches_the_fourteen_day_gap() {
        let view = compute(&delay_policy(), 6, from()).expect("computes");
        let p = &view.promotions[0];
        assert_eq!((p.from.as_str(), p.to.as_str()), ("test", "prod"));
        assert_eq!(p.delay_days, Some(14));
        assert!(p.checks.iter().all(|c| c.gap_days == Some(14)));
        assert!(p.checks.iter().all(|c| c.verdict == Verdict::Match));
        assert_eq!(p.undelayable, ["UBUNTU"]);
        let (text, failed) = to_text(&view);
        assert!(!failed, "{text}");
        assert!(text.contains("test -> prod gap"), "{text}");
    }

    #[test]
    fn a_delay_shorter_than_the_gap_is_flagged_with_both_dates() {
        let mut policy = delay_policy();
        policy.environments[1].approval.approve_after_days = Some(7);
        let view = compute(&policy, 2, from()).expect("computes");
        assert_eq!(
            view.promotions[0].checks[0].verdict,
            Verdict::Untested { days: 7 }
        );
        let (text, failed) = to_text(&view);
        assert!(failed);
        assert!(
            text.contains("Sat 2026-12-05 06:00 CET")
                && text.contains("Sat 2026-12-19 06:00 CET")
                && text.contains("released in the 7 day(s)"),
            "{text}"
        );
    }

    #[test]
    fn utc_column_accounts_for_summer_time() {
        let june = Utc
            .with_ymd_and_hms(2027, 5, 10, 0, 0, 0)
            .single()
            .expect("date");
        let view = compute(&Policy::reference(), 1, june).expect("computes");
        let run = &view.environments[0].runs[0];
        assert_eq!(fmt_local(run), "Sat 2027-06-05 06:00 CEST");
        assert_eq!(fmt_utc(run), "2027-06-05 04:00 UTC");
    }
}
