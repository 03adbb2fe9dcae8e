//! The coverage message: one SNS message on the report topic when the set of hosts that are not
//! covered changes (a host appears, disappears or gets another verdict), and once when every
//! host is covered again — never a daily repeat of the same list.
//!
//! Pure: [`Fingerprint`] is what baseline-sync remembers of the last message (the stack's
//! idempotency table, `aws::coverage_notice`), [`notice`] decides whether the current
//! [`CoverageSummary`] differs from it and renders the message. Attributes as a run report's
//! (`report::RunReport::attributes`), so the README's subscription filters keep working:
//!
//! | attribute | type | value |
//! |---|---|---|
//! | `type` | String | `coverage` (run reports: `run`) |
//! | `status` | String | `FAILED` while a host is not covered, `SUCCESS` when every host is again |
//! | `environment` | String.Array | every environment of the policy (coverage is about the whole fleet; SNS matches a filter on any element of an array, "Amazon SNS message filtering": "String.Array") |
//! | `failed_count` | Number | hosts not covered (excluded ones left out) |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::coverage::{CoverageSummary, UncoveredHost, VerdictKind};
use crate::report::{sanitize_subject, Attribute, Message, SNS_MAX_MESSAGE_BYTES};

/// The `type` attribute of a coverage message.
pub const COVERAGE_TYPE: &str = "coverage";
/// Headroom under the SNS limit for the attribute names/types SNS adds to the size.
const SAFETY_BYTES: usize = 1_024;

/// What the last coverage message said: one `<instance id> <verdict>` entry per host that was
/// not covered (sorted), and a hash of them to compare cheaply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub hash: String,
    pub hosts: Vec<String>,
}

impl Fingerprint {
    /// Of the hosts a summary reports as not covered. The verdict is part of it (a host that
    /// goes from "not managed" to "account default baseline" is news), the sentence is not
    /// (it carries the last ping time, which changes without anything happening).
    pub fn of(summary: &CoverageSummary) -> Fingerprint {
        Fingerprint::from_hosts(
            summary
                .uncovered
                .iter()
                .map(|h| format!("{} {}", h.instance_id, h.verdict))
                .collect(),
        )
    }

    /// From stored entries (sorted and deduplicated here).
    pub fn from_hosts(hosts: Vec<String>) -> Fingerprint {
        let hosts: Vec<String> = hosts
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Fingerprint {
            hash: format!("{:016x}", fnv1a(&hosts.join("\n"))),
            hosts,
        }
    }

    fn instance_ids(&self) -> BTreeSet<&str> {
        self.hosts
            .iter()
            .filter_map(|h| h.split(' ').next())
            .collect()
    }
}

/// FNV-1a, 64 bit: stable across Rust releases and platforms (the std hasher is not), which a
/// value stored in DynamoDB and compared by later versions of the function needs.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A coverage message to publish, and what to remember once it is out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub message: Message,
    pub fingerprint: Fingerprint,
    /// Hosts not covered, excluded ones left out.
    pub not_covered: usize,
}

/// The message for `summary` if its uncovered set differs from the last one published
/// (`None` = nothing published yet, i.e. every host was covered). `environments`: the policy's
/// environment names.
pub fn notice(
    summary: &CoverageSummary,
    previous: Option<&Fingerprint>,
    environments: &[String],
) -> Option<Notice> {
    let fingerprint = Fingerprint::of(summary);
    let previous = previous
        .cloned()
        .unwrap_or_else(|| Fingerprint::from_hosts(Vec::new()));
    if fingerprint.hash == previous.hash {
        return None;
    }
    let before = previous.instance_ids();
    let now: BTreeSet<&str> = summary
        .uncovered
        .iter()
        .map(|h| h.instance_id.as_str())
        .collect();
    let covered_again: Vec<&str> = before.difference(&now).copied().collect();
    let not_covered = summary
        .uncovered
        .iter()
        .filter(|h| h.verdict != VerdictKind::Excluded)
        .count();
    let render = |keep: usize| {
        render(
            summary,
            &before,
            &covered_again,
            not_covered,
            environments,
            keep,
        )
    };
    let budget = SNS_MAX_MESSAGE_BYTES - SAFETY_BYTES;
    let mut keep = summary.uncovered.len();
    let mut message = render(keep);
    while message.size() > budget && keep > 0 {
        keep /= 2;
        message = render(keep);
    }
    Some(Notice {
        message,
        fingerprint,
        not_covered,
    })
}

/// The subject: `[patchpilot] coverage: 3 hosts not covered`, `… every host covered again`.
pub fn subject(not_covered: usize, excluded: usize) -> String {
    let mut s = match not_covered {
        0 => "[patchpilot] coverage: every host covered again".to_string(),
        1 => "[patchpilot] coverage: 1 host not covered".to_string(),
        n => format!("[patchpilot] coverage: {n} hosts not covered"),
    };
    if excluded > 0 {
        let _ = write!(s, " ({excluded} excluded)");
    }
    sanitize_subject(&s)
}

#[derive(Serialize)]
struct JsonNotice<'a> {
    source: &'static str,
    version: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    hosts: usize,
    not_covered: usize,
    counts: &'a BTreeMap<VerdictKind, u32>,
    uncovered: &'a [UncoveredHost],
    covered_again: &'a [&'a str],
    /// Uncovered hosts left out of `uncovered` to fit the SNS limit.
    omitted: usize,
}

fn render(
    summary: &CoverageSummary,
    before: &BTreeSet<&str>,
    covered_again: &[&str],
    not_covered: usize,
    environments: &[String],
    keep: usize,
) -> Message {
    let excluded = summary.count(VerdictKind::Excluded) as usize;
    let status = if not_covered > 0 { "FAILED" } else { "SUCCESS" };
    let kept = &summary.uncovered[..keep.min(summary.uncovered.len())];
    let omitted = summary.uncovered.len() - kept.len();
    let mut t = String::new();
    if not_covered > 0 {
        let _ = writeln!(
            t,
            "{not_covered} of {} host(s) are not covered: Patch Manager will not patch them as the policy intends.",
            summary.hosts
        );
    } else {
        let _ = writeln!(
            t,
            "Every host is covered again: each of the {} host(s) is in a patch group a window targets, managed by SSM, with the policy's baseline for its OS.",
            summary.hosts - excluded
        );
    }
    if !kept.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "Not covered (one line each, * new since the last message):"
        );
        for h in kept {
            let new = if before.contains(h.instance_id.as_str()) {
                " "
            } else {
                "*"
            };
            // The sentence names the host (`i-… (name) is …`).
            let _ = writeln!(t, "{new} [{}] {}", h.verdict, h.message);
        }
        if omitted > 0 {
            let _ = writeln!(
                t,
                "  … and {omitted} more (baseline-sync's log, or `patchpilot coverage`)"
            );
        }
    }
    if !covered_again.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "Covered again since the last message: {}",
            covered_again.join(", ")
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "baseline-sync checks the coverage on every run and writes again only when this list changes. Every host's verdict: `patchpilot coverage`."
    );
    let json = serde_json::to_string(&JsonNotice {
        source: "patchpilot",
        version: 1,
        kind: COVERAGE_TYPE,
        status,
        hosts: summary.hosts,
        not_covered,
        counts: &summary.counts,
        uncovered: kept,
        covered_again,
        omitted,
    })
    .unwrap_or_default();
    let envelope = serde_json::json!({ "default": json, "email": t });
    let environments = serde_json::to_string(environments).unwrap_or_else(|_| "[]".to_string());
    Message {
        subject: subject(not_covered, excluded),
        message: envelope.to_string(),
        attributes: BTreeMap::from([
            (
                "type".to_string(),
                Attribute {
                    data_type: "String",
                    value: COVERAGE_TYPE.to_string(),
                },
            ),
            (
                "status".to_string(),
                Attribute {
                    data_type: "String",
                    value: status.to_string(),
                },
            ),
            (
                "environment".to_string(),
                Attribute {
                    data_type: "String.Array",
                    value: environments,
                },
            ),
            (
                "failed_count".to_string(),
                Attribute {
                    data_type: "Number",
                    value: not_covered.to_string(),
                },
            ),
        ]),
        text: t,
        json,
        truncated: omitted > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::HostManagement;

    fn host(id: &str, verdict: VerdictKind) -> UncoveredHost {
        UncoveredHost {
            instance_id: id.to_string(),
            name: Some(format!("{id}-name")),
            verdict,
            message: format!("{id} has a problem"),
        }
    }

    fn summary(uncovered: Vec<UncoveredHost>) -> CoverageSummary {
        let mut counts: BTreeMap<VerdictKind, u32> =
            VerdictKind::ALL.iter().map(|k| (*k, 0)).collect();
        for h in &uncovered {
            *counts.entry(h.verdict).or_insert(0) += 1;
        }
        counts.insert(VerdictKind::Covered, 5);
        CoverageSummary {
            hosts: 5 + uncovered.len(),
            counts,
            uncovered,
            suggested_baselines: Vec::new(),
            host_management: HostManagement::Off,
        }
    }

    fn envs() -> Vec<String> {
        vec!["test".to_string(), "prod".to_string()]
    }

    #[test]
    fn a_new_uncovered_host_is_published_once_with_its_sentence() {
        let s = summary(vec![
            host("i-1", VerdictKind::NotManaged),
            host("i-2", VerdictKind::DefaultBaseline),
            host("i-3", VerdictKind::MissedWindow),
        ]);
        let n = notice(&s, None, &envs()).expect("news");
        assert_eq!(
            n.message.subject,
            "[patchpilot] coverage: 3 hosts not covered"
        );
        assert!(n.message.subject.len() < 100 && n.message.subject.is_ascii());
        assert!(
            n.message.text.contains("* [not-managed] i-1 has a problem"),
            "{}",
            n.message.text
        );
        let a = &n.message.attributes;
        assert_eq!(a["type"].value, "coverage");
        assert_eq!(a["status"].value, "FAILED");
        assert_eq!(a["failed_count"].value, "3");
        assert_eq!(a["environment"].data_type, "String.Array");
        assert_eq!(a["environment"].value, r#"["test","prod"]"#);
        let envelope: serde_json::Value =
            serde_json::from_str(&n.message.message).expect("json envelope");
        let inner: serde_json::Value =
            serde_json::from_str(envelope["default"].as_str().expect("default")).expect("json");
        assert_eq!(inner["type"], "coverage");
        assert_eq!(inner["uncovered"][2]["verdict"], "missed-window");
        // The same set again: nothing.
        assert_eq!(notice(&s, Some(&n.fingerprint), &envs()), None);
    }

    #[test]
    fn another_verdict_for_the_same_host_is_news_but_another_sentence_is_not() {
        let before = Fingerprint::of(&summary(vec![host("i-1", VerdictKind::NotManaged)]));
        let mut moved = host("i-1", VerdictKind::NotManaged);
        moved.message = "i-1 last pinged later".to_string();
        assert_eq!(notice(&summary(vec![moved]), Some(&before), &envs()), None);
        let changed = summary(vec![host("i-1", VerdictKind::DefaultBaseline)]);
        let n = notice(&changed, Some(&before), &envs()).expect("news");
        assert!(
            n.message.text.contains("  [default-baseline] i-1 has"),
            "not new: {}",
            n.message.text
        );
    }

    #[test]
    fn everything_covered_again_is_said_once() {
        let before = Fingerprint::of(&summary(vec![host("i-1", VerdictKind::NotManaged)]));
        let s = summary(Vec::new());
        let n = notice(&s, Some(&before), &envs()).expect("news");
        assert_eq!(
            n.message.subject,
            "[patchpilot] coverage: every host covered again"
        );
        assert_eq!(n.message.attributes["status"].value, "SUCCESS");
        assert_eq!(n.message.attributes["failed_count"].value, "0");
        assert!(n
            .message
            .text
            .contains("Covered again since the last message: i-1"));
        assert_eq!(notice(&s, Some(&n.fingerprint), &envs()), None);
        // Nothing ever published and nothing uncovered: nothing to say.
        assert_eq!(notice(&s, None, &envs()), None);
    }

    #[test]
    fn excluded_hosts_are_listed_but_not_counted_as_problems() {
        let s = summary(vec![
            host("i-1", VerdictKind::Excluded),
            host("i-2", VerdictKind::NotManaged),
        ]);
        let n = notice(&s, None, &envs()).expect("news");
        assert_eq!(
            n.message.subject,
            "[patchpilot] coverage: 1 host not covered (1 excluded)"
        );
        assert_eq!(n.not_covered, 1);
    }

    #[test]
    fn a_huge_fleet_is_cut_to_fit_sns() {
        let many: Vec<UncoveredHost> = (0..5000)
            .map(|i| {
                let mut h = host(&format!("i-{i:017}"), VerdictKind::NotManaged);
                h.message = "x".repeat(200);
                h
            })
            .collect();
        let n = notice(&summary(many), None, &envs()).expect("news");
        assert!(n.message.size() <= SNS_MAX_MESSAGE_BYTES);
        assert!(n.message.truncated);
        assert!(n.message.text.contains("more (baseline-sync's log"));
        assert_eq!(n.fingerprint.hosts.len(), 5000);
    }

    #[test]
    fn the_fingerprint_is_stable_and_order_free() {
        let a = Fingerprint::from_hosts(vec!["i-2 unmatched".into(), "i-1 not-managed".into()]);
        let b = Fingerprint::from_hosts(vec!["i-1 not-managed".into(), "i-2 unmatched".into()]);
        assert_eq!(a, b);
        assert_eq!(Fingerprint::from_hosts(Vec::new()).hash, "cbf29ce484222325");
    }
}
