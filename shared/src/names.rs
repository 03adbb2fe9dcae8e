//! Derived names — the one place they are built and parsed.
//!
//! The article's convention, generalised: the patch group says which environment, at what
//! time and in which batch an instance is patched (`patch_test_0600_batch_1`). Everything
//! patchpilot creates is named from the policy, never typed twice:
//!
//! | resource | name |
//! |---|---|
//! | patch group (tag value, target name) | `patch_<env>_<HHMM>_batch_<n>` |
//! | patch baseline | `patchpilot-<env>-<OS>` |
//! | maintenance window | `patchpilot-<env>` |
//! | window task | `patchpilot-<env>-batch-<n>-<batch name>` |

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use thiserror::Error;

use crate::policy::OperatingSystem;

/// Tag that marks a resource (baseline, window, or an instance's patch-group tag) as
/// created by patchpilot; its value is the name of the stack that created it (see
/// [`Owner`]). Resources without it, or with another stack's name, are never changed or
/// deleted.
pub const OWNERSHIP_TAG_KEY: &str = "patchpilot:managed";
/// The stack name when none is configured (`PATCHPILOT_STACK` unset): the `stack_name` of
/// samconfig.toml.
pub const DEFAULT_STACK: &str = "patchpilot";
/// The marker value of patchpilot versions before the value named the stack.
pub const LEGACY_MARKER_VALUE: &str = "true";

/// The stack whose resources these are: the ownership marker patchpilot writes is
/// `patchpilot:managed=<stack>`, and only resources carrying exactly that marker are
/// updated, deleted or untagged. Two stacks in one account and Region therefore never touch
/// each other's resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Owner {
    stack: String,
}

impl Owner {
    /// The owner named `stack` (surrounding blanks removed); an empty name is the default
    /// stack, [`DEFAULT_STACK`].
    pub fn new(stack: &str) -> Owner {
        let stack = stack.trim();
        Owner {
            stack: if stack.is_empty() {
                DEFAULT_STACK.to_string()
            } else {
                stack.to_string()
            },
        }
    }

    /// The stack name, = the marker's value.
    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// The marker as a tag: (`patchpilot:managed`, stack).
    pub fn tag(&self) -> (&'static str, &str) {
        (OWNERSHIP_TAG_KEY, &self.stack)
    }

    /// Whose a resource is, from the value of its `patchpilot:managed` tag (`None`: no such
    /// tag).
    pub fn ownership(&self, marker: Option<&str>) -> Ownership {
        match marker {
            None => Ownership::Unmarked,
            Some(v) if v == self.stack => Ownership::Ours,
            Some(v) => Ownership::Stack(v.to_string()),
        }
    }

    /// [`Owner::ownership`] of a resource with these tags.
    pub fn ownership_of<'t>(
        &self,
        tags: impl IntoIterator<Item = (&'t str, &'t str)>,
    ) -> Ownership {
        self.ownership(
            tags.into_iter()
                .find(|(k, _)| *k == OWNERSHIP_TAG_KEY)
                .map(|(_, v)| v),
        )
    }

    /// True when `marker` is this stack's.
    pub fn owns(&self, marker: Option<&str>) -> bool {
        marker == Some(self.stack.as_str())
    }
}

impl Default for Owner {
    fn default() -> Owner {
        Owner::new(DEFAULT_STACK)
    }
}

impl fmt::Display for Owner {
    /// `patchpilot:managed=<stack>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{OWNERSHIP_TAG_KEY}={}", self.stack)
    }
}

/// Whose a resource is, seen from one stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "owner", content = "stack", rename_all = "snake_case")]
pub enum Ownership {
    /// Marked with this stack's name: patchpilot manages it.
    Ours,
    /// Marked by another patchpilot stack (or an older patchpilot, value `true`): left alone.
    Stack(String),
    /// No marker: not patchpilot's (a person's, or another tool's).
    Unmarked,
}

impl Ownership {
    pub fn is_ours(&self) -> bool {
        matches!(self, Ownership::Ours)
    }

    /// Who it belongs to, for messages: ``stack `other` (patchpilot:managed=other)`` or
    /// `nobody patchpilot knows (no patchpilot:managed tag)`.
    pub fn describe(&self) -> String {
        match self {
            Ownership::Ours => "this stack".to_string(),
            Ownership::Stack(v) if v == LEGACY_MARKER_VALUE => format!(
                "an older patchpilot ({OWNERSHIP_TAG_KEY}={v}, before the marker named the stack)"
            ),
            Ownership::Stack(v) => format!("patchpilot stack `{v}` ({OWNERSHIP_TAG_KEY}={v})"),
            Ownership::Unmarked => format!("no patchpilot stack (no {OWNERSHIP_TAG_KEY} tag)"),
        }
    }
}

/// A patch group, `patch_<env>_<HHMM>_batch_<n>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatchGroup {
    pub environment: String,
    pub hour: u32,
    pub minute: u32,
    pub batch: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{value}` is not a patchpilot patch group ({reason}); expected patch_<env>_<HHMM>_batch_<n>, e.g. patch_test_0600_batch_1")]
pub struct PatchGroupParseError {
    pub value: String,
    pub reason: &'static str,
}

impl PatchGroup {
    pub fn new(environment: &str, (hour, minute): (u32, u32), batch: u32) -> PatchGroup {
        PatchGroup {
            environment: environment.to_string(),
            hour,
            minute,
            batch,
        }
    }
}

impl fmt::Display for PatchGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "patch_{}_{:02}{:02}_batch_{}",
            self.environment, self.hour, self.minute, self.batch
        )
    }
}

impl FromStr for PatchGroup {
    type Err = PatchGroupParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PatchGroupParseError {
            value: s.to_string(),
            reason,
        };
        let rest = s
            .strip_prefix("patch_")
            .ok_or_else(|| err("missing `patch_` prefix"))?;
        // Split from the right: `<env>` may itself contain `-` but never `_`.
        let (head, batch) = rest
            .rsplit_once("_batch_")
            .ok_or_else(|| err("missing `_batch_<n>`"))?;
        let batch: u32 = batch
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| err("batch is not a number ≥ 1"))?;
        let (environment, hhmm) = head
            .rsplit_once('_')
            .ok_or_else(|| err("missing `_<HHMM>`"))?;
        if environment.is_empty() || environment.contains('_') {
            return Err(err("environment name is empty or contains `_`"));
        }
        if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("time is not four digits HHMM"));
        }
        let hour: u32 = hhmm[..2].parse().map_err(|_| err("hour is not a number"))?;
        let minute: u32 = hhmm[2..]
            .parse()
            .map_err(|_| err("minute is not a number"))?;
        if hour > 23 || minute > 59 {
            return Err(err("time is not a valid HHMM"));
        }
        Ok(PatchGroup {
            environment: environment.to_string(),
            hour,
            minute,
            batch,
        })
    }
}

/// `patchpilot-<env>-<OS>`, e.g. `patchpilot-prod-UBUNTU`.
pub fn baseline_name(environment: &str, os: OperatingSystem) -> String {
    format!("patchpilot-{environment}-{}", os.as_str())
}

/// Inverse of [`baseline_name`]: `(environment, os)` for a patchpilot baseline name.
pub fn parse_baseline_name(name: &str) -> Option<(String, OperatingSystem)> {
    let rest = name.strip_prefix("patchpilot-")?;
    // OS names contain `_` but never `-`; environments may contain `-`.
    let (environment, os) = rest.rsplit_once('-')?;
    let os = OperatingSystem::parse(os)?;
    (!environment.is_empty()).then(|| (environment.to_string(), os))
}

/// `patchpilot-<env>`, e.g. `patchpilot-test`.
pub fn window_name(environment: &str) -> String {
    format!("patchpilot-{environment}")
}

/// Inverse of [`window_name`].
pub fn parse_window_name(name: &str) -> Option<&str> {
    name.strip_prefix("patchpilot-").filter(|e| !e.is_empty())
}

/// The window target of a batch is named after its patch group (the article: "give a name
/// to the target so you can easily identify it"), so the name is the group itself.
pub fn target_name(group: &PatchGroup) -> String {
    group.to_string()
}

/// `patchpilot-<env>-batch-<n>-<batch>`: reads well in Run Command history and reports.
pub fn task_name(environment: &str, batch: u32, batch_name: &str) -> String {
    format!("patchpilot-{environment}-batch-{batch}-{batch_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_articles_patch_groups_round_trip() {
        for s in [
            "patch_test_0600_batch_1",
            "patch_test_0600_batch_2",
            "patch_prod_0600_batch_1",
            "patch_prod_0600_batch_2",
        ] {
            let g: PatchGroup = s.parse().expect("article group parses");
            assert_eq!(g.to_string(), s);
        }
        let g: PatchGroup = "patch_prod_0600_batch_2".parse().expect("parses");
        assert_eq!(g, PatchGroup::new("prod", (6, 0), 2));
    }

    #[test]
    fn environment_with_hyphen_round_trips() {
        let g = PatchGroup::new("pre-prod", (22, 30), 3);
        assert_eq!(g.to_string(), "patch_pre-prod_2230_batch_3");
        assert_eq!(g.to_string().parse::<PatchGroup>(), Ok(g));
    }

    #[test]
    fn foreign_group_names_are_rejected_with_the_reason() {
        for (s, reason) in [
            ("web-servers", "prefix"),
            ("patch_test_0600", "_batch_"),
            ("patch_test_0600_batch_0", "≥ 1"),
            ("patch_test_2460_batch_1", "HHMM"),
            ("patch_test_600_batch_1", "four digits"),
            ("patch__0600_batch_1", "empty"),
        ] {
            let err = s.parse::<PatchGroup>().expect_err(s);
            assert!(err.to_string().contains(reason), "{s}: {err}");
        }
    }

    #[test]
    fn baseline_names_round_trip_for_every_os() {
        for os in OperatingSystem::ALL {
            let name = baseline_name("pre-prod", os);
            assert_eq!(
                parse_baseline_name(&name),
                Some(("pre-prod".to_string(), os))
            );
        }
        assert_eq!(
            baseline_name("prod", OperatingSystem::Ubuntu),
            "patchpilot-prod-UBUNTU"
        );
        assert_eq!(parse_baseline_name("AWS-DefaultPatchBaseline"), None);
        assert_eq!(parse_baseline_name("patchpilot-prod-FREEBSD"), None);
    }

    #[test]
    fn the_marker_value_is_the_stack_name() {
        let owner = Owner::new(" prod-patching ");
        assert_eq!(owner.stack(), "prod-patching");
        assert_eq!(owner.to_string(), "patchpilot:managed=prod-patching");
        assert_eq!(owner.tag(), ("patchpilot:managed", "prod-patching"));
        assert_eq!(Owner::new("").stack(), DEFAULT_STACK);
        assert_eq!(Owner::default().stack(), "patchpilot");
        assert_eq!(owner.ownership(Some("prod-patching")), Ownership::Ours);
        assert_eq!(
            owner.ownership(Some("patchpilot")),
            Ownership::Stack("patchpilot".to_string())
        );
        assert_eq!(owner.ownership(None), Ownership::Unmarked);
        assert_eq!(
            owner.ownership_of([("Name", "x"), ("patchpilot:managed", "true")]),
            Ownership::Stack("true".to_string())
        );
        assert!(owner.owns(Some("prod-patching")) && !owner.owns(Some("true")));
        assert!(Ownership::Stack("true".into())
            .describe()
            .contains("older patchpilot"));
        assert!(Ownership::Stack("dev".into())
            .describe()
            .contains("stack `dev`"));
    }

    #[test]
    fn window_and_task_names() {
        assert_eq!(window_name("test"), "patchpilot-test");
        assert_eq!(parse_window_name("patchpilot-test"), Some("test"));
        assert_eq!(parse_window_name("other"), None);
        assert_eq!(
            task_name("test", 1, "linux"),
            "patchpilot-test-batch-1-linux"
        );
        assert_eq!(
            target_name(&PatchGroup::new("test", (6, 0), 1)),
            "patch_test_0600_batch_1"
        );
    }
}
