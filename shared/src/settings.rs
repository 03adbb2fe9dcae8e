//! The functions' configuration: the environment variables template.yaml sets, read in one
//! place. Lambda reads them from the process ([`Settings::from_env`]); tests build the same
//! settings from a map ([`Settings::from_map`], e.g. the environment the emulator's stack
//! deployment gives a function), so several stacks can run in one process.
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `PATCHPILOT_STACK` | all | stack name = the ownership marker's value (`patchpilot:managed=<stack>`); default `patchpilot` |
//! | `PATCH_GROUP_TAG_KEY` | all | the `PatchGroupTagKey` the stack was deployed with: the only patch-group key IAM lets the functions write; the policy's `tag_key` must equal it |
//! | `POLICY_PARAMETER` | all | SSM parameter holding the policy; unset or empty = the embedded reference policy |
//! | `POLICY_CACHE_SECONDS` | all | how long a warm function reuses the policy; default 60 |
//! | `RUST_LOG` | all | log filter (read by `logging::init` from the process environment) |
//! | `OUTPUT_BUCKET`, `MAINTENANCE_WINDOW_ROLE_ARN`, `DEFAULT_HOST_MANAGEMENT_ROLE` | baseline-sync | see [`Deployment`] |
//! | `TOPIC_ARN`, `IDEMPOTENCY_TABLE` | run-notifier, baseline-sync | report topic, idempotency table (required by run-notifier; baseline-sync publishes its coverage message only when both are set) |

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

use crate::names::Owner;
use crate::plan::Deployment;

pub const PATCHPILOT_STACK: &str = "PATCHPILOT_STACK";
pub const PATCH_GROUP_TAG_KEY: &str = "PATCH_GROUP_TAG_KEY";
pub const POLICY_PARAMETER: &str = "POLICY_PARAMETER";
pub const POLICY_CACHE_SECONDS: &str = "POLICY_CACHE_SECONDS";
pub const RUST_LOG: &str = "RUST_LOG";
pub const OUTPUT_BUCKET: &str = "OUTPUT_BUCKET";
pub const MAINTENANCE_WINDOW_ROLE_ARN: &str = "MAINTENANCE_WINDOW_ROLE_ARN";
pub const DEFAULT_HOST_MANAGEMENT_ROLE: &str = "DEFAULT_HOST_MANAGEMENT_ROLE";
pub const TOPIC_ARN: &str = "TOPIC_ARN";
pub const IDEMPOTENCY_TABLE: &str = "IDEMPOTENCY_TABLE";

/// How long the policy is cached when `POLICY_CACHE_SECONDS` is unset or not a number.
pub const DEFAULT_POLICY_CACHE: Duration = Duration::from_secs(60);

/// Everything a function reads from its environment. Empty (or blank) values count as
/// unset, as CloudFormation passes an empty string for an empty parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PATCHPILOT_STACK`.
    pub owner: Owner,
    /// `PATCH_GROUP_TAG_KEY`.
    pub patch_group_tag_key: Option<String>,
    /// `POLICY_PARAMETER`.
    pub policy_parameter: Option<String>,
    /// `POLICY_CACHE_SECONDS`.
    pub policy_cache: Duration,
    /// `RUST_LOG`, as given (informational: logging reads the process environment).
    pub log_filter: Option<String>,
    /// `OUTPUT_BUCKET`, `MAINTENANCE_WINDOW_ROLE_ARN`, `DEFAULT_HOST_MANAGEMENT_ROLE`.
    pub deployment: Deployment,
    /// `TOPIC_ARN`.
    pub topic_arn: Option<String>,
    /// `IDEMPOTENCY_TABLE`.
    pub idempotency_table: Option<String>,
}

/// A setting a function cannot run without is missing: the deployment is broken.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("environment variable {name} is not set; template.yaml sets it for {function} ({meaning})")]
pub struct MissingSetting {
    pub name: &'static str,
    pub function: &'static str,
    pub meaning: &'static str,
}

impl Default for Settings {
    /// What an empty environment gives: the default stack, the embedded policy.
    fn default() -> Settings {
        Settings::from_lookup(|_| None)
    }
}

impl Settings {
    /// From the process environment (Lambda).
    pub fn from_env() -> Settings {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// From a map of variable → value, parsed exactly as [`Settings::from_env`].
    pub fn from_map(env: &BTreeMap<String, String>) -> Settings {
        Settings::from_lookup(|name| env.get(name).cloned())
    }

    /// From any lookup of variable name → value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Settings {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Settings {
            owner: var(PATCHPILOT_STACK)
                .map(|s| Owner::new(&s))
                .unwrap_or_default(),
            patch_group_tag_key: var(PATCH_GROUP_TAG_KEY),
            policy_parameter: var(POLICY_PARAMETER),
            policy_cache: var(POLICY_CACHE_SECONDS)
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_POLICY_CACHE),
            log_filter: lookup(RUST_LOG),
            deployment: Deployment {
                output_bucket: var(OUTPUT_BUCKET),
                window_role_arn: var(MAINTENANCE_WINDOW_ROLE_ARN),
                default_host_management_role: var(DEFAULT_HOST_MANAGEMENT_ROLE),
                promotions: Default::default(),
                promotion_errors: Default::default(),
            },
            topic_arn: var(TOPIC_ARN),
            idempotency_table: var(IDEMPOTENCY_TABLE),
        }
    }

    /// The value of a setting `function` requires, or which one is missing.
    pub fn required<'s>(
        value: &'s Option<String>,
        name: &'static str,
        function: &'static str,
        meaning: &'static str,
    ) -> Result<&'s str, MissingSetting> {
        value.as_deref().ok_or(MissingSetting {
            name,
            function,
            meaning,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_environment_is_the_default_stack_and_the_embedded_policy() {
        let s = Settings::from_map(&BTreeMap::new());
        assert_eq!(s.owner.stack(), "patchpilot");
        assert_eq!(s.policy_parameter, None);
        assert_eq!(s.policy_cache, Duration::from_secs(60));
        assert_eq!(s.patch_group_tag_key, None);
        assert_eq!(s.deployment, Deployment::default());
    }

    #[test]
    fn a_stacks_environment_is_read_in_full() {
        let s = Settings::from_map(&map(&[
            ("PATCHPILOT_STACK", "patchpilot-eu"),
            ("PATCH_GROUP_TAG_KEY", "PatchGroup"),
            ("POLICY_PARAMETER", "/patchpilot/policy"),
            ("POLICY_CACHE_SECONDS", "5"),
            ("RUST_LOG", "debug"),
            ("OUTPUT_BUCKET", "out"),
            ("MAINTENANCE_WINDOW_ROLE_ARN", ""),
            ("TOPIC_ARN", "arn:aws:sns:eu-west-1:1:t"),
            ("IDEMPOTENCY_TABLE", "runs"),
        ]));
        assert_eq!(s.owner.stack(), "patchpilot-eu");
        assert_eq!(s.patch_group_tag_key.as_deref(), Some("PatchGroup"));
        assert_eq!(s.policy_parameter.as_deref(), Some("/patchpilot/policy"));
        assert_eq!(s.policy_cache, Duration::from_secs(5));
        assert_eq!(s.log_filter.as_deref(), Some("debug"));
        assert_eq!(s.deployment.output_bucket.as_deref(), Some("out"));
        assert_eq!(s.deployment.window_role_arn, None, "empty = unset");
        assert_eq!(
            Settings::required(&s.topic_arn, TOPIC_ARN, "run-notifier", "the report topic"),
            Ok("arn:aws:sns:eu-west-1:1:t")
        );
        let err = Settings::required(&None, TOPIC_ARN, "run-notifier", "the report topic")
            .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "environment variable TOPIC_ARN is not set; template.yaml sets it for run-notifier (the report topic)"
        );
    }

    #[test]
    fn a_cache_time_that_is_not_a_number_is_the_default() {
        let s = Settings::from_map(&map(&[("POLICY_CACHE_SECONDS", "1m")]));
        assert_eq!(s.policy_cache, DEFAULT_POLICY_CACHE);
    }
}
