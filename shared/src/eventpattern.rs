//! A matcher for the subset of the Amazon EventBridge event-pattern language that
//! `template.yaml` uses, so the rules' patterns can be tested against the real event
//! payloads in `events/` without an AWS account.
//!
//! Semantics follow "Amazon EventBridge event patterns" and "Content filtering in Amazon
//! EventBridge event patterns" (EventBridge User Guide):
//! - a pattern is a JSON object; every field in it must match (AND), fields the pattern
//!   does not name are ignored;
//! - a nested object descends into the event's object of the same name;
//! - a leaf is a non-empty array of conditions; the field matches if **any** condition
//!   matches (OR);
//! - an event field holding an array matches if **any** element matches;
//! - conditions: an exact string / number / boolean / `null`, `{"prefix": "..."}`,
//!   `{"suffix": "..."}` ("Suffix matching": the string ends with it, case-sensitive),
//!   `{"anything-but": value | [values] | {"prefix": "..."}}`, `{"exists": true|false}`.
//!
//! Anything else (`numeric`, `wildcard`, `cidr`, `$or`, …) is rejected with
//! [`PatternError::UnsupportedOperator`] rather than silently mis-evaluated: if the template
//! starts using one, this module has to learn it first.

use serde_json::{Map, Value};

/// Why a pattern cannot be evaluated. EventBridge itself would reject every one of these
/// at `PutRule` time, except [`PatternError::UnsupportedOperator`], which only means this
/// matcher does not implement that operator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("event pattern at `{path}` must be a JSON object, found {found}")]
    NotAnObject { path: String, found: &'static str },
    #[error("event pattern at `{path}` must be an array of match values or a nested object, found {found}")]
    LeafNotArray { path: String, found: &'static str },
    #[error("event pattern at `{path}` is an empty array; EventBridge requires at least one match value")]
    EmptyArray { path: String },
    #[error("event pattern at `{path}` uses `{operator}`, which patchpilot's matcher does not support (supported: exact values, prefix, suffix, anything-but, exists)")]
    UnsupportedOperator { path: String, operator: String },
    #[error("event pattern at `{path}`: `{operator}` {problem}")]
    InvalidOperand {
        path: String,
        operator: &'static str,
        problem: &'static str,
    },
}

/// Does `event` match the EventBridge `pattern`?
///
/// Returns an error when the pattern is malformed or uses an operator outside the supported
/// subset; the event itself can be any JSON value.
pub fn matches(pattern: &Value, event: &Value) -> Result<bool, PatternError> {
    match pattern {
        Value::Object(fields) => match_object(fields, Some(event), ""),
        other => Err(PatternError::NotAnObject {
            path: "$".to_string(),
            found: kind(other),
        }),
    }
}

fn match_object(
    pattern: &Map<String, Value>,
    event: Option<&Value>,
    path: &str,
) -> Result<bool, PatternError> {
    // Validate the whole pattern even after a mismatch, so a malformed pattern is reported
    // regardless of which event it is tried against.
    let mut all = true;
    for (key, sub) in pattern {
        let sub_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let field = event.and_then(|e| e.as_object()).and_then(|o| o.get(key));
        let ok = match sub {
            Value::Object(nested) => {
                match_object(nested, field.filter(|f| f.is_object()), &sub_path)?
            }
            Value::Array(conditions) => match_leaf(conditions, field, &sub_path)?,
            other => {
                return Err(PatternError::LeafNotArray {
                    path: sub_path,
                    found: kind(other),
                })
            }
        };
        all &= ok;
    }
    Ok(all)
}

fn match_leaf(
    conditions: &[Value],
    field: Option<&Value>,
    path: &str,
) -> Result<bool, PatternError> {
    if conditions.is_empty() {
        return Err(PatternError::EmptyArray {
            path: path.to_string(),
        });
    }
    let mut any = false;
    for condition in conditions {
        any |= match_condition(condition, field, path)?;
    }
    Ok(any)
}

/// One condition against a field that may be absent, a scalar, or an array of scalars.
fn match_condition(
    condition: &Value,
    field: Option<&Value>,
    path: &str,
) -> Result<bool, PatternError> {
    match condition {
        Value::Object(op) => match_operator(op, field, path),
        Value::Array(_) => Err(PatternError::LeafNotArray {
            path: path.to_string(),
            found: "a nested array",
        }),
        exact => Ok(any_value(field, |v| scalar_eq(exact, v))),
    }
}

fn match_operator(
    op: &Map<String, Value>,
    field: Option<&Value>,
    path: &str,
) -> Result<bool, PatternError> {
    let mut entries = op.iter();
    let (name, operand) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        _ => {
            return Err(PatternError::InvalidOperand {
                path: path.to_string(),
                operator: "{...}",
                problem: "a match operator object must have exactly one key",
            })
        }
    };
    match name.as_str() {
        "exists" => match operand {
            // `exists` is only defined for leaf fields: an object is not "a value".
            Value::Bool(want) => Ok(field.is_some_and(|f| !f.is_object()) == *want),
            _ => Err(PatternError::InvalidOperand {
                path: path.to_string(),
                operator: "exists",
                problem: "takes true or false",
            }),
        },
        "prefix" => string_test(operand, field, path, "prefix", |s, p| s.starts_with(p)),
        "suffix" => string_test(operand, field, path, "suffix", |s, p| s.ends_with(p)),
        "anything-but" => anything_but(operand, field, path),
        other => Err(PatternError::UnsupportedOperator {
            path: path.to_string(),
            operator: other.to_string(),
        }),
    }
}

/// `prefix` / `suffix`: the operand is a string, and some string value of the field passes
/// `test(value, operand)`.
fn string_test(
    operand: &Value,
    field: Option<&Value>,
    path: &str,
    operator: &'static str,
    test: fn(&str, &str) -> bool,
) -> Result<bool, PatternError> {
    let want = operand.as_str().ok_or(PatternError::InvalidOperand {
        path: path.to_string(),
        operator,
        problem: "takes a string",
    })?;
    Ok(any_value(field, |v| {
        v.as_str().is_some_and(|s| test(s, want))
    }))
}

fn anything_but(operand: &Value, field: Option<&Value>, path: &str) -> Result<bool, PatternError> {
    // A missing field never matches `anything-but`: the field must exist with another value.
    match operand {
        Value::Object(inner) => match (inner.len(), inner.get("prefix")) {
            (1, Some(Value::String(prefix))) => Ok(any_value(field, |v| {
                v.as_str().is_some_and(|s| !s.starts_with(prefix.as_str()))
            })),
            _ => Err(PatternError::UnsupportedOperator {
                path: path.to_string(),
                operator: format!("anything-but {}", Value::Object(inner.clone())),
            }),
        },
        Value::Array(excluded) => {
            if excluded.is_empty() {
                return Err(PatternError::EmptyArray {
                    path: path.to_string(),
                });
            }
            if excluded.iter().any(|e| e.is_array() || e.is_object()) {
                return Err(PatternError::InvalidOperand {
                    path: path.to_string(),
                    operator: "anything-but",
                    problem: "takes a value, a list of values or {\"prefix\": ...}",
                });
            }
            Ok(any_value(field, |v| {
                !excluded.iter().any(|e| scalar_eq(e, v))
            }))
        }
        single => Ok(any_value(field, |v| !scalar_eq(single, v))),
    }
}

/// Applies `test` to the field, or to each element when the event field is an array.
fn any_value(field: Option<&Value>, test: impl Fn(&Value) -> bool) -> bool {
    match field {
        None => false,
        Some(Value::Array(items)) => items.iter().any(test),
        Some(Value::Object(_)) => false,
        Some(scalar) => test(scalar),
    }
}

/// EventBridge compares numbers by value (`1` matches `1.0`) and everything else exactly.
fn scalar_eq(pattern: &Value, event: &Value) -> bool {
    match (pattern, event) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => pattern == event,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec2_pending() -> Value {
        serde_json::from_str(include_str!(
            "../../events/auto-tagger/ec2-state-pending.json"
        ))
        .expect("events/auto-tagger/ec2-state-pending.json is JSON")
    }

    fn tag_change() -> Value {
        serde_json::from_str(include_str!(
            "../../events/auto-tagger/tag-change-environment.json"
        ))
        .expect("events/auto-tagger/tag-change-environment.json is JSON")
    }

    fn m(pattern: Value, event: &Value) -> bool {
        matches(&pattern, event).expect("pattern is valid")
    }

    #[test]
    fn exact_values_in_nested_detail_match_a_launch() {
        let event = ec2_pending();
        assert!(m(
            json!({"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"],
                   "detail": {"state": ["pending", "running"]}}),
            &event
        ));
        assert!(!m(json!({"detail": {"state": ["stopping"]}}), &event));
    }

    #[test]
    fn every_pattern_field_must_match() {
        let event = ec2_pending();
        assert!(!m(
            json!({"source": ["aws.ec2"], "detail": {"state": ["running"]}}),
            &event
        ));
    }

    #[test]
    fn empty_pattern_matches_everything() {
        assert!(m(json!({}), &ec2_pending()));
    }

    #[test]
    fn event_array_matches_if_any_element_matches() {
        let event = tag_change();
        assert!(m(
            json!({"detail": {"changed-tag-keys": ["Name", "Environment"]}}),
            &event
        ));
        assert!(!m(
            json!({"detail": {"changed-tag-keys": ["Patch Group"]}}),
            &event
        ));
        assert!(m(
            json!({"resources": [{"prefix": "arn:aws:ec2:us-east-1:123456789012:instance/"}]}),
            &event
        ));
    }

    #[test]
    fn prefix_matches_string_starts() {
        let event = ec2_pending();
        assert!(m(
            json!({"detail": {"instance-id": [{"prefix": "i-"}]}}),
            &event
        ));
        assert!(!m(
            json!({"detail": {"instance-id": [{"prefix": "mi-"}]}}),
            &event
        ));
    }

    #[test]
    fn suffix_matches_string_ends_case_sensitively() {
        let ev = json!({"detail": {"object": {"key": "patchpilot/promotion/prod/state.json"}}});
        assert!(m(
            json!({"detail": {"object": {"key": [{"suffix": "/state.json"}]}}}),
            &ev
        ));
        assert!(!m(
            json!({"detail": {"object": {"key": [{"suffix": "/STATE.json"}]}}}),
            &ev
        ));
        assert!(!m(
            json!({"detail": {"object": {"key": [{"suffix": "/manifest.json"}]}}}),
            &ev
        ));
        assert!(!m(
            json!({"detail": {"object": {"size": [{"suffix": "5"}]}}}),
            &json!({"detail": {"object": {"size": 5}}})
        ));
        assert!(matches(
            &json!({"detail": {"object": {"key": [{"suffix": 1}]}}}),
            &ev
        )
        .is_err());
    }

    #[test]
    fn anything_but_needs_the_field_with_another_value() {
        let event = ec2_pending();
        assert!(m(
            json!({"detail": {"state": [{"anything-but": "running"}]}}),
            &event
        ));
        assert!(!m(
            json!({"detail": {"state": [{"anything-but": ["pending", "running"]}]}}),
            &event
        ));
        assert!(m(
            json!({"detail": {"state": [{"anything-but": {"prefix": "stop"}}]}}),
            &event
        ));
        assert!(!m(
            json!({"detail": {"missing": [{"anything-but": "x"}]}}),
            &event
        ));
    }

    #[test]
    fn anything_but_on_an_array_field_matches_if_any_element_is_not_excluded() {
        let event = json!({"detail": {"changed-tag-keys": ["Patch Group", "Environment"]}});
        assert!(m(
            json!({"detail": {"changed-tag-keys": [{"anything-but": ["Patch Group", "patchpilot:managed"]}]}}),
            &event
        ));
        let own_write =
            json!({"detail": {"changed-tag-keys": ["Patch Group", "patchpilot:managed"]}});
        assert!(!m(
            json!({"detail": {"changed-tag-keys": [{"anything-but": ["Patch Group", "patchpilot:managed"]}]}}),
            &own_write
        ));
    }

    #[test]
    fn exists_tests_leaf_presence() {
        let event = ec2_pending();
        assert!(m(json!({"detail": {"state": [{"exists": true}]}}), &event));
        assert!(m(
            json!({"detail": {"end-time": [{"exists": false}]}}),
            &event
        ));
        assert!(!m(
            json!({"detail": {"state": [{"exists": false}]}}),
            &event
        ));
        // `exists` is for leaves: an object field does not count as an existing value.
        assert!(!m(json!({"detail": [{"exists": true}]}), &event));
    }

    #[test]
    fn missing_nested_object_does_not_match() {
        let event = json!({"source": "aws.events", "detail": {}});
        assert!(!m(json!({"detail": {"state": ["pending"]}}), &event));
        assert!(!m(json!({"other": {"x": ["y"]}}), &event));
        // A field under a missing object is itself missing.
        assert!(m(json!({"other": {"x": [{"exists": false}]}}), &json!({})));
    }

    #[test]
    fn numbers_compare_by_value_and_types_do_not_coerce() {
        let event = tag_change();
        assert!(m(json!({"detail": {"version": [3]}}), &event));
        assert!(m(json!({"detail": {"version": [3.0]}}), &event));
        assert!(!m(json!({"detail": {"version": ["3"]}}), &event));
        assert!(m(json!({"x": [null]}), &json!({"x": null})));
        assert!(m(json!({"dry_run": [true]}), &json!({"dry_run": true})));
    }

    #[test]
    fn malformed_patterns_are_errors_naming_the_path() {
        let event = ec2_pending();
        assert_eq!(
            matches(&json!({"source": "aws.ec2"}), &event),
            Err(PatternError::LeafNotArray {
                path: "source".into(),
                found: "a string"
            })
        );
        assert_eq!(
            matches(&json!({"detail": {"state": []}}), &event),
            Err(PatternError::EmptyArray {
                path: "detail.state".into()
            })
        );
        assert_eq!(
            matches(&json!(["aws.ec2"]), &event),
            Err(PatternError::NotAnObject {
                path: "$".into(),
                found: "an array"
            })
        );
        assert!(matches!(
            matches(&json!({"detail": {"state": [{"prefix": 1}]}}), &event),
            Err(PatternError::InvalidOperand {
                operator: "prefix",
                ..
            })
        ));
        assert!(matches!(
            matches(
                &json!({"detail": {"state": [{"prefix": "p", "exists": true}]}}),
                &event
            ),
            Err(PatternError::InvalidOperand { .. })
        ));
    }

    #[test]
    fn unsupported_operators_are_rejected_not_guessed() {
        let event = ec2_pending();
        assert_eq!(
            matches(
                &json!({"detail": {"state": [{"wildcard": "pend*"}]}}),
                &event
            ),
            Err(PatternError::UnsupportedOperator {
                path: "detail.state".into(),
                operator: "wildcard".into()
            })
        );
    }

    #[test]
    fn malformed_pattern_is_reported_even_after_an_earlier_mismatch() {
        let event = ec2_pending();
        assert!(matches(
            &json!({"source": ["aws.ssm"], "detail": {"state": "pending"}}),
            &event
        )
        .is_err());
    }
}
