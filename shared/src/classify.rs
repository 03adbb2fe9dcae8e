//! Classification: from what EC2 / SSM report about an instance, decide its platform,
//! environment, batch and patch group — or say precisely why there is none.
//!
//! Pure and synchronous: the adapters gather [`InstanceFacts`] (EC2 `DescribeInstances`, or
//! SSM `DescribeInstanceInformation` for on-prem `mi-*` nodes), [`classify`] decides, and
//! [`tag_action`] says what to do about the patch-group tag (at most one write: add it, or —
//! for an excluded instance carrying patchpilot's own tag — remove it).
//!
//! # Platform, then (optionally) the operating system
//!
//! The batch depends only on the **platform** (policy `batches[].platforms`: Linux, Windows,
//! MacOS), so [`identify`] decides the platform from what the one describe call already
//! returned. The exact operating system is informational: named when the facts name it,
//! `None` otherwise — Amazon Linux, Ubuntu, CentOS, Debian, Rocky, Alma and Oracle Linux all
//! report `PlatformDetails` `Linux/UNIX`, and patchpilot makes no second call (the AMI name
//! via `DescribeImages`) to learn which: it would double the describes per launch event,
//! need another IAM action, and fail for deregistered AMIs, for a fact the tag never uses.
//!
//! **EC2 instances** (`DescribeInstances`: `Platform`, `InstanceType`, `PlatformDetails`,
//! tags). The first rule that applies decides:
//!
//! | evidence | value | platform | OS |
//! |---|---|---|---|
//! | `Platform` | `windows` (the only value; empty otherwise) | Windows | WINDOWS |
//! | `InstanceType` | an EC2 Mac type: `mac1.metal`, `mac2.metal`, `mac2-m2.metal`, `mac2-m2pro.metal`, `mac2-m1ultra.metal`, `mac-m4.metal`, `mac-m4pro.metal`, `mac-m4max.metal`, `mac-m3ultra.metal` ([`is_mac_instance_type`]) | MacOS | MACOS |
//! | `PlatformDetails` | `Windows`, `Windows BYOL`, `Windows with SQL Server …` | Windows | WINDOWS |
//! | `PlatformDetails` | `Red Hat Enterprise Linux`, `… with HA`, `… with SQL Server …`, `Red Hat BYOL Linux`, `RHEL …` | Linux | REDHAT_ENTERPRISE_LINUX |
//! | `PlatformDetails` | `SUSE Linux` | Linux | SUSE |
//! | `PlatformDetails` | `Ubuntu Pro`, `Ubuntu Pro Linux` | Linux | UBUNTU |
//! | `PlatformDetails` | `Linux/UNIX`, `SQL Server Standard/Enterprise/Web` (SQL Server on Amazon Linux or Ubuntu) | Linux | not named: the `OS` tag hint, else none |
//! | tag `OS` / `os` | SSM spelling (`AMAZON_LINUX_2023`) or a name (`Amazon Linux 2`, `rhel`) | the OS's platform | that OS — only when nothing above applies |
//!
//! The instance type comes before `PlatformDetails` because the macOS AMIs bill as
//! `Linux/UNIX`. Sources: `Platform` — EC2 API reference, `Instance.Platform` ("`windows` for
//! Windows instances; otherwise blank"); `InstanceType` — EC2 User Guide, "Amazon EC2 Mac
//! instances" (the `mac*.metal` types are the only ones that run macOS); `PlatformDetails` —
//! EC2 User Guide, "AMI billing information fields" (table "usage operation by platform":
//! `Linux/UNIX` RunInstances, `Red Hat BYOL Linux` :00g0, `Red Hat Enterprise Linux` :0010,
//! `… with HA` :1010, `… with SQL Server …`, `SQL Server Enterprise|Standard|Web`
//! :0100/:0004/:0200 (Linux with SQL Server), `SUSE Linux` :000g, `Ubuntu Pro` :0g00, `Windows`
//! :0002, `Windows BYOL` :0800, `Windows with SQL Server …` :0102/:0006/:0202).
//!
//! **SSM managed nodes** (`mi-*`, `DescribeInstanceInformation`): the platform is
//! `PlatformType` (`Windows | Linux | MacOS`); only when it is absent or unknown does the OS
//! that `PlatformName` names decide it. The OS comes from `PlatformName` (the OS name the agent
//! reports) and `PlatformVersion`:
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
//! version. A Linux node whose name is not recognised is Linux with no OS named.
//!
//! The `OS` tag hint names the OS when AWS's facts do not (never against them: a hint of
//! another platform than the one AWS reports is ignored, and said so in the evidence), and is
//! the last resort for the platform when AWS's facts name none.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::names::{Owner, Ownership, PatchGroup, OWNERSHIP_TAG_KEY};
use crate::policy::{Environment, OperatingSystem, Platform, Policy, Unmatched};
use crate::schedule::Schedule;

/// What patchpilot knows about an instance, gathered by the adapters from EC2
/// `DescribeInstances` (Platform, InstanceType, PlatformDetails, tags), or SSM
/// `DescribeInstanceInformation` (and `ListTagsForResource` for the tags) for `mi-*` nodes.
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

/// Where the platform facts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactsSource {
    /// EC2 `DescribeInstances`.
    Ec2 {
        /// `Platform`: `windows` or absent.
        platform: Option<String>,
        /// `PlatformDetails`, e.g. `Linux/UNIX`, `Red Hat Enterprise Linux`, `Windows`.
        platform_details: Option<String>,
        /// `InstanceType`, e.g. `t3.micro`, `mac2.metal`.
        instance_type: Option<String>,
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
        /// Decides the batch.
        platform: Platform,
        /// Informational: `None` when the facts do not name the distribution (an EC2
        /// `Linux/UNIX` instance without an `OS` tag).
        os: Option<OperatingSystem>,
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

/// An instance's platform and, when the facts name it, its operating system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub platform: Platform,
    pub os: Option<OperatingSystem>,
    /// What decided, e.g. ``PlatformDetails `Linux/UNIX`: Linux, distribution not named by
    /// EC2``.
    pub evidence: String,
}

/// The platform could not be recognised; `checked` lists every piece of evidence looked at,
/// so the operator knows what to fix (usually: add an `OS` tag).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("platform not recognised ({checked}); add an `OS` tag with the SSM name, e.g. OS=AMAZON_LINUX_2023")]
pub struct UnknownPlatform {
    pub checked: String,
}

/// What to do about the instance's patch-group tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagAction {
    /// Write `policy.tag_key = value` and the ownership marker
    /// (`patchpilot:managed = <stack>`) in the same `CreateTags` call.
    Tag { value: String },
    /// The tag already has the right value: no write.
    Unchanged,
    /// A person (no marker) or another patchpilot stack (its marker) set a different value
    /// and `overwrite` is off: keep it, report it.
    RespectManual {
        current: String,
        wanted: String,
        /// Whose the tag is: [`Ownership::Unmarked`] (a person) or another stack.
        set_by: Ownership,
    },
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
            TagAction::RespectManual {
                current, wanted, ..
            } => {
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
/// Order: gone → excluded → environment → platform → batch → window time. The first failure
/// is the decision, with a reason naming what was checked.
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
    let identity = match identify(facts) {
        Ok(identity) => identity,
        Err(e) => {
            return Decision::Unmatched {
                reason: e.to_string(),
            }
        }
    };
    let Some((batch, batch_def)) = policy.batch_for(identity.platform) else {
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
                "no batch for platform {} ({}); the policy's batches are: {}",
                identity.platform,
                identity.evidence,
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
        platform: identity.platform,
        os: identity.os,
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

/// Decide the platform, and the OS where the facts name it (see the module docs for the
/// tables). No AWS call: only what the describe call returned.
pub fn identify(facts: &InstanceFacts) -> Result<Identity, UnknownPlatform> {
    let mut checked = Vec::new();
    let found = match &facts.source {
        FactsSource::Ec2 {
            platform,
            platform_details,
            instance_type,
        } => ec2_identity(
            platform.as_deref(),
            instance_type.as_deref(),
            platform_details.as_deref(),
            &mut checked,
        ),
        FactsSource::ManagedInstance {
            platform_type,
            platform_name,
            platform_version,
        } => managed_identity(
            platform_type.as_deref(),
            platform_name.as_deref(),
            platform_version.as_deref(),
            &mut checked,
        ),
    };
    if let Some(mut identity) = found {
        if identity.os.is_none() {
            name_os_from_hint(facts, &mut identity);
        }
        return Ok(identity);
    }
    // Last: the operator's hint. Only consulted when AWS's own facts are silent, so a wrong
    // tag cannot override what the billing code or the agent says.
    for key in OS_HINT_TAGS {
        if let Some(value) = facts.tag(key) {
            if let Some(os) = os_from_hint(value) {
                return Ok(Identity {
                    platform: os.platform(),
                    os: Some(os),
                    evidence: format!(
                        "tag {key} `{value}`; AWS named no platform: {}",
                        checked.join(", ")
                    ),
                });
            }
            checked.push(format!("tag {key} `{value}` (not an OS name)"));
        }
    }
    if !OS_HINT_TAGS.iter().any(|k| facts.tag(k).is_some()) {
        checked.push("no OS tag".to_string());
    }
    Err(UnknownPlatform {
        checked: checked.join(", "),
    })
}

/// The platform is known but the facts do not name the OS: an `OS` tag of that platform
/// names it; one of another platform is ignored (AWS's platform stands).
fn name_os_from_hint(facts: &InstanceFacts, identity: &mut Identity) {
    for key in OS_HINT_TAGS {
        let Some(value) = facts.tag(key) else {
            continue;
        };
        match os_from_hint(value) {
            Some(os) if os.platform() == identity.platform => {
                identity.os = Some(os);
                identity.evidence = format!("{}; OS from tag {key} `{value}`", identity.evidence);
                return;
            }
            Some(os) => {
                identity.evidence = format!(
                    "{}; tag {key} `{value}` ignored ({os} is not {})",
                    identity.evidence, identity.platform
                );
            }
            None => {
                identity.evidence = format!(
                    "{}; tag {key} `{value}` is not an OS name",
                    identity.evidence
                );
            }
        }
    }
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

fn lookup<T: Copy>(table: &[(Pattern, T)], text: &str) -> Option<T> {
    let lower = text.trim().to_lowercase();
    table
        .iter()
        .find(|(p, _)| p.matches(&lower))
        .map(|(_, value)| *value)
}

/// EC2 `PlatformDetails` → platform and, when the value names one, the distribution. Source:
/// EC2 User Guide, "AMI billing information fields".
const PLATFORM_DETAILS: &[(Pattern, (Platform, Option<OperatingSystem>))] = &[
    // `Windows`, `Windows BYOL`, `Windows with SQL Server Enterprise|Standard|Web`.
    (
        Pattern::Prefix("windows"),
        (Platform::Windows, Some(OperatingSystem::Windows)),
    ),
    // `Red Hat Enterprise Linux`, `… with HA`, `… with SQL Server …`, `Red Hat BYOL Linux`.
    (
        Pattern::Prefix("red hat"),
        (
            Platform::Linux,
            Some(OperatingSystem::RedhatEnterpriseLinux),
        ),
    ),
    // Capacity-reservation spellings (`RHEL with HA`, `RHEL with SQL Server Standard`).
    (
        Pattern::Prefix("rhel"),
        (
            Platform::Linux,
            Some(OperatingSystem::RedhatEnterpriseLinux),
        ),
    ),
    (
        Pattern::Prefix("suse"),
        (Platform::Linux, Some(OperatingSystem::Suse)),
    ),
    // `Ubuntu Pro` (billing fields) / `Ubuntu Pro Linux` (capacity reservations).
    (
        Pattern::Prefix("ubuntu pro"),
        (Platform::Linux, Some(OperatingSystem::Ubuntu)),
    ),
    // Amazon Linux, Ubuntu (non-Pro), CentOS, Debian, Rocky, Alma, Oracle Linux, macOS AMIs.
    (Pattern::Prefix("linux/unix"), (Platform::Linux, None)),
    // `SQL Server Enterprise|Standard|Web`: SQL Server on Amazon Linux or Ubuntu.
    (Pattern::Prefix("sql server"), (Platform::Linux, None)),
];

/// EC2 Mac instance types. Two naming schemes, both only ever `.metal` on a Dedicated Host:
///
/// - `mac<generation>[-<chip>]`: `mac1.metal` (Intel), `mac2.metal` (M1), `mac2-m2.metal`,
///   `mac2-m2pro.metal`, `mac2-m1ultra.metal`;
/// - `mac-<chip>`: `mac-m4.metal`, `mac-m4pro.metal`, `mac-m4max.metal`, `mac-m3ultra.metal`.
///
/// Sources: EC2 User Guide, "Amazon EC2 Mac instances"
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-mac-instances.html>), and the
/// EC2 API reference `InstanceType` enum (aws-sdk-ec2 1.274 lists exactly the nine above).
/// Matched by shape rather than by list, so a later chip (`mac-m5.metal`) is still a Mac;
/// `machine.large` or `m5.metal` are not (`mac` must be followed by a digit or `-m<digit>`).
pub fn is_mac_instance_type(instance_type: &str) -> bool {
    let lower = instance_type.trim().to_lowercase();
    let family = lower.split('.').next().unwrap_or_default();
    let Some(rest) = family.strip_prefix("mac") else {
        return false;
    };
    let starts_with_digit = |s: &str| s.starts_with(|c: char| c.is_ascii_digit());
    starts_with_digit(rest) || rest.strip_prefix("-m").is_some_and(starts_with_digit)
}

fn ec2_identity(
    platform: Option<&str>,
    instance_type: Option<&str>,
    platform_details: Option<&str>,
    checked: &mut Vec<String>,
) -> Option<Identity> {
    match platform.map(str::trim) {
        Some(p) if p.eq_ignore_ascii_case("windows") => {
            return Some(Identity {
                platform: Platform::Windows,
                os: Some(OperatingSystem::Windows),
                evidence: format!("Platform `{p}`"),
            })
        }
        Some(p) if !p.is_empty() => checked.push(format!("Platform `{p}` (unknown)")),
        _ => checked.push("no Platform".to_string()),
    }
    match instance_type {
        Some(t) if is_mac_instance_type(t) => {
            return Some(Identity {
                platform: Platform::MacOS,
                os: Some(OperatingSystem::MacOs),
                evidence: format!("instance type `{t}` (EC2 Mac)"),
            })
        }
        Some(t) => checked.push(format!("instance type `{t}` (not a Mac)")),
        None => checked.push("no instance type".to_string()),
    }
    match platform_details {
        Some(details) => match lookup(PLATFORM_DETAILS, details) {
            Some((platform, Some(os))) => {
                return Some(Identity {
                    platform,
                    os: Some(os),
                    evidence: format!("PlatformDetails `{details}`"),
                })
            }
            Some((platform, None)) => {
                return Some(Identity {
                    platform,
                    os: None,
                    evidence: format!(
                        "PlatformDetails `{details}`: {platform}, distribution not named by EC2"
                    ),
                })
            }
            None => checked.push(format!("PlatformDetails `{details}` (unknown)")),
        },
        None => checked.push("no PlatformDetails".to_string()),
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

fn managed_identity(
    platform_type: Option<&str>,
    platform_name: Option<&str>,
    platform_version: Option<&str>,
    checked: &mut Vec<String>,
) -> Option<Identity> {
    let named = managed_os(platform_name, platform_version);
    let platform = match platform_type.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if t.eq_ignore_ascii_case("windows") => Some(Platform::Windows),
        Some(t) if t.eq_ignore_ascii_case("linux") => Some(Platform::Linux),
        Some(t) if t.eq_ignore_ascii_case("macos") => Some(Platform::MacOS),
        Some(t) => {
            checked.push(format!("PlatformType `{t}` (unknown)"));
            None
        }
        None => {
            checked.push("no PlatformType".to_string());
            None
        }
    };
    match (platform, named) {
        (Some(platform), Ok(os)) if os.platform() == platform => Some(Identity {
            platform,
            os: Some(os),
            evidence: format!(
                "PlatformType `{}`, PlatformName `{}`",
                platform_type.unwrap_or_default().trim(),
                platform_name.unwrap_or_default()
            ),
        }),
        (Some(platform), named) => {
            let os = match platform {
                Platform::Windows => Some(OperatingSystem::Windows),
                Platform::MacOS => Some(OperatingSystem::MacOs),
                Platform::Linux => None,
            };
            let note = match named {
                Ok(other) => format!("PlatformName names {other}, not a {platform} OS"),
                Err(note) => note,
            };
            let evidence = match os {
                Some(_) => format!(
                    "PlatformType `{}` ({note})",
                    platform_type.unwrap_or_default().trim()
                ),
                None => format!(
                    "PlatformType `{}`: {platform}, distribution not named by SSM ({note})",
                    platform_type.unwrap_or_default().trim()
                ),
            };
            Some(Identity {
                platform,
                os,
                evidence,
            })
        }
        (None, Ok(os)) => Some(Identity {
            platform: os.platform(),
            os: Some(os),
            evidence: format!(
                "PlatformName `{}` ({})",
                platform_name.unwrap_or_default(),
                checked.join(", ")
            ),
        }),
        (None, Err(note)) => {
            checked.push(note);
            None
        }
    }
}

/// The OS the agent's `PlatformName` / `PlatformVersion` name, or what was wrong with them.
fn managed_os(
    platform_name: Option<&str>,
    platform_version: Option<&str>,
) -> Result<OperatingSystem, String> {
    let Some(name) = platform_name else {
        return Err("no PlatformName".to_string());
    };
    let lower = name.trim().to_lowercase();
    if lower.starts_with("amazon linux") {
        return amazon_linux_generation(&lower, platform_version).ok_or_else(|| {
            format!(
                "PlatformName `{name}` with PlatformVersion {} (which Amazon Linux?)",
                platform_version.map_or("absent".to_string(), |v| format!("`{v}`"))
            )
        });
    }
    lookup(PLATFORM_NAMES, name).ok_or_else(|| format!("PlatformName `{name}` (unknown)"))
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
/// familiar name (`Amazon Linux 2`, `RHEL 9`, `Windows Server 2022`, `CentOS 7`).
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
    lookup(PLATFORM_NAMES, value)
}

/// What to do about the patch-group tag given the decision.
///
/// A tag value this stack did not write (no ownership marker: a person's decision; or
/// another stack's marker) is kept unless the policy says `overwrite: true`; one this stack
/// wrote (`patchpilot:managed=<stack>`) is corrected.
pub fn tag_action(
    policy: &Policy,
    owner: &Owner,
    facts: &InstanceFacts,
    decision: &Decision,
) -> TagAction {
    // An empty value is what the console leaves when a person clears the field: it names no
    // group (a window target `tag:<key> = <group>` never selects it), so it is treated as no
    // tag at all.
    let current = facts
        .tag(&policy.tag_key)
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let ownership = owner.ownership(facts.tag(OWNERSHIP_TAG_KEY));
    let owned = ownership.is_ours();
    let wanted = match decision {
        Decision::Gone => return TagAction::Gone,
        Decision::Excluded { reason } => {
            return excluded_action(policy, current, &ownership, reason)
        }
        // Unmatched instances keep whatever tag they have: the facts may be incomplete (a
        // platform EC2 reports in a way not known here), and untagging would silently stop
        // patching.
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
                    set_by: ownership,
                }
            }
        }
    }
}

/// An excluded instance must stop being patched. The maintenance-window targets select
/// `tag:<tag_key> = <group>`, so the exclusion only works once the patch-group tag is gone:
/// patchpilot removes the tag this stack wrote itself (its ownership marker present), and
/// never one a person or another stack set (even with `overwrite: true`) — that one is
/// reported instead.
fn excluded_action(
    policy: &Policy,
    current: Option<&str>,
    ownership: &Ownership,
    reason: &str,
) -> TagAction {
    match current {
        Some(current) if ownership.is_ours() => TagAction::Untag {
            current: current.to_string(),
            reason: format!(
                "excluded: {reason}; removing the {} tag `{current}` (and {OWNERSHIP_TAG_KEY}) that patchpilot set, so no maintenance window patches it",
                policy.tag_key
            ),
        },
        Some(current) => TagAction::Skip {
            reason: format!(
                "excluded ({reason}), but its {} tag `{current}` was set by {}: remove it by hand to stop patching",
                policy.tag_key,
                setter(ownership)
            ),
        },
        None => TagAction::Skip {
            reason: format!("excluded: {reason}"),
        },
    }
}

/// Who set a Patch Group tag this stack does not own, for messages: `a person (no
/// patchpilot:managed tag)` or ``patchpilot stack `other` (patchpilot:managed=other)``.
pub fn setter(ownership: &Ownership) -> String {
    match ownership {
        Ownership::Unmarked => format!("a person (no {OWNERSHIP_TAG_KEY} tag)"),
        other => other.describe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::DEFAULT_STACK;
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
        extra: &[(&str, &str)],
    ) -> InstanceFacts {
        let mut t = tags(extra);
        t.insert("Name".to_string(), name.to_string());
        InstanceFacts {
            instance_id: format!("i-0{:016x}", name.len() * 7919),
            source: FactsSource::Ec2 {
                platform: platform.map(str::to_string),
                platform_details: Some(details.to_string()),
                instance_type: Some(
                    if platform.is_some() {
                        "t3.large"
                    } else {
                        "t3.micro"
                    }
                    .to_string(),
                ),
            },
            name: Some(name.to_string()),
            tags: t,
            state: Some("running".to_string()),
        }
    }

    /// An instance of an AMI whose `PlatformDetails` is `Linux/UNIX` (Amazon Linux, Ubuntu,
    /// CentOS…).
    fn linux(name: &str, extra: &[(&str, &str)]) -> InstanceFacts {
        ec2(name, None, "Linux/UNIX", extra)
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

    /// The article's fleet: six operating systems × {test, prod}, with the PlatformDetails
    /// their public AMIs report, and the OS those name (none for `Linux/UNIX`).
    fn articles_fleet() -> Vec<(InstanceFacts, Platform, Option<OperatingSystem>)> {
        let mut fleet = Vec::new();
        for env in ["Test", "Prod"] {
            let suffix = env.to_lowercase();
            let e = [("Environment", env)];
            fleet.push((
                ec2(
                    &format!("i-windows-{suffix}"),
                    Some("windows"),
                    "Windows",
                    &e,
                ),
                Platform::Windows,
                Some(OperatingSystem::Windows),
            ));
            fleet.push((
                ec2(
                    &format!("i-redhat-linux-{suffix}"),
                    None,
                    "Red Hat Enterprise Linux",
                    &e,
                ),
                Platform::Linux,
                Some(OperatingSystem::RedhatEnterpriseLinux),
            ));
            // Ubuntu (non-Pro), Amazon Linux 2 and CentOS bill as `Linux/UNIX`.
            for stem in ["ubuntu", "amazon", "centos"] {
                fleet.push((
                    linux(&format!("i-{stem}-linux-{suffix}"), &e),
                    Platform::Linux,
                    None,
                ));
            }
            fleet.push((
                ec2(&format!("i-suse-linux-{suffix}"), None, "SUSE Linux", &e),
                Platform::Linux,
                Some(OperatingSystem::Suse),
            ));
        }
        fleet
    }

    #[test]
    fn the_articles_12_instances_get_the_articles_groups() {
        let policy = Policy::reference();
        let fleet = articles_fleet();
        assert_eq!(fleet.len(), 12);
        for (facts, platform, os) in &fleet {
            let name = facts.name.as_deref().unwrap_or_default();
            let env = if name.ends_with("-test") {
                "test"
            } else {
                "prod"
            };
            let batch = if *platform == Platform::Windows { 2 } else { 1 };
            let decision = classify(&policy, facts);
            assert_eq!(
                decision,
                Decision::Group {
                    platform: *platform,
                    os: *os,
                    environment: env.to_string(),
                    batch,
                    batch_name: if batch == 1 { "linux" } else { "windows" }.to_string(),
                    group: PatchGroup::new(env, (6, 0), batch),
                },
                "{name}"
            );
            assert_eq!(
                tag_action(&policy, &Owner::default(), facts, &decision),
                TagAction::Tag {
                    value: format!("patch_{env}_0600_batch_{batch}")
                },
                "{name}"
            );
        }
        // The article's list, verbatim.
        let by_name: BTreeMap<String, String> = fleet
            .iter()
            .map(|(f, _, _)| {
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
            let facts = ec2("app-01", platform, details, &[("Environment", "prod")]);
            match classify(&policy, &facts) {
                Decision::Group {
                    os,
                    batch,
                    batch_name,
                    group,
                    ..
                } => {
                    assert_eq!(os, Some(OperatingSystem::Windows), "{details}");
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
                platform: Platform::Linux,
                os: Some(OperatingSystem::RedhatEnterpriseLinux),
                environment: "prod".to_string(),
                batch: 1,
                batch_name: "linux".to_string(),
                group: PatchGroup::new("prod", (6, 0), 1),
            }
        );
        assert_eq!(
            tag_action(&policy, &Owner::default(), &facts, &decision),
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
            let identity = identify(&facts).expect(pname);
            assert_eq!(identity.os, Some(expected), "{pname} {version}");
            assert_eq!(identity.platform, expected.platform(), "{pname} {version}");
        }
    }

    /// Facts as the EC2 adapter builds them from `DescribeInstances`.
    fn described(
        platform: Option<&str>,
        instance_type: &str,
        details: Option<&str>,
        extra: &[(&str, &str)],
    ) -> InstanceFacts {
        InstanceFacts {
            instance_id: "i-0123456789abcdef0".to_string(),
            source: FactsSource::Ec2 {
                platform: platform.map(str::to_string),
                platform_details: details.map(str::to_string),
                instance_type: Some(instance_type.to_string()),
            },
            name: Some("x-test".to_string()),
            tags: tags(extra),
            state: Some("running".to_string()),
        }
    }

    #[test]
    fn the_platform_comes_from_each_platform_details_value() {
        use OperatingSystem as Os;
        let rhel = Some(Os::RedhatEnterpriseLinux);
        for (details, platform, os) in [
            ("Linux/UNIX", Platform::Linux, None),
            ("SQL Server Standard", Platform::Linux, None),
            ("SQL Server Enterprise", Platform::Linux, None),
            ("SQL Server Web", Platform::Linux, None),
            ("Red Hat Enterprise Linux", Platform::Linux, rhel),
            ("Red Hat Enterprise Linux with HA", Platform::Linux, rhel),
            (
                "Red Hat Enterprise Linux with SQL Server Standard and HA",
                Platform::Linux,
                rhel,
            ),
            ("Red Hat BYOL Linux", Platform::Linux, rhel),
            ("RHEL with HA", Platform::Linux, rhel),
            ("SUSE Linux", Platform::Linux, Some(Os::Suse)),
            ("Ubuntu Pro", Platform::Linux, Some(Os::Ubuntu)),
            ("Ubuntu Pro Linux", Platform::Linux, Some(Os::Ubuntu)),
            ("Windows", Platform::Windows, Some(Os::Windows)),
            ("Windows BYOL", Platform::Windows, Some(Os::Windows)),
            (
                "Windows with SQL Server Enterprise",
                Platform::Windows,
                Some(Os::Windows),
            ),
        ] {
            let identity =
                identify(&described(None, "t3.micro", Some(details), &[])).expect(details);
            assert_eq!(
                (identity.platform, identity.os),
                (platform, os),
                "{details}"
            );
            assert!(
                identity.evidence.contains(details),
                "{details}: {}",
                identity.evidence
            );
        }
        // `Linux/UNIX` says Linux and nothing more: no distribution is guessed.
        let identity = identify(&described(None, "t3.micro", Some("Linux/UNIX"), &[])).unwrap();
        assert_eq!(
            identity.evidence,
            "PlatformDetails `Linux/UNIX`: Linux, distribution not named by EC2"
        );
        // `Platform` = `windows` decides even without PlatformDetails.
        let identity = identify(&described(Some("windows"), "t3.large", None, &[])).unwrap();
        assert_eq!(
            (identity.platform, identity.os),
            (Platform::Windows, Some(Os::Windows))
        );
    }

    #[test]
    fn linux_unix_instances_get_the_linux_batch_without_a_distribution() {
        let policy = Policy::reference();
        let facts = linux("web-test", &[]);
        assert_eq!(
            classify(&policy, &facts),
            Decision::Group {
                platform: Platform::Linux,
                os: None,
                environment: "test".to_string(),
                batch: 1,
                batch_name: "linux".to_string(),
                group: PatchGroup::new("test", (6, 0), 1),
            }
        );
    }

    #[test]
    fn mac_instance_types_are_macos_whatever_platform_details_say() {
        for instance_type in [
            "mac1.metal",
            "mac2.metal",
            "mac2-m2.metal",
            "mac2-m2pro.metal",
            "mac2-m1ultra.metal",
            "mac-m4.metal",
            "mac-m4pro.metal",
            "mac-m4max.metal",
            "mac-m3ultra.metal",
            "MAC-M4PRO.METAL",
        ] {
            // macOS AMIs bill as `Linux/UNIX`.
            let identity =
                identify(&described(None, instance_type, Some("Linux/UNIX"), &[])).unwrap();
            assert_eq!(
                (identity.platform, identity.os),
                (Platform::MacOS, Some(OperatingSystem::MacOs)),
                "{instance_type}"
            );
            assert!(identity.evidence.contains(instance_type), "{identity:?}");
        }
        for instance_type in [
            "m5.large",
            "t3.micro",
            "machine.large",
            "c7g.metal",
            "mac.metal",
            "mac-x.metal",
            "macm4.metal",
            "m4.metal",
        ] {
            let identity =
                identify(&described(None, instance_type, Some("Linux/UNIX"), &[])).unwrap();
            assert_eq!(identity.platform, Platform::Linux, "{instance_type}");
        }
        // The reference policy has no MacOS batch: unmatched, saying why.
        let policy = Policy::reference();
        let reason = unmatched_reason(classify(
            &policy,
            &described(None, "mac2.metal", Some("Linux/UNIX"), &[]),
        ));
        assert!(
            reason.contains("no batch for platform MacOS") && reason.contains("mac2.metal"),
            "{reason}"
        );
    }

    #[test]
    fn is_mac_instance_type_knows_both_naming_schemes() {
        for mac in [
            "mac1.metal",
            "mac2.metal",
            "mac2-m2.metal",
            "mac2-m2pro.metal",
            "mac2-m1ultra.metal",
            "mac-m4.metal",
            "mac-m4pro.metal",
            "mac-m4max.metal",
            "mac-m3ultra.metal",
            " mac-m4.metal ",
        ] {
            assert!(is_mac_instance_type(mac), "{mac}");
        }
        for other in [
            "",
            "mac",
            "mac-",
            "mac-m",
            "machine.large",
            "m4.metal",
            "mac-x1.metal",
        ] {
            assert!(!is_mac_instance_type(other), "{other}");
        }
    }

    #[test]
    fn managed_nodes_get_their_platform_from_platform_type() {
        for (ptype, pname, platform, os) in [
            (
                "Linux",
                "Ubuntu",
                Platform::Linux,
                Some(OperatingSystem::Ubuntu),
            ),
            ("Linux", "Gentoo", Platform::Linux, None),
            (
                "Windows",
                "Microsoft Windows Server 2022 Datacenter",
                Platform::Windows,
                Some(OperatingSystem::Windows),
            ),
            (
                "MacOS",
                "macOS",
                Platform::MacOS,
                Some(OperatingSystem::MacOs),
            ),
            // No PlatformType: the OS the name names decides.
            (
                "",
                "Red Hat Enterprise Linux",
                Platform::Linux,
                Some(OperatingSystem::RedhatEnterpriseLinux),
            ),
        ] {
            let identity = identify(&managed("node", ptype, pname, "1", &[])).expect(pname);
            assert_eq!((identity.platform, identity.os), (platform, os), "{pname}");
        }
        let identity = identify(&managed("node", "Linux", "Gentoo", "2.14", &[])).unwrap();
        assert!(
            identity
                .evidence
                .contains("Linux, distribution not named by SSM")
                && identity.evidence.contains("Gentoo"),
            "{}",
            identity.evidence
        );
        // On-prem `mi-*` nodes are classified like EC2 instances.
        let policy = Policy::reference();
        let facts = managed("build-test", "Windows", "Microsoft Windows", "10", &[]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_test_0600_batch_2"
        );
    }

    #[test]
    fn an_os_tag_names_the_distribution_but_never_the_platform_against_aws() {
        let facts = linux("x", &[("OS", "Amazon Linux 2023")]);
        let identity = identify(&facts).unwrap();
        assert_eq!(
            (identity.platform, identity.os),
            (Platform::Linux, Some(OperatingSystem::AmazonLinux2023))
        );
        assert!(
            identity
                .evidence
                .contains("OS from tag OS `Amazon Linux 2023`"),
            "{}",
            identity.evidence
        );
        for (key, value, os) in [
            (
                "OS",
                "redhat_enterprise_linux",
                OperatingSystem::RedhatEnterpriseLinux,
            ),
            ("os", "rhel", OperatingSystem::RedhatEnterpriseLinux),
            ("OS", "CentOS 7", OperatingSystem::Centos),
            ("OS", "amazon-linux-2", OperatingSystem::AmazonLinux2),
        ] {
            assert_eq!(
                identify(&linux("x", &[(key, value)])).unwrap().os,
                Some(os),
                "{value}"
            );
        }
        // A tag of another platform does not move a Linux/UNIX instance to Windows.
        let identity = identify(&linux("x", &[("OS", "WINDOWS")])).unwrap();
        assert_eq!((identity.platform, identity.os), (Platform::Linux, None));
        assert!(
            identity.evidence.contains("tag OS `WINDOWS` ignored"),
            "{}",
            identity.evidence
        );
        // What the billing code names wins over a contradicting tag.
        let facts = ec2("x", Some("windows"), "Windows", &[("OS", "UBUNTU")]);
        assert_eq!(identify(&facts).unwrap().os, Some(OperatingSystem::Windows));
        // When AWS names no platform, the tag is the last resort.
        let identity = identify(&described(None, "t3.micro", None, &[("OS", "UBUNTU")])).unwrap();
        assert_eq!(
            (identity.platform, identity.os),
            (Platform::Linux, Some(OperatingSystem::Ubuntu))
        );
    }

    #[test]
    fn an_unknown_platform_is_unmatched_with_the_reason() {
        let policy = Policy::reference();
        let facts = described(None, "t3.micro", Some("Plan 9"), &[]);
        let reason = unmatched_reason(classify(&policy, &facts));
        for part in [
            "platform not recognised",
            "no Platform",
            "instance type `t3.micro` (not a Mac)",
            "PlatformDetails `Plan 9` (unknown)",
            "no OS tag",
            "OS=",
        ] {
            assert!(reason.contains(part), "missing {part}: {reason}");
        }
        let facts = described(None, "t3.micro", None, &[("OS", "plan9")]);
        let reason = unmatched_reason(classify(&policy, &facts));
        assert!(
            reason.contains("no PlatformDetails")
                && reason.contains("tag OS `plan9` (not an OS name)"),
            "{reason}"
        );
        let facts = managed("node-test", "Solaris", "Amazon Linux", "", &[]);
        let reason = unmatched_reason(classify(&policy, &facts));
        assert!(
            reason.contains("PlatformType `Solaris` (unknown)")
                && reason.contains("which Amazon Linux"),
            "{reason}"
        );
        assert!(matches!(
            tag_action(&policy, &Owner::default(), &facts, &classify(&policy, &facts)),
            TagAction::Skip { reason } if reason.starts_with("unmatched:")
        ));
    }

    #[test]
    fn an_excluded_instance_is_skipped_with_the_reason() {
        let policy = Policy::reference();
        let facts = linux(
            "i-amazon-linux-prod",
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
        match tag_action(&policy, &Owner::default(), &facts, &decision) {
            TagAction::Skip { reason } => {
                assert!(reason.contains("patchpilot:exclude"), "{reason}")
            }
            other => panic!("expected skip, got {other:?}"),
        }
        // Any value excludes, even an empty one.
        let facts = linux("x-prod", &[("patchpilot:exclude", "")]);
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
            &[
                ("Environment", "prod"),
                ("Patch Group", "patch_prod_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, DEFAULT_STACK),
                ("patchpilot:exclude", "fragile, patched by hand"),
            ],
        );
        let action = tag_action(
            &policy,
            &Owner::default(),
            &facts,
            &classify(&policy, &facts),
        );
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
            &[
                ("PatchGroup", "dba-special"),
                (OWNERSHIP_TAG_KEY, DEFAULT_STACK),
                ("patchpilot:exclude", ""),
            ],
        );
        assert!(matches!(
            tag_action(&policy, &Owner::default(), &facts, &classify(&policy, &facts)),
            TagAction::Untag { current, .. } if current == "dba-special"
        ));
    }

    #[test]
    fn an_excluded_instance_with_a_manual_tag_keeps_it_and_says_so() {
        let mut policy = Policy::reference();
        let facts = linux(
            "i-rhel-prod",
            &[
                ("Patch Group", "dba-special"),
                ("patchpilot:exclude", "yes"),
            ],
        );
        for overwrite in [false, true] {
            policy.overwrite = overwrite;
            match tag_action(
                &policy,
                &Owner::default(),
                &facts,
                &classify(&policy, &facts),
            ) {
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
        // A marker with another value than this stack's name is not this stack's marker,
        // not even the `true` older versions wrote.
        let facts = linux(
            "i-rhel-prod",
            &[
                ("Patch Group", "patch_prod_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, "true"),
                ("patchpilot:exclude", "yes"),
            ],
        );
        assert!(matches!(
            tag_action(&policy, &Owner::default(), &facts, &classify(&policy, &facts)),
            TagAction::Skip { reason } if reason.contains("set by an older patchpilot (patchpilot:managed=true")
        ));
    }

    #[test]
    fn an_excluded_instance_without_a_patch_group_value_needs_nothing_removed() {
        let policy = Policy::reference();
        for extra in [
            // Marker alone: no target selects the instance.
            vec![(OWNERSHIP_TAG_KEY, DEFAULT_STACK)],
            // An emptied value names no group either.
            vec![("Patch Group", " "), (OWNERSHIP_TAG_KEY, DEFAULT_STACK)],
            vec![],
        ] {
            let mut tags = extra.clone();
            tags.push(("patchpilot:exclude", "yes"));
            let facts = linux("web-prod", &tags);
            match tag_action(
                &policy,
                &Owner::default(),
                &facts,
                &classify(&policy, &facts),
            ) {
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
            &[
                ("Patch Group", "patch_test_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, DEFAULT_STACK),
            ],
        );
        assert!(matches!(
            tag_action(&policy, &Owner::default(), &facts, &classify(&policy, &facts)),
            TagAction::Skip { reason } if reason.starts_with("unmatched:")
        ));
    }

    #[test]
    fn a_terminated_excluded_instance_is_gone_not_untagged() {
        let policy = Policy::reference();
        let mut facts = linux(
            "web-prod",
            &[
                ("Patch Group", "patch_prod_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, DEFAULT_STACK),
                ("patchpilot:exclude", "yes"),
            ],
        );
        facts.state = Some("terminated".to_string());
        assert_eq!(
            tag_action(
                &policy,
                &Owner::default(),
                &facts,
                &classify(&policy, &facts)
            ),
            TagAction::Gone
        );
    }

    #[test]
    fn another_stacks_patch_group_tag_is_kept_like_a_persons() {
        let mut policy = Policy::reference();
        let facts = linux(
            "i-ubuntu-linux-prod",
            &[
                ("Environment", "prod"),
                ("Patch Group", "patch_dev_0300_batch_1"),
                (OWNERSHIP_TAG_KEY, "patchpilot-dev"),
            ],
        );
        let decision = classify(&policy, &facts);
        assert_eq!(
            tag_action(&policy, &Owner::default(), &facts, &decision),
            TagAction::RespectManual {
                current: "patch_dev_0300_batch_1".to_string(),
                wanted: "patch_prod_0600_batch_1".to_string(),
                set_by: Ownership::Stack("patchpilot-dev".to_string()),
            }
        );
        // The stack that wrote it corrects it.
        assert_eq!(
            tag_action(&policy, &Owner::new("patchpilot-dev"), &facts, &decision),
            TagAction::Tag {
                value: "patch_prod_0600_batch_1".to_string()
            }
        );
        // Excluded: another stack's tag is not removed, and the reason says whose it is.
        let excluded = linux(
            "i-ubuntu-linux-prod",
            &[
                ("Environment", "prod"),
                ("Patch Group", "patch_dev_0300_batch_1"),
                (OWNERSHIP_TAG_KEY, "patchpilot-dev"),
                ("patchpilot:exclude", "yes"),
            ],
        );
        match tag_action(
            &policy,
            &Owner::default(),
            &excluded,
            &classify(&policy, &excluded),
        ) {
            TagAction::Skip { reason } => {
                assert!(reason.contains("stack `patchpilot-dev`"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // overwrite: true replaces it, as it would a person's.
        policy.overwrite = true;
        assert!(matches!(
            tag_action(&policy, &Owner::default(), &facts, &decision),
            TagAction::Tag { .. }
        ));
    }

    #[test]
    fn a_manual_patch_group_tag_is_respected_unless_overwrite() {
        let mut policy = Policy::reference();
        let facts = linux(
            "i-ubuntu-linux-prod",
            &[("Environment", "prod"), ("Patch Group", "dba-special")],
        );
        let decision = classify(&policy, &facts);
        assert_eq!(
            tag_action(&policy, &Owner::default(), &facts, &decision),
            TagAction::RespectManual {
                current: "dba-special".to_string(),
                wanted: "patch_prod_0600_batch_1".to_string(),
                set_by: Ownership::Unmarked,
            }
        );
        policy.overwrite = true;
        assert_eq!(
            tag_action(&policy, &Owner::default(), &facts, &decision),
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
            &[
                ("Environment", "prod"),
                ("Patch Group", "patch_test_0600_batch_1"),
                (OWNERSHIP_TAG_KEY, DEFAULT_STACK),
            ],
        );
        let decision = classify(&policy, &facts);
        assert_eq!(
            tag_action(&policy, &Owner::default(), &facts, &decision),
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
            &[
                ("Environment", "test"),
                ("Patch Group", "patch_test_0600_batch_1"),
            ],
        );
        assert_eq!(
            tag_action(
                &policy,
                &Owner::default(),
                &facts,
                &classify(&policy, &facts)
            ),
            TagAction::Unchanged
        );
        // An emptied tag names no group: it is filled in.
        let facts = linux("i-amazon-linux-test", &[("Patch Group", " ")]);
        assert_eq!(
            tag_action(
                &policy,
                &Owner::default(),
                &facts,
                &classify(&policy, &facts)
            ),
            TagAction::Tag {
                value: "patch_test_0600_batch_1".to_string()
            }
        );
    }

    #[test]
    fn the_tag_key_comes_from_the_policy() {
        let mut policy = Policy::reference();
        policy.tag_key = "PatchGroup".to_string();
        let facts = linux("web-test", &[("Patch Group", "patch_test_0600_batch_1")]);
        assert_eq!(
            tag_action(
                &policy,
                &Owner::default(),
                &facts,
                &classify(&policy, &facts)
            ),
            TagAction::Tag {
                value: "patch_test_0600_batch_1".to_string()
            }
        );
    }

    #[test]
    fn environment_tag_wins_over_the_name_suffix() {
        let policy = Policy::reference();
        // Named like prod, tagged test (values compared case-insensitively): test.
        let facts = linux("web-prod", &[("Environment", "TEST")]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_test_0600_batch_1"
        );
        // `production` is one of prod's values.
        let facts = linux("web-test", &[("Environment", "Production")]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_prod_0600_batch_1"
        );
        // No tag: the suffix decides, case-insensitively.
        let facts = linux("WEB-PROD", &[]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_prod_0600_batch_1"
        );
        // The tag key is exact: `environment` is not `Environment`.
        let facts = linux("web-prod", &[("environment", "test")]);
        assert_eq!(
            group_of(&classify(&policy, &facts)),
            "patch_prod_0600_batch_1"
        );
    }

    #[test]
    fn an_instance_in_no_environment_is_unmatched_with_what_was_checked() {
        let policy = Policy::reference();
        let facts = linux("jumphost", &[("Environment", "staging")]);
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
        let facts = ec2("jumphost", Some("windows"), "Windows", &[]);
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
            let mut facts = linux("i-amazon-linux-test", &[("Environment", "test")]);
            facts.state = Some(state.to_string());
            let decision = classify(&policy, &facts);
            assert_eq!(decision, Decision::Gone, "{state}");
            assert_eq!(
                tag_action(&policy, &Owner::default(), &facts, &decision),
                TagAction::Gone
            );
        }
        // Stopped instances are still patched when they next run: tag them.
        let mut facts = linux("i-amazon-linux-test", &[]);
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
        let facts = ec2("app-test", Some("windows"), "Windows", &[]);
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
        let facts = linux("web-test", &[]);
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
