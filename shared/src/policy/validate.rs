//! Policy validation: every problem at once, each naming the field path, the bad value and
//! what is allowed. Runs before anything touches AWS.
//!
//! The rules follow the SSM API reference and the Systems Manager service quotas, not memory:
//!
//! * `CreateMaintenanceWindow`: Duration 1–24 h, Cutoff 0–23 h (and shorter than Duration),
//!   ScheduleOffset 1–6 days (cron only), Name `^[a-zA-Z0-9_\-.]{3,128}$`.
//! * `CreatePatchBaseline`: Name `^[a-zA-Z0-9_\-.]{3,128}$`, ApprovedPatches / RejectedPatches
//!   at most 50 entries of 1–100 characters, Description 1–1024 characters.
//! * `PatchRuleGroup`: at most 10 rules; `PatchFilterGroup`: at most 4 filters; `PatchFilter`
//!   values: 1–20 per key, 1–64 characters each, an exact value or the wildcard `*`.
//! * `PatchRule`: ApproveAfterDays 0–360, ApproveUntilDate `YYYY-MM-DD`, both "not supported
//!   for Debian Server or Ubuntu Server"; EnableNonSecurity "applies to Linux only".
//! * Filter keys per operating system: `DescribePatchProperties` and the `PatchFilter`
//!   reference (see [`filter_keys`] and [`filter_values`]).
//! * `RegisterPatchBaselineForPatchGroup`: PatchGroup 1–256 characters,
//!   `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`. Patch Manager reads the group only from the tag key
//!   `Patch Group` or `PatchGroup` (User Guide, "Creating and managing patch groups").
//! * `RegisterTaskWithMaintenanceWindow`: MaxConcurrency `^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$`,
//!   MaxErrors `^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$`, both 1–7 characters.
//! * Service quotas (defaults per account and Region): 50 patch baselines, 25 patch groups per
//!   patch baseline, 50 maintenance windows, 20 tasks and 100 targets per maintenance window.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{ApprovalMode, Environment, OperatingSystem, Platform, Policy, Unmatched};
use crate::names::{baseline_name, window_name, PatchGroup};
use crate::schedule::{parse_timezone, Schedule};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy cannot be applied.
    Error,
    /// The policy can be applied but probably does not do what its author wants.
    Warning,
}

/// One problem found in a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Field path, e.g. `environments[1].window.cutoff_hours`.
    pub path: String,
    /// What is wrong, with the offending value.
    pub message: String,
    /// What is allowed / what to do instead.
    pub allowed: String,
}

impl Problem {
    pub fn error(
        path: impl Into<String>,
        message: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Problem {
        Problem {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            allowed: allowed.into(),
        }
    }

    pub fn warning(
        path: impl Into<String>,
        message: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Problem {
        Problem {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
            allowed: allowed.into(),
        }
    }

    /// One line per problem, for error messages and the CLI.
    pub fn list(problems: &[Problem]) -> String {
        problems
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.path, self.message)?;
        if !self.allowed.is_empty() {
            write!(f, " (allowed: {})", self.allowed)?;
        }
        Ok(())
    }
}

/// The outcome of [`validate`]: all problems, errors and warnings, in policy order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Validation {
    pub problems: Vec<Problem>,
}

impl Validation {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }
}

/// Check a parsed policy against SSM's rules and quotas. `now` anchors the schedule checks
/// (the test→prod gap is computed over the runs after it).
pub fn validate(policy: &Policy, now: DateTime<Utc>) -> Validation {
    let mut out = Problems::default();
    check_tag_keys(policy, &mut out);
    check_unmatched(policy, &mut out);
    check_output(policy, &mut out);
    let windows = check_environments(policy, &mut out);
    check_windows_fire(policy, &windows, now, &mut out);
    check_promotion_gaps(policy, &windows, now, &mut out);
    check_batches(policy, &mut out);
    check_baselines(policy, &mut out);
    check_derived_names(policy, &windows, &mut out);
    check_quotas(policy, &mut out);
    Validation { problems: out.0 }
}

// --- SSM limits (API reference and service quotas) -------------------------------------------

/// `CreateMaintenanceWindow` Duration (hours).
const DURATION_HOURS: std::ops::RangeInclusive<u32> = 1..=24;
/// `CreateMaintenanceWindow` Cutoff (hours).
const MAX_CUTOFF_HOURS: u32 = 23;
/// `CreateMaintenanceWindow` ScheduleOffset (days, cron only).
const SCHEDULE_OFFSET_DAYS: std::ops::RangeInclusive<u32> = 1..=6;
/// `PatchRule` ApproveAfterDays.
const MAX_APPROVE_AFTER_DAYS: u32 = 360;
/// `PatchRuleGroup` PatchRules.
const MAX_RULES: usize = 10;
/// `PatchFilterGroup` PatchFilters.
const MAX_FILTERS: usize = 4;
/// `PatchFilter` Values: count and length of each.
const MAX_FILTER_VALUES: usize = 20;
const MAX_FILTER_VALUE_CHARS: usize = 64;
/// `CreatePatchBaseline` ApprovedPatches / RejectedPatches: count and length of each.
const MAX_PATCH_LIST: usize = 50;
const MAX_PATCH_ID_CHARS: usize = 100;
/// `CreatePatchBaseline` Description.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// `RegisterPatchBaselineForPatchGroup` PatchGroup.
const MAX_PATCH_GROUP_CHARS: usize = 256;
/// Tag keys (EC2 CreateTags, SSM AddTagsToResource).
const MAX_TAG_KEY_CHARS: usize = 128;
/// `LoggingInfo` / `OutputS3KeyPrefix` (S3KeyPrefix).
const MAX_S3_PREFIX_CHARS: usize = 500;
/// Service quotas: Patch Manager.
const QUOTA_PATCH_BASELINES: usize = 50;
const QUOTA_PATCH_GROUPS_PER_BASELINE: usize = 25;
/// Service quotas: Maintenance Windows.
const QUOTA_MAINTENANCE_WINDOWS: usize = 50;
const QUOTA_TASKS_PER_WINDOW: usize = 20;
const QUOTA_TARGETS_PER_WINDOW: usize = 100;

/// Environment names end up in every derived name; keep them short and plain.
const MAX_ENVIRONMENT_NAME_CHARS: usize = 32;
/// Runs of an environment compared with the runs of the environment it promotes from.
const GAP_RUNS: usize = 12;
/// How far before a run the source environment's previous run is searched (ApproveAfterDays
/// tops out at 360 days).
const GAP_LOOKBACK_DAYS: i64 = 370;
/// Upper bound on source runs generated for the gap check (a daily source over the lookback).
const MAX_SOURCE_RUNS: usize = 1000;

/// The patch-group tag keys Patch Manager reads ("the tag key must be `Patch Group` or
/// `PatchGroup`"; `PatchGroup` is required when instance-metadata tags are allowed).
const PATCH_GROUP_TAG_KEYS: [&str; 2] = ["Patch Group", "PatchGroup"];

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn error(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        allowed: impl Into<String>,
    ) {
        self.0.push(Problem::error(path, message, allowed));
    }

    fn warning(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        allowed: impl Into<String>,
    ) {
        self.0.push(Problem::warning(path, message, allowed));
    }
}

// --- top-level settings ------------------------------------------------------------------------

fn check_tag_keys(policy: &Policy, out: &mut Problems) {
    let key = &policy.tag_key;
    if let Some(problem) = tag_key_problem(key) {
        out.error("tag_key", format!("`{key}` {problem}"), "a tag key of 1-128 letters, digits, spaces and _ . : / = + - @, not starting with `aws:`");
    } else if !PATCH_GROUP_TAG_KEYS.contains(&key.as_str()) {
        out.error(
            "tag_key",
            format!("`{key}` is not a tag key Patch Manager reads the patch group from"),
            "`Patch Group`, or `PatchGroup` when instance-metadata tags are allowed (they forbid spaces)",
        );
    }

    let exclude = &policy.exclude_tag;
    if exclude.trim().is_empty() {
        out.error(
            "exclude_tag",
            "the exclusion tag key is empty",
            "a tag key such as `patchpilot:exclude`",
        );
    } else if exclude.chars().count() > MAX_TAG_KEY_CHARS {
        out.error(
            "exclude_tag",
            format!("`{exclude}` has {} characters", exclude.chars().count()),
            format!("a tag key of at most {MAX_TAG_KEY_CHARS} characters"),
        );
    }
}

/// Why `key` is not a tag key SSM/EC2 accept, if it is not.
fn tag_key_problem(key: &str) -> Option<String> {
    let len = key.chars().count();
    if len == 0 {
        return Some("is empty".to_string());
    }
    if len > MAX_TAG_KEY_CHARS {
        return Some(format!(
            "has {len} characters, more than {MAX_TAG_KEY_CHARS}"
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Some("starts with `aws:`, which AWS reserves for its own tags".to_string());
    }
    let bad = illegal_chars(key, is_tag_char);
    (!bad.is_empty()).then(|| format!("contains characters SSM does not allow in tags: {bad}"))
}

fn check_unmatched(policy: &Policy, out: &mut Problems) {
    if let Unmatched::Environment(name) = &policy.unmatched {
        if policy.environment(name).is_none() {
            out.error(
                "unmatched.environment",
                format!("`{name}` is not an environment of this policy"),
                format!("`skip` or one of: {}", environment_names(policy)),
            );
        }
    }
}

fn check_output(policy: &Policy, out: &mut Problems) {
    let prefix = &policy.output.s3_prefix;
    if prefix.chars().count() > MAX_S3_PREFIX_CHARS {
        out.error(
            "output.s3_prefix",
            format!("the prefix has {} characters", prefix.chars().count()),
            format!("at most {MAX_S3_PREFIX_CHARS} characters (OutputS3KeyPrefix)"),
        );
    }
    if prefix.starts_with('/') {
        out.error(
            "output.s3_prefix",
            format!("`{prefix}` starts with `/`, which makes an empty first folder in S3"),
            "a relative key prefix such as `patchpilot/run-command`",
        );
    }
    if prefix.contains("//") {
        out.error(
            "output.s3_prefix",
            format!("`{prefix}` contains `//` (an empty folder name)"),
            "folders separated by single `/`",
        );
    }
    if prefix.chars().any(char::is_control) {
        out.error(
            "output.s3_prefix",
            format!("{prefix:?} contains control characters"),
            "printable characters only",
        );
    }
    // An empty bucket means "use OUTPUT_BUCKET" (see `Output::s3_bucket`).
    if let Some(bucket) = policy.output.s3_bucket.as_deref().filter(|b| !b.is_empty()) {
        if let Some(problem) = bucket_name_problem(bucket) {
            out.error(
                "output.s3_bucket",
                format!("`{bucket}` {problem}"),
                "an S3 bucket name: 3-63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit (or leave it empty to use OUTPUT_BUCKET)",
            );
        }
    }
}

/// S3 general-purpose bucket naming rules.
fn bucket_name_problem(bucket: &str) -> Option<&'static str> {
    let len = bucket.len();
    if !(3..=63).contains(&len) {
        return Some("is not 3-63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Some("contains characters other than lowercase letters, digits, `.` and `-`");
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !edge_ok(bucket.bytes().next()) || !edge_ok(bucket.bytes().last()) {
        return Some("does not start and end with a letter or digit");
    }
    if bucket.contains("..") {
        return Some("contains two adjacent periods");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("is formatted as an IP address");
    }
    if bucket.starts_with("xn--") || bucket.starts_with("sthree-") {
        return Some("starts with a reserved prefix (`xn--`, `sthree-`)");
    }
    if bucket.ends_with("-s3alias") || bucket.ends_with("--ol-s3") {
        return Some("ends with a reserved suffix (`-s3alias`, `--ol-s3`)");
    }
    None
}

// --- environments ------------------------------------------------------------------------------

/// What the schedule checks learned about one environment's window, for the gap and name
/// checks that follow. `None` fields did not validate (an error was reported).
struct WindowFacts {
    schedule: Option<Schedule>,
    timezone: Option<Tz>,
    /// `Some(0)` for no offset; `None` when the offset is invalid.
    offset: Option<u32>,
    fixed_time: Option<(u32, u32)>,
}

fn check_environments(policy: &Policy, out: &mut Problems) -> Vec<WindowFacts> {
    if policy.environments.is_empty() {
        out.error(
            "environments",
            "the policy has no environment",
            "at least one environment, e.g. test and prod",
        );
    }
    let mut seen = BTreeSet::new();
    let mut facts = Vec::with_capacity(policy.environments.len());
    for (i, env) in policy.environments.iter().enumerate() {
        let at = format!("environments[{i}]");
        check_environment_name(&at, &env.name, &mut seen, out);
        check_match(&at, env, out);
        facts.push(check_window(&at, env, out));
        check_approval(policy, i, &at, env, out);
    }
    facts
}

fn check_environment_name(at: &str, name: &str, seen: &mut BTreeSet<String>, out: &mut Problems) {
    let path = format!("{at}.name");
    let allowed = format!(
        "1-{MAX_ENVIRONMENT_NAME_CHARS} lowercase letters, digits and `-` (it becomes part of the patch group, baseline and window names)"
    );
    if name.is_empty() {
        out.error(&path, "the environment name is empty", allowed);
        return;
    }
    let bad = illegal_chars(name, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    });
    if !bad.is_empty() {
        out.error(&path, format!("`{name}` contains {bad}"), allowed.clone());
    }
    if name.chars().count() > MAX_ENVIRONMENT_NAME_CHARS {
        out.error(
            &path,
            format!("`{name}` has {} characters", name.chars().count()),
            allowed,
        );
    }
    if !seen.insert(name.to_string()) {
        out.error(
            &path,
            format!("environment `{name}` is defined twice"),
            "unique environment names",
        );
    }
}

fn check_match(at: &str, env: &Environment, out: &mut Problems) {
    let m = &env.matcher;
    if m.tag.is_none() && m.name_suffixes.is_empty() {
        out.error(
            format!("{at}.match"),
            format!(
                "environment `{}` matches no instance: it has neither a tag nor a name suffix",
                env.name
            ),
            "`tag: { key: Environment, values: [prod] }` and/or `name_suffixes: [-prod]`",
        );
    }
    if let Some(tag) = &m.tag {
        if tag.key.trim().is_empty() {
            out.error(
                format!("{at}.match.tag.key"),
                "the tag key is empty",
                "an instance tag key such as `Environment`",
            );
        }
        if tag.values.is_empty() {
            out.error(
                format!("{at}.match.tag.values"),
                "no tag value is listed, so the tag matches nothing",
                "one or more values, e.g. [prod, production]",
            );
        }
        for (v, value) in tag.values.iter().enumerate() {
            if value.trim().is_empty() {
                out.error(
                    format!("{at}.match.tag.values[{v}]"),
                    "the tag value is empty",
                    "a non-empty value such as `prod`",
                );
            }
        }
    }
    for (s, suffix) in m.name_suffixes.iter().enumerate() {
        if suffix.trim().is_empty() {
            out.error(
                format!("{at}.match.name_suffixes[{s}]"),
                "the name suffix is empty, so it would match every instance",
                "a suffix of the Name tag such as `-prod`",
            );
        }
    }
}

fn check_window(at: &str, env: &Environment, out: &mut Problems) -> WindowFacts {
    let w = &env.window;
    let schedule = match Schedule::parse(&w.schedule) {
        Ok(s) => Some(s),
        Err(e) => {
            out.error(
                format!("{at}.window.schedule"),
                format!("`{}`: {e}", w.schedule),
                "an SSM maintenance-window schedule, e.g. cron(0 6 ? * SAT#1 *)",
            );
            None
        }
    };
    let timezone = match parse_timezone(&w.timezone) {
        Ok(tz) => Some(tz),
        Err(e) => {
            out.error(
                format!("{at}.window.timezone"),
                e.to_string(),
                "an IANA time zone name, e.g. Europe/Zurich or Etc/UTC",
            );
            None
        }
    };

    if !DURATION_HOURS.contains(&w.duration_hours) {
        out.error(
            format!("{at}.window.duration_hours"),
            format!(
                "{} hours is outside the range SSM accepts",
                w.duration_hours
            ),
            "1-24 hours (CreateMaintenanceWindow Duration)",
        );
    }
    if w.cutoff_hours > MAX_CUTOFF_HOURS {
        out.error(
            format!("{at}.window.cutoff_hours"),
            format!("{} hours is outside the range SSM accepts", w.cutoff_hours),
            "0-23 hours (CreateMaintenanceWindow Cutoff)",
        );
    } else if w.cutoff_hours >= w.duration_hours {
        out.error(
            format!("{at}.window.cutoff_hours"),
            format!(
                "cutoff {} h is not shorter than the {} h window, so no task could ever start",
                w.cutoff_hours, w.duration_hours
            ),
            format!(
                "0-{} hours (less than duration_hours)",
                w.duration_hours.saturating_sub(1)
            ),
        );
    }

    let offset = match w.offset_days {
        None => Some(0),
        Some(days) if !SCHEDULE_OFFSET_DAYS.contains(&days) => {
            out.error(
                format!("{at}.window.offset_days"),
                format!("{days} days is outside the range SSM accepts"),
                "1-6 days after the cron date (ScheduleOffset), or leave it out",
            );
            None
        }
        Some(days) => match &schedule {
            Some(Schedule::Cron(_)) | None => Some(days),
            Some(other) => {
                out.error(
                    format!("{at}.window.offset_days"),
                    format!("an offset of {days} days is given for `{other}`"),
                    "offset_days only with a cron(...) schedule (SSM ScheduleOffset is cron-only)",
                );
                None
            }
        },
    };

    let fixed_time = schedule.as_ref().and_then(Schedule::fixed_time);
    if schedule.is_some() && fixed_time.is_none() {
        out.error(
            format!("{at}.window.schedule"),
            format!("`{}` has no single fixed start time", w.schedule),
            "a cron expression with one hour and one minute (e.g. cron(0 6 ? * SAT#1 *)): the patch group name patch_<env>_<HHMM>_batch_<n> encodes the start time",
        );
    }
    WindowFacts {
        schedule,
        timezone,
        offset,
        fixed_time,
    }
}

/// Runs examined to find when a schedule whose runs are all in the past last ran (a daily
/// cron limited to a few years); beyond that the message names the first past run only.
const MAX_PAST_RUNS: usize = 4096;

/// A window that never opens patches nothing, silently: SSM accepts `cron(0 6 30 2 ? *)`
/// (30 February) and a cron whose year field or `at(...)` lies in the past, and the window is
/// created, enabled, and never runs (`GetMaintenanceWindow` NextExecutionTime stays empty).
/// Checked with the same next-runs computation `patchpilot next-runs` prints.
fn check_windows_fire(
    policy: &Policy,
    windows: &[WindowFacts],
    now: DateTime<Utc>,
    out: &mut Problems,
) {
    for (i, (env, w)) in policy.environments.iter().zip(windows).enumerate() {
        let Some((schedule, tz, offset)) = runnable(w) else {
            continue;
        };
        if !schedule.next_runs(1, now, tz, offset).is_empty() {
            continue;
        }
        let path = format!("environments[{i}].window.schedule");
        let expr = &env.window.schedule;
        // 1970: the earliest year an SSM cron accepts.
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let first = schedule.next_runs(1, epoch, tz, offset);
        let Some(first) = first.first() else {
            out.error(
                path,
                format!(
                    "`{expr}` never fires: no date ever matches it (e.g. a day of month the month does not have), so environment `{}` would never be patched",
                    env.name
                ),
                "a schedule with at least one future run; check it with `patchpilot next-runs`",
            );
            continue;
        };
        let mut last = *first;
        let mut seen = 1;
        while seen < MAX_PAST_RUNS {
            let batch = schedule.next_runs(256, last.with_timezone(&Utc), tz, offset);
            let Some(next) = batch.last() else { break };
            seen += batch.len();
            last = *next;
        }
        let last_run = if seen < MAX_PAST_RUNS {
            format!("its last run was {}", when(&last))
        } else {
            format!("its runs started {}", when(first))
        };
        out.error(
            path,
            format!(
                "`{expr}` never fires again: {last_run}, before now ({}), so environment `{}` would never be patched",
                now.format("%Y-%m-%d %H:%M UTC"),
                env.name
            ),
            "a schedule with a future run: drop or extend the year field, or use a later at(...); check it with `patchpilot next-runs`",
        );
    }
}

fn check_approval(policy: &Policy, i: usize, at: &str, env: &Environment, out: &mut Problems) {
    let a = &env.approval;
    if let Some(days) = a.approve_after_days {
        if days > MAX_APPROVE_AFTER_DAYS {
            out.error(
                format!("{at}.approval.approve_after_days"),
                format!("{days} days is outside the range SSM accepts"),
                "0-360 days (PatchRule ApproveAfterDays)",
            );
        }
    }
    if a.approve_after_days.is_some() && a.approve_until_date.is_some() {
        out.error(
            format!("{at}.approval"),
            "both approve_after_days and approve_until_date are set",
            "one of them: a delay after release, or a fixed cut-off date",
        );
    }
    if let Some(date) = &a.approve_until_date {
        if !is_iso_date(date) {
            out.error(
                format!("{at}.approval.approve_until_date"),
                format!("`{date}` is not a date in the form YYYY-MM-DD"),
                "YYYY-MM-DD, e.g. 2027-12-31 (PatchRule ApproveUntilDate)",
            );
        }
    }
    if let Some(source) = &a.promote_from {
        if source == &env.name {
            out.error(
                format!("{at}.approval.promote_from"),
                format!("environment `{source}` promotes from itself"),
                "another environment that is patched earlier, e.g. test",
            );
        } else if policy.environment(source).is_none() {
            out.error(
                format!("{at}.approval.promote_from"),
                format!("`{source}` is not an environment of this policy"),
                format!("one of: {}", environment_names(policy)),
            );
        } else if promotes_in_a_cycle(policy, i) {
            out.error(
                format!("{at}.approval.promote_from"),
                format!("promoting from `{source}` leads back to `{}`", env.name),
                "a chain without cycles, e.g. dev -> test -> prod",
            );
        }
    }

    check_promotion_mode(policy, at, env, out);

    // A promoted environment installs the source's manifest, which pins apt packages too:
    // there the missing delay does not matter (its approve_after_days only feeds scans).
    let delays = a.mode == ApprovalMode::Delay
        && (a.approve_after_days.is_some_and(|d| d > 0) || a.approve_until_date.is_some());
    let no_delay: Vec<&str> = policy
        .baselines
        .iter()
        .filter(|b| !b.os.supports_approval_delay())
        .map(|b| b.os.as_str())
        .collect();
    if delays && !no_delay.is_empty() {
        let what = match (a.approve_after_days, &a.approve_until_date) {
            (Some(d), _) if d > 0 => format!("approves patches {d} days after release"),
            (_, Some(date)) => format!("approves patches released up to {date}"),
            _ => "delays approval".to_string(),
        };
        let field = if a.approve_after_days.is_some_and(|d| d > 0) {
            "approve_after_days"
        } else {
            "approve_until_date"
        };
        out.warning(
            format!("{at}.approval.{field}"),
            format!(
                "environment `{}` {what}, but its {} baseline(s) cannot lag: SSM has no release dates for apt repositories and rejects ApproveAfterDays/ApproveUntilDate there, so they approve every matching patch as soon as it is published",
                env.name,
                no_delay.join(", ")
            ),
            "accept it, or hold apt packages back with approved_patches / rejected_patches, or run this environment closer to the one it follows",
        );
    }
}

/// `mode: promote` needs a source (`from`), sets ApproveUntilDate itself, and has a gate;
/// a gate without promotion would never be consulted.
fn check_promotion_mode(policy: &Policy, at: &str, env: &Environment, out: &mut Problems) {
    let a = &env.approval;
    match a.mode {
        ApprovalMode::Promote => {
            if a.promote_from.is_none() {
                out.error(
                    format!("{at}.approval.from"),
                    format!(
                        "environment `{}` has mode: promote but no environment to promote from",
                        env.name
                    ),
                    format!(
                        "from: one of {} (the environment patched first)",
                        environment_names(policy)
                    ),
                );
            }
            if a.approve_until_date.is_some() {
                out.error(
                    format!("{at}.approval.approve_until_date"),
                    "mode: promote sets ApproveUntilDate itself (the UTC date of the source's last good run)",
                    "remove approve_until_date, or use mode: delay",
                );
            }
            if let Some(gate) = &a.gate {
                if gate.max_failed_percent().is_none() {
                    out.error(
                        format!("{at}.approval.gate.max_failed"),
                        format!("`{}` is not a percentage", gate.max_failed),
                        "a whole percentage of the source run's hosts, 0% to 100%, e.g. 0% or 10%",
                    );
                }
            }
        }
        ApprovalMode::Delay => {
            if a.gate.is_some() {
                out.error(
                    format!("{at}.approval.gate"),
                    "a gate applies only to an environment with mode: promote",
                    "mode: promote with from: <environment>, or remove the gate",
                );
            }
        }
    }
}

fn is_iso_date(s: &str) -> bool {
    s.len() == 10 && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn promotes_in_a_cycle(policy: &Policy, start: usize) -> bool {
    let start_name = &policy.environments[start].name;
    let mut current = &policy.environments[start];
    for _ in 0..policy.environments.len() {
        let Some(next) = current
            .approval
            .promote_from
            .as_deref()
            .and_then(|n| policy.environment(n))
        else {
            return false;
        };
        if &next.name == start_name {
            return true;
        }
        current = next;
    }
    // More steps than environments without returning to the start: a cycle further up the
    // chain, reported at the environments in it.
    false
}

fn environment_names(policy: &Policy) -> String {
    let names: Vec<String> = policy
        .environments
        .iter()
        .map(|e| format!("`{}`", e.name))
        .collect();
    if names.is_empty() {
        "(no environments defined)".to_string()
    } else {
        names.join(", ")
    }
}

// --- the promotion gap ---------------------------------------------------------------------------

/// A run of this environment paired with the latest run of its source before it.
struct Pair {
    run: DateTime<Tz>,
    source_run: DateTime<Tz>,
    gap_days: i64,
}

/// `prod` promotes from `test`: prod should install exactly what test installed. At its run
/// `t` prod's baseline approves patches released up to `t - approve_after_days` (SSM counts
/// release dates in UTC); test installed those released up to `s - test's own delay`. The two
/// agree only when `approve_after_days = (t - s) + test's delay` for every run.
fn check_promotion_gaps(
    policy: &Policy,
    windows: &[WindowFacts],
    now: DateTime<Utc>,
    out: &mut Problems,
) {
    for (i, env) in policy.environments.iter().enumerate() {
        let Some(source_name) = env.approval.promote_from.as_deref() else {
            continue;
        };
        let Some(j) = policy
            .environments
            .iter()
            .position(|e| e.name == source_name)
        else {
            continue;
        };
        let source = &policy.environments[j];
        // A frozen cut-off date is not a delay, and a promoted environment installs the
        // manifest whatever the gap: the check applies to neither.
        if i == j
            || env.approval.mode == ApprovalMode::Promote
            || env.approval.approve_until_date.is_some()
            || source.approval.approve_until_date.is_some()
        {
            continue;
        }
        let (Some(this), Some(from)) = (runnable(&windows[i]), runnable(&windows[j])) else {
            continue;
        };
        let delay = i64::from(env.approval.approve_after_days.unwrap_or(0));
        let source_delay = i64::from(source.approval.approve_after_days.unwrap_or(0));
        let pairs = pair_runs(this, from, now);
        let mismatched: Vec<&Pair> = pairs
            .iter()
            .filter(|p| p.gap_days + source_delay != delay)
            .collect();
        let Some(first) = mismatched.first() else {
            continue;
        };
        out.warning(
            format!("environments[{i}].approval.approve_after_days"),
            gap_message(env, source, first, delay, source_delay),
            gap_advice(env, source, &pairs, source_delay),
        );
    }
}

type Runnable<'a> = (&'a Schedule, Tz, u32);

fn runnable(w: &WindowFacts) -> Option<Runnable<'_>> {
    // Without a fixed start time there is already an error, and "the run" is ill-defined.
    w.fixed_time?;
    Some((w.schedule.as_ref()?, w.timezone?, w.offset?))
}

fn pair_runs(this: Runnable<'_>, from: Runnable<'_>, now: DateTime<Utc>) -> Vec<Pair> {
    let (schedule, tz, offset) = this;
    let runs = schedule.next_runs(GAP_RUNS, now, tz, offset);
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return Vec::new();
    };
    let (source_schedule, source_tz, source_offset) = from;
    let mut source_runs: Vec<DateTime<Tz>> = Vec::new();
    let mut cursor = first.with_timezone(&Utc) - Duration::days(GAP_LOOKBACK_DAYS);
    let last = last.with_timezone(&Utc);
    while source_runs.len() < MAX_SOURCE_RUNS && cursor < last {
        let batch = source_schedule.next_runs(64, cursor, source_tz, source_offset);
        let Some(end) = batch.last() else {
            break;
        };
        cursor = end.with_timezone(&Utc);
        source_runs.extend(batch);
    }
    runs.into_iter()
        .filter_map(|run| {
            let source_run = source_runs.iter().rev().find(|s| **s < run)?.to_owned();
            // Whole days, rounded: a DST change between the two runs shifts the gap by an hour.
            let secs = (run.with_timezone(&Utc) - source_run.with_timezone(&Utc)).num_seconds();
            let gap_days = (secs + 43_200).div_euclid(86_400);
            Some(Pair {
                run,
                source_run,
                gap_days,
            })
        })
        .collect()
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_string()
    } else {
        format!("{n} days")
    }
}

fn when(t: &DateTime<Tz>) -> String {
    format!("{} {}", t.format("%Y-%m-%d %H:%M"), t.timezone().name())
}

fn gap_message(
    env: &Environment,
    source: &Environment,
    p: &Pair,
    delay: i64,
    source_delay: i64,
) -> String {
    let (name, from) = (&env.name, &source.name);
    let head = format!(
        "{name} runs {}, {} after {from}'s run on {}",
        when(&p.run),
        days(p.gap_days),
        when(&p.source_run)
    );
    let source_note = if source_delay > 0 {
        format!(" ({from} itself approves {source_delay} days after release)")
    } else {
        String::new()
    };
    let covered = p.gap_days + source_delay;
    if delay < covered {
        format!(
            "{head}{source_note}; with approve_after_days {delay} {name} would install patches released up to {} after {from}'s cut-off, which {from} never had",
            days(covered - delay)
        )
    } else {
        format!(
            "{head}{source_note}; with approve_after_days {delay} {name} would skip patches released in the {} before {from}'s cut-off that {from} already installed (they reach {name} one cycle later)",
            days(delay - covered)
        )
    }
}

fn gap_advice(
    env: &Environment,
    source: &Environment,
    pairs: &[Pair],
    source_delay: i64,
) -> String {
    let gaps: Vec<i64> = pairs
        .iter()
        .map(|p| p.gap_days)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if let [gap] = gaps.as_slice() {
        let wanted = gap + source_delay;
        if (0..=i64::from(MAX_APPROVE_AFTER_DAYS)).contains(&wanted) {
            return format!(
                "set approve_after_days to {wanted} so {} installs exactly what {} installed, or move {}'s schedule",
                env.name, source.name, env.name
            );
        }
    }
    let mut by_gap: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for p in pairs {
        by_gap
            .entry(p.gap_days)
            .or_default()
            .push(p.run.format("%Y-%m-%d").to_string());
    }
    let listed: Vec<String> = by_gap
        .iter()
        .map(|(gap, dates)| {
            let shown = dates.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            let more = if dates.len() > 3 {
                format!(" and {} more", dates.len() - 3)
            } else {
                String::new()
            };
            format!("{} on {shown}{more}", days(*gap))
        })
        .collect();
    format!(
        "the gap to {}'s previous run varies ({}); give both windows schedules with a constant gap (e.g. the same weekday, SAT#1 and SAT#3), then set approve_after_days to that gap",
        source.name,
        listed.join(", ")
    )
}

// --- batches -------------------------------------------------------------------------------------

fn check_batches(policy: &Policy, out: &mut Problems) {
    if policy.batches.is_empty() {
        out.error(
            "batches",
            "the policy has no batch, so no instance gets a patch group",
            "at least one batch, e.g. linux (batch 1) and windows (batch 2)",
        );
    }
    let mut names = BTreeSet::new();
    let mut owner: BTreeMap<Platform, usize> = BTreeMap::new();
    for (i, batch) in policy.batches.iter().enumerate() {
        let at = format!("batches[{i}]");
        let name = &batch.name;
        let bad = illegal_chars(name, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        });
        if name.is_empty() || !bad.is_empty() {
            let what = if name.is_empty() {
                "the batch name is empty".to_string()
            } else {
                format!("`{name}` contains {bad}")
            };
            out.error(
                format!("{at}.name"),
                what,
                "lowercase letters, digits and `-` (it is part of the task name)",
            );
        }
        if !names.insert(name.clone()) {
            out.error(
                format!("{at}.name"),
                format!("batch `{name}` is defined twice"),
                "unique batch names",
            );
        }
        if batch.platforms.is_empty() {
            out.error(
                format!("{at}.platforms"),
                format!("batch `{name}` has no platform, so it stays empty"),
                "one or more of Linux, Windows, MacOS",
            );
        }
        for (p, platform) in batch.platforms.iter().enumerate() {
            if let Some(first) = owner.get(platform) {
                out.error(
                    format!("{at}.platforms[{p}]"),
                    format!(
                        "{platform} is already in batch {} (`{}`)",
                        first + 1,
                        policy.batches[*first].name
                    ),
                    "each platform in at most one batch",
                );
            } else {
                owner.insert(*platform, i);
            }
        }
        if !is_max_concurrency(&batch.max_concurrency) {
            out.error(
                format!("{at}.max_concurrency"),
                format!(
                    "`{}` is not a MaxConcurrency SSM accepts",
                    batch.max_concurrency
                ),
                "a number ≥ 1 (e.g. 10) or a percentage 1%-100% (e.g. 50%), at most 7 characters",
            );
        }
        if !is_max_errors(&batch.max_errors) {
            out.error(
                format!("{at}.max_errors"),
                format!("`{}` is not a MaxErrors SSM accepts", batch.max_errors),
                "a number ≥ 0 (e.g. 1) or a percentage 0%-100% (e.g. 25%), at most 7 characters",
            );
        }
    }

    let mut uncovered: BTreeMap<Platform, Vec<&str>> = BTreeMap::new();
    for b in &policy.baselines {
        let platform = b.os.platform();
        if !owner.contains_key(&platform) {
            uncovered.entry(platform).or_default().push(b.os.as_str());
        }
    }
    for (platform, oses) in uncovered {
        out.warning(
            "batches",
            format!(
                "no batch contains platform {platform}, so {platform} instances ({}) get no patch group and are never patched by patchpilot",
                oses.join(", ")
            ),
            format!("add {platform} to a batch's platforms, or remove those baselines"),
        );
    }
}

/// `^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$`, 1-7 characters.
fn is_max_concurrency(s: &str) -> bool {
    if s.is_empty() || s.len() > 7 {
        return false;
    }
    match s.strip_suffix('%') {
        Some(pct) => {
            pct == "100" || (matches!(pct.len(), 1 | 2) && all_digits(pct) && !pct.starts_with('0'))
        }
        None => all_digits(s) && !s.starts_with('0'),
    }
}

/// `^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$`, 1-7 characters.
fn is_max_errors(s: &str) -> bool {
    if s.is_empty() || s.len() > 7 {
        return false;
    }
    match s.strip_suffix('%') {
        Some(pct) => {
            pct == "100"
                || (pct.len() == 1 && all_digits(pct))
                || (pct.len() == 2 && all_digits(pct) && !pct.starts_with('0'))
        }
        None => s == "0" || (all_digits(s) && !s.starts_with('0')),
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

// --- baselines -----------------------------------------------------------------------------------

/// Filter keys per operating system: `DescribePatchProperties` ("properties that can be used
/// in filters for each major operating system type") plus `SECTION` for apt systems and
/// `PATCH_SET` for Windows from the `PatchFilter` reference. Raspberry Pi OS is apt-based
/// like Debian.
pub fn filter_keys(os: OperatingSystem) -> &'static [&'static str] {
    use OperatingSystem::*;
    match os {
        Windows => &[
            "PATCH_SET",
            "PRODUCT",
            "PRODUCT_FAMILY",
            "CLASSIFICATION",
            "MSRC_SEVERITY",
        ],
        Ubuntu | Debian | Raspbian => &["PRODUCT", "PRIORITY", "SECTION"],
        MacOs => &["PRODUCT", "CLASSIFICATION"],
        AmazonLinux
        | AmazonLinux2
        | AmazonLinux2022
        | AmazonLinux2023
        | RedhatEnterpriseLinux
        | Suse
        | Centos
        | OracleLinux
        | RockyLinux
        | AlmaLinux => &["PRODUCT", "CLASSIFICATION", "SEVERITY"],
    }
}

/// The fixed value set AWS documents for a key on an operating system (`PatchFilter`
/// reference), or `None` where values are free (PRODUCT, PRODUCT_FAMILY, SECTION, macOS
/// classifications). The wildcard `*` is always allowed in addition.
pub fn filter_values(os: OperatingSystem, key: &str) -> Option<&'static [&'static str]> {
    use OperatingSystem::*;
    const YUM_CLASSIFICATION: &[&str] = &[
        "Security",
        "Bugfix",
        "Enhancement",
        "Recommended",
        "Newpackage",
    ];
    match (os, key) {
        (Windows, "CLASSIFICATION") => Some(&[
            "CriticalUpdates",
            "DefinitionUpdates",
            "Drivers",
            "FeaturePacks",
            "SecurityUpdates",
            "ServicePacks",
            "Tools",
            "UpdateRollups",
            "Updates",
            "Upgrades",
        ]),
        (Windows, "MSRC_SEVERITY") => {
            Some(&["Critical", "Important", "Moderate", "Low", "Unspecified"])
        }
        (Windows, "PATCH_SET") => Some(&["OS", "APPLICATION"]),
        (Ubuntu | Debian | Raspbian, "PRIORITY") => {
            Some(&["Required", "Important", "Standard", "Optional", "Extra"])
        }
        (Suse, "CLASSIFICATION") => Some(&[
            "Security",
            "Recommended",
            "Optional",
            "Feature",
            "Document",
            "Yast",
        ]),
        (Suse, "SEVERITY") => Some(&["Critical", "Important", "Moderate", "Low"]),
        (AmazonLinux | AmazonLinux2 | AmazonLinux2022 | AmazonLinux2023, "CLASSIFICATION") => {
            Some(YUM_CLASSIFICATION)
        }
        (AmazonLinux | AmazonLinux2 | AmazonLinux2022 | AmazonLinux2023, "SEVERITY") => {
            Some(&["Critical", "Important", "Medium", "Low"])
        }
        (
            RedhatEnterpriseLinux | Centos | OracleLinux | RockyLinux | AlmaLinux,
            "CLASSIFICATION",
        ) => Some(YUM_CLASSIFICATION),
        // The PatchFilter reference lists Medium; Red Hat's own scale (and the Oracle Linux
        // default baseline) says Moderate. Both are accepted.
        (RedhatEnterpriseLinux | Centos | OracleLinux | RockyLinux | AlmaLinux, "SEVERITY") => {
            Some(&["Critical", "Important", "Moderate", "Medium", "Low"])
        }
        _ => None,
    }
}

fn check_baselines(policy: &Policy, out: &mut Problems) {
    if policy.baselines.is_empty() {
        out.error(
            "baselines",
            "the policy has no baseline, so nothing is patched",
            "one entry per operating system, e.g. os: WINDOWS",
        );
    }
    let mut seen: BTreeMap<OperatingSystem, usize> = BTreeMap::new();
    for (j, b) in policy.baselines.iter().enumerate() {
        let at = format!("baselines[{j}]");
        let os = b.os;
        if let Some(first) = seen.get(&os) {
            out.error(
                format!("{at}.os"),
                format!("{os} already has rules in baselines[{first}]"),
                "one entry per operating system",
            );
        } else {
            seen.insert(os, j);
        }
        if let Some(d) = &b.description {
            let len = d.chars().count();
            if len == 0 || len > MAX_DESCRIPTION_CHARS {
                out.error(
                    format!("{at}.description"),
                    format!("the description has {len} characters"),
                    "1-1024 characters, or leave it out",
                );
            }
        }
        if b.rules.is_empty() {
            out.error(
                format!("{at}.rules"),
                format!("the {os} baseline has no approval rule"),
                "1-10 rules, e.g. filters: { PRODUCT: [\"*\"], CLASSIFICATION: [Security] }",
            );
        } else if b.rules.len() > MAX_RULES {
            out.error(
                format!("{at}.rules"),
                format!("the {os} baseline has {} rules", b.rules.len()),
                "at most 10 rules per baseline (PatchRuleGroup)",
            );
        }
        for (k, rule) in b.rules.iter().enumerate() {
            let at = format!("{at}.rules[{k}]");
            check_filters(&at, os, &rule.filters, out);
            if rule.enable_non_security && os.platform() != Platform::Linux {
                out.error(
                    format!("{at}.enable_non_security"),
                    format!("enable_non_security is set on a {os} baseline"),
                    "only on Linux baselines (EnableNonSecurity applies to Linux only); remove it",
                );
            }
            if let Some(days) = rule.approve_after_days {
                if !os.supports_approval_delay() {
                    out.error(
                        format!("{at}.approve_after_days"),
                        format!("approve_after_days {days} on a {os} rule: SSM rejects ApproveAfterDays for Ubuntu and Debian, because apt repositories publish no release dates"),
                        "remove it; to hold a package back pin it with approved_patches / rejected_patches, or run this environment closer to the one it follows",
                    );
                } else if days > MAX_APPROVE_AFTER_DAYS {
                    out.error(
                        format!("{at}.approve_after_days"),
                        format!("{days} days is outside the range SSM accepts"),
                        "0-360 days (PatchRule ApproveAfterDays)",
                    );
                }
            }
        }
        check_patch_list(&format!("{at}.approved_patches"), &b.approved_patches, out);
        check_patch_list(&format!("{at}.rejected_patches"), &b.rejected_patches, out);
        let both: Vec<&str> = b
            .approved_patches
            .iter()
            .filter(|p| !p.trim().is_empty() && b.rejected_patches.contains(p))
            .map(String::as_str)
            .collect();
        if !both.is_empty() {
            out.warning(
                format!("{at}.approved_patches"),
                format!(
                    "{} listed as both approved and rejected; Patch Manager rejects them",
                    both.join(", ")
                ),
                "list each patch in one of approved_patches / rejected_patches",
            );
        }
    }
}

fn check_filters(
    at: &str,
    os: OperatingSystem,
    filters: &BTreeMap<String, Vec<String>>,
    out: &mut Problems,
) {
    let keys = filter_keys(os);
    if filters.is_empty() {
        out.error(
            format!("{at}.filters"),
            "the rule has no filter",
            format!("1-4 filters with keys for {os}: {}", keys.join(", ")),
        );
    } else if filters.len() > MAX_FILTERS {
        out.error(
            format!("{at}.filters"),
            format!("the rule has {} filters", filters.len()),
            "at most 4 filters per rule (PatchFilterGroup)",
        );
    }
    for (key, values) in filters {
        let path = format!("{at}.filters.{key}");
        if !keys.contains(&key.as_str()) {
            out.error(
                &path,
                format!("`{key}` is not a patch filter key for {os}"),
                format!("for {os}: {}", keys.join(", ")),
            );
            continue;
        }
        if values.is_empty() {
            out.error(
                &path,
                format!("`{key}` has no value"),
                "1-20 values, or [\"*\"] for all",
            );
        } else if values.len() > MAX_FILTER_VALUES {
            out.error(
                &path,
                format!("`{key}` has {} values", values.len()),
                "at most 20 values per filter",
            );
        }
        let allowed = filter_values(os, key);
        for value in values {
            let len = value.chars().count();
            if len == 0 || len > MAX_FILTER_VALUE_CHARS {
                out.error(
                    &path,
                    format!("value `{value}` has {len} characters"),
                    "1-64 characters per value",
                );
                continue;
            }
            let Some(allowed) = allowed else { continue };
            if value == "*" || allowed.contains(&value.as_str()) {
                continue;
            }
            let hint = allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(value))
                .map(|a| format!(" (values are case-sensitive: did you mean `{a}`?)"))
                .unwrap_or_default();
            out.error(
                &path,
                format!("`{value}` is not a {key} value for {os}{hint}"),
                format!("{}, or * for all", allowed.join(", ")),
            );
        }
    }
}

fn check_patch_list(path: &str, patches: &[String], out: &mut Problems) {
    if patches.len() > MAX_PATCH_LIST {
        out.error(
            path,
            format!("{} patches are listed", patches.len()),
            "at most 50 entries (CreatePatchBaseline)",
        );
    }
    for (n, patch) in patches.iter().enumerate() {
        let len = patch.chars().count();
        if patch.trim().is_empty() {
            out.error(
                format!("{path}[{n}]"),
                "the entry is empty",
                "a patch name or ID such as KB4580325 or openssl-1.0.2k-24.el7_9",
            );
        } else if len > MAX_PATCH_ID_CHARS {
            out.error(
                format!("{path}[{n}]"),
                format!("`{patch}` has {len} characters"),
                "at most 100 characters per entry",
            );
        }
    }
}

// --- derived names -------------------------------------------------------------------------------

fn check_derived_names(policy: &Policy, windows: &[WindowFacts], out: &mut Problems) {
    for (i, (env, facts)) in policy.environments.iter().zip(windows).enumerate() {
        let at = format!("environments[{i}].name");
        let window = window_name(&env.name);
        if !is_resource_name(&window) {
            out.error(
                &at,
                format!("the window name `{window}` is not a legal maintenance window name"),
                "names matching ^[a-zA-Z0-9_\\-.]{3,128}$ (CreateMaintenanceWindow)",
            );
        }
        for b in &policy.baselines {
            let baseline = baseline_name(&env.name, b.os);
            if !is_resource_name(&baseline) {
                out.error(
                    &at,
                    format!("the baseline name `{baseline}` is not a legal patch baseline name"),
                    "names matching ^[a-zA-Z0-9_\\-.]{3,128}$ (CreatePatchBaseline)",
                );
            }
        }
        let Some(time) = facts.fixed_time else {
            continue;
        };
        for n in 1..=policy.batches.len() {
            let Ok(n) = u32::try_from(n) else { break };
            let group = PatchGroup::new(&env.name, time, n).to_string();
            let len = group.chars().count();
            let bad = illegal_chars(&group, is_tag_char);
            if len > MAX_PATCH_GROUP_CHARS || !bad.is_empty() {
                let why = if bad.is_empty() {
                    format!("has {len} characters")
                } else {
                    format!("contains {bad}")
                };
                out.error(
                    &at,
                    format!("the patch group `{group}` {why}"),
                    "1-256 letters, digits, spaces and _ . : / = + - @ (RegisterPatchBaselineForPatchGroup)",
                );
            }
        }
    }
}

/// `^[a-zA-Z0-9_\-.]{3,128}$` (baseline and maintenance-window names).
fn is_resource_name(s: &str) -> bool {
    (3..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// One character of `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$` (tag keys, patch groups).
/// `char::is_alphabetic` / `is_numeric` stand in for `\p{L}` / `\p{N}`.
fn is_tag_char(c: char) -> bool {
    c.is_alphabetic() || c.is_numeric() || is_space_separator(c) || "_.:/=+-@".contains(c)
}

/// `\p{Z}`: space, line and paragraph separators (not tabs or newlines, which are controls).
fn is_space_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// The distinct characters of `s` that fail `ok`, quoted for a message (empty if none).
fn illegal_chars(s: &str, ok: impl Fn(char) -> bool) -> String {
    let bad: BTreeSet<char> = s.chars().filter(|c| !ok(*c)).collect();
    bad.iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// --- service quotas ------------------------------------------------------------------------------

fn check_quotas(policy: &Policy, out: &mut Problems) {
    let envs = policy.environments.len();
    let oses = policy.baselines.len();
    let baselines = envs * oses;
    if baselines > QUOTA_PATCH_BASELINES {
        out.error(
            "baselines",
            format!("{envs} environments × {oses} operating systems = {baselines} patch baselines, over the account quota of {QUOTA_PATCH_BASELINES} (baselines not made by patchpilot count too)"),
            "at most 50 patch baselines per account and Region: fewer environments or operating systems, or a Service Quotas increase for \"Patch baselines\"",
        );
    }
    if envs > QUOTA_MAINTENANCE_WINDOWS {
        out.error(
            "environments",
            format!("{envs} environments = {envs} maintenance windows, over the account quota of {QUOTA_MAINTENANCE_WINDOWS}"),
            "at most 50 maintenance windows per account and Region (one per environment)",
        );
    }
    let batches = policy.batches.len();
    if batches > QUOTA_TASKS_PER_WINDOW {
        out.error(
            "batches",
            format!("{batches} batches = {batches} tasks in every maintenance window, over the quota of {QUOTA_TASKS_PER_WINDOW}"),
            "at most 20 tasks per maintenance window (one per batch)",
        );
    }
    if batches > QUOTA_TARGETS_PER_WINDOW {
        out.error(
            "batches",
            format!("{batches} batches = {batches} targets in every maintenance window, over the quota of {QUOTA_TARGETS_PER_WINDOW}"),
            "at most 100 targets per maintenance window (one per batch)",
        );
    }
    // A baseline serves the patch groups of its environment whose batch holds its platform.
    for (j, b) in policy.baselines.iter().enumerate() {
        let groups = policy
            .batches
            .iter()
            .filter(|batch| batch.platforms.contains(&b.os.platform()))
            .count();
        if groups > QUOTA_PATCH_GROUPS_PER_BASELINE {
            out.error(
                format!("baselines[{j}].os"),
                format!("each {} baseline would serve {groups} patch groups, over the quota of {QUOTA_PATCH_GROUPS_PER_BASELINE}", b.os),
                "at most 25 patch groups per patch baseline",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Batch, Unmatched};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    fn reference() -> Policy {
        Policy::reference()
    }

    /// The reference policy with prod on a plain delay behind test (`mode: delay`,
    /// `approve_after_days: 14`): what the gap and "cannot lag" checks are about.
    fn delay_reference() -> Policy {
        let mut p = Policy::reference();
        p.environments[1].approval.mode = ApprovalMode::Delay;
        p.environments[1].approval.gate = None;
        p
    }

    fn at<'a>(v: &'a Validation, path: &str) -> Vec<&'a Problem> {
        v.problems.iter().filter(|p| p.path == path).collect()
    }

    fn error_at<'a>(v: &'a Validation, path: &str) -> &'a Problem {
        v.errors().find(|p| p.path == path).unwrap_or_else(|| {
            panic!(
                "no error at {path}; problems:\n{}",
                Problem::list(&v.problems)
            )
        })
    }

    fn baseline_index(p: &Policy, os: OperatingSystem) -> usize {
        p.baselines
            .iter()
            .position(|b| b.os == os)
            .expect("reference has this OS")
    }

    fn gap_warnings(v: &Validation) -> Vec<&Problem> {
        v.warnings()
            .filter(|p| p.message.contains("days after test's run"))
            .collect()
    }

    #[test]
    fn a_window_on_30_february_never_fires() {
        let mut p = reference();
        p.environments[1].window.schedule = "cron(0 6 30 2 ? *)".to_string();
        let v = validate(&p, now());
        let e = error_at(&v, "environments[1].window.schedule");
        assert!(
            e.message.contains("`cron(0 6 30 2 ? *)` never fires")
                && e.message.contains("no date ever matches")
                && e.message.contains("`prod`"),
            "{e}"
        );
        assert!(e.allowed.contains("next-runs"), "{e}");
    }

    #[test]
    fn a_window_whose_years_are_past_says_when_it_last_ran() {
        let mut p = reference();
        p.environments[0].window.schedule = "cron(0 6 ? * SAT#1 2024-2025)".to_string();
        let v = validate(&p, now());
        let e = error_at(&v, "environments[0].window.schedule");
        assert!(
            e.message.contains("never fires again")
                && e.message
                    .contains("its last run was 2025-12-06 06:00 Europe/Zurich")
                && e.message.contains("`test`"),
            "{e}"
        );
        // A one-off `at(...)` in the past, and one in the future.
        p.environments[0].window.schedule = "at(2025-03-01T06:00:00)".to_string();
        let v = validate(&p, now());
        let e = error_at(&v, "environments[0].window.schedule");
        assert!(e.message.contains("its last run was 2025-03-01"), "{e}");
        p.environments[0].window.schedule = "cron(0 6 ? * SAT#1 2024-2030)".to_string();
        let v = validate(&p, now());
        assert!(
            !v.problems.iter().any(|p| p.message.contains("never fires")),
            "{}",
            Problem::list(&v.problems)
        );
    }

    #[test]
    fn the_reference_policy_has_no_errors_and_no_warnings() {
        // Prod promotes from test: the manifest pins Ubuntu too, so no "cannot lag" warning.
        let v = validate(&reference(), now());
        assert!(v.problems.is_empty(), "{}", Problem::list(&v.problems));
    }

    #[test]
    fn a_plain_delay_warns_that_ubuntu_cannot_lag() {
        let v = validate(&delay_reference(), now());
        assert!(v.is_ok(), "{}", Problem::list(&v.problems));
        assert_eq!(v.problems.len(), 1, "{}", Problem::list(&v.problems));
        let w = &v.problems[0];
        assert_eq!(w.severity, Severity::Warning);
        assert_eq!(w.path, "environments[1].approval.approve_after_days");
        assert!(
            w.message.contains("UBUNTU") && w.message.contains("cannot lag"),
            "{w}"
        );
        assert!(w.allowed.contains("approved_patches"), "{w}");
    }

    #[test]
    fn prod_delay_matches_the_14_day_gap_of_the_reference_all_year() {
        // SAT#1 -> SAT#3 is always 14 days, whatever month `now` falls in (DST included).
        for month in 1..=12 {
            for day in [1, 10, 20] {
                let now = Utc
                    .with_ymd_and_hms(2027, month, day, 5, 30, 0)
                    .single()
                    .expect("valid date");
                let v = validate(&delay_reference(), now);
                assert!(
                    gap_warnings(&v).is_empty(),
                    "{now}: {}",
                    Problem::list(&v.problems)
                );
                assert_eq!(v.problems.len(), 1, "{now}: {}", Problem::list(&v.problems));
            }
        }
    }

    #[test]
    fn a_13_day_gap_warns_with_both_dates() {
        let mut p = delay_reference();
        // Second Saturday + 6 days: always the Friday 13 days after the first Saturday.
        p.environments[1].window.schedule = "cron(0 6 ? * SAT#2 *)".to_string();
        p.environments[1].window.offset_days = Some(6);
        let v = validate(&p, now());
        assert!(v.is_ok(), "{}", Problem::list(&v.problems));
        let w = gap_warnings(&v);
        assert_eq!(w.len(), 1, "{}", Problem::list(&v.problems));
        let w = w[0];
        assert_eq!(w.path, "environments[1].approval.approve_after_days");
        assert!(
            w.message.contains("prod runs 2026-12-18 06:00 Europe/Zurich, 13 days after test's run on 2026-12-05 06:00 Europe/Zurich"),
            "{w}"
        );
        assert!(w.message.contains("with approve_after_days 14"), "{w}");
        assert!(
            w.message
                .contains("skip patches released in the 1 day before test's cut-off"),
            "{w}"
        );
        assert!(w.allowed.contains("set approve_after_days to 13"), "{w}");
    }

    #[test]
    fn a_promoted_environment_installs_the_manifest_whatever_the_gap() {
        // The same 13-day gap as above, in promote mode: prod replays test's manifest, so
        // the gap changes nothing and nothing is warned about.
        let mut p = reference();
        p.environments[1].window.schedule = "cron(0 6 ? * SAT#2 *)".to_string();
        p.environments[1].window.offset_days = Some(6);
        let v = validate(&p, now());
        assert!(v.problems.is_empty(), "{}", Problem::list(&v.problems));
    }

    #[test]
    fn a_gap_longer_than_the_delay_says_prod_gets_patches_test_never_had() {
        let mut p = delay_reference();
        p.environments[1].approval.approve_after_days = Some(7);
        let v = validate(&p, now());
        let w = gap_warnings(&v);
        assert_eq!(w.len(), 1, "{}", Problem::list(&v.problems));
        assert!(
            w[0].message.contains("14 days after test's run"),
            "{}",
            w[0]
        );
        assert!(
            w[0].message
                .contains("up to 7 days after test's cut-off, which test never had"),
            "{}",
            w[0]
        );
        assert!(
            w[0].allowed.contains("set approve_after_days to 14"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn a_gap_that_varies_from_month_to_month_lists_the_gaps() {
        let mut p = delay_reference();
        // First Saturday -> third Friday: 13 days, or 20 when the month starts on a Saturday.
        p.environments[1].window.schedule = "cron(0 6 ? * FRI#3 *)".to_string();
        let v = validate(&p, now());
        let w = gap_warnings(&v);
        assert_eq!(w.len(), 1, "{}", Problem::list(&v.problems));
        assert!(
            w[0].allowed.contains("varies") && w[0].allowed.contains("20 days on 2027-05-21"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn the_source_environments_own_delay_adds_to_the_gap() {
        let mut p = delay_reference();
        p.environments[0].approval.approve_after_days = Some(3);
        let v = validate(&p, now());
        let w = gap_warnings(&v);
        assert_eq!(w.len(), 1, "{}", Problem::list(&v.problems));
        assert!(
            w[0].message
                .contains("test itself approves 3 days after release"),
            "{}",
            w[0]
        );
        assert!(
            w[0].allowed.contains("set approve_after_days to 17"),
            "{}",
            w[0]
        );

        p.environments[1].approval.approve_after_days = Some(17);
        assert!(gap_warnings(&validate(&p, now())).is_empty());
    }

    #[test]
    fn ubuntu_cannot_delay_approval() {
        let mut p = reference();
        let u = baseline_index(&p, OperatingSystem::Ubuntu);
        p.baselines[u].rules[0].approve_after_days = Some(7);
        let v = validate(&p, now());
        let e = error_at(&v, &format!("baselines[{u}].rules[0].approve_after_days"));
        assert!(
            e.message.contains("UBUNTU") && e.message.contains("release dates"),
            "{e}"
        );
        assert!(
            e.allowed.contains("approved_patches / rejected_patches")
                && e.allowed.contains("closer"),
            "{e}"
        );
    }

    #[test]
    fn debian_environment_with_a_cut_off_date_warns_that_it_cannot_lag() {
        let mut p = delay_reference();
        let u = baseline_index(&p, OperatingSystem::Ubuntu);
        p.baselines[u].os = OperatingSystem::Debian;
        p.environments[1].approval.approve_after_days = None;
        p.environments[1].approval.approve_until_date = Some("2027-01-31".to_string());
        let v = validate(&p, now());
        let w = at(&v, "environments[1].approval.approve_until_date");
        assert_eq!(w.len(), 1, "{}", Problem::list(&v.problems));
        assert_eq!(w[0].severity, Severity::Warning);
        assert!(
            w[0].message.contains("DEBIAN") && w[0].message.contains("2027-01-31"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn cutoff_must_be_shorter_than_duration() {
        let mut p = reference();
        p.environments[1].window.cutoff_hours = 4;
        let v = validate(&p, now());
        let e = error_at(&v, "environments[1].window.cutoff_hours");
        assert!(
            e.message.contains("cutoff 4 h") && e.message.contains("4 h window"),
            "{e}"
        );
        assert!(e.allowed.contains("0-3 hours"), "{e}");
    }

    #[test]
    fn window_ranges_follow_create_maintenance_window() {
        let mut p = reference();
        p.environments[0].window.duration_hours = 25;
        p.environments[1].window.duration_hours = 0;
        p.environments[1].window.cutoff_hours = 24;
        let v = validate(&p, now());
        assert!(error_at(&v, "environments[0].window.duration_hours")
            .allowed
            .contains("1-24"));
        assert!(error_at(&v, "environments[1].window.duration_hours")
            .message
            .contains("0 hours"));
        assert!(error_at(&v, "environments[1].window.cutoff_hours")
            .allowed
            .contains("0-23"));
    }

    #[test]
    fn offset_days_is_1_to_6_and_cron_only() {
        let mut p = reference();
        p.environments[0].window.offset_days = Some(7);
        p.environments[1].window.schedule = "rate(7 days)".to_string();
        p.environments[1].window.offset_days = Some(2);
        let v = validate(&p, now());
        assert!(error_at(&v, "environments[0].window.offset_days")
            .allowed
            .contains("1-6 days"));
        assert!(error_at(&v, "environments[1].window.offset_days")
            .allowed
            .contains("cron"));
    }

    #[test]
    fn a_rate_schedule_has_no_start_time_for_the_patch_group_name() {
        let mut p = reference();
        p.environments[0].window.schedule = "rate(7 days)".to_string();
        let v = validate(&p, now());
        let e = error_at(&v, "environments[0].window.schedule");
        assert!(e.message.contains("no single fixed start time"), "{e}");
        assert!(e.allowed.contains("HHMM"), "{e}");
        // The gap to an environment without a start time is not guessed.
        assert!(gap_warnings(&v).is_empty());
    }

    #[test]
    fn schedule_and_timezone_errors_quote_the_schedule_module() {
        let mut p = reference();
        p.environments[0].window.schedule = "cron(0 6 * * SAT#1 *)".to_string();
        p.environments[1].window.timezone = "Europe/Zürich".to_string();
        let v = validate(&p, now());
        let e = error_at(&v, "environments[0].window.schedule");
        assert!(
            e.message.contains("cron(0 6 * * SAT#1 *)") && e.message.contains('?'),
            "{e}"
        );
        let e = error_at(&v, "environments[1].window.timezone");
        assert!(e.message.contains("Europe/Zürich"), "{e}");
    }

    #[test]
    fn environment_names_are_short_plain_and_unique() {
        let mut p = reference();
        p.environments[0].name = "Test_EU".to_string();
        p.environments[1].name = "Test_EU".to_string();
        p.environments[1].approval.promote_from = Some("Test_EU".to_string());
        let v = validate(&p, now());
        let e = error_at(&v, "environments[0].name");
        assert!(
            e.message.contains("'T'") && e.message.contains("'_'"),
            "{e}"
        );
        assert!(at(&v, "environments[1].name")
            .iter()
            .any(|p| p.message.contains("defined twice")));

        let mut p = reference();
        p.environments[0].name = "a".repeat(33);
        p.environments[1].approval.promote_from = Some("a".repeat(33));
        assert!(error_at(&validate(&p, now()), "environments[0].name")
            .message
            .contains("33 characters"));
    }

    #[test]
    fn an_environment_must_match_something() {
        let mut p = reference();
        p.environments[0].matcher.tag = None;
        p.environments[0].matcher.name_suffixes.clear();
        p.environments[1].matcher.name_suffixes.push(String::new());
        let v = validate(&p, now());
        assert!(error_at(&v, "environments[0].match")
            .message
            .contains("neither a tag nor a name suffix"));
        assert!(error_at(&v, "environments[1].match.name_suffixes[1]")
            .message
            .contains("empty"));
    }

    #[test]
    fn approval_settings_follow_patch_rule() {
        let mut p = reference();
        p.environments[0].approval.approve_after_days = Some(361);
        p.environments[1].approval.approve_until_date = Some("31.12.2027".to_string());
        let v = validate(&p, now());
        assert!(error_at(&v, "environments[0].approval.approve_after_days")
            .allowed
            .contains("0-360"));
        assert!(error_at(&v, "environments[1].approval")
            .message
            .contains("both"));
        assert!(error_at(&v, "environments[1].approval.approve_until_date")
            .allowed
            .contains("YYYY-MM-DD"));
    }

    #[test]
    fn promote_from_names_another_existing_environment() {
        let mut p = reference();
        p.environments[1].approval.promote_from = Some("staging".to_string());
        let e = validate(&p, now());
        let e = error_at(&e, "environments[1].approval.promote_from");
        assert!(
            e.message.contains("staging") && e.allowed.contains("`test`"),
            "{e}"
        );

        p.environments[1].approval.promote_from = Some("prod".to_string());
        assert!(error_at(
            &validate(&p, now()),
            "environments[1].approval.promote_from"
        )
        .message
        .contains("itself"));

        p.environments[1].approval.promote_from = Some("test".to_string());
        p.environments[0].approval.promote_from = Some("prod".to_string());
        let v = validate(&p, now());
        assert!(error_at(&v, "environments[0].approval.promote_from")
            .message
            .contains("leads back"));
        assert!(error_at(&v, "environments[1].approval.promote_from")
            .message
            .contains("leads back"));
    }

    #[test]
    fn msrc_severity_is_only_for_windows() {
        let mut p = reference();
        let r = baseline_index(&p, OperatingSystem::RedhatEnterpriseLinux);
        p.baselines[r].rules[0]
            .filters
            .insert("MSRC_SEVERITY".to_string(), vec!["Critical".to_string()]);
        let v = validate(&p, now());
        let e = error_at(
            &v,
            &format!("baselines[{r}].rules[0].filters.MSRC_SEVERITY"),
        );
        assert!(e.message.contains("REDHAT_ENTERPRISE_LINUX"), "{e}");
        assert_eq!(
            e.allowed,
            "for REDHAT_ENTERPRISE_LINUX: PRODUCT, CLASSIFICATION, SEVERITY"
        );
    }

    #[test]
    fn priority_and_section_are_only_for_apt_systems_and_severity_not_for_windows() {
        let mut p = reference();
        let w = baseline_index(&p, OperatingSystem::Windows);
        let s = baseline_index(&p, OperatingSystem::Suse);
        p.baselines[w].rules[0].filters.remove("MSRC_SEVERITY");
        p.baselines[w].rules[0]
            .filters
            .insert("SEVERITY".to_string(), vec!["Critical".to_string()]);
        p.baselines[s].rules[0]
            .filters
            .insert("PRIORITY".to_string(), vec!["Required".to_string()]);
        let v = validate(&p, now());
        assert!(
            error_at(&v, &format!("baselines[{w}].rules[0].filters.SEVERITY"))
                .allowed
                .contains("MSRC_SEVERITY")
        );
        assert!(
            error_at(&v, &format!("baselines[{s}].rules[0].filters.PRIORITY"))
                .message
                .contains("SUSE")
        );
    }

    #[test]
    fn filter_values_are_checked_for_the_key_and_os() {
        let mut p = reference();
        let w = baseline_index(&p, OperatingSystem::Windows);
        let s = baseline_index(&p, OperatingSystem::Suse);
        let u = baseline_index(&p, OperatingSystem::Ubuntu);
        p.baselines[w].rules[0].filters.insert(
            "CLASSIFICATION".to_string(),
            vec!["securityupdates".to_string()],
        );
        p.baselines[s].rules[0]
            .filters
            .insert("SEVERITY".to_string(), vec!["Medium".to_string()]);
        p.baselines[u].rules[0]
            .filters
            .insert("PRIORITY".to_string(), vec!["*".to_string()]);
        let v = validate(&p, now());
        let e = error_at(
            &v,
            &format!("baselines[{w}].rules[0].filters.CLASSIFICATION"),
        );
        assert!(e.message.contains("did you mean `SecurityUpdates`"), "{e}");
        let e = error_at(&v, &format!("baselines[{s}].rules[0].filters.SEVERITY"));
        assert_eq!(
            e.allowed,
            "Critical, Important, Moderate, Low, or * for all"
        );
        assert!(
            at(&v, &format!("baselines[{u}].rules[0].filters.PRIORITY")).is_empty(),
            "* is allowed"
        );
    }

    #[test]
    fn rules_and_filters_respect_the_api_limits() {
        let mut p = reference();
        let r = baseline_index(&p, OperatingSystem::RedhatEnterpriseLinux);
        let c = baseline_index(&p, OperatingSystem::Centos);
        let a = baseline_index(&p, OperatingSystem::AmazonLinux2);
        let rule = p.baselines[r].rules[1].clone();
        p.baselines[r].rules = vec![rule; 11];
        p.baselines[c].rules[0].filters.clear();
        let f = &mut p.baselines[a].rules[1].filters;
        f.insert("SEVERITY".to_string(), vec![]);
        f.insert(
            "PRODUCT".to_string(),
            (0..21).map(|n| format!("AmazonLinux2.{n}")).collect(),
        );
        let v = validate(&p, now());
        assert!(error_at(&v, &format!("baselines[{r}].rules"))
            .allowed
            .contains("at most 10"));
        assert!(error_at(&v, &format!("baselines[{c}].rules[0].filters"))
            .allowed
            .contains("PRODUCT, CLASSIFICATION, SEVERITY"));
        assert!(
            error_at(&v, &format!("baselines[{a}].rules[1].filters.SEVERITY"))
                .message
                .contains("no value")
        );
        assert!(
            error_at(&v, &format!("baselines[{a}].rules[1].filters.PRODUCT"))
                .message
                .contains("21 values")
        );

        let mut p = reference();
        let f = &mut p.baselines[r].rules[0].filters;
        f.insert("ARCH".to_string(), vec!["x86_64".to_string()]);
        f.insert("NAME".to_string(), vec!["kernel".to_string()]);
        let v = validate(&p, now());
        assert!(error_at(&v, &format!("baselines[{r}].rules[0].filters"))
            .message
            .contains("5 filters"));
    }

    #[test]
    fn enable_non_security_is_only_for_linux() {
        let mut p = reference();
        let w = baseline_index(&p, OperatingSystem::Windows);
        p.baselines[w].rules[0].enable_non_security = true;
        let v = validate(&p, now());
        assert!(
            error_at(&v, &format!("baselines[{w}].rules[0].enable_non_security"))
                .allowed
                .contains("Linux")
        );
    }

    #[test]
    fn patch_lists_hold_at_most_50_non_empty_entries() {
        let mut p = reference();
        let w = baseline_index(&p, OperatingSystem::Windows);
        p.baselines[w].approved_patches = (0..51).map(|n| format!("KB45{n:05}")).collect();
        p.baselines[w].rejected_patches = vec!["KB4500007".to_string(), " ".to_string()];
        let v = validate(&p, now());
        assert!(error_at(&v, &format!("baselines[{w}].approved_patches"))
            .message
            .contains("51 patches"));
        assert!(error_at(&v, &format!("baselines[{w}].rejected_patches[1]"))
            .message
            .contains("empty"));
        let overlap = v
            .warnings()
            .find(|p| p.message.contains("both approved and rejected"))
            .expect("overlap warning");
        assert!(overlap.message.contains("KB4500007"), "{overlap}");
    }

    #[test]
    fn each_platform_in_one_batch_and_every_baseline_platform_covered() {
        let mut p = reference();
        p.batches[1].platforms = vec![Platform::Linux];
        let v = validate(&p, now());
        let e = error_at(&v, "batches[1].platforms[0]");
        assert!(
            e.message.contains("Linux is already in batch 1 (`linux`)"),
            "{e}"
        );
        let w = v
            .warnings()
            .find(|p| p.path == "batches")
            .expect("uncovered Windows");
        assert!(
            w.message.contains("Windows") && w.message.contains("WINDOWS"),
            "{w}"
        );
    }

    #[test]
    fn batch_names_are_unique_and_plain() {
        let mut p = reference();
        p.batches[1].name = "linux".to_string();
        p.batches[0].name = "Linux Hosts".to_string();
        p.batches.push(Batch {
            platforms: vec![],
            ..p.batches[1].clone()
        });
        let v = validate(&p, now());
        assert!(error_at(&v, "batches[0].name").message.contains("' '"));
        assert!(error_at(&v, "batches[2].name").message.contains("twice"));
        assert!(error_at(&v, "batches[2].platforms")
            .message
            .contains("no platform"));
    }

    #[test]
    fn rate_control_follows_the_ssm_patterns() {
        for ok in ["1", "10", "250", "1%", "50%", "99%", "100%", "1000000"] {
            assert!(is_max_concurrency(ok), "{ok}");
        }
        for bad in [
            "", "0", "0%", "05", "101%", "100.0%", "10000000", "%", "-1", "50 %",
        ] {
            assert!(!is_max_concurrency(bad), "{bad}");
        }
        for ok in ["0", "1", "25", "0%", "5%", "25%", "100%"] {
            assert!(is_max_errors(ok), "{ok}");
        }
        for bad in ["", "00", "01", "05%", "101%", "abc", "10000000"] {
            assert!(!is_max_errors(bad), "{bad}");
        }
        let mut p = reference();
        p.batches[0].max_concurrency = "0".to_string();
        p.batches[1].max_errors = "150%".to_string();
        let v = validate(&p, now());
        assert!(error_at(&v, "batches[0].max_concurrency")
            .message
            .contains("`0`"));
        assert!(error_at(&v, "batches[1].max_errors")
            .message
            .contains("`150%`"));
    }

    #[test]
    fn the_tag_key_must_be_one_patch_manager_reads() {
        let mut p = reference();
        p.tag_key = "PatchGroup".to_string();
        assert!(validate(&p, now()).is_ok());
        p.tag_key = "Patch-Group".to_string();
        assert!(error_at(&validate(&p, now()), "tag_key")
            .allowed
            .contains("`Patch Group`"));
        p.tag_key = "aws:patch".to_string();
        assert!(error_at(&validate(&p, now()), "tag_key")
            .message
            .contains("aws:"));
        p.tag_key = "x".repeat(129);
        assert!(error_at(&validate(&p, now()), "tag_key")
            .message
            .contains("129 characters"));
    }

    #[test]
    fn exclusion_unmatched_and_output_settings_are_checked() {
        let mut p = reference();
        p.exclude_tag = " ".to_string();
        p.unmatched = Unmatched::Environment("staging".to_string());
        p.output.s3_prefix = "/patchpilot//out".to_string();
        p.output.s3_bucket = Some("My_Bucket".to_string());
        let v = validate(&p, now());
        assert!(error_at(&v, "exclude_tag").message.contains("empty"));
        assert!(error_at(&v, "unmatched.environment")
            .allowed
            .contains("`test`, `prod`"));
        assert_eq!(
            at(&v, "output.s3_prefix").len(),
            2,
            "{}",
            Problem::list(&v.problems)
        );
        assert!(error_at(&v, "output.s3_bucket")
            .message
            .contains("My_Bucket"));

        for ok in ["patchpilot-output-123", "a.b.c", "abc"] {
            assert_eq!(bucket_name_problem(ok), None, "{ok}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            "ABC",
        ] {
            assert!(bucket_name_problem(bad).is_some(), "{bad}");
        }
        // Empty bucket = "use OUTPUT_BUCKET".
        let mut p = reference();
        p.output.s3_bucket = Some(String::new());
        assert!(validate(&p, now()).is_ok());
    }

    #[test]
    fn derived_names_are_checked_against_the_ssm_patterns() {
        let mut p = reference();
        p.environments[0].name = "pre prod".to_string();
        p.environments[1].approval.promote_from = Some("pre prod".to_string());
        let v = validate(&p, now());
        let names = at(&v, "environments[0].name");
        assert!(
            names
                .iter()
                .any(|e| e.message.contains("window name `patchpilot-pre prod`")),
            "{}",
            Problem::list(&v.problems)
        );
        assert!(names.iter().any(|e| e
            .message
            .contains("baseline name `patchpilot-pre prod-WINDOWS`")));
        // Spaces are legal in patch groups (\p{Z}), so the group itself is fine.
        assert!(!names.iter().any(|e| e.message.contains("patch group")));
        assert!(
            is_tag_char(' ')
                && is_tag_char('é')
                && is_tag_char('@')
                && !is_tag_char('\t')
                && !is_tag_char('#')
        );
        assert!(
            is_resource_name("patchpilot-prod-UBUNTU")
                && !is_resource_name("pp")
                && !is_resource_name("a b c")
        );
    }

    #[test]
    fn quotas_are_reported_with_the_computed_numbers() {
        let mut p = reference();
        let prod = p.environments[1].clone();
        for n in 0..7 {
            let mut env = prod.clone();
            env.name = format!("prod-{n}");
            env.approval.promote_from = None;
            env.approval.approve_after_days = Some(0);
            p.environments.push(env);
        }
        let windows = p.batches[1].clone();
        for n in 0..19 {
            p.batches.push(Batch {
                name: format!("extra-{n}"),
                platforms: vec![],
                ..windows.clone()
            });
        }
        let v = validate(&p, now());
        let e = error_at(&v, "baselines");
        assert!(
            e.message
                .contains("9 environments × 6 operating systems = 54 patch baselines"),
            "{e}"
        );
        let e = error_at(&v, "batches");
        assert!(
            e.message.contains("21 batches = 21 tasks") && e.message.contains("quota of 20"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut p = reference();
        let w = baseline_index(&p, OperatingSystem::Windows);
        let u = baseline_index(&p, OperatingSystem::Ubuntu);
        p.tag_key = "Group".to_string();
        p.environments[0].window.cutoff_hours = 5;
        p.environments[1].window.timezone = "Mars/Olympus".to_string();
        p.environments[1].approval.promote_from = Some("staging".to_string());
        p.batches[0].max_errors = "many".to_string();
        p.baselines[w].rules[0]
            .filters
            .insert("PRIORITY".to_string(), vec!["Required".to_string()]);
        p.baselines[u].rules[0].approve_after_days = Some(3);
        let v = validate(&p, now());
        let paths: Vec<&str> = v.errors().map(|e| e.path.as_str()).collect();
        for expected in [
            "tag_key".to_string(),
            "environments[0].window.cutoff_hours".to_string(),
            "environments[1].window.timezone".to_string(),
            "environments[1].approval.promote_from".to_string(),
            "batches[0].max_errors".to_string(),
            format!("baselines[{w}].rules[0].filters.PRIORITY"),
            format!("baselines[{u}].rules[0].approve_after_days"),
        ] {
            assert!(
                paths.contains(&expected.as_str()),
                "missing {expected} in:\n{}",
                Problem::list(&v.problems)
            );
        }
        assert_eq!(v.errors().count(), 7, "{}", Problem::list(&v.problems));
        // And the loader refuses the policy, listing them all.
        let text = serde_norway::to_string(&p).expect("policy serialises");
        let err = Policy::load(&text, now()).expect_err("invalid policy");
        assert!(
            err.to_string().starts_with("policy has 7 problem(s)"),
            "{err}"
        );
    }

    #[test]
    fn filter_tables_cover_every_operating_system() {
        for os in OperatingSystem::ALL {
            let keys = filter_keys(os);
            assert!(keys.contains(&"PRODUCT"), "{os}");
            for key in keys {
                if let Some(values) = filter_values(os, key) {
                    assert!(!values.is_empty() && !values.contains(&"*"), "{os} {key}");
                }
            }
        }
    }
}
