//! Log set-up shared by the three functions.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

/// The filter when `RUST_LOG` is unset or cannot be parsed.
const DEFAULT_FILTER: &str = "info";

/// JSON lines in Lambda (CloudWatch, `LoggingConfig: LogFormat: JSON`), readable text
/// elsewhere (`cargo lambda watch`, a terminal). `RUST_LOG` filters, default `info`.
pub fn init() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => parse_filter(&spec).unwrap_or_else(|err| {
            eprintln!(
                "RUST_LOG={spec:?} is not a valid filter ({err}); logging at {DEFAULT_FILTER}"
            );
            default_filter()
        }),
        Err(_) => default_filter(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_ansi(false)
                    .without_time(),
            )
            .init();
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init();
    }
}

fn default_filter() -> Targets {
    Targets::new().with_default(tracing::Level::INFO)
}

/// `RUST_LOG` as comma-separated `level`, `target` or `target=level` directives (the
/// subset of `EnvFilter`'s syntax without span and field filters, which needs no regex).
/// Empty directives are skipped; an empty value enables nothing, as `EnvFilter` did.
fn parse_filter(spec: &str) -> Result<Targets, tracing_subscriber::filter::ParseError> {
    let directives: Vec<&str> = spec.split(',').filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Ok(Targets::new());
    }
    directives.join(",").parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;
    use tracing::Level;

    #[test]
    fn a_bare_level_sets_the_default() {
        let t = parse_filter("info").unwrap();
        assert!(t.would_enable("patchpilot::aws", &Level::INFO));
        assert!(!t.would_enable("patchpilot::aws", &Level::DEBUG));
        assert!(t.would_enable("aws_smithy_runtime", &Level::WARN));
    }

    #[test]
    fn a_target_directive_overrides_the_default_for_that_target_only() {
        let t = parse_filter("patchpilot=debug,info").unwrap();
        assert!(t.would_enable("patchpilot::plan", &Level::DEBUG));
        assert!(!t.would_enable("patchpilot::plan", &Level::TRACE));
        assert!(!t.would_enable("aws_config", &Level::DEBUG));
        assert!(t.would_enable("aws_config", &Level::INFO));
    }

    #[test]
    fn levels_are_case_insensitive_and_off_disables() {
        let t = parse_filter("WARN,hyper=off").unwrap();
        assert!(t.would_enable("patchpilot", &Level::WARN));
        assert!(!t.would_enable("patchpilot", &Level::INFO));
        assert!(!t.would_enable("hyper::proto", &Level::ERROR));
    }

    #[test]
    fn empty_directives_are_skipped_and_an_empty_value_enables_nothing() {
        let t = parse_filter(",debug,").unwrap();
        assert!(t.would_enable("anything", &Level::DEBUG));
        assert_eq!(parse_filter("").unwrap().default_level(), None);
        assert!(!parse_filter("")
            .unwrap()
            .would_enable("anything", &Level::ERROR));
    }

    #[test]
    fn an_unparsable_value_is_an_error_so_init_falls_back_to_info() {
        assert!(parse_filter("patchpilot=loud").is_err());
        assert!(parse_filter("a=b=c").is_err());
        let d = default_filter();
        assert_eq!(d.default_level(), Some(LevelFilter::INFO));
    }
}
