//! Classification: from what EC2 / SSM report about an instance, decide its operating system,
//! environment, batch and patch group — or say precisely why there is none.
//!
//! Pure and synchronous: the adapters gather [`InstanceFacts`] (EC2 `DescribeInstances`, or
//! SSM `DescribeInstanceInformation` for on-prem `mi-*` nodes), [`classify`] decides, and
//! [`tag_action`] says what to do about the patch-group tag (at most one write: add it, or —
//! for an excluded instance carrying patchpilot's own tag — remove it).
//!
//! # Operating-system detection
//!
//! Tried in this order; the first rule that names an OS wins.
//!
//! **EC2 instances** (`DescribeInstances` gives `Platform`, `PlatformDetails` and tags; it does
//! not give the AMI name, so the EC2 adapter calls `DescribeImages` — once per distinct AMI,
//! cached while the Lambda container is warm — for instances whose `Platform` /
//! `PlatformDetails` do not name the distribution):
//!
//! | evidence | value | OS |
//! |---|---|---|
//! | `Platform` | `windows` (the only value; empty otherwise) | WINDOWS |
//! | `PlatformDetails` | `Windows`, `Windows BYOL`, `Windows with SQL Server …` | WINDOWS |
//! | `PlatformDetails` | `Red Hat Enterprise Linux`, `… with HA`, `… with SQL Server …`, `Red Hat BYOL Linux`, `RHEL …` | REDHAT_ENTERPRISE_LINUX |
//! | `PlatformDetails` | `SUSE Linux` | SUSE |
//! | `PlatformDetails` | `Ubuntu Pro`, `Ubuntu Pro Linux` | UBUNTU |
//! | `PlatformDetails` | `Linux/UNIX`, `SQL Server Standard/Enterprise/Web` (SQL Server on Amazon Linux or Ubuntu) | not decisive: image name |
//! | image name | `amzn2-…` (`amzn2-ami-hvm-2.0…`, `amzn2-x86_64-SQL_2019…`) | AMAZON_LINUX_2 |
//! | image name | `al2023-ami-…` / `al2022-ami-…` | AMAZON_LINUX_2023 / AMAZON_LINUX_2022 |
//! | image name | `amzn-ami-…` | AMAZON_LINUX |
//! | image name | `amzn-ec2-macos-…` | MACOS |
//! | image name | `ubuntu/images/…`, `ubuntu-pro-server/…`, anything with `ubuntu` | UBUNTU |
//! | image name | `debian-…` | DEBIAN |
//! | image name | `RHEL-…` | REDHAT_ENTERPRISE_LINUX |
//! | image name | `suse-sles-…`, `sles` | SUSE |
//! | image name | `CentOS …`, `CentOS-Stream-…`, `centos` | CENTOS |
//! | image name | `Rocky-…` / `AlmaLinux …` / `OL8.8-…`, `oracle-linux` | ROCKY_LINUX / ALMA_LINUX / ORACLE_LINUX |
//! | image name | `Windows_Server-…` | WINDOWS |
//! | tag `OS` / `os` | SSM spelling (`AMAZON_LINUX_2023`) or a name (`Amazon Linux 2`, `rhel`) | hint, last resort |
//!
//! Sources: `Platform` — EC2 API reference, `Instance.Platform` ("`windows` for Windows
//! instances; otherwise blank"); `PlatformDetails` — EC2 User Guide, "AMI billing information
//! fields" (table "usage operation by platform": `Linux/UNIX` RunInstances, `Red Hat BYOL
//! Linux` :00g0, `Red Hat Enterprise Linux` :0010, `… with HA` :1010, `… with SQL Server …`,
//! `SQL Server Enterprise|Standard|Web` :0100/:0004/:0200 (Linux with SQL Server), `SUSE
//! Linux` :000g, `Ubuntu Pro` :0g00, `Windows` :0002, `Windows BYOL` :0800, `Windows with SQL
//! Server …` :0102/:0006/:0202). `Linux/UNIX` is what Amazon Linux, Ubuntu (non-Pro), CentOS,
//! Debian, Rocky, Alma and Oracle Linux all report, hence the image name. Image-name prefixes
//! are those of the public AMIs of each publisher (Amazon, Canonical, Red Hat, SUSE, the CentOS
//! project, Debian, Rocky, AlmaLinux, Oracle).
//!
//! **SSM managed nodes** (`mi-*`, `DescribeInstanceInformation`: `PlatformType` is
//! `Windows | Linux | MacOS`, `PlatformName` the OS name the agent reports):
//!
//! | PlatformName (prefix) | PlatformVersion | OS |
//! |---|---|---|
//! | `Amazon Linux AMI` | any (`2018.03`) | AMAZON_LINUX |
//! | `Amazon Linux` | `2023…` / `2022…` / `2` (`2.x`) / `20xx.yy` before 2022 | AMAZON_LINUX_2023 / _2022 / _2 / AMAZON_LINUX |
//! | `Ubuntu` | | UBUNTU |
//! | `Red Hat Enterprise Linux` (`… Server` on RHEL 7) | | REDHAT_ENTERPRISE_LINUX |
//! | `CentOS Linux`, `CentOS Stream` | | CENTOS |
//! | `SLES`, `SUSE Linux Enterprise Server` | | SUSE |
//! | `Oracle Linux Server` / `Debian GNU/Linux` / `Raspbian GNU/Linux` / `Rocky Linux` / `AlmaLinux` | | ORACLE_LINUX / DEBIAN / RASPBIAN / ROCKY_LINUX / ALMA_LINUX |
//! | `Microsoft Windows Server …` (or PlatformType `Windows`) | | WINDOWS |
//! | `macOS`, `Mac OS X` (or PlatformType `MacOS`) | | MACOS |
//!
//! Source: SSM API reference, `InstanceInformation` (`PlatformType` valid values, `PlatformName`,
//! `PlatformVersion`); the names are the `NAME` of `/etc/os-release` (Linux) or the product name
//! (Windows) as the SSM agent reports them, which is why Amazon Linux 2 and 2023 differ only by
//! version. The same `OS` tag hint applies last.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::names::{PatchGroup, OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE};
use crate::policy::{Environment, OperatingSystem, Policy, Unmatched};
use crate::schedule::Schedule;

/// What patchpilot knows about an instance, gathered by the adapters from EC2
/// `DescribeInstances` (Platform, PlatformDetails, tags) plus `DescribeImages` for the AMI
/// name when those do not name the distribution, or SSM `DescribeInstanceInformation` (and
/// `ListTagsForResource` for the tags) for `mi-*` nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    pub instance_id: String,
    pub source: FactsSource,
    /// `Name` tag (EC2), or the computer name / `Name` tag of a managed node.
    pub name: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// EC2 state name: `pending`, `running`, `stopping`, `stopped`, `shutting-down`,
    /// `terminated`. `None` for managed nodes.
    pub state: Option<String>,
}

/// Where the OS facts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactsSource {
    /// EC2 `DescribeInstances`.
    Ec2 {
        /// `Platform`: `windows` or absent.
        platform: Option<String>,
        /// `PlatformDetails`, e.g. `Linux/UNIX`, `Red Hat Enterprise Linux`, `Windows`.
        platform_details: Option<String>,
        /// AMI name, e.g. `amzn2-ami-hvm-2.0.20240131.0-x86_64-gp2`.
        image_name: Option<String>,
    },
    /// SSM `DescribeInstanceInformation` (hybrid activations, `mi-*`).
    ManagedInstance {
        /// `PlatformType`: `Windows`, `Linux` or `MacOS`.
        platform_type: Option<String>,
        /// `PlatformName`, e.g. `Red Hat Enterprise Linux Server`, `Amazon Linux`.
        platform_name: Option<String>,
        /// `PlatformVersion`, e.g. `2` (Amazon Linux 2), `2023`, `8.6`.
        platform_version: Option<String>,
    },
}

impl InstanceFacts {
    /// The value of a tag (key compared exactly, as EC2 does).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The instance's name: the adapter's `name`, else its `Name` tag.
    pub fn display_name(&self) -> Option<&str> {
        self.name.as_deref().or_else(|| self.tag("Name"))
    }
}

/// What patchpilot decided about an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The instance belongs to this patch group.
    Group {
        os: OperatingSystem,
        environment: String,
        /// 1-based batch number (= task priority).
        batch: u32,
        batch_name: String,
        group: PatchGroup,
    },
    /// The exclusion tag is present: never tagged nor patched by patchpilot.
    Excluded { reason: String },
    /// No group can be derived; the reason says what was checked.
    Unmatched { reason: String },
    /// Terminated or shutting down: nothing to do.
    Gone,
}

impl Decision {
    /// The patch group, if one was decided.
    pub fn group(&self) -> Option<&PatchGroup> {
        match self {
            Decision::Group { group, .. } => Some(group),
            _ => None,
        }
    }
}

/// The operating system could not be recognised; `checked` lists every piece of evidence
/// looked at, so the operator knows what to fix (usually: add an `OS` tag).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("operating system not recognised ({checked}); add an `OS` tag with the SSM name, e.g. OS=AMAZON_LINUX_2023")]
pub struct UnknownOs {
    pub checked: String,
}

/// What to do about the instance's patch-group tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagAction {
    /// Write `policy.tag_key = value` and the ownership marker
    /// (`patchpilot:managed = true`) in the same `CreateTags` call.
    Tag { value: String },
    /// The tag already has the right value: no write.
    Unchanged,
    /// A person set a different value and `overwrite` is off: keep it, report it.
    RespectManual { current: String, wanted: String },
    /// Excluded, and the patch-group tag (`current`) is patchpilot's own (the ownership
    /// marker is present): remove `policy.tag_key` and the marker in one call, so the
    /// maintenance-window target (`tag:<tag_key> = <group>`) stops selecting the instance.
    Untag { current: String, reason: String },
    /// Excluded (with no patch-group tag of patchpilot's to remove) or unmatched: leave the
    /// instance alone. An excluded instance whose tag a person set says so in `reason`.
    Skip { reason: String },
    /// Terminated / shutting down.
    Gone,
}

impl fmt::Display for TagAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagAction::Tag { value } => write!(f, "tag {value}"),
            TagAction::Unchanged => f.write_str("unchanged"),
            TagAction::RespectManual { current, wanted } => {
                write!(
                    f,
                    "keep manual tag {current} (patchpilot would set {wanted})"
                )
            }
            TagAction::Untag { current, reason } => {
                write!(f, "remove patchpilot's tag {current}: {reason}")
            }
            TagAction::Skip { reason } => write!(f, "skip: {reason}"),
            TagAction::Gone => f.write_str("gone"),
        }
    }
}

/// Classify one instance against the policy.
///
/// Order: gone → excluded → environment → OS → batch → window time. The first failure is the
/// decision, with a reason naming what was checked.
pub fn classify(policy: &Policy, facts: &InstanceFacts) -> Decision {
    // EC2 keeps reporting terminated instances for about an hour; `shutting-down` is on the
    // way there. Tagging them would be a wasted (and failing) CreateTags call.
    if matches!(facts.state.as_deref(), Some("terminated" | "shutting-down")) {
        return Decision::Gone;
    }
    if let Some(value) = facts.tag(&policy.exclude_tag) {
        return Decision::Excluded {
            reason: format!("tag `{}` is present (value `{value}`)", policy.exclude_tag),
        };
    }
    let environment = match environment_for(policy, facts) {
        Ok(env) => env,
        Err(reason) => return Decision::Unmatched { reason },
    };
    let os = match detect_os(facts) {
        Ok(os) => os,
        Err(e) => {
            return Decision::Unmatched {
                reason: e.to_string(),
            }
        }
    };
    let Some((batch, batch_def)) = policy.batch_for(os.platform()) else {
        let batches: Vec<String> = policy
            .batches
            .iter()
            .map(|b| {
                let platforms: Vec<String> = b.platforms.iter().map(ToString::to_string).collect();
                format!("{} [{}]", b.name, platforms.join(", "))
            })
            .collect();
        return Decision::Unmatched {
            reason: format!(
                "no batch for platform {} ({os}); the policy's batches are: {}",
                os.platform(),
                if batches.is_empty() {
                    "none".to_string()
                } else {
                    batches.join("; ")
                }
            ),
        };
    };
    let time = match window_time(environment) {
        Ok(t) => t,
        Err(reason) => return Decision::Unmatched { reason },
    };
    Decision::Group {
        os,
        environment: environment.name.clone(),
        batch,
        batch_name: batch_def.name.clone(),
        group: PatchGroup::new(&environment.name, time, batch),
    }
}

/// The `HHMM` of the patch group: the window's fixed start time. A schedule without one
/// (`rate(..)`, several hours) cannot be named `patch_<env>_<HHMM>_batch_<n>`.
fn window_time(environment: &Environment) -> Result<(u32, u32), String> {
    let schedule = &environment.window.schedule;
    let parsed = Schedule::parse(schedule).map_err(|e| {
        format!(
            "environment `{}`: window schedule `{schedule}` is invalid: {e}",
            environment.name
        )
    })?;
    parsed.fixed_time().ok_or_else(|| {
        format!(
            "environment `{}`: window schedule `{schedule}` has no fixed start time (HH:MM) to name the patch group after; use a cron(M H ...) with one minute and one hour",
            environment.name
        )
    })
}

/// The environment the instance belongs to: first by tag (any environment, policy order),
/// then by `Name` suffix, then the policy's `unmatched` rule.
fn environment_for<'p>(
    policy: &'p Policy,
    facts: &InstanceFacts,
) -> Result<&'p Environment, String> {
    // Two passes: an explicit environment tag is a statement about the instance; a name
    // suffix is a convention. `web-prod` tagged `Environment=test` is in test.
    let by_tag = policy.environments.iter().find(|env| {
        env.matcher.tag.as_ref().is_some_and(|m| {
            facts.tag(&m.key).is_some_and(|v| {
                m.values
                    .iter()
                    .any(|want| want.eq_ignore_ascii_case(v.trim()))
            })
        })
    });
    if let Some(env) = by_tag {
        return Ok(env);
    }
    let name = facts.display_name();
    let by_name = name.and_then(|name| {
        let name = name.to_lowercase();
        policy.environments.iter().find(|env| {
            env.matcher
                .name_suffixes
                .iter()
                .any(|s| !s.is_empty() && name.ends_with(&s.to_lowercase()))
        })
    });
    if let Some(env) = by_name {
        return Ok(env);
    }
    match &policy.unmatched {
        Unmatched::Environment(adopt) => policy.environment(adopt).ok_or_else(|| {
            format!("no environment matched and `unmatched: {{environment: {adopt}}}` names no environment of the policy")
        }),
        Unmatched::Skip => Err(no_environment_reason(policy, facts)),
    }
}

fn no_environment_reason(policy: &Policy, facts: &InstanceFacts) -> String {
    let name = match facts.display_name() {
        Some(n) => format!("`{n}`"),
        None => "absent".to_string(),
    };
    let checked: Vec<String> = policy
        .environments
        .iter()
        .map(|env| {
            let mut parts = Vec::new();
            if let Some(m) = &env.matcher.tag {
                let current = match facts.tag(&m.key) {
                    Some(v) => format!("`{v}`"),
                    None => "absent".to_string(),
                };
                parts.push(format!(
                    "tag {} in [{}], is {current}",
                    m.key,
                    m.values.join(", ")
                ));
            }
            if !env.matcher.name_suffixes.is_empty() {
                parts.push(format!(
                    "Name ends with [{}]",
                    env.matcher.name_suffixes.join(", ")
                ));
            }
            if parts.is_empty() {
                parts.push("no match rule".to_string());
            }
            format!("{}: {}", env.name, parts.join(" or "))
        })
        .collect();
    format!(
        "no environment matched (Name is {name}; checked {}) and the policy says `unmatched: skip`",
        checked.join("; ")
    )
}

/// Recognise the operating system from the facts (see the module docs for the table).
pub fn detect_os(facts: &InstanceFacts) -> Result<OperatingSystem, UnknownOs> {
    let mut checked = Vec::new();
    let detected = match &facts.source {
        FactsSource::Ec2 {
            platform,
            platform_details,
            image_name,
        } => ec2_os(
            platform.as_deref(),
            platform_details.as_deref(),
            image_name.as_deref(),
            &mut checked,
        ),
        FactsSource::ManagedInstance {
            platform_type,
            platform_name,
            platform_version,
        } => managed_os(
            platform_type.as_deref(),
            platform_name.as_deref(),
            platform_version.as_deref(),
            &mut checked,
        ),
    };
    if let Some(os) = detected {
        return Ok(os);
    }
    // Last: the operator's hint. Only consulted when AWS's own facts are silent, so a wrong
    // tag cannot override what the billing code or the agent says.
    for key in OS_HINT_TAGS {
        if let Some(value) = facts.tag(key) {
            if let Some(os) = os_from_hint(value) {
                return Ok(os);
            }
            checked.push(format!("tag {key} `{value}` (not an OS name)"));
        }
    }
    if !OS_HINT_TAGS.iter().any(|k| facts.tag(k).is_some()) {
        checked.push("no OS tag".to_string());
    }
    Err(UnknownOs {
        checked: checked.join(", "),
    })
}

/// Tags an operator may set to tell patchpilot the OS when AWS does not.
const OS_HINT_TAGS: [&str; 2] = ["OS", "os"];

/// How a table pattern is compared with the (lowercased) text.
#[derive(Clone, Copy)]
enum Pattern {
    Prefix(&'static str),
    Contains(&'static str),
}

impl Pattern {
    fn matches(self, lowercase: &str) -> bool {
        match self {
            Pattern::Prefix(p) => lowercase.starts_with(p),
            Pattern::Contains(p) => lowercase.contains(p),
        }
    }
}

fn lookup(table: &[(Pattern, OperatingSystem)], text: &str) -> Option<OperatingSystem> {
    let lower = text.trim().to_lowercase();
    table
        .iter()
        .find(|(p, _)| p.matches(&lower))
        .map(|(_, os)| *os)
}

/// EC2 `PlatformDetails` → OS, for the values that name one distribution. Source: EC2 User
/// Guide, "AMI billing information fields". `Linux/UNIX` and `SQL Server …` (Linux with SQL
/// Server) are deliberately absent: they do not say which distribution.
const PLATFORM_DETAILS: &[(Pattern, OperatingSystem)] = &[
    // `Windows`, `Windows BYOL`, `Windows with SQL Server Enterprise|Standard|Web`.
    (Pattern::Prefix("windows"), OperatingSystem::Windows),
    // `Red Hat Enterprise Linux`, `… with HA`, `… with SQL Server …`, `Red Hat BYOL Linux`.
    (
        Pattern::Prefix("red hat"),
        OperatingSystem::RedhatEnterpriseLinux,
    ),
    // Capacity-reservation spellings (`RHEL with HA`, `RHEL with SQL Server Standard`).
    (
        Pattern::Prefix("rhel"),
        OperatingSystem::RedhatEnterpriseLinux,
    ),
    (Pattern::Prefix("suse"), OperatingSystem::Suse),
    // `Ubuntu Pro` (billing fields) / `Ubuntu Pro Linux` (capacity reservations).
    (Pattern::Prefix("ubuntu pro"), OperatingSystem::Ubuntu),
];

/// AMI name → OS. Specific publisher prefixes first, then looser "contains" rules.
const IMAGE_NAMES: &[(Pattern, OperatingSystem)] = &[
    // Amazon: amzn2-ami-hvm-2.0.…, amzn2-ami-kernel-5.10-hvm-…, amzn2-x86_64-SQL_2019_…
    (Pattern::Prefix("amzn2-"), OperatingSystem::AmazonLinux2),
    (Pattern::Prefix("al2023-"), OperatingSystem::AmazonLinux2023),
    (Pattern::Prefix("al2022-"), OperatingSystem::AmazonLinux2022),
    (Pattern::Prefix("amzn-ami-"), OperatingSystem::AmazonLinux),
    (Pattern::Prefix("amzn-ec2-macos-"), OperatingSystem::MacOs),
    // Microsoft via Amazon: Windows_Server-2019-English-Full-Base-…
    (Pattern::Prefix("windows_server-"), OperatingSystem::Windows),
    // Canonical: ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-…, ubuntu-pro-server/images/…
    (Pattern::Prefix("ubuntu/images/"), OperatingSystem::Ubuntu),
    (Pattern::Prefix("ubuntu-"), OperatingSystem::Ubuntu),
    // Debian: debian-12-amd64-20231013-1532
    (Pattern::Prefix("debian-"), OperatingSystem::Debian),
    // Red Hat: RHEL-9.2.0_HVM-20230503-x86_64-41-Hourly2-GP2
    (
        Pattern::Prefix("rhel-"),
        OperatingSystem::RedhatEnterpriseLinux,
    ),
    // SUSE: suse-sles-15-sp5-v20231214-hvm-ssd-x86_64
    (Pattern::Prefix("suse-sles-"), OperatingSystem::Suse),
    // CentOS project: "CentOS Linux 7 x86_64 HVM EBS …", CentOS-Stream-ec2-9-…
    (Pattern::Prefix("centos"), OperatingSystem::Centos),
    // Rocky-9-EC2-Base-9.3-20231113.0.x86_64, "AlmaLinux OS 9.3.20231124 x86_64",
    // OL8.8-x86_64-HVM-2023-06-21 (Oracle)
    (Pattern::Prefix("rocky-"), OperatingSystem::RockyLinux),
    (Pattern::Prefix("almalinux"), OperatingSystem::AlmaLinux),
    (Pattern::Prefix("ol7"), OperatingSystem::OracleLinux),
    (Pattern::Prefix("ol8"), OperatingSystem::OracleLinux),
    (Pattern::Prefix("ol9"), OperatingSystem::OracleLinux),
    // Looser rules for copies and marketplace images ("my-golden-centos-7-2024-01").
    (Pattern::Contains("ubuntu"), OperatingSystem::Ubuntu),
    (Pattern::Contains("centos"), OperatingSystem::Centos),
    (
        Pattern::Contains("rhel"),
        OperatingSystem::RedhatEnterpriseLinux,
    ),
    (
        Pattern::Contains("red hat"),
        OperatingSystem::RedhatEnterpriseLinux,
    ),
    (Pattern::Contains("sles"), OperatingSystem::Suse),
    (Pattern::Contains("suse"), OperatingSystem::Suse),
    (Pattern::Contains("rocky"), OperatingSystem::RockyLinux),
    (Pattern::Contains("almalinux"), OperatingSystem::AlmaLinux),
    (
        Pattern::Contains("oracle-linux"),
        OperatingSystem::OracleLinux,
    ),
    (
        Pattern::Contains("oraclelinux"),
        OperatingSystem::OracleLinux,
    ),
    (Pattern::Contains("debian"), OperatingSystem::Debian),
    (Pattern::Contains("windows"), OperatingSystem::Windows),
];

fn ec2_os(
    platform: Option<&str>,
    platform_details: Option<&str>,
    image_name: Option<&str>,
    checked: &mut Vec<String>,
) -> Option<OperatingSystem> {
    match platform {
        Some(p) if p.eq_ignore_ascii_case("windows") => return Some(OperatingSystem::Windows),
        Some(p) if !p.trim().is_empty() => checked.push(format!("Platform `{p}`")),
        _ => {}
    }
    match platform_details {
        Some(details) => {
            if let Some(os) = lookup(PLATFORM_DETAILS, details) {
                return Some(os);
            }
            checked.push(format!(
                "PlatformDetails `{details}` (does not name a distribution)"
            ));
        }
        None => checked.push("no PlatformDetails".to_string()),
    }
    match image_name {
        Some(image) => {
            if let Some(os) = lookup(IMAGE_NAMES, image) {
                return Some(os);
            }
            checked.push(format!("image name `{image}` (unknown)"));
        }
        None => checked.push("no image name".to_string()),
    }
    None
}

/// SSM `PlatformName` → OS, for every name except Amazon Linux (decided by the version).
const PLATFORM_NAMES: &[(Pattern, OperatingSystem)] = &[
    (Pattern::Prefix("ubuntu"), OperatingSystem::Ubuntu),
    // `Red Hat Enterprise Linux Server` (RHEL 7), `Red Hat Enterprise Linux` (8, 9).
    (
        Pattern::Prefix("red hat"),
        OperatingSystem::RedhatEnterpriseLinux,
    ),
    (
        Pattern::Prefix("rhel"),
        OperatingSystem::RedhatEnterpriseLinux,
    ),
    // `CentOS Linux`, `CentOS Stream`.
    (Pattern::Prefix("centos"), OperatingSystem::Centos),
    // `SLES`, `SUSE Linux Enterprise Server`, `SLES_SAP`.
    (Pattern::Prefix("sles"), OperatingSystem::Suse),
    (Pattern::Prefix("suse"), OperatingSystem::Suse),
    (Pattern::Prefix("oracle"), OperatingSystem::OracleLinux),
    (Pattern::Prefix("debian"), OperatingSystem::Debian),
    (Pattern::Prefix("raspbian"), OperatingSystem::Raspbian),
    (Pattern::Prefix("rocky"), OperatingSystem::RockyLinux),
    (Pattern::Prefix("almalinux"), OperatingSystem::AlmaLinux),
    (Pattern::Prefix("alma linux"), OperatingSystem::AlmaLinux),
    // `Microsoft Windows Server 2019 Datacenter`.
    (Pattern::Contains("windows"), OperatingSystem::Windows),
    (Pattern::Prefix("macos"), OperatingSystem::MacOs),
    (Pattern::Prefix("mac os"), OperatingSystem::MacOs),
];

fn managed_os(
    platform_type: Option<&str>,
    platform_name: Option<&str>,
    platform_version: Option<&str>,
    checked: &mut Vec<String>,
) -> Option<OperatingSystem> {
    match platform_type.map(str::trim) {
        Some(t) if t.eq_ignore_ascii_case("windows") => return Some(OperatingSystem::Windows),
        Some(t) if t.eq_ignore_ascii_case("macos") => return Some(OperatingSystem::MacOs),
        Some(t) if t.eq_ignore_ascii_case("linux") => {}
        Some(t) => checked.push(format!("PlatformType `{t}`")),
        None => checked.push("no PlatformType".to_string()),
    }
    let Some(name) = platform_name else {
        checked.push("no PlatformName".to_string());
        return None;
    };
    let lower = name.trim().to_lowercase();
    if lower.starts_with("amazon linux") {
        let os = amazon_linux_generation(&lower, platform_version);
        if os.is_none() {
            checked.push(format!(
                "PlatformName `{name}` with PlatformVersion {} (which Amazon Linux?)",
                platform_version.map_or("absent".to_string(), |v| format!("`{v}`"))
            ));
        }
        return os;
    }
    if let Some(os) = lookup(PLATFORM_NAMES, name) {
        return Some(os);
    }
    checked.push(format!("PlatformName `{name}` (unknown)"));
    None
}

/// Amazon Linux generations share the `Amazon Linux` name on recent agents; the version
/// tells them apart: `2` (AL2), `2022.x`, `2023.x`, or a `YYYY.MM` release of the first
/// Amazon Linux (whose name is also reported as `Amazon Linux AMI`).
fn amazon_linux_generation(lower_name: &str, version: Option<&str>) -> Option<OperatingSystem> {
    if lower_name.starts_with("amazon linux ami") {
        return Some(OperatingSystem::AmazonLinux);
    }
    // Some agents put the generation in the name: `Amazon Linux 2`, `Amazon Linux 2023`.
    let from_name = lower_name.trim_start_matches("amazon linux").trim();
    let version = if from_name.is_empty() {
        version?.trim()
    } else {
        from_name
    };
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    match major.parse::<u32>().ok()? {
        2 => Some(OperatingSystem::AmazonLinux2),
        2023 => Some(OperatingSystem::AmazonLinux2023),
        2022 => Some(OperatingSystem::AmazonLinux2022),
        2011..=2021 => Some(OperatingSystem::AmazonLinux),
        _ => None,
    }
}

/// An `OS` tag: the SSM spelling (`AMAZON_LINUX_2023`, any case, `-`/space for `_`) or a
/// familiar name (`Amazon Linux 2`, `RHEL 9`, `Windows Server 2022`).
fn os_from_hint(value: &str) -> Option<OperatingSystem> {
    let value = value.trim();
    let ssm = value.to_uppercase().replace(['-', ' '], "_");
    if let Some(os) = OperatingSystem::parse(&ssm) {
        return Some(os);
    }
    let lower = value.to_lowercase();
    if lower.starts_with("amazon linux") || lower.starts_with("amazonlinux") {
        let rest = lower.trim_start_matches("amazonlinux");
        let normalised = format!(
            "amazon linux {}",
            rest.trim_start_matches("amazon linux").trim()
        );
        return amazon_linux_generation(normalised.trim(), None);
    }
    lookup(PLATFORM_NAMES, value).or_else(|| lookup(IMAGE_NAMES, value))
}

/// What to do about the patch-group tag given the decision.
///
/// A tag value patchpilot did not write (no ownership marker) is a person's decision and is
/// kept unless the policy says `overwrite: true`; one patchpilot wrote is corrected.
pub fn tag_action(policy: &Policy, facts: &InstanceFacts, decision: &Decision) -> TagAction {
    // An empty value is what the console leaves when a person clears the field: it names no
    // group (a window target `tag:<key> = <group>` never selects it), so it is treated as no
    // tag at all.
    let current = facts
        .tag(&policy.tag_key)
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let owned = facts.tag(OWNERSHIP_TAG_KEY) == Some(OWNERSHIP_TAG_VALUE);
    let wanted = match decision {
        Decision::Gone => return TagAction::Gone,
        Decision::Excluded { reason } => return excluded_action(policy, current, owned, reason),
        // Unmatched instances keep whatever tag they have: the facts may be incomplete (an
        // AMI whose name is no longer visible), and untagging would silently stop patching.
        Decision::Unmatched { reason } => {
            return TagAction::Skip {
                reason: format!("unmatched: {reason}"),
            }
        }
        Decision::Group { group, .. } => group.to_string(),
    };
    match current {
        None => TagAction::Tag { value: wanted },
        Some(current) if current == wanted => TagAction::Unchanged,
        Some(current) => {
            if owned || policy.overwrite {
                TagAction::Tag { value: wanted }
            } else {
                TagAction::RespectManual {
                    current: current.to_string(),
                    wanted,
                }
            }
        }
    }
}

/// An excluded instance must stop being patched. The maintenance-window targets select
/// `tag:<tag_key> = <group>`, so the exclusion only works once the patch-group tag is gone:
/// patchpilot removes the tag it wrote itself (ownership marker present), and never one a
/// person set (even with `overwrite: true`) — that one is reported instead.
fn excluded_action(policy: &Policy, current: Option<&str>, owned: bool, reason: &str) -> TagAction {
    match current {
        Some(current) if owned => TagAction::Untag {
            current: current.to_string(),
            reason: format!(
                "excluded: {reason}; removing the {} tag `{current}` (and {OWNERSHIP_TAG_KEY}) that patchpilot set, so no maintenance window patches it",
                policy.tag_key
            ),
        },
        Some(current) => TagAction::Skip {
            reason: format!(
                "excluded ({reason}), but its {} tag `{current}` was set by a person (no {OWNERSHIP_TAG_KEY} tag): remove it by hand to stop patching",
                policy.tag_key
            ),
        },
        None => TagAction::Skip {
            reason: format!("excluded: {reason}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Batch, Platform};

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ec2(
        name: &str,
        platform: Option<&str>,
        details: &str,
        image: &str,
        extra: &[(&str, &str)],
    ) -> InstanceFacts {
        let mut t = tags(extra);
        t.insert("Name".to_string(), name.to_string());
        InstanceFacts {
            instance_id: format!("i-0{:016x}", name.len() * 7919),
            source: FactsSource::Ec2 {
                platform: platform.map(str::to_string),
                platform_details: Some(details.to_string()),
                image_name: Some(image.to_string()),
            },
            name: Some(name.to_string()),
            tags: t,
            state: Some("running".to_string()),
        }
    }

    fn linux(name: &str, image: &str, extra: &[(&str, &str)]) -> InstanceFacts {
        ec2(name, None, "Linux/UNIX", image, extra)
    }

    fn managed(
        name: &str,
        ptype: &str,
        pname: &str,
        version: &str,
        extra: &[(&str, &str)],
    ) -> InstanceFacts {
        InstanceFacts {
            instance_id: "mi-0123456789abcdef0".to_string(),
            source: FactsSource::ManagedInstance {
                platform_type: Some(ptype.to_string()),
                platform_name: Some(pname.to_string()),
                platform_version: Some(version.to_string()),
            },
            name: Some(name.to_string()),
            tags: tags(extra),
            state: None,
        }
    }

    fn group_of(decision: &Decision) -> String {
        match decision {
            Decision::Group { group, .. } => group.to_string(),
            other => panic!("expected a group, got {other:?}"),
        }
    }

    fn unmatched_reason(decision: Decision) -> String {
        match decision {
            Decision::Unmatched { reason } => reason,
            other => panic!("expected unmatched, got {other:?}"),
        }
    }

    /// The article's fleet: six operating systems × {test, prod}, with the PlatformDetails and
    /// image names the public AMIs of 2020 report.
    fn articles_fleet() -> Vec<(InstanceFacts, OperatingSystem)> {
        let mut fleet = Vec::new();
        for env in ["Test", "Prod"] {
            let suffix = env.to_lowercase();
            let e = [("Environment", env)];
            fleet.push((
                ec2(
                    &format!("i-windows-{suffix}"),
                    Some("windows"),
                    "Windows",
                    "Windows_Server-2019-English-Full-Base-2020.04.15",
                    &e,
                ),
                OperatingSystem::Windows,
            ));
            fleet.push((
                ec2(
                    &format!("i-redhat-linux-{suffix}"),
                    None,
                    "Red Hat Enterprise Linux",
                    "RHEL-8.2.0_HVM-20200423-x86_64-0-Hourly2-GP2",
                    &e,
                ),
                OperatingSystem::RedhatEnterpriseLinux,
            ));
            fleet.push((
                linux(
                    &format!("i-ubuntu-linux-{suffix}"),
                    "ubuntu/images/hvm-ssd/ubuntu-bionic-18.04-amd64-server-20200408",
                    &e,
                ),
                OperatingSystem::Ubuntu,
            ));
            fleet.push((
                linux(
                    &format!("i-amazon-linux-{suffix}"),
                    "amzn2-ami-hvm-2.0.20200406.0-x86_64-gp2",
                    &e,
                ),
                OperatingSystem::AmazonLinux2,
            ));
            fleet.push((
                linux(
                    &format!("i-centos-linux-{suffix}"),
                    "CentOS Linux 7 x86_64 HVM EBS ENA 2002_01-b7ee8a69-ee97-4a49-9e68-afaee216db2e",
                    &e,
                ),
                OperatingSystem::Centos,
            ));
            fleet.push((
                ec2(
                    &format!("i-suse-linux-{suffix}"),
                    None,
                    "SUSE Linux",
                    "suse-sles-15-sp1-v20200415-hvm-ssd-x86_64",
                    &e,
                ),
                OperatingSystem::Suse,
            ));
        }
        fleet
    }

    #[test]
    fn the_articles_12_instances_get_the_articles_groups() {
        let policy = Policy::reference();
        let fleet = articles_fleet();
        assert_eq!(fleet.len(), 12);
        for (facts, expected_os) in &fleet {
            let name = facts.name.as_deref().unwrap_or_default();
            let env = if name.ends_with("-test") {
                "test"
            } else {
                "prod"
            };
            let batch = if *expected_os == OperatingSystem::Windows {
                2
            } else {
                1
            };
            let decision = classify(&policy, facts);
            assert_eq!(
                decision,
                Decision::Group {
                    os: *expected_os,
                    environment: env.to_string(),
                    batch,
                    batch_name: if batch == 1 { "linux" } else { "windows" }.to_string(),
                    group: PatchGroup::new(env, (6, 0), batch),
                },
                "{name}"
            );
            assert_eq!(
                tag_action(&policy, facts, &decision),
                TagAction::Tag {
                    value: format!("patch_{env}_0600_batch_{batch}")
                },
                "{name}"
            );
        }
        // The article's list, verbatim.
        let by_name: BTreeMap<String, String> = fleet
            .iter()
            .map(|(f, _)| {
                (
                    f.name.clone().unwrap_or_default(),
                    group_of(&classify(&policy, f)),
                )
            })
            .collect();
        for (name, group) in [
            ("i-amazon-linux-test", "patch_test_0600_batch_1"),
            ("i-centos-linux-test", "patch_test_0600_batch_1"),
            ("i-redhat-linux-test", "patch_test_0600_batch_1"),
            ("i-suse-linux-test", "patch_test_0600_batch_1"),
            ("i-ubuntu-linux-test", "patch_test_0600_batch_1"),
            ("i-windows-test", "patch_test_0600_batch_2"),
            ("i-amazon-linux-prod", "patch_prod_0600_batch_1"),
            ("i-windows-prod", "patch_prod_0600_batch_2"),
        ] {
            assert_eq!(by_name.get(name).map(String::as_str), Some(group), "{name}");
        }
    }

    #[test]
    fn windows_hosts_land_in_batch_2() {
        let policy = Policy::reference();
        for (platform, details) in [
            (Some("windows"), "Windows"),
            (Some("windows"), "Windows with SQL Server Standard"),
            (None, "Windows BYOL"),
        ] {
            let facts = ec2(
                "app-01",
                platform,
                details,
                "Windows_Server-2022-English-Full-Base",
                &[("Environment", "prod")],
            );
            match classify(&policy, &facts) {
                Decision::Group {
                    os,
                    batch,
                    batch_name,
                    group,
                    ..
                } => {
                    assert_eq!(os, OperatingSystem::Windows, "{details}");
                    assert_eq!((batch, batch_name.as_str()), (2, "windows"));
                    assert_eq!(group.to_string(), "patch_prod_0600_batch_2");
                }
                other => panic!("{details}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_on_prem_mi_rhel_server_in_prod() {
        let policy = Policy::reference();
        let facts = managed(
            "db-onprem-prod",
            "Linux",
            "Red Hat Enterprise Linux Server",
            "7.9",
            &[],
        );
        let decision = classify(&policy, &facts);
        assert_eq!(
            decision,
            Decision::Group {
                os: OperatingSystem::RedhatEnterpriseLinux,
                environment: "prod".to_string(),
                batch: 1,
                batch_name: "linux".to_string(),
                group: PatchGroup::new("prod", (6, 0), 1),
            }
        );
        assert_eq!(
            tag_action(&policy, &facts, &decision),
            TagAction::Tag {
                value: "patch_prod_0600_batch_1".to_string()
            }
        );
    }

    #[test]
    fn managed_nodes_are_recognised_by_platform_name_and_version() {
        let cases = [
            ("Linux", "Amazon Linux", "2", OperatingSystem::AmazonLinux2),
            (
                "Linux",
                "Amazon Linux",
                "2023",
                OperatingSystem::AmazonLinux2023,
            ),
            (
                "Linux",
                "Amazon Linux",
                "2023.3.20240131",
                OperatingSystem::AmazonLinux2023,
            ),
            (
                "Linux",
                "Amazon Linux AMI",
                "2018.03",
                OperatingSystem::AmazonLinux,
            ),
            (
                "Linux",
                "Amazon Linux",
                "2018.03",
                OperatingSystem::AmazonLinux,
            ),
            ("Linux", "Ubuntu", "22.04", OperatingSystem::Ubuntu),
            (
                "Linux",
                "Red Hat Enterprise Linux",
                "9.3",
                OperatingSystem::RedhatEnterpriseLinux,
            ),
            ("Linux", "CentOS Linux", "7.9.2009", OperatingSystem::Centos),
            ("Linux", "CentOS Stream", "9", OperatingSystem::Centos),
            ("Linux", "SLES", "15.5", OperatingSystem::Suse),
            (
                "Linux",
                "SUSE Linux Enterprise Server",
                "12.5",
                OperatingSystem::Suse,
            ),
            (
                "Linux",
                "Oracle Linux Server",
                "8.8",
                OperatingSystem::OracleLinux,
            ),
            ("Linux", "Debian GNU/Linux", "12", OperatingSystem::Debian),
            (
                "Linux",
                "Raspbian GNU/Linux",
                "11",
                OperatingSystem::Raspbian,
            ),
            ("Linux", "Rocky Linux", "9.3", OperatingSystem::RockyLinux),
            ("Linux", "AlmaLinux", "9.3", OperatingSystem::AlmaLinux),
            (
                "Windows",
                "Microsoft Windows Server 2019 Datacenter",
                "10.0.17763",
                OperatingSystem::Windows,
            ),
            ("MacOS", "macOS", "13.6", OperatingSystem::MacOs),
        ];
        for (ptype, pname, version, expected) in cases {
            let facts = managed("node", ptype, pname, version, &[]);
            assert_eq!(detect_os(&facts), Ok(expected), "{pname} {version}");
        }
    }

    #[test]
    fn ec2_images_are_recognised_when_platform_details_say_only_linux_unix() {
        let cases = [
            (
                "amzn2-ami-kernel-5.10-hvm-2.0.20240131.0-x86_64-gp2",
                OperatingSystem::AmazonLinux2,
            ),
            (
                "amzn2-x86_64-SQL_2019_Standard-2024.01.10",
                OperatingSystem::AmazonLinux2,
            ),
            (
                "al2023-ami-2023.3.20240131.0-kernel-6.1-x86_64",
                OperatingSystem::AmazonLinux2023,
            ),
            (
                "al2022-ami-2022.0.20221207.4-kernel-5.15-x86_64",
                OperatingSystem::AmazonLinux2022,
            ),
            (
                "amzn-ami-hvm-2018.03.0.20231218.0-x86_64-gp2",
                OperatingSystem::AmazonLinux,
            ),
            (
                "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240207",
                OperatingSystem::Ubuntu,
            ),
            ("debian-12-amd64-20231013-1532", OperatingSystem::Debian),
            (
                "CentOS-Stream-ec2-9-20240129.0.x86_64",
                OperatingSystem::Centos,
            ),
            (
                "Rocky-9-EC2-Base-9.3-20231113.0.x86_64",
                OperatingSystem::RockyLinux,
            ),
            (
                "AlmaLinux OS 9.3.20231124 x86_64",
                OperatingSystem::AlmaLinux,
            ),
            ("OL8.8-x86_64-HVM-2023-06-21", OperatingSystem::OracleLinux),
            ("golden-centos-7-2024-01", OperatingSystem::Centos),
        ];
        for (image, expected) in cases {
            assert_eq!(detect_os(&linux("x", image, &[])), Ok(expected), "{image}");
        }
        // Billing codes that name the distribution win over the image name.
        for (details, expected) in [
            ("Red Hat BYOL Linux", OperatingSystem::RedhatEnterpriseLinux),
            (
                "Red Hat Enterprise Linux with HA",
                OperatingSystem::RedhatEnterpriseLinux,
            ),
            (
                "Red Hat Enterprise Linux with SQL Server Standard and HA",
                OperatingSystem::RedhatEnterpriseLinux,
            ),
            ("SUSE Linux", OperatingSystem::Suse),
            ("Ubuntu Pro", OperatingSystem::Ubuntu),
        ] {
            assert_eq!(
                detect_os(&ec2("x", None, details, "my-golden-image", &[])),
                Ok(expected),
                "{details}"
            );
        }
    }

    #[test]
    fn an_os_tag_is_a_hint_used_only_when_aws_is_silent() {
        let mut facts = linux("x", "my-golden-image-v3", &[("OS", "Amazon Linux 2023")]);
        assert_eq!(detect_os(&facts), Ok(OperatingSystem::AmazonLinux2023));
        facts
            .tags
            .insert("OS".to_string(), "redhat_enterprise_linux".to_string());
        assert_eq!(
            detect_os(&facts),
            Ok(OperatingSystem::RedhatEnterpriseLinux)
        );
        let facts = linux("x", "my-golden-image-v3", &[("os", "rhel")]);
        assert_eq!(
            detect_os(&facts),
            Ok(OperatingSystem::RedhatEnterpriseLinux)
        );
        // The billing code says Windows: a contradicting tag does not change that.
        let facts = ec2("x", Some("windows"), "Windows", "img", &[("OS", "UBUNTU")]);
        assert_eq!(detect_os(&facts), Ok(OperatingSystem::Windows));
    }

    #[test]
    fn unknown_os_is_unmatched_with_the_reason() {
        let policy = Policy::reference();
        let facts = linux("build-test", "my-golden-image-v3", &[]);
        let reason = unmatched_reason(classify(&policy, &facts));
        for part in ["Linux/UNIX", "my-golden-image-v3", "no OS tag", "OS="] {
            assert!(reason.contains(part), "missing {part}: {reason}");
        }
        let facts = managed("node-test", "Linux", "Amazon Linux", "", &[("OS", "plan9")]);
        let reason = unmatched_reason(classify(&policy, &facts));
        assert!(
            reason.contains("which Amazon Linux") && reason.contains("plan9"),
            "{reason}"
        );
        assert!(matches!(
            tag_action(&policy, &facts, &classify(&policy, &facts)),
            TagAction::Skip { reason } if reason.starts_with("unmatched:")
        ));
    }

    #[test]
    fn an_excluded_instance_is_skipped_with_the_reason() {
        let policy = Policy::reference();
        let facts = linux(
            "i-amazon-linux-prod",
            "amzn2-ami-hvm-2.0.20200406.0-x86_64-gp2",
            &[
                ("Environment", "prod"),
                ("patchpilot:exclude", "legacy app, patched by hand"),
            ],
        );
        let decision = classify(&policy, &facts);
        match &decision {
            Decision::Excluded { reason } => {
                assert!(
                    reason.contains("patchpilot:exclude") && reason.contains("legacy app"),
                    "{reason}"
                )
            }
            other => panic!("expected excluded, got {other:?}"),
        }
        match tag_action(&policy, &facts, &decision) {
            TagAction::Skip { reason } => {
                assert!(reason.contains("patchpilot:exclude"), "{reason}")
            }
            other => panic!("expected skip, got {other:?}"),
        }
        // Any value excludes, even an empty one.
        let facts = linux("x-prod", "amzn2-ami-hvm", &[("patchpilot:exclude", "")]);
        assert!(matches!(
            classify(&policy, &facts),
            Decision::Excluded { .. }
        ));
    }

    #[test]
    fn excluding_an_instance_patchpilot_tagged_removes_its_tag() {
        let policy = Policy::reference();
        let facts = linux(
            "i-amazon-linux-prod",
            "amzn2-ami-hvm-2.0.20200406.0-x86_64-gp2",
            &[
                ("Environment", "prod"),
                ("Patch Group", "patch_prod_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE),
                ("patchpilot:exclude", "fragile, patched by hand"),
            ],
        );
        let action = tag_action(&policy, &facts, &classify(&policy, &facts));
        match &action {
            TagAction::Untag { current, reason } => {
                assert_eq!(current, "patch_prod_0600_batch_1");
                for part in [
                    "patchpilot:exclude",
                    "fragile, patched by hand",
                    "Patch Group",
                    "patch_prod_0600_batch_1",
                ] {
                    assert!(reason.contains(part), "missing {part}: {reason}");
                }
            }
            other => panic!("expected untag, got {other:?}"),
        }
        assert!(
            action
                .to_string()
                .starts_with("remove patchpilot's tag patch_prod_0600_batch_1: excluded:"),
            "{action}"
        );
        // The policy's tag key is the one removed, whatever the value.
        let mut policy = Policy::reference();
        policy.tag_key = "PatchGroup".to_string();
        let facts = linux(
            "web-test",
            "amzn2-ami-hvm",
            &[
                ("PatchGroup", "dba-special"),
                (OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE),
                ("patchpilot:exclude", ""),
            ],
        );
        assert!(matches!(
            tag_action(&policy, &facts, &classify(&policy, &facts)),
            TagAction::Untag { current, .. } if current == "dba-special"
        ));
    }

    #[test]
    fn an_excluded_instance_with_a_manual_tag_keeps_it_and_says_so() {
        let mut policy = Policy::reference();
        let facts = linux(
            "i-rhel-prod",
            "RHEL-9.3.0_HVM",
            &[
                ("Patch Group", "dba-special"),
                ("patchpilot:exclude", "yes"),
            ],
        );
        for overwrite in [false, true] {
            policy.overwrite = overwrite;
            match tag_action(&policy, &facts, &classify(&policy, &facts)) {
                TagAction::Skip { reason } => {
                    for part in [
                        "excluded",
                        "dba-special",
                        "set by a person",
                        "remove it by hand to stop patching",
                        "patchpilot:exclude",
                    ] {
                        assert!(reason.contains(part), "missing {part}: {reason}");
                    }
                }
                other => panic!("overwrite {overwrite}: expected skip, got {other:?}"),
            }
        }
        // A marker with another value than `true` is not patchpilot's marker.
        let facts = linux(
            "i-rhel-prod",
            "RHEL-9.3.0_HVM",
            &[
                ("Patch Group", "patch_prod_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, "false"),
                ("patchpilot:exclude", "yes"),
            ],
        );
        assert!(matches!(
            tag_action(&policy, &facts, &classify(&policy, &facts)),
            TagAction::Skip { reason } if reason.contains("set by a person")
        ));
    }

    #[test]
    fn an_excluded_instance_without_a_patch_group_value_needs_nothing_removed() {
        let policy = Policy::reference();
        for extra in [
            // Marker alone: no target selects the instance.
            vec![(OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE)],
            // An emptied value names no group either.
            vec![
                ("Patch Group", " "),
                (OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE),
            ],
            vec![],
        ] {
            let mut tags = extra.clone();
            tags.push(("patchpilot:exclude", "yes"));
            let facts = linux("web-prod", "amzn2-ami-hvm", &tags);
            match tag_action(&policy, &facts, &classify(&policy, &facts)) {
                TagAction::Skip { reason } => {
                    assert!(reason.starts_with("excluded: "), "{extra:?}: {reason}");
                    assert!(!reason.contains("by hand"), "{extra:?}: {reason}");
                }
                other => panic!("{extra:?}: expected skip, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_unmatched_instance_keeps_patchpilots_tag() {
        let policy = Policy::reference();
        let facts = linux(
            "jumphost",
            "my-golden-image-v3",
            &[
                ("Patch Group", "patch_test_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE),
            ],
        );
        assert!(matches!(
            tag_action(&policy, &facts, &classify(&policy, &facts)),
            TagAction::Skip { reason } if reason.starts_with("unmatched:")
        ));
    }

    #[test]
    fn a_terminated_excluded_instance_is_gone_not_untagged() {
        let policy = Policy::reference();
        let mut facts = linux(
            "web-prod",
            "amzn2-ami-hvm",
            &[
                ("Patch Group", "patch_prod_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE),
                ("patchpilot:exclude", "yes"),
            ],
        );
        facts.state = Some("terminated".to_string());
        assert_eq!(
            tag_action(&policy, &facts, &classify(&policy, &facts)),
            TagAction::Gone
        );
    }

    #[test]
    fn a_manual_patch_group_tag_is_respected_unless_overwrite() {
        let mut policy = Policy::reference();
        let facts = linux(
            "i-ubuntu-linux-prod",
            "ubuntu/images/hvm-ssd/ubuntu-bionic-18.04-amd64-server-20200408",
            &[("Environment", "prod"), ("Patch Group", "dba-special")],
        );
        let decision = classify(&policy, &facts);
        assert_eq!(
            tag_action(&policy, &facts, &decision),
            TagAction::RespectManual {
                current: "dba-special".to_string(),
                wanted: "patch_prod_0600_batch_1".to_string()
            }
        );
        policy.overwrite = true;
        assert_eq!(
            tag_action(&policy, &facts, &decision),
            TagAction::Tag {
                value: "patch_prod_0600_batch_1".to_string()
            }
        );
    }

    #[test]
    fn a_tag_patchpilot_set_is_corrected() {
        let policy = Policy::reference();
        // Moved from test to prod: the old value was patchpilot's, so it is fixed.
        let facts = linux(
            "i-amazon-linux-prod",
            "amzn2-ami-hvm-2.0.20200406.0-x86_64-gp2",
            &[
                ("Environment", "prod"),
                ("Patch Group", "patch_test_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE),
            ],
        );
        let decision = classify(&policy, &facts);
        assert_eq!(
            tag_action(&policy, &facts, &decision),
            TagAction::Tag {
                value: "patch_prod_0600_batch_1".to_string()
            }
        );
    }

    #[test]
    fn a_correct_tag_needs_no_write_even_if_a_person_set_it() {
        let policy = Policy::reference();
        let facts = linux(
            "i-amazon-linux-test",
            "amzn2-ami-hvm-2.0.20200406.0-x86_64-gp2",
            &[
                ("Environment", "test"),
                ("Patch Group", "patch_test_0600_batch_1"),
            ],
        );
        assert_eq!(
            tag_action(&policy, &facts, &classify(&policy, &facts)),
            TagAction::Unchanged
        );
        // An emptied tag names no group: it is filled in.
        let facts = linux(
            "i-amazon-linux-test",
            "amzn2-ami-hvm",
            &[("Patch Group", " ")],
        );
        assert_eq!(
            tag_action(&policy, &facts, &classify(&policy, &facts)),
            TagAction::Tag {
                value: "patch_test_0600_batch_1".to_string()
            }
        );
    }

    #[test]
    fn the_tag_key_comes_from_the_policy() {
        let mut policy = Policy::reference();
        policy.tag_key = "PatchGroup".to_string();
        let facts = linux(
            "web-test",
            "al2023-ami-2023.3.20240131.0-kernel-6.1-x86_64",
            &[("Patch Group", "patch_test_0600_batch_1")],
        );
        assert_eq!(
            tag_action(&policy, &facts, &classify(&policy, &facts)),
            TagAction::Tag {
                value: "patch_test_0600_batch_1".to_string()
            }
        );
    }

    #[test]
    fn environment_tag_wins_over_the_name_suffix() {
        let policy = Policy::reference();
        // Named like prod, tagged test (values compared case-insensitively): test.
        let facts = linux("web-prod", "amzn2-ami-hvm", &[("Environment", "TEST")]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_test_0600_batch_1"
        );
        // `production` is one of prod's values.
        let facts = linux(
            "web-test",
            "amzn2-ami-hvm",
            &[("Environment", "Production")],
        );
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_prod_0600_batch_1"
        );
        // No tag: the suffix decides, case-insensitively.
        let facts = linux("WEB-PROD", "amzn2-ami-hvm", &[]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_prod_0600_batch_1"
        );
        // The tag key is exact: `environment` is not `Environment`.
        let facts = linux("web-prod", "amzn2-ami-hvm", &[("environment", "test")]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_prod_0600_batch_1"
        );
    }

    #[test]
    fn an_instance_in_no_environment_is_unmatched_with_what_was_checked() {
        let policy = Policy::reference();
        let facts = linux("jumphost", "amzn2-ami-hvm", &[("Environment", "staging")]);
        let reason = unmatched_reason(classify(&policy, &facts));
        for part in [
            "`jumphost`",
            "test:",
            "prod:",
            "Environment",
            "`staging`",
            "-prod",
            "unmatched: skip",
        ] {
            assert!(reason.contains(part), "missing {part}: {reason}");
        }
    }

    #[test]
    fn unmatched_environment_test_adopts_strays() {
        let mut policy = Policy::reference();
        policy.unmatched = Unmatched::Environment("test".to_string());
        let facts = ec2(
            "jumphost",
            Some("windows"),
            "Windows",
            "Windows_Server-2019",
            &[],
        );
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_test_0600_batch_2"
        );
        policy.unmatched = Unmatched::Environment("qa".to_string());
        let reason = unmatched_reason(classify(&policy, &facts));
        assert!(reason.contains("qa"), "{reason}");
    }

    #[test]
    fn terminated_is_gone() {
        let policy = Policy::reference();
        for state in ["terminated", "shutting-down"] {
            let mut facts = linux(
                "i-amazon-linux-test",
                "amzn2-ami-hvm",
                &[("Environment", "test")],
            );
            facts.state = Some(state.to_string());
            let decision = classify(&policy, &facts);
            assert_eq!(decision, Decision::Gone, "{state}");
            assert_eq!(tag_action(&policy, &facts, &decision), TagAction::Gone);
        }
        // Stopped instances are still patched when they next run: tag them.
        let mut facts = linux("i-amazon-linux-test", "amzn2-ami-hvm", &[]);
        facts.state = Some("stopped".to_string());
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_test_0600_batch_1"
        );
    }

    #[test]
    fn no_batch_for_the_platform_is_unmatched() {
        let mut policy = Policy::reference();
        policy
            .batches
            .retain(|b| !b.platforms.contains(&Platform::Windows));
        let facts = ec2(
            "app-test",
            Some("windows"),
            "Windows",
            "Windows_Server-2019",
            &[],
        );
        let reason = unmatched_reason(classify(&policy, &facts));
        assert!(
            reason.contains("Windows") && reason.contains("linux [Linux]"),
            "{reason}"
        );
        // A macOS node needs a batch that lists MacOS.
        policy.batches.push(Batch {
            name: "mac".to_string(),
            platforms: vec![Platform::MacOS],
            max_concurrency: "1".to_string(),
            max_errors: "1".to_string(),
            reboot: Default::default(),
        });
        let facts = managed("build-mac-test", "MacOS", "macOS", "14.2", &[]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_test_0600_batch_2"
        );
    }

    #[test]
    fn a_window_without_a_fixed_time_cannot_name_a_group() {
        let mut policy = Policy::reference();
        policy.environments[0].window.schedule = "rate(7 days)".to_string();
        let facts = linux("web-test", "amzn2-ami-hvm", &[]);
        let reason = unmatched_reason(classify(&policy, &facts));
        assert!(
            reason.contains("rate(7 days)") && reason.contains("test"),
            "{reason}"
        );
        policy.environments[0].window.schedule = "cron(30 22 ? * TUE#2 *)".to_string();
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_test_2230_batch_1"
        );
    }
}
