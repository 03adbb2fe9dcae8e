//! SSM managed nodes adapter ([`crate::fleet::ManagedPort`]): on-premises / hybrid `mi-*`
//! nodes. `DescribeInstanceInformation` gives the OS the agent reports; it does not return
//! tags, so each node's tags come from `ListTagsForResource`, and tags are written with
//! `AddTagsToResource` and removed with `RemoveTagsFromResource` (ResourceType
//! `ManagedInstance`, one node per call — both APIs take one resource id).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ssm::types::{
    InstanceInformation, InstanceInformationStringFilter, ResourceTypeForTagging, Tag,
};
use tracing::{info, warn};

use super::ec2::NotFoundRetry;
use super::{AwsError, CallLog, Service};
use crate::classify::{FactsSource, InstanceFacts};
use crate::fleet::{FleetError, ManagedPort, Page};

/// The tags of one managed (`mi-*`) node: SSM has no batched tag read for managed nodes
/// (`ListTagsForResource`, ResourceType `ManagedInstance`), so this is one call per node.
pub async fn node_tags(
    client: &aws_sdk_ssm::Client,
    id: &str,
    calls: &CallLog,
) -> Result<BTreeMap<String, String>, AwsError> {
    calls.record("ListTagsForResource");
    let out = client
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(Service::Ssm, "ListTagsForResource", e).on(&[id]))?;
    Ok(out
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect())
}

/// What classification needs of a managed (`mi-*`) node: its platform as the agent reports it
/// (`DescribeInstanceInformation`) and its tags.
pub fn node_facts(
    id: &str,
    info: &InstanceInformation,
    tags: BTreeMap<String, String>,
) -> InstanceFacts {
    InstanceFacts {
        instance_id: id.to_string(),
        source: FactsSource::ManagedInstance {
            platform_type: info.platform_type().map(|p| p.as_str().to_string()),
            platform_name: info.platform_name().map(str::to_string),
            platform_version: info.platform_version().map(str::to_string),
        },
        // The `Name` tag first; then the name given at activation; then the host name.
        name: tags
            .get("Name")
            .cloned()
            .or_else(|| info.name().map(str::to_string))
            .or_else(|| info.computer_name().map(str::to_string)),
        tags,
        state: None,
    }
}

/// `DescribeInstanceInformation` `MaxResults` maximum (SSM API reference: 5–50).
const PAGE_SIZE: i32 = 50;
/// Values of one `InstanceIds` filter (SSM API reference, `InstanceInformationStringFilter`
/// `Values`: up to 100).
const IDS_PER_FILTER: usize = 100;

pub struct ManagedInstances {
    client: aws_sdk_ssm::Client,
    retry: NotFoundRetry,
}

fn build_error(e: aws_sdk_ssm::error::BuildError) -> FleetError {
    FleetError::Request {
        message: e.to_string(),
    }
}

impl ManagedInstances {
    pub fn new(config: &SdkConfig) -> ManagedInstances {
        ManagedInstances::from_client(crate::aws::ssm_client(config))
    }

    pub fn from_client(client: aws_sdk_ssm::Client) -> ManagedInstances {
        ManagedInstances {
            client,
            retry: NotFoundRetry::default(),
        }
    }

    /// How long to wait for a node that just registered to appear in
    /// `DescribeInstanceInformation` (tests shorten it).
    pub fn with_not_found_retry(mut self, retry: NotFoundRetry) -> ManagedInstances {
        self.retry = retry;
        self
    }

    /// One page of `DescribeInstanceInformation` with `filter`.
    async fn information_page(
        &self,
        filter: InstanceInformationStringFilter,
        token: Option<String>,
        calls: &CallLog,
    ) -> Result<(Vec<InstanceInformation>, Option<String>), FleetError> {
        calls.record("DescribeInstanceInformation");
        let out = self
            .client
            .describe_instance_information()
            .filters(filter)
            .max_results(PAGE_SIZE)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                FleetError::aws(
                    "listing SSM managed nodes",
                    AwsError::from_sdk(Service::Ssm, "DescribeInstanceInformation", e),
                )
            })?;
        Ok((
            out.instance_information_list().to_vec(),
            out.next_token.filter(|t| !t.is_empty()),
        ))
    }

    async fn information(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> Result<Vec<InstanceInformation>, FleetError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(IDS_PER_FILTER) {
            let mut token = None;
            loop {
                let filter = InstanceInformationStringFilter::builder()
                    .key("InstanceIds")
                    .set_values(Some(chunk.to_vec()))
                    .build()
                    .map_err(build_error)?;
                let (page, next) = self.information_page(filter, token, calls).await?;
                found.extend(page);
                token = next;
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(found)
    }

    async fn tags(
        &self,
        id: &str,
        calls: &CallLog,
    ) -> Result<BTreeMap<String, String>, FleetError> {
        node_tags(&self.client, id, calls)
            .await
            .map_err(|e| FleetError::aws(format!("reading the tags of managed node {id}"), e))
    }

    async fn facts(
        &self,
        infos: &[InstanceInformation],
        calls: &CallLog,
    ) -> Result<Vec<InstanceFacts>, FleetError> {
        let mut facts = Vec::with_capacity(infos.len());
        for info in infos {
            let Some(id) = info.instance_id() else {
                continue;
            };
            let tags = self.tags(id, calls).await?;
            facts.push(node_facts(id, info, tags));
        }
        Ok(facts)
    }
}

impl ManagedPort for ManagedInstances {
    /// Nodes SSM does not list yet are asked for again with backoff (a registration event
    /// can precede the node's visibility); still absent after the retries, they are left out
    /// (deregistered).
    async fn describe(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> Result<Vec<InstanceFacts>, FleetError> {
        let mut infos = Vec::new();
        let mut missing: Vec<String> = ids.to_vec();
        let mut attempt = 1;
        loop {
            let found = self.information(&missing, calls).await?;
            missing.retain(|id| !found.iter().any(|i| i.instance_id() == Some(id.as_str())));
            infos.extend(found);
            if missing.is_empty() || attempt >= self.retry.attempts {
                break;
            }
            let delay: Duration = self.retry.delay(attempt);
            warn!(
                instance_ids = %missing.join(","),
                attempt,
                delay_ms = delay.as_millis() as u64,
                "managed node not listed by DescribeInstanceInformation yet, retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
        self.facts(&infos, calls).await
    }

    async fn page(&self, token: Option<String>, calls: &CallLog) -> Result<Page, FleetError> {
        // EC2 instances are listed here too (ResourceType EC2Instance); they are swept through
        // DescribeInstances, whose facts name the AMI.
        let filter = InstanceInformationStringFilter::builder()
            .key("ResourceType")
            .values("ManagedInstance")
            .build()
            .map_err(build_error)?;
        let (infos, next_token) = self.information_page(filter, token, calls).await?;
        Ok(Page {
            instances: self.facts(&infos, calls).await?,
            next_token,
        })
    }

    async fn add_tags(
        &self,
        id: &str,
        tags: &[(String, String)],
        calls: &CallLog,
    ) -> Result<(), FleetError> {
        let tags = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<Tag>, _>>()
            .map_err(build_error)?;
        calls.record("AddTagsToResource");
        self.client
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::ManagedInstance)
            .resource_id(id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| {
                FleetError::aws(
                    format!("tagging managed node {id}"),
                    AwsError::from_sdk(Service::Ssm, "AddTagsToResource", e).on(&[id]),
                )
            })?;
        Ok(())
    }

    /// `RemoveTagsFromResource` takes `TagKeys` (keys only: the tags go whatever their
    /// values).
    async fn remove_tags(
        &self,
        id: &str,
        keys: &[String],
        calls: &CallLog,
    ) -> Result<(), FleetError> {
        if keys.is_empty() {
            return Err(FleetError::Request {
                message: format!("RemoveTagsFromResource for managed node {id} without tag keys"),
            });
        }
        calls.record("RemoveTagsFromResource");
        self.client
            .remove_tags_from_resource()
            .resource_type(ResourceTypeForTagging::ManagedInstance)
            .resource_id(id)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| {
                FleetError::aws(
                    format!("removing tags {} from managed node {id}", keys.join(", ")),
                    AwsError::from_sdk(Service::Ssm, "RemoveTagsFromResource", e).on(&[id]),
                )
            })?;
        info!(instance_id = %id, tag_keys = %keys.join(","), "RemoveTagsFromResource");
        Ok(())
    }
}
