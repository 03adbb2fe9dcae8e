//! `patchpilot coverage` as text: one row per host, then why each uncovered host is not
//! patched as the policy intends, the counts, Default Host Management and the suggested
//! baselines.

use patchpilot::coverage::{BaselineSource, Coverage, VerdictKind};

use crate::table::Table;

pub fn to_text(c: &Coverage, source: &str, stack: &str) -> String {
    let mut out = format!("coverage against {source} (stack {stack})\n\n");
    let mut t = Table::new([
        "INSTANCE",
        "NAME",
        "STATE",
        "SSM",
        "OS",
        "PATCH GROUP",
        "BASELINE",
        "LAST PATCH",
        "VERDICT",
    ]);
    let dash = || "-".to_string();
    for h in &c.hosts {
        let ssm = match (&h.ping_status, &h.agent_version) {
            (Some(p), Some(v)) => format!("{p} (agent {v})"),
            (Some(p), None) => p.clone(),
            _ => "not registered".to_string(),
        };
        let baseline = match &h.baseline {
            Some(b) => {
                let id = b.id.clone().unwrap_or_else(|| "?".to_string());
                match b.source {
                    BaselineSource::PatchGroup => id,
                    BaselineSource::AccountDefault => format!("{id} (account default)"),
                }
            }
            None => dash(),
        };
        let last = match &h.last_operation {
            Some(s) => format!(
                "{} {}{}",
                s.operation,
                s.operation_end.format("%Y-%m-%d %H:%M"),
                if s.compliant() { "" } else { " non-compliant" }
            ),
            None => dash(),
        };
        t.row([
            h.instance_id.clone(),
            h.name.clone().unwrap_or_else(dash),
            h.state
                .clone()
                .unwrap_or_else(|| "managed node".to_string()),
            ssm,
            h.os.map(|o| o.to_string()).unwrap_or_else(dash),
            h.patch_group.clone().unwrap_or_else(dash),
            baseline,
            last,
            h.verdict.kind().to_string(),
        ]);
    }
    if t.is_empty() {
        out.push_str("no EC2 instance or managed node found\n");
    } else {
        out.push_str(&t.render());
    }
    let uncovered: Vec<_> = c.uncovered().collect();
    if !uncovered.is_empty() {
        out.push_str("\nnot covered:\n");
        for h in uncovered {
            out.push_str(&format!("  {}\n", h.message));
        }
    }
    let counts: Vec<String> = VerdictKind::ALL
        .iter()
        .map(|k| format!("{} {k}", c.count(*k)))
        .collect();
    out.push_str(&format!(
        "\n{} host(s): {}\n",
        c.hosts.len(),
        counts.join(", ")
    ));
    out.push_str(&format!("Default Host Management: {}\n", c.host_management));
    if c.suggested_baselines.is_empty() {
        out.push_str("suggested baselines: none (the policy has a baseline for every OS found)\n");
    } else {
        let oses: Vec<String> = c
            .suggested_baselines
            .iter()
            .map(|o| o.to_string())
            .collect();
        out.push_str(&format!(
            "suggested baselines: {} (found on managed nodes, no baseline in the policy: they get the account's default baseline)\n",
            oses.join(", ")
        ));
    }
    out
}
