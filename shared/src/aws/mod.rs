//! The AWS edge: the only code that touches SDK types. Each submodule is a small adapter
//! over one API family; the domain (policy, plan, classify, report) never sees the SDK.

pub mod ec2;
pub mod idempotency;
pub mod managed;
pub mod notify;
pub mod patching;
pub mod policy_source;
pub mod runs;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ssm::config::SharedHttpClient;
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
use serde::Serialize;
use thiserror::Error;

/// Load the SDK configuration once per cold start: region, credentials and
/// `AWS_ENDPOINT_URL` (the local emulator) from the environment. Throttling and transient
/// errors are retried by the SDK's standard retry mode with exponential backoff and jitter;
/// five attempts ride out a burst of `ThrottlingException`s on a large fleet.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        .load()
        .await
}

/// The SDK's default HTTPS client (hyper 1 + rustls, the platform's native root
/// certificates, certificate verification, `HTTP(S)_PROXY`/`NO_PROXY` from the environment),
/// built exactly as `default-https-client` builds it but with rustls on ring instead of
/// aws-lc-rs: the workspace turns that feature off because aws-lc is a large C library.
/// Plain `http://` endpoints (the emulator) go through the same connector.
pub fn http_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, runtime_components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// A failed AWS call, with the operation, the AWS error code and message.
#[derive(Debug, Error)]
pub enum AwsError {
    #[error("AWS {operation} failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Call {
        operation: &'static str,
        code: Option<String>,
        message: String,
    },
    /// AWS answered, but without a field the API reference says is always there.
    #[error("AWS {operation} returned no {field}")]
    Missing {
        operation: &'static str,
        field: &'static str,
    },
}

impl AwsError {
    /// Convert any SDK error, keeping the AWS error code (e.g. `DoesNotExistException`).
    pub fn from_sdk<E>(operation: &'static str, err: E) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.code().map(str::to_string);
        let message = match err.message() {
            Some(m) => m.to_string(),
            None => DisplayErrorContext(&err).to_string(),
        };
        AwsError::Call {
            operation,
            code,
            message,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Call { code, .. } => code.as_deref(),
            AwsError::Missing { .. } => None,
        }
    }

    pub fn missing(operation: &'static str, field: &'static str) -> AwsError {
        AwsError::Missing { operation, field }
    }
}

/// AWS calls made during one invocation, by operation. Reads (`Describe*`, `Get*`,
/// `List*`) and writes (everything else) are told apart by the operation name, which is how
/// IAM and CloudTrail classify them too.
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Mutex<BTreeMap<&'static str, u32>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallSummary {
    pub reads: u32,
    pub writes: u32,
    pub by_operation: BTreeMap<String, u32>,
}

impl CallLog {
    pub fn new() -> CallLog {
        CallLog::default()
    }

    /// Record one call of `operation` (e.g. `"CreatePatchBaseline"`).
    pub fn record(&self, operation: &'static str) {
        // A poisoned lock only means another thread panicked mid-increment; the counts are
        // still usable for reporting.
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        *calls.entry(operation).or_insert(0) += 1;
    }

    pub fn summary(&self) -> CallSummary {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = CallSummary::default();
        for (op, n) in calls.iter() {
            if is_read(op) {
                s.reads += n;
            } else {
                s.writes += n;
            }
            s.by_operation.insert((*op).to_string(), *n);
        }
        s
    }
}

pub fn is_read(operation: &str) -> bool {
    ["Describe", "Get", "List"]
        .iter()
        .any(|p| operation.starts_with(p))
}

impl fmt::Display for CallSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} reads, {} writes", self.reads, self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_are_told_apart_by_operation_name() {
        let log = CallLog::new();
        log.record("DescribePatchBaselines");
        log.record("GetPatchBaseline");
        log.record("ListTagsForResource");
        log.record("CreatePatchBaseline");
        log.record("CreatePatchBaseline");
        let s = log.summary();
        assert_eq!((s.reads, s.writes), (3, 2));
        assert_eq!(s.by_operation.get("CreatePatchBaseline"), Some(&2));
    }
}
