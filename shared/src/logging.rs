//! Log set-up shared by the three functions.

use tracing_subscriber::EnvFilter;

/// JSON lines in Lambda (CloudWatch, `LoggingConfig: LogFormat: JSON`), readable text
/// elsewhere (`cargo lambda watch`, a terminal). `RUST_LOG` filters, default `info`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder
            .json()
            .with_current_span(false)
            .with_ansi(false)
            .without_time()
            .init();
    } else {
        builder.with_writer(std::io::stderr).init();
    }
}
