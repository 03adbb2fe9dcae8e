//! Where the functions get the policy: the SSM parameter named by `POLICY_PARAMETER`, cached
//! across warm invocations for `POLICY_CACHE_SECONDS` (default 60), or the embedded reference
//! policy when no parameter is configured.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use thiserror::Error;
use tracing::{info, warn};

use super::{AwsError, CallLog};
use crate::policy::{Policy, PolicyError, Problem};

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
}

impl PolicySourceError {
    /// The Lambda `errorType` all three functions report for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            PolicySourceError::Read { .. } => "PolicyUnreadable",
            PolicySourceError::Invalid { .. } => "PolicyInvalid",
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
    cached: Mutex<Option<(Instant, LoadedPolicy)>>,
}

impl PolicySource {
    pub fn new(ssm: aws_sdk_ssm::Client, parameter: Option<String>, ttl: Duration) -> PolicySource {
        PolicySource {
            ssm,
            parameter: parameter.filter(|p| !p.trim().is_empty()),
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// From `POLICY_PARAMETER` and `POLICY_CACHE_SECONDS`.
    pub fn from_env(ssm: aws_sdk_ssm::Client) -> PolicySource {
        let ttl = std::env::var("POLICY_CACHE_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(60);
        PolicySource::new(
            ssm,
            std::env::var("POLICY_PARAMETER").ok(),
            Duration::from_secs(ttl),
        )
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
                source: AwsError::from_sdk("GetParameter", e),
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
