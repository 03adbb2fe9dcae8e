//! Coverage: for every EC2 instance and SSM managed node, will Patch Manager actually patch
//! it, with which baseline — and if not, why not, in one sentence an operator can act on.
//!
//! Pure and synchronous: `aws::coverage` gathers a [`CoverageInput`] (EC2
//! `DescribeInstances`, SSM `DescribeInstanceInformation`, `DescribePatchGroups`,
//! `GetDefaultPatchBaseline`, `DescribeInstancePatchStates`, `GetServiceSetting`), [`assess`]
//! decides one [`Verdict`] per host. The first rule that applies decides:
//!
//! | # | verdict | when |
//! |---|---|---|
//! | 1 | [`Verdict::Excluded`] | the policy's exclusion tag is present |
//! | 2 | [`Verdict::MissedWindow`] | stopped (EC2 `stopped`/`stopping`), in a patch group, and its environment's last window started after its last patch operation (or it has none) |
//! | 3 | [`Verdict::NotManaged`] | not listed by `DescribeInstanceInformation` (never registered: no SSM Agent, no instance profile / DHMC), or `PingStatus` not `Online` (and not stopped) |
//! | 4 | [`Verdict::Unmatched`] | no patch-group tag (with what the auto-tagger would decide), or a tag that names no group of the policy |
//! | 5 | [`Verdict::DefaultBaseline`] | the baseline SSM resolves for its group and OS is the account's default for that OS: the policy has no baseline for the OS, or it is not registered yet |
//! | 6 | [`Verdict::Covered`] | otherwise |
//!
//! Which baseline SSM uses: the one registered for the node's patch group *and* its OS, else
//! the account's default baseline for the OS (SSM User Guide, "Patch groups": "If a managed
//! node isn't a member of a patch group, or the group has no baseline for its operating
//! system, Patch Manager uses the default patch baseline for that operating system"; API
//! reference `GetPatchBaselineForPatchGroup`, `GetDefaultPatchBaseline`).
//!
//! Terminated and shutting-down instances are left out (EC2 lists them for about an hour).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::classify::{classify, identify, Decision, FactsSource, InstanceFacts};
use crate::names::PatchGroup;
use crate::policy::{OperatingSystem, Policy};
use crate::schedule::{parse_timezone, Schedule};

/// What SSM `DescribeInstanceInformation` says about a managed node (API reference,
/// `InstanceInformation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SsmInfo {
    /// `Online`, `ConnectionLost` or `Inactive`.
    pub ping_status: String,
    pub last_ping: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    /// `Windows`, `Linux` or `MacOS`.
    pub platform_type: Option<String>,
    /// The OS name the agent reports, e.g. `Amazon Linux`, `Debian GNU/Linux`.
    pub platform_name: Option<String>,
    pub platform_version: Option<String>,
}

impl SsmInfo {
    fn online(&self) -> bool {
        self.ping_status.eq_ignore_ascii_case("Online")
    }
}

/// One host: its EC2 (or, for `mi-*` nodes, SSM) facts and, when SSM manages it, its
/// `InstanceInformation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub facts: InstanceFacts,
    pub ssm: Option<SsmInfo>,
}

/// The last patch operation SSM recorded for a node (`DescribeInstancePatchStates`,
/// `InstancePatchState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchState {
    pub baseline_id: String,
    pub patch_group: Option<String>,
    /// `Scan` or `Install`.
    pub operation: String,
    pub operation_end: DateTime<Utc>,
    pub missing: i32,
    pub failed: i32,
    pub installed_pending_reboot: i32,
}

impl PatchState {
    /// Compliant: nothing approved is missing or failed, no reboot pending (what the console
    /// calls "Compliant" for a patch baseline's compliance).
    pub fn compliant(&self) -> bool {
        self.missing == 0 && self.failed == 0 && self.installed_pending_reboot == 0
    }
}

/// The patch-group registrations and the account's default baselines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baselines {
    /// `DescribePatchGroups`: (patch group, the baseline's OS) → baseline id.
    pub registered: BTreeMap<(String, OperatingSystem), String>,
    /// `GetDefaultPatchBaseline` per OS: the baseline id (an ARN for AWS's predefined ones).
    pub defaults: BTreeMap<OperatingSystem, String>,
}

/// Default Host Management Configuration: the service setting
/// `/ssm/managed-instance/default-ec2-instance-management-role` (SSM User Guide, "Default
/// Host Management Configuration"; `$None` when off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum HostManagement {
    /// On: EC2 instances get SSM permissions from this role, no instance profile needed.
    On {
        role: String,
    },
    Off,
    /// The setting could not be read (its reason).
    Unknown {
        reason: String,
    },
}

impl HostManagement {
    /// From the setting's value.
    pub fn from_setting(value: &str) -> HostManagement {
        let value = value.trim();
        if value.is_empty() || value == "$None" {
            HostManagement::Off
        } else {
            HostManagement::On {
                role: value.to_string(),
            }
        }
    }
}

impl fmt::Display for HostManagement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostManagement::On { role } => write!(f, "on (role {role})"),
            HostManagement::Off => f.write_str(
                "off: EC2 instances need an instance profile with SSM permissions to be managed",
            ),
            HostManagement::Unknown { reason } => write!(f, "unknown ({reason})"),
        }
    }
}

/// Everything [`assess`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageInput {
    pub hosts: Vec<Host>,
    pub patch_states: BTreeMap<String, PatchState>,
    pub baselines: Baselines,
    pub host_management: HostManagement,
}

/// Where the baseline SSM uses for a node comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineSource {
    /// Registered for the node's patch group and OS.
    PatchGroup,
    /// The account's default baseline for the OS.
    AccountDefault,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveBaseline {
    /// `None`: the account's default for the OS was not read.
    pub id: Option<String>,
    pub source: BaselineSource,
}

/// Why SSM does not manage a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Unmanaged {
    /// Not in `DescribeInstanceInformation`: no agent, no permissions, or never started.
    NeverRegistered,
    /// Registered, but the agent stopped answering.
    ConnectionLost {
        ping_status: String,
        since: Option<DateTime<Utc>>,
    },
}

/// The verdict on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    Covered,
    NotManaged(Unmanaged),
    /// SSM patches it with the account's default baseline for `os`.
    DefaultBaseline {
        os: OperatingSystem,
        /// The policy has rules for the OS (they are just not registered for the group).
        in_policy: bool,
    },
    /// Stopped through its environment's last window.
    MissedWindow {
        window: DateTime<Utc>,
    },
    /// No patch group, or one the policy does not define.
    Unmatched {
        reason: String,
    },
    Excluded {
        reason: String,
    },
}

/// The verdicts, for counting and filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Covered,
    NotManaged,
    DefaultBaseline,
    MissedWindow,
    Unmatched,
    Excluded,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 6] = [
        VerdictKind::Covered,
        VerdictKind::NotManaged,
        VerdictKind::DefaultBaseline,
        VerdictKind::MissedWindow,
        VerdictKind::Unmatched,
        VerdictKind::Excluded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Covered => "covered",
            VerdictKind::NotManaged => "not-managed",
            VerdictKind::DefaultBaseline => "default-baseline",
            VerdictKind::MissedWindow => "missed-window",
            VerdictKind::Unmatched => "unmatched",
            VerdictKind::Excluded => "excluded",
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Verdict {
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Covered => VerdictKind::Covered,
            Verdict::NotManaged(_) => VerdictKind::NotManaged,
            Verdict::DefaultBaseline { .. } => VerdictKind::DefaultBaseline,
            Verdict::MissedWindow { .. } => VerdictKind::MissedWindow,
            Verdict::Unmatched { .. } => VerdictKind::Unmatched,
            Verdict::Excluded { .. } => VerdictKind::Excluded,
        }
    }
}

/// One host's coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostCoverage {
    pub instance_id: String,
    pub name: Option<String>,
    /// EC2 state; `None` for `mi-*` nodes.
    pub state: Option<String>,
    pub managed: bool,
    pub ping_status: Option<String>,
    pub last_ping: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    /// `PlatformName PlatformVersion` as SSM reports it (managed nodes only).
    pub platform: Option<String>,
    pub os: Option<OperatingSystem>,
    pub patch_group: Option<String>,
    /// The `patchpilot:os` tag (`crate::promotion::OS_TAG_KEY`) the node carries, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_tag: Option<String>,
    pub baseline: Option<EffectiveBaseline>,
    pub last_operation: Option<PatchState>,
    pub verdict: Verdict,
    /// One operator-facing sentence.
    pub message: String,
}

/// The fleet's coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub hosts: Vec<HostCoverage>,
    /// Hosts per verdict (every verdict present, zeros included).
    pub counts: BTreeMap<VerdictKind, u32>,
    /// OSes found on managed nodes that the policy has no baseline for.
    pub suggested_baselines: Vec<OperatingSystem>,
    pub host_management: HostManagement,
}

impl Coverage {
    /// Hosts that are not covered (excluded ones included: someone decided, but it is said).
    pub fn uncovered(&self) -> impl Iterator<Item = &HostCoverage> {
        self.hosts
            .iter()
            .filter(|h| h.verdict.kind() != VerdictKind::Covered)
    }

    pub fn count(&self, kind: VerdictKind) -> u32 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }
}

/// One host that is not covered, for logs and the sync result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UncoveredHost {
    pub instance_id: String,
    pub name: Option<String>,
    pub verdict: VerdictKind,
    pub message: String,
}

/// The coverage without the covered hosts: what baseline-sync logs and returns (its size
/// grows with the problems, not with the fleet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageSummary {
    pub hosts: usize,
    pub counts: BTreeMap<VerdictKind, u32>,
    pub uncovered: Vec<UncoveredHost>,
    pub suggested_baselines: Vec<OperatingSystem>,
    pub host_management: HostManagement,
}

impl Coverage {
    pub fn summary(&self) -> CoverageSummary {
        CoverageSummary {
            hosts: self.hosts.len(),
            counts: self.counts.clone(),
            uncovered: self
                .uncovered()
                .map(|h| UncoveredHost {
                    instance_id: h.instance_id.clone(),
                    name: h.name.clone(),
                    verdict: h.verdict.kind(),
                    message: h.message.clone(),
                })
                .collect(),
            suggested_baselines: self.suggested_baselines.clone(),
            host_management: self.host_management.clone(),
        }
    }
}

impl CoverageSummary {
    pub fn count(&self, kind: VerdictKind) -> u32 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }
}

/// The OS of a host: as SSM reports it when managed (`PlatformName`/`PlatformVersion`, the
/// mapping of [`crate::classify`]), else what EC2's facts (and the `OS` tag hint) name.
pub fn host_os(host: &Host) -> Option<OperatingSystem> {
    if let Some(ssm) = &host.ssm {
        let facts = InstanceFacts {
            source: FactsSource::ManagedInstance {
                platform_type: ssm.platform_type.clone(),
                platform_name: ssm.platform_name.clone(),
                platform_version: ssm.platform_version.clone(),
            },
            ..host.facts.clone()
        };
        if let Some(os) = identify(&facts).ok().and_then(|i| i.os) {
            return Some(os);
        }
    }
    identify(&host.facts).ok().and_then(|i| i.os)
}

/// The OSes whose default baseline and registrations matter: those of managed hosts.
pub fn oses_present(hosts: &[Host]) -> BTreeSet<OperatingSystem> {
    hosts
        .iter()
        .filter(|h| h.ssm.is_some())
        .filter_map(host_os)
        .collect()
}

/// Hosts whose last patch operation [`assess`] needs: those with a patch-group tag that are
/// managed or stopped (the others' verdict does not depend on it).
pub fn needs_patch_state(policy: &Policy, host: &Host) -> bool {
    patch_group_tag(policy, &host.facts).is_some() && (host.ssm.is_some() || is_stopped(host))
}

/// The start of each environment's most recent window run at or before `now` (UTC), for the
/// missed-window verdict. Environments whose schedule or time zone does not parse, or that
/// have not run in the last 400 days, are absent.
pub fn last_windows(policy: &Policy, now: DateTime<Utc>) -> BTreeMap<String, DateTime<Utc>> {
    let mut out = BTreeMap::new();
    for env in &policy.environments {
        let (Ok(schedule), Ok(tz)) = (
            Schedule::parse(&env.window.schedule),
            parse_timezone(&env.window.timezone),
        ) else {
            continue;
        };
        let offset = env.window.offset_days.unwrap_or(0);
        let mut cursor = now - Duration::days(400);
        let mut last = None;
        // At most 4 × 1000 runs (a daily window over 400 days needs one batch).
        for _ in 0..4 {
            let runs = schedule.next_runs(1000, cursor, tz, offset);
            let Some(end) = runs.last() else { break };
            let end = end.with_timezone(&Utc);
            last = runs
                .iter()
                .rev()
                .map(|r| r.with_timezone(&Utc))
                .find(|r| *r <= now)
                .or(last);
            if end > now || runs.len() < 1000 {
                break;
            }
            cursor = end;
        }
        if let Some(last) = last {
            out.insert(env.name.clone(), last);
        }
    }
    out
}

fn is_stopped(host: &Host) -> bool {
    matches!(host.facts.state.as_deref(), Some("stopped" | "stopping"))
}

fn patch_group_tag(policy: &Policy, facts: &InstanceFacts) -> Option<String> {
    facts
        .tag(&policy.tag_key)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

use crate::wording::{self, time};

/// Decide every host's verdict. `now` anchors the missed-window check.
pub fn assess(policy: &Policy, input: &CoverageInput, now: DateTime<Utc>) -> Coverage {
    let windows = last_windows(policy, now);
    let mut hosts = Vec::with_capacity(input.hosts.len());
    for host in &input.hosts {
        if matches!(
            host.facts.state.as_deref(),
            Some("terminated" | "shutting-down")
        ) {
            continue;
        }
        hosts.push(assess_host(policy, input, &windows, host));
    }
    hosts.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let mut counts: BTreeMap<VerdictKind, u32> = VerdictKind::ALL.iter().map(|k| (*k, 0)).collect();
    for h in &hosts {
        *counts.entry(h.verdict.kind()).or_insert(0) += 1;
    }
    let in_policy: BTreeSet<OperatingSystem> = policy.baselines.iter().map(|b| b.os).collect();
    let suggested_baselines = hosts
        .iter()
        .filter(|h| h.managed)
        .filter_map(|h| h.os)
        .filter(|os| !in_policy.contains(os))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Coverage {
        hosts,
        counts,
        suggested_baselines,
        host_management: input.host_management.clone(),
    }
}

fn assess_host(
    policy: &Policy,
    input: &CoverageInput,
    windows: &BTreeMap<String, DateTime<Utc>>,
    host: &Host,
) -> HostCoverage {
    let facts = &host.facts;
    let os = host_os(host);
    let group = patch_group_tag(policy, facts);
    let last_operation = input.patch_states.get(&facts.instance_id).cloned();
    let baseline = match (&host.ssm, os) {
        (Some(_), Some(os)) => Some(effective_baseline(&input.baselines, group.as_deref(), os)),
        _ => None,
    };
    let who = match facts.display_name() {
        Some(name) => format!("{} ({name})", facts.instance_id),
        None => facts.instance_id.clone(),
    };
    let (verdict, message) = verdict(
        policy,
        host,
        &who,
        os,
        group.as_deref(),
        baseline.as_ref(),
        last_operation.as_ref(),
        windows,
    );
    HostCoverage {
        instance_id: facts.instance_id.clone(),
        name: facts.display_name().map(str::to_string),
        state: facts.state.clone(),
        managed: host.ssm.is_some(),
        ping_status: host.ssm.as_ref().map(|s| s.ping_status.clone()),
        last_ping: host.ssm.as_ref().and_then(|s| s.last_ping),
        agent_version: host.ssm.as_ref().and_then(|s| s.agent_version.clone()),
        platform: host.ssm.as_ref().and_then(|s| {
            let name = s.platform_name.as_deref()?;
            Some(match s.platform_version.as_deref() {
                Some(v) => format!("{name} {v}"),
                None => name.to_string(),
            })
        }),
        os,
        patch_group: group,
        os_tag: facts.tag(crate::promotion::OS_TAG_KEY).map(str::to_string),
        baseline,
        last_operation,
        verdict,
        message,
    }
}

fn effective_baseline(
    baselines: &Baselines,
    group: Option<&str>,
    os: OperatingSystem,
) -> EffectiveBaseline {
    if let Some(id) = group.and_then(|g| baselines.registered.get(&(g.to_string(), os))) {
        return EffectiveBaseline {
            id: Some(id.clone()),
            source: BaselineSource::PatchGroup,
        };
    }
    EffectiveBaseline {
        id: baselines.defaults.get(&os).cloned(),
        source: BaselineSource::AccountDefault,
    }
}

#[allow(clippy::too_many_arguments)]
fn verdict(
    policy: &Policy,
    host: &Host,
    who: &str,
    os: Option<OperatingSystem>,
    group: Option<&str>,
    baseline: Option<&EffectiveBaseline>,
    last_operation: Option<&PatchState>,
    windows: &BTreeMap<String, DateTime<Utc>>,
) -> (Verdict, String) {
    let facts = &host.facts;
    // 1. Excluded.
    if let Some(value) = facts.tag(&policy.exclude_tag) {
        let reason = format!("tag `{}` is present (value `{value}`)", policy.exclude_tag);
        let message = format!(
            "{who} is excluded ({reason}): patchpilot never tags or patches it; remove the tag to include it"
        );
        return (Verdict::Excluded { reason }, message);
    }
    // 2. Stopped through its environment's last window.
    if is_stopped(host) {
        let window = group
            .and_then(|g| g.parse::<PatchGroup>().ok())
            .and_then(|g| windows.get(&g.environment).copied());
        if let Some(window) = window {
            let patched_since = last_operation.is_some_and(|s| s.operation_end >= window);
            if !patched_since {
                let last = match last_operation {
                    Some(s) => format!("its last patch operation ended {}", time(&s.operation_end)),
                    None => "it has no recorded patch operation".to_string(),
                };
                let message = format!(
                    "{who} was {} ({last}); start it and run AWS-RunPatchBaseline, or it stays unpatched until a window finds it running",
                    wording::not_running_through_window("stopped", Some(&window))
                );
                return (Verdict::MissedWindow { window }, message);
            }
        }
    }
    // 3. Not managed.
    let ssm = match &host.ssm {
        None => {
            let message = format!(
                "{who} is {}, so no maintenance window can patch it; install the agent and grant it AmazonSSMManagedInstanceCore",
                wording::never_registered()
            );
            return (Verdict::NotManaged(Unmanaged::NeverRegistered), message);
        }
        Some(ssm) => ssm,
    };
    if !ssm.online() && !is_stopped(host) {
        let message = format!(
            "{who} is {}, so its windows' commands are undeliverable; check the agent and its network path to SSM",
            wording::connection_lost(&ssm.ping_status, ssm.last_ping.as_ref())
        );
        return (
            Verdict::NotManaged(Unmanaged::ConnectionLost {
                ping_status: ssm.ping_status.clone(),
                since: ssm.last_ping,
            }),
            message,
        );
    }
    // 4. Untagged or unmatched.
    let Some(group) = group else {
        let reason = match classify(policy, facts) {
            Decision::Group { group, .. } => format!(
                "it has no `{}` tag yet (the auto-tagger would tag it {group}; baseline-sync's sweep will)",
                policy.tag_key
            ),
            Decision::Unmatched { reason } => {
                format!("it has no `{}` tag: {reason}", policy.tag_key)
            }
            Decision::Excluded { reason } => reason,
            Decision::Gone => "it is terminated".to_string(),
        };
        let message = format!("{who} is in no patch group, so no window targets it: {reason}");
        return (Verdict::Unmatched { reason }, message);
    };
    let parsed = group.parse::<PatchGroup>().ok();
    let defined = parsed.as_ref().is_some_and(|g| {
        policy.environment(&g.environment).is_some() && policy.batches.len() >= g.batch as usize
    });
    if !defined {
        let reason = format!(
            "its `{}` tag `{group}` names no environment and batch of the policy",
            policy.tag_key
        );
        let message = format!(
            "{who} is in patch group `{group}`, which no patchpilot window targets: {reason}; fix the tag or let patchpilot set it (overwrite: true)"
        );
        return (Verdict::Unmatched { reason }, message);
    }
    // 5. The account's default baseline.
    let Some(os) = os else {
        let reason = format!(
            "SSM reports no operating system patchpilot recognises ({})",
            ssm.platform_name.as_deref().unwrap_or("no PlatformName")
        );
        let message = format!("{who} cannot be matched to a baseline: {reason}");
        return (Verdict::Unmatched { reason }, message);
    };
    if baseline.is_some_and(|b| b.source == BaselineSource::AccountDefault) {
        let in_policy = policy.baseline_rules(os).is_some();
        let default = baseline
            .and_then(|b| b.id.clone())
            .unwrap_or_else(|| "not read".to_string());
        let message = if in_policy {
            format!(
                "{who} ({os}) gets the account's default baseline {default}: the policy's {os} baseline is not registered for {group} yet; run baseline-sync"
            )
        } else {
            format!(
                "{who} runs {os}, for which the policy has no baseline, so SSM patches it with the account's default baseline {default}: test and prod get the same patches and the prod delay does not apply; add a {os} baseline to the policy"
            )
        };
        return (Verdict::DefaultBaseline { os, in_policy }, message);
    }
    // 6. Covered.
    let baseline_id = baseline
        .and_then(|b| b.id.as_deref())
        .unwrap_or("its group's baseline");
    let last = match last_operation {
        Some(s) => format!(
            "; last {} {} ({})",
            s.operation,
            time(&s.operation_end),
            if s.compliant() {
                "compliant".to_string()
            } else {
                format!(
                    "{} missing, {} failed, {} pending reboot",
                    s.missing, s.failed, s.installed_pending_reboot
                )
            }
        ),
        None => "; not patched yet".to_string(),
    };
    (
        Verdict::Covered,
        format!("{who} is covered: {group} with {os} baseline {baseline_id}{last}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        // A Monday; the reference test window is the first Saturday, 2026-11-07 06:00 Zurich.
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    fn ec2(id: &str, tags: &[(&str, &str)], state: &str) -> InstanceFacts {
        InstanceFacts {
            instance_id: id.to_string(),
            source: FactsSource::Ec2 {
                platform: None,
                platform_details: Some("Linux/UNIX".to_string()),
                instance_type: Some("t3.micro".to_string()),
            },
            name: tags
                .iter()
                .find(|(k, _)| *k == "Name")
                .map(|(_, v)| v.to_string()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: Some(state.to_string()),
        }
    }

    fn ssm(name: &str, version: &str, ping: &str) -> SsmInfo {
        SsmInfo {
            ping_status: ping.to_string(),
            last_ping: Some(now() - Duration::hours(3)),
            agent_version: Some("3.3.0.0".to_string()),
            platform_type: Some("Linux".to_string()),
            platform_name: Some(name.to_string()),
            platform_version: Some(version.to_string()),
        }
    }

    const GROUP: &str = "patch_test_0600_batch_1";

    fn baselines() -> Baselines {
        let mut b = Baselines::default();
        b.registered.insert(
            (GROUP.to_string(), OperatingSystem::AmazonLinux2),
            "pb-test-al2".to_string(),
        );
        b.defaults.insert(
            OperatingSystem::AmazonLinux2023,
            "arn:aws:ssm:eu-west-1:aws:patchbaseline/pb-al2023".to_string(),
        );
        b.defaults.insert(
            OperatingSystem::AmazonLinux2,
            "arn:aws:ssm:eu-west-1:aws:patchbaseline/pb-al2".to_string(),
        );
        b
    }

    fn input(hosts: Vec<Host>) -> CoverageInput {
        CoverageInput {
            hosts,
            patch_states: BTreeMap::new(),
            baselines: baselines(),
            host_management: HostManagement::Off,
        }
    }

    fn one(host: Host, states: &[(&str, PatchState)]) -> HostCoverage {
        let mut i = input(vec![host]);
        i.patch_states = states
            .iter()
            .map(|(id, s)| (id.to_string(), s.clone()))
            .collect();
        let c = assess(&Policy::reference(), &i, now());
        assert_eq!(c.hosts.len(), 1);
        c.hosts[0].clone()
    }

    fn al2(id: &str, tags: &[(&str, &str)]) -> Host {
        Host {
            facts: ec2(id, tags, "running"),
            ssm: Some(ssm("Amazon Linux", "2", "Online")),
        }
    }

    fn state(end: DateTime<Utc>) -> PatchState {
        PatchState {
            baseline_id: "pb-test-al2".to_string(),
            patch_group: Some(GROUP.to_string()),
            operation: "Install".to_string(),
            operation_end: end,
            missing: 0,
            failed: 0,
            installed_pending_reboot: 0,
        }
    }

    #[test]
    fn a_managed_tagged_host_with_its_groups_baseline_is_covered() {
        let h = one(
            al2("i-1", &[("Patch Group", GROUP), ("Name", "web-test")]),
            &[("i-1", state(now() - Duration::days(2)))],
        );
        assert_eq!(h.verdict, Verdict::Covered);
        assert_eq!(h.os, Some(OperatingSystem::AmazonLinux2));
        assert_eq!(
            h.baseline,
            Some(EffectiveBaseline {
                id: Some("pb-test-al2".to_string()),
                source: BaselineSource::PatchGroup
            })
        );
        assert_eq!(h.platform.as_deref(), Some("Amazon Linux 2"));
        assert!(
            h.message.starts_with("i-1 (web-test) is covered: patch_test_0600_batch_1 with AMAZON_LINUX_2 baseline pb-test-al2; last Install 2026-11-28")
                && h.message.ends_with("(compliant)"),
            "{}",
            h.message
        );
    }

    #[test]
    fn a_host_without_the_agent_was_never_registered() {
        let h = one(
            Host {
                facts: ec2("i-2", &[("Patch Group", GROUP)], "running"),
                ssm: None,
            },
            &[],
        );
        assert_eq!(h.verdict, Verdict::NotManaged(Unmanaged::NeverRegistered));
        assert!(!h.managed);
        assert!(h.message.contains("never registered"), "{}", h.message);
    }

    #[test]
    fn a_lost_connection_says_since_when() {
        let h = one(
            Host {
                facts: ec2("i-3", &[("Patch Group", GROUP)], "running"),
                ssm: Some(ssm("Amazon Linux", "2", "ConnectionLost")),
            },
            &[],
        );
        assert_eq!(
            h.verdict,
            Verdict::NotManaged(Unmanaged::ConnectionLost {
                ping_status: "ConnectionLost".to_string(),
                since: Some(now() - Duration::hours(3)),
            })
        );
        assert!(
            h.message
                .contains("PingStatus ConnectionLost since 2026-11-30 09:00 UTC"),
            "{}",
            h.message
        );
    }

    #[test]
    fn an_os_without_a_policy_baseline_gets_the_default_and_says_what_that_means() {
        let h = one(
            Host {
                facts: ec2("i-4", &[("Patch Group", GROUP)], "running"),
                ssm: Some(ssm("Amazon Linux", "2023", "Online")),
            },
            &[],
        );
        assert_eq!(
            h.verdict,
            Verdict::DefaultBaseline {
                os: OperatingSystem::AmazonLinux2023,
                in_policy: false
            }
        );
        assert_eq!(
            h.baseline.as_ref().map(|b| b.source),
            Some(BaselineSource::AccountDefault)
        );
        for part in [
            "AMAZON_LINUX_2023",
            "arn:aws:ssm:eu-west-1:aws:patchbaseline/pb-al2023",
            "test and prod get the same patches and the prod delay does not apply",
        ] {
            assert!(h.message.contains(part), "{part}: {}", h.message);
        }
        // Suggested: the OS the policy lacks.
        let c = assess(
            &Policy::reference(),
            &input(vec![Host {
                facts: ec2("i-4", &[("Patch Group", GROUP)], "running"),
                ssm: Some(ssm("Amazon Linux", "2023", "Online")),
            }]),
            now(),
        );
        assert_eq!(
            c.suggested_baselines,
            vec![OperatingSystem::AmazonLinux2023]
        );
        assert_eq!(c.count(VerdictKind::DefaultBaseline), 1);
    }

    #[test]
    fn a_policy_os_not_registered_for_the_group_says_run_baseline_sync() {
        let h = one(
            al2("i-5", &[("Patch Group", "patch_prod_0600_batch_1")]),
            &[],
        );
        assert_eq!(
            h.verdict,
            Verdict::DefaultBaseline {
                os: OperatingSystem::AmazonLinux2,
                in_policy: true
            }
        );
        assert!(h.message.contains("run baseline-sync"), "{}", h.message);
    }

    /// The run report's missed targets and the coverage verdicts describe the same situation
    /// with the same words (`crate::wording`).
    #[test]
    fn the_run_report_and_the_coverage_say_the_same() {
        use crate::report::MissReason;
        let last_ping = now() - Duration::hours(3);
        let never = one(
            Host {
                facts: ec2("i-2", &[("Patch Group", GROUP)], "running"),
                ssm: None,
            },
            &[],
        );
        let report = MissReason::NotManaged.describe(None);
        assert_eq!(report, wording::never_registered());
        assert!(never.message.contains(&report), "{}", never.message);

        let lost = one(
            Host {
                facts: ec2("i-3", &[("Patch Group", GROUP)], "running"),
                ssm: Some(ssm("Amazon Linux", "2", "ConnectionLost")),
            },
            &[],
        );
        let report = MissReason::Offline("ConnectionLost".into()).describe(Some(&last_ping));
        assert!(
            lost.message.contains(&report),
            "{} / {report}",
            lost.message
        );

        let mut stopped = al2("i-6", &[("Patch Group", GROUP)]);
        stopped.facts.state = Some("stopped".to_string());
        let stopped = one(stopped, &[]);
        let Verdict::MissedWindow { window } = stopped.verdict else {
            panic!("{stopped:?}")
        };
        // The report knows no window time: the same phrase, with "the window".
        assert_eq!(
            MissReason::NotRunning("stopped".into()).describe(None),
            wording::not_running_through_window("stopped", None)
        );
        assert!(
            stopped.message.contains(&format!(
                "was {}",
                wording::not_running_through_window("stopped", Some(&window))
            )),
            "{}",
            stopped.message
        );
    }

    #[test]
    fn a_host_stopped_through_its_last_window_missed_it() {
        let mut host = al2("i-6", &[("Patch Group", GROUP)]);
        host.facts.state = Some("stopped".to_string());
        host.ssm = Some(ssm("Amazon Linux", "2", "ConnectionLost"));
        // Last patched before the 2026-11-07 window.
        let h = one(host.clone(), &[("i-6", state(now() - Duration::days(40)))]);
        let window = Utc
            .with_ymd_and_hms(2026, 11, 7, 5, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(h.verdict, Verdict::MissedWindow { window });
        assert!(
            h.message.contains(
                "stopped through its last window (2026-11-07 05:00 UTC) and missed that run"
            ),
            "{}",
            h.message
        );
        // Patched at that window, then stopped: not a miss, and not "connection lost".
        let h = one(host, &[("i-6", state(window + Duration::hours(1)))]);
        assert_eq!(h.verdict, Verdict::Covered, "{}", h.message);
    }

    #[test]
    fn untagged_and_foreign_groups_are_unmatched() {
        let h = one(al2("i-7", &[("Name", "web-test")]), &[]);
        match &h.verdict {
            Verdict::Unmatched { reason } => {
                assert!(
                    reason.contains("auto-tagger would tag it patch_test_0600_batch_1"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(h.message.contains("in no patch group"), "{}", h.message);
        let h = one(al2("i-8", &[("Name", "jumphost")]), &[]);
        assert!(
            matches!(&h.verdict, Verdict::Unmatched { reason } if reason.contains("`jumphost`")),
            "{:?}",
            h.verdict
        );
        let h = one(al2("i-9", &[("Patch Group", "dba-special")]), &[]);
        assert!(
            matches!(&h.verdict, Verdict::Unmatched { reason } if reason.contains("`dba-special`")),
            "{:?}",
            h.verdict
        );
    }

    #[test]
    fn excluded_comes_first_and_terminated_hosts_are_left_out() {
        let h = one(
            Host {
                facts: ec2(
                    "i-10",
                    &[("patchpilot:exclude", "db"), ("Patch Group", GROUP)],
                    "running",
                ),
                ssm: None,
            },
            &[],
        );
        assert!(
            matches!(&h.verdict, Verdict::Excluded { reason } if reason.contains("`patchpilot:exclude`")),
            "{:?}",
            h.verdict
        );
        assert!(h.message.contains("is excluded"), "{}", h.message);
        let c = assess(
            &Policy::reference(),
            &input(vec![Host {
                facts: ec2("i-11", &[], "terminated"),
                ssm: None,
            }]),
            now(),
        );
        assert!(c.hosts.is_empty());
        assert_eq!(c.counts.len(), VerdictKind::ALL.len());
    }

    #[test]
    fn the_os_comes_from_ssm_and_the_hosts_needing_patch_states_are_few() {
        for (name, version, os) in [
            ("Amazon Linux", "2023", OperatingSystem::AmazonLinux2023),
            ("Amazon Linux AMI", "2018.03", OperatingSystem::AmazonLinux),
            ("Debian GNU/Linux", "12", OperatingSystem::Debian),
            ("Rocky Linux", "9.3", OperatingSystem::RockyLinux),
            ("AlmaLinux", "9.3", OperatingSystem::AlmaLinux),
            ("Oracle Linux Server", "8.9", OperatingSystem::OracleLinux),
        ] {
            let host = Host {
                facts: ec2("i-1", &[], "running"),
                ssm: Some(ssm(name, version, "Online")),
            };
            assert_eq!(host_os(&host), Some(os), "{name}");
        }
        let mut mac = ssm("macOS", "14.3", "Online");
        mac.platform_type = Some("MacOS".to_string());
        let host = Host {
            facts: ec2("i-1", &[], "running"),
            ssm: Some(mac),
        };
        assert_eq!(host_os(&host), Some(OperatingSystem::MacOs));
        let policy = Policy::reference();
        assert!(needs_patch_state(
            &policy,
            &al2("i-1", &[("Patch Group", GROUP)])
        ));
        assert!(!needs_patch_state(&policy, &al2("i-1", &[])));
        assert!(!needs_patch_state(
            &policy,
            &Host {
                facts: ec2("i-1", &[("Patch Group", GROUP)], "running"),
                ssm: None
            }
        ));
    }

    #[test]
    fn the_summary_keeps_only_the_uncovered_hosts() {
        let c = assess(
            &Policy::reference(),
            &input(vec![
                al2("i-1", &[("Patch Group", GROUP)]),
                Host {
                    facts: ec2("i-2", &[("Patch Group", GROUP)], "running"),
                    ssm: None,
                },
            ]),
            now(),
        );
        let s = c.summary();
        assert_eq!(s.hosts, 2);
        assert_eq!(s.count(VerdictKind::Covered), 1);
        assert_eq!(s.uncovered.len(), 1);
        assert_eq!(s.uncovered[0].instance_id, "i-2");
        assert_eq!(s.uncovered[0].verdict, VerdictKind::NotManaged);
        let json = serde_json::to_value(&s).expect("serialises");
        assert_eq!(json["counts"]["not-managed"], 1);
    }

    #[test]
    fn host_management_reads_the_setting() {
        assert_eq!(HostManagement::from_setting("$None"), HostManagement::Off);
        assert_eq!(
            HostManagement::from_setting(
                "service-role/AWSSystemsManagerDefaultEC2InstanceManagementRole"
            ),
            HostManagement::On {
                role: "service-role/AWSSystemsManagerDefaultEC2InstanceManagementRole".to_string()
            }
        );
    }
}
