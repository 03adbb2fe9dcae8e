//! `template.yaml` checked offline against the real event payloads in `events/` and against
//! `patchpilot::permissions`:
//! - every EventBridge rule's pattern matches the events it exists for, and no look-alike;
//! - each function is granted exactly the IAM actions its code calls (plus the ones AWS
//!   calls with its role), no wildcard action is allowed anywhere, and `iam:PassRole` is
//!   granted once: baseline-sync, on the maintenance-window role, towards SSM only.
//!
//! The template is read with serde_norway, so CloudFormation short-form intrinsics (`!Ref`,
//! `!Sub`, `!GetAtt`) arrive as tagged values; `!Ref` of a template parameter inside an event
//! pattern is resolved to the parameter's `Default`, as a stack deployed with defaults would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use patchpilot::eventpattern;
use patchpilot::permissions;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

fn template() -> Yaml {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing template.yaml: {e}"))
}

fn event(relative: &str) -> Json {
    let path = repo_root().join("events").join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

fn resources(t: &Yaml) -> &serde_norway::Mapping {
    t.get("Resources")
        .and_then(Yaml::as_mapping)
        .expect("template has a Resources mapping")
}

fn functions(t: &Yaml) -> Vec<(String, &Yaml)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Yaml::as_str) == Some("AWS::Serverless::Function"))
        .map(|(id, r)| (id.as_str().expect("logical ids are strings").to_string(), r))
        .collect()
}

/// Physical ids of the resources an event pattern may `!Ref`, as CloudFormation names them in
/// a stack called `patchpilot` (a bucket without `BucketName` gets
/// `<stack>-<logical id, lower case>-<13 characters>`); the files in `events/` use these.
const DEPLOYED_NAMES: &[(&str, &str)] =
    &[("OutputBucket", "patchpilot-outputbucket-1q2w3e4r5t6y7")];

/// Template parameters with a `Default`, as JSON values, and the resources of
/// [`DEPLOYED_NAMES`], for resolving `!Ref`.
fn parameter_defaults(t: &Yaml) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    let resources = t.get("Resources").expect("template has Resources");
    for (logical_id, physical) in DEPLOYED_NAMES {
        assert!(
            resources.get(logical_id).is_some(),
            "DEPLOYED_NAMES lists {logical_id}, which the template no longer has"
        );
        out.insert(logical_id.to_string(), Json::String(physical.to_string()));
    }
    if let Some(params) = t.get("Parameters").and_then(Yaml::as_mapping) {
        for (name, spec) in params {
            if let (Some(name), Some(default)) = (name.as_str(), spec.get("Default")) {
                let value = match default {
                    Yaml::Number(n) => serde_json::to_value(n).expect("number converts"),
                    Yaml::String(s) => Json::String(s.clone()),
                    Yaml::Bool(b) => Json::Bool(*b),
                    other => panic!("parameter {name} has an unexpected Default {other:?}"),
                };
                out.insert(name.to_string(), value);
            }
        }
    }
    out
}

/// YAML (with intrinsics) -> JSON, resolving `Ref` to parameter defaults. Any other intrinsic
/// in an event pattern would make the tested pattern differ from the deployed one, so it is
/// an error.
fn resolve(v: &Yaml, params: &BTreeMap<String, Json>) -> Result<Json, String> {
    let reference = |name: &Yaml| -> Result<Json, String> {
        let name = name.as_str().ok_or("!Ref of a non-string")?;
        params.get(name).cloned().ok_or_else(|| {
            format!(
                "!Ref {name} is neither a template parameter with a Default nor in DEPLOYED_NAMES"
            )
        })
    };
    Ok(match v {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => serde_json::to_value(n).map_err(|e| e.to_string())?,
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(
            items
                .iter()
                .map(|i| resolve(i, params))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => {
            if m.len() == 1 {
                if let Some(name) = m.get("Ref") {
                    return reference(name);
                }
            }
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let k = k.as_str().ok_or("non-string key in an event pattern")?;
                if k.starts_with("Fn::") {
                    return Err(format!("intrinsic {k} in an event pattern"));
                }
                out.insert(k.to_string(), resolve(v, params)?);
            }
            Json::Object(out)
        }
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => reference(&tagged.value)?,
        Yaml::Tagged(tagged) => {
            return Err(format!("intrinsic {} in an event pattern", tagged.tag))
        }
    })
}

#[derive(Debug)]
struct Trigger {
    function: String,
    name: String,
    kind: String,
    pattern: Option<Json>,
}

fn triggers(t: &Yaml) -> Vec<Trigger> {
    let params = parameter_defaults(t);
    let mut out = Vec::new();
    for (function, resource) in functions(t) {
        let Some(events) = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Yaml::as_mapping)
        else {
            continue;
        };
        for (name, spec) in events {
            let name = name.as_str().expect("event names are strings").to_string();
            let kind = spec
                .get("Type")
                .and_then(Yaml::as_str)
                .unwrap_or_else(|| panic!("{function}.{name} has no Type"))
                .to_string();
            let pattern = spec
                .get("Properties")
                .and_then(|p| p.get("Pattern"))
                .map(|p| {
                    resolve(p, &params).unwrap_or_else(|e| panic!("{function}.{name} pattern: {e}"))
                });
            out.push(Trigger {
                function: function.clone(),
                name,
                kind,
                pattern,
            });
        }
    }
    out
}

/// Which trigger each file in `events/<function>/` is for. `Some((function, trigger))` =
/// exactly that trigger must fire (for a `Schedule`, no pattern may match: EventBridge sends
/// scheduled events only to the schedule's own target); `None` = no rule may match.
const ROUTES: &[(&str, Option<(&str, &str)>)] = &[
    (
        "auto-tagger/ec2-state-pending.json",
        Some(("AutoTaggerFunction", "InstanceStateChange")),
    ),
    (
        "auto-tagger/ec2-state-running.json",
        Some(("AutoTaggerFunction", "InstanceStateChange")),
    ),
    (
        "auto-tagger/tag-change-environment.json",
        Some(("AutoTaggerFunction", "InstanceTagChange")),
    ),
    // Adding the exclusion tag must reach the tagger: it removes patchpilot's Patch Group tag.
    (
        "auto-tagger/tag-change-exclude.json",
        Some(("AutoTaggerFunction", "InstanceTagChange")),
    ),
    // patchpilot's own Patch Group write must not re-trigger the tagger.
    (
        "auto-tagger/tag-change-patch-group-by-patchpilot.json",
        None,
    ),
    (
        "auto-tagger/managed-instance-registration.json",
        Some(("AutoTaggerFunction", "ManagedInstanceRegistration")),
    ),
    (
        "baseline-sync/scheduled.json",
        Some(("BaselineSyncFunction", "DailySync")),
    ),
    (
        "baseline-sync/parameter-change.json",
        Some(("BaselineSyncFunction", "PolicyChange")),
    ),
    // Direct invokes (aws lambda invoke), never routed by EventBridge.
    ("baseline-sync/manual-dry-run.json", None),
    ("baseline-sync/manual-apply.json", None),
    ("baseline-sync/manual-force-promotion.json", None),
    (
        "baseline-sync/promotion-recorded.json",
        Some(("BaselineSyncFunction", "PromotionRecorded")),
    ),
    (
        "run-notifier/window-execution-success.json",
        Some(("RunNotifierFunction", "WindowExecutionFinished")),
    ),
    (
        "run-notifier/window-execution-failed.json",
        Some(("RunNotifierFunction", "WindowExecutionFinished")),
    ),
    (
        "run-notifier/command-success.json",
        Some(("RunNotifierFunction", "PatchCommandFinished")),
    ),
    (
        "run-notifier/command-failed.json",
        Some(("RunNotifierFunction", "PatchCommandFinished")),
    ),
];

fn matching_rules(triggers: &[Trigger], ev: &Json, file: &str) -> BTreeSet<(String, String)> {
    triggers
        .iter()
        .filter_map(|t| {
            let pattern = t.pattern.as_ref()?;
            let hit = eventpattern::matches(pattern, ev)
                .unwrap_or_else(|e| panic!("{}.{} pattern is invalid: {e}", t.function, t.name));
            hit.then(|| (t.function.clone(), t.name.clone()))
        })
        .inspect(|(f, n)| eprintln!("{file} matches {f}.{n}"))
        .collect()
}

fn json_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(json_files(&path));
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

#[test]
fn each_event_file_reaches_exactly_its_trigger() {
    let t = template();
    let triggers = triggers(&t);
    for (file, route) in ROUTES {
        let ev = event(file);
        let matched = matching_rules(&triggers, &ev, file);
        match route {
            None => assert!(
                matched.is_empty(),
                "{file} must match no rule, matched {matched:?}"
            ),
            Some((function, name)) => {
                let trigger = triggers
                    .iter()
                    .find(|t| t.function == *function && t.name == *name)
                    .unwrap_or_else(|| panic!("{file}: template has no trigger {function}.{name}"));
                if trigger.kind == "Schedule" {
                    assert!(
                        matched.is_empty(),
                        "{file} must match no pattern, matched {matched:?}"
                    );
                    assert_eq!(ev["source"], "aws.events", "{file}");
                    assert_eq!(ev["detail-type"], "Scheduled Event", "{file}");
                } else {
                    let expected = BTreeSet::from([(function.to_string(), name.to_string())]);
                    assert_eq!(matched, expected, "{file}");
                }
            }
        }
    }
}

#[test]
fn lookalikes_match_no_rule() {
    let t = template();
    let triggers = triggers(&t);
    let dir = repo_root().join("events/lookalikes");
    let files = json_files(&dir);
    assert!(
        files.len() >= 6,
        "expected look-alike events in {}",
        dir.display()
    );
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        let ev: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let matched = matching_rules(&triggers, &ev, &path);
        assert!(
            matched.is_empty(),
            "{path} is a look-alike but matched {matched:?}"
        );
    }
}

#[test]
fn every_rule_has_a_real_event_and_every_event_file_is_routed() {
    let t = template();
    for trigger in triggers(&t) {
        assert!(
            ROUTES
                .iter()
                .any(|(_, r)| *r == Some((trigger.function.as_str(), trigger.name.as_str()))),
            "{}.{} has no event file in events/",
            trigger.function,
            trigger.name
        );
        assert!(
            matches!(trigger.kind.as_str(), "EventBridgeRule" | "Schedule"),
            "{}.{}: unexpected trigger type {}",
            trigger.function,
            trigger.name,
            trigger.kind
        );
    }
    let root = repo_root().join("events");
    for path in json_files(&root) {
        let relative = Path::new(&path)
            .strip_prefix(&root)
            .expect("under events/")
            .to_string_lossy()
            .replace('\\', "/");
        assert!(
            relative.starts_with("lookalikes/") || ROUTES.iter().any(|(f, _)| *f == relative),
            "events/{relative} is not listed in ROUTES (say which trigger it is for)"
        );
    }
}

#[test]
fn eventbridge_events_have_the_documented_envelope() {
    let root = repo_root().join("events");
    for path in json_files(&root) {
        if path.contains("manual-") {
            continue;
        }
        let ev: Json = serde_json::from_str(&std::fs::read_to_string(&path).expect("readable"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        for field in [
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
        ] {
            assert!(ev[field].is_string(), "{path}: `{field}` must be a string");
        }
        assert!(
            ev["resources"].is_array(),
            "{path}: `resources` must be an array"
        );
        assert!(
            ev["detail"].is_object(),
            "{path}: `detail` must be an object"
        );
    }
}

#[test]
fn rules_retry_and_dead_letter() {
    let t = template();
    for (function, resource) in functions(&t) {
        let events = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Yaml::as_mapping)
            .expect("every function has triggers");
        for (name, spec) in events {
            let props = spec.get("Properties").expect("trigger properties");
            assert!(
                props.get("RetryPolicy").is_some(),
                "{function}.{name:?} lacks RetryPolicy"
            );
            assert!(
                props
                    .get("DeadLetterConfig")
                    .and_then(|d| d.get("Arn"))
                    .is_some(),
                "{function}.{name:?} lacks a DeadLetterConfig queue"
            );
        }
    }
}

// ------------------------------------------------------------------ IAM

fn as_list(v: &Yaml) -> Vec<&Yaml> {
    match v {
        Yaml::Sequence(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn actions_of(statement: &Yaml) -> Vec<String> {
    statement
        .get("Action")
        .map(as_list)
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.as_str().expect("actions are plain strings").to_string())
        .collect()
}

fn is_allow(statement: &Yaml) -> bool {
    statement.get("Effect").and_then(Yaml::as_str) == Some("Allow")
}

/// The inline statements of a function's `Policies`. Only inline statement documents are
/// allowed there: a managed policy name or a SAM policy template would hide the actions.
fn function_statements<'a>(function: &str, resource: &'a Yaml) -> Vec<&'a Yaml> {
    let props = resource.get("Properties").expect("function properties");
    assert!(
        props.get("Role").is_none(),
        "{function}: use Policies, not a separate Role"
    );
    let policies = props
        .get("Policies")
        .and_then(Yaml::as_sequence)
        .unwrap_or_else(|| panic!("{function}: Policies must be a list of statement documents"));
    let mut out = Vec::new();
    for policy in policies {
        let statements = policy
            .get("Statement")
            .and_then(Yaml::as_sequence)
            .unwrap_or_else(|| panic!("{function}: {policy:?} is not an inline policy document"));
        out.extend(statements.iter().flat_map(branches));
    }
    out
}

/// A statement, or both branches of a `!If [Condition, statement, statement-or-NoValue]`
/// (an opt-in's statements are granted only when the stack opts in; the check counts them).
fn branches(v: &Yaml) -> Vec<&Yaml> {
    match v {
        Yaml::Tagged(tagged) if tagged.tag == "If" => tagged
            .value
            .as_sequence()
            .map(|items| items.iter().skip(1).flat_map(branches).collect())
            .unwrap_or_default(),
        Yaml::Tagged(tagged)
            if tagged.tag == "Ref" && tagged.value.as_str() == Some("AWS::NoValue") =>
        {
            Vec::new()
        }
        other => vec![other],
    }
}

/// `EventInvokeConfig.DestinationConfig.OnFailure.Type: SQS` (function or Globals) makes SAM
/// grant sqs:SendMessage on the queue to the function's role.
fn has_sqs_failure_destination(t: &Yaml, resource: &Yaml) -> bool {
    let own = resource
        .get("Properties")
        .and_then(|p| p.get("EventInvokeConfig"));
    let global = t
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("EventInvokeConfig"));
    own.or(global)
        .and_then(|c| c.get("DestinationConfig"))
        .and_then(|d| d.get("OnFailure"))
        .and_then(|o| o.get("Type"))
        .and_then(Yaml::as_str)
        == Some("SQS")
}

fn granted(t: &Yaml, function: &str) -> BTreeSet<String> {
    let (_, resource) = functions(t)
        .into_iter()
        .find(|(id, _)| id == function)
        .unwrap_or_else(|| panic!("template has no {function}"));
    let mut actions: BTreeSet<String> = function_statements(function, resource)
        .into_iter()
        .filter(|s| is_allow(s))
        .flat_map(actions_of)
        .collect();
    if has_sqs_failure_destination(t, resource) {
        actions.extend(
            permissions::ASYNC_FAILURE_DESTINATION
                .iter()
                .map(|a| a.to_string()),
        );
    }
    actions
}

fn set(lists: &[&[&str]]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|l| l.iter().map(|a| a.to_string()))
        .collect()
}

#[test]
fn each_function_is_granted_exactly_the_actions_its_code_calls() {
    let t = template();
    let expected = [
        (
            "AutoTaggerFunction",
            set(&[
                permissions::AUTO_TAGGER,
                permissions::ASYNC_FAILURE_DESTINATION,
            ]),
        ),
        (
            "BaselineSyncFunction",
            set(&[
                permissions::BASELINE_SYNC,
                permissions::ENCRYPTED_TOPIC,
                permissions::ASYNC_FAILURE_DESTINATION,
            ]),
        ),
        (
            "RunNotifierFunction",
            set(&[
                permissions::RUN_NOTIFIER,
                permissions::ENCRYPTED_TOPIC,
                permissions::ASYNC_FAILURE_DESTINATION,
            ]),
        ),
    ];
    assert_eq!(
        functions(&t).len(),
        expected.len(),
        "one entry per function"
    );
    for (function, want) in expected {
        let have = granted(&t, function);
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{function}: template misses {missing:?} and grants extra {extra:?} \
             compared with patchpilot::permissions"
        );
    }
}

/// Every `Allow` statement anywhere in the template (function policies, roles, key and queue
/// policies). `Deny` statements are not collected: a wildcard there only narrows access
/// (the bucket's TLS-only `s3:*` deny).
fn allow_statements(v: &Yaml, out: &mut Vec<Yaml>) {
    match v {
        Yaml::Mapping(m) => {
            if is_allow(v) && (m.contains_key("Action") || m.contains_key("NotAction")) {
                out.push(v.clone());
            }
            for (_, child) in m {
                allow_statements(child, out);
            }
        }
        Yaml::Sequence(items) => items.iter().for_each(|i| allow_statements(i, out)),
        Yaml::Tagged(tagged) => allow_statements(&tagged.value, out),
        _ => {}
    }
}

#[test]
fn no_wildcard_action_is_allowed_anywhere() {
    let t = template();
    let mut statements = Vec::new();
    allow_statements(&t, &mut statements);
    assert!(!statements.is_empty());
    for s in &statements {
        assert!(s.get("NotAction").is_none(), "NotAction in {s:?}");
        for action in actions_of(s) {
            assert!(!action.contains('*'), "wildcard action `{action}` in {s:?}");
        }
    }
}

fn is_star(resource: &Yaml) -> bool {
    as_list(resource).iter().any(|r| r.as_str() == Some("*"))
}

fn is_ref_to(v: Option<&Yaml>, name: &str) -> bool {
    matches!(v, Some(Yaml::Tagged(t)) if t.tag == "Ref" && t.value.as_str() == Some(name))
}

/// `Condition.<operator>.<key>` of a statement.
fn condition<'a>(s: &'a Yaml, operator: &str, key: &str) -> Option<&'a Yaml> {
    s.get("Condition")
        .and_then(|c| c.get(operator))
        .and_then(|c| c.get(key))
}

/// A write granted on "*" is only possible for the creates, which support no resource type
/// (Service Authorization Reference, SSM: CreatePatchBaseline, CreateMaintenanceWindow; the
/// reference check in `make lint` proves that against AWS's data). Such a grant must then be
/// limited by the request's tags: this stack's marker and nothing else.
#[test]
fn writes_on_star_are_creates_limited_to_this_stacks_marker() {
    let t = template();
    for (function, resource) in functions(&t) {
        for s in function_statements(&function, resource) {
            if !s.get("Resource").is_some_and(is_star) {
                continue;
            }
            let writes: Vec<String> = actions_of(s)
                .into_iter()
                .filter(|action| {
                    let name = action.split_once(':').map(|(_, n)| n).unwrap_or("");
                    !["Describe", "List", "Get"]
                        .iter()
                        .any(|p| name.starts_with(p))
                })
                .collect();
            if writes.is_empty() {
                continue;
            }
            for action in &writes {
                assert!(
                    ["ssm:CreatePatchBaseline", "ssm:CreateMaintenanceWindow"]
                        .contains(&action.as_str()),
                    "{function}: write `{action}` is granted on \"*\""
                );
            }
            assert!(
                is_ref_to(
                    condition(s, "StringEquals", "aws:RequestTag/patchpilot:managed"),
                    "AWS::StackName"
                ),
                "{function}: creates must carry patchpilot:managed=<stack name>: {s:?}"
            );
            let keys = condition(s, "ForAllValues:StringEquals", "aws:TagKeys")
                .and_then(Yaml::as_sequence)
                .map(|k| k.iter().filter_map(Yaml::as_str).collect::<Vec<_>>());
            assert_eq!(keys, Some(vec!["patchpilot:managed"]), "{s:?}");
        }
    }
}

/// Every statement that lets baseline-sync change a baseline or window (and with it their
/// registrations, targets and tasks) requires that resource to carry this stack's marker.
#[test]
fn changes_to_baselines_and_windows_require_this_stacks_marker() {
    let t = template();
    let (_, sync) = functions(&t)
        .into_iter()
        .find(|(id, _)| id == "BaselineSyncFunction")
        .expect("BaselineSyncFunction");
    let mut checked = 0;
    for s in function_statements("BaselineSyncFunction", sync) {
        let resources = s.get("Resource").map(as_list).unwrap_or_default();
        let on_baselines_or_windows = resources.iter().any(|r| match r {
            Yaml::Tagged(tagged) => tagged.value.as_str().is_some_and(|v| {
                v.contains(":patchbaseline/") || v.contains(":maintenancewindow/")
            }),
            _ => false,
        });
        let writes = actions_of(s).into_iter().any(|action| {
            let name = action.split_once(':').map(|(_, n)| n).unwrap_or("");
            !["Describe", "List", "Get"]
                .iter()
                .any(|p| name.starts_with(p))
        });
        if !(on_baselines_or_windows && writes) {
            continue;
        }
        checked += 1;
        assert!(
            is_ref_to(
                condition(s, "StringEquals", "aws:ResourceTag/patchpilot:managed"),
                "AWS::StackName"
            ),
            "a change to baselines/windows without the ownership condition: {s:?}"
        );
    }
    assert!(checked > 0, "no change statement found");
}

/// Tagging a baseline or window could mark another's resource as this stack's: no function
/// may do it (creates carry the marker themselves).
#[test]
fn no_function_tags_baselines_or_windows() {
    let t = template();
    for (function, resource) in functions(&t) {
        for s in function_statements(&function, resource) {
            if !actions_of(s).iter().any(|a| a == "ssm:AddTagsToResource") {
                continue;
            }
            for r in s.get("Resource").map(as_list).unwrap_or_default() {
                let text = match r {
                    Yaml::Tagged(tagged) => tagged.value.as_str().unwrap_or(""),
                    other => other.as_str().unwrap_or(""),
                };
                assert!(
                    text.contains(":managed-instance/"),
                    "{function}: ssm:AddTagsToResource on {text}"
                );
            }
            assert!(
                s.get("Condition").is_some(),
                "{function}: unconditioned {s:?}"
            );
        }
    }
}

#[test]
fn pass_role_only_for_the_window_role_towards_ssm() {
    let t = template();
    let mut statements = Vec::new();
    allow_statements(&t, &mut statements);
    let pass: Vec<_> = statements
        .iter()
        .filter(|s| actions_of(s).iter().any(|a| a == "iam:PassRole"))
        .collect();
    let (_, baseline_sync) = functions(&t)
        .into_iter()
        .find(|(id, _)| id == "BaselineSyncFunction")
        .expect("BaselineSyncFunction");
    let own = function_statements("BaselineSyncFunction", baseline_sync);
    // The window role (always) and the Default Host Management role (opt-in), nothing else.
    let mut roles = Vec::new();
    for s in &pass {
        assert_eq!(
            actions_of(s),
            ["iam:PassRole"],
            "PassRole shares its statement with nothing"
        );
        match s.get("Resource") {
            Some(Yaml::Tagged(tagged)) if tagged.tag == "GetAtt" => {
                roles.push(tagged.value.as_str().unwrap_or_default().to_string());
            }
            other => panic!("PassRole resource must be !GetAtt <role>.Arn, is {other:?}"),
        }
        let service = s
            .get("Condition")
            .and_then(|c| c.get("StringEquals"))
            .and_then(|c| c.get("iam:PassedToService"))
            .and_then(Yaml::as_str);
        assert_eq!(service, Some("ssm.amazonaws.com"));
        assert!(
            own.contains(s),
            "the PassRole statements belong to baseline-sync"
        );
    }
    assert_eq!(
        roles,
        ["MaintenanceWindowRole.Arn", "DefaultHostManagementRole.Arn"],
        "iam:PassRole only for the window role and the DHMC role: {pass:?}"
    );
}

#[test]
fn instance_tag_writes_are_limited_to_the_patch_group_and_ownership_keys() {
    let t = template();
    // The tagger writes the Patch Group and the ownership marker; baseline-sync also writes
    // `patchpilot:os`, which a promoted environment's per-OS targets select (README,
    // "Promotion"). Any other statement writing instance tags is a finding.
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        (
            "AutoTaggerFunction",
            &["!Ref PatchGroupTagKey", "patchpilot:managed"][..],
        ),
        (
            "BaselineSyncFunction",
            &[
                "!Ref PatchGroupTagKey",
                "patchpilot:managed",
                "patchpilot:os",
            ][..],
        ),
    ]);
    let mut statements = Vec::new();
    allow_statements(&t, &mut statements);
    let writes = |s: &Yaml| {
        actions_of(s).iter().any(|a| {
            a == "ec2:CreateTags"
                || a == "ssm:AddTagsToResource"
                || a == "ec2:DeleteTags"
                || a == "ssm:RemoveTagsFromResource"
        })
    };
    let on_instances = |s: &Yaml| {
        s.get("Resource")
            .map(as_list)
            .unwrap_or_default()
            .iter()
            .any(|r| match r {
                Yaml::Tagged(tagged) => tagged
                    .value
                    .as_str()
                    .is_some_and(|v| v.contains(":instance/") || v.contains(":managed-instance/")),
                _ => false,
            })
    };
    let all = statements
        .iter()
        .filter(|s| writes(s) && on_instances(s))
        .count();
    let mut checked = 0;
    for (function, resource) in functions(&t) {
        for s in function_statements(&function, resource) {
            if !(writes(s) && on_instances(s)) {
                continue;
            }
            let want = allowed
                .get(function.as_str())
                .unwrap_or_else(|| panic!("{function} may not write instance tags: {s:?}"));
            let keys = s
                .get("Condition")
                .and_then(|c| c.get("ForAllValues:StringEquals"))
                .and_then(|c| c.get("aws:TagKeys"))
                .and_then(Yaml::as_sequence)
                .unwrap_or_else(|| {
                    panic!("instance tag write without an aws:TagKeys condition: {s:?}")
                });
            let keys: Vec<String> = keys
                .iter()
                .map(|k| match k {
                    Yaml::Tagged(tagged) if tagged.tag == "Ref" => {
                        format!("!Ref {}", tagged.value.as_str().unwrap_or(""))
                    }
                    other => other.as_str().unwrap_or("").to_string(),
                })
                .collect();
            assert_eq!(keys, *want, "{function}: {s:?}");
            checked += 1;
        }
    }
    assert!(checked > 0);
    assert_eq!(
        checked, all,
        "every instance tag write belongs to a function's own policy"
    );
}

#[test]
fn every_function_logs_to_a_group_with_the_stacks_retention() {
    let t = template();
    let retention = t
        .get("Parameters")
        .and_then(|p| p.get("LogRetentionDays"))
        .expect("a LogRetentionDays parameter");
    assert_eq!(
        retention.get("Default").and_then(Yaml::as_u64),
        Some(30),
        "30 days unless the operator says otherwise"
    );
    let groups: Vec<&Yaml> = resources(&t)
        .values()
        .filter(|r| r.get("Type").and_then(Yaml::as_str) == Some("AWS::Logs::LogGroup"))
        .collect();
    let mut covered = BTreeSet::new();
    for g in &groups {
        let props = g.get("Properties").expect("log group properties");
        assert!(
            is_ref_to(props.get("RetentionInDays"), "LogRetentionDays"),
            "{props:?}"
        );
        let name = match props.get("LogGroupName") {
            Some(Yaml::Tagged(tagged)) if tagged.tag == "Sub" => {
                tagged.value.as_str().unwrap_or_default().to_string()
            }
            other => panic!("LogGroupName must be !Sub /aws/lambda/${{Function}}: {other:?}"),
        };
        let function = name
            .strip_prefix("/aws/lambda/${")
            .and_then(|f| f.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{name} is not the function's own log group"));
        covered.insert(function.to_string());
    }
    let functions: BTreeSet<String> = functions(&t).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        covered, functions,
        "one log group per function, named as Lambda names it"
    );
}

#[test]
fn the_event_driven_functions_have_a_concurrency_cap_from_a_parameter() {
    let t = template();
    let functions = functions(&t);
    for (function, parameter) in [
        ("AutoTaggerFunction", "TaggerReservedConcurrency"),
        ("RunNotifierFunction", "NotifierReservedConcurrency"),
    ] {
        let (_, f) = functions
            .iter()
            .find(|(id, _)| id == function)
            .expect("the function");
        let cap = f
            .get("Properties")
            .and_then(|p| p.get("ReservedConcurrentExecutions"));
        assert!(is_ref_to(cap, parameter), "{function}: {cap:?}");
        let spec = t
            .get("Parameters")
            .and_then(|p| p.get(parameter))
            .expect("the parameter");
        // 0 would stop the function altogether.
        assert_eq!(spec.get("MinValue").and_then(Yaml::as_u64), Some(1));
        assert!(spec
            .get("Default")
            .and_then(Yaml::as_u64)
            .is_some_and(|d| d >= 1));
    }
}

#[test]
fn alarms_publish_to_their_own_topic_which_only_cloudwatch_may_use() {
    let t = template();
    let res = resources(&t);
    let alarms: Vec<(&Yaml, &Yaml)> = res
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Yaml::as_str) == Some("AWS::CloudWatch::Alarm"))
        .collect();
    assert!(!alarms.is_empty());
    for (id, alarm) in alarms {
        let props = alarm.get("Properties").expect("alarm properties");
        let actions = props
            .get("AlarmActions")
            .and_then(Yaml::as_sequence)
            .unwrap_or_else(|| panic!("{id:?} has no AlarmActions"));
        // CloudWatch publishes without message attributes: on the report topic a subscriber
        // with a filter policy would never see it.
        assert!(
            actions.len() == 1 && is_ref_to(actions.first(), "AlarmTopic"),
            "{id:?}: {actions:?}"
        );
        assert!(props.get("OKActions").is_none() && props.get("InsufficientDataActions").is_none());
    }
    let policy = |topic: &str| -> Vec<Yaml> {
        let p = res
            .values()
            .find(|r| {
                r.get("Type").and_then(Yaml::as_str) == Some("AWS::SNS::TopicPolicy")
                    && r.get("Properties")
                        .and_then(|p| p.get("Topics"))
                        .and_then(Yaml::as_sequence)
                        .is_some_and(|ts| is_ref_to(ts.first(), topic))
            })
            .unwrap_or_else(|| panic!("a topic policy for {topic}"));
        p.get("Properties")
            .and_then(|p| p.get("PolicyDocument"))
            .and_then(|d| d.get("Statement"))
            .and_then(Yaml::as_sequence)
            .cloned()
            .expect("statements")
    };
    let allows_cloudwatch = |statements: &[Yaml]| {
        statements.iter().any(|s| {
            is_allow(s)
                && s.get("Principal")
                    .and_then(|p| p.get("Service"))
                    .and_then(Yaml::as_str)
                    == Some("cloudwatch.amazonaws.com")
        })
    };
    assert!(allows_cloudwatch(&policy("AlarmTopic")));
    assert!(
        !allows_cloudwatch(&policy("ReportTopic")),
        "nothing but the two functions publishes reports"
    );
    // The stack's e-mail address gets the alarms too.
    assert!(res.values().any(|r| {
        r.get("Type").and_then(Yaml::as_str) == Some("AWS::SNS::Subscription")
            && is_ref_to(
                r.get("Properties").and_then(|p| p.get("TopicArn")),
                "AlarmTopic",
            )
    }));
}

#[test]
fn every_function_outlives_one_aws_calls_timeout() {
    let t = template();
    let global = t
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Timeout"))
        .and_then(Yaml::as_u64);
    for (function, resource) in functions(&t) {
        let timeout = resource
            .get("Properties")
            .and_then(|p| p.get("Timeout"))
            .and_then(Yaml::as_u64)
            .or(global)
            .unwrap_or(3);
        assert!(
            timeout > patchpilot::aws::OPERATION_TIMEOUT.as_secs(),
            "{function}: Timeout {timeout} s must exceed one AWS call's {} s, so the call's \
             error is reported before Lambda ends the invocation",
            patchpilot::aws::OPERATION_TIMEOUT.as_secs()
        );
    }
}
