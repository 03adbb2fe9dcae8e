//! auto-tagger: sets the Patch Group tag on launched, re-tagged or newly registered
//! instances. Set-up only; the logic is in the handler and `patchpilot::fleet`.

use auto_tagger::{handle, Tagger};
use lambda_runtime::{service_fn, LambdaEvent};
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
    let tagger = Tagger::new(&config);
    let tagger = &tagger;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(tagger, event.payload).await
    }))
    .await
}
