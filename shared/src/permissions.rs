//! The IAM actions each Lambda function may call — the single list `template.yaml` is checked
//! against (`tests/tests/template.rs` asserts that the actions granted to each function in the
//! template are exactly these, no more, no fewer).
//!
//! **Adapters must add an action here when they call a new AWS API** (and the template's
//! policy for that function at the same time); otherwise the call fails in AWS with
//! `AccessDenied` while every local test against the emulator still passes.
//!
//! [`ASYNC_FAILURE_DESTINATION`] and [`ENCRYPTED_TOPIC`] are not called by patchpilot's code
//! but by AWS on the function's behalf, with the function's role: Lambda sends failed async
//! events to the SQS `OnFailure` destination, and SNS encrypts a published message with the
//! topic's KMS key.

/// auto-tagger: EC2 launch / tag-change / on-prem registration events -> Patch Group tag.
pub const AUTO_TAGGER: &[&str] = &[
    // The only EC2 read: Platform, InstanceType and PlatformDetails decide the platform.
    "ec2:DescribeInstances",
    "ec2:CreateTags",
    // An excluded instance loses the Patch Group tag patchpilot wrote (and the marker).
    "ec2:DeleteTags",
    "ssm:GetParameter",
    "ssm:DescribeInstanceInformation",
    "ssm:ListTagsForResource",
    "ssm:AddTagsToResource",
    "ssm:RemoveTagsFromResource",
    // The last known good policy (item `policy#<stack>`, read when the parameter's policy is
    // invalid) and the order of tag changes per instance (`tagorder#<stack>#<id>`: a
    // conditional PutItem claims an event, a consistent GetItem checks after a write).
    "dynamodb:GetItem",
    "dynamodb:PutItem",
];

/// baseline-sync: schedule / policy change / manual invoke -> baselines, groups, windows,
/// targets, tasks, and the fleet's Patch Group tags.
pub const BASELINE_SYNC: &[&str] = &[
    "ssm:GetParameter",
    "ssm:DescribePatchBaselines",
    "ssm:GetPatchBaseline",
    "ssm:CreatePatchBaseline",
    "ssm:UpdatePatchBaseline",
    "ssm:DeletePatchBaseline",
    "ssm:DescribePatchGroups",
    "ssm:RegisterPatchBaselineForPatchGroup",
    "ssm:DeregisterPatchBaselineForPatchGroup",
    "ssm:ListTagsForResource",
    "ssm:AddTagsToResource",
    "ssm:DescribeMaintenanceWindows",
    "ssm:GetMaintenanceWindow",
    "ssm:CreateMaintenanceWindow",
    "ssm:UpdateMaintenanceWindow",
    "ssm:DeleteMaintenanceWindow",
    "ssm:DescribeMaintenanceWindowTargets",
    "ssm:RegisterTargetWithMaintenanceWindow",
    "ssm:UpdateMaintenanceWindowTarget",
    "ssm:DeregisterTargetFromMaintenanceWindow",
    "ssm:DescribeMaintenanceWindowTasks",
    "ssm:GetMaintenanceWindowTask",
    "ssm:RegisterTaskWithMaintenanceWindow",
    "ssm:UpdateMaintenanceWindowTask",
    "ssm:DeregisterTaskFromMaintenanceWindow",
    "ssm:DescribeInstanceInformation",
    "ec2:DescribeInstances",
    "ec2:CreateTags",
    // The sweep removes patchpilot's Patch Group tag from excluded instances / nodes.
    "ec2:DeleteTags",
    "ssm:RemoveTagsFromResource",
    // Coverage, on every run: the baseline SSM uses for a node without a registration for
    // its group and OS, the nodes' last patch operation, and Default Host Management.
    "ssm:GetDefaultPatchBaseline",
    "ssm:DescribeInstancePatchStates",
    "ssm:GetServiceSetting",
    // Promotion (README "Promotion"): each promoted environment's state.json is read on every
    // run; `{"promote": "force"}` rewrites it (`patchpilot/promotion/*` in the output bucket).
    "s3:GetObject",
    "s3:PutObject",
    // The coverage message: published when the uncovered set changes; the last one is read
    // from and written to the idempotency table (item `coverage#<stack>`). The same for the
    // last known good policy (`policy#<stack>`) and the one message about an invalid policy
    // (`policy-invalid#<stack>`).
    "sns:Publish",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    // Default Host Management opt-in (`EnableDefaultHostManagement`): the DHMC setting
    // only, written only when it differs from the stack's role; the template grants it (and
    // iam:PassRole on that role) only when the stack opts in.
    "ssm:UpdateServiceSetting",
    // Only on the maintenance-window service role (and, opted in, the DHMC role), only towards ssm.amazonaws.com
    // (RegisterTaskWithMaintenanceWindow / UpdateMaintenanceWindowTask pass `ServiceRoleArn`).
    "iam:PassRole",
];

/// run-notifier: Run Command / maintenance-window events -> one report to SNS.
pub const RUN_NOTIFIER: &[&str] = &[
    "ssm:GetParameter",
    "ssm:GetMaintenanceWindow",
    "ssm:ListTagsForResource",
    // A command event of a patchpilot window's own command is recognised by finding the
    // command among the window's recent executions (reported once, with the window).
    "ssm:DescribeMaintenanceWindows",
    "ssm:DescribeMaintenanceWindowExecutions",
    "ssm:GetMaintenanceWindowExecution",
    "ssm:DescribeMaintenanceWindowExecutionTasks",
    "ssm:DescribeMaintenanceWindowExecutionTaskInvocations",
    "ssm:DescribeMaintenanceWindowTargets",
    "ssm:ListCommands",
    "ssm:ListCommandInvocations",
    "ssm:DescribeInstancePatchStates",
    "ssm:DescribeInstanceInformation",
    "ec2:DescribeInstances",
    "sns:Publish",
    // Idempotency record: conditional claim / completion (PutItem), release after a failed
    // publish (DeleteItem); the claim's failure returns the old item, so no GetItem.
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    // Promotion: what each host installed in the run (patch states with InstalledTime) and
    // the package versions Inventory knows; the manifest and state in the output bucket.
    "ssm:DescribeInstancePatches",
    "ssm:ListInventoryEntries",
    "s3:GetObject",
    "s3:PutObject",
    // The last known good policy (item `policy#<stack>`), read when the parameter's is invalid.
    "dynamodb:GetItem",
];

/// Every function: Lambda delivers an async event that failed all retries to the
/// `EventInvokeConfig` `OnFailure` SQS queue using the function's own role.
pub const ASYNC_FAILURE_DESTINATION: &[&str] = &["sqs:SendMessage"];

/// run-notifier and baseline-sync: `sns:Publish` to a topic encrypted with a customer managed KMS key needs
/// these on the key (a CMK, because CloudWatch alarms cannot publish to a topic encrypted
/// with the AWS managed `alias/aws/sns` key).
pub const ENCRYPTED_TOPIC: &[&str] = &["kms:GenerateDataKey", "kms:Decrypt"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn lists_have_no_duplicates_and_no_wildcards() {
        for list in [
            AUTO_TAGGER,
            BASELINE_SYNC,
            RUN_NOTIFIER,
            ASYNC_FAILURE_DESTINATION,
            ENCRYPTED_TOPIC,
        ] {
            let unique: BTreeSet<_> = list.iter().collect();
            assert_eq!(unique.len(), list.len(), "duplicate action in {list:?}");
            for action in list {
                assert!(!action.contains('*'), "wildcard action {action}");
                assert!(
                    action
                        .split_once(':')
                        .is_some_and(|(svc, name)| !svc.is_empty()
                            && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())),
                    "`{action}` is not of the form service:Action"
                );
            }
        }
    }

    #[test]
    fn only_baseline_sync_passes_a_role() {
        assert!(BASELINE_SYNC.contains(&"iam:PassRole"));
        assert!(!AUTO_TAGGER.iter().any(|a| a.starts_with("iam:")));
        assert!(!RUN_NOTIFIER.iter().any(|a| a.starts_with("iam:")));
    }
}
