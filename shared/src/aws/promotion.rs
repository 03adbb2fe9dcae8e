//! The promotion's AWS edge (`crate::promotion` has the model):
//!
//! - what hosts installed: `DescribeInstancePatches` (all pages, `MaxResults` 100: SSM API
//!   reference, 10–100), versions from Inventory `ListInventoryEntries` `AWS:Application`
//!   filtered by the package names (`InventoryFilter` `Values`: at most 40 per filter), and
//!   each host's OS from `DescribeInstanceInformation` (`PlatformName`, as Patch Manager
//!   itself goes by);
//! - the output bucket: manifests, override lists and the state document (`PutObject`,
//!   `GetObject`).

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_ssm::types::{
    InstanceInformationStringFilter, InventoryFilter, InventoryQueryOperatorType,
};
use tracing::{info, warn};

use super::{AwsError, CallLog, Service};
use chrono::{DateTime, Utc};

use crate::classify;
use crate::failure::Retry;
use crate::policy::{Environment, OperatingSystem, Platform, Policy};
use crate::promotion::{
    compare, decide, installed_in, list_key, manifest_key, short, state_key, version_from_title,
    HostComparison, HostInstall, Manifest, ManifestRef, PatchRecord, PromotionState, Verdict,
};
use crate::report::{Outcome, RunKind, RunReport};

/// Hosts whose patch records are read at the same time (SSM throttles per account and
/// Region; the SDK's retries absorb a `ThrottlingException`).
const CONCURRENT_HOSTS: usize = 8;
/// Hosts named one by one in a promoted run's comparison; the rest are counted.
const HOSTS_LISTED: usize = 20;
/// `DescribeInstancePatches` `MaxResults` maximum.
const PATCH_PAGE: i32 = 100;
/// `ListInventoryEntries` `MaxResults` maximum (1–50).
const INVENTORY_PAGE: i32 = 50;
/// `InventoryFilter` `Values`: 1–40 items.
const NAMES_PER_FILTER: usize = 40;
/// `DescribeInstanceInformation` `InstanceIds` filter values: up to 100... but the page is
/// at most 50 results, so 50 ids per call.
const IDS_PER_CALL: usize = 50;

/// Reads what hosts installed (SSM).
pub struct PatchReader {
    ssm: aws_sdk_ssm::Client,
}

impl PatchReader {
    pub fn new(config: &SdkConfig) -> PatchReader {
        PatchReader {
            ssm: crate::aws::ssm_client(config),
        }
    }

    pub fn from_client(ssm: aws_sdk_ssm::Client) -> PatchReader {
        PatchReader { ssm }
    }

    /// Each host's OS, patch records and, where `needs_versions` says the records do not
    /// settle it, the Inventory versions of its packages. Hosts are read [`CONCURRENT_HOSTS`]
    /// at a time: a 5,000-host run is one `DescribeInstancePatches` per host, and one after
    /// the other they would not fit in run-notifier's timeout.
    pub async fn hosts(
        &self,
        ids: &[String],
        calls: &CallLog,
        needs_versions: impl Fn(OperatingSystem, &[PatchRecord]) -> bool,
    ) -> Result<Vec<HostInstall>, AwsError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let os = self.operating_systems(ids, calls).await?;
        let needs_versions = &needs_versions;
        let os = &os;
        stream::iter(ids)
            .map(|id| async move {
                let patches = self.patches(id, calls).await?;
                let host_os = os.get(id).copied();
                let versions = match host_os {
                    Some(o) if o.platform() != Platform::Windows && needs_versions(o, &patches) => {
                        self.versions(id, &patches, calls).await?
                    }
                    _ => BTreeMap::new(),
                };
                Ok::<_, AwsError>(HostInstall {
                    instance_id: id.clone(),
                    os: host_os,
                    patches,
                    versions,
                })
            })
            .buffered(CONCURRENT_HOSTS)
            .try_collect()
            .await
    }

    /// OS of each managed node among `ids`, as SSM reports it.
    pub async fn operating_systems(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> Result<BTreeMap<String, OperatingSystem>, AwsError> {
        const OP: &str = "DescribeInstanceInformation";
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            let mut token: Option<String> = None;
            loop {
                calls.record(OP);
                let filter = InstanceInformationStringFilter::builder()
                    .key("InstanceIds")
                    .set_values(Some(chunk.to_vec()))
                    .build()
                    .map_err(|e| AwsError::from_parts(Service::Ssm, OP, None, e.to_string()))?;
                let page = self
                    .ssm
                    .describe_instance_information()
                    .filters(filter)
                    .max_results(50)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e))?;
                for info in page.instance_information_list() {
                    let Some(id) = info.instance_id() else {
                        continue;
                    };
                    let facts = super::managed::node_facts(id, info, BTreeMap::new());
                    if let Ok(identity) = classify::identify(&facts) {
                        if let Some(os) = identity.os {
                            out.insert(id.to_string(), os);
                        }
                    }
                }
                token = page
                    .next_token()
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every patch record of one node (`DescribeInstancePatches`, all pages).
    pub async fn patches(&self, id: &str, calls: &CallLog) -> Result<Vec<PatchRecord>, AwsError> {
        const OP: &str = "DescribeInstancePatches";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            calls.record(OP);
            let page = self
                .ssm
                .describe_instance_patches()
                .instance_id(id)
                .max_results(PATCH_PAGE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e).on(&[id]))?;
            for p in page.patches() {
                out.push(PatchRecord {
                    kb_id: p.kb_id().to_string(),
                    title: p.title().to_string(),
                    classification: p.classification().to_string(),
                    severity: p.severity().to_string(),
                    state: p.state().as_str().to_string(),
                    installed_time: chrono::DateTime::from_timestamp(
                        p.installed_time().secs(),
                        p.installed_time().subsec_nanos(),
                    ),
                });
            }
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Inventory `AWS:Application` versions of the packages among `patches` (`name.arch` →
    /// `epoch:version-release`, or the plain version where the package has no release, as on
    /// apt). A node without inventory gives an empty map (the titles carry the version).
    async fn versions(
        &self,
        id: &str,
        patches: &[PatchRecord],
        calls: &CallLog,
    ) -> Result<BTreeMap<String, String>, AwsError> {
        const OP: &str = "ListInventoryEntries";
        let mut names: Vec<String> = patches
            .iter()
            .filter_map(|p| p.kb_id.rsplit_once('.').map(|(n, _)| n.to_string()))
            .collect();
        names.sort();
        names.dedup();
        let mut out = BTreeMap::new();
        for chunk in names.chunks(NAMES_PER_FILTER) {
            let filter = InventoryFilter::builder()
                .key("AWS:Application.Name")
                .set_values(Some(chunk.to_vec()))
                .r#type(InventoryQueryOperatorType::Equal)
                .build()
                .map_err(|e| AwsError::from_parts(Service::Ssm, OP, None, e.to_string()))?;
            let mut token: Option<String> = None;
            loop {
                calls.record(OP);
                let page = self
                    .ssm
                    .list_inventory_entries()
                    .instance_id(id)
                    .type_name("AWS:Application")
                    .filters(filter.clone())
                    .max_results(INVENTORY_PAGE)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(Service::Ssm, OP, e).on(&[id]))?;
                for entry in page.entries() {
                    let field = |k: &str| entry.get(k).filter(|v| !v.is_empty()).cloned();
                    let (Some(name), Some(version)) = (field("Name"), field("Version")) else {
                        continue;
                    };
                    let arch = field("Architecture").unwrap_or_default();
                    let full = match field("Release") {
                        Some(release) => format!(
                            "{}:{version}-{release}",
                            field("Epoch").unwrap_or_else(|| "0".to_string())
                        ),
                        None => version,
                    };
                    out.insert(format!("{name}.{arch}"), full);
                }
                token = page
                    .next_token()
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The promotion documents in the output bucket.
pub struct PromotionStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl PromotionStore {
    pub fn new(config: &SdkConfig, bucket: &str) -> PromotionStore {
        PromotionStore::from_client(crate::aws::s3_client(config), bucket)
    }

    pub fn from_client(s3: aws_sdk_s3::Client, bucket: &str) -> PromotionStore {
        PromotionStore {
            s3,
            bucket: bucket.to_string(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn put(
        &self,
        key: &str,
        body: String,
        content_type: &str,
        calls: &CallLog,
    ) -> Result<(), AwsError> {
        const OP: &str = "PutObject";
        calls.record(OP);
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::S3, OP, e).on(&[self.url(key)]))?;
        Ok(())
    }

    /// The object's text; `None` when it does not exist.
    async fn get(&self, key: &str, calls: &CallLog) -> Result<Option<String>, AwsError> {
        const OP: &str = "GetObject";
        calls.record(OP);
        let out = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let not_found = e.as_service_error().is_some_and(|s| s.is_no_such_key());
                if not_found {
                    return Ok(None);
                }
                return Err(AwsError::from_sdk(Service::S3, OP, e).on(&[self.url(key)]));
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| {
                AwsError::from_parts(Service::S3, OP, None, e.to_string()).on(&[self.url(key)])
            })?
            .into_bytes();
        String::from_utf8(bytes.to_vec()).map(Some).map_err(|e| {
            AwsError::from_parts(Service::S3, OP, None, format!("not UTF-8: {e}"))
                .on(&[self.url(key)])
        })
    }

    /// Store `manifest` for `environment` (the promoted one) with one override list per OS;
    /// content-addressed, so storing the same manifest again writes the same objects.
    pub async fn store_manifest(
        &self,
        environment: &str,
        manifest: &Manifest,
        calls: &CallLog,
    ) -> Result<ManifestRef, AwsError> {
        let hash = manifest.hash();
        let key = manifest_key(environment, &hash);
        let mut lists = BTreeMap::new();
        for os in manifest.operating_systems() {
            let Some(yaml) = manifest.override_list(os) else {
                continue;
            };
            let k = list_key(environment, &hash, os);
            self.put(&k, yaml, "application/yaml", calls).await?;
            lists.insert(os, self.url(&k));
        }
        self.put(&key, manifest.document(), "application/json", calls)
            .await?;
        info!(environment, hash = %hash, patches = manifest.patch_count(), url = %self.url(&key), "promotion manifest stored");
        Ok(ManifestRef {
            hash,
            url: self.url(&key),
            lists,
            patches: manifest.patch_count(),
        })
    }

    pub async fn write_state(
        &self,
        state: &PromotionState,
        calls: &CallLog,
    ) -> Result<(), AwsError> {
        let body = serde_json::to_string_pretty(state).map_err(|e| {
            AwsError::from_parts(
                Service::S3,
                "PutObject",
                None,
                format!("cannot encode the promotion state: {e}"),
            )
        })?;
        self.put(
            &state_key(&state.environment),
            body,
            "application/json",
            calls,
        )
        .await
    }

    /// The promoted environment's state; `None` when no source run was recorded yet. A state
    /// that does not parse is an error (never silently "no promotion").
    pub async fn read_state(
        &self,
        environment: &str,
        calls: &CallLog,
    ) -> Result<Option<PromotionState>, AwsError> {
        let key = state_key(environment);
        let Some(text) = self.get(&key, calls).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            warn!(key = %key, error = %e, "promotion state unreadable");
            AwsError::from_parts(
                Service::S3,
                "GetObject",
                None,
                format!("{} is not a promotion state document: {e}", self.url(&key)),
            )
        })
    }

    /// The manifest a state refers to.
    pub async fn read_manifest(
        &self,
        r: &ManifestRef,
        calls: &CallLog,
    ) -> Result<Manifest, AwsError> {
        let key = r
            .url
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .unwrap_or(&r.url)
            .to_string();
        let text = self.get(&key, calls).await?.ok_or_else(|| {
            AwsError::from_parts(
                Service::S3,
                "GetObject",
                Some("NoSuchKey".to_string()),
                format!("manifest {} is gone", r.url),
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            AwsError::from_parts(
                Service::S3,
                "GetObject",
                None,
                format!("{} is not a manifest: {e}", r.url),
            )
        })?;
        if manifest.hash() != r.hash {
            return Err(AwsError::from_parts(
                Service::S3,
                "GetObject",
                None,
                format!(
                    "manifest {} does not match its hash (expected {}, content hashes to {}): changed after it was recorded",
                    r.url,
                    r.hash,
                    manifest.hash()
                ),
            ));
        }
        Ok(manifest)
    }
}

/// After a window run of `environment`: record the promotion of every environment that
/// promotes from it (manifest, gate decision, state), and, when `environment` is itself
/// promoted, compare each host with the manifest it was to install. Returns the report's
/// promotion lines.
///
/// A failure that will repeat (an IAM denial, a missing bucket) is a line of the report (and
/// a warning): the report still goes out and says the promotion was NOT recorded. A transient
/// one (throttling, 5xx, a lost connection, after the SDK's own retries) is returned: the
/// caller releases the run's claim and fails the invocation, and Lambda's retry records the
/// promotion and sends the complete report (recording again writes the same objects).
pub async fn after_run(
    reader: &PatchReader,
    store: &PromotionStore,
    policy: &Policy,
    environment: &str,
    report: &RunReport,
    calls: &CallLog,
) -> Result<Vec<String>, AwsError> {
    let mut lines = Vec::new();
    let RunKind::Window { execution_id, .. } = &report.run else {
        return Ok(lines);
    };
    let (Some(start), Some(end)) = (report.start, report.end) else {
        if policy
            .environments
            .iter()
            .any(|e| e.approval.promotes_from() == Some(environment))
        {
            lines.push(format!(
                "promotion not recorded: execution {execution_id} has no start or end time"
            ));
        }
        return Ok(lines);
    };
    for target in policy
        .environments
        .iter()
        .filter(|e| e.approval.promotes_from() == Some(environment))
    {
        match record(
            reader,
            store,
            target,
            environment,
            execution_id,
            start,
            end,
            report,
            calls,
        )
        .await
        {
            Ok((state, manifest)) => {
                lines.push(state.describe());
                lines.extend(manifest_lines(&manifest));
            }
            Err(e) if e.retry() == Retry::Transient => return Err(e),
            Err(e) => {
                warn!(environment = %target.name, error = %e, "promotion not recorded");
                lines.push(format!(
                    "promotion to {} NOT recorded ({e}); {} keeps its previous promotion state",
                    target.name, target.name
                ));
            }
        }
    }
    if policy
        .environment(environment)
        .is_some_and(|e| e.approval.promotes_from().is_some())
    {
        match compare_run(reader, store, environment, report, start, end, calls).await {
            Ok(mut l) => lines.append(&mut l),
            Err(e) if e.retry() == Retry::Transient => return Err(e),
            Err(e) => {
                warn!(environment, error = %e, "promotion check failed");
                lines.push(format!("cannot compare with the promotion manifest: {e}"));
            }
        }
    }
    Ok(lines)
}

/// One line per OS of the manifest, then what could not be pinned.
fn manifest_lines(m: &Manifest) -> Vec<String> {
    let mut out: Vec<String> = m
        .hosts
        .iter()
        .map(|(os, hosts)| {
            let n = m.patches.get(os).map(Vec::len).unwrap_or(0);
            format!("  {}: {n} patch(es) from {hosts} host(s)", os.as_str())
        })
        .collect();
    for u in &m.unpinned {
        out.push(format!(
            "  not pinned: {} {}: {}",
            u.os.as_str(),
            u.id,
            u.reason
        ));
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn record(
    reader: &PatchReader,
    store: &PromotionStore,
    target: &Environment,
    source: &str,
    execution_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    report: &RunReport,
    calls: &CallLog,
) -> Result<(PromotionState, Manifest), AwsError> {
    let ids: Vec<String> = report
        .instances
        .iter()
        .filter(|i| matches!(i.outcome(), Outcome::Patched | Outcome::RebootPending))
        .map(|i| i.instance_id.clone())
        .collect();
    // Inventory only for a host whose records installed in the run lack a version in the
    // title (`name.arch:version`): then the manifest needs Inventory's.
    let hosts = reader
        .hosts(&ids, calls, |_, patches| {
            patches.iter().any(|p| {
                installed_in(p, start, end) && version_from_title(&p.kb_id, &p.title).is_none()
            })
        })
        .await?;
    let manifest = Manifest::build(source, execution_id, start, end, &hosts);
    let manifest_ref = store.store_manifest(&target.name, &manifest, calls).await?;
    let decision = decide(&target.approval.gate(), source, report);
    let state = PromotionState {
        format: crate::promotion::FORMAT,
        environment: target.name.clone(),
        source: source.to_string(),
        execution_id: execution_id.to_string(),
        run_date: manifest.run_date.clone(),
        decision,
        decided_at: Utc::now(),
        forced_by: None,
        manifest: manifest_ref,
    };
    store.write_state(&state, calls).await?;
    info!(environment = %state.environment, verdict = ?state.decision.verdict, hash = %state.manifest.hash, "promotion recorded");
    Ok((state, manifest))
}

async fn compare_run(
    reader: &PatchReader,
    store: &PromotionStore,
    environment: &str,
    report: &RunReport,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    calls: &CallLog,
) -> Result<Vec<String>, AwsError> {
    let Some(state) = store.read_state(environment, calls).await? else {
        return Ok(vec![format!(
            "{environment} is held: no run of its source recorded yet, so this run only scanned"
        )]);
    };
    if !state.decision.verdict.installs() {
        return Ok(vec![state.describe()]);
    }
    let manifest = store.read_manifest(&state.manifest, calls).await?;
    let ids: Vec<String> = report
        .instances
        .iter()
        .filter(|i| i.outcome() != Outcome::Missed)
        .map(|i| i.instance_id.clone())
        .collect();
    // Inventory only for a host where some manifest entry is not settled by a record the
    // run installed with that very version (apt: the record names the newer version the
    // baseline approves, Inventory the one the list pinned).
    let hosts = reader
        .hosts(&ids, calls, |os, patches| {
            manifest.patches.get(&os).is_some_and(|want| {
                want.iter().any(|e| {
                    !patches.iter().any(|p| {
                        p.kb_id == e.id
                            && installed_in(p, start, end)
                            && version_from_title(&p.kb_id, &p.title) == e.version
                    })
                })
            })
        })
        .await?;
    let comparisons: Vec<HostComparison> = hosts
        .iter()
        .map(|h| compare(&manifest, h, start, end))
        .collect();
    let exact = comparisons
        .iter()
        .filter(|c| c.missing.is_empty() && c.extra.is_empty())
        .count();
    let mut lines = vec![format!(
        "manifest {} of {}'s run of {}: {exact}/{} host(s) installed exactly the manifest",
        short(&manifest.hash()),
        manifest.source,
        manifest.run_date,
        comparisons.len()
    )];
    // Every host that differs, up to HOSTS_LISTED (a 5,000-host report stays within SNS's
    // 256 KB), then the exact ones while there is room.
    let (differ, same): (Vec<&HostComparison>, Vec<&HostComparison>) = comparisons
        .iter()
        .partition(|c| !c.missing.is_empty() || !c.extra.is_empty());
    let listed: Vec<&HostComparison> = differ
        .iter()
        .chain(same.iter())
        .take(HOSTS_LISTED)
        .copied()
        .collect();
    let unlisted = comparisons.len() - listed.len();
    for c in listed {
        let os = c.os.map(|o| o.as_str()).unwrap_or("unknown OS");
        let mut parts = vec![format!("{} exact", c.exact)];
        if !c.missing.is_empty() {
            let missing: Vec<String> = c
                .missing
                .iter()
                .map(|(id, why)| format!("{id} ({why})"))
                .collect();
            parts.push(format!("missing {}", missing.join(", ")));
        }
        if !c.extra.is_empty() {
            parts.push(format!("extra {}", c.extra.join(", ")));
        }
        lines.push(format!("  {} {os}: {}", c.instance_id, parts.join("; ")));
    }
    if unlisted > 0 {
        let differ_unlisted = differ.len().saturating_sub(HOSTS_LISTED);
        lines.push(format!(
            "  … and {unlisted} more host(s), {differ_unlisted} of them not exact (each host's patch records: DescribeInstancePatches)"
        ));
    }
    Ok(lines)
}

/// Force the promotion of the manifest a held environment is waiting on (`patchpilot
/// promote --force`, `{"promote": "force"}`). Returns the new state; an environment with
/// nothing recorded, or already installing, is an error saying so.
pub async fn force(
    store: &PromotionStore,
    environment: &str,
    by: &str,
    calls: &CallLog,
) -> Result<PromotionState, ForceError> {
    let mut state = store
        .read_state(environment, calls)
        .await
        .map_err(ForceError::Aws)?
        .ok_or_else(|| ForceError::NothingRecorded(environment.to_string()))?;
    match state.decision.verdict {
        Verdict::Held => {}
        Verdict::Pass | Verdict::Forced => return Err(ForceError::NotHeld(state.describe())),
    }
    state.decision.verdict = Verdict::Forced;
    state.forced_by = Some(by.to_string());
    state.decided_at = Utc::now();
    store
        .write_state(&state, calls)
        .await
        .map_err(ForceError::Aws)?;
    info!(environment, by, hash = %state.manifest.hash, "promotion forced");
    Ok(state)
}

#[derive(Debug, thiserror::Error)]
pub enum ForceError {
    #[error("nothing to force: no run of the source of `{0}` is recorded yet")]
    NothingRecorded(String),
    #[error("nothing to force: {0}")]
    NotHeld(String),
    #[error("promotion state: {0}")]
    Aws(#[source] AwsError),
}

#[cfg(test)]
mod tests {
    use aws_sdk_ssm::types::PatchComplianceDataState as S;

    use crate::promotion::state;

    /// The states the manifest and the comparison match on are the SDK's wire values.
    #[test]
    fn patch_states_are_the_apis_wire_values() {
        assert_eq!(S::Installed.as_str(), state::INSTALLED);
        assert_eq!(S::InstalledOther.as_str(), state::INSTALLED_OTHER);
        assert_eq!(
            S::InstalledPendingReboot.as_str(),
            state::INSTALLED_PENDING_REBOOT
        );
        assert_eq!(S::Missing.as_str(), state::MISSING);
        assert_eq!(S::Failed.as_str(), state::FAILED);
    }
}
