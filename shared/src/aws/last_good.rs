//! The last known good policy: the last policy baseline-sync loaded and validated, kept in
//! the stack's idempotency table (item `policy#<stack>`) with its parameter version and
//! SHA-256, where all three functions can read it. When the policy parameter turns invalid,
//! auto-tagger and run-notifier keep working on it ([`super::policy_source`]) and
//! baseline-sync changes nothing and publishes the errors in one message
//! ([`PolicyInvalidNotifier`], remembered in item `policy-invalid#<stack>` so that the daily
//! sync does not repeat it).
//!
//! | call | AWS reference |
//! |---|---|
//! | `GetItem` (`ConsistentRead`: the last write is always seen) | DynamoDB: GetItem |
//! | `PutItem`, only when the hash differs (a second sync writes nothing) | DynamoDB: PutItem; an item is at most 400 KB, the policy parameter at most 8 KB (SSM: "Parameter tiers") |
//! | `Publish` | SNS: Publish (`MessageStructure=json`, message attributes) |

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use serde::Serialize;
use tracing::info;

use super::notify::Notifier;
use super::{AwsError, CallLog, Service};
use crate::names::Owner;
use crate::report::{Attribute, Message};

/// The policy as stored: where it came from, its version and hash, its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPolicy {
    /// `embedded` or the parameter name.
    pub parameter: String,
    /// The parameter's version (`None`: the embedded policy).
    pub version: Option<i64>,
    /// SHA-256 of `text`, lower-case hex.
    pub sha256: String,
    #[serde(skip)]
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<String>,
}

impl StoredPolicy {
    /// `version 7 (sha256 1a2b3c4d5e6f)` — what a report's footer and the logs say.
    pub fn label(&self) -> String {
        label(&self.parameter, self.version, &self.sha256)
    }
}

/// `/patchpilot/policy version 7 (sha256 1a2b3c4d5e6f)`, `embedded (sha256 …)`.
pub fn label(parameter: &str, version: Option<i64>, sha256: &str) -> String {
    let short = &sha256[..sha256.len().min(12)];
    match version {
        Some(v) => format!("{parameter} version {v} (sha256 {short})"),
        None => format!("{parameter} (sha256 {short})"),
    }
}

/// SHA-256 of `text`, lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The item of a stack's last known good policy.
pub fn item_key(owner: &Owner) -> String {
    format!("policy#{}", owner.stack())
}

/// The item remembering the last invalid policy baseline-sync reported.
pub fn invalid_item_key(owner: &Owner) -> String {
    format!("policy-invalid#{}", owner.stack())
}

/// The last known good policy in the idempotency table.
#[derive(Clone)]
pub struct LastGoodStore {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
}

impl LastGoodStore {
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, table: &str, owner: &Owner) -> LastGoodStore {
        LastGoodStore {
            dynamodb,
            table: table.to_string(),
            key: item_key(owner),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The stored policy, if any.
    pub async fn read(&self, calls: &CallLog) -> Result<Option<StoredPolicy>, AwsError> {
        let Some(item) = get_item(&self.dynamodb, &self.table, &self.key, calls).await? else {
            return Ok(None);
        };
        let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let (Some(text), Some(sha256)) = (s("text"), s("sha256")) else {
            return Err(AwsError::missing(
                "GetItem",
                "text / sha256 of policy#<stack>",
            ));
        };
        Ok(Some(StoredPolicy {
            parameter: s("parameter").unwrap_or_else(|| "embedded".to_string()),
            version: item
                .get("version")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok()),
            sha256,
            text,
            stored_at: s("stored_at"),
        }))
    }

    /// Store `policy` unless it is already the stored one (same hash): one `GetItem`, and a
    /// `PutItem` only on a change. Returns whether it wrote.
    pub async fn remember(&self, policy: &StoredPolicy, calls: &CallLog) -> Result<bool, AwsError> {
        if let Some(stored) = self.read(calls).await? {
            if stored.sha256 == policy.sha256 && stored.version == policy.version {
                return Ok(false);
            }
        }
        calls.record("PutItem");
        let mut request = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(self.key.clone()))
            .item("parameter", AttributeValue::S(policy.parameter.clone()))
            .item("sha256", AttributeValue::S(policy.sha256.clone()))
            .item("text", AttributeValue::S(policy.text.clone()))
            .item("stored_at", AttributeValue::S(Utc::now().to_rfc3339()));
        if let Some(v) = policy.version {
            request = request.item("version", AttributeValue::N(v.to_string()));
        }
        request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::DynamoDb, "PutItem", e))?;
        info!(item = %self.key, policy = %policy.label(), "stored as the last known good policy");
        Ok(true)
    }
}

async fn get_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    calls: &CallLog,
) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, AwsError> {
    calls.record("GetItem");
    let out = dynamodb
        .get_item()
        .table_name(table)
        .key("id", AttributeValue::S(key.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(Service::DynamoDb, "GetItem", e))?;
    Ok(out.item)
}

/// The one message baseline-sync publishes about an invalid policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidPolicy {
    /// The invalid policy's label (parameter, version, hash).
    pub policy: String,
    pub sha256: String,
    /// Every problem, one line each (field path, what is wrong, what is allowed).
    pub problems: Vec<String>,
    /// The policy auto-tagger and run-notifier keep using.
    pub last_known_good: Option<String>,
    /// The policy's environments (the last known good one's), for `environment` filters.
    pub environments: Vec<String>,
}

/// The SNS message `type` of an invalid-policy message.
pub const POLICY_TYPE: &str = "policy";

impl InvalidPolicy {
    pub fn message(&self, prefix: &str) -> Message {
        let mut subject = format!("{prefix} policy invalid: nothing changed");
        subject.truncate(100);
        let mut t = String::new();
        let _ = writeln!(
            t,
            "The policy {} is invalid. baseline-sync changed nothing in AWS.",
            self.policy
        );
        let _ = writeln!(t);
        let _ = writeln!(t, "{} problem(s):", self.problems.len());
        for p in &self.problems {
            let _ = writeln!(t, "  - {p}");
        }
        let _ = writeln!(t);
        match &self.last_known_good {
            Some(good) => {
                let _ = writeln!(
                    t,
                    "auto-tagger and run-notifier keep using the last known good policy, {good}, until the parameter holds a valid policy again."
                );
            }
            None => {
                let _ = writeln!(
                    t,
                    "No valid policy was ever stored: auto-tagger and run-notifier fail their events (they wait in the failure queue for a redrive) until the parameter holds a valid policy."
                );
            }
        }
        let _ = writeln!(
            t,
            "Check a policy before putting it: `patchpilot validate my-policy.yaml`. This message is sent once per invalid version."
        );
        let json = serde_json::to_string(&serde_json::json!({
            "source": "patchpilot",
            "version": 1,
            "type": POLICY_TYPE,
            "status": "FAILED",
            "policy": self.policy,
            "problems": self.problems,
            "last_known_good": self.last_known_good,
        }))
        .unwrap_or_default();
        let envelope = serde_json::json!({ "default": json, "email": t });
        let environments =
            serde_json::to_string(&self.environments).unwrap_or_else(|_| "[]".to_string());
        let attr = |data_type: &'static str, value: String| Attribute { data_type, value };
        Message {
            subject,
            message: envelope.to_string(),
            attributes: BTreeMap::from([
                ("type".to_string(), attr("String", POLICY_TYPE.to_string())),
                ("status".to_string(), attr("String", "FAILED".to_string())),
                (
                    "failed_count".to_string(),
                    attr("Number", self.problems.len().to_string()),
                ),
                (
                    "environment".to_string(),
                    attr("String.Array", environments),
                ),
            ]),
            text: t,
            json,
            truncated: false,
        }
    }
}

/// Publishes [`InvalidPolicy`] once per invalid policy text.
pub struct PolicyInvalidNotifier {
    notifier: Notifier,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
}

impl PolicyInvalidNotifier {
    /// With the SNS and DynamoDB clients the function already has (one per service and
    /// process).
    pub fn from_clients(
        sns: aws_sdk_sns::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        topic_arn: &str,
        table: &str,
        owner: &Owner,
    ) -> Self {
        PolicyInvalidNotifier {
            notifier: Notifier::new(sns, topic_arn),
            dynamodb,
            table: table.to_string(),
            key: invalid_item_key(owner),
        }
    }

    /// Publish `invalid` unless this very text was reported already. Order: read → publish →
    /// remember (a crash in between repeats the message rather than losing it). Returns the
    /// message id, or `None` when it had been sent before.
    pub async fn publish_once(
        &self,
        invalid: &InvalidPolicy,
        prefix: &str,
        calls: &CallLog,
    ) -> Result<Option<String>, AwsError> {
        if let Some(item) = get_item(&self.dynamodb, &self.table, &self.key, calls).await? {
            if item.get("sha256").and_then(|v| v.as_s().ok()) == Some(&invalid.sha256) {
                info!(policy = %invalid.policy, "invalid policy already reported: no second message");
                return Ok(None);
            }
        }
        let message_id = self
            .notifier
            .publish(&invalid.message(prefix), calls)
            .await?;
        calls.record("PutItem");
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(self.key.clone()))
            .item("sha256", AttributeValue::S(invalid.sha256.clone()))
            .item("message_id", AttributeValue::S(message_id.clone()))
            .item("published_at", AttributeValue::S(Utc::now().to_rfc3339()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::DynamoDb, "PutItem", e))?;
        Ok(Some(message_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_of_the_text() {
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            label("/patchpilot/policy", Some(7), &sha256_hex("abc")),
            "/patchpilot/policy version 7 (sha256 ba7816bf8f01)"
        );
    }

    #[test]
    fn the_invalid_policy_message_lists_every_problem_once_and_says_what_keeps_running() {
        let invalid = InvalidPolicy {
            policy: "/patchpilot/policy version 8 (sha256 0123456789ab)".into(),
            sha256: "0123456789abcdef".into(),
            problems: vec![
                "environments[0].window.duration_hours: 30 (allowed: 1-24)".into(),
                "batches[1].max_errors: 'x' (allowed: a number or a percentage)".into(),
            ],
            last_known_good: Some("/patchpilot/policy version 7 (sha256 ba7816bf8f01)".into()),
            environments: vec!["test".into(), "prod".into()],
        };
        let m = invalid.message("[patchpilot]");
        assert_eq!(m.subject, "[patchpilot] policy invalid: nothing changed");
        assert!(m.text.contains("2 problem(s)"), "{}", m.text);
        assert!(m.text.contains("duration_hours") && m.text.contains("max_errors"));
        assert!(m
            .text
            .contains("last known good policy, /patchpilot/policy version 7"));
        assert_eq!(m.attributes["type"].value, "policy");
        assert_eq!(m.attributes["status"].value, "FAILED");
        assert_eq!(m.attributes["environment"].value, r#"["test","prod"]"#);
    }
}
