//! The fleet's Patch Group tags: classify instances, write the tags they lack and remove
//! patchpilot's own tag from excluded instances, with as few write calls as AWS allows.
//!
//! Two entry points share one decision and one write path:
//! - [`tag_instances`] — the auto-tagger: the instances named by one event;
//! - [`sweep`] — baseline-sync: every instance EC2 and SSM know, page by page.
//!
//! Writes are grouped by tag value: EC2 `CreateTags` takes up to 1000 resource ids with one tag
//! set, so one call per distinct patch group per 1000 instances. SSM `AddTagsToResource` takes
//! one resource, so managed (`mi-*`) nodes cost one call each. The Patch Group tag and the
//! ownership marker (`patchpilot:managed=<stack>`) go in the same call, which is also the only
//! tag-key set the template's IAM condition allows.
//!
//! An excluded instance whose Patch Group tag patchpilot wrote (marker present) has both keys
//! removed — otherwise the maintenance-window target (`tag:Patch Group = <group>`) keeps
//! patching it. EC2 `DeleteTags` names the keys only (a `Value` would make the deletion
//! conditional on it), so every such instance shares one call per 1000 ids whatever its
//! group; SSM `RemoveTagsFromResource` takes one node per call. A Patch Group tag a person set
//! is never removed (the outcome's reason says to remove it by hand).
//!
//! The AWS operations are behind [`InstancePort`] and [`ManagedPort`] (implemented by
//! `aws::ec2::Ec2Fleet` and `aws::managed::ManagedInstances`), so the grouping is tested here
//! without AWS.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tracing::info;

use crate::aws::{AwsError, CallLog};
use crate::classify::{classify, tag_action, Decision, InstanceFacts, TagAction};
use crate::names::{Owner, OWNERSHIP_TAG_KEY};
use crate::policy::Policy;

/// EC2 `CreateTags`: "Resources … Constraints: Up to 1000 resource IDs" (EC2 API reference).
pub const CREATE_TAGS_MAX_IDS: usize = 1000;
/// EC2 `DeleteTags`: "ResourceId.N … Constraints: Up to 1000 resource IDs" (EC2 API
/// reference).
pub const DELETE_TAGS_MAX_IDS: usize = 1000;

/// One page of instances and the token of the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub instances: Vec<InstanceFacts>,
    pub next_token: Option<String>,
}

/// EC2 instances (`i-*`): the operations the tagger needs (port).
pub trait InstancePort: Sync {
    /// Facts for these instances (one `DescribeInstances`, retried while EC2 does not see a
    /// just-launched instance yet). Every requested id is in the answer or it is an error.
    fn describe(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> impl Future<Output = Result<Vec<InstanceFacts>, FleetError>> + Send;

    /// One page of every instance that is not terminated; `None` starts at the first page.
    fn page(
        &self,
        token: Option<String>,
        calls: &CallLog,
    ) -> impl Future<Output = Result<Page, FleetError>> + Send;

    /// Write `tags` on `ids` (at most [`CREATE_TAGS_MAX_IDS`]) in one `CreateTags` call.
    fn create_tags(
        &self,
        ids: &[String],
        tags: &[(String, String)],
        calls: &CallLog,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;

    /// Remove the tags with these `keys`, whatever their values, from `ids` (at most
    /// [`DELETE_TAGS_MAX_IDS`]) in one `DeleteTags` call.
    fn delete_tags(
        &self,
        ids: &[String],
        keys: &[String],
        calls: &CallLog,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;
}

/// SSM managed nodes (`mi-*`, hybrid activations): the operations the tagger needs (port).
pub trait ManagedPort: Sync {
    /// Facts for these nodes; a node SSM does not know (deregistered) is absent.
    fn describe(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> impl Future<Output = Result<Vec<InstanceFacts>, FleetError>> + Send;

    /// One page of every managed (non-EC2) node; `None` starts at the first page.
    fn page(
        &self,
        token: Option<String>,
        calls: &CallLog,
    ) -> impl Future<Output = Result<Page, FleetError>> + Send;

    /// Write `tags` on one node (`AddTagsToResource`, ResourceType `ManagedInstance`).
    fn add_tags(
        &self,
        id: &str,
        tags: &[(String, String)],
        calls: &CallLog,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;

    /// Remove the tags with these `keys` from one node (`RemoveTagsFromResource`,
    /// ResourceType `ManagedInstance`).
    fn remove_tags(
        &self,
        id: &str,
        keys: &[String],
        calls: &CallLog,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;
}

impl<T: InstancePort + ?Sized> InstancePort for &T {
    fn describe(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> impl Future<Output = Result<Vec<InstanceFacts>, FleetError>> + Send {
        (**self).describe(ids, calls)
    }
    fn page(
        &self,
        token: Option<String>,
        calls: &CallLog,
    ) -> impl Future<Output = Result<Page, FleetError>> + Send {
        (**self).page(token, calls)
    }
    fn create_tags(
        &self,
        ids: &[String],
        tags: &[(String, String)],
        calls: &CallLog,
    ) -> impl Future<Output = Result<(), FleetError>> + Send {
        (**self).create_tags(ids, tags, calls)
    }
    fn delete_tags(
        &self,
        ids: &[String],
        keys: &[String],
        calls: &CallLog,
    ) -> impl Future<Output = Result<(), FleetError>> + Send {
        (**self).delete_tags(ids, keys, calls)
    }
}

impl<T: ManagedPort + ?Sized> ManagedPort for &T {
    fn describe(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> impl Future<Output = Result<Vec<InstanceFacts>, FleetError>> + Send {
        (**self).describe(ids, calls)
    }
    fn page(
        &self,
        token: Option<String>,
        calls: &CallLog,
    ) -> impl Future<Output = Result<Page, FleetError>> + Send {
        (**self).page(token, calls)
    }
    fn add_tags(
        &self,
        id: &str,
        tags: &[(String, String)],
        calls: &CallLog,
    ) -> impl Future<Output = Result<(), FleetError>> + Send {
        (**self).add_tags(id, tags, calls)
    }
    fn remove_tags(
        &self,
        id: &str,
        keys: &[String],
        calls: &CallLog,
    ) -> impl Future<Output = Result<(), FleetError>> + Send {
        (**self).remove_tags(id, keys, calls)
    }
}

/// The adapters the fleet functions work with: EC2 and SSM managed nodes.
#[derive(Debug, Clone)]
pub struct FleetAdapters<E, M> {
    pub ec2: E,
    pub managed: M,
}

#[derive(Debug, Error)]
pub enum FleetError {
    /// An AWS call failed (not a throttle: the SDK retries those).
    #[error("{doing}: {source}")]
    Aws {
        doing: String,
        #[source]
        source: AwsError,
    },
    /// EC2 still answered `InvalidInstanceID.NotFound` after the bounded retries.
    #[error("EC2 does not know instance(s) {} after {attempts} DescribeInstances attempts over {waited:?} ({message}); failing so that EventBridge retries the event later", ids.join(", "))]
    NotVisible {
        ids: Vec<String>,
        attempts: u32,
        waited: Duration,
        message: String,
    },
    /// A request could not be built (a required field was missing).
    #[error("cannot build an AWS request: {message}")]
    Request { message: String },
    /// An id that is neither an EC2 instance (`i-…`) nor a managed node (`mi-…`).
    #[error("`{id}` is not an EC2 instance id (i-…) nor an SSM managed node id (mi-…)")]
    UnsupportedId { id: String },
}

impl FleetError {
    pub fn aws(doing: impl Into<String>, source: AwsError) -> FleetError {
        FleetError::Aws {
            doing: doing.into(),
            source,
        }
    }
}

/// What happened to one instance's Patch Group tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The tag (and the ownership marker) was written.
    Tagged,
    /// Dry run: the tag would be written.
    WouldTag,
    /// The tag already had the right value: no write.
    Unchanged,
    /// A person set a different value and the policy does not say `overwrite: true`.
    RespectedManual,
    /// Excluded, and the Patch Group tag was patchpilot's: it and the ownership marker were
    /// removed, so no maintenance window patches the instance any more.
    Untagged,
    /// Dry run: patchpilot's Patch Group tag would be removed (excluded instance).
    WouldUntag,
    /// The exclusion tag is present and there is no tag of patchpilot's to remove (a Patch
    /// Group tag set by a person is kept and reported in the reason).
    Excluded,
    /// No patch group can be derived (no environment, unknown OS, no batch…).
    Unmatched,
    /// Terminated, shutting down, or no longer registered with SSM.
    Gone,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Tagged => "tagged",
            Action::WouldTag => "would-tag",
            Action::Unchanged => "unchanged",
            Action::RespectedManual => "respected-manual",
            Action::Untagged => "untagged",
            Action::WouldUntag => "would-untag",
            Action::Excluded => "excluded",
            Action::Unmatched => "unmatched",
            Action::Gone => "gone",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagOutcome {
    pub instance_id: String,
    pub action: Action,
    /// The patch group the instance belongs to (what is, or would be, on the tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_group: Option<String>,
    /// Why nothing was written (respected-manual, excluded, unmatched, gone), or why the tag
    /// was removed (untagged, would-untag; names the removed value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which API a tag write goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    /// EC2 `CreateTags` / `DeleteTags`, up to 1000 instances per call.
    Ec2Instance,
    /// SSM `AddTagsToResource` / `RemoveTagsFromResource`, one node per call.
    ManagedInstance,
}

/// What a tag write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagOperation {
    /// Set the Patch Group tag and the ownership marker (`CreateTags` /
    /// `AddTagsToResource`).
    Create,
    /// Remove patchpilot's Patch Group tag and the ownership marker from excluded instances
    /// (`DeleteTags` / `RemoveTagsFromResource`).
    Delete,
}

/// One write call (made, or planned in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagWrite {
    pub resource: ResourceKind,
    pub operation: TagOperation,
    /// The value written (`create`). Absent for `delete`: one key-only `DeleteTags` call
    /// removes whatever values its instances had (each outcome's reason names its value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_group: Option<String>,
    pub instance_ids: Vec<String>,
    pub applied: bool,
}

/// The result of [`sweep`]: counts per action, the writes, and every instance that needs a
/// person's attention (respected manual tags, exclusions, unmatched) with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub dry_run: bool,
    /// Instances seen (EC2 and managed nodes).
    pub instances: u32,
    pub counts: BTreeMap<Action, u32>,
    /// One entry per write call (`CreateTags` / `AddTagsToResource` / `DeleteTags` /
    /// `RemoveTagsFromResource`).
    pub writes: Vec<TagWrite>,
    /// Outcomes other than tagged / would-tag / unchanged / gone: respected-manual,
    /// untagged / would-untag, excluded, unmatched.
    pub attention: Vec<TagOutcome>,
}

impl SweepReport {
    /// Number of write calls made (0 in a dry run).
    pub fn write_calls(&self) -> usize {
        self.writes.iter().filter(|w| w.applied).count()
    }

    pub fn count(&self, action: Action) -> u32 {
        self.counts.get(&action).copied().unwrap_or(0)
    }
}

/// A write one instance needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    /// Set the Patch Group tag to this value (with the ownership marker).
    Tag(String),
    /// Remove patchpilot's Patch Group tag and the ownership marker.
    Untag,
}

/// The decision about one instance and the write it needs, if any.
fn decide(policy: &Policy, owner: &Owner, facts: &InstanceFacts) -> (TagOutcome, Option<Write>) {
    let decision = classify(policy, facts);
    let group = match &decision {
        Decision::Group { group, .. } => Some(group.to_string()),
        _ => None,
    };
    let outcome = |action, reason| TagOutcome {
        instance_id: facts.instance_id.clone(),
        action,
        patch_group: group.clone(),
        reason,
    };
    match tag_action(policy, owner, facts, &decision) {
        TagAction::Tag { value } => (outcome(Action::Tagged, None), Some(Write::Tag(value))),
        TagAction::Unchanged => (outcome(Action::Unchanged, None), None),
        TagAction::RespectManual {
            current,
            wanted,
            set_by,
        } => (
            outcome(
                Action::RespectedManual,
                Some(format!(
                    "{} is `{current}`, set by {}; patchpilot would set `{wanted}`; set `overwrite: true` in the policy to replace it",
                    policy.tag_key,
                    crate::classify::setter(&set_by)
                )),
            ),
            None,
        ),
        TagAction::Untag { current: _, reason } => {
            (outcome(Action::Untagged, Some(reason)), Some(Write::Untag))
        }
        TagAction::Skip { reason } => {
            let action = match decision {
                Decision::Excluded { .. } => Action::Excluded,
                _ => Action::Unmatched,
            };
            (outcome(action, Some(reason)), None)
        }
        TagAction::Gone => (
            outcome(
                Action::Gone,
                Some(format!(
                    "instance is {}",
                    facts.state.as_deref().unwrap_or("gone")
                )),
            ),
            None,
        ),
    }
}

fn gone(id: &str, reason: &str) -> TagOutcome {
    TagOutcome {
        instance_id: id.to_string(),
        action: Action::Gone,
        patch_group: None,
        reason: Some(reason.to_string()),
    }
}

fn log_outcome(o: &TagOutcome) {
    info!(
        instance_id = %o.instance_id,
        action = %o.action,
        patch_group = o.patch_group.as_deref().unwrap_or(""),
        reason = o.reason.as_deref().unwrap_or(""),
        "patch group tag"
    );
}

fn tag_set(policy: &Policy, owner: &Owner, value: &str) -> Vec<(String, String)> {
    let (key, stack) = owner.tag();
    vec![
        (policy.tag_key.clone(), value.to_string()),
        (key.to_string(), stack.to_string()),
    ]
}

/// The keys patchpilot removes from an excluded instance: exactly the keys it writes (and the
/// only ones the template's IAM condition lets it delete).
fn untag_keys(policy: &Policy) -> Vec<String> {
    vec![policy.tag_key.clone(), OWNERSHIP_TAG_KEY.to_string()]
}

/// Writes waiting to be made: EC2 ids by value, managed nodes one by one; removals likewise.
#[derive(Default)]
struct PendingWrites {
    ec2: BTreeMap<String, Vec<String>>,
    managed: Vec<(String, String)>,
    ec2_untag: Vec<String>,
    managed_untag: Vec<String>,
}

impl PendingWrites {
    /// Make (or in a dry run, list) every pending write: first the removals from excluded
    /// instances (one `DeleteTags` per 1000 instances, one `RemoveTagsFromResource` per
    /// node), then the tags (one `CreateTags` per distinct value per 1000 instances, one
    /// `AddTagsToResource` per node).
    async fn flush<E: InstancePort, M: ManagedPort>(
        self,
        policy: &Policy,
        owner: &Owner,
        adapters: &FleetAdapters<E, M>,
        calls: &CallLog,
        dry_run: bool,
    ) -> Result<Vec<TagWrite>, FleetError> {
        let mut writes = Vec::new();
        let keys = untag_keys(policy);
        for chunk in self.ec2_untag.chunks(DELETE_TAGS_MAX_IDS) {
            if !dry_run {
                adapters.ec2.delete_tags(chunk, &keys, calls).await?;
                info!(
                    instances = chunk.len(),
                    instance_ids = %chunk.join(","),
                    tag_keys = %keys.join(","),
                    "DeleteTags: excluded instances no longer in a patch group"
                );
            }
            writes.push(TagWrite {
                resource: ResourceKind::Ec2Instance,
                operation: TagOperation::Delete,
                patch_group: None,
                instance_ids: chunk.to_vec(),
                applied: !dry_run,
            });
        }
        for id in self.managed_untag {
            if !dry_run {
                adapters.managed.remove_tags(&id, &keys, calls).await?;
                info!(
                    instance_id = %id,
                    tag_keys = %keys.join(","),
                    "RemoveTagsFromResource: excluded node no longer in a patch group"
                );
            }
            writes.push(TagWrite {
                resource: ResourceKind::ManagedInstance,
                operation: TagOperation::Delete,
                patch_group: None,
                instance_ids: vec![id],
                applied: !dry_run,
            });
        }
        for (value, ids) in self.ec2 {
            let tags = tag_set(policy, owner, &value);
            for chunk in ids.chunks(CREATE_TAGS_MAX_IDS) {
                if !dry_run {
                    adapters.ec2.create_tags(chunk, &tags, calls).await?;
                    info!(patch_group = %value, instances = chunk.len(), "CreateTags");
                }
                writes.push(TagWrite {
                    resource: ResourceKind::Ec2Instance,
                    operation: TagOperation::Create,
                    patch_group: Some(value.clone()),
                    instance_ids: chunk.to_vec(),
                    applied: !dry_run,
                });
            }
        }
        for (id, value) in self.managed {
            if !dry_run {
                adapters
                    .managed
                    .add_tags(&id, &tag_set(policy, owner, &value), calls)
                    .await?;
                info!(instance_id = %id, patch_group = %value, "AddTagsToResource");
            }
            writes.push(TagWrite {
                resource: ResourceKind::ManagedInstance,
                operation: TagOperation::Create,
                patch_group: Some(value),
                instance_ids: vec![id],
                applied: !dry_run,
            });
        }
        Ok(writes)
    }

    fn push(&mut self, kind: ResourceKind, id: &str, write: Write) {
        let id = id.to_string();
        match (kind, write) {
            (ResourceKind::Ec2Instance, Write::Tag(value)) => {
                self.ec2.entry(value).or_default().push(id)
            }
            (ResourceKind::ManagedInstance, Write::Tag(value)) => self.managed.push((id, value)),
            (ResourceKind::Ec2Instance, Write::Untag) => self.ec2_untag.push(id),
            (ResourceKind::ManagedInstance, Write::Untag) => self.managed_untag.push(id),
        }
    }
}

fn kind_of(id: &str) -> Result<ResourceKind, FleetError> {
    if id.starts_with("i-") {
        Ok(ResourceKind::Ec2Instance)
    } else if id.starts_with("mi-") {
        Ok(ResourceKind::ManagedInstance)
    } else {
        Err(FleetError::UnsupportedId { id: id.to_string() })
    }
}

/// Tag the instances named by an event: one describe for the EC2 ids, one for the managed
/// nodes, then at most one write per distinct value (EC2) or per node (managed); excluded
/// instances carrying patchpilot's tag lose it (one `DeleteTags` for all of them, or one
/// `RemoveTagsFromResource` per node). Outcomes are in the order of `ids` (duplicates
/// removed).
pub async fn tag_instances<E: InstancePort, M: ManagedPort>(
    ids: &[String],
    policy: &Policy,
    owner: &Owner,
    adapters: &FleetAdapters<E, M>,
    calls: &CallLog,
) -> Result<Vec<TagOutcome>, FleetError> {
    let mut seen = BTreeSet::new();
    let mut ec2_ids = Vec::new();
    let mut managed_ids = Vec::new();
    let mut order = Vec::new();
    for id in ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        match kind_of(id)? {
            ResourceKind::Ec2Instance => ec2_ids.push(id.clone()),
            ResourceKind::ManagedInstance => managed_ids.push(id.clone()),
        }
        order.push(id.clone());
    }

    let mut facts = Vec::new();
    if !ec2_ids.is_empty() {
        facts.extend(adapters.ec2.describe(&ec2_ids, calls).await?);
    }
    if !managed_ids.is_empty() {
        facts.extend(adapters.managed.describe(&managed_ids, calls).await?);
    }

    let mut by_id: BTreeMap<String, TagOutcome> = BTreeMap::new();
    let mut pending = PendingWrites::default();
    for f in &facts {
        let (outcome, write) = decide(policy, owner, f);
        if let Some(write) = write {
            pending.push(kind_of(&f.instance_id)?, &f.instance_id, write);
        }
        by_id.insert(f.instance_id.clone(), outcome);
    }
    pending.flush(policy, owner, adapters, calls, false).await?;

    let outcomes: Vec<TagOutcome> = order
        .iter()
        .map(|id| {
            by_id.remove(id).unwrap_or_else(|| {
                let reason = if id.starts_with("mi-") {
                    "not registered with SSM (deregistered?)"
                } else {
                    "not returned by EC2 DescribeInstances"
                };
                gone(id, reason)
            })
        })
        .collect();
    outcomes.iter().for_each(log_outcome);
    Ok(outcomes)
}

/// Tags of one instance known better than a read gives them: EC2's `DescribeInstances` is
/// eventually consistent (Amazon EC2 API Reference, "Eventual consistency in the Amazon EC2
/// API"), so a read right after a tag change may still show the old tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownTags {
    /// The instance's tags as a `Tag Change on Resource` event carried them (`detail.tags`:
    /// every tag of the resource after the change). Decide from these, except the Patch
    /// Group key and the ownership marker.
    pub tags: BTreeMap<String, String>,
    /// The Patch Group key and marker as patchpilot itself just wrote them (read-after-write
    /// from our own `CreateTags` / `DeleteTags`); `None`: as the read shows them.
    pub own: Option<BTreeMap<String, String>>,
}

impl KnownTags {
    /// What the Patch Group key and the marker are after `outcome` was applied.
    pub fn after(mut self, outcome: &TagOutcome, policy: &Policy, owner: &Owner) -> KnownTags {
        let mut own = BTreeMap::new();
        if outcome.action == Action::Tagged {
            if let Some(g) = &outcome.patch_group {
                own.insert(policy.tag_key.clone(), g.clone());
                own.insert(OWNERSHIP_TAG_KEY.to_string(), owner.stack().to_string());
            }
        }
        self.own = Some(own);
        self
    }
}

/// Tag one instance from [`KnownTags`] rather than from the read alone: one describe (for
/// the platform facts and, unless known, patchpilot's own keys), then at most one write.
pub async fn tag_instance_known<E: InstancePort, M: ManagedPort>(
    id: &str,
    known: &KnownTags,
    policy: &Policy,
    owner: &Owner,
    adapters: &FleetAdapters<E, M>,
    calls: &CallLog,
) -> Result<TagOutcome, FleetError> {
    let kind = kind_of(id)?;
    let ids = [id.to_string()];
    let facts = match kind {
        ResourceKind::Ec2Instance => adapters.ec2.describe(&ids, calls).await?,
        ResourceKind::ManagedInstance => adapters.managed.describe(&ids, calls).await?,
    };
    let Some(mut f) = facts.into_iter().find(|f| f.instance_id == id) else {
        let outcome = gone(id, "not returned by EC2 DescribeInstances");
        log_outcome(&outcome);
        return Ok(outcome);
    };
    let own_keys = [policy.tag_key.as_str(), OWNERSHIP_TAG_KEY];
    let mut tags: BTreeMap<String, String> = known
        .tags
        .iter()
        .filter(|(k, _)| !own_keys.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let own = known.own.as_ref().unwrap_or(&f.tags);
    for key in own_keys {
        if let Some(v) = own.get(key) {
            tags.insert(key.to_string(), v.clone());
        }
    }
    if kind == ResourceKind::Ec2Instance {
        f.name = tags.get("Name").cloned();
    }
    f.tags = tags;
    let (outcome, write) = decide(policy, owner, &f);
    let mut pending = PendingWrites::default();
    if let Some(write) = write {
        pending.push(kind, id, write);
    }
    pending.flush(policy, owner, adapters, calls, false).await?;
    log_outcome(&outcome);
    Ok(outcome)
}

/// Sweep the whole fleet (every EC2 instance that is not terminated, every managed node) and
/// fix missing or wrong Patch Group tags, removing patchpilot's own tag from excluded
/// instances. Pages are read first, then the writes are made grouped by value across the
/// whole fleet: 2,000 untagged instances in two patch groups cost two `CreateTags` calls.
/// `dry_run` plans the writes without making them.
pub async fn sweep<E: InstancePort, M: ManagedPort>(
    policy: &Policy,
    owner: &Owner,
    adapters: &FleetAdapters<E, M>,
    calls: &CallLog,
    dry_run: bool,
) -> Result<SweepReport, FleetError> {
    let mut counts: BTreeMap<Action, u32> = BTreeMap::new();
    let mut attention = Vec::new();
    let mut pending = PendingWrites::default();
    let mut instances = 0u32;

    let mut consider = |kind: ResourceKind, f: &InstanceFacts| {
        instances += 1;
        let (mut outcome, write) = decide(policy, owner, f);
        if let Some(write) = write {
            if dry_run {
                outcome.action = match write {
                    Write::Tag(_) => Action::WouldTag,
                    Write::Untag => Action::WouldUntag,
                };
            }
            pending.push(kind, &f.instance_id, write);
        }
        *counts.entry(outcome.action).or_insert(0) += 1;
        if matches!(
            outcome.action,
            Action::RespectedManual
                | Action::Untagged
                | Action::WouldUntag
                | Action::Excluded
                | Action::Unmatched
        ) {
            log_outcome(&outcome);
            attention.push(outcome);
        }
    };

    let mut token = None;
    loop {
        let page = adapters.ec2.page(token, calls).await?;
        page.instances
            .iter()
            .for_each(|f| consider(ResourceKind::Ec2Instance, f));
        token = page.next_token.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let mut token = None;
    loop {
        let page = adapters.managed.page(token, calls).await?;
        page.instances
            .iter()
            .for_each(|f| consider(ResourceKind::ManagedInstance, f));
        token = page.next_token.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }

    let writes = pending
        .flush(policy, owner, adapters, calls, dry_run)
        .await?;
    let report = SweepReport {
        dry_run,
        instances,
        counts,
        writes,
        attention,
    };
    info!(
        dry_run,
        instances = report.instances,
        write_calls = report.write_calls(),
        counts = %serde_json::to_string(&report.counts).unwrap_or_default(),
        "fleet sweep"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::FactsSource;
    use std::sync::Mutex;

    /// One recorded tag write: the ids and the tags.
    type Recorded = (Vec<String>, Vec<(String, String)>);
    /// One recorded removal: the ids and the keys.
    type Removal = (Vec<String>, Vec<String>);

    /// An in-memory fleet: instances by id, pages of `page_size`, every write recorded.
    #[derive(Default)]
    struct FakeFleet {
        instances: Vec<InstanceFacts>,
        page_size: usize,
        writes: Mutex<Vec<Recorded>>,
        removals: Mutex<Vec<Removal>>,
    }

    impl FakeFleet {
        fn new(instances: Vec<InstanceFacts>, page_size: usize) -> FakeFleet {
            FakeFleet {
                instances,
                page_size,
                writes: Mutex::new(Vec::new()),
                removals: Mutex::new(Vec::new()),
            }
        }

        fn writes(&self) -> Vec<Recorded> {
            self.writes.lock().expect("lock").clone()
        }

        fn removals(&self) -> Vec<Removal> {
            self.removals.lock().expect("lock").clone()
        }

        fn record_removal(&self, ids: &[String], keys: &[String]) {
            self.removals
                .lock()
                .expect("lock")
                .push((ids.to_vec(), keys.to_vec()));
        }

        fn describe_ids(&self, ids: &[String]) -> Vec<InstanceFacts> {
            self.instances
                .iter()
                .filter(|f| ids.contains(&f.instance_id))
                .cloned()
                .collect()
        }

        fn page_at(&self, token: Option<String>) -> Page {
            let start: usize = token.and_then(|t| t.parse().ok()).unwrap_or(0);
            let end = (start + self.page_size).min(self.instances.len());
            Page {
                instances: self.instances[start..end].to_vec(),
                next_token: (end < self.instances.len()).then(|| end.to_string()),
            }
        }

        fn record(&self, ids: &[String], tags: &[(String, String)]) {
            self.writes
                .lock()
                .expect("lock")
                .push((ids.to_vec(), tags.to_vec()));
        }
    }

    impl InstancePort for FakeFleet {
        async fn describe(
            &self,
            ids: &[String],
            calls: &CallLog,
        ) -> Result<Vec<InstanceFacts>, FleetError> {
            calls.record("DescribeInstances");
            Ok(self.describe_ids(ids))
        }
        async fn page(&self, token: Option<String>, calls: &CallLog) -> Result<Page, FleetError> {
            calls.record("DescribeInstances");
            Ok(self.page_at(token))
        }
        async fn create_tags(
            &self,
            ids: &[String],
            tags: &[(String, String)],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            assert!(ids.len() <= CREATE_TAGS_MAX_IDS, "{} ids", ids.len());
            calls.record("CreateTags");
            self.record(ids, tags);
            Ok(())
        }
        async fn delete_tags(
            &self,
            ids: &[String],
            keys: &[String],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            assert!(ids.len() <= DELETE_TAGS_MAX_IDS, "{} ids", ids.len());
            calls.record("DeleteTags");
            self.record_removal(ids, keys);
            Ok(())
        }
    }

    impl ManagedPort for FakeFleet {
        async fn describe(
            &self,
            ids: &[String],
            calls: &CallLog,
        ) -> Result<Vec<InstanceFacts>, FleetError> {
            calls.record("DescribeInstanceInformation");
            Ok(self.describe_ids(ids))
        }
        async fn page(&self, token: Option<String>, calls: &CallLog) -> Result<Page, FleetError> {
            calls.record("DescribeInstanceInformation");
            Ok(self.page_at(token))
        }
        async fn add_tags(
            &self,
            id: &str,
            tags: &[(String, String)],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            calls.record("AddTagsToResource");
            self.record(&[id.to_string()], tags);
            Ok(())
        }
        async fn remove_tags(
            &self,
            id: &str,
            keys: &[String],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            calls.record("RemoveTagsFromResource");
            self.record_removal(&[id.to_string()], keys);
            Ok(())
        }
    }

    fn ec2(id: &str, name: &str, details: &str, tags: &[(&str, &str)]) -> InstanceFacts {
        let mut t: BTreeMap<String, String> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        t.insert("Name".to_string(), name.to_string());
        InstanceFacts {
            instance_id: id.to_string(),
            source: FactsSource::Ec2 {
                platform: details
                    .starts_with("Windows")
                    .then(|| "windows".to_string()),
                platform_details: Some(details.to_string()),
                instance_type: Some("t3.micro".to_string()),
            },
            name: None,
            tags: t,
            state: Some("running".to_string()),
        }
    }

    fn linux(id: &str, env: &str) -> InstanceFacts {
        ec2(id, &format!("web-{env}"), "Linux/UNIX", &[])
    }

    fn windows(id: &str, env: &str) -> InstanceFacts {
        ec2(id, &format!("app-{env}"), "Windows", &[])
    }

    fn managed(id: &str, name: &str) -> InstanceFacts {
        InstanceFacts {
            instance_id: id.to_string(),
            source: FactsSource::ManagedInstance {
                platform_type: Some("Linux".to_string()),
                platform_name: Some("Ubuntu".to_string()),
                platform_version: Some("22.04".to_string()),
            },
            name: Some(name.to_string()),
            tags: BTreeMap::new(),
            state: None,
        }
    }

    fn adapters(fleet: &FakeFleet) -> FleetAdapters<Ec2Only<'_>, ManagedOnly<'_>> {
        FleetAdapters {
            ec2: Ec2Only(fleet),
            managed: ManagedOnly(fleet),
        }
    }

    /// The managed side of the fake: only `mi-*` facts.
    struct ManagedOnly<'a>(&'a FakeFleet);

    impl ManagedPort for ManagedOnly<'_> {
        async fn describe(
            &self,
            ids: &[String],
            calls: &CallLog,
        ) -> Result<Vec<InstanceFacts>, FleetError> {
            ManagedPort::describe(self.0, ids, calls).await
        }
        async fn page(&self, token: Option<String>, calls: &CallLog) -> Result<Page, FleetError> {
            calls.record("DescribeInstanceInformation");
            let _ = token;
            Ok(Page {
                instances: self
                    .0
                    .instances
                    .iter()
                    .filter(|f| f.instance_id.starts_with("mi-"))
                    .cloned()
                    .collect(),
                next_token: None,
            })
        }
        async fn add_tags(
            &self,
            id: &str,
            tags: &[(String, String)],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            self.0.add_tags(id, tags, calls).await
        }
        async fn remove_tags(
            &self,
            id: &str,
            keys: &[String],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            self.0.remove_tags(id, keys, calls).await
        }
    }

    /// The EC2 side of the fake: only `i-*` facts.
    struct Ec2Only<'a>(&'a FakeFleet);

    impl InstancePort for Ec2Only<'_> {
        async fn describe(
            &self,
            ids: &[String],
            calls: &CallLog,
        ) -> Result<Vec<InstanceFacts>, FleetError> {
            InstancePort::describe(self.0, ids, calls).await
        }
        async fn page(&self, token: Option<String>, calls: &CallLog) -> Result<Page, FleetError> {
            let mut page = InstancePort::page(self.0, token, calls).await?;
            page.instances.retain(|f| f.instance_id.starts_with("i-"));
            Ok(page)
        }
        async fn create_tags(
            &self,
            ids: &[String],
            tags: &[(String, String)],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            self.0.create_tags(ids, tags, calls).await
        }
        async fn delete_tags(
            &self,
            ids: &[String],
            keys: &[String],
            calls: &CallLog,
        ) -> Result<(), FleetError> {
            self.0.delete_tags(ids, keys, calls).await
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn one_event_with_several_instances_makes_one_write_per_patch_group() {
        let fleet = FakeFleet::new(
            vec![
                linux("i-01", "test"),
                linux("i-02", "test"),
                windows("i-03", "test"),
                linux("i-04", "prod"),
            ],
            100,
        );
        let calls = CallLog::new();
        let policy = Policy::reference();
        let outcomes = run(tag_instances(
            &ids(&["i-01", "i-02", "i-03", "i-04", "i-01"]),
            &policy,
            &Owner::default(),
            &adapters(&fleet),
            &calls,
        ))
        .expect("tagged");
        assert_eq!(outcomes.len(), 4, "duplicates removed");
        assert!(outcomes.iter().all(|o| o.action == Action::Tagged));
        assert_eq!(
            outcomes
                .iter()
                .map(|o| o.patch_group.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
            [
                "patch_test_0600_batch_1",
                "patch_test_0600_batch_1",
                "patch_test_0600_batch_2",
                "patch_prod_0600_batch_1"
            ]
        );
        let summary = calls.summary();
        assert_eq!(summary.by_operation.get("DescribeInstances"), Some(&1));
        assert_eq!(summary.by_operation.get("CreateTags"), Some(&3));
        let writes = fleet.writes();
        let test_linux = writes
            .iter()
            .find(|(_, tags)| tags[0].1 == "patch_test_0600_batch_1")
            .expect("a write for the Linux test group");
        assert_eq!(test_linux.0, ids(&["i-01", "i-02"]));
        assert_eq!(
            test_linux.1,
            vec![
                (
                    "Patch Group".to_string(),
                    "patch_test_0600_batch_1".to_string()
                ),
                ("patchpilot:managed".to_string(), "patchpilot".to_string()),
            ]
        );
    }

    #[test]
    fn an_instance_already_tagged_right_costs_no_write() {
        let mut facts = linux("i-01", "test");
        facts.tags.insert(
            "Patch Group".to_string(),
            "patch_test_0600_batch_1".to_string(),
        );
        let fleet = FakeFleet::new(vec![facts], 100);
        let calls = CallLog::new();
        let outcomes = run(tag_instances(
            &ids(&["i-01"]),
            &Policy::reference(),
            &Owner::default(),
            &adapters(&fleet),
            &calls,
        ))
        .expect("ok");
        assert_eq!(outcomes[0].action, Action::Unchanged);
        assert_eq!(calls.summary().writes, 0);
    }

    #[test]
    fn manual_excluded_unmatched_and_gone_are_reported_with_reasons_and_never_written() {
        let manual = ec2(
            "i-01",
            "db-prod",
            "Linux/UNIX",
            &[("Patch Group", "dba-special")],
        );
        let excluded = ec2(
            "i-02",
            "db-prod",
            "Linux/UNIX",
            &[("patchpilot:exclude", "yes")],
        );
        let unmatched = ec2("i-03", "jumphost", "Linux/UNIX", &[]);
        let mut terminated = linux("i-04", "test");
        terminated.state = Some("terminated".to_string());
        let fleet = FakeFleet::new(vec![manual, excluded, unmatched, terminated], 100);
        let calls = CallLog::new();
        let outcomes = run(tag_instances(
            &ids(&["i-01", "i-02", "i-03", "i-04", "mi-00000000000000001"]),
            &Policy::reference(),
            &Owner::default(),
            &adapters(&fleet),
            &calls,
        ))
        .expect("ok");
        let actions: Vec<Action> = outcomes.iter().map(|o| o.action).collect();
        assert_eq!(
            actions,
            [
                Action::RespectedManual,
                Action::Excluded,
                Action::Unmatched,
                Action::Gone,
                Action::Gone
            ]
        );
        let reason = |i: usize| outcomes[i].reason.clone().unwrap_or_default();
        assert!(
            reason(0).contains("dba-special") && reason(0).contains("overwrite"),
            "{}",
            reason(0)
        );
        assert!(reason(1).contains("patchpilot:exclude"), "{}", reason(1));
        assert!(
            reason(2).contains("no environment matched"),
            "{}",
            reason(2)
        );
        assert!(reason(3).contains("terminated"), "{}", reason(3));
        assert!(reason(4).contains("not registered"), "{}", reason(4));
        assert_eq!(calls.summary().writes, 0);
        assert!(fleet.writes().is_empty());
    }

    #[test]
    fn managed_nodes_are_tagged_one_call_each() {
        let fleet = FakeFleet::new(
            vec![
                managed("mi-0123456789abcdef0", "db-onprem-prod"),
                linux("i-01", "prod"),
            ],
            100,
        );
        let calls = CallLog::new();
        let outcomes = run(tag_instances(
            &ids(&["mi-0123456789abcdef0", "i-01"]),
            &Policy::reference(),
            &Owner::default(),
            &adapters(&fleet),
            &calls,
        ))
        .expect("ok");
        assert_eq!(outcomes[0].action, Action::Tagged);
        assert_eq!(
            outcomes[0].patch_group.as_deref(),
            Some("patch_prod_0600_batch_1")
        );
        let by_op = calls.summary().by_operation;
        assert_eq!(by_op.get("AddTagsToResource"), Some(&1));
        assert_eq!(by_op.get("CreateTags"), Some(&1));
        assert_eq!(by_op.get("DescribeInstanceInformation"), Some(&1));
    }

    #[test]
    fn an_id_of_another_kind_of_resource_is_an_error() {
        let fleet = FakeFleet::new(Vec::new(), 100);
        let err = run(tag_instances(
            &ids(&["vol-0123456789abcdef0"]),
            &Policy::reference(),
            &Owner::default(),
            &adapters(&fleet),
            &CallLog::new(),
        ))
        .expect_err("volumes are not instances");
        assert!(err.to_string().contains("vol-0123456789abcdef0"), "{err}");
    }

    fn big_fleet(n: usize) -> Vec<InstanceFacts> {
        (0..n)
            .map(|i| {
                let id = format!("i-{i:017x}");
                if i % 2 == 0 {
                    linux(&id, "test")
                } else {
                    windows(&id, "prod")
                }
            })
            .collect()
    }

    #[test]
    fn sweep_of_2500_instances_writes_one_call_per_value_per_1000() {
        let mut instances = big_fleet(2500);
        instances.push(managed("mi-0123456789abcdef0", "db-onprem-test"));
        let fleet = FakeFleet::new(instances, 1000);
        let calls = CallLog::new();
        let policy = Policy::reference();
        let report = run(sweep(
            &policy,
            &Owner::default(),
            &adapters(&fleet),
            &calls,
            false,
        ))
        .expect("swept");
        assert_eq!(report.instances, 2501);
        assert_eq!(report.count(Action::Tagged), 2501);
        // 1250 per value -> 2 chunks each (1000 + 250), plus one AddTagsToResource.
        let by_op = calls.summary().by_operation;
        assert_eq!(by_op.get("CreateTags"), Some(&4));
        assert_eq!(by_op.get("AddTagsToResource"), Some(&1));
        assert_eq!(report.write_calls(), 5);
        assert!(fleet.writes().iter().all(|(ids, _)| ids.len() <= 1000));
        let ec2_written: usize = report
            .writes
            .iter()
            .filter(|w| w.resource == ResourceKind::Ec2Instance)
            .map(|w| w.instance_ids.len())
            .sum();
        assert_eq!(ec2_written, 2500);
        // Three DescribeInstances pages (1000, 1000, 500).
        assert_eq!(by_op.get("DescribeInstances"), Some(&3));
    }

    #[test]
    fn a_dry_run_sweep_plans_the_same_writes_and_makes_none() {
        let fleet = FakeFleet::new(big_fleet(10), 4);
        let calls = CallLog::new();
        let report = run(sweep(
            &Policy::reference(),
            &Owner::default(),
            &adapters(&fleet),
            &calls,
            true,
        ))
        .expect("planned");
        assert!(report.dry_run);
        assert_eq!(report.count(Action::WouldTag), 10);
        assert_eq!(report.writes.len(), 2);
        assert!(report.writes.iter().all(|w| !w.applied));
        assert_eq!(report.write_calls(), 0);
        assert_eq!(calls.summary().writes, 0);
        assert!(fleet.writes().is_empty());
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["counts"]["would-tag"], 10);
        assert_eq!(json["writes"][0]["operation"], "create");
        assert_eq!(json["writes"][0]["resource"], "ec2-instance");
        assert!(json["writes"][0]["patch_group"].is_string());
    }

    /// An instance patchpilot tagged earlier (marker present), now excluded.
    fn excluded_owned(mut facts: InstanceFacts, group: &str) -> InstanceFacts {
        facts
            .tags
            .insert("Patch Group".to_string(), group.to_string());
        facts.tags.insert(
            OWNERSHIP_TAG_KEY.to_string(),
            crate::names::DEFAULT_STACK.to_string(),
        );
        facts
            .tags
            .insert("patchpilot:exclude".to_string(), "fragile".to_string());
        facts
    }

    fn keys() -> Vec<String> {
        ids(&["Patch Group", "patchpilot:managed"])
    }

    #[test]
    fn excluded_instances_lose_patchpilots_tag_in_one_delete_tags_call() {
        // Excluded, with a Patch Group tag a person set (no marker): kept.
        let manual = ec2(
            "i-03",
            "db-prod",
            "Linux/UNIX",
            &[
                ("Patch Group", "dba-special"),
                ("patchpilot:exclude", "yes"),
            ],
        );
        let node = excluded_owned(
            managed("mi-0123456789abcdef0", "db-onprem-prod"),
            "patch_prod_0600_batch_1",
        );
        let fleet = FakeFleet::new(
            vec![
                // Two different groups: still one key-only DeleteTags.
                excluded_owned(linux("i-01", "test"), "patch_test_0600_batch_1"),
                excluded_owned(windows("i-02", "prod"), "patch_prod_0600_batch_2"),
                manual,
                node,
                linux("i-04", "test"),
            ],
            100,
        );
        let calls = CallLog::new();
        let outcomes = run(tag_instances(
            &ids(&["i-01", "i-02", "i-03", "mi-0123456789abcdef0", "i-04"]),
            &Policy::reference(),
            &Owner::default(),
            &adapters(&fleet),
            &calls,
        ))
        .expect("ok");
        let actions: Vec<Action> = outcomes.iter().map(|o| o.action).collect();
        assert_eq!(
            actions,
            [
                Action::Untagged,
                Action::Untagged,
                Action::Excluded,
                Action::Untagged,
                Action::Tagged
            ]
        );
        let reason = |i: usize| outcomes[i].reason.clone().unwrap_or_default();
        assert!(
            reason(0).contains("patch_test_0600_batch_1"),
            "{}",
            reason(0)
        );
        assert!(
            reason(1).contains("patch_prod_0600_batch_2"),
            "{}",
            reason(1)
        );
        assert!(
            reason(2).contains("dba-special") && reason(2).contains("remove it by hand"),
            "{}",
            reason(2)
        );
        assert_eq!(outcomes[0].patch_group, None);
        let by_op = calls.summary().by_operation;
        assert_eq!(by_op.get("DeleteTags"), Some(&1));
        assert_eq!(by_op.get("RemoveTagsFromResource"), Some(&1));
        assert_eq!(by_op.get("CreateTags"), Some(&1));
        assert_eq!(by_op.get("AddTagsToResource"), None);
        assert_eq!(
            fleet.removals(),
            vec![
                (ids(&["i-01", "i-02"]), keys()),
                (ids(&["mi-0123456789abcdef0"]), keys()),
            ]
        );
        // The manual tag's instance is never in a write.
        assert!(fleet
            .writes()
            .iter()
            .all(|(w, _)| !w.contains(&"i-03".to_string())));
    }

    #[test]
    fn the_removed_keys_follow_the_policys_tag_key() {
        let mut policy = Policy::reference();
        policy.tag_key = "PatchGroup".to_string();
        let mut facts = linux("i-01", "prod");
        facts.tags.insert(
            "PatchGroup".to_string(),
            "patch_prod_0600_batch_1".to_string(),
        );
        facts.tags.insert(
            OWNERSHIP_TAG_KEY.to_string(),
            crate::names::DEFAULT_STACK.to_string(),
        );
        facts
            .tags
            .insert("patchpilot:exclude".to_string(), String::new());
        let fleet = FakeFleet::new(vec![facts], 100);
        let outcomes = run(tag_instances(
            &ids(&["i-01"]),
            &policy,
            &Owner::default(),
            &adapters(&fleet),
            &CallLog::new(),
        ))
        .expect("ok");
        assert_eq!(outcomes[0].action, Action::Untagged);
        assert_eq!(
            fleet.removals(),
            vec![(ids(&["i-01"]), ids(&["PatchGroup", "patchpilot:managed"]))]
        );
    }

    #[test]
    fn a_sweep_removes_patchpilots_tag_from_2500_excluded_instances_in_3_calls() {
        let mut instances: Vec<InstanceFacts> = big_fleet(2500)
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let group = if i % 2 == 0 {
                    "patch_test_0600_batch_1"
                } else {
                    "patch_prod_0600_batch_2"
                };
                excluded_owned(f, group)
            })
            .collect();
        instances.push(excluded_owned(
            managed("mi-0123456789abcdef0", "db-onprem-test"),
            "patch_test_0600_batch_1",
        ));
        let fleet = FakeFleet::new(instances, 1000);
        let policy = Policy::reference();

        let calls = CallLog::new();
        let dry = run(sweep(
            &policy,
            &Owner::default(),
            &adapters(&fleet),
            &calls,
            true,
        ))
        .expect("planned");
        assert_eq!(dry.count(Action::WouldUntag), 2501);
        assert_eq!(dry.attention.len(), 2501);
        assert_eq!(calls.summary().writes, 0);
        assert!(fleet.removals().is_empty());
        assert_eq!(
            dry.writes.len(),
            4,
            "3 DeleteTags + 1 RemoveTagsFromResource planned"
        );
        let json = serde_json::to_value(&dry).expect("serialisable");
        assert_eq!(json["counts"]["would-untag"], 2501);
        assert_eq!(json["writes"][0]["operation"], "delete");
        assert!(
            json["writes"][0].get("patch_group").is_none(),
            "{}",
            json["writes"][0]
        );

        let calls = CallLog::new();
        let report = run(sweep(
            &policy,
            &Owner::default(),
            &adapters(&fleet),
            &calls,
            false,
        ))
        .expect("swept");
        assert_eq!(report.count(Action::Untagged), 2501);
        let by_op = calls.summary().by_operation;
        assert_eq!(by_op.get("DeleteTags"), Some(&3), "1000 + 1000 + 500");
        assert_eq!(by_op.get("RemoveTagsFromResource"), Some(&1));
        assert_eq!(by_op.get("CreateTags"), None);
        assert_eq!(report.write_calls(), 4);
        let removals = fleet.removals();
        assert!(removals
            .iter()
            .all(|(ids, k)| ids.len() <= 1000 && *k == keys()));
        assert_eq!(
            removals.iter().map(|(ids, _)| ids.len()).sum::<usize>(),
            2501
        );
        assert!(report
            .writes
            .iter()
            .all(|w| w.operation == TagOperation::Delete && w.patch_group.is_none()));
    }

    #[test]
    fn a_sweep_of_a_tagged_fleet_writes_nothing_and_lists_what_needs_attention() {
        let mut instances: Vec<InstanceFacts> = big_fleet(6)
            .into_iter()
            .map(|mut f| {
                let group = if f.tag("Name").is_some_and(|n| n.ends_with("-test")) {
                    "patch_test_0600_batch_1"
                } else {
                    "patch_prod_0600_batch_2"
                };
                f.tags.insert("Patch Group".to_string(), group.to_string());
                f
            })
            .collect();
        instances.push(ec2("i-99", "jumphost", "Linux/UNIX", &[]));
        let fleet = FakeFleet::new(instances, 1000);
        let calls = CallLog::new();
        let report = run(sweep(
            &Policy::reference(),
            &Owner::default(),
            &adapters(&fleet),
            &calls,
            false,
        ))
        .expect("swept");
        assert_eq!(report.count(Action::Unchanged), 6);
        assert_eq!(report.count(Action::Unmatched), 1);
        assert_eq!(report.attention.len(), 1);
        assert_eq!(report.attention[0].instance_id, "i-99");
        assert!(report.writes.is_empty());
        assert_eq!(calls.summary().writes, 0);
    }
}
