//! The policy: model, embedded reference policy, loading and validation.

mod model;
pub mod validate;

pub use model::*;
pub use validate::{validate, Problem, Severity, Validation};

use thiserror::Error;

/// The reference scenario, embedded at build time. The same file ships as
/// `examples/policy.yaml` for operators to copy.
pub const REFERENCE_POLICY_YAML: &str = include_str!("../../../examples/policy.yaml");

/// The value template.yaml stores in the policy parameter until an operator replaces it:
/// "use the policy embedded in the binaries".
pub const EMBEDDED_POLICY_MARKER: &str = "embedded-default";

#[derive(Debug, Error)]
pub enum PolicyError {
    /// The YAML does not have the policy's shape (unknown key, wrong type, bad enum value).
    #[error("policy is not valid YAML for a patchpilot policy: {0}")]
    Parse(String),
    /// The policy parsed but breaks SSM's rules or quotas; every problem is listed.
    #[error("policy has {} problem(s):\n{}", .0.len(), Problem::list(.0))]
    Invalid(Vec<Problem>),
}

impl Policy {
    /// Parse a policy document (YAML) without validating it.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        serde_norway::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))
    }

    /// The embedded reference scenario policy.
    pub fn reference() -> Policy {
        // The embedded file is checked by the unit tests below; a parse failure here is a
        // build defect, not bad input.
        Policy::from_yaml(REFERENCE_POLICY_YAML)
            .expect("examples/policy.yaml (embedded) must parse; see policy::tests")
    }

    /// Parse and validate: the only way the functions obtain a policy. Warnings are
    /// returned alongside; errors make the whole policy unusable.
    pub fn load(
        text: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Policy, Vec<Problem>), PolicyError> {
        let policy = if text.trim() == EMBEDDED_POLICY_MARKER {
            Policy::reference()
        } else {
            Policy::from_yaml(text)?
        };
        let v = validate(&policy, now);
        if v.errors().next().is_some() {
            return Err(PolicyError::Invalid(v.problems));
        }
        let warnings = v.problems;
        Ok((policy, warnings))
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// Batch number (1-based, = task priority) of a batch by position.
    pub fn batch_number(&self, name: &str) -> Option<u32> {
        self.batches
            .iter()
            .position(|b| b.name == name)
            .and_then(|i| u32::try_from(i + 1).ok())
    }

    /// The batch an instance of this platform belongs to, with its 1-based number.
    pub fn batch_for(&self, platform: Platform) -> Option<(u32, &Batch)> {
        self.batches
            .iter()
            .enumerate()
            .find(|(_, b)| b.platforms.contains(&platform))
            .and_then(|(i, b)| u32::try_from(i + 1).ok().map(|n| (n, b)))
    }

    pub fn baseline_rules(&self, os: OperatingSystem) -> Option<&BaselineRules> {
        self.baselines.iter().find(|b| b.os == os)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    #[test]
    fn reference_policy_is_the_articles_scenario() {
        let p = Policy::reference();
        assert_eq!(p.tag_key, "Patch Group");
        let envs: Vec<_> = p.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(envs, ["test", "prod"]);
        assert_eq!(p.environments[0].window.schedule, "cron(0 6 ? * SAT#1 *)");
        assert_eq!(p.environments[1].window.schedule, "cron(0 6 ? * SAT#3 *)");
        assert_eq!(p.environments[1].approval.approve_after_days, Some(14));
        let oses: Vec<_> = p.baselines.iter().map(|b| b.os.as_str()).collect();
        assert_eq!(
            oses,
            [
                "WINDOWS",
                "REDHAT_ENTERPRISE_LINUX",
                "UBUNTU",
                "AMAZON_LINUX_2",
                "CENTOS",
                "SUSE"
            ]
        );
        assert_eq!(
            p.batch_for(Platform::Linux)
                .map(|(n, b)| (n, b.name.as_str())),
            Some((1, "linux"))
        );
        assert_eq!(
            p.batch_for(Platform::Windows)
                .map(|(n, b)| (n, b.name.as_str())),
            Some((2, "windows"))
        );
        assert_eq!(p.operation, Operation::Install);
    }

    #[test]
    fn reference_policy_loads_without_errors() {
        let (p, _warnings) =
            Policy::load(REFERENCE_POLICY_YAML, now()).expect("reference policy is valid");
        assert_eq!(p, Policy::reference());
    }

    #[test]
    fn embedded_marker_means_reference_policy() {
        let (p, _) = Policy::load("embedded-default\n", now()).expect("marker loads the reference");
        assert_eq!(p, Policy::reference());
    }

    #[test]
    fn a_typo_in_a_key_is_an_error_naming_it() {
        let text = REFERENCE_POLICY_YAML.replace("duration_hours: 4", "duraton_hours: 4");
        let err = Policy::from_yaml(&text).expect_err("typo must fail");
        let msg = err.to_string();
        assert!(msg.contains("duraton_hours"), "{msg}");
    }

    #[test]
    fn an_unknown_operating_system_is_an_error_listing_the_allowed_ones() {
        let text = REFERENCE_POLICY_YAML.replace("os: SUSE", "os: SLES");
        let msg = Policy::from_yaml(&text)
            .expect_err("SLES is not an SSM OS")
            .to_string();
        assert!(
            msg.contains("SLES") && msg.contains("SUSE") && msg.contains("WINDOWS"),
            "{msg}"
        );
    }
}
