//! One wording for a host a patch run cannot reach, used by the run report's missed targets
//! (`report::MissReason`) and by the coverage verdicts (`coverage`): the same situation reads
//! the same in the run's email and in the coverage message. Phrases without a subject or a
//! verb, so each caller puts them in its own sentence ("i-1 is …", "i-1 in patch_… : …").
//!
//! Facts behind them: a maintenance window's Run Command task reaches only nodes that are
//! running and whose SSM Agent is `Online` (SSM User Guide, "Troubleshooting managed node
//! availability"; `DescribeInstanceInformation` lists registered nodes only, with
//! `PingStatus` `Online` / `ConnectionLost` / `Inactive`).

use chrono::{DateTime, Utc};

/// A time in these phrases: `2026-11-07 05:00 UTC`.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Not listed by `DescribeInstanceInformation`.
pub fn never_registered() -> &'static str {
    "not managed by SSM: it never registered (no SSM Agent, or no instance profile / Default Host Management role)"
}

/// Registered, but the agent does not answer (`PingStatus`), since its last ping.
pub fn connection_lost(ping_status: &str, since: Option<&DateTime<Utc>>) -> String {
    let since = since
        .map(|t| format!(" since {}", time(t)))
        .unwrap_or_default();
    format!("not managed by SSM right now: PingStatus {ping_status}{since}")
}

/// Not running (EC2 `state`, e.g. `stopped`) while a window ran: `window` is when, if known.
pub fn not_running_through_window(state: &str, window: Option<&DateTime<Utc>>) -> String {
    match window {
        Some(w) => format!(
            "{state} through its last window ({}) and missed that run",
            time(w)
        ),
        None => format!("{state} through the window and missed that run"),
    }
}
