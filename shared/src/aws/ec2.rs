//! EC2 adapter for the fleet ([`crate::fleet::InstancePort`]): `DescribeInstances` (by id,
//! with the eventual-consistency retry, or page by page) — the only read: the classifier
//! needs `Platform`, `InstanceType`, `PlatformDetails` and the tags, all in its answer —
//! `CreateTags` in batches of ≤ 1000 ids, and `DeleteTags` (keys only) in batches of ≤ 1000
//! ids for excluded instances.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, Instance, Tag};
use tracing::{info, warn};

use super::{AwsError, CallLog, Service};
use crate::classify::{FactsSource, InstanceFacts};
use crate::fleet::{FleetError, InstancePort, Page, CREATE_TAGS_MAX_IDS, DELETE_TAGS_MAX_IDS};

/// `DescribeInstances` `MaxResults` for the sweep (the API's maximum).
const PAGE_SIZE: i32 = 1000;
/// Every state an instance that will run again can be in: terminated and shutting-down
/// instances need no tag.
/// Up to this many ids are also sent as an `instance-id` filter (see `describe_once`): the
/// tagger's describes of one or a few instances, the ones a launch burst multiplies. A
/// larger describe (the sweep's, up to 1,000 ids) is rare and is sent by ids alone.
const ID_FILTER_MAX: usize = 200;
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// How long to wait for EC2 to see an instance it just launched.
///
/// EC2 is eventually consistent: "If you describe an instance right after launching it, you
/// might get `InvalidInstanceID.NotFound`" (EC2 API reference, "Eventual consistency"). The
/// state-change event of a launch can arrive before `DescribeInstances` knows the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFoundRetry {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Delay before the second attempt; doubled each time.
    pub initial_delay: Duration,
    /// Cap of one delay.
    pub max_delay: Duration,
}

impl Default for NotFoundRetry {
    /// 5 attempts, 200 ms doubling to at most 3 s: 200 + 400 + 800 + 1600 ms = 3 s of
    /// waiting, well inside the function's 30 s timeout.
    fn default() -> Self {
        NotFoundRetry {
            attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(3),
        }
    }
}

impl NotFoundRetry {
    /// Delay after failed attempt `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// `InvalidInstanceID.NotFound`: one or more of the ids is unknown (yet) to EC2.
const NOT_FOUND: &str = "InvalidInstanceID.NotFound";

pub struct Ec2Fleet {
    client: aws_sdk_ec2::Client,
    retry: NotFoundRetry,
}

impl Ec2Fleet {
    pub fn new(config: &SdkConfig) -> Ec2Fleet {
        Ec2Fleet::from_client(crate::aws::ec2_client(config))
    }

    pub fn from_client(client: aws_sdk_ec2::Client) -> Ec2Fleet {
        Ec2Fleet {
            client,
            retry: NotFoundRetry::default(),
        }
    }

    /// Replace the `InvalidInstanceID.NotFound` retry schedule (tests shorten it).
    pub fn with_not_found_retry(mut self, retry: NotFoundRetry) -> Ec2Fleet {
        self.retry = retry;
        self
    }

    /// `DescribeInstances` for these ids; retried while EC2 answers NotFound.
    async fn describe_ids(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> Result<Vec<Instance>, FleetError> {
        let mut attempt = 1;
        let mut waited = Duration::ZERO;
        loop {
            match self.describe_once(ids, calls).await {
                Ok(instances) => return Ok(instances),
                Err(e) if e.code() == Some(NOT_FOUND) => {
                    if attempt >= self.retry.attempts {
                        return Err(FleetError::NotVisible {
                            ids: ids.to_vec(),
                            attempts: attempt,
                            waited,
                            message: e.to_string(),
                        });
                    }
                    let delay = self.retry.delay(attempt);
                    warn!(
                        instance_ids = %ids.join(","),
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "instance not visible to DescribeInstances yet (EC2 eventual consistency), retrying"
                    );
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(FleetError::aws(
                        format!("describing instance(s) {}", ids.join(", ")),
                        e,
                    ))
                }
            }
        }
    }

    async fn describe_once(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> Result<Vec<Instance>, AwsError> {
        let mut instances = Vec::new();
        let mut token: Option<String> = None;
        // With InstanceIds there is normally one page; the token is followed anyway.
        // The same ids as an `instance-id` filter: EC2 charges a DescribeInstances "without
        // specifying either pagination or a filter" to a smaller request bucket (50 tokens,
        // 10 per second) than a filtered one (100, 20), EC2 Developer Guide, "Request
        // throttling for the Amazon EC2 API"; whether InstanceIds alone counts as a filter it
        // does not say, so the filter is explicit. InstanceIds stays: an id EC2 does not show
        // yet is still `InvalidInstanceID.NotFound` (the retry above), not an empty answer.
        // (MaxResults would also do, but it cannot be combined with InstanceIds.)
        let filter = (ids.len() <= ID_FILTER_MAX).then(|| {
            Filter::builder()
                .name("instance-id")
                .set_values(Some(ids.to_vec()))
                .build()
        });
        loop {
            calls.record("DescribeInstances");
            let out = self
                .client
                .describe_instances()
                .set_instance_ids(Some(ids.to_vec()))
                .set_filters(filter.clone().map(|f| vec![f]))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(Service::Ec2, "DescribeInstances", e).on(ids))?;
            for r in out.reservations() {
                instances.extend(r.instances().iter().cloned());
            }
            token = out.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(instances);
            }
        }
    }
}

/// What the classifier needs, straight from `DescribeInstances`: the platform is decided
/// from `Platform`, `InstanceType` and `PlatformDetails`, so no second call is made for the
/// AMI (whose name would only name the distribution, which no tag depends on).
fn facts(instance: &Instance) -> InstanceFacts {
    let tags: BTreeMap<String, String> = instance
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect();
    InstanceFacts {
        instance_id: instance.instance_id().unwrap_or_default().to_string(),
        source: FactsSource::Ec2 {
            platform: instance.platform().map(|p| p.as_str().to_string()),
            platform_details: instance.platform_details().map(str::to_string),
            instance_type: instance.instance_type().map(|t| t.as_str().to_string()),
        },
        name: tags.get("Name").cloned(),
        tags,
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string()),
    }
}

impl InstancePort for Ec2Fleet {
    async fn describe(
        &self,
        ids: &[String],
        calls: &CallLog,
    ) -> Result<Vec<InstanceFacts>, FleetError> {
        let instances = self.describe_ids(ids, calls).await?;
        Ok(instances.iter().map(facts).collect())
    }

    async fn page(&self, token: Option<String>, calls: &CallLog) -> Result<Page, FleetError> {
        calls.record("DescribeInstances");
        let out = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                    .build(),
            )
            .max_results(PAGE_SIZE)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                FleetError::aws(
                    "listing instances",
                    AwsError::from_sdk(Service::Ec2, "DescribeInstances", e),
                )
            })?;
        let instances: Vec<InstanceFacts> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(facts)
            .collect();
        Ok(Page {
            instances,
            next_token: out.next_token.filter(|t| !t.is_empty()),
        })
    }

    async fn create_tags(
        &self,
        ids: &[String],
        tags: &[(String, String)],
        calls: &CallLog,
    ) -> Result<(), FleetError> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        for chunk in ids.chunks(CREATE_TAGS_MAX_IDS) {
            calls.record("CreateTags");
            self.client
                .create_tags()
                .set_resources(Some(chunk.to_vec()))
                .set_tags(Some(tags.clone()))
                .send()
                .await
                .map_err(|e| {
                    FleetError::aws(
                        format!("tagging {} instance(s)", chunk.len()),
                        AwsError::from_sdk(Service::Ec2, "CreateTags", e).on(chunk),
                    )
                })?;
            info!(instances = chunk.len(), "CreateTags");
        }
        Ok(())
    }

    /// `DeleteTags` with `Tag.N.Key` only: "If you specify a tag key without a tag value, we
    /// delete any tag with this key regardless of its value" (EC2 API reference). A `Value`
    /// (even empty) would make the deletion conditional on it, and no `Tag` at all would
    /// delete every user tag of the instances — so an empty `keys` is refused here.
    async fn delete_tags(
        &self,
        ids: &[String],
        keys: &[String],
        calls: &CallLog,
    ) -> Result<(), FleetError> {
        let tags = key_only_tags(keys)?;
        for chunk in ids.chunks(DELETE_TAGS_MAX_IDS) {
            calls.record("DeleteTags");
            self.client
                .delete_tags()
                .set_resources(Some(chunk.to_vec()))
                .set_tags(Some(tags.clone()))
                .send()
                .await
                .map_err(|e| {
                    FleetError::aws(
                        format!(
                            "removing tags {} from {} instance(s)",
                            keys.join(", "),
                            chunk.len()
                        ),
                        AwsError::from_sdk(Service::Ec2, "DeleteTags", e).on(chunk),
                    )
                })?;
            info!(instances = chunk.len(), tag_keys = %keys.join(","), "DeleteTags");
        }
        Ok(())
    }
}

/// `DeleteTags` tags naming `keys` without a value (delete whatever the value is). Refuses an
/// empty list: a `DeleteTags` without tags deletes all of the resources' user tags.
fn key_only_tags(keys: &[String]) -> Result<Vec<Tag>, FleetError> {
    if keys.is_empty() {
        return Err(FleetError::Request {
            message: "DeleteTags without tag keys would delete every tag of the instances"
                .to_string(),
        });
    }
    Ok(keys.iter().map(|k| Tag::builder().key(k).build()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::identify;
    use crate::policy::{OperatingSystem, Platform};
    use aws_sdk_ec2::types::{InstanceType, PlatformValues};

    #[test]
    fn not_found_backoff_doubles_from_200ms_and_is_capped() {
        let r = NotFoundRetry::default();
        let delays: Vec<u128> = (1..r.attempts).map(|n| r.delay(n).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600]);
        assert_eq!(r.delay(10), Duration::from_secs(3));
    }

    fn instance(platform_details: &str, tags: &[(&str, &str)]) -> Instance {
        let mut b = Instance::builder()
            .instance_id("i-0123456789abcdef0")
            .image_id("ami-1")
            .instance_type(InstanceType::T3Micro)
            .platform_details(platform_details);
        for (k, v) in tags {
            b = b.tags(Tag::builder().key(*k).value(*v).build());
        }
        b.build()
    }

    #[test]
    fn delete_tags_names_keys_only_and_never_nothing() {
        let tags = key_only_tags(&["Patch Group".to_string(), "patchpilot:managed".to_string()])
            .expect("keys");
        assert_eq!(
            tags.iter().map(|t| t.key()).collect::<Vec<_>>(),
            [Some("Patch Group"), Some("patchpilot:managed")]
        );
        assert!(tags.iter().all(|t| t.value().is_none()));
        let err = key_only_tags(&[]).expect_err("no keys");
        assert!(err.to_string().contains("every tag"), "{err}");
    }

    #[test]
    fn facts_carry_tags_name_and_state() {
        let i = instance(
            "Linux/UNIX",
            &[("Name", "web-test"), ("Environment", "test")],
        );
        let f = facts(&i);
        assert_eq!(f.instance_id, "i-0123456789abcdef0");
        assert_eq!(
            f.source,
            FactsSource::Ec2 {
                platform: None,
                platform_details: Some("Linux/UNIX".to_string()),
                instance_type: Some("t3.micro".to_string()),
            }
        );
        assert_eq!(f.name.as_deref(), Some("web-test"));
        assert_eq!(f.tag("Environment"), Some("test"));
        assert_eq!(f.state, None);
    }

    #[test]
    fn the_describe_answer_alone_decides_the_platform() {
        // Amazon Linux / Ubuntu / CentOS: Linux, distribution not named, no AMI lookup.
        let identity = identify(&facts(&instance("Linux/UNIX", &[]))).expect("platform");
        assert_eq!((identity.platform, identity.os), (Platform::Linux, None));
        // Windows: `Platform` = `windows`.
        let windows = Instance::builder()
            .instance_id("i-0123456789abcdef1")
            .platform(PlatformValues::Windows)
            .platform_details("Windows")
            .build();
        let identity = identify(&facts(&windows)).expect("platform");
        assert_eq!(
            (identity.platform, identity.os),
            (Platform::Windows, Some(OperatingSystem::Windows))
        );
        // EC2 Mac: the instance type, though the AMI bills as `Linux/UNIX`.
        let mac = Instance::builder()
            .instance_id("i-0123456789abcdef2")
            .instance_type(InstanceType::Mac2Metal)
            .platform_details("Linux/UNIX")
            .build();
        let identity = identify(&facts(&mac)).expect("platform");
        assert_eq!(
            (identity.platform, identity.os),
            (Platform::MacOS, Some(OperatingSystem::MacOs))
        );
    }
}
