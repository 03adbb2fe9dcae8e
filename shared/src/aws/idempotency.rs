//! One report per run, although EventBridge delivers at least once and Lambda retries
//! failed async invocations: an idempotency record per run id (window execution id or
//! command id) in the DynamoDB table `IDEMPOTENCY_TABLE` (pk `id` S, TTL `expires_at` N),
//! the way Powertools for AWS Lambda's idempotency utility does it.
//!
//! Order, and why: **claim (IN_PROGRESS, short expiry) → publish → mark COMPLETED**.
//! - Claim is a conditional `PutItem` (`attribute_not_exists(id) OR expires_at < :now`):
//!   exactly one of two concurrent duplicates gets it. The loser reads the existing record
//!   from the same call (`ReturnValuesOnConditionCheckFailure=ALL_OLD`, no extra `GetItem`):
//!   COMPLETED → nothing to do; IN_PROGRESS → fail, so Lambda retries it later.
//! - IN_PROGRESS expires with the invocation's deadline: if the function crashes between
//!   claim and publish (or between publish and completion), a later retry takes the record
//!   over and publishes. A crash *after* Publish but before completion can therefore send a
//!   second mail — the price of never losing one (recording COMPLETED before publishing
//!   would lose the mail forever on a crash in between).
//! - Publish failed → the claim is released (`DeleteItem`, conditional on still being ours)
//!   so the retry does not wait for the expiry.
//! - COMPLETED is kept for [`COMPLETED_TTL_SECS`]; DynamoDB's TTL deletes lazily, hence the
//!   explicit `expires_at < :now` in the condition.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::{AwsError, CallLog, Service};

/// A run's COMPLETED record outlives every redelivery: Lambda keeps retrying an async event
/// for at most 6 hours, EventBridge for `MaximumEventAgeInSeconds` (1 hour in template.yaml).
pub const COMPLETED_TTL_SECS: i64 = 7 * 24 * 3600;

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

/// Result of trying to claim a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This invocation owns the run: report it, then [`Idempotency::complete`].
    Acquired,
    /// Already reported (by a previous delivery of the same event).
    Completed,
    /// Another invocation is reporting it right now (until `until`).
    InProgress { until: DateTime<Utc> },
}

pub struct Idempotency {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
}

impl Idempotency {
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Idempotency {
        Idempotency {
            dynamodb,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Claim `id` until `until` (the invocation's deadline).
    pub async fn claim(
        &self,
        id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        calls: &CallLog,
    ) -> Result<Claim, AwsError> {
        calls.record("PutItem");
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(id.to_string()))
            .item("status", AttributeValue::S(IN_PROGRESS.to_string()))
            .item(
                "expires_at",
                AttributeValue::N(until.timestamp().to_string()),
            )
            .condition_expression("attribute_not_exists(id) OR expires_at < :now")
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => {
                info!(run_id = %id, until = %until, "run claimed");
                Ok(Claim::Acquired)
            }
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    Ok(existing(failed.item(), now))
                }
                other => Err(AwsError::from_sdk(Service::DynamoDb, "PutItem", other)),
            },
        }
    }

    /// The report went out: keep the run as COMPLETED for [`COMPLETED_TTL_SECS`].
    pub async fn complete(
        &self,
        id: &str,
        now: DateTime<Utc>,
        message_id: Option<&str>,
        calls: &CallLog,
    ) -> Result<(), AwsError> {
        calls.record("PutItem");
        let mut request = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(id.to_string()))
            .item("status", AttributeValue::S(COMPLETED.to_string()))
            .item(
                "expires_at",
                AttributeValue::N((now.timestamp() + COMPLETED_TTL_SECS).to_string()),
            )
            .item("completed_at", AttributeValue::S(now.to_rfc3339()));
        if let Some(m) = message_id {
            request = request.item("message_id", AttributeValue::S(m.to_string()));
        }
        request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::DynamoDb, "PutItem", e))?;
        Ok(())
    }

    /// Give the claim back after a failed publish, so a retry can report at once. Only an
    /// IN_PROGRESS record is removed (never a COMPLETED one written meanwhile).
    pub async fn release(&self, id: &str, calls: &CallLog) -> Result<(), AwsError> {
        calls.record("DeleteItem");
        let result = self
            .dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .condition_expression("#s = :in_progress")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_conditional_check_failed_exception() {
                    warn!(run_id = %id, "claim not released: the record is no longer in progress");
                    Ok(())
                } else {
                    Err(AwsError::from_sdk(Service::DynamoDb, "DeleteItem", e))
                }
            }
        }
    }
}

/// What the existing record (returned with the failed condition) says.
fn existing(item: Option<&HashMap<String, AttributeValue>>, now: DateTime<Utc>) -> Claim {
    let status = item
        .and_then(|i| i.get("status"))
        .and_then(|v| v.as_s().ok())
        .map(String::as_str);
    let until = item
        .and_then(|i| i.get("expires_at"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<i64>().ok())
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or(now);
    match status {
        Some(IN_PROGRESS) => Claim::InProgress { until },
        // COMPLETED, or a record we do not understand: never send a second mail for it.
        _ => Claim::Completed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: &str, expires_at: i64) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("id".to_string(), AttributeValue::S("run".into())),
            ("status".to_string(), AttributeValue::S(status.into())),
            (
                "expires_at".to_string(),
                AttributeValue::N(expires_at.to_string()),
            ),
        ])
    }

    #[test]
    fn a_completed_record_means_nothing_to_do() {
        let now = Utc::now();
        assert_eq!(
            existing(Some(&item(COMPLETED, now.timestamp() + 60)), now),
            Claim::Completed
        );
    }

    #[test]
    fn an_in_progress_record_says_until_when() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        assert_eq!(
            existing(Some(&item(IN_PROGRESS, 1_700_000_090)), now),
            Claim::InProgress {
                until: DateTime::from_timestamp(1_700_000_090, 0).expect("valid")
            }
        );
    }

    #[test]
    fn an_unreadable_record_never_causes_a_second_mail() {
        assert_eq!(existing(None, Utc::now()), Claim::Completed);
    }
}
