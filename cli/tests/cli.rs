//! The `patchpilot` binary, run as an operator would: output, warnings and exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const REFERENCE: &str = include_str!("../../examples/policy.yaml");

fn patchpilot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchpilot"))
        .args(args)
        // `schedule` reads the gate states from OUTPUT_BUCKET when it is set.
        .env_remove("OUTPUT_BUCKET")
        .output()
        .expect("the patchpilot binary runs")
}

fn with_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_patchpilot"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the patchpilot binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("policy written to stdin");
    child.wait_with_output().expect("patchpilot finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A policy file in a per-test temporary directory, removed when dropped.
struct PolicyFile {
    dir: PathBuf,
    path: PathBuf,
}

impl PolicyFile {
    fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        self.path.to_string_lossy()
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn policy_file(test: &str, text: &str) -> PolicyFile {
    let dir = std::env::temp_dir().join(format!("patchpilot-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).expect("policy written");
    PolicyFile { dir, path }
}

#[test]
fn validate_accepts_the_reference_policy_without_warnings() {
    let o = patchpilot(&["validate"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("embedded reference policy: OK: 2 environment(s), 2 batch(es), 12 baseline(s), 2 window(s); 0 warning(s)"),
        "{out}"
    );
    // Prod promotes test's manifest, which pins Ubuntu too: no "cannot lag" warning. With a
    // plain delay the warning is printed.
    assert!(!out.contains("warning:"), "{out}");
    let delay = with_stdin(
        &["validate", "-"],
        &REFERENCE
            .replace("mode: promote", "mode: delay")
            .replace("      gate:\n        max_failed: \"0%\"\n", ""),
    );
    assert_eq!(delay.status.code(), Some(0), "{}", stderr(&delay));
    assert!(
        stdout(&delay).contains("warning: environments[1].approval.approve_after_days"),
        "{}",
        stdout(&delay)
    );
}

#[test]
fn validate_reads_a_file_and_stdin() {
    let file = policy_file("file", REFERENCE);
    let path = file.to_string_lossy();
    let o = patchpilot(&["validate", &path]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{path}: OK")),
        "{}",
        stdout(&o)
    );

    let o = with_stdin(&["validate", "-"], REFERENCE);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("<stdin>: OK"), "{}", stdout(&o));
}

#[test]
fn validate_lists_every_error_with_its_field_path_and_exits_1() {
    let text = REFERENCE
        .replace("cutoff_hours: 1", "cutoff_hours: 5")
        .replace("cron(0 6 ? * SAT#3 *)", "cron(0 6 * * SAT#3 *)");
    let path = policy_file("invalid", &text);
    let o = patchpilot(&["validate", &path.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("error: environments[0].window.cutoff_hours"),
        "{out}"
    );
    assert!(
        out.contains("error: environments[1].window.cutoff_hours"),
        "{out}"
    );
    assert!(
        out.contains("error: environments[1].window.schedule"),
        "{out}"
    );
    assert!(out.contains("INVALID: "), "{out}");
}

#[test]
fn validate_reports_windows_that_never_fire() {
    let text = REFERENCE
        .replace("cron(0 6 ? * SAT#1 *)", "cron(0 6 30 2 ? *)")
        .replace("cron(0 6 ? * SAT#3 *)", "cron(0 6 ? * SAT#3 2020)");
    let path = policy_file("never-fires", &text);
    let o = patchpilot(&["validate", &path.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("error: environments[0].window.schedule: `cron(0 6 30 2 ? *)` never fires: no date ever matches it"),
        "{out}"
    );
    assert!(
        out.contains("error: environments[1].window.schedule: `cron(0 6 ? * SAT#3 2020)` never fires again: its last run was 2020-12-19 06:00"),
        "{out}"
    );
}

#[test]
fn a_missing_file_is_named_and_exits_2() {
    let o = patchpilot(&["validate", "/nonexistent/policy.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("cannot read policy /nonexistent/policy.yaml"),
        "{err}"
    );
}

#[test]
fn bad_yaml_and_unknown_keys_are_precise_errors() {
    let path = policy_file("yaml", "environments: [\n");
    let o = patchpilot(&["validate", &path.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not valid YAML for a patchpilot policy"),
        "{}",
        stderr(&o)
    );

    let path = policy_file(
        "typo",
        &REFERENCE.replace("duration_hours: 4", "duraton_hours: 4"),
    );
    for cmd in ["validate", "render", "schedule"] {
        let o = patchpilot(&[cmd, &path.to_string_lossy()]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        assert!(
            stderr(&o).contains("duraton_hours"),
            "{cmd}: {}",
            stderr(&o)
        );
    }

    let path = policy_file("empty", "  \n");
    let o = patchpilot(&["render", &path.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the policy is empty"), "{}", stderr(&o));
}

#[test]
fn render_and_schedule_refuse_an_invalid_policy() {
    let path = policy_file(
        "refuse",
        &REFERENCE.replace("Europe/Zurich", "Europe/Zurch"),
    );
    for cmd in ["render", "schedule"] {
        let o = patchpilot(&[cmd, &path.to_string_lossy()]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        let err = stderr(&o);
        assert!(err.contains("policy is invalid"), "{cmd}: {err}");
        assert!(err.contains("Europe/Zurch"), "{cmd}: {err}");
        assert!(
            stdout(&o).is_empty(),
            "{cmd} printed output for an invalid policy"
        );
    }
}

#[test]
fn schedule_shows_local_and_utc_runs_and_the_approval_check() {
    let o = patchpilot(&["schedule", "--from", "2026-11-29", "--count", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "test (patchpilot-test): cron(0 6 ? * SAT#1 *) in Europe/Zurich",
        "batch 1 linux (patch_test_0600_batch_1) -> batch 2 windows (patch_test_0600_batch_2)",
        "1  Sat 2026-12-05 06:00 CET  2026-12-05 05:00 UTC",
        "2  Sat 2027-01-02 06:00 CET  2027-01-02 05:00 UTC",
        "1  Sat 2026-12-19 06:00 CET  2026-12-19 05:00 UTC",
        "test -> prod gap (prod promotes from test, installs test's manifest if at most 0% of its hosts failed and no patch failed)",
        "Sat 2026-12-05 06:00 CET  Sat 2026-12-19 06:00 CET  14 days  installs this test run's manifest",
        "Promotion gates (what each promoted environment's next run does):",
        "prod: state not read: give --bucket (or OUTPUT_BUCKET)",
    ] {
        assert!(out.contains(needle), "missing `{needle}`:\n{out}");
    }
    assert!(
        !out.contains("Sat 2027-02-06"),
        "--count 2 shows two runs:\n{out}"
    );
}

#[test]
fn schedule_flags_a_delay_that_does_not_match_the_gap() {
    let path = policy_file(
        "gap",
        &REFERENCE
            .replace("mode: promote", "mode: delay")
            .replace("      gate:\n        max_failed: \"0%\"\n", "")
            .replace("approve_after_days: 14", "approve_after_days: 7"),
    );
    let o = patchpilot(&[
        "schedule",
        &path.to_string_lossy(),
        "--from",
        "2026-11-29",
        "-n",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("WARNING: prod installs patches released in the 7 day(s) before its run that test never had"),
        "{out}"
    );
}

#[test]
fn schedule_rejects_a_bad_date_and_count() {
    let o = patchpilot(&["schedule", "--from", "next saturday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a date"), "{}", stderr(&o));
    let o = patchpilot(&["schedule", "--count", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--count"), "{}", stderr(&o));
}

#[test]
fn render_shows_every_derived_resource() {
    let o = patchpilot(&["render", "--from", "2026-11-29"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "patch_test_0600_batch_1  test         1 (linux)    Linux",
        "patch_prod_0600_batch_2  prod         2 (windows)  Windows",
        "Patch baselines (12)",
        "patchpilot-prod-REDHAT_ENTERPRISE_LINUX",
        "14 days after release",
        "Maintenance windows (2)",
        "Sat 2026-12-05 06:00 +01:00",
        "tag:Patch Group = patch_prod_0600_batch_1",
        "patchpilot-test-batch-2-windows  AWS-RunPatchBaseline  patch_test_0600_batch_2",
    ] {
        assert!(out.contains(needle), "missing `{needle}`:\n{out}");
    }
}

#[test]
fn render_json_is_machine_readable() {
    let o = patchpilot(&["render", "--json", "--from", "2026-11-29"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("render --json is JSON");
    assert_eq!(v["tag_key"], "Patch Group");
    assert_eq!(v["baselines"].as_array().map(Vec::len), Some(12));
    assert_eq!(v["windows"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["windows"][0]["name"], "patchpilot-test");
    assert_eq!(v["windows"][0]["next_runs"][0], "2026-12-05T06:00:00+01:00");
    assert_eq!(v["windows"][1]["tasks"][0]["priority"], 1);
    assert_eq!(
        v["windows"][1]["tasks"][0]["target"],
        "patch_prod_0600_batch_1"
    );
    let prod_suse = v["baselines"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "patchpilot-prod-SUSE"))
        .expect("prod SUSE baseline");
    assert_eq!(prod_suse["rules"][0]["approve_after_days"], 14);
}

#[test]
fn next_runs_evaluates_one_schedule_in_its_timezone() {
    let o = patchpilot(&[
        "next-runs",
        "cron(30 23 ? * TUE#2 *)",
        "--timezone",
        "America/New_York",
        "--offset",
        "4",
        "--from",
        "2027-03-01",
        "-n",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "Sat 2027-03-13 23:30 EST  2027-03-14 04:30 UTC\nSat 2027-04-17 23:30 EDT  2027-04-18 03:30 UTC\n"
    );
    let o = patchpilot(&["next-runs", "cron(0 6 * * SAT *)"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("day-of-month"), "{}", stderr(&o));
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["validate", "--help"],
        vec!["schedule", "--help"],
        vec!["render", "--help"],
        vec!["next-runs", "--help"],
        vec!["plan", "--help"],
        vec!["coverage", "--help"],
    ] {
        let o = patchpilot(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let out = stdout(&o);
        assert!(out.contains("Usage: patchpilot"), "{args:?}: {out}");
    }
    let o = patchpilot(&["render", "--help"]);
    assert!(stdout(&o).contains("--json"));
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let o = patchpilot(&["deploy"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unrecognized subcommand"),
        "{}",
        stderr(&o)
    );
}
