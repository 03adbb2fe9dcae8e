//! Reading the policy the operator names on the command line (or the embedded reference).

use std::fmt;
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use patchpilot::policy::{
    validate, Policy, PolicyError, Problem, Validation, EMBEDDED_POLICY_MARKER,
};

/// Where the policy came from, for headers and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No POLICY argument: the policy embedded in the binaries (examples/policy.yaml).
    Reference,
    /// `-`: standard input.
    Stdin,
    File(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Reference => f.write_str("embedded reference policy"),
            Source::Stdin => f.write_str("<stdin>"),
            Source::File(p) => f.write_str(p),
        }
    }
}

/// Why a policy could not be used. Each variant maps to an exit code in `main`.
#[derive(Debug)]
pub enum InputError {
    /// The file could not be read (missing, a directory, no permission).
    Read { source: Source, error: String },
    /// Not YAML, or not the shape of a policy (unknown key, wrong type, bad enum value).
    Parse { source: Source, error: String },
    /// The policy parsed but has errors; every problem (errors and warnings) is listed.
    Invalid {
        source: Source,
        problems: Vec<Problem>,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Read { source, error } => {
                write!(f, "cannot read policy {source}: {error}")
            }
            InputError::Parse { source, error } => write!(f, "{source}: {error}"),
            InputError::Invalid { source, problems } => {
                let errors = problems
                    .iter()
                    .filter(|p| p.severity == patchpilot::policy::Severity::Error)
                    .count();
                writeln!(
                    f,
                    "{source}: policy is invalid ({errors} error(s)); nothing was rendered. Run `patchpilot validate` for details:"
                )?;
                write!(f, "{}", Problem::list(problems))
            }
        }
    }
}

/// The text of the policy: a file, stdin (`-`) or the embedded reference.
pub fn read_text(path: Option<&str>) -> Result<(Source, String), InputError> {
    match path {
        None => Ok((
            Source::Reference,
            patchpilot::policy::REFERENCE_POLICY_YAML.to_string(),
        )),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| InputError::Read {
                    source: Source::Stdin,
                    error: e.to_string(),
                })?;
            Ok((Source::Stdin, text))
        }
        Some(p) => {
            let source = Source::File(p.to_string());
            if Path::new(p).is_dir() {
                return Err(InputError::Read {
                    source,
                    error: "is a directory; give the policy YAML file".to_string(),
                });
            }
            match std::fs::read_to_string(p) {
                Ok(text) => Ok((source, text)),
                Err(e) => Err(InputError::Read {
                    source,
                    error: e.to_string(),
                }),
            }
        }
    }
}

/// Parse without validating (the `embedded-default` marker means the reference policy, as
/// in the policy parameter).
pub fn parse(source: &Source, text: &str) -> Result<Policy, InputError> {
    if text.trim() == EMBEDDED_POLICY_MARKER {
        return Ok(Policy::reference());
    }
    if text.trim().is_empty() {
        return Err(InputError::Parse {
            source: source.clone(),
            error: "the policy is empty; start from examples/policy.yaml".to_string(),
        });
    }
    Policy::from_yaml(text).map_err(|e| InputError::Parse {
        source: source.clone(),
        error: match e {
            PolicyError::Parse(msg) => {
                format!("policy is not valid YAML for a patchpilot policy: {msg}")
            }
            other => other.to_string(),
        },
    })
}

/// Read, parse and validate; errors make the policy unusable, warnings come back with it.
pub fn load(
    path: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Source, Policy, Validation), InputError> {
    let (source, text) = read_text(path)?;
    let policy = parse(&source, &text)?;
    let validation = validate(&policy, now);
    if !validation.is_ok() {
        return Err(InputError::Invalid {
            source,
            problems: validation.problems,
        });
    }
    Ok((source, policy, validation))
}
