//! baseline-sync's coverage message: read what was last published (`GetItem` on the stack's
//! idempotency table, item `coverage#<stack>`), publish when the uncovered set differs
//! (`crate::coverage_notice::notice`), then remember it (`PutItem`).
//!
//! Order: **read → publish → remember**. A crash between publish and remember sends the same
//! message again on the next run (the price of never losing one, as for run reports in
//! `aws::idempotency`). baseline-sync runs with `ReservedConcurrentExecutions: 1`, so two
//! runs never race on the item; it has no `expires_at` (DynamoDB TTL leaves it alone).
//!
//! | call | AWS reference |
//! |---|---|
//! | `GetItem` (`ConsistentRead`: the previous run's write is always seen) | DynamoDB: GetItem |
//! | `Publish` | SNS: Publish (`MessageStructure=json`, message attributes) |
//! | `PutItem` | DynamoDB: PutItem; an item is at most 400 KB ("Service, account, and table quotas") |

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

use super::notify::Notifier;
use super::{AwsError, CallLog, Service};
use crate::coverage::CoverageSummary;
use crate::coverage_notice::{notice, Fingerprint};
use crate::names::Owner;

/// The stored host list stays well under DynamoDB's 400 KB item limit; beyond it only the
/// hash (which covers every host) is exact, and "new" marks may be missing in the next message.
const MAX_STORED_BYTES: usize = 300_000;

#[derive(Debug, Error)]
pub enum CoverageNoticeError {
    #[error("coverage message: reading the last published coverage from DynamoDB table {table}: {source}")]
    Read {
        table: String,
        #[source]
        source: AwsError,
    },
    #[error("coverage message: publishing to the report topic {topic}: {source}. Nobody was told about the change; the next run tries again")]
    Publish {
        topic: String,
        #[source]
        source: AwsError,
    },
    #[error("coverage message: published ({message_id}), but remembering it in DynamoDB table {table} failed: {source}. The next run sends it again")]
    Remember {
        table: String,
        message_id: String,
        #[source]
        source: AwsError,
    },
}

/// What happened to the coverage message of a run (part of the sync result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum NoticeOutcome {
    /// The uncovered set changed: one message.
    Published {
        message_id: String,
        subject: String,
        not_covered: usize,
    },
    /// Same set as the last message: nothing sent.
    Unchanged,
    /// A dry run publishes nothing.
    DryRun,
}

/// The report topic and the stack's idempotency table.
pub struct CoverageNotifier {
    notifier: Notifier,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
}

impl CoverageNotifier {
    /// With the SNS and DynamoDB clients the function already has (one per service and
    /// process).
    pub fn from_clients(
        sns: aws_sdk_sns::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        topic_arn: &str,
        table: &str,
        owner: &Owner,
    ) -> Self {
        CoverageNotifier {
            notifier: Notifier::new(sns, topic_arn),
            dynamodb,
            table: table.to_string(),
            key: item_key(owner),
        }
    }

    /// Publish `summary` if its uncovered set differs from the last message's.
    pub async fn publish_if_changed(
        &self,
        summary: &CoverageSummary,
        environments: &[String],
        calls: &CallLog,
    ) -> Result<NoticeOutcome, CoverageNoticeError> {
        let previous = self.last(calls).await?;
        let Some(notice) = notice(summary, previous.as_ref(), environments) else {
            info!(item = %self.key, uncovered = summary.uncovered.len(), "coverage unchanged since the last message: nothing published");
            return Ok(NoticeOutcome::Unchanged);
        };
        let message_id = self
            .notifier
            .publish(&notice.message, calls)
            .await
            .map_err(|source| CoverageNoticeError::Publish {
                topic: self.notifier.topic_arn().to_string(),
                source,
            })?;
        self.remember(&notice.fingerprint, &message_id, Utc::now(), calls)
            .await
            .map_err(|source| CoverageNoticeError::Remember {
                table: self.table.clone(),
                message_id: message_id.clone(),
                source,
            })?;
        info!(message_id = %message_id, not_covered = notice.not_covered, hash = %notice.fingerprint.hash, subject = %notice.message.subject, "coverage message published");
        Ok(NoticeOutcome::Published {
            message_id,
            subject: notice.message.subject,
            not_covered: notice.not_covered,
        })
    }

    async fn last(&self, calls: &CallLog) -> Result<Option<Fingerprint>, CoverageNoticeError> {
        calls.record("GetItem");
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| CoverageNoticeError::Read {
                table: self.table.clone(),
                source: AwsError::from_sdk(Service::DynamoDb, "GetItem", e),
            })?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let hosts: Vec<String> = item
            .get("hosts")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default();
        let hash = item.get("hash").and_then(|v| v.as_s().ok()).cloned();
        Ok(Some(match hash {
            // The stored hash decides (the list may have been cut to fit the item).
            Some(hash) => Fingerprint { hash, hosts },
            None => {
                warn!(item = %self.key, "coverage record without a hash: recomputed from its host list");
                Fingerprint::from_hosts(hosts)
            }
        }))
    }

    async fn remember(
        &self,
        fingerprint: &Fingerprint,
        message_id: &str,
        now: DateTime<Utc>,
        calls: &CallLog,
    ) -> Result<(), AwsError> {
        let mut bytes = 0;
        let hosts: Vec<AttributeValue> = fingerprint
            .hosts
            .iter()
            .take_while(|h| {
                bytes += h.len() + 3;
                bytes <= MAX_STORED_BYTES
            })
            .map(|h| AttributeValue::S(h.clone()))
            .collect();
        if hosts.len() < fingerprint.hosts.len() {
            warn!(
                stored = hosts.len(),
                uncovered = fingerprint.hosts.len(),
                "coverage record keeps only part of the host list (DynamoDB item size)"
            );
        }
        calls.record("PutItem");
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(self.key.clone()))
            .item("hash", AttributeValue::S(fingerprint.hash.clone()))
            .item("hosts", AttributeValue::L(hosts))
            .item("message_id", AttributeValue::S(message_id.to_string()))
            .item("published_at", AttributeValue::S(now.to_rfc3339()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::DynamoDb, "PutItem", e))?;
        Ok(())
    }
}

/// The item that remembers a stack's last coverage message (run ids, the table's other keys,
/// never contain `#`).
pub fn item_key(owner: &Owner) -> String {
    format!("coverage#{}", owner.stack())
}
