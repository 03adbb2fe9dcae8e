//! Transient versus permanent failures, and how a function ends an invocation with one.
//!
//! Every EventBridge target is an *asynchronous* invocation: when the function returns an
//! error, Lambda retries the event (twice with `MaximumRetryAttempts: 2`, about one and
//! then two minutes later) and then sends it to the on-failure destination (AWS Lambda
//! Developer Guide, "Error handling and automatic retries in Lambda" and "Asynchronous
//! invocation": "If the function returns an error, by default Lambda attempts to run it two
//! more times"). Returning an error is therefore right only for failures a later attempt can
//! fix:
//!
//! - **Transient** — throttling, a 5xx answer, a timeout or a lost connection, an instance
//!   EC2 does not show yet (`InstanceNotVisible`), a run another invocation is reporting:
//!   the invocation fails, Lambda retries, and only then is the event dead-lettered.
//! - **Permanent** — a malformed or unsupported event, a conflict, a run that no longer
//!   exists, an IAM denial: the same event fails the same way every time. The invocation
//!   logs it with a clear `errorType`, counts it in the CloudWatch metric
//!   `patchpilot/PermanentFailures` (embedded metric format, below) and *succeeds*: no
//!   retries, no dead letter, no `Errors` alarm. The metric has its own alarm in
//!   template.yaml.
//!
//! The embedded metric format (Amazon CloudWatch User Guide, "Specification: Embedded metric
//! format", and "Using the embedded metric format with Lambda"): one JSON object on one line
//! of standard output, with `_aws.Timestamp` (epoch milliseconds) and
//! `_aws.CloudWatchMetrics[]` (`Namespace`, `Dimensions` as arrays of member names,
//! `Metrics` with `Name` and `Unit`), and the dimension and metric values as top-level
//! members. CloudWatch Logs extracts the metric from the function's log group; no
//! `cloudwatch:PutMetricData` permission is needed.

use std::fmt;
use std::io::Write;

use serde::Serialize;
use serde_json::{json, Value};
use tracing::{error, warn};

use crate::aws::AwsError;

/// Whether a later attempt of the same event can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Let Lambda retry, dead-letter after that.
    Transient,
    /// Log, count, end the invocation without error.
    Permanent,
}

/// The CloudWatch namespace of patchpilot's own metrics.
pub const METRIC_NAMESPACE: &str = "patchpilot";
/// The metric counting permanent failures, by `Function` and `ErrorType`.
pub const PERMANENT_FAILURES_METRIC: &str = "PermanentFailures";

/// An error a function can end an invocation with.
pub trait Classified: std::error::Error {
    /// The Lambda `errorType` (also the metric's `ErrorType` dimension).
    fn error_type(&self) -> &'static str;
    /// Transient or permanent.
    fn retry(&self) -> Retry;
}

/// AWS error codes the SDK itself retries as throttling or transient (aws-runtime
/// `retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS}`), and the codes services
/// answer with HTTP 5xx: when the SDK's attempts are used up, Lambda's retry is the next try.
const TRANSIENT_CODES: [&str; 23] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerErrorException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
];

/// Codes that say the resource named in the request does not exist (any more): the same
/// request fails again. SSM `DoesNotExistException`, `InvalidCommandId`, `InvalidResourceId`;
/// DynamoDB / SNS `ResourceNotFoundException`, SNS `NotFound`.
const GONE_CODES: [&str; 5] = [
    "DoesNotExistException",
    "InvalidCommandId",
    "InvalidResourceId",
    "ResourceNotFoundException",
    "NotFound",
];

/// Codes that say the request itself is wrong: retrying sends the same request.
const INVALID_REQUEST_CODES: [&str; 6] = [
    "ValidationException",
    "ValidationError",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterException",
    "InvalidParameterCombination",
];

impl AwsError {
    /// Transient or permanent. No answer at all (timeout, connection, dispatch failure: the
    /// SDK reports no error code) and every code not known to repeat are transient, so an
    /// unexpected error costs retries rather than a lost event.
    pub fn retry(&self) -> Retry {
        match self {
            AwsError::Denied { .. } => Retry::Permanent,
            AwsError::Missing { .. } => Retry::Transient,
            AwsError::Call { code: None, .. } => Retry::Transient,
            AwsError::Call {
                code: Some(code), ..
            } => {
                if TRANSIENT_CODES.contains(&code.as_str()) {
                    Retry::Transient
                } else if self.is_gone() || INVALID_REQUEST_CODES.contains(&code.as_str()) {
                    Retry::Permanent
                } else {
                    Retry::Transient
                }
            }
        }
    }

    /// AWS said the resource the call named does not exist.
    pub fn is_gone(&self) -> bool {
        self.code().is_some_and(|c| GONE_CODES.contains(&c))
    }
}

/// The classification of the first [`AwsError`] in `err`'s chain of sources; transient when
/// there is none (nothing says a retry cannot help).
pub fn retry_in(err: &(dyn std::error::Error + 'static)) -> Retry {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(aws) = e.downcast_ref::<AwsError>() {
            return aws.retry();
        }
        current = e.source();
    }
    Retry::Transient
}

/// The answer of an invocation that ended with a permanent failure (also logged).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermanentFailure {
    pub error_type: &'static str,
    pub error_message: String,
    /// Always `false`: the event was not retried and not dead-lettered.
    pub retried: bool,
}

/// A transient failure: the Lambda error the function returns (`errorType`, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransientFailure {
    pub error_type: &'static str,
    pub error_message: String,
}

impl fmt::Display for TransientFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

/// End an invocation: a result as its JSON, a permanent failure as a logged, counted
/// success, a transient one as the error Lambda retries.
pub fn settle<T: Serialize, E: Classified>(
    function: &'static str,
    result: Result<T, E>,
) -> Result<Value, TransientFailure> {
    match result {
        Ok(v) => Ok(serde_json::to_value(v).unwrap_or(Value::Null)),
        Err(e) => {
            let error_type = e.error_type();
            let error_message = e.to_string();
            match e.retry() {
                Retry::Transient => {
                    warn!(errorType = error_type, retry = "transient", error = %error_message, "invocation failed; Lambda retries the event, then dead-letters it");
                    Err(TransientFailure {
                        error_type,
                        error_message,
                    })
                }
                Retry::Permanent => {
                    error!(errorType = error_type, retry = "permanent", error = %error_message, "permanent failure: not retried, not dead-lettered");
                    emit(&permanent_failure_metric(
                        function,
                        error_type,
                        chrono::Utc::now().timestamp_millis(),
                    ));
                    Ok(serde_json::to_value(PermanentFailure {
                        error_type,
                        error_message,
                        retried: false,
                    })
                    .unwrap_or(Value::Null))
                }
            }
        }
    }
}

/// The embedded-metric-format record counting one permanent failure of `function`.
pub fn permanent_failure_metric(function: &str, error_type: &str, timestamp_ms: i64) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Function", "ErrorType"], ["Function"]],
                "Metrics": [{"Name": PERMANENT_FAILURES_METRIC, "Unit": "Count"}],
            }],
        },
        "Function": function,
        "ErrorType": error_type,
        PERMANENT_FAILURES_METRIC: 1,
    })
}

/// One line on standard output, outside `tracing`'s JSON envelope: CloudWatch extracts
/// metrics only from a log event that *is* the EMF object.
fn emit(record: &Value) {
    let mut out = std::io::stdout().lock();
    // A lost metric line must not fail the invocation; the error log above still says it.
    let _ = writeln!(out, "{record}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Service;

    fn call(code: Option<&str>) -> AwsError {
        AwsError::from_parts(
            Service::Ssm,
            "GetMaintenanceWindowExecution",
            code.map(str::to_string),
            "x".into(),
        )
    }

    #[test]
    fn throttling_5xx_and_no_answer_are_transient() {
        for code in [
            "ThrottlingException",
            "RequestLimitExceeded",
            "InternalServerError",
            "ServiceUnavailable",
        ] {
            assert_eq!(call(Some(code)).retry(), Retry::Transient, "{code}");
        }
        assert_eq!(
            call(None).retry(),
            Retry::Transient,
            "a timeout has no code"
        );
        assert_eq!(
            call(Some("SomethingNew")).retry(),
            Retry::Transient,
            "an unknown code is retried rather than lost"
        );
    }

    #[test]
    fn a_run_that_no_longer_exists_a_bad_request_and_a_denial_are_permanent() {
        for code in [
            "DoesNotExistException",
            "InvalidCommandId",
            "ValidationException",
            "AccessDeniedException",
        ] {
            assert_eq!(call(Some(code)).retry(), Retry::Permanent, "{code}");
        }
    }

    #[test]
    fn the_metric_record_follows_the_embedded_metric_format() {
        let m = permanent_failure_metric("run-notifier", "RunGone", 1_700_000_000_000);
        let directive = &m["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(directive["Namespace"], "patchpilot");
        assert_eq!(directive["Metrics"][0]["Name"], "PermanentFailures");
        assert_eq!(directive["Metrics"][0]["Unit"], "Count");
        // Every dimension and metric the directive names is a top-level member.
        for set in directive["Dimensions"].as_array().expect("dimension sets") {
            for name in set.as_array().expect("names") {
                let name = name.as_str().expect("name");
                assert!(m[name].is_string(), "{name}");
            }
        }
        assert_eq!(m["PermanentFailures"], 1);
        assert_eq!(m["ErrorType"], "RunGone");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("bad: {0:?}")]
    struct Bad(Retry);

    impl Classified for Bad {
        fn error_type(&self) -> &'static str {
            "Bad"
        }
        fn retry(&self) -> Retry {
            self.0
        }
    }

    #[test]
    fn a_permanent_failure_ends_the_invocation_without_error_and_a_transient_one_with_it() {
        let ok = settle::<(), Bad>("auto-tagger", Err(Bad(Retry::Permanent))).expect("success");
        assert_eq!(ok["errorType"], "Bad");
        assert_eq!(ok["retried"], false);
        let err = settle::<(), Bad>("auto-tagger", Err(Bad(Retry::Transient))).expect_err("error");
        assert_eq!(err.error_type, "Bad");
        assert!(err.error_message.contains("bad"), "{err}");
    }
}
