//! The baselines a policy is missing for the fleet it runs on: for every OS found on managed
//! nodes without a baseline in the policy ([`Coverage::suggested_baselines`]), a policy entry
//! to add under `baselines:`, modelled on the baseline SSM applies to those nodes today (the
//! account's default for the OS, usually AWS's predefined `AWS-…DefaultPatchBaseline`).
//!
//! The template's approval delay (`ApproveAfterDays`) is left out: in a patchpilot policy the
//! delay comes from each environment (`approval`), so the snippet follows the policy's
//! promotion like every other baseline.

use std::fmt::Write as _;

use serde::Serialize;

use crate::coverage::Coverage;
use crate::policy::OperatingSystem;
use crate::policy::{ApprovalRule, BaselineRules};

/// One missing baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaselineSuggestion {
    pub os: OperatingSystem,
    /// Managed nodes of this OS in the fleet.
    pub hosts: usize,
    /// The name of the baseline whose rules the suggestion copies (`None`: the account has
    /// no default for the OS, the rules are empty and must be written by hand).
    pub template_baseline: Option<String>,
    /// The policy entry.
    pub baseline: BaselineRules,
    /// [`BaselineSuggestion::baseline`] as YAML, indented as an item of `baselines:`.
    pub yaml: String,
}

impl BaselineSuggestion {
    pub fn new(
        os: OperatingSystem,
        coverage: &Coverage,
        template_baseline: Option<String>,
        rules: Vec<ApprovalRule>,
    ) -> BaselineSuggestion {
        let hosts = coverage
            .hosts
            .iter()
            .filter(|h| h.managed && h.os == Some(os))
            .count();
        let description = match &template_baseline {
            Some(name) => format!("{os}: rules of {name} (the account's default for it)"),
            None => format!("{os}: write the rules"),
        };
        let baseline = BaselineRules {
            os,
            description: Some(description),
            rules,
            approved_patches: Vec::new(),
            approved_patches_compliance_level: Default::default(),
            rejected_patches: Vec::new(),
            rejected_patches_action: Default::default(),
        };
        let yaml = to_yaml(&baseline);
        BaselineSuggestion {
            os,
            hosts,
            template_baseline,
            baseline,
            yaml,
        }
    }
}

/// A YAML flow sequence of plain scalars, quoted where YAML would read them otherwise.
fn flow(values: &[String]) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|v| {
            let plain = !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                && !v.starts_with('-')
                && !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
                );
            if plain {
                v.clone()
            } else {
                serde_json::to_string(v).unwrap_or_default()
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// The entry as an item of the policy's `baselines:` list (two-space indent).
fn to_yaml(b: &BaselineRules) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  - os: {}", b.os);
    if let Some(d) = &b.description {
        let _ = writeln!(
            out,
            "    description: {}",
            serde_json::to_string(d).unwrap_or_default()
        );
    }
    if b.rules.is_empty() {
        out.push_str("    rules: []\n");
        return out;
    }
    out.push_str("    rules:\n");
    for r in &b.rules {
        out.push_str("      - filters:\n");
        for (key, values) in &r.filters {
            let _ = writeln!(out, "          {key}: {}", flow(values));
        }
        let _ = writeln!(
            out,
            "        compliance_level: {}",
            r.compliance_level.as_str()
        );
        if r.enable_non_security {
            out.push_str("        enable_non_security: true\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::ComplianceLevel;

    fn rule(filters: &[(&str, &[&str])], non_security: bool) -> ApprovalRule {
        ApprovalRule {
            filters: filters
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<BTreeMap<_, _>>(),
            compliance_level: ComplianceLevel::Unspecified,
            enable_non_security: non_security,
            approve_after_days: None,
        }
    }

    fn empty_coverage() -> Coverage {
        Coverage {
            hosts: Vec::new(),
            counts: BTreeMap::new(),
            suggested_baselines: Vec::new(),
            host_management: crate::coverage::HostManagement::Off,
        }
    }

    #[test]
    fn the_snippet_reads_back_as_the_same_policy_entry() {
        let s = BaselineSuggestion::new(
            OperatingSystem::AmazonLinux2023,
            &empty_coverage(),
            Some("AWS-AmazonLinux2023DefaultPatchBaseline".into()),
            vec![
                rule(
                    &[
                        ("CLASSIFICATION", &["Security"]),
                        ("SEVERITY", &["Critical", "Important"]),
                    ],
                    false,
                ),
                rule(&[("PRODUCT", &["*"]), ("SECTION", &["on", "a b"])], true),
            ],
        );
        assert!(
            s.yaml.starts_with("  - os: AMAZON_LINUX_2023\n"),
            "{}",
            s.yaml
        );
        assert!(
            s.yaml.contains("SEVERITY: [Critical, Important]"),
            "{}",
            s.yaml
        );
        let back: Vec<BaselineRules> = serde_norway::from_str(&s.yaml).expect(&s.yaml);
        assert_eq!(back, vec![s.baseline.clone()]);
    }

    #[test]
    fn without_a_template_the_rules_are_left_to_write() {
        let s = BaselineSuggestion::new(OperatingSystem::Debian, &empty_coverage(), None, vec![]);
        assert!(s.yaml.contains("rules: []"), "{}", s.yaml);
        assert_eq!(s.hosts, 0);
    }
}
