//! run-notifier: one report per patch run (maintenance-window execution or
//! `AWS-RunPatchBaseline` command) to the SNS topic. Set-up only; the logic is in the handler,
//! `patchpilot::report` and `patchpilot::aws::{runs, notify, idempotency}`.

use lambda_runtime::{service_fn, LambdaEvent};
use run_notifier::{handle, Notifier};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

/// JSON lines in Lambda (CloudWatch, `LoggingConfig: LogFormat: JSON`), readable text
/// elsewhere (`cargo lambda watch`, a terminal). `RUST_LOG` filters, default `info`.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder
            .json()
            .with_current_span(false)
            .with_ansi(false)
            .init();
    } else {
        builder.init();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    // Once per cold start: configuration, SDK clients and the policy cache.
    let config = patchpilot::aws::load_config().await;
    let notifier = Notifier::from_env(&config)?;
    let notifier = &notifier;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = event.context.deadline();
        handle(notifier, event.payload, deadline).await
    }))
    .await
}
