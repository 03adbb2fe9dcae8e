//! SNS Publish of a rendered report.

use aws_sdk_sns::types::MessageAttributeValue;
use tracing::info;

use super::{AwsError, CallLog, Service};
use crate::report::Message;

/// The report topic (`TOPIC_ARN`).
pub struct Notifier {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
}

impl Notifier {
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Notifier {
        Notifier {
            sns,
            topic_arn: topic_arn.into(),
        }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// One `Publish` with `MessageStructure=json`: email subscribers get the `email` member
    /// (plain text), every other protocol the `default` member (the JSON report). Returns the
    /// SNS message id.
    pub async fn publish(&self, message: &Message, calls: &CallLog) -> Result<String, AwsError> {
        let mut request = self
            .sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&message.subject)
            .message_structure("json")
            .message(&message.message);
        for (name, attribute) in &message.attributes {
            let value = MessageAttributeValue::builder()
                .data_type(attribute.data_type)
                .string_value(&attribute.value)
                .build()
                .map_err(|_| AwsError::missing("Publish", "MessageAttributeValue.DataType"))?;
            request = request.message_attributes(name, value);
        }
        calls.record("Publish");
        let out = request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::Sns, "Publish", e))?;
        let id = out
            .message_id()
            .ok_or_else(|| AwsError::missing("Publish", "MessageId"))?
            .to_string();
        info!(message_id = %id, topic = %self.topic_arn, bytes = message.size(), subject = %message.subject, "report published");
        Ok(id)
    }
}
