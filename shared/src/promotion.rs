//! Promotion: an environment with `approval: { mode: promote, from: test }` installs exactly
//! what `test` installed in its last good run, and nothing after a bad one.
//!
//! Pure and synchronous; the S3 and SSM edges are in `aws::promotion`.
//!
//! 1. **Recorded.** When the source environment's window execution ends, run-notifier reads
//!    what each host installed *in that execution* (`DescribeInstancePatches`: states
//!    `Installed` and `InstalledPendingReboot` with an `InstalledTime` inside the execution;
//!    versions from Inventory `AWS:Application`, else from the patch title) and builds one
//!    [`Manifest`] per run: per operating system, the packages (`name.arch`) or KBs with their
//!    versions.
//! 2. **Gated.** [`decide`]: the run may be promoted when at most `gate.max_failed` of the
//!    hosts it reached failed and no patch failed on any of them; otherwise the promoted
//!    environment is *held* until the next good source run or a forced promotion.
//! 3. **Stored.** The manifest goes to the output bucket under
//!    `patchpilot/promotion/<environment>/<hash>/manifest.json` (content-addressed by its
//!    SHA-256, so a rewrite is a no-op) with one `InstallOverrideList` YAML per OS beside it,
//!    and the decision to `patchpilot/promotion/<environment>/state.json` ([`PromotionState`]).
//! 4. **Replayed.** baseline-sync reads the state: a promotion that passed (or was forced)
//!    becomes one window target and task per (batch, OS) at the batch's priority — AWS: "If
//!    your task must run on multiple targets at the same time, register a task for each target
//!    individually and assign each task the same priority level" (SSM User Guide, "Examples:
//!    Register targets with a maintenance window") — each target selecting the batch's patch
//!    group *and* `patchpilot:os=<OS>` (a node "must be tagged with all the tag keys and
//!    values you specify", same page), each task running `AWS-RunPatchBaseline` with that
//!    OS's `InstallOverrideList`: "the listed patches are installed and steps 2-7 are skipped"
//!    (SSM User Guide, "How patches are installed"). The baselines approve with
//!    `ApproveUntilDate` = the source run's UTC date, so a compliance `Scan` (which ignores the
//!    list) judges by the same cut-off. A held environment runs `Scan` only.
//!
//! An OS task whose manifest list is empty (the source hosts of that OS installed nothing,
//! or the source has no host of that OS) scans: nothing was tested, so nothing is installed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{Gate, OperatingSystem, Platform};
use crate::report::{Outcome, RunReport};

/// The instance tag baseline-sync keeps at the OS SSM reports for the node (`PlatformName`),
/// so that a promoted environment's per-OS targets can select it.
pub const OS_TAG_KEY: &str = "patchpilot:os";
/// Key prefix of everything promotion writes in the output bucket.
pub const PREFIX: &str = "patchpilot/promotion";
/// Version of the manifest and state documents.
pub const FORMAT: u32 = 1;
/// `DescribeInstancePatches` `State` values as the API sends them (API Reference,
/// `PatchComplianceData.State`: `INSTALLED | INSTALLED_OTHER | INSTALLED_PENDING_REBOOT |
/// INSTALLED_REJECTED | MISSING | NOT_APPLICABLE | FAILED | AVAILABLE_SECURITY_UPDATE`); the User
/// Guide's "Patch compliance state values" writes them `Installed`, `InstalledPendingReboot`, ….
pub mod state {
    pub const INSTALLED: &str = "INSTALLED";
    pub const INSTALLED_OTHER: &str = "INSTALLED_OTHER";
    pub const INSTALLED_PENDING_REBOOT: &str = "INSTALLED_PENDING_REBOOT";
    pub const MISSING: &str = "MISSING";
    pub const FAILED: &str = "FAILED";
}

/// Patch states that count as installed by the run: `INSTALLED`, and
/// `INSTALLED_PENDING_REBOOT` (installed, waiting for a reboot).
pub const INSTALLED_STATES: [&str; 2] = [state::INSTALLED, state::INSTALLED_PENDING_REBOOT];

/// One patch record of a host (`DescribeInstancePatches` `PatchComplianceData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    /// Linux: `name.arch` (no version); Windows: the KB id.
    pub kb_id: String,
    /// Linux: `name.arch:version` as the agent reports it; Windows: the update's title.
    pub title: String,
    pub classification: String,
    pub severity: String,
    pub state: String,
    pub installed_time: Option<DateTime<Utc>>,
}

/// What one source host installed in the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInstall {
    pub instance_id: String,
    /// The OS SSM reports for it; `None` when it is not a managed node any more.
    pub os: Option<OperatingSystem>,
    /// Its patch records (all states; [`Manifest::build`] keeps what the run installed).
    pub patches: Vec<PatchRecord>,
    /// Package versions from Inventory `AWS:Application`: `name.arch` → version
    /// (`epoch:version-release` for rpm, the apt version for deb).
    pub versions: BTreeMap<String, String>,
}

/// One patch of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Linux `name.arch`, Windows KB id: the override list's `id`.
    pub id: String,
    /// The installed version (Linux); `None` for Windows, where the KB id is the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub title: String,
    pub classification: String,
    pub severity: String,
    /// How many source hosts installed it.
    pub hosts: u32,
}

impl ManifestEntry {
    /// `(id, version)`: what "the same patch" means when prod is compared with the manifest.
    pub fn key(&self) -> (String, Option<String>) {
        (self.id.clone(), self.version.clone())
    }
}

/// A Linux patch whose version could not be pinned, or pinned ambiguously.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unpinned {
    pub os: OperatingSystem,
    pub id: String,
    pub reason: String,
}

/// What the source run installed, per OS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The source environment (`test`).
    pub source: String,
    /// The source run: its window execution id.
    pub execution_id: String,
    /// The run's UTC date (`YYYY-MM-DD`): the promoted baselines' `ApproveUntilDate`.
    pub run_date: String,
    /// Source hosts that ran successfully, per OS (an OS with hosts and no entries installed
    /// nothing; an OS without hosts was not tested).
    pub hosts: BTreeMap<OperatingSystem, u32>,
    pub patches: BTreeMap<OperatingSystem, Vec<ManifestEntry>>,
    /// Linux patches installed with no known version (listed by name only, so prod may get a
    /// newer one), or in different versions on different hosts (the most common is kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpinned: Vec<Unpinned>,
}

#[derive(Serialize)]
struct OverrideList<'a> {
    patches: Vec<OverrideEntry<'a>>,
}

#[derive(Serialize)]
struct OverrideEntry<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

impl Manifest {
    /// The manifest of one source run: hosts that the run patched (see
    /// [`RunReport`]'s outcomes), patches in an installed state whose `InstalledTime` lies
    /// within `[start, end]` (what *this* run installed, not an earlier one).
    pub fn build(
        source: &str,
        execution_id: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        hosts: &[HostInstall],
    ) -> Manifest {
        // (os, id) -> version -> (entry template, host count)
        type Seen =
            BTreeMap<(OperatingSystem, String), BTreeMap<Option<String>, (PatchRecord, u32)>>;
        let mut seen: Seen = BTreeMap::new();
        let mut host_counts: BTreeMap<OperatingSystem, u32> = BTreeMap::new();
        let mut unpinned = BTreeSet::new();
        for host in hosts {
            let Some(os) = host.os else { continue };
            *host_counts.entry(os).or_default() += 1;
            for p in &host.patches {
                if !INSTALLED_STATES.contains(&p.state.as_str()) || !in_run(p, start, end) {
                    continue;
                }
                let version = if os.platform() == Platform::Windows {
                    None
                } else {
                    let v = host
                        .versions
                        .get(&p.kb_id)
                        .cloned()
                        .or_else(|| version_from_title(&p.kb_id, &p.title));
                    if v.is_none() {
                        unpinned.insert(Unpinned {
                            os,
                            id: p.kb_id.clone(),
                            reason: "no version in Inventory nor in the patch title: listed by name, prod installs the newest version available".to_string(),
                        });
                    }
                    v
                };
                let versions = seen.entry((os, p.kb_id.clone())).or_default();
                versions.entry(version).or_insert_with(|| (p.clone(), 0)).1 += 1;
            }
        }
        let mut patches: BTreeMap<OperatingSystem, Vec<ManifestEntry>> = BTreeMap::new();
        for ((os, id), versions) in seen {
            // The version most hosts installed; ties: the last in order.
            let Some((version, (record, count))) = versions
                .iter()
                .max_by(|a, b| a.1 .1.cmp(&b.1 .1).then(a.0.cmp(b.0)))
            else {
                continue;
            };
            if versions.len() > 1 {
                let all: Vec<String> = versions
                    .iter()
                    .map(|(v, (_, n))| format!("{} on {n} host(s)", v.as_deref().unwrap_or("?")))
                    .collect();
                unpinned.insert(Unpinned {
                    os,
                    id: id.clone(),
                    reason: format!(
                        "installed in different versions ({}): kept {}",
                        all.join(", "),
                        version.as_deref().unwrap_or("?")
                    ),
                });
            }
            patches.entry(os).or_default().push(ManifestEntry {
                id: id.clone(),
                version: version.clone(),
                title: record.title.clone(),
                classification: record.classification.clone(),
                severity: record.severity.clone(),
                hosts: *count,
            });
        }
        Manifest {
            format: FORMAT,
            source: source.to_string(),
            execution_id: execution_id.to_string(),
            run_date: start.format("%Y-%m-%d").to_string(),
            hosts: host_counts,
            patches,
            unpinned: unpinned.into_iter().collect(),
        }
    }

    /// SHA-256 of the manifest's canonical JSON (lower-case hex): its identity and the key it
    /// is stored under.
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        let mut hex = String::with_capacity(64);
        for b in digest.iter() {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// Number of patches over all OSes.
    pub fn patch_count(&self) -> usize {
        self.patches.values().map(Vec::len).sum()
    }

    /// The OSes with at least one patch to install.
    pub fn operating_systems(&self) -> impl Iterator<Item = OperatingSystem> + '_ {
        self.patches
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(os, _)| *os)
    }

    /// The manifest document as stored: pretty JSON with its hash.
    pub fn document(&self) -> String {
        #[derive(Serialize)]
        struct Doc<'a> {
            hash: String,
            #[serde(flatten)]
            manifest: &'a Manifest,
        }
        serde_json::to_string_pretty(&Doc {
            hash: self.hash(),
            manifest: self,
        })
        .unwrap_or_default()
    }

    /// `AWS-RunPatchBaseline`'s `InstallOverrideList` for `os` (SSM User Guide,
    /// "AWS-RunPatchBaseline", parameter InstallOverrideList): `patches:` with, on Linux, `id`
    /// = `name.arch` and `title` = `{name}.{arch}:{epoch}:{version}-{release}` (yum, SLES) or
    /// `{name}.{arch}:{version}` (apt) — the agent installs that version; on Windows `id` = the
    /// KB id. `None` when the OS has nothing to install.
    pub fn override_list(&self, os: OperatingSystem) -> Option<String> {
        let entries = self.patches.get(&os).filter(|v| !v.is_empty())?;
        let list = OverrideList {
            patches: entries
                .iter()
                .map(|e| OverrideEntry {
                    id: &e.id,
                    title: e.version.as_ref().map(|v| format!("{}:{v}", e.id)),
                })
                .collect(),
        };
        let yaml = serde_norway::to_string(&list).ok()?;
        Some(format!(
            "# patchpilot promotion of {} (window execution {}, {}), manifest {}: {}\n{yaml}",
            self.source,
            self.execution_id,
            self.run_date,
            self.hash(),
            os.as_str()
        ))
    }
}

/// Whether `p`'s `InstalledTime` lies within the run `[start, end]` (the end to the second:
/// `InstalledTime` has second precision).
fn in_run(p: &PatchRecord, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    p.installed_time
        .is_some_and(|t| t >= start && t <= end + chrono::Duration::seconds(1))
}

/// Whether the run put `p` on the host: an installed state (`INSTALLED_OTHER` included:
/// installed although the baseline does not approve it, a dependency or an override-list
/// entry — "Patch compliance state values") within the run.
pub fn installed_in(p: &PatchRecord, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    (INSTALLED_STATES.contains(&p.state.as_str()) || p.state == state::INSTALLED_OTHER)
        && in_run(p, start, end)
}

/// The version in a Linux title `name.arch:version` (the agent's format; e.g.
/// `isc-dhcp-common.amd64:4.3.5-3ubuntu7.3`, `kernel.x86_64:0:4.14.336-257.562.amzn2`).
pub fn version_from_title(kb_id: &str, title: &str) -> Option<String> {
    let rest = title.strip_prefix(kb_id)?.strip_prefix(':')?;
    (!rest.is_empty()).then(|| rest.to_string())
}

/// The gate's verdict on a source run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The run may be promoted.
    Pass,
    /// The promoted environment is held (scan only) until the next good run.
    Held,
    /// Held, then promoted by an operator (`patchpilot promote --force`, or
    /// `{"promote": "force"}` to baseline-sync).
    Forced,
}

impl Verdict {
    /// Whether the promoted environment installs the manifest.
    pub fn installs(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Forced)
    }
}

/// The gate's decision with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// Hosts the source run reached (patched or failed).
    pub reached: u32,
    pub failed: u32,
    /// Patches in state `Failed` over all hosts.
    pub failed_patches: u32,
    /// The gate's `max_failed`, as a percentage.
    pub max_failed_percent: u32,
    /// One sentence: why it passed or is held.
    pub reason: String,
}

/// Decide whether `report` (a run of `source`) may be promoted to `target`.
pub fn decide(gate: &Gate, source: &str, report: &RunReport) -> Decision {
    let max = gate.max_failed_percent().unwrap_or(0);
    let mut reached = 0u32;
    let mut failed = 0u32;
    let mut failed_patches = 0u32;
    for i in &report.instances {
        failed_patches += i.patches.as_ref().map(|p| p.failed).unwrap_or_default();
        match i.outcome() {
            Outcome::Failed => {
                reached += 1;
                failed += 1;
            }
            Outcome::Patched | Outcome::RebootPending => reached += 1,
            Outcome::Missed => {}
        }
    }
    let completed = matches!(report.run_status.as_str(), "SUCCESS" | "FAILED");
    let (verdict, reason) = if !completed {
        (
            Verdict::Held,
            format!(
                "{failed}/{reached} failed in {source}, and the run ended {}",
                report.run_status
            ),
        )
    } else if reached == 0 {
        (
            Verdict::Held,
            format!("{source}'s run reached no host: nothing was tested"),
        )
    } else if failed_patches > 0 {
        (
            Verdict::Held,
            format!(
                "{failed}/{reached} failed in {source}, {failed_patches} patch(es) failed to install"
            ),
        )
    } else if u64::from(failed) * 100 > u64::from(max) * u64::from(reached) {
        (
            Verdict::Held,
            format!("{failed}/{reached} failed in {source} (the gate allows {max}%)"),
        )
    } else {
        (
            Verdict::Pass,
            format!("{failed}/{reached} failed in {source} (the gate allows {max}%)"),
        )
    };
    Decision {
        verdict,
        reached,
        failed,
        failed_patches,
        max_failed_percent: max,
        reason,
    }
}

/// Where the manifest of a promotion lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRef {
    pub hash: String,
    /// `s3://bucket/patchpilot/promotion/<env>/<hash>/manifest.json`
    pub url: String,
    /// OS → `s3://bucket/…/<hash>/<OS>.yaml`, for the OSes with something to install.
    pub lists: BTreeMap<OperatingSystem, String>,
    pub patches: usize,
}

/// The promoted environment's state: the last source run recorded and the gate's decision
/// (`patchpilot/promotion/<environment>/state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionState {
    pub format: u32,
    /// The promoted environment (`prod`).
    pub environment: String,
    /// The environment it promotes from (`test`).
    pub source: String,
    pub execution_id: String,
    /// The source run's UTC date: `ApproveUntilDate` of the promoted baselines.
    pub run_date: String,
    pub decision: Decision,
    pub decided_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_by: Option<String>,
    pub manifest: ManifestRef,
}

impl PromotionState {
    /// One line for reports, `schedule` and logs.
    pub fn describe(&self) -> String {
        let installs = || {
            format!(
                "{} installs manifest {} ({} patch(es) from {}'s run of {})",
                self.environment,
                short(&self.manifest.hash),
                self.manifest.patches,
                self.source,
                self.run_date
            )
        };
        match self.decision.verdict {
            Verdict::Pass => format!("{}: {}", installs(), self.decision.reason),
            Verdict::Held => format!(
                "{} is held (scan only): {}; it installs again after the next good {} run or `patchpilot promote --force`",
                self.environment, self.decision.reason, self.source
            ),
            Verdict::Forced => format!(
                "{}, forced by {} although {}",
                installs(),
                self.forced_by.as_deref().unwrap_or("an operator"),
                self.decision.reason
            ),
        }
    }
}

/// The first 12 hex digits of a hash, as shown to people.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `patchpilot/promotion/<environment>/state.json`
pub fn state_key(environment: &str) -> String {
    format!("{PREFIX}/{environment}/state.json")
}

/// `patchpilot/promotion/<environment>/<hash>/manifest.json`
pub fn manifest_key(environment: &str, hash: &str) -> String {
    format!("{PREFIX}/{environment}/{hash}/manifest.json")
}

/// `patchpilot/promotion/<environment>/<hash>/<OS>.yaml`
pub fn list_key(environment: &str, hash: &str, os: OperatingSystem) -> String {
    format!("{PREFIX}/{environment}/{hash}/{}.yaml", os.as_str())
}

/// How one promoted host compares with the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostComparison {
    pub instance_id: String,
    pub os: Option<OperatingSystem>,
    /// Manifest entries installed in exactly the manifest's version.
    pub exact: usize,
    /// Manifest entries not installed in that version, with why.
    pub missing: Vec<(String, String)>,
    /// Patches installed in the run that the manifest does not list.
    pub extra: Vec<String>,
}

/// Compare what a promoted host installed in its run with the manifest for its OS.
/// `installed` = the host's patch records in an installed state within the run.
pub fn compare(
    manifest: &Manifest,
    host: &HostInstall,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> HostComparison {
    let Some(os) = host.os else {
        return HostComparison {
            instance_id: host.instance_id.clone(),
            os: None,
            exact: 0,
            missing: Vec::new(),
            extra: Vec::new(),
        };
    };
    let mut out = HostComparison {
        instance_id: host.instance_id.clone(),
        os: host.os,
        exact: 0,
        missing: Vec::new(),
        extra: Vec::new(),
    };
    // What the run put on the host: installed states within the run, including
    // `InstalledOther` (installed although the baseline does not approve it: a dependency, or
    // an override-list entry — "Patch compliance state values").
    let got: BTreeMap<String, Option<String>> = host
        .patches
        .iter()
        .filter(|p| installed_in(p, start, end))
        .map(|p| {
            let version = (os.platform() != Platform::Windows).then(|| {
                host.versions
                    .get(&p.kb_id)
                    .cloned()
                    .or_else(|| version_from_title(&p.kb_id, &p.title))
            });
            (p.kb_id.clone(), version.flatten())
        })
        .collect();
    let want = manifest.patches.get(&os).cloned().unwrap_or_default();
    for e in &want {
        match got.get(&e.id) {
            Some(v) if v == &e.version => out.exact += 1,
            Some(v) => out.missing.push((
                e.id.clone(),
                format!(
                    "installed {} instead of {}",
                    v.as_deref().unwrap_or("?"),
                    e.version.as_deref().unwrap_or("?")
                ),
            )),
            None => {
                let state = host
                    .patches
                    .iter()
                    .find(|p| p.kb_id == e.id)
                    .map(|p| p.state.as_str());
                // The baseline approves a newer version than the manifest pins (apt approves
                // on publication): the record is `MISSING`, for that newer version, although
                // the override list put the pinned one on the host. Inventory tells.
                if state == Some(state::MISSING)
                    && e.version.is_some()
                    && host.versions.get(&e.id) == e.version.as_ref()
                {
                    out.exact += 1;
                    continue;
                }
                let why = match state {
                    Some(state::FAILED) => "failed to install".to_string(),
                    Some(state::INSTALLED | state::INSTALLED_OTHER | state::INSTALLED_PENDING_REBOOT) => {
                        "already installed before the run".to_string()
                    }
                    Some(s) => format!("not installed ({s})"),
                    None => "not installed: no such package on the host, or the version is no longer in its repository".to_string(),
                };
                out.missing.push((e.id.clone(), why));
            }
        }
    }
    let wanted: BTreeSet<&str> = want.iter().map(|e| e.id.as_str()).collect();
    out.extra = got
        .keys()
        .filter(|id| !wanted.contains(id.as_str()))
        .cloned()
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 7, h, 0, 0).single().unwrap()
    }

    fn rec(kb: &str, title: &str, state: &str, at: DateTime<Utc>) -> PatchRecord {
        PatchRecord {
            kb_id: kb.into(),
            title: title.into(),
            classification: "Security".into(),
            severity: "Important".into(),
            state: state.into(),
            installed_time: Some(at),
        }
    }

    fn host(id: &str, os: OperatingSystem, patches: Vec<PatchRecord>) -> HostInstall {
        HostInstall {
            instance_id: id.into(),
            os: Some(os),
            patches,
            versions: BTreeMap::new(),
        }
    }

    #[test]
    fn the_manifest_keeps_what_the_run_installed_with_versions() {
        let hosts = [
            host(
                "i-1",
                OperatingSystem::AmazonLinux2,
                vec![
                    rec(
                        "openssl.x86_64",
                        "openssl.x86_64:1:1.0.2k-24.amzn2.0.14",
                        state::INSTALLED,
                        t(5),
                    ),
                    // installed by an earlier run: not part of this one
                    rec(
                        "bash.x86_64",
                        "bash.x86_64:0:4.2.46-34.amzn2",
                        state::INSTALLED,
                        t(1),
                    ),
                    rec(
                        "curl.x86_64",
                        "curl.x86_64:0:8.3.0-1.amzn2.0.5",
                        state::MISSING,
                        t(5),
                    ),
                ],
            ),
            host(
                "i-2",
                OperatingSystem::Windows,
                vec![rec(
                    "KB5044277",
                    "2024-10 Cumulative Update",
                    state::INSTALLED_PENDING_REBOOT,
                    t(6),
                )],
            ),
        ];
        let m = Manifest::build("test", "exec-1", t(4), t(8), &hosts);
        assert_eq!(m.run_date, "2026-11-07");
        let al2 = &m.patches[&OperatingSystem::AmazonLinux2];
        assert_eq!(al2.len(), 1);
        assert_eq!(al2[0].version.as_deref(), Some("1:1.0.2k-24.amzn2.0.14"));
        assert_eq!(m.patches[&OperatingSystem::Windows][0].version, None);
        let yaml = m.override_list(OperatingSystem::AmazonLinux2).unwrap();
        assert!(yaml.contains("id: openssl.x86_64"), "{yaml}");
        assert!(
            yaml.contains("title: openssl.x86_64:1:1.0.2k-24.amzn2.0.14"),
            "{yaml}"
        );
        assert_eq!(m.override_list(OperatingSystem::Ubuntu), None);
        // content-addressed: the same input gives the same hash
        assert_eq!(
            m.hash(),
            Manifest::build("test", "exec-1", t(4), t(8), &hosts).hash()
        );
        assert_eq!(m.hash().len(), 64);
    }

    #[test]
    fn inventory_versions_win_and_differing_versions_are_reported() {
        let mut a = host(
            "i-1",
            OperatingSystem::Ubuntu,
            vec![rec(
                "openssl.amd64",
                "openssl.amd64:3.0.2-0ubuntu1.17",
                state::INSTALLED,
                t(5),
            )],
        );
        a.versions
            .insert("openssl.amd64".into(), "3.0.2-0ubuntu1.18".into());
        let b = host(
            "i-2",
            OperatingSystem::Ubuntu,
            vec![rec(
                "openssl.amd64",
                "openssl.amd64:3.0.2-0ubuntu1.18",
                state::INSTALLED,
                t(5),
            )],
        );
        let c = host(
            "i-3",
            OperatingSystem::Ubuntu,
            vec![rec(
                "openssl.amd64",
                "openssl.amd64:3.0.2-0ubuntu1.17",
                state::INSTALLED,
                t(5),
            )],
        );
        let m = Manifest::build("test", "e", t(4), t(8), &[a, b, c]);
        assert_eq!(
            m.patches[&OperatingSystem::Ubuntu][0].version.as_deref(),
            Some("3.0.2-0ubuntu1.18")
        );
        assert_eq!(m.unpinned.len(), 1);
        assert!(m.unpinned[0].reason.contains("different versions"));
    }

    #[test]
    fn a_patch_without_any_version_is_listed_by_name_and_reported() {
        let h = host(
            "i-1",
            OperatingSystem::Suse,
            vec![rec(
                "zlib.x86_64",
                "zlib security update",
                state::INSTALLED,
                t(5),
            )],
        );
        let m = Manifest::build("test", "e", t(4), t(8), &[h]);
        assert_eq!(m.patches[&OperatingSystem::Suse][0].version, None);
        assert!(m.unpinned[0].reason.contains("newest version"));
        let yaml = m.override_list(OperatingSystem::Suse).unwrap();
        assert!(!yaml.contains("title"), "{yaml}");
    }

    #[test]
    fn the_gate_holds_on_failed_hosts_and_failed_patches() {
        use crate::report::{InstanceRun, PatchCounts, RunKind};
        let inst = |id: &str, status: &str, failed: u32| InstanceRun {
            instance_id: id.into(),
            name: None,
            batch: 1,
            command_id: "c".into(),
            status: status.into(),
            status_details: status.into(),
            response_code: None,
            log_url: None,
            log_missing: None,
            output_url: None,
            requested: None,
            patches: Some(PatchCounts {
                failed,
                operation: "Install".into(),
                ..PatchCounts::default()
            }),
        };
        let report = |instances: Vec<InstanceRun>| RunReport {
            run: RunKind::Command {
                command_id: "c".into(),
            },
            environment: "test".into(),
            label: "06:00".into(),
            run_status: "SUCCESS".into(),
            run_status_details: None,
            start: None,
            end: None,
            operation: None,
            batches: vec![],
            instances,
            missed: vec![],
            full_report: None,
            promotion: vec![],
            policy: None,
        };
        let strict = Gate::default();
        let ok = report(vec![inst("i-1", "Success", 0), inst("i-2", "Success", 0)]);
        assert_eq!(decide(&strict, "test", &ok).verdict, Verdict::Pass);
        let two_of_six = report(vec![
            inst("i-1", "Failed", 0),
            inst("i-2", "Failed", 0),
            inst("i-3", "Success", 0),
            inst("i-4", "Success", 0),
            inst("i-5", "Success", 0),
            inst("i-6", "Success", 0),
        ]);
        let d = decide(&strict, "test", &two_of_six);
        assert_eq!(d.verdict, Verdict::Held);
        assert!(d.reason.starts_with("2/6 failed in test"), "{}", d.reason);
        let lenient = Gate {
            max_failed: "50%".into(),
        };
        assert_eq!(decide(&lenient, "test", &two_of_six).verdict, Verdict::Pass);
        let patch_failed = report(vec![inst("i-1", "Success", 1), inst("i-2", "Success", 0)]);
        let d = decide(&lenient, "test", &patch_failed);
        assert_eq!(d.verdict, Verdict::Held);
        assert!(d.reason.contains("1 patch(es) failed"), "{}", d.reason);
        assert_eq!(
            decide(&strict, "test", &report(vec![])).verdict,
            Verdict::Held
        );
    }

    #[test]
    fn a_pinned_version_behind_what_the_baseline_approves_is_exact_by_inventory() {
        let src = host(
            "i-1",
            OperatingSystem::Ubuntu,
            vec![rec(
                "libssl3.amd64",
                "libssl3.amd64:3.0.2-0ubuntu1.18",
                state::INSTALLED,
                t(5),
            )],
        );
        let m = Manifest::build("test", "e", t(4), t(8), &[src]);
        // Prod's record names the newer version its baseline approves; Inventory has the
        // pinned one.
        let mut prod = host(
            "i-9",
            OperatingSystem::Ubuntu,
            vec![rec(
                "libssl3.amd64",
                "libssl3.amd64:3.0.2-0ubuntu1.19",
                state::MISSING,
                t(15),
            )],
        );
        prod.versions
            .insert("libssl3.amd64".into(), "3.0.2-0ubuntu1.18".into());
        let c = compare(&m, &prod, t(14), t(18));
        assert_eq!((c.exact, c.missing.len()), (1, 0), "{c:?}");
        // Inventory with another version (or none): missing, with the state.
        prod.versions
            .insert("libssl3.amd64".into(), "3.0.2-0ubuntu1.17".into());
        let c = compare(&m, &prod, t(14), t(18));
        assert_eq!(c.exact, 0);
        assert_eq!(c.missing[0].1, "not installed (MISSING)");
    }

    #[test]
    fn comparison_names_exact_missing_and_extra() {
        let src = host(
            "i-1",
            OperatingSystem::RedhatEnterpriseLinux,
            vec![
                rec(
                    "openssl.x86_64",
                    "openssl.x86_64:1:3.0.7-27.el9",
                    state::INSTALLED,
                    t(5),
                ),
                rec(
                    "curl.x86_64",
                    "curl.x86_64:0:7.76.1-29.el9",
                    state::INSTALLED,
                    t(5),
                ),
            ],
        );
        let m = Manifest::build("test", "e", t(4), t(8), &[src]);
        let prod = host(
            "i-9",
            OperatingSystem::RedhatEnterpriseLinux,
            vec![
                rec(
                    "openssl.x86_64",
                    "openssl.x86_64:1:3.0.7-27.el9",
                    state::INSTALLED,
                    t(15),
                ),
                rec(
                    "curl.x86_64",
                    "curl.x86_64:0:7.76.1-29.el9",
                    state::FAILED,
                    t(15),
                ),
                rec(
                    "kernel.x86_64",
                    "kernel.x86_64:0:5.14.0-427.el9",
                    state::INSTALLED_OTHER,
                    t(15),
                ),
            ],
        );
        let c = compare(&m, &prod, t(14), t(18));
        assert_eq!(c.exact, 1);
        assert_eq!(
            c.missing,
            vec![("curl.x86_64".to_string(), "failed to install".to_string())]
        );
        assert_eq!(c.extra, vec!["kernel.x86_64".to_string()]);
    }
}
