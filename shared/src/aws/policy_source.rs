//! Where the functions get the policy: the SSM parameter named by `POLICY_PARAMETER`, cached
//! across warm invocations for `POLICY_CACHE_SECONDS` (default 60), or the embedded reference
//! policy when no parameter is configured. A policy whose `tag_key` is not the
//! `PatchGroupTagKey` the stack was deployed with (`PATCH_GROUP_TAG_KEY`) is refused: IAM lets
//! the functions write only the deployed key, so every tag write would be denied.
//!
//! When the parameter holds an unusable policy, a source built [`PolicySource::with_last_good`]
//! with `fallback` (auto-tagger, run-notifier) answers the last known good policy
//! ([`super::last_good`]) instead, marked [`LoadedPolicy::fallback`]: an invalid edit must not
//! stop tagging and reporting. baseline-sync never falls back: it changes nothing and reports
//! the errors.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use thiserror::Error;
use tracing::{info, warn};

use super::last_good::{self, LastGoodStore, StoredPolicy};
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
    #[error("the policy in parameter `{parameter}` (version {version}) is unusable, nothing was changed: {source}")]
    Invalid {
        parameter: String,
        version: i64,
        sha256: String,
        #[source]
        source: PolicyError,
    },
    #[error("the policy from {policy_source} sets tag_key `{policy}`, but the stack was deployed with PatchGroupTagKey `{deployed}` (PATCH_GROUP_TAG_KEY), the only patch-group tag key its IAM role may write; nothing was changed. Set `tag_key: {deployed}` in the policy, or redeploy with PatchGroupTagKey={policy}")]
    TagKeyMismatch {
        policy_source: String,
        policy: String,
        deployed: String,
        sha256: String,
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

    /// The parameter holds a policy that cannot be used (as opposed to: it cannot be read).
    pub fn is_invalid(&self) -> bool {
        !matches!(self, PolicySourceError::Read { .. })
    }

    /// SHA-256 of the unusable policy text.
    pub fn sha256(&self) -> Option<&str> {
        match self {
            PolicySourceError::Read { .. } => None,
            PolicySourceError::Invalid { sha256, .. }
            | PolicySourceError::TagKeyMismatch { sha256, .. } => Some(sha256),
        }
    }

    /// Every problem of an unusable policy, one line each.
    pub fn problems(&self) -> Vec<String> {
        match self {
            PolicySourceError::Invalid {
                source: PolicyError::Invalid(problems),
                ..
            } => problems
                .iter()
                .filter(|p| p.severity == crate::policy::Severity::Error)
                .map(|p| format!("{}: {} (allowed: {})", p.path, p.message, p.allowed))
                .collect(),
            PolicySourceError::Invalid { source, .. } => vec![source.to_string()],
            other => vec![other.to_string()],
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
    /// The parameter's version (`None`: embedded, or a file).
    pub version: Option<i64>,
    /// SHA-256 of the policy text.
    pub sha256: String,
    /// The policy text as read (remembered as the last known good policy).
    pub text: String,
    /// `Some(why)`: the parameter's policy is unusable and this is the last known good one.
    pub fallback: Option<String>,
}

impl LoadedPolicy {
    /// A policy read from somewhere else than the parameter (the CLI's file).
    pub fn from_text(
        policy: Policy,
        warnings: Vec<Problem>,
        source: String,
        text: &str,
    ) -> LoadedPolicy {
        LoadedPolicy {
            policy,
            warnings,
            source,
            version: None,
            sha256: last_good::sha256_hex(text),
            text: text.to_string(),
            fallback: None,
        }
    }

    /// Which policy this is, as a report's footer says it: parameter, version, hash, and
    /// whether it is the last known good one.
    pub fn label(&self) -> String {
        let name = self.parameter_name();
        let base = last_good::label(name, self.version, &self.sha256);
        match &self.fallback {
            Some(_) => format!("{base}, the last known good policy (the current one is invalid)"),
            None => base,
        }
    }

    fn parameter_name(&self) -> &str {
        self.source
            .split_once(" (version")
            .map(|(p, _)| p)
            .unwrap_or(&self.source)
    }

    /// What to store as the last known good policy.
    pub fn stored(&self) -> StoredPolicy {
        StoredPolicy {
            parameter: self.parameter_name().to_string(),
            version: self.version,
            sha256: self.sha256.clone(),
            text: self.text.clone(),
            stored_at: None,
        }
    }
}

pub struct PolicySource {
    ssm: aws_sdk_ssm::Client,
    parameter: Option<String>,
    ttl: Duration,
    /// `PATCH_GROUP_TAG_KEY`: the policy's `tag_key` must equal it.
    deployed_tag_key: Option<String>,
    /// Where the last known good policy is kept, and whether to answer it when the
    /// parameter's policy is unusable.
    last_good: Option<(LastGoodStore, bool)>,
    cached: Mutex<Option<(Instant, LoadedPolicy)>>,
}

impl PolicySource {
    pub fn new(ssm: aws_sdk_ssm::Client, parameter: Option<String>, ttl: Duration) -> PolicySource {
        PolicySource {
            ssm,
            parameter: parameter.filter(|p| !p.trim().is_empty()),
            ttl,
            deployed_tag_key: None,
            last_good: None,
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

    /// Keep (baseline-sync) or read (`fallback`: auto-tagger, run-notifier) the last known
    /// good policy in `store`.
    pub fn with_last_good(mut self, store: LastGoodStore, fallback: bool) -> PolicySource {
        self.last_good = Some((store, fallback));
        self
    }

    /// The store of the last known good policy, if configured.
    pub fn last_good(&self) -> Option<&LastGoodStore> {
        self.last_good.as_ref().map(|(s, _)| s)
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

    /// Read and validate now, bypassing the cache (a policy-change event). An unusable
    /// policy is answered with the last known good one when this source falls back and one
    /// is stored.
    pub async fn fetch(&self, calls: &CallLog) -> Result<LoadedPolicy, PolicySourceError> {
        let current = self.read(calls).await.and_then(|loaded| {
            self.check_tag_key(&loaded)?;
            Ok(loaded)
        });
        match (current, &self.last_good) {
            (Err(e), Some((store, true))) if e.is_invalid() => {
                self.last_known_good(store, e, calls).await
            }
            (current, _) => current,
        }
    }

    async fn last_known_good(
        &self,
        store: &LastGoodStore,
        invalid: PolicySourceError,
        calls: &CallLog,
    ) -> Result<LoadedPolicy, PolicySourceError> {
        let stored = match store.read(calls).await {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                warn!(error = %invalid, table = %store.table(), "policy unusable and no last known good policy stored yet");
                return Err(invalid);
            }
            Err(e) => {
                warn!(error = %invalid, read_error = %e, "policy unusable and the last known good policy cannot be read");
                return Err(invalid);
            }
        };
        let Ok((policy, warnings)) = Policy::load(&stored.text, Utc::now()) else {
            warn!(error = %invalid, last_good = %stored.label(), "the last known good policy no longer validates");
            return Err(invalid);
        };
        let loaded = LoadedPolicy {
            policy,
            warnings,
            source: format!(
                "{} (version {})",
                stored.parameter,
                stored.version.map_or("-".to_string(), |v| v.to_string())
            ),
            version: stored.version,
            sha256: stored.sha256.clone(),
            text: stored.text.clone(),
            fallback: Some(invalid.to_string()),
        };
        self.check_tag_key(&loaded)?;
        warn!(error = %invalid, policy = %loaded.label(), "policy unusable: working on the last known good policy");
        Ok(loaded)
    }

    fn check_tag_key(&self, loaded: &LoadedPolicy) -> Result<(), PolicySourceError> {
        match &self.deployed_tag_key {
            Some(deployed) if *deployed != loaded.policy.tag_key => {
                Err(PolicySourceError::TagKeyMismatch {
                    policy_source: loaded.source.clone(),
                    policy: loaded.policy.tag_key.clone(),
                    deployed: deployed.clone(),
                    sha256: loaded.sha256.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    async fn read(&self, calls: &CallLog) -> Result<LoadedPolicy, PolicySourceError> {
        let Some(parameter) = self.parameter.clone() else {
            info!(source = "embedded", "using the embedded reference policy");
            return Ok(LoadedPolicy::from_text(
                Policy::reference(),
                Vec::new(),
                "embedded".to_string(),
                crate::policy::EMBEDDED_POLICY_MARKER,
            ));
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
        let sha256 = last_good::sha256_hex(&text);
        let (policy, warnings) =
            Policy::load(&text, Utc::now()).map_err(|source| PolicySourceError::Invalid {
                parameter: parameter.clone(),
                version: p.version,
                sha256: sha256.clone(),
                source,
            })?;
        for w in &warnings {
            warn!(path = %w.path, allowed = %w.allowed, "policy warning: {}", w.message);
        }
        Ok(LoadedPolicy {
            policy,
            warnings,
            source: format!("{parameter} (version {})", p.version),
            version: Some(p.version),
            sha256,
            text,
            fallback: None,
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
