//! The planner: a pure function from (desired, observed) to an ordered list of changes.
//!
//! Dry-run is the plan; apply executes it (see `aws::patching`). Rules that keep it safe:
//! - only resources carrying this stack's ownership marker (`patchpilot:managed=<stack>`,
//!   see [`Owner`]) are updated or deleted; a resource with a clashing name that is unmarked
//!   or another stack's is a [`Conflict`], never touched, and so are two resources of this
//!   stack with the same name (which one is meant cannot be decided);
//! - a baseline that exists is **updated in place** (its id and its patch-group
//!   registrations survive), never deleted and recreated;
//! - with no drift the plan is empty, so a second run makes no write call.

pub mod desired;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

pub use desired::{
    desired_state, patch_groups, BaselineSpec, Deployment, DesiredState, RegistrationSpec,
    RuleSpec, TargetSpec, TaskSpec, WindowSpec,
};

use crate::names::{Owner, Ownership, PatchGroup, LEGACY_MARKER_VALUE};
use crate::policy::OperatingSystem;

/// A patch baseline as it exists in the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedBaseline {
    pub id: String,
    pub name: String,
    pub os: Option<OperatingSystem>,
    /// Value of its `patchpilot:managed` tag: the stack that created it.
    pub marker: Option<String>,
    /// Full definition, read (GetPatchBaseline) only for this stack's baselines.
    pub spec: Option<BaselineSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedRegistration {
    pub patch_group: String,
    pub baseline_id: String,
    pub os: Option<OperatingSystem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedWindow {
    pub id: String,
    pub name: String,
    /// Value of its `patchpilot:managed` tag: the stack that created it.
    pub marker: Option<String>,
    /// Full definition, read only for this stack's windows.
    pub spec: Option<WindowSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedTarget {
    pub window_id: String,
    pub id: String,
    pub spec: TargetSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedTask {
    pub window_id: String,
    pub id: String,
    /// `target` holds the target's *name* (resolved from its WindowTargetId), or the raw
    /// target id when it does not resolve.
    pub spec: TaskSpec,
    pub document: String,
}

/// Everything patchpilot reads before planning. Targets and tasks only of this stack's
/// windows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObservedState {
    pub baselines: Vec<ObservedBaseline>,
    pub registrations: Vec<ObservedRegistration>,
    pub windows: Vec<ObservedWindow>,
    pub targets: Vec<ObservedTarget>,
    pub tasks: Vec<ObservedTask>,
}

/// A reference to an SSM resource that may not exist yet when the plan is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Ref {
    /// Exists: its id.
    Id(String),
    /// Created earlier in the same plan: its name.
    Created(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    CreateBaseline {
        spec: BaselineSpec,
    },
    UpdateBaseline {
        id: String,
        spec: BaselineSpec,
    },
    DeleteBaseline {
        id: String,
        name: String,
    },
    RegisterPatchGroup {
        patch_group: String,
        os: OperatingSystem,
        baseline: Ref,
        baseline_name: String,
    },
    DeregisterPatchGroup {
        patch_group: String,
        baseline_id: String,
        baseline_name: String,
    },
    CreateWindow {
        spec: WindowSpec,
    },
    UpdateWindow {
        id: String,
        spec: WindowSpec,
    },
    DeleteWindow {
        id: String,
        name: String,
    },
    RegisterTarget {
        window: Ref,
        spec: TargetSpec,
    },
    UpdateTarget {
        window_id: String,
        target_id: String,
        spec: TargetSpec,
    },
    DeregisterTarget {
        window_id: String,
        target_id: String,
        name: String,
        window: String,
    },
    RegisterTask {
        window: Ref,
        target: Ref,
        spec: TaskSpec,
    },
    UpdateTask {
        window_id: String,
        task_id: String,
        target: Ref,
        spec: TaskSpec,
    },
    DeregisterTask {
        window_id: String,
        task_id: String,
        name: String,
        window: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
}

impl Change {
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::CreateBaseline { .. }
            | Change::RegisterPatchGroup { .. }
            | Change::CreateWindow { .. }
            | Change::RegisterTarget { .. }
            | Change::RegisterTask { .. } => ChangeKind::Create,
            Change::UpdateBaseline { .. }
            | Change::UpdateWindow { .. }
            | Change::UpdateTarget { .. }
            | Change::UpdateTask { .. } => ChangeKind::Update,
            Change::DeleteBaseline { .. }
            | Change::DeregisterPatchGroup { .. }
            | Change::DeleteWindow { .. }
            | Change::DeregisterTarget { .. }
            | Change::DeregisterTask { .. } => ChangeKind::Delete,
        }
    }
}

/// One change with the line an operator reads, e.g.
/// `~ baseline patchpilot-prod-UBUNTU: ApproveAfterDays 7 → 14`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    pub line: String,
    pub kind: ChangeKind,
    pub change: Change,
}

/// A resource patchpilot would manage but may not touch: a foreign resource with a clashing
/// name, or a patch group registered with a baseline patchpilot does not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub resource: String,
    pub message: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "! {}: {}", self.resource, self.message)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub changes: Vec<PlannedChange>,
    pub conflicts: Vec<Conflict>,
    /// Desired resources that already match.
    pub unchanged: u32,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn lines(&self) -> Vec<String> {
        self.changes
            .iter()
            .map(|c| c.line.clone())
            .chain(self.conflicts.iter().map(|c| c.to_string()))
            .collect()
    }

    fn push(&mut self, line: String, change: Change) {
        self.changes.push(PlannedChange {
            line,
            kind: change.kind(),
            change,
        });
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() && self.conflicts.is_empty() {
            return write!(f, "no changes ({} resources up to date)", self.unchanged);
        }
        for line in self.lines() {
            writeln!(f, "{line}")?;
        }
        let count = |k| self.changes.iter().filter(|c| c.kind == k).count();
        write!(
            f,
            "{} to create, {} to update, {} to delete, {} unchanged, {} conflict(s)",
            count(ChangeKind::Create),
            count(ChangeKind::Update),
            count(ChangeKind::Delete),
            self.unchanged,
            self.conflicts.len()
        )
    }
}

/// Compute the changes that turn `observed` into `desired` for `owner`'s stack, in apply
/// order: baselines, registrations, baseline deletions (after their groups are
/// deregistered), windows, targets, tasks, then task/target/window removals (a target
/// cannot go while a task still points at it).
pub fn plan(desired: &DesiredState, observed: &ObservedState, owner: &Owner) -> Plan {
    let mut p = Plan::default();
    let baseline_ids = plan_baselines(desired, observed, owner, &mut p);
    let mut deletes = Vec::new();
    plan_registrations(desired, observed, owner, &baseline_ids, &mut p);
    // Baseline deletions go after the deregistrations above.
    let desired_names: BTreeSet<&str> = desired.baselines.iter().map(|b| b.name.as_str()).collect();
    let gone = observed
        .baselines
        .iter()
        .filter(|b| owner.owns(b.marker.as_deref()) && !desired_names.contains(b.name.as_str()));
    for (name, same) in by_name(gone, |b| b.name.as_str()) {
        if same.len() > 1 {
            p.conflicts.push(duplicates(
                format!("baseline {name}"),
                owner,
                same.iter().map(|b| b.id.as_str()),
                "no longer in the policy, but which one to delete cannot be decided: neither is deleted; delete them by hand",
            ));
            continue;
        }
        for b in same {
            p.push(
                format!("- baseline {} ({}): no longer in the policy", b.name, b.id),
                Change::DeleteBaseline {
                    id: b.id.clone(),
                    name: b.name.clone(),
                },
            );
        }
    }
    let windows = plan_windows(desired, observed, owner, &mut p, &mut deletes);
    plan_targets_and_tasks(desired, observed, &windows, &mut p);
    for (line, change) in deletes {
        p.push(line, change);
    }
    p
}

/// Items grouped by name, names in order.
fn by_name<'a, T>(
    items: impl Iterator<Item = &'a T>,
    name: impl Fn(&'a T) -> &'a str,
) -> BTreeMap<&'a str, Vec<&'a T>> {
    let mut groups: BTreeMap<&str, Vec<&T>> = BTreeMap::new();
    for item in items {
        groups.entry(name(item)).or_default().push(item);
    }
    groups
}

/// Two or more resources of this stack share a name: none of them is changed.
fn duplicates<'a>(
    resource: String,
    owner: &Owner,
    ids: impl Iterator<Item = &'a str>,
    consequence: &str,
) -> Conflict {
    Conflict {
        resource,
        message: format!(
            "{} all carry {owner}: {consequence}",
            ids.collect::<Vec<_>>().join(" and ")
        ),
    }
}

/// Why resources with the desired name are not this stack's and what to do: each id with
/// its owner (e.g. ``pb-1 belongs to patchpilot stack `dev` (patchpilot:managed=dev)``).
fn not_ours<'a>(owner: &Owner, items: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut live_stack = false;
    let owners: Vec<String> = items
        .map(|(id, marker)| {
            let ownership = owner.ownership(marker);
            live_stack |= matches!(&ownership, Ownership::Stack(v) if v != LEGACY_MARKER_VALUE);
            format!("{id} belongs to {}", ownership.describe())
        })
        .collect();
    let hint = if live_stack {
        "two stacks cannot manage environments of the same name in one account and Region: rename the environment in one of the policies".to_string()
    } else {
        format!("rename it, or tag it {owner} to let this stack manage it")
    };
    format!(
        "exists but is not this stack's ({}; this stack marks its resources {owner}): left alone; {hint}",
        owners.join("; ")
    )
}

/// Desired baseline name → how to reach it (existing id or created in this plan). Names
/// missing from the map are blocked by a conflict.
fn plan_baselines(
    desired: &DesiredState,
    observed: &ObservedState,
    owner: &Owner,
    p: &mut Plan,
) -> BTreeMap<String, Ref> {
    let mut ids = BTreeMap::new();
    for spec in &desired.baselines {
        let same_name: Vec<_> = observed
            .baselines
            .iter()
            .filter(|b| b.name == spec.name)
            .collect();
        let ours: Vec<_> = same_name
            .iter()
            .filter(|b| owner.owns(b.marker.as_deref()))
            .collect();
        match ours.as_slice() {
            [existing] => {
                ids.insert(spec.name.clone(), Ref::Id(existing.id.clone()));
                match &existing.spec {
                    Some(current) if current == spec => p.unchanged += 1,
                    current => {
                        let diffs = current
                            .as_ref()
                            .map(|c| baseline_diffs(c, spec))
                            .unwrap_or_else(|| vec!["definition unreadable".to_string()]);
                        p.push(
                            format!("~ baseline {}: {}", spec.name, diffs.join("; ")),
                            Change::UpdateBaseline {
                                id: existing.id.clone(),
                                spec: spec.clone(),
                            },
                        );
                    }
                }
            }
            [_, _, ..] => p.conflicts.push(duplicates(
                format!("baseline {}", spec.name),
                owner,
                ours.iter().map(|b| b.id.as_str()),
                "which one is meant cannot be decided, so neither is updated nor registered with its patch groups; delete the extra one",
            )),
            [] if !same_name.is_empty() => {
                p.conflicts.push(Conflict {
                    resource: format!("baseline {}", spec.name),
                    message: not_ours(
                        owner,
                        same_name
                            .iter()
                            .map(|b| (b.id.as_str(), b.marker.as_deref())),
                    ),
                });
            }
            [] => {
                ids.insert(spec.name.clone(), Ref::Created(spec.name.clone()));
                p.push(
                    format!(
                        "+ baseline {} ({}): {} rule(s), {}",
                        spec.name,
                        spec.os,
                        spec.rules.len(),
                        approval_text(spec)
                    ),
                    Change::CreateBaseline { spec: spec.clone() },
                );
            }
        }
    }
    ids
}

fn approval_text(spec: &BaselineSpec) -> String {
    match spec.rules.first() {
        Some(RuleSpec {
            approve_after_days: Some(n),
            ..
        }) => format!("approve after {n} days"),
        Some(RuleSpec {
            approve_until_date: Some(d),
            ..
        }) => format!("approve until {d}"),
        _ => "no approval delay".to_string(),
    }
}

fn baseline_diffs(current: &BaselineSpec, desired: &BaselineSpec) -> Vec<String> {
    let mut d = Vec::new();
    if current.description != desired.description {
        d.push("Description".to_string());
    }
    if current.rules.len() != desired.rules.len() {
        d.push(format!(
            "rules {} → {}",
            current.rules.len(),
            desired.rules.len()
        ));
    } else {
        for (i, (c, w)) in current.rules.iter().zip(&desired.rules).enumerate() {
            let rule = if desired.rules.len() > 1 {
                format!("rule {}: ", i + 1)
            } else {
                String::new()
            };
            if c.approve_after_days != w.approve_after_days {
                d.push(format!(
                    "{rule}ApproveAfterDays {} → {}",
                    opt(c.approve_after_days),
                    opt(w.approve_after_days)
                ));
            }
            if c.approve_until_date != w.approve_until_date {
                d.push(format!(
                    "{rule}ApproveUntilDate {} → {}",
                    opt(c.approve_until_date.as_ref()),
                    opt(w.approve_until_date.as_ref())
                ));
            }
            if c.compliance_level != w.compliance_level {
                d.push(format!(
                    "{rule}ComplianceLevel {} → {}",
                    c.compliance_level, w.compliance_level
                ));
            }
            if c.enable_non_security != w.enable_non_security {
                d.push(format!(
                    "{rule}EnableNonSecurity {} → {}",
                    c.enable_non_security, w.enable_non_security
                ));
            }
            for key in c
                .filters
                .keys()
                .chain(w.filters.keys())
                .collect::<BTreeSet<_>>()
            {
                let (cv, wv) = (c.filters.get(key), w.filters.get(key));
                if cv != wv {
                    d.push(format!("{rule}{key} {} → {}", list(cv), list(wv)));
                }
            }
        }
    }
    if current.approved_patches != desired.approved_patches {
        d.push(format!(
            "ApprovedPatches {} → {}",
            list(Some(&current.approved_patches)),
            list(Some(&desired.approved_patches))
        ));
    }
    if current.approved_patches_compliance_level != desired.approved_patches_compliance_level {
        d.push(format!(
            "ApprovedPatchesComplianceLevel {} → {}",
            current.approved_patches_compliance_level, desired.approved_patches_compliance_level
        ));
    }
    if current.rejected_patches != desired.rejected_patches {
        d.push(format!(
            "RejectedPatches {} → {}",
            list(Some(&current.rejected_patches)),
            list(Some(&desired.rejected_patches))
        ));
    }
    if current.rejected_patches_action != desired.rejected_patches_action {
        d.push(format!(
            "RejectedPatchesAction {} → {}",
            current.rejected_patches_action, desired.rejected_patches_action
        ));
    }
    if current.os != desired.os {
        d.push(format!(
            "OperatingSystem {} → {} (cannot change in place)",
            current.os, desired.os
        ));
    }
    if d.is_empty() {
        d.push("definition differs".to_string());
    }
    d
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| "none".to_string())
}

fn list(v: Option<&Vec<String>>) -> String {
    match v {
        None => "none".to_string(),
        Some(v) if v.is_empty() => "[]".to_string(),
        Some(v) => format!("[{}]", v.join(", ")),
    }
}

fn plan_registrations(
    desired: &DesiredState,
    observed: &ObservedState,
    owner: &Owner,
    baseline_ids: &BTreeMap<String, Ref>,
    p: &mut Plan,
) {
    let by_id: BTreeMap<&str, &ObservedBaseline> = observed
        .baselines
        .iter()
        .map(|b| (b.id.as_str(), b))
        .collect();
    let name_of = |id: &str| {
        by_id
            .get(id)
            .map(|b| b.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let owned = |id: &str| {
        by_id
            .get(id)
            .is_some_and(|b| owner.owns(b.marker.as_deref()))
    };
    let ownership = |id: &str| owner.ownership(by_id.get(id).and_then(|b| b.marker.as_deref()));
    // Baselines of this stack that share their name with another of this stack's: their
    // registrations are left as they are (reported with the baselines).
    let mut own_names: BTreeMap<&str, u32> = BTreeMap::new();
    for b in observed
        .baselines
        .iter()
        .filter(|b| owner.owns(b.marker.as_deref()))
    {
        *own_names.entry(b.name.as_str()).or_insert(0) += 1;
    }
    let duplicate = |id: &str| {
        by_id.get(id).is_some_and(|b| {
            owner.owns(b.marker.as_deref()) && own_names.get(b.name.as_str()) > Some(&1)
        })
    };
    let os_of = |r: &ObservedRegistration| {
        r.os.or_else(|| by_id.get(r.baseline_id.as_str()).and_then(|b| b.os))
    };

    let wanted: BTreeSet<(&str, OperatingSystem)> = desired
        .registrations
        .iter()
        .map(|r| (r.patch_group.as_str(), r.os))
        .collect();

    // Registrations on our baselines that the policy no longer has (or that now belong to
    // another baseline of ours): deregister first, so the new registration can succeed.
    let mut deregister: Vec<&ObservedRegistration> = Vec::new();
    for spec in &desired.registrations {
        let Some(target) = baseline_ids.get(&spec.baseline) else {
            continue; // blocked by a baseline conflict, reported there
        };
        let current = observed
            .registrations
            .iter()
            .find(|r| r.patch_group == spec.patch_group && os_of(r) == Some(spec.os));
        match current {
            Some(r) if Ref::Id(r.baseline_id.clone()) == *target => p.unchanged += 1,
            Some(r) if !owned(&r.baseline_id) => p.conflicts.push(Conflict {
                resource: format!("patch group {} ({})", spec.patch_group, spec.os),
                message: format!(
                    "is registered with baseline {} ({}), which is not this stack's (it belongs to {}); SSM allows one baseline per group and OS, so {} is not registered",
                    name_of(&r.baseline_id),
                    r.baseline_id,
                    ownership(&r.baseline_id).describe(),
                    spec.baseline
                ),
            }),
            Some(r) if duplicate(&r.baseline_id) => p.conflicts.push(Conflict {
                resource: format!("patch group {} ({})", spec.patch_group, spec.os),
                message: format!(
                    "is registered with baseline {} ({}), one of two baselines of this stack with that name: left as it is, so {} is not registered",
                    name_of(&r.baseline_id),
                    r.baseline_id,
                    spec.baseline
                ),
            }),
            current => {
                if let Some(r) = current {
                    deregister.push(r);
                }
                let reg = Change::RegisterPatchGroup {
                    patch_group: spec.patch_group.clone(),
                    os: spec.os,
                    baseline: target.clone(),
                    baseline_name: spec.baseline.clone(),
                };
                p.push(format!("+ register patch group {} → {}", spec.patch_group, spec.baseline), reg);
            }
        }
    }
    for r in &observed.registrations {
        let ours = owned(&r.baseline_id) && !duplicate(&r.baseline_id);
        let still_wanted =
            os_of(r).is_some_and(|os| wanted.contains(&(r.patch_group.as_str(), os)));
        if ours && !still_wanted {
            deregister.push(r);
        }
    }
    // Deregistrations must precede the registrations that replace them.
    let first_register = p
        .changes
        .iter()
        .position(|c| matches!(c.change, Change::RegisterPatchGroup { .. }))
        .unwrap_or(p.changes.len());
    let mut seen = BTreeSet::new();
    let dereg: Vec<PlannedChange> = deregister
        .into_iter()
        .filter(|r| seen.insert((r.patch_group.clone(), r.baseline_id.clone())))
        .map(|r| {
            let name = name_of(&r.baseline_id);
            let change = Change::DeregisterPatchGroup {
                patch_group: r.patch_group.clone(),
                baseline_id: r.baseline_id.clone(),
                baseline_name: name.clone(),
            };
            PlannedChange {
                line: format!("- deregister patch group {} from {}", r.patch_group, name),
                kind: change.kind(),
                change,
            }
        })
        .collect();
    p.changes.splice(first_register..first_register, dereg);
}

/// Desired window name → reference, for targets and tasks. Windows blocked by a conflict
/// are missing.
fn plan_windows(
    desired: &DesiredState,
    observed: &ObservedState,
    owner: &Owner,
    p: &mut Plan,
    deletes: &mut Vec<(String, Change)>,
) -> BTreeMap<String, (Ref, Option<String>)> {
    let mut refs = BTreeMap::new();
    for spec in &desired.windows {
        let same_name: Vec<_> = observed
            .windows
            .iter()
            .filter(|w| w.name == spec.name)
            .collect();
        let ours: Vec<_> = same_name
            .iter()
            .filter(|w| owner.owns(w.marker.as_deref()))
            .collect();
        match ours.as_slice() {
            [existing] => {
                refs.insert(
                    spec.name.clone(),
                    (Ref::Id(existing.id.clone()), Some(existing.id.clone())),
                );
                match &existing.spec {
                    Some(current) if current == spec => p.unchanged += 1,
                    current => {
                        let diffs = current
                            .as_ref()
                            .map(|c| window_diffs(c, spec))
                            .unwrap_or_else(|| vec!["definition unreadable".to_string()]);
                        p.push(
                            format!("~ window {}: {}", spec.name, diffs.join("; ")),
                            Change::UpdateWindow {
                                id: existing.id.clone(),
                                spec: spec.clone(),
                            },
                        );
                    }
                }
            }
            [_, _, ..] => p.conflicts.push(duplicates(
                format!("window {}", spec.name),
                owner,
                ours.iter().map(|w| w.id.as_str()),
                "which one is meant cannot be decided, so neither (nor their targets and tasks) is changed; delete the extra one",
            )),
            [] if !same_name.is_empty() => {
                p.conflicts.push(Conflict {
                    resource: format!("window {}", spec.name),
                    message: format!(
                        "{} (its targets and tasks are not managed either)",
                        not_ours(
                            owner,
                            same_name
                                .iter()
                                .map(|w| (w.id.as_str(), w.marker.as_deref()))
                        )
                    ),
                });
            }
            [] => {
                refs.insert(spec.name.clone(), (Ref::Created(spec.name.clone()), None));
                let offset = spec
                    .offset_days
                    .map(|d| format!(" + {d} day(s)"))
                    .unwrap_or_default();
                p.push(
                    format!(
                        "+ window {}: {}{} {}, {}h, cutoff {}h",
                        spec.name,
                        spec.schedule,
                        offset,
                        spec.timezone,
                        spec.duration_hours,
                        spec.cutoff_hours
                    ),
                    Change::CreateWindow { spec: spec.clone() },
                );
            }
        }
    }
    let desired_names: BTreeSet<&str> = desired.windows.iter().map(|w| w.name.as_str()).collect();
    let gone = observed
        .windows
        .iter()
        .filter(|w| owner.owns(w.marker.as_deref()) && !desired_names.contains(w.name.as_str()));
    for (name, same) in by_name(gone, |w| w.name.as_str()) {
        if same.len() > 1 {
            p.conflicts.push(duplicates(
                format!("window {name}"),
                owner,
                same.iter().map(|w| w.id.as_str()),
                "no longer in the policy, but which one to delete cannot be decided: neither is deleted; delete them by hand",
            ));
            continue;
        }
        for w in same {
            deletes.push((
                format!(
                    "- window {} ({}): no longer in the policy (with its targets and tasks)",
                    w.name, w.id
                ),
                Change::DeleteWindow {
                    id: w.id.clone(),
                    name: w.name.clone(),
                },
            ));
        }
    }
    refs
}

fn window_diffs(c: &WindowSpec, w: &WindowSpec) -> Vec<String> {
    let mut d = Vec::new();
    if c.schedule != w.schedule {
        d.push(format!("Schedule {} → {}", c.schedule, w.schedule));
    }
    if c.timezone != w.timezone {
        d.push(format!("ScheduleTimezone {} → {}", c.timezone, w.timezone));
    }
    if c.offset_days != w.offset_days {
        d.push(format!(
            "ScheduleOffset {} → {}",
            opt(c.offset_days),
            opt(w.offset_days)
        ));
    }
    if c.duration_hours != w.duration_hours {
        d.push(format!(
            "Duration {} → {}",
            c.duration_hours, w.duration_hours
        ));
    }
    if c.cutoff_hours != w.cutoff_hours {
        d.push(format!("Cutoff {} → {}", c.cutoff_hours, w.cutoff_hours));
    }
    if c.allow_unassociated_targets != w.allow_unassociated_targets {
        d.push(format!(
            "AllowUnassociatedTargets {} → {}",
            c.allow_unassociated_targets, w.allow_unassociated_targets
        ));
    }
    if c.enabled != w.enabled {
        d.push(format!("Enabled {} → {}", c.enabled, w.enabled));
    }
    if c.description != w.description {
        d.push("Description".to_string());
    }
    if d.is_empty() {
        d.push("definition differs".to_string());
    }
    d
}

fn plan_targets_and_tasks(
    desired: &DesiredState,
    observed: &ObservedState,
    windows: &BTreeMap<String, (Ref, Option<String>)>,
    p: &mut Plan,
) {
    let mut task_deletes = Vec::new();
    let mut target_deletes = Vec::new();
    // Targets.
    let mut target_refs: BTreeMap<(String, String), Ref> = BTreeMap::new();
    for spec in &desired.targets {
        let Some((window_ref, window_id)) = windows.get(&spec.window) else {
            continue;
        };
        let existing = window_id.as_ref().and_then(|wid| {
            observed
                .targets
                .iter()
                .find(|t| &t.window_id == wid && t.spec.name == spec.name)
        });
        match (existing, window_id) {
            (Some(t), _) => {
                target_refs.insert(
                    (spec.window.clone(), spec.name.clone()),
                    Ref::Id(t.id.clone()),
                );
                if t.spec == *spec {
                    p.unchanged += 1;
                } else {
                    p.push(
                        format!(
                            "~ target {} in {}: {}",
                            spec.name,
                            spec.window,
                            target_diffs(&t.spec, spec).join("; ")
                        ),
                        Change::UpdateTarget {
                            window_id: t.window_id.clone(),
                            target_id: t.id.clone(),
                            spec: spec.clone(),
                        },
                    );
                }
            }
            _ => {
                target_refs.insert(
                    (spec.window.clone(), spec.name.clone()),
                    Ref::Created(format!("{}/{}", spec.window, spec.name)),
                );
                p.push(
                    format!(
                        "+ target {} in {}: {} = {}",
                        spec.name, spec.window, spec.key, spec.value
                    ),
                    Change::RegisterTarget {
                        window: window_ref.clone(),
                        spec: spec.clone(),
                    },
                );
            }
        }
    }
    // Tasks.
    for spec in &desired.tasks {
        let Some((window_ref, window_id)) = windows.get(&spec.window) else {
            continue;
        };
        let Some(target) = target_refs.get(&(spec.window.clone(), spec.target.clone())) else {
            continue;
        };
        let existing = window_id.as_ref().and_then(|wid| {
            observed
                .tasks
                .iter()
                .find(|t| &t.window_id == wid && t.spec.name == spec.name)
        });
        match existing {
            Some(t) => {
                // No role in the deployment means "SSM's service-linked role", which SSM
                // may report back by ARN: nothing to compare then.
                let mut current = t.spec.clone();
                if spec.service_role_arn.is_none() {
                    current.service_role_arn = None;
                }
                if current == *spec && t.document == desired::RUN_PATCH_BASELINE {
                    p.unchanged += 1;
                } else {
                    p.push(
                        format!(
                            "~ task {} in {}: {}",
                            spec.name,
                            spec.window,
                            task_diffs(&current, spec, &t.document).join("; ")
                        ),
                        Change::UpdateTask {
                            window_id: t.window_id.clone(),
                            task_id: t.id.clone(),
                            target: target.clone(),
                            spec: spec.clone(),
                        },
                    );
                }
            }
            None => p.push(
                format!(
                    "+ task {} in {}: {} {} on {}, priority {}, concurrency {}, errors {}",
                    spec.name,
                    spec.window,
                    desired::RUN_PATCH_BASELINE,
                    spec.parameters
                        .get("Operation")
                        .and_then(|v| v.first())
                        .map(String::as_str)
                        .unwrap_or("?"),
                    spec.target,
                    spec.priority,
                    spec.max_concurrency,
                    spec.max_errors
                ),
                Change::RegisterTask {
                    window: window_ref.clone(),
                    target: target.clone(),
                    spec: spec.clone(),
                },
            ),
        }
    }
    // Removals inside owned windows that stay: only patchpilot-named targets and tasks
    // (someone else's target in our window is left alone).
    let desired_targets: BTreeSet<(&str, &str)> = desired
        .targets
        .iter()
        .map(|t| (t.window.as_str(), t.name.as_str()))
        .collect();
    let desired_tasks: BTreeSet<(&str, &str)> = desired
        .tasks
        .iter()
        .map(|t| (t.window.as_str(), t.name.as_str()))
        .collect();
    for (window, (_, window_id)) in windows {
        let Some(wid) = window_id else { continue };
        for t in observed.tasks.iter().filter(|t| &t.window_id == wid) {
            if t.spec.name.starts_with("patchpilot-")
                && !desired_tasks.contains(&(window.as_str(), t.spec.name.as_str()))
            {
                task_deletes.push((
                    format!(
                        "- task {} in {}: no longer in the policy",
                        t.spec.name, window
                    ),
                    Change::DeregisterTask {
                        window_id: wid.clone(),
                        task_id: t.id.clone(),
                        name: t.spec.name.clone(),
                        window: window.clone(),
                    },
                ));
            }
        }
        for t in observed.targets.iter().filter(|t| &t.window_id == wid) {
            if is_our_target_name(&t.spec.name)
                && !desired_targets.contains(&(window.as_str(), t.spec.name.as_str()))
            {
                target_deletes.push((
                    format!(
                        "- target {} in {}: no longer in the policy",
                        t.spec.name, window
                    ),
                    Change::DeregisterTarget {
                        window_id: wid.clone(),
                        target_id: t.id.clone(),
                        name: t.spec.name.clone(),
                        window: window.clone(),
                    },
                ));
            }
        }
    }
    for (line, change) in task_deletes.into_iter().chain(target_deletes) {
        p.push(line, change);
    }
}

/// A window target patchpilot names: a patch group (`patch_prod_0600_batch_1`), or a
/// promoted environment's per-OS target (`patch_prod_0600_batch_1_UBUNTU`), which must go
/// when the environment is held again or the OS leaves the manifest.
fn is_our_target_name(name: &str) -> bool {
    name.parse::<PatchGroup>().is_ok()
        || OperatingSystem::ALL.iter().any(|os| {
            name.strip_suffix(os.as_str())
                .and_then(|rest| rest.strip_suffix('_'))
                .is_some_and(|group| group.parse::<PatchGroup>().is_ok())
        })
}

fn target_diffs(c: &TargetSpec, w: &TargetSpec) -> Vec<String> {
    let mut d = Vec::new();
    if (c.key.as_str(), c.value.as_str()) != (w.key.as_str(), w.value.as_str()) {
        d.push(format!(
            "Targets {}={} → {}={}",
            c.key, c.value, w.key, w.value
        ));
    }
    if c.os != w.os {
        let show = |o: Option<crate::policy::OperatingSystem>| {
            o.map(|o| o.as_str().to_string())
                .unwrap_or_else(|| "(none)".to_string())
        };
        d.push(format!(
            "Targets tag:{} {} → {}",
            crate::promotion::OS_TAG_KEY,
            show(c.os),
            show(w.os)
        ));
    }
    if c.owner_information != w.owner_information {
        d.push(format!(
            "OwnerInformation {} → {}",
            c.owner_information, w.owner_information
        ));
    }
    if c.description != w.description {
        d.push("Description".to_string());
    }
    if d.is_empty() {
        d.push("definition differs".to_string());
    }
    d
}

fn task_diffs(c: &TaskSpec, w: &TaskSpec, document: &str) -> Vec<String> {
    let mut d = Vec::new();
    if document != desired::RUN_PATCH_BASELINE {
        d.push(format!(
            "TaskArn {document} → {}",
            desired::RUN_PATCH_BASELINE
        ));
    }
    if c.target != w.target {
        d.push(format!("target {} → {}", c.target, w.target));
    }
    if c.priority != w.priority {
        d.push(format!("Priority {} → {}", c.priority, w.priority));
    }
    if c.max_concurrency != w.max_concurrency {
        d.push(format!(
            "MaxConcurrency {} → {}",
            c.max_concurrency, w.max_concurrency
        ));
    }
    if c.max_errors != w.max_errors {
        d.push(format!("MaxErrors {} → {}", c.max_errors, w.max_errors));
    }
    for key in c
        .parameters
        .keys()
        .chain(w.parameters.keys())
        .collect::<BTreeSet<_>>()
    {
        let (cv, wv) = (c.parameters.get(key), w.parameters.get(key));
        if cv != wv {
            d.push(format!("{key} {} → {}", list(cv), list(wv)));
        }
    }
    if c.output_s3_bucket != w.output_s3_bucket || c.output_s3_prefix != w.output_s3_prefix {
        d.push(format!(
            "output s3://{}/{} → s3://{}/{}",
            opt(c.output_s3_bucket.as_ref()),
            opt(c.output_s3_prefix.as_ref()),
            opt(w.output_s3_bucket.as_ref()),
            opt(w.output_s3_prefix.as_ref())
        ));
    }
    if c.service_role_arn != w.service_role_arn {
        d.push(format!(
            "ServiceRoleArn {} → {}",
            opt(c.service_role_arn.as_ref()),
            opt(w.service_role_arn.as_ref())
        ));
    }
    if c.description != w.description {
        d.push("Description".to_string());
    }
    if d.is_empty() {
        d.push("definition differs".to_string());
    }
    d
}

#[cfg(test)]
mod tests;
