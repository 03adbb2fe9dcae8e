//! The policy: one declarative description of the whole patching setup.
//!
//! Everything patchpilot creates in AWS (baselines, patch-group registrations, maintenance
//! windows, targets, tasks, instance tags) is derived from this one document. The types here
//! mirror the YAML one to one; [`crate::policy::validate`] checks them against SSM's rules and
//! quotas before anything is touched.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The whole desired state. `deny_unknown_fields` everywhere: a typo in a key is an error
/// that names the key, never a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The instance tag SSM reads the patch group from. `Patch Group` in the article;
    /// `PatchGroup` when instance-metadata tags are enabled (they forbid spaces).
    #[serde(default = "default_tag_key")]
    pub tag_key: String,
    /// Instances carrying this tag (any value) are never tagged or patched by patchpilot.
    #[serde(default = "default_exclude_tag")]
    pub exclude_tag: String,
    /// What to do with an instance that matches no environment.
    #[serde(default)]
    pub unmatched: Unmatched,
    /// `false` (default): a Patch Group tag set by a person is respected and reported.
    /// `true`: patchpilot overwrites it with the derived value.
    #[serde(default)]
    pub overwrite: bool,
    /// `AWS-RunPatchBaseline` Operation for every task.
    #[serde(default)]
    pub operation: Operation,
    #[serde(default)]
    pub output: Output,
    #[serde(default)]
    pub notifications: Notifications,
    pub environments: Vec<Environment>,
    /// Ordered: the first batch is `batch_1` and runs first (task priority 1).
    pub batches: Vec<Batch>,
    /// One entry per operating system; each becomes one baseline per environment.
    pub baselines: Vec<BaselineRules>,
}

pub fn default_tag_key() -> String {
    "Patch Group".to_string()
}

pub fn default_exclude_tag() -> String {
    "patchpilot:exclude".to_string()
}

/// Instances that match no environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Unmatched {
    /// Leave the instance untagged and report it (default).
    #[default]
    Skip,
    /// Treat it as a member of this environment (name it; `test` is the safe choice).
    Environment(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Operation {
    /// Install missing approved patches (the article's choice).
    #[default]
    Install,
    /// Only report what is missing.
    Scan,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Install => "Install",
            Operation::Scan => "Scan",
        }
    }
}

/// Where Run Command writes its full output. Without S3 the console truncates the output
/// after 2,500 characters (the article recommends S3 for that reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Bucket name; empty = the `OUTPUT_BUCKET` environment variable (set by template.yaml).
    #[serde(default)]
    pub s3_bucket: Option<String>,
    #[serde(default = "default_s3_prefix")]
    pub s3_prefix: String,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            s3_bucket: None,
            s3_prefix: default_s3_prefix(),
        }
    }
}

fn default_s3_prefix() -> String {
    "patchpilot/run-command".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// Which runs produce a report.
    #[serde(default)]
    pub notify_on: NotifyOn,
    /// Prefix of every email subject.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            notify_on: NotifyOn::default(),
            subject_prefix: default_subject_prefix(),
        }
    }
}

fn default_subject_prefix() -> String {
    "[patchpilot]".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyOn {
    /// Every run (default): silence should mean "nothing ran", never "all fine".
    #[default]
    Always,
    /// Only runs with a failed, timed-out or missed instance.
    Failure,
}

/// An environment (test, prod, …): which instances belong to it, when they are patched and
/// how far patch approval lags behind release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Lowercase letters, digits and `-`; it becomes part of every derived name.
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: EnvironmentMatch,
    pub window: WindowSpec,
    #[serde(default)]
    pub approval: Approval,
}

/// How an instance is recognised as belonging to an environment. The tag is checked first,
/// then the `Name` suffix; the first environment (in policy order) that matches wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentMatch {
    /// e.g. `{ key: Environment, values: [prod, production] }` (values compared
    /// case-insensitively).
    #[serde(default)]
    pub tag: Option<TagMatch>,
    /// e.g. `[-prod]`: an instance whose `Name` tag ends with one of these (case-insensitive).
    #[serde(default)]
    pub name_suffixes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagMatch {
    pub key: String,
    pub values: Vec<String>,
}

/// The maintenance window of an environment (SSM CreateMaintenanceWindow fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// `cron(...)` or `rate(...)`, as SSM accepts it, e.g. `cron(0 6 ? * SAT#1 *)`.
    pub schedule: String,
    /// IANA timezone the schedule is evaluated in (ScheduleTimezone), e.g. `Europe/Zurich`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Days to wait after the cron date (ScheduleOffset, 1–6), e.g. Patch Tuesday + 4.
    #[serde(default)]
    pub offset_days: Option<u32>,
    /// Window length in hours (Duration, 1–24).
    pub duration_hours: u32,
    /// Hours before the end when no new task starts (Cutoff, 0–23, less than Duration).
    pub cutoff_hours: u32,
}

fn default_timezone() -> String {
    "Etc/UTC".to_string()
}

/// How long after release a patch is approved in this environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// ApproveAfterDays for every rule of this environment's baselines (0–360). Not applied
    /// to Ubuntu/Debian baselines: SSM cannot delay approval there (no release dates).
    #[serde(default)]
    pub approve_after_days: Option<u32>,
    /// ApproveUntilDate (`YYYY-MM-DD`) instead of a delay: a frozen cut-off.
    #[serde(default)]
    pub approve_until_date: Option<String>,
    /// The environment this one follows (e.g. prod promotes from test); `from:` in the
    /// policy file. With `mode: delay` validation checks that the delay equals the gap
    /// between that environment's run and this one's; with `mode: promote` this environment
    /// installs exactly what the other one installed (`crate::promotion`).
    #[serde(default, alias = "from")]
    pub promote_from: Option<String>,
    /// `delay` (default: approve by release date, `approve_after_days`) or `promote`
    /// (install the promotion manifest of `from`'s last good run, behind the gate).
    #[serde(default)]
    pub mode: ApprovalMode,
    /// `mode: promote` only: when a run of `from` is good enough to promote.
    #[serde(default)]
    pub gate: Option<Gate>,
}

impl Approval {
    /// The environment this one promotes from with `mode: promote`.
    pub fn promotes_from(&self) -> Option<&str> {
        match self.mode {
            ApprovalMode::Promote => self.promote_from.as_deref(),
            ApprovalMode::Delay => None,
        }
    }

    /// The gate of a promoted environment (the default gate when none is written).
    pub fn gate(&self) -> Gate {
        self.gate.clone().unwrap_or_default()
    }
}

/// How an environment's baselines decide what to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Approve by release date: `approve_after_days` after release, or until a fixed date.
    #[default]
    Delay,
    /// Install exactly what the source environment's last good run installed.
    Promote,
}

/// When a source run may be promoted: at most `max_failed` of the hosts it reached failed,
/// and no patch failed on any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// A percentage of the hosts the source run reached (`0%` .. `100%`), e.g. `10%`.
    #[serde(default = "default_max_failed")]
    pub max_failed: String,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            max_failed: default_max_failed(),
        }
    }
}

fn default_max_failed() -> String {
    "0%".to_string()
}

impl Gate {
    /// `max_failed` as a whole percentage, `None` when it is not `N%` with N in 0..=100.
    pub fn max_failed_percent(&self) -> Option<u32> {
        let n: u32 = self
            .max_failed
            .trim()
            .strip_suffix('%')?
            .trim()
            .parse()
            .ok()?;
        (n <= 100).then_some(n)
    }
}

/// An ordered group of instances patched together, one maintenance-window target and task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Human name (`linux`, `windows`), used in task names and reports.
    pub name: String,
    /// Instances of these platforms land in this batch.
    pub platforms: Vec<Platform>,
    /// MaxConcurrency: a number (`10`) or a percentage (`50%`).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: String,
    /// MaxErrors: a number (`1`) or a percentage (`25%`).
    #[serde(default = "default_max_errors")]
    pub max_errors: String,
    /// `AWS-RunPatchBaseline` RebootOption.
    #[serde(default)]
    pub reboot: RebootOption,
}

fn default_max_concurrency() -> String {
    "50%".to_string()
}

fn default_max_errors() -> String {
    "25%".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Platform {
    Linux,
    Windows,
    MacOS,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Platform::Linux => "Linux",
            Platform::Windows => "Windows",
            Platform::MacOS => "MacOS",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RebootOption {
    #[default]
    RebootIfNeeded,
    NoReboot,
}

impl RebootOption {
    pub fn as_str(self) -> &'static str {
        match self {
            RebootOption::RebootIfNeeded => "RebootIfNeeded",
            RebootOption::NoReboot => "NoReboot",
        }
    }
}

/// SSM's OperatingSystem values (CreatePatchBaseline `OperatingSystem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperatingSystem {
    Windows,
    AmazonLinux,
    #[serde(rename = "AMAZON_LINUX_2")]
    AmazonLinux2,
    #[serde(rename = "AMAZON_LINUX_2022")]
    AmazonLinux2022,
    #[serde(rename = "AMAZON_LINUX_2023")]
    AmazonLinux2023,
    Ubuntu,
    RedhatEnterpriseLinux,
    Suse,
    Centos,
    OracleLinux,
    Debian,
    #[serde(rename = "MACOS")]
    MacOs,
    Raspbian,
    RockyLinux,
    AlmaLinux,
}

impl OperatingSystem {
    pub const ALL: [OperatingSystem; 15] = [
        OperatingSystem::Windows,
        OperatingSystem::AmazonLinux,
        OperatingSystem::AmazonLinux2,
        OperatingSystem::AmazonLinux2022,
        OperatingSystem::AmazonLinux2023,
        OperatingSystem::Ubuntu,
        OperatingSystem::RedhatEnterpriseLinux,
        OperatingSystem::Suse,
        OperatingSystem::Centos,
        OperatingSystem::OracleLinux,
        OperatingSystem::Debian,
        OperatingSystem::MacOs,
        OperatingSystem::Raspbian,
        OperatingSystem::RockyLinux,
        OperatingSystem::AlmaLinux,
    ];

    /// The SSM API spelling, e.g. `REDHAT_ENTERPRISE_LINUX`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatingSystem::Windows => "WINDOWS",
            OperatingSystem::AmazonLinux => "AMAZON_LINUX",
            OperatingSystem::AmazonLinux2 => "AMAZON_LINUX_2",
            OperatingSystem::AmazonLinux2022 => "AMAZON_LINUX_2022",
            OperatingSystem::AmazonLinux2023 => "AMAZON_LINUX_2023",
            OperatingSystem::Ubuntu => "UBUNTU",
            OperatingSystem::RedhatEnterpriseLinux => "REDHAT_ENTERPRISE_LINUX",
            OperatingSystem::Suse => "SUSE",
            OperatingSystem::Centos => "CENTOS",
            OperatingSystem::OracleLinux => "ORACLE_LINUX",
            OperatingSystem::Debian => "DEBIAN",
            OperatingSystem::MacOs => "MACOS",
            OperatingSystem::Raspbian => "RASPBIAN",
            OperatingSystem::RockyLinux => "ROCKY_LINUX",
            OperatingSystem::AlmaLinux => "ALMA_LINUX",
        }
    }

    pub fn parse(s: &str) -> Option<OperatingSystem> {
        OperatingSystem::ALL.into_iter().find(|os| os.as_str() == s)
    }

    pub fn platform(self) -> Platform {
        match self {
            OperatingSystem::Windows => Platform::Windows,
            OperatingSystem::MacOs => Platform::MacOS,
            _ => Platform::Linux,
        }
    }

    /// SSM rejects ApproveAfterDays / ApproveUntilDate for these: their repositories
    /// publish no release dates, so approval cannot be delayed.
    pub fn supports_approval_delay(self) -> bool {
        !matches!(self, OperatingSystem::Ubuntu | OperatingSystem::Debian)
    }
}

impl fmt::Display for OperatingSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The patch rules for one operating system; every environment gets its own baseline from
/// them, differing only in the approval delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineRules {
    pub os: OperatingSystem,
    #[serde(default)]
    pub description: Option<String>,
    pub rules: Vec<ApprovalRule>,
    /// Patches approved regardless of the rules (ApprovedPatches).
    #[serde(default)]
    pub approved_patches: Vec<String>,
    #[serde(default)]
    pub approved_patches_compliance_level: ComplianceLevel,
    /// Patches never installed (RejectedPatches).
    #[serde(default)]
    pub rejected_patches: Vec<String>,
    #[serde(default)]
    pub rejected_patches_action: RejectedPatchesAction,
}

/// One approval rule (PatchRule): which patches, how severe a missing one is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// PatchFilter key → values, e.g. `CLASSIFICATION: [Security, Bugfix]`. Keys and values
    /// depend on the operating system (validated).
    pub filters: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub compliance_level: ComplianceLevel,
    /// EnableNonSecurity (Linux only): also install non-security updates.
    #[serde(default)]
    pub enable_non_security: bool,
    /// Overrides the environment's delay for this rule (rarely needed).
    #[serde(default)]
    pub approve_after_days: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ComplianceLevel {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    #[default]
    Unspecified,
}

impl ComplianceLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceLevel::Critical => "CRITICAL",
            ComplianceLevel::High => "HIGH",
            ComplianceLevel::Medium => "MEDIUM",
            ComplianceLevel::Low => "LOW",
            ComplianceLevel::Informational => "INFORMATIONAL",
            ComplianceLevel::Unspecified => "UNSPECIFIED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectedPatchesAction {
    /// A rejected patch may still be installed as a dependency of another (SSM default).
    #[default]
    AllowAsDependency,
    /// A rejected patch is never installed.
    Block,
}

impl RejectedPatchesAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectedPatchesAction::AllowAsDependency => "ALLOW_AS_DEPENDENCY",
            RejectedPatchesAction::Block => "BLOCK",
        }
    }
}
