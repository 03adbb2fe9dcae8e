//! Proves the Rust side of the emulator support works: start, launch the scenario's six
//! AMIs, see PlatformDetails in DescribeInstances, use the test hooks, reset.

use std::collections::BTreeMap;

use patchpilot_tests::{ami, emulator, ExecuteWindow, Fault, ManagedInstance, SCENARIO_OSES};

#[tokio::test]
async fn launches_the_scenario_amis_with_platform_details() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let mut launched = BTreeMap::new();
    for os in SCENARIO_OSES {
        let id = emu
            .launch_instance(os, &format!("{os}-test"), &[("Environment", "test")])
            .await
            .expect("launch instance");
        launched.insert(id, os);
    }
    let ec2 = emu.ec2().await;
    let out = ec2
        .describe_instances()
        .send()
        .await
        .expect("DescribeInstances");
    let instances: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(instances.len(), 6);
    for instance in instances {
        let id = instance.instance_id().expect("instance id");
        let os = launched.get(id).expect("one of ours");
        let entry = ami(os).expect("catalogue entry");
        assert_eq!(instance.image_id(), Some(entry.ami_id.as_str()));
        assert_eq!(
            instance.platform_details(),
            Some(entry.platform_details.as_str()),
            "PlatformDetails of {os}"
        );
        let windows = instance.platform().map(|p| p.as_str().to_owned());
        assert_eq!(
            windows.as_deref(),
            entry.platform.as_deref(),
            "Platform of {os}"
        );
    }
    let rhel = ami("rhel-9").expect("rhel");
    assert_eq!(rhel.platform_details, "Red Hat Enterprise Linux");
    assert_eq!(ami("sles-15").expect("sles").platform_details, "SUSE Linux");
    assert_eq!(
        ami("windows-2022").expect("windows").platform.as_deref(),
        Some("windows")
    );
}

#[tokio::test]
async fn reset_clears_state_and_counters() {
    let emu = emulator();
    {
        let _guard = emu.exclusive().await;
        emu.launch_instance("ubuntu-22.04", "ubuntu-test", &[])
            .await
            .expect("launch");
        let mi = emu
            .register_managed_instance(&ManagedInstance {
                platform_type: "Linux".into(),
                platform_name: "Ubuntu".into(),
                platform_version: "22.04".into(),
                name: Some("onprem-1".into()),
                tags: BTreeMap::from([("Patch Group".into(), "patch_test_0600_batch_1".into())]),
            })
            .expect("register managed instance");
        assert!(mi.starts_with("mi-"));
        let counts = emu.request_counts().expect("request log");
        assert_eq!(counts.get("ec2", "RunInstances"), 1);
        assert_eq!(counts.write_count(), 1);
        emu.reset_request_counts().expect("reset counter");
        assert_eq!(emu.request_counts().expect("request log").total, 0);
    }
    let _guard = emu.exclusive().await;
    let ec2 = emu.ec2().await;
    let out = ec2
        .describe_instances()
        .send()
        .await
        .expect("DescribeInstances");
    assert!(out.reservations().is_empty(), "reset must clear instances");
    let ssm = emu.ssm().await;
    let info = ssm
        .describe_instance_information()
        .send()
        .await
        .expect("DescribeInstanceInformation");
    assert!(info.instance_information_list().is_empty());
    let counts = emu.request_counts().expect("request log");
    assert_eq!(counts.total, 2, "only this test's two reads: {counts:?}");
    assert_eq!(counts.write_count(), 0);
}

#[tokio::test]
async fn faults_use_the_service_wire_format() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    emu.inject_fault(&Fault::new(
        "ec2",
        "DescribeInstances",
        "InvalidInstanceID.NotFound",
        1,
    ))
    .expect("inject ec2 fault");
    emu.inject_fault(&Fault::new(
        "ssm",
        "DescribeInstanceInformation",
        "InvalidInstanceId",
        1,
    ))
    .expect("inject ssm fault");
    let ec2 = emu.ec2().await;
    let err = ec2
        .describe_instances()
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .expect_err("injected EC2 fault");
    assert_eq!(
        aws_sdk_ec2::error::ProvideErrorMetadata::code(&err),
        Some("InvalidInstanceID.NotFound")
    );
    ec2.describe_instances()
        .send()
        .await
        .expect("fault used up");
    let ssm = emu.ssm().await;
    let err = ssm
        .describe_instance_information()
        .send()
        .await
        .expect_err("injected SSM fault");
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(&err),
        Some("InvalidInstanceId")
    );
    assert_eq!(
        emu.request_counts()
            .expect("log")
            .get("ec2", "DescribeInstances"),
        2
    );
}

#[tokio::test]
async fn executes_a_maintenance_window() {
    use aws_sdk_ssm::types::{MaintenanceWindowTaskType, Target};
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let group = "patch_test_0600_batch_1";
    let rhel = emu
        .launch_instance("rhel-9", "rhel-test", &[("Patch Group", group)])
        .await
        .expect("launch");
    let ssm = emu.ssm().await;
    let window = ssm
        .create_maintenance_window()
        .name("patchpilot-test")
        .schedule("cron(0 6 ? * SAT#1 *)")
        .duration(4)
        .cutoff(1)
        .allow_unassociated_targets(false)
        .send()
        .await
        .expect("CreateMaintenanceWindow");
    let window_id = window.window_id().expect("window id").to_owned();
    let target_id = ssm
        .register_target_with_maintenance_window()
        .window_id(&window_id)
        .resource_type(aws_sdk_ssm::types::MaintenanceWindowResourceType::Instance)
        .targets(
            Target::builder()
                .key("tag:Patch Group")
                .values(group)
                .build(),
        )
        .send()
        .await
        .expect("RegisterTarget")
        .window_target_id()
        .expect("target id")
        .to_owned();
    ssm.register_task_with_maintenance_window()
        .window_id(&window_id)
        .task_arn("AWS-RunPatchBaseline")
        .task_type(MaintenanceWindowTaskType::RunCommand)
        .priority(1)
        // RegisterTaskWithMaintenanceWindow: a task with targets must give both.
        .max_concurrency("1")
        .max_errors("0")
        // An Install (a Scan installs nothing, so a failed scan has no failed patch).
        .task_invocation_parameters(
            aws_sdk_ssm::types::MaintenanceWindowTaskInvocationParameters::builder()
                .run_command(
                    aws_sdk_ssm::types::MaintenanceWindowRunCommandParameters::builder()
                        .parameters("Operation", vec!["Install".to_string()])
                        .build(),
                )
                .build(),
        )
        .targets(
            Target::builder()
                .key("WindowTargetIds")
                .values(&target_id)
                .build(),
        )
        .send()
        .await
        .expect("RegisterTask");
    let lenient = ssm
        .register_task_with_maintenance_window()
        .window_id(&window_id)
        .task_arn("AWS-RunPatchBaseline")
        .task_type(MaintenanceWindowTaskType::RunCommand)
        .priority(2)
        .targets(
            Target::builder()
                .key("WindowTargetIds")
                .values(&target_id)
                .build(),
        )
        .send()
        .await
        .expect_err("a task with targets and no rate control is rejected, as by AWS");
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(&lenient),
        Some("ValidationException")
    );
    let run = emu
        .execute_window(&ExecuteWindow {
            fail_instances: vec![rhel.clone()],
            ..ExecuteWindow::new(&window_id)
        })
        .expect("execute window");
    assert_eq!(run.status, "FAILED");
    assert_eq!(run.tasks[0].instance_ids, vec![rhel.clone()]);
    let states = ssm
        .describe_instance_patch_states()
        .instance_ids(&rhel)
        .send()
        .await
        .expect("DescribeInstancePatchStates");
    assert!(states.instance_patch_states()[0].failed_count() > 0);
    let bad = ssm
        .create_maintenance_window()
        .name("bad-window")
        .schedule("cron(0 6 ? * SAT#1 *)")
        .duration(4)
        .cutoff(4)
        .allow_unassociated_targets(false)
        .send()
        .await
        .expect_err("Cutoff >= Duration is rejected");
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(&bad),
        Some("ValidationException")
    );
}

#[tokio::test]
async fn counts_requests_of_every_client() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let sns = emu.sns().await;
    sns.create_topic()
        .name("patchpilot-reports")
        .send()
        .await
        .expect("CreateTopic");
    let dynamodb = emu.dynamodb().await;
    dynamodb.list_tables().send().await.expect("ListTables");
    let ssm = emu.ssm().await;
    ssm.describe_patch_groups()
        .send()
        .await
        .expect("DescribePatchGroups");
    let counts = emu.request_counts().expect("request log");
    assert_eq!(counts.get("sns", "CreateTopic"), 1, "{counts:?}");
    assert_eq!(counts.get("dynamodb", "ListTables"), 1, "{counts:?}");
    assert_eq!(counts.get("ssm", "DescribePatchGroups"), 1, "{counts:?}");
    assert_eq!(counts.write_count(), 1);
}

/// The negative tests' template edit keeps a template the emulator deploys.
#[tokio::test]
async fn a_template_without_one_permission_still_deploys() {
    let emu = emulator();
    let _guard = emu.exclusive().await;
    let path = patchpilot_tests::template_without("AutoTaggerFunction", "ec2:CreateTags");
    let stack = emu
        .deploy(&patchpilot_tests::DeployStack {
            stack_name: "negative".into(),
            template_path: Some(path.display().to_string()),
            ..Default::default()
        })
        .expect("deploys");
    assert!(stack.functions.contains_key("auto-tagger"));
    let full = emu
        .deploy_stack("patchpilot")
        .expect("the real template deploys");
    assert_eq!(full.functions.len(), 3);
}
