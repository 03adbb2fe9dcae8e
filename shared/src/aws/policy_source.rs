//! Where the functions get the policy: the SSM parameter named by `POLICY_PARAMETER`, cached
//! across warm invocations for `POLICY_CACHE_SECONDS` (default 60), or the embedded reference
//! policy when no parameter is configured. A policy whose `tag_key` is not the
//! `PatchGroupTagKey` the stack was deployed with (`PATCH_GROUP_TAG_KEY`) is refused: IAM lets
//! the functions write only the deployed key, so every tag write would be denied.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use thiserror::Error;
use tracing::{info, warn};

use super::{AwsError, CallLog, Service};
use crate::policy::{Policy, PolicyError, Problem};
use crate::settings::Settings;

#[derive(Debug, Error)]
pub enum PolicySourceError {
    #[error("cannot read the policy parameter `{parameter}`: {source}")]
    Read {
        parameter: String,
        #[source]
        source: AwsError,
    },
    #[error("the policy in parameter `{parameter}` is unusable, nothing was changed: {source}")]
    Invalid {
        parameter: String,
        #[source]
        source: PolicyError,
    },
    #[error("the policy from {policy_source} sets tag_key `{policy}`, but the stack was deployed with PatchGroupTagKey `{deployed}` (PATCH_GROUP_TAG_KEY), the only patch-group tag key its IAM role may write; nothing was changed. Set `tag_key: {deployed}` in the policy, or redeploy with PatchGroupTagKey={policy}")]
    TagKeyMismatch {
        policy_source: String,
        policy: String,
        deployed: String,
    },
}

impl PolicySourceError {
    /// The Lambda `errorType` all three functions report for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            PolicySourceError::Read { .. } => "PolicyUnreadable",
            PolicySourceError::Invalid { .. } | PolicySourceError::TagKeyMismatch { .. } => {
                "PolicyInvalid"
            }
        }
    }
}

/// A loaded, validated policy and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub warnings: Vec<Problem>,
    /// `embedded` or the parameter name and version.
    pub source: String,
}

pub struct PolicySource {
    ssm: aws_sdk_ssm::Client,
    parameter: Option<String>,
    ttl: Duration,
    /// `PATCH_GROUP_TAG_KEY`: the policy's `tag_key` must equal it.
    deployed_tag_key: Option<String>,
    cached: Mutex<Option<(Instant, LoadedPolicy)>>,
}

impl PolicySource {
    pub fn new(ssm: aws_sdk_ssm::Client, parameter: Option<String>, ttl: Duration) -> PolicySource {
        PolicySource {
            ssm,
            parameter: parameter.filter(|p| !p.trim().is_empty()),
            ttl,
            deployed_tag_key: None,
            cached: Mutex::new(None),
        }
    }

    /// From `POLICY_PARAMETER`, `POLICY_CACHE_SECONDS` and `PATCH_GROUP_TAG_KEY`.
    pub fn from_settings(ssm: aws_sdk_ssm::Client, settings: &Settings) -> PolicySource {
        PolicySource::new(
            ssm,
            settings.policy_parameter.clone(),
            settings.policy_cache,
        )
        .with_deployed_tag_key(settings.patch_group_tag_key.clone())
    }

    /// Refuse policies whose `tag_key` is not `key` (the stack's `PatchGroupTagKey`); `None`
    /// accepts any.
    pub fn with_deployed_tag_key(mut self, key: Option<String>) -> PolicySource {
        self.deployed_tag_key = key.filter(|k| !k.trim().is_empty());
        self
    }

    pub fn parameter(&self) -> Option<&str> {
        self.parameter.as_deref()
    }

    /// The current policy; reads the parameter at most once per TTL.
    pub async fn get(&self, calls: &CallLog) -> Result<LoadedPolicy, PolicySourceError> {
        if let Some((at, p)) = self
            .cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < self.ttl {
                return Ok(p.clone());
            }
        }
        let loaded = self.fetch(calls).await?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), loaded.clone()));
        Ok(loaded)
    }

    /// Read and validate now, bypassing the cache (a policy-change event).
    pub async fn fetch(&self, calls: &CallLog) -> Result<LoadedPolicy, PolicySourceError> {
        let loaded = self.read(calls).await?;
        self.check_tag_key(&loaded)?;
        Ok(loaded)
    }

    fn check_tag_key(&self, loaded: &LoadedPolicy) -> Result<(), PolicySourceError> {
        match &self.deployed_tag_key {
            Some(deployed) if *deployed != loaded.policy.tag_key => {
                Err(PolicySourceError::TagKeyMismatch {
                    policy_source: loaded.source.clone(),
                    policy: loaded.policy.tag_key.clone(),
                    deployed: deployed.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    async fn read(&self, calls: &CallLog) -> Result<LoadedPolicy, PolicySourceError> {
        let Some(parameter) = self.parameter.clone() else {
            info!(source = "embedded", "using the embedded reference policy");
            return Ok(LoadedPolicy {
                policy: Policy::reference(),
                warnings: Vec::new(),
                source: "embedded".to_string(),
            });
        };
        calls.record("GetParameter");
        let out = self
            .ssm
            .get_parameter()
            .name(&parameter)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| PolicySourceError::Read {
                parameter: parameter.clone(),
                source: AwsError::from_sdk(Service::Ssm, "GetParameter", e),
            })?;
        let p = out.parameter.ok_or_else(|| PolicySourceError::Read {
            parameter: parameter.clone(),
            source: AwsError::missing("GetParameter", "Parameter"),
        })?;
        let text = p.value.unwrap_or_default();
        let (policy, warnings) =
            Policy::load(&text, Utc::now()).map_err(|source| PolicySourceError::Invalid {
                parameter: parameter.clone(),
                source,
            })?;
        for w in &warnings {
            warn!(path = %w.path, allowed = %w.allowed, "policy warning: {}", w.message);
        }
        Ok(LoadedPolicy {
            policy,
            warnings,
            source: format!("{parameter} (version {})", p.version),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_ssm() -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::Config::builder()
                .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
                .region(aws_sdk_ssm::config::Region::new("us-east-1"))
                .build(),
        )
    }

    fn fetch(source: &PolicySource) -> Result<LoadedPolicy, PolicySourceError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(source.fetch(&CallLog::new()))
    }

    #[test]
    fn a_policy_tag_key_other_than_the_deployed_one_is_refused_with_both_values() {
        let settings = Settings::from_map(
            &[("PATCH_GROUP_TAG_KEY".to_string(), "PatchGroup".to_string())].into(),
        );
        let source = PolicySource::from_settings(offline_ssm(), &settings);
        let err = fetch(&source).expect_err("Patch Group is not PatchGroup");
        assert_eq!(err.error_type(), "PolicyInvalid");
        let text = err.to_string();
        for part in [
            "tag_key `Patch Group`",
            "PatchGroupTagKey `PatchGroup`",
            "Set `tag_key: PatchGroup` in the policy",
            "redeploy with PatchGroupTagKey=Patch Group",
            "embedded",
        ] {
            assert!(text.contains(part), "missing {part}: {text}");
        }
        let same = PolicySource::new(offline_ssm(), None, Duration::from_secs(60))
            .with_deployed_tag_key(Some("Patch Group".to_string()));
        assert!(fetch(&same).is_ok());
    }
}
