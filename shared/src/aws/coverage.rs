//! Reads what [`crate::coverage::assess`] needs. Every call is recorded in the [`CallLog`];
//! the reads grow only with the fleet (N hosts, K OSes present on managed nodes, P hosts in a
//! patch group that are managed or stopped, H hybrid `mi-*` nodes):
//!
//! | call | count | API reference |
//! |---|---|---|
//! | `DescribeInstances` | ⌈N/1000⌉ (MaxResults 1000) | EC2: DescribeInstances (MaxResults 5–1000) |
//! | `DescribeInstanceInformation` | ⌈N/50⌉ (MaxResults 50, no filter: EC2 and `mi-*`) | SSM: DescribeInstanceInformation (MaxResults 5–50) |
//! | `ListTagsForResource` | H (SSM has no batched tag read for managed nodes; none for EC2, whose tags come with DescribeInstances) | SSM: ListTagsForResource |
//! | `DescribePatchGroups` | K (filter `OPERATING_SYSTEM`, MaxResults 100, paged) | SSM: DescribePatchGroups, PatchOrchestratorFilter |
//! | `GetDefaultPatchBaseline` | K | SSM: GetDefaultPatchBaseline |
//! | `DescribeInstancePatchStates` | ⌈P/50⌉ (InstanceIds: up to 50) | SSM: DescribeInstancePatchStates |
//! | `GetServiceSetting` | 1 (`/ssm/managed-instance/default-ec2-instance-management-role`) | SSM: GetServiceSetting; User Guide "Default Host Management Configuration" |
//!
//! [`CoverageReader::suggest_baselines`] (`patchpilot render --fleet`) adds one
//! `GetPatchBaseline` per OS the policy is missing, for the rules of the account's default
//! baseline of that OS.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_ssm::types::{InstanceInformation, OperatingSystem as SdkOs, PatchOrchestratorFilter};
use chrono::{DateTime, Utc};
use thiserror::Error;
use tracing::{info, warn};

use super::ec2::Ec2Fleet;
use super::{AwsError, CallLog, Service};
use crate::coverage::{
    assess, needs_patch_state, oses_present, Baselines, Coverage, CoverageInput, Host,
    HostManagement, PatchState, SsmInfo,
};
use crate::fleet::{FleetError, InstancePort};
use crate::policy::{ApprovalRule, ComplianceLevel, OperatingSystem, Policy};
use crate::suggest::BaselineSuggestion;

/// `DescribeInstanceInformation` MaxResults maximum (5–50).
const INFORMATION_PAGE: i32 = 50;
/// `DescribePatchGroups` MaxResults maximum (1–100).
const PATCH_GROUPS_PAGE: i32 = 100;
/// The Default Host Management Configuration setting (GetServiceSetting `SettingId`).
pub const DHMC_SETTING_ID: &str = "/ssm/managed-instance/default-ec2-instance-management-role";

/// A read for the coverage failed.
#[derive(Debug, Error)]
pub enum CoverageError {
    #[error("coverage: {doing}: {source}")]
    Aws {
        doing: String,
        #[source]
        source: AwsError,
    },
    #[error("coverage: {0}")]
    Fleet(#[from] FleetError),
}

impl CoverageError {
    fn aws(doing: impl Into<String>, source: AwsError) -> CoverageError {
        CoverageError::Aws {
            doing: doing.into(),
            source,
        }
    }
}

/// The coverage reads (EC2 and SSM clients).
pub struct CoverageReader {
    ssm: aws_sdk_ssm::Client,
    ec2: Ec2Fleet,
}

impl CoverageReader {
    pub fn new(config: &SdkConfig) -> CoverageReader {
        CoverageReader::from_clients(
            crate::aws::ssm_client(config),
            crate::aws::ec2_client(config),
        )
    }

    pub fn from_clients(ssm: aws_sdk_ssm::Client, ec2: aws_sdk_ec2::Client) -> CoverageReader {
        CoverageReader {
            ssm,
            ec2: Ec2Fleet::from_client(ec2),
        }
    }

    /// Read everything and assess it: the fleet's coverage against `policy` at `now`.
    pub async fn coverage(
        &self,
        policy: &Policy,
        now: DateTime<Utc>,
        calls: &CallLog,
    ) -> Result<Coverage, CoverageError> {
        let input = self.read(policy, calls).await?;
        Ok(assess(policy, &input, now))
    }

    /// The coverage, and for every OS on managed nodes that the policy has no baseline for,
    /// a policy entry with the rules of the account's default baseline for that OS (one
    /// `GetPatchBaseline` each).
    pub async fn suggest_baselines(
        &self,
        policy: &Policy,
        now: DateTime<Utc>,
        calls: &CallLog,
    ) -> Result<(Coverage, Vec<BaselineSuggestion>), CoverageError> {
        let input = self.read(policy, calls).await?;
        let coverage = assess(policy, &input, now);
        let mut out = Vec::new();
        for os in &coverage.suggested_baselines {
            let (template, rules) = match input.baselines.defaults.get(os) {
                Some(id) => {
                    let (name, rules) = self.baseline_rules(id, calls).await?;
                    (Some(name), rules)
                }
                None => (None, Vec::new()),
            };
            out.push(BaselineSuggestion::new(*os, &coverage, template, rules));
        }
        Ok((coverage, out))
    }

    /// GetPatchBaseline: the name (else `id`) and approval rules of `id`, as policy rules.
    async fn baseline_rules(
        &self,
        id: &str,
        calls: &CallLog,
    ) -> Result<(String, Vec<ApprovalRule>), CoverageError> {
        calls.record("GetPatchBaseline");
        let out = self
            .ssm
            .get_patch_baseline()
            .baseline_id(id)
            .send()
            .await
            .map_err(|e| {
                CoverageError::aws(
                    format!("reading the rules of patch baseline {id}"),
                    AwsError::from_sdk(Service::Ssm, "GetPatchBaseline", e).on(&[id]),
                )
            })?;
        let name = out.name().unwrap_or(id).to_string();
        let rules = out
            .approval_rules()
            .map(|r| r.patch_rules())
            .unwrap_or_default();
        let rules = rules
            .iter()
            .map(|r| ApprovalRule {
                filters: r
                    .patch_filter_group()
                    .map(|g| g.patch_filters())
                    .unwrap_or_default()
                    .iter()
                    .map(|f| (f.key().as_str().to_string(), f.values().to_vec()))
                    .collect(),
                compliance_level: r
                    .compliance_level()
                    .and_then(|c| {
                        serde_json::from_value::<ComplianceLevel>(serde_json::Value::String(
                            c.as_str().to_string(),
                        ))
                        .ok()
                    })
                    .unwrap_or_default(),
                enable_non_security: r.enable_non_security().unwrap_or(false),
                // The environment's approval delay applies (see `crate::suggest`).
                approve_after_days: None,
            })
            .collect();
        Ok((name, rules))
    }

    /// Read the [`CoverageInput`].
    pub async fn read(
        &self,
        policy: &Policy,
        calls: &CallLog,
    ) -> Result<CoverageInput, CoverageError> {
        let mut ec2_hosts = Vec::new();
        let mut token = None;
        loop {
            let page = self.ec2.page(token, calls).await?;
            ec2_hosts.extend(page.instances);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let infos = self.instance_information(calls).await?;
        let mut by_id: BTreeMap<String, InstanceInformation> = infos
            .into_iter()
            .filter_map(|i| Some((i.instance_id()?.to_string(), i)))
            .collect();
        let mut hosts: Vec<Host> = ec2_hosts
            .into_iter()
            .map(|facts| {
                let ssm = by_id.remove(&facts.instance_id).map(|i| ssm_info(&i));
                Host { facts, ssm }
            })
            .collect();
        // What is left: hybrid `mi-*` nodes (EC2 instances SSM lists but EC2 no longer does
        // are terminated, and left out).
        for (id, info) in by_id {
            if !id.starts_with("mi-") {
                continue;
            }
            let tags = self.managed_tags(&id, calls).await?;
            let facts = super::managed::node_facts(&id, &info, tags);
            hosts.push(Host {
                facts,
                ssm: Some(ssm_info(&info)),
            });
        }

        let mut baselines = Baselines::default();
        for os in oses_present(&hosts) {
            self.registrations(os, &mut baselines, calls).await?;
            if let Some(id) = self.default_baseline(os, calls).await? {
                baselines.defaults.insert(os, id);
            }
        }
        let wanted: Vec<String> = hosts
            .iter()
            .filter(|h| needs_patch_state(policy, h))
            .map(|h| h.facts.instance_id.clone())
            .collect();
        let patch_states = self.patch_states(&wanted, calls).await?;
        let host_management = self.host_management(calls).await?;
        info!(
            hosts = hosts.len(),
            oses = baselines.defaults.len(),
            patch_states = patch_states.len(),
            host_management = %host_management,
            "coverage facts read"
        );
        Ok(CoverageInput {
            hosts,
            patch_states,
            baselines,
            host_management,
        })
    }

    async fn instance_information(
        &self,
        calls: &CallLog,
    ) -> Result<Vec<InstanceInformation>, CoverageError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            calls.record("DescribeInstanceInformation");
            let page = self
                .ssm
                .describe_instance_information()
                .max_results(INFORMATION_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    CoverageError::aws(
                        "listing SSM managed nodes",
                        AwsError::from_sdk(Service::Ssm, "DescribeInstanceInformation", e),
                    )
                })?;
            out.extend(page.instance_information_list().iter().cloned());
            token = page.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn managed_tags(
        &self,
        id: &str,
        calls: &CallLog,
    ) -> Result<BTreeMap<String, String>, CoverageError> {
        super::managed::node_tags(&self.ssm, id, calls)
            .await
            .map_err(|e| CoverageError::aws(format!("reading the tags of managed node {id}"), e))
    }

    /// `DescribePatchGroups` for one OS: every (group, baseline) registration of that OS.
    async fn registrations(
        &self,
        os: OperatingSystem,
        baselines: &mut Baselines,
        calls: &CallLog,
    ) -> Result<(), CoverageError> {
        let filter = PatchOrchestratorFilter::builder()
            .key("OPERATING_SYSTEM")
            .values(os.as_str())
            .build();
        let mut token = None;
        loop {
            calls.record("DescribePatchGroups");
            let page = self
                .ssm
                .describe_patch_groups()
                .filters(filter.clone())
                .max_results(PATCH_GROUPS_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    CoverageError::aws(
                        format!("listing the patch groups of {os}"),
                        AwsError::from_sdk(Service::Ssm, "DescribePatchGroups", e),
                    )
                })?;
            for m in page.mappings() {
                let (Some(group), Some(identity)) = (m.patch_group(), m.baseline_identity()) else {
                    continue;
                };
                let Some(id) = identity.baseline_id() else {
                    continue;
                };
                // The filter should make this `os`; trust what the identity says.
                let mapped = identity
                    .operating_system()
                    .and_then(|o| OperatingSystem::parse(o.as_str()))
                    .unwrap_or(os);
                baselines
                    .registered
                    .insert((group.to_string(), mapped), id.to_string());
            }
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(());
            }
        }
    }

    async fn default_baseline(
        &self,
        os: OperatingSystem,
        calls: &CallLog,
    ) -> Result<Option<String>, CoverageError> {
        calls.record("GetDefaultPatchBaseline");
        let out = self
            .ssm
            .get_default_patch_baseline()
            .operating_system(SdkOs::from(os.as_str()))
            .send()
            .await
            .map_err(|e| {
                CoverageError::aws(
                    format!("reading the default patch baseline of {os}"),
                    AwsError::from_sdk(Service::Ssm, "GetDefaultPatchBaseline", e),
                )
            })?;
        Ok(out.baseline_id().map(str::to_string))
    }

    async fn patch_states(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> Result<BTreeMap<String, PatchState>, CoverageError> {
        let states = super::runs::instance_patch_states(&self.ssm, ids, calls)
            .await
            .map_err(|e| CoverageError::aws("reading the nodes' last patch operations", e))?;
        let mut out = BTreeMap::new();
        for s in states {
            let Some(end) = to_chrono(s.operation_end_time()) else {
                continue;
            };
            out.insert(
                s.instance_id().to_string(),
                PatchState {
                    baseline_id: s.baseline_id().to_string(),
                    patch_group: Some(s.patch_group().to_string()).filter(|g| !g.is_empty()),
                    operation: s.operation().as_str().to_string(),
                    operation_end: end,
                    missing: s.missing_count(),
                    failed: s.failed_count(),
                    installed_pending_reboot: s.installed_pending_reboot_count().unwrap_or(0),
                },
            );
        }
        Ok(out)
    }

    /// Whether Default Host Management is on. A denial fails the read (the role must be
    /// fixed); any other error (the setting is not offered in the Region) is reported as
    /// unknown, since the coverage itself does not depend on it.
    async fn host_management(&self, calls: &CallLog) -> Result<HostManagement, CoverageError> {
        calls.record("GetServiceSetting");
        match self
            .ssm
            .get_service_setting()
            .setting_id(DHMC_SETTING_ID)
            .send()
            .await
        {
            Ok(out) => Ok(HostManagement::from_setting(
                out.service_setting()
                    .and_then(|s| s.setting_value())
                    .unwrap_or_default(),
            )),
            Err(e) => {
                let e = AwsError::from_sdk(Service::Ssm, "GetServiceSetting", e);
                if e.is_access_denied() {
                    return Err(CoverageError::aws(
                        "reading the Default Host Management setting",
                        e,
                    ));
                }
                warn!(error = %e, setting_id = DHMC_SETTING_ID, "Default Host Management setting not readable");
                Ok(HostManagement::Unknown {
                    reason: e.to_string(),
                })
            }
        }
    }
}

fn ssm_info(info: &InstanceInformation) -> SsmInfo {
    SsmInfo {
        ping_status: info
            .ping_status()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "unknown".to_string()),
        last_ping: info.last_ping_date_time().and_then(to_chrono),
        agent_version: info.agent_version().map(str::to_string),
        platform_type: info.platform_type().map(|p| p.as_str().to_string()),
        platform_name: info.platform_name().map(str::to_string),
        platform_version: info.platform_version().map(str::to_string),
    }
}

fn to_chrono(t: &aws_sdk_ssm::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}
