//! Racing tag changes of one instance converge on the newest one. EventBridge delivers
//! `Tag Change on Resource` events at least once and in no guaranteed order, Lambda runs two
//! of them concurrently, and EC2's reads are eventually consistent: deciding from
//! `DescribeInstances` alone can leave an instance in the group of an older tag set (a prod
//! host in the test group) until the next sweep.
//!
//! The order is kept where reads are strongly consistent: one item per instance
//! (`tagorder#<stack>#<instance-id>`) in the stack's idempotency table, holding the newest
//! event seen (EventBridge `time`, `id`) and its `detail.tags`.
//! 1. **Claim** — conditional `PutItem` (`attribute_not_exists(id) OR event_time <= :t`):
//!    an event older than the recorded one is superseded and writes nothing.
//! 2. **Decide and write** from the event's own tags ([`crate::fleet::tag_instance_known`]).
//! 3. **Check** — after a write, `GetItem` with `ConsistentRead`: when a newer event was
//!    claimed meanwhile, its handler may have written *before* us, so we apply the newest
//!    event's tags once more (knowing our own write). Whichever write lands last, the handler
//!    that made it checks afterwards and finds the newest tags: the instance ends in their group.
//!
//! Events of the same second (EventBridge `time` has second precision) both pass the claim;
//! the check then makes both converge on the one claimed last. Records expire after a day
//! (TTL `expires_at`; Lambda retries an async event for at most 6 hours).
//!
//! | call | AWS reference |
//! |---|---|
//! | `PutItem` with `ConditionExpression`, `ReturnValuesOnConditionCheckFailure=ALL_OLD` | DynamoDB: PutItem; "Condition expressions" |
//! | `GetItem` with `ConsistentRead` | DynamoDB: GetItem; "Read consistency" |

use std::collections::BTreeMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use tracing::info;

use super::{AwsError, CallLog, Service};
use crate::names::Owner;

/// A record lives a day: longer than any redelivery of the event.
const RECORD_TTL_SECS: i64 = 24 * 3600;

/// One tag-change event of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEvent {
    /// EventBridge `id`.
    pub event_id: String,
    /// EventBridge `time`.
    pub time: DateTime<Utc>,
    /// `detail.tags`.
    pub tags: BTreeMap<String, String>,
}

/// Result of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// This event is the newest seen: decide from it.
    Mine,
    /// A newer event of the instance was already handled (at `newer`).
    Superseded { newer: DateTime<Utc> },
}

pub struct TagOrder {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    stack: String,
}

impl TagOrder {
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, table: &str, owner: &Owner) -> TagOrder {
        TagOrder {
            dynamodb,
            table: table.to_string(),
            stack: owner.stack().to_string(),
        }
    }

    fn key(&self, instance_id: &str) -> String {
        format!("tagorder#{}#{instance_id}", self.stack)
    }

    /// Record `event` as the newest of `instance_id` unless a newer one is recorded.
    pub async fn claim(
        &self,
        instance_id: &str,
        event: &TagEvent,
        calls: &CallLog,
    ) -> Result<Turn, AwsError> {
        let tags = serde_json::to_string(&event.tags).unwrap_or_else(|_| "{}".to_string());
        calls.record("PutItem");
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(self.key(instance_id)))
            .item("event_id", AttributeValue::S(event.event_id.clone()))
            .item(
                "event_time",
                AttributeValue::N(event.time.timestamp().to_string()),
            )
            .item("tags", AttributeValue::S(tags))
            .item(
                "expires_at",
                AttributeValue::N((Utc::now().timestamp() + RECORD_TTL_SECS).to_string()),
            )
            .condition_expression("attribute_not_exists(id) OR event_time <= :t")
            .expression_attribute_values(
                ":t",
                AttributeValue::N(event.time.timestamp().to_string()),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Turn::Mine),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let newer = failed
                        .item()
                        .and_then(|i| i.get("event_time"))
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse::<i64>().ok())
                        .and_then(|t| DateTime::from_timestamp(t, 0))
                        .unwrap_or(event.time);
                    info!(instance_id = %instance_id, event_time = %event.time, newer = %newer, "tag change superseded by a newer one");
                    Ok(Turn::Superseded { newer })
                }
                other => Err(AwsError::from_sdk(Service::DynamoDb, "PutItem", other)),
            },
        }
    }

    /// The newest recorded event of `instance_id` (strongly consistent read).
    pub async fn newest(
        &self,
        instance_id: &str,
        calls: &CallLog,
    ) -> Result<Option<TagEvent>, AwsError> {
        calls.record("GetItem");
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.key(instance_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::DynamoDb, "GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let time = item
            .get("event_time")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|t| DateTime::from_timestamp(t, 0));
        let (Some(event_id), Some(time), Some(tags)) = (s("event_id"), time, s("tags")) else {
            return Err(AwsError::missing("GetItem", "event_id / event_time / tags"));
        };
        let tags = serde_json::from_str(&tags)
            .map_err(|_| AwsError::missing("GetItem", "tags (a JSON object)"))?;
        Ok(Some(TagEvent {
            event_id,
            time,
            tags,
        }))
    }
}
