//! The AWS edge: the only code that touches SDK types. Each submodule is a small adapter
//! over one API family; the domain (policy, plan, classify, report) never sees the SDK.

pub mod coverage;
pub mod coverage_notice;
pub mod ec2;
pub mod host_management;
pub mod idempotency;
pub mod last_good;
pub mod managed;
pub mod notify;
pub mod patching;
pub mod policy_source;
pub mod promotion;
pub mod runs;
pub mod tag_order;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ssm::config::{
    ConfigBag, HttpClient, RuntimeComponents, RuntimeComponentsBuilder, SharedHttpClient,
};
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use serde::Serialize;
use thiserror::Error;

/// One attempt of one AWS call may take this long (a hung connection is cut, then retried).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// One AWS call, all its attempts and back-offs included, ends by then: within the shortest
/// function timeout (auto-tagger's 60 s in template.yaml; run-notifier 120 s, baseline-sync 300 s), so a call that cannot succeed
/// fails with its error while the function can still report it, instead of Lambda killing
/// the invocation at its timeout with nothing said.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(25);

/// Load the SDK configuration once per cold start: region, credentials and
/// `AWS_ENDPOINT_URL` (the local emulator) from the environment, with [`retry_config`] and
/// each call bounded by [`ATTEMPT_TIMEOUT`] and [`OPERATION_TIMEOUT`].
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .load()
        .await
}

/// What a function builds from the SDK configuration (its SDK clients and adapters), made by
/// its first event instead of at init.
///
/// A cold start's init then holds only what the function needs before it can take an event
/// (logging, settings): no SDK configuration (the profile files of the standard chain), no
/// client construction (runtime plugins, endpoint resolver, ~0.2 ms per client measured), no
/// TLS set-up. The first event pays for them once, as the init did before: locally the time to
/// the first response is the same (benches/RESULTS.md §2), and a warm invocation finds them
/// built. On Lambda that work now runs at the invocation's share of a vCPU instead of the
/// init's (benches/README.md, "What the init holds"). The credentials are the standard
/// chain's, resolved at the first request as before.
pub struct OnFirstEvent<T, E = std::convert::Infallible> {
    built: tokio::sync::OnceCell<T>,
    build: Build<T, E>,
}

/// What [`OnFirstEvent`] runs once.
type Build<T, E> = Box<dyn Fn(&SdkConfig) -> Result<T, E> + Send + Sync>;

impl<T, E> OnFirstEvent<T, E> {
    /// `build` runs once, at the first [`get`](Self::get), with [`load_config`]'s configuration.
    pub fn new(build: impl Fn(&SdkConfig) -> Result<T, E> + Send + Sync + 'static) -> Self {
        OnFirstEvent {
            built: tokio::sync::OnceCell::new(),
            build: Box::new(build),
        }
    }

    /// What `build` made, building it on the first call. An error is returned and not kept:
    /// the next call tries again.
    pub async fn get(&self) -> Result<&T, E> {
        self.built
            .get_or_try_init(|| async { (self.build)(&load_config().await) })
            .await
    }

    /// Whether the first event has come (tests: nothing is built before it).
    pub fn is_built(&self) -> bool {
        self.built.initialized()
    }
}

/// The functions' SDK clients: [`load_config`]'s configuration, with the retry quota lifted
/// ([`retry_partition`]). One function per service, each as `Client::new` would build it.
macro_rules! sdk_clients {
    ($($name:ident => $krate:ident),+ $(,)?) => {$(
        #[doc = concat!("A `", stringify!($krate), "` client of `config`, with patchpilot's retry partition.")]
        pub fn $name(config: &SdkConfig) -> $krate::Client {
            $krate::Client::from_conf(
                $krate::config::Builder::from(config)
                    .retry_partition(retry_partition())
                    .build(),
            )
        }
    )+};
}

sdk_clients! {
    ssm_client => aws_sdk_ssm,
    ec2_client => aws_sdk_ec2,
    sns_client => aws_sdk_sns,
    dynamodb_client => aws_sdk_dynamodb,
    s3_client => aws_sdk_s3,
}

/// The retry partition of every client: the SDK's, without its retry quota.
///
/// The standard retry mode keeps a quota per process and service (500 tokens; a throttled
/// retry costs 5, another retry 14; only successes give tokens back: aws-smithy-runtime
/// 1.16 `TokenBucket`). In a launch burst, 50 taggers share EC2's 10-per-second `CreateTags`
/// bucket and most attempts are throttled: a warm tagger spent its quota within ~100 throttled
/// retries, and from then on each throttled call failed at once, with none of its 10 attempts
/// (benches/RESULTS.md §6: 14,168 of 20,000 events dead-lettered). The quota guards against
/// retry storms; here every call is already bounded (10 attempts, [`OPERATION_TIMEOUT`]) and so
/// is the number of callers (the functions' reserved concurrency), so the quota goes.
pub fn retry_partition() -> RetryPartition {
    RetryPartition::custom("patchpilot")
        .token_bucket(TokenBucket::unlimited())
        .build()
}

/// Every call's retries, chosen rather than inherited: the SDK's standard mode (full-jitter
/// exponential back-off; throttling, 5xx, timeouts and lost connections are retried) with
/// 10 attempts from 500 ms, each wait at most 4 s: up to 27.5 s of back-off, which
/// [`OPERATION_TIMEOUT`] cuts at 25 s. Two cases need the long tail:
/// - a launch burst puts many taggers on one EC2 request bucket (`CreateTags`: 100 tokens,
///   refilled at 10 per second per account and Region, EC2 Developer Guide, "Request
///   throttling for the Amazon EC2 API", whose advice is "retries and exponential backoff"):
///   a call must wait for its token rather than give up after the ~3 s that 5 attempts from
///   200 ms back off (benches/RESULTS.md §6);
/// - a sync makes ~150 calls: at the fault campaign's 45 % failure rate per request, 5
///   attempts leave one call failing in almost every sync (0.45^5 per call), 10 in ~5 %.
///
/// A retry that then succeeds gives its retry-quota tokens back, so a long sync does not
/// exhaust the quota (aws-smithy-runtime `StandardRetryStrategy`).
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(10)
        .with_initial_backoff(Duration::from_millis(500))
        .with_max_backoff(Duration::from_secs(4))
}

fn timeout_config() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The SDK's default HTTPS client (hyper 1 + rustls, the platform's native root
/// certificates, certificate verification, `HTTP(S)_PROXY`/`NO_PROXY` from the environment),
/// built exactly as `default-https-client` builds it but with rustls on ring instead of
/// aws-lc-rs: the workspace turns that feature off because aws-lc is a large C library.
/// Plain `http://` endpoints (the emulator) go through the same connector.
///
/// Its TLS set-up (root store, rustls configuration) is made by the first request, not at
/// init: see [`DeferredTls`]. The root store is the platform's (`rustls-native-certs`), so
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` select the bundle, a private CA included
/// (benches/README.md, "Certificates").
pub fn http_client() -> SharedHttpClient {
    deferred_tls(
        Builder::new().build_with_connector_fn(|settings, runtime_components| {
            let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ));
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = runtime_components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(ProxyConfig::from_env()));
            connector.build()
        }),
    )
}

/// Why the operator's own root bundle cannot be used, if it cannot.
///
/// With `SSL_CERT_FILE` or `SSL_CERT_DIR` set, the trusted roots are only those
/// (`rustls-native-certs`). When they hold no certificate (a missing or unreadable file, an
/// empty directory), aws-smithy-http-client 1.5.2 panics while building its connector ("no
/// valid root certificates parsed"), which aborts the function: Lambda would restart it and
/// the next event would abort again. Checked first (read only when the operator set one of
/// the two, once per process), so each call fails instead with an error that names the
/// setting.
fn operator_roots_problem() -> Option<String> {
    let file = std::env::var_os("SSL_CERT_FILE");
    let dir = std::env::var_os("SSL_CERT_DIR");
    if file.is_none() && dir.is_none() {
        return None;
    }
    let loaded = rustls_native_certs::load_native_certs();
    if !loaded.certs.is_empty() {
        return None;
    }
    let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    Some(format!(
        "no root certificate could be loaded from SSL_CERT_FILE={} / SSL_CERT_DIR={}{}: \
         no connection can be verified, so none is made",
        file.map(|f| format!("{f:?}"))
            .unwrap_or_else(|| "(unset)".into()),
        dir.map(|d| format!("{d:?}"))
            .unwrap_or_else(|| "(unset)".into()),
        if errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", errors.join("; "))
        }
    ))
}

/// The connector when no root certificate can be loaded: every request fails with why.
#[derive(Debug)]
struct NoRoots(String);

impl HttpConnector for NoRoots {
    fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(ConnectorError::user(self.0.clone().into())))
    }
}

/// `client`, minus its set-up at SDK-client construction ([`DeferredTls`]).
fn deferred_tls(client: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(DeferredTls {
        client,
        roots_problem: OnceLock::new(),
    })
}

/// The SDK's hyper client with its TLS set-up taken out of the cold start.
///
/// aws-smithy-http-client 1.5.2's `HyperClient::validate_base_client_config` builds a whole
/// connector — the native root certificates read from `/etc/ssl/certs` and parsed, a rustls
/// configuration — each time an SDK *client* is constructed (three or four per function), and
/// throws it away "so that native certs load at client initialization time"; the first request
/// then builds the connector it really uses, parsing the roots again. Not forwarding that hook
/// leaves one build, at the first request, shared by every client of the process (they share
/// this HTTP client and its connector cache). Certificate verification is unchanged: the
/// connector is the SDK's own. Measured in benches/RESULTS.md (init and init + first response).
#[derive(Debug)]
struct DeferredTls {
    client: SharedHttpClient,
    /// [`operator_roots_problem`], found by the first request and kept (the environment of a
    /// process does not change).
    roots_problem: OnceLock<Option<String>>,
}

impl HttpClient for DeferredTls {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        if let Some(problem) = self.roots_problem.get_or_init(operator_roots_problem) {
            return SharedHttpConnector::new(NoRoots(problem.clone()));
        }
        self.client.http_connector(settings, components)
    }

    /// Deliberately not forwarded: the wrapped client's check only pre-builds a connector.
    fn validate_base_client_config(
        &self,
        _: &RuntimeComponentsBuilder,
        _: &ConfigBag,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.client.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.client.connector_metadata()
    }
}

/// The AWS service an adapter calls: the prefix of its IAM actions (`ssm:CreatePatchBaseline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ssm,
    Ec2,
    Sns,
    DynamoDb,
    S3,
}

impl Service {
    /// The IAM action prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Service::Ssm => "ssm",
            Service::Ec2 => "ec2",
            Service::Sns => "sns",
            Service::DynamoDb => "dynamodb",
            Service::S3 => "s3",
        }
    }
}

/// Error codes AWS answers when IAM (or a KMS key policy) denies a call: SSM, DynamoDB and
/// most JSON services say `AccessDeniedException`, S3-style services `AccessDenied`, SNS
/// `AuthorizationError`, EC2 `UnauthorizedOperation` (`Client.` prefixed in some SDK
/// versions), SNS/SQS with a KMS key `KMSAccessDenied(Exception)`.
pub const DENIAL_CODES: [&str; 9] = [
    "AccessDeniedException",
    "AccessDenied",
    "AuthorizationError",
    "AuthorizationErrorException",
    "UnauthorizedOperation",
    "Client.UnauthorizedOperation",
    "KMSAccessDeniedException",
    "KMSAccessDenied",
    "KMS.AccessDeniedException",
];

/// How many resource ids a denial names before "and N more".
const DENIED_IDS_SHOWN: usize = 5;

/// A failed AWS call, with the operation, the AWS error code and message.
#[derive(Debug, Error)]
pub enum AwsError {
    #[error("AWS {operation} failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Call {
        operation: &'static str,
        code: Option<String>,
        message: String,
    },
    /// IAM (or a KMS key policy) denied the call: the deployment, not the data, must change.
    #[error("{}", denied_text(action, resource.as_deref(), code, message))]
    Denied {
        /// The IAM action with its service prefix, e.g. `ec2:CreateTags`.
        action: String,
        /// The resource AWS named in its message, else the ids the adapter sent.
        resource: Option<String>,
        code: String,
        message: String,
    },
    /// AWS answered, but without a field the API reference says is always there.
    #[error("AWS {operation} returned no {field}")]
    Missing {
        operation: &'static str,
        field: &'static str,
    },
}

fn denied_text(action: &str, resource: Option<&str>, code: &str, message: &str) -> String {
    let on = resource.map(|r| format!(" on {r}")).unwrap_or_default();
    let who = if code.starts_with("KMS") {
        "the KMS key policy or the function's IAM role (template.yaml) does not allow it"
    } else {
        "the function's IAM role (template.yaml) does not allow it"
    };
    format!("permission denied: {action}{on} — {who}: {message}")
}

/// `X` in an IAM denial message `… is not authorized to perform: <action> on resource: X
/// because …` (the form IAM uses for SSM, SNS, DynamoDB, KMS).
fn resource_in_message(message: &str) -> Option<String> {
    let (_, rest) = message.split_once(" on resource: ")?;
    let end = [" because", " with an explicit", ". ", "\n"]
        .iter()
        .filter_map(|stop| rest.find(stop))
        .min()
        .unwrap_or(rest.len());
    let resource = rest[..end].trim().trim_end_matches('.');
    (!resource.is_empty()).then(|| resource.to_string())
}

/// The action a denial message names (`… not authorized to perform: kms:Decrypt on …`):
/// it may be another service's than the call's (GetParameter needs kms:Decrypt too).
fn action_in_message(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("to perform: ")?;
    let action = rest.split_whitespace().next()?.trim_end_matches(['.', ',']);
    action.contains(':').then(|| action.to_string())
}

impl AwsError {
    /// Convert any SDK error of `service`'s `operation`, keeping the AWS error code (e.g.
    /// `DoesNotExistException`); a denial becomes [`AwsError::Denied`] naming the IAM action.
    pub fn from_sdk<E>(service: Service, operation: &'static str, err: E) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.code().map(str::to_string);
        let message = match err.message() {
            Some(m) => m.to_string(),
            None => DisplayErrorContext(&err).to_string(),
        };
        AwsError::from_parts(service, operation, code, message)
    }

    /// [`AwsError::from_sdk`] from the code and message alone.
    pub fn from_parts(
        service: Service,
        operation: &'static str,
        code: Option<String>,
        message: String,
    ) -> AwsError {
        match code {
            Some(code) if DENIAL_CODES.contains(&code.as_str()) => AwsError::Denied {
                action: action_in_message(&message)
                    .unwrap_or_else(|| format!("{}:{operation}", service.prefix())),
                resource: resource_in_message(&message),
                code,
                message,
            },
            code => AwsError::Call {
                operation,
                code,
                message,
            },
        }
    }

    /// Name the resources the call was about when AWS's message does not (EC2 encodes its
    /// denial messages): `i-1, i-2 and 3 more`. Other errors are returned unchanged.
    pub fn on<S: AsRef<str>>(self, ids: &[S]) -> AwsError {
        match self {
            AwsError::Denied {
                action,
                resource: None,
                code,
                message,
            } if !ids.is_empty() => {
                let mut text = ids
                    .iter()
                    .take(DENIED_IDS_SHOWN)
                    .map(AsRef::as_ref)
                    .collect::<Vec<_>>()
                    .join(", ");
                if ids.len() > DENIED_IDS_SHOWN {
                    text.push_str(&format!(" and {} more", ids.len() - DENIED_IDS_SHOWN));
                }
                AwsError::Denied {
                    action,
                    resource: Some(text),
                    code,
                    message,
                }
            }
            other => other,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Call { code, .. } => code.as_deref(),
            AwsError::Denied { code, .. } => Some(code),
            AwsError::Missing { .. } => None,
        }
    }

    /// IAM or a key policy denied the call.
    pub fn is_access_denied(&self) -> bool {
        matches!(self, AwsError::Denied { .. })
    }

    pub fn missing(operation: &'static str, field: &'static str) -> AwsError {
        AwsError::Missing { operation, field }
    }
}

/// The first [`AwsError`] in `err`'s chain of sources that is a denial: the functions report
/// it with the Lambda `errorType` `AccessDenied`.
pub fn denial_in<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e AwsError> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(aws) = e.downcast_ref::<AwsError>() {
            if aws.is_access_denied() {
                return Some(aws);
            }
        }
        current = e.source();
    }
    None
}

/// The Lambda `errorType` of a denial.
pub const ACCESS_DENIED_ERROR_TYPE: &str = "AccessDenied";

/// AWS calls made during one invocation, by operation. Reads (`Describe*`, `Get*`,
/// `List*`) and writes (everything else) are told apart by the operation name, which is how
/// IAM and CloudTrail classify them too.
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Mutex<BTreeMap<&'static str, u32>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallSummary {
    pub reads: u32,
    pub writes: u32,
    pub by_operation: BTreeMap<String, u32>,
}

impl CallLog {
    pub fn new() -> CallLog {
        CallLog::default()
    }

    /// Record one call of `operation` (e.g. `"CreatePatchBaseline"`).
    pub fn record(&self, operation: &'static str) {
        // A poisoned lock only means another thread panicked mid-increment; the counts are
        // still usable for reporting.
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        *calls.entry(operation).or_insert(0) += 1;
    }

    pub fn summary(&self) -> CallSummary {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = CallSummary::default();
        for (op, n) in calls.iter() {
            if is_read(op) {
                s.reads += n;
            } else {
                s.writes += n;
            }
            s.by_operation.insert((*op).to_string(), *n);
        }
        s
    }
}

pub fn is_read(operation: &str) -> bool {
    ["Describe", "Get", "List"]
        .iter()
        .any(|p| operation.starts_with(p))
}

impl fmt::Display for CallSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} reads, {} writes", self.reads, self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_config::Region;

    /// Counts the SDK's requests to pre-build a connector; connects nowhere.
    #[derive(Debug, Default)]
    struct CountingClient {
        prebuilds: Arc<AtomicUsize>,
    }

    #[derive(Debug)]
    struct Nowhere;

    impl HttpConnector for Nowhere {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            HttpConnectorFuture::ready(Err(ConnectorError::other(
                "no network in tests".into(),
                None,
            )))
        }
    }

    impl HttpClient for CountingClient {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(Nowhere)
        }

        fn validate_base_client_config(
            &self,
            _: &RuntimeComponentsBuilder,
            _: &ConfigBag,
        ) -> Result<(), BoxError> {
            self.prebuilds.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn config_with(client: SharedHttpClient) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .retry_config(RetryConfig::disabled())
            .http_client(client)
            .build()
    }

    #[tokio::test]
    async fn on_first_event_builds_nothing_before_the_first_event_then_once() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&builds);
        let lazy = OnFirstEvent::new(move |config: &SdkConfig| {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            // The first build fails (a setting that the environment lacks), the next succeed.
            if n == 1 {
                Err("first build fails")
            } else {
                Ok((n, config.retry_config().map(|r| r.max_attempts())))
            }
        });
        assert_eq!(builds.load(Ordering::SeqCst), 0);
        assert!(!lazy.is_built());
        assert_eq!(lazy.get().await.err(), Some("first build fails"));
        assert!(!lazy.is_built(), "a failed build is not kept");
        // Built with load_config's settings, then kept: warm events build nothing.
        assert_eq!(lazy.get().await.ok(), Some(&(2, Some(10))));
        assert_eq!(lazy.get().await.ok(), Some(&(2, Some(10))));
        assert!(lazy.is_built());
        assert_eq!(builds.load(Ordering::SeqCst), 2);
    }

    /// Answers every request with SSM's throttling error, and counts them.
    #[derive(Debug, Default)]
    struct AlwaysThrottled {
        requests: Arc<AtomicUsize>,
    }

    impl HttpConnector for AlwaysThrottled {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
            let mut response = aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).expect("a status"),
                aws_smithy_types::body::SdkBody::from(body),
            );
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.1");
            HttpConnectorFuture::ready(Ok(response))
        }
    }

    impl HttpClient for AlwaysThrottled {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(AlwaysThrottled {
                requests: Arc::clone(&self.requests),
            })
        }
    }

    /// Throttled calls keep all their attempts however many came before: without the custom
    /// partition, the SDK's retry quota (500 tokens, 5 per throttled retry) runs out after ~50
    /// such calls and later ones are made once, without a retry.
    #[tokio::test]
    async fn a_long_run_of_throttled_calls_keeps_every_retry() {
        let requests = Arc::new(AtomicUsize::new(0));
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_ssm::config::SharedCredentialsProvider::new(
                aws_sdk_ssm::config::Credentials::new("AKID", "secret", None, None, "test"),
            ))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1))
                    .with_max_backoff(Duration::from_millis(1)),
            )
            .http_client(SharedHttpClient::new(AlwaysThrottled {
                requests: Arc::clone(&requests),
            }))
            .build();
        const CALLS: usize = 120;
        let count = |client: aws_sdk_ssm::Client| {
            let requests = Arc::clone(&requests);
            async move {
                requests.store(0, Ordering::SeqCst);
                for _ in 0..CALLS {
                    let e = client
                        .get_parameter()
                        .name("/patchpilot/policy")
                        .send()
                        .await
                        .expect_err("always throttled");
                    assert_eq!(e.code(), Some("ThrottlingException"));
                }
                requests.load(Ordering::SeqCst)
            }
        };
        assert_eq!(count(ssm_client(&config)).await, CALLS * 3);
        // The SDK's default partition, for contrast: the quota cuts the retries short.
        assert!(count(aws_sdk_ssm::Client::new(&config)).await < CALLS * 3);
    }

    #[test]
    fn constructing_sdk_clients_builds_no_connector_at_init() {
        let prebuilds = Arc::new(AtomicUsize::new(0));
        let counting = SharedHttpClient::new(CountingClient {
            prebuilds: Arc::clone(&prebuilds),
        });
        // What the SDK does with a client as it is: one connector build per SDK client.
        let eager = config_with(counting.clone());
        let _ssm = aws_sdk_ssm::Client::new(&eager);
        let _ec2 = aws_sdk_ec2::Client::new(&eager);
        assert_eq!(prebuilds.load(Ordering::SeqCst), 2);
        // Deferred: none; the first request builds the connector it uses.
        let deferred = config_with(deferred_tls(counting));
        let _ssm = aws_sdk_ssm::Client::new(&deferred);
        let _ec2 = aws_sdk_ec2::Client::new(&deferred);
        let _sns = aws_sdk_sns::Client::new(&deferred);
        assert_eq!(prebuilds.load(Ordering::SeqCst), 2);
    }

    /// Calls wait long enough for a shared 10-per-second bucket (the longest back-off sum
    /// reaches the operation timeout), while one call still ends within it.
    #[test]
    fn calls_wait_for_a_token_up_to_the_operation_timeout_and_end_within_it() {
        let r = retry_config();
        assert_eq!(r.mode(), aws_config::retry::RetryMode::Standard);
        assert_eq!(r.max_attempts(), 10);
        let mut longest = Duration::ZERO;
        let mut wait = r.initial_backoff();
        for _ in 1..r.max_attempts() {
            longest += wait.min(r.max_backoff());
            wait *= 2;
        }
        assert!(longest >= OPERATION_TIMEOUT, "{longest:?}");
        assert!(r.max_backoff() < ATTEMPT_TIMEOUT);
        let t = timeout_config();
        assert_eq!(t.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(OPERATION_TIMEOUT));
        assert!(ATTEMPT_TIMEOUT < OPERATION_TIMEOUT);
    }

    #[test]
    fn an_iam_denial_names_the_action_the_resource_and_the_role() {
        let e = AwsError::from_parts(
            Service::Ssm,
            "CreatePatchBaseline",
            Some("AccessDeniedException".to_string()),
            "User: arn:aws:sts::123456789012:assumed-role/patchpilot-sync/fn is not authorized to perform: ssm:CreatePatchBaseline on resource: arn:aws:ssm:eu-west-1:123456789012:patchbaseline/* because no identity-based policy allows the ssm:CreatePatchBaseline action".to_string(),
        );
        assert!(e.is_access_denied());
        assert_eq!(e.code(), Some("AccessDeniedException"));
        let text = e.to_string();
        assert!(
            text.starts_with("permission denied: ssm:CreatePatchBaseline on arn:aws:ssm:eu-west-1:123456789012:patchbaseline/* — the function's IAM role (template.yaml) does not allow it: User: "),
            "{text}"
        );
    }

    #[test]
    fn an_ec2_denial_names_the_action_and_the_instances_sent() {
        let ids: Vec<String> = (1..=7).map(|n| format!("i-{n:017}")).collect();
        let e = AwsError::from_parts(
            Service::Ec2,
            "CreateTags",
            Some("UnauthorizedOperation".to_string()),
            "You are not authorized to perform this operation. Encoded authorization failure message: AbC".to_string(),
        )
        .on(&ids);
        assert_eq!(
            e.to_string(),
            "permission denied: ec2:CreateTags on i-00000000000000001, i-00000000000000002, i-00000000000000003, i-00000000000000004, i-00000000000000005 and 2 more — the function's IAM role (template.yaml) does not allow it: You are not authorized to perform this operation. Encoded authorization failure message: AbC"
        );
    }

    #[test]
    fn every_denial_code_is_a_denial_and_others_are_not() {
        for code in DENIAL_CODES {
            let e =
                AwsError::from_parts(Service::Sns, "Publish", Some(code.to_string()), "no".into());
            assert!(e.is_access_denied(), "{code}");
            assert!(
                e.to_string()
                    .starts_with("permission denied: sns:Publish — "),
                "{e}"
            );
        }
        let kms = AwsError::from_parts(
            Service::Ssm,
            "GetParameter",
            Some("AccessDeniedException".into()),
            "User: arn:aws:sts::1:assumed-role/r/f is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:eu-west-1:1:key/k because no identity-based policy allows the kms:Decrypt action".into(),
        );
        assert!(
            kms.to_string()
                .starts_with("permission denied: kms:Decrypt on arn:aws:kms:eu-west-1:1:key/k — "),
            "{kms}"
        );
        let other = AwsError::from_parts(
            Service::Ssm,
            "GetPatchBaseline",
            Some("DoesNotExistException".into()),
            "gone".into(),
        )
        .on(&["pb-1"]);
        assert!(!other.is_access_denied());
        assert_eq!(
            other.to_string(),
            "AWS GetPatchBaseline failed (DoesNotExistException): gone"
        );
    }

    #[test]
    fn a_denial_is_found_behind_wrapping_errors() {
        #[derive(Debug, Error)]
        #[error("wrapped: {0}")]
        struct Wrapper(#[source] AwsError);
        let denied = Wrapper(AwsError::from_parts(
            Service::DynamoDb,
            "PutItem",
            Some("AccessDeniedException".into()),
            "no".into(),
        ));
        assert!(denial_in(&denied).is_some());
        let other = Wrapper(AwsError::missing("PutItem", "x"));
        assert!(denial_in(&other).is_none());
    }

    #[test]
    fn reads_and_writes_are_told_apart_by_operation_name() {
        let log = CallLog::new();
        log.record("DescribePatchBaselines");
        log.record("GetPatchBaseline");
        log.record("ListTagsForResource");
        log.record("CreatePatchBaseline");
        log.record("CreatePatchBaseline");
        let s = log.summary();
        assert_eq!((s.reads, s.writes), (3, 2));
        assert_eq!(s.by_operation.get("CreatePatchBaseline"), Some(&2));
    }
}
