"""Tests of the patchpilot moto extension, through boto3 against the running server."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Emulator

AMIS = {
    "windows-2022": "ami-0f3c9c466bb525749",
    "rhel-9": "ami-023c11a32b0207432",
    "ubuntu-22.04": "ami-0c7217cdde317cfec",
    "amazon-linux-2": "ami-0e731c8a588258d0d",
    "centos-7": "ami-002070d43b0a4f171",
    "sles-15": "ami-0d9a5bb9f3e3d4a1c",
}
RULES = {
    "PatchRules": [
        {
            "PatchFilterGroup": {
                "PatchFilters": [{"Key": "CLASSIFICATION", "Values": ["Security"]}]
            },
            "ApproveAfterDays": 7,
            "ComplianceLevel": "CRITICAL",
        }
    ]
}
UBUNTU_RULES = {
    "PatchRules": [
        {"PatchFilterGroup": {"PatchFilters": [{"Key": "PRIORITY", "Values": ["Required"]}]}}
    ]
}


def code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def message(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Message"])


def launch(emu: Emulator, os_key: str, group: str, name: str = "host") -> str:
    ec2 = emu.client("ec2")
    res = ec2.run_instances(
        ImageId=AMIS[os_key],
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "Name", "Value": name}, {"Key": "Patch Group", "Value": group}],
            }
        ],
    )
    return str(res["Instances"][0]["InstanceId"])


def baseline(emu: Emulator, name: str = "patchpilot-test-rhel", os_name: str = "REDHAT_ENTERPRISE_LINUX", **extra: Any) -> str:
    ssm = emu.client("ssm")
    rules = UBUNTU_RULES if os_name in ("UBUNTU", "DEBIAN") else RULES
    return str(
        ssm.create_patch_baseline(Name=name, OperatingSystem=os_name, ApprovalRules=rules, **extra)["BaselineId"]
    )


def window(emu: Emulator, name: str = "patchpilot-test", **extra: Any) -> str:
    ssm = emu.client("ssm")
    params: dict[str, Any] = dict(
        Name=name,
        Schedule="cron(0 6 ? * SAT#1 *)",
        ScheduleTimezone="Europe/Berlin",
        Duration=4,
        Cutoff=1,
        AllowUnassociatedTargets=False,
    )
    params.update(extra)
    return str(ssm.create_maintenance_window(**params)["WindowId"])


# --- EC2 AMI catalogue -------------------------------------------------------------------------


def test_ami_catalogue_platform_details(emu: Emulator) -> None:
    ec2 = emu.client("ec2")
    images = {i["ImageId"]: i for i in ec2.describe_images(ImageIds=list(AMIS.values()))["Images"]}
    assert images[AMIS["windows-2022"]]["PlatformDetails"] == "Windows"
    assert images[AMIS["windows-2022"]]["Platform"] == "windows"
    assert images[AMIS["rhel-9"]]["PlatformDetails"] == "Red Hat Enterprise Linux"
    assert images[AMIS["sles-15"]]["PlatformDetails"] == "SUSE Linux"
    assert images[AMIS["ubuntu-22.04"]]["PlatformDetails"] == "Linux/UNIX"
    assert images[AMIS["ubuntu-22.04"]]["Name"].startswith("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04")
    for key in AMIS:
        launch(emu, key, "g", name=key)
    instances = [
        i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    ]
    by_ami = {i["ImageId"]: i for i in instances}
    assert by_ami[AMIS["windows-2022"]]["Platform"] == "windows"
    assert by_ami[AMIS["windows-2022"]]["PlatformDetails"] == "Windows"
    assert by_ami[AMIS["centos-7"]]["PlatformDetails"] == "Linux/UNIX"
    assert "Platform" not in by_ami[AMIS["centos-7"]]
    assert by_ami[AMIS["rhel-9"]]["UsageOperation"] == "RunInstances:0010"


# --- patch baselines ---------------------------------------------------------------------------


def test_patch_baseline_crud_and_tags(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    bid = baseline(emu, Tags=[{"Key": "patchpilot:managed", "Value": "true"}], Description="d")
    got = ssm.get_patch_baseline(BaselineId=bid)
    assert got["Name"] == "patchpilot-test-rhel"
    assert got["OperatingSystem"] == "REDHAT_ENTERPRISE_LINUX"
    assert got["ApprovalRules"]["PatchRules"][0]["ApproveAfterDays"] == 7
    assert got["PatchGroups"] == []
    assert "CreatedDate" in got and "ModifiedDate" in got
    tags = ssm.list_tags_for_resource(ResourceType="PatchBaseline", ResourceId=bid)["TagList"]
    assert tags == [{"Key": "patchpilot:managed", "Value": "true"}]
    ssm.add_tags_to_resource(ResourceType="PatchBaseline", ResourceId=bid, Tags=[{"Key": "env", "Value": "test"}])
    ssm.remove_tags_from_resource(ResourceType="PatchBaseline", ResourceId=bid, TagKeys=["patchpilot:managed"])
    tags = ssm.list_tags_for_resource(ResourceType="PatchBaseline", ResourceId=bid)["TagList"]
    assert tags == [{"Key": "env", "Value": "test"}]
    with pytest.raises(ClientError) as err:
        ssm.list_tags_for_resource(ResourceType="PatchBaseline", ResourceId="pb-0123456789abcdef0")
    assert code(err) == "InvalidResourceId"

    updated = ssm.update_patch_baseline(BaselineId=bid, Description="new", RejectedPatches=["kernel*"])
    assert updated["Description"] == "new"
    assert updated["RejectedPatches"] == ["kernel*"]
    assert updated["ApprovalRules"]["PatchRules"][0]["ApproveAfterDays"] == 7
    replaced = ssm.update_patch_baseline(BaselineId=bid, Name="patchpilot-test-rhel", Replace=True)
    assert "Description" not in replaced
    assert replaced["RejectedPatches"] == []
    assert replaced["ApprovalRules"] == {"PatchRules": []}
    with pytest.raises(ClientError) as err:
        ssm.update_patch_baseline(BaselineId=bid, Replace=True)
    assert code(err) == "ValidationException"
    with pytest.raises(ClientError) as err:
        ssm.get_patch_baseline(BaselineId="pb-0123456789abcdef0")
    assert code(err) == "DoesNotExistException"
    with pytest.raises(ClientError) as err:
        ssm.update_patch_baseline(BaselineId="pb-0123456789abcdef0", Description="x")
    assert code(err) == "DoesNotExistException"
    assert ssm.delete_patch_baseline(BaselineId=bid)["BaselineId"] == bid
    with pytest.raises(ClientError):
        ssm.get_patch_baseline(BaselineId=bid)


def test_patch_baseline_validation(emu: Emulator) -> None:
    ssm = emu.client("ssm", validate=False)
    with pytest.raises(ClientError) as err:
        ssm.create_patch_baseline(Name="x", OperatingSystem="WINDOWS", ApprovalRules=RULES)
    assert code(err) == "ValidationException"
    assert "at 'name'" in message(err)
    with pytest.raises(ClientError) as err:
        ssm.create_patch_baseline(Name="bad name!", OperatingSystem="WINDOWS", ApprovalRules=RULES)
    assert "regular expression pattern" in message(err)
    with pytest.raises(ClientError) as err:
        ssm.create_patch_baseline(Name="good-name", OperatingSystem="BEOS", ApprovalRules=RULES)
    assert code(err) == "ValidationException"
    assert "enum value set" in message(err)
    bad_days = {"PatchRules": [dict(RULES["PatchRules"][0], ApproveAfterDays=361)]}
    with pytest.raises(ClientError) as err:
        ssm.create_patch_baseline(Name="good-name", OperatingSystem="WINDOWS", ApprovalRules=bad_days)
    assert "approvalRules.patchRules.1.member.approveAfterDays" in message(err)
    assert "less than or equal to 360" in message(err)
    negative = {"PatchRules": [dict(RULES["PatchRules"][0], ApproveAfterDays=-1)]}
    with pytest.raises(ClientError) as err:
        ssm.create_patch_baseline(Name="good-name", OperatingSystem="WINDOWS", ApprovalRules=negative)
    assert "greater than or equal to 0" in message(err)
    with pytest.raises(ClientError) as err:
        ssm.create_patch_baseline(Name="ubuntu-base", OperatingSystem="UBUNTU", ApprovalRules=RULES)
    assert code(err) == "ValidationException"
    assert "UBUNTU" in message(err)
    bid = baseline(emu, name="ubuntu-base", os_name="UBUNTU")
    with pytest.raises(ClientError) as err:
        ssm.update_patch_baseline(BaselineId=bid, ApprovalRules=RULES)
    assert code(err) == "ValidationException"
    with pytest.raises(ClientError) as err:
        ssm.register_patch_baseline_for_patch_group(BaselineId=bid, PatchGroup="x" * 257)
    assert "at 'patchGroup'" in message(err)


def test_describe_patch_baselines_filters_and_pages(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    for n in range(3):
        baseline(emu, name=f"patchpilot-test-{n}")
    baseline(emu, name="other-rhel")
    own = ssm.describe_patch_baselines(Filters=[{"Key": "OWNER", "Values": ["Self"]}])["BaselineIdentities"]
    assert len(own) == 4
    prefixed = ssm.describe_patch_baselines(
        Filters=[{"Key": "NAME_PREFIX", "Values": ["patchpilot-"]}, {"Key": "OWNER", "Values": ["Self"]}]
    )["BaselineIdentities"]
    assert sorted(b["BaselineName"] for b in prefixed) == [f"patchpilot-test-{n}" for n in range(3)]
    aws = ssm.describe_patch_baselines(
        Filters=[{"Key": "OWNER", "Values": ["AWS"]}, {"Key": "OPERATING_SYSTEM", "Values": ["WINDOWS"]}]
    )["BaselineIdentities"]
    assert aws[0]["BaselineName"] == "AWS-DefaultPatchBaseline" and aws[0]["DefaultBaseline"]
    page = ssm.describe_patch_baselines(Filters=[{"Key": "OWNER", "Values": ["Self"]}], MaxResults=3)
    assert len(page["BaselineIdentities"]) == 3 and page["NextToken"]
    rest = ssm.describe_patch_baselines(
        Filters=[{"Key": "OWNER", "Values": ["Self"]}], MaxResults=3, NextToken=page["NextToken"]
    )
    assert len(rest["BaselineIdentities"]) == 1 and "NextToken" not in rest
    with pytest.raises(ClientError) as err:
        ssm.describe_patch_baselines(MaxResults=101)
    assert code(err) == "ValidationException"


def test_patch_groups(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    rhel = baseline(emu)
    win = baseline(emu, name="patchpilot-test-windows", os_name="WINDOWS")
    for group in ("patch_test_0600_batch_1", "patch_test_0600_batch_2"):
        ssm.register_patch_baseline_for_patch_group(BaselineId=rhel, PatchGroup=group)
        ssm.register_patch_baseline_for_patch_group(BaselineId=win, PatchGroup=group)
    with pytest.raises(ClientError) as err:
        ssm.register_patch_baseline_for_patch_group(BaselineId=rhel, PatchGroup="patch_test_0600_batch_1")
    assert code(err) == "AlreadyExistsException"
    with pytest.raises(ClientError) as err:
        ssm.register_patch_baseline_for_patch_group(BaselineId="pb-0123456789abcdef0", PatchGroup="g")
    assert code(err) == "DoesNotExistException"
    mappings = ssm.describe_patch_groups()["Mappings"]
    assert len(mappings) == 4
    assert {m["BaselineIdentity"]["BaselineId"] for m in mappings} == {rhel, win}
    windows_only = ssm.describe_patch_groups(Filters=[{"Key": "OPERATING_SYSTEM", "Values": ["WINDOWS"]}])
    assert len(windows_only["Mappings"]) == 2
    by_prefix = ssm.describe_patch_groups(Filters=[{"Key": "NAME_PREFIX", "Values": ["patch_test_0600_batch_2"]}])
    assert len(by_prefix["Mappings"]) == 2
    page = ssm.describe_patch_groups(MaxResults=3)
    assert len(page["Mappings"]) == 3
    assert len(ssm.describe_patch_groups(MaxResults=3, NextToken=page["NextToken"])["Mappings"]) == 1
    got = ssm.get_patch_baseline_for_patch_group(PatchGroup="patch_test_0600_batch_1", OperatingSystem="REDHAT_ENTERPRISE_LINUX")
    assert got["BaselineId"] == rhel
    assert ssm.get_patch_baseline(BaselineId=rhel)["PatchGroups"] == ["patch_test_0600_batch_1", "patch_test_0600_batch_2"]
    with pytest.raises(ClientError) as err:
        ssm.delete_patch_baseline(BaselineId=rhel)
    assert code(err) == "ResourceInUseException"
    ssm.deregister_patch_baseline_for_patch_group(BaselineId=rhel, PatchGroup="patch_test_0600_batch_1")
    assert len(ssm.describe_patch_groups()["Mappings"]) == 3
    default = ssm.get_patch_baseline_for_patch_group(PatchGroup="patch_test_0600_batch_1", OperatingSystem="REDHAT_ENTERPRISE_LINUX")
    assert default["BaselineId"] != rhel and "patchbaseline/pb-" in default["BaselineId"]
    with pytest.raises(ClientError) as err:
        ssm.deregister_patch_baseline_for_patch_group(BaselineId=rhel, PatchGroup="patch_test_0600_batch_1")
    assert code(err) == "InvalidResourceId"


# --- maintenance windows -----------------------------------------------------------------------


def test_maintenance_window_get_update_and_tags(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    wid = window(emu, Tags=[{"Key": "patchpilot:managed", "Value": "true"}], Description="first saturday")
    got = ssm.get_maintenance_window(WindowId=wid)
    assert got["Schedule"] == "cron(0 6 ? * SAT#1 *)"
    assert got["ScheduleTimezone"] == "Europe/Berlin"
    assert got["AllowUnassociatedTargets"] is False and got["Enabled"] is True
    updated = ssm.update_maintenance_window(WindowId=wid, Duration=5, Enabled=False)
    assert updated["Duration"] == 5 and updated["Enabled"] is False and updated["Cutoff"] == 1
    assert updated["Description"] == "first saturday"
    replaced = ssm.update_maintenance_window(
        WindowId=wid, Name="patchpilot-test", Schedule="cron(0 6 ? * SAT#3 *)", Duration=3, Cutoff=0,
        AllowUnassociatedTargets=True, Replace=True,
    )
    assert "Description" not in replaced and "ScheduleTimezone" not in replaced
    assert replaced["Enabled"] is True
    with pytest.raises(ClientError) as err:
        ssm.update_maintenance_window(WindowId=wid, Duration=2, Replace=True)
    assert code(err) == "ValidationException"
    identities = ssm.describe_maintenance_windows(Filters=[{"Key": "Name", "Values": ["patchpilot-test"]}])["WindowIdentities"]
    assert identities[0]["Schedule"] == "cron(0 6 ? * SAT#3 *)"
    tags = ssm.list_tags_for_resource(ResourceType="MaintenanceWindow", ResourceId=wid)["TagList"]
    assert tags == [{"Key": "patchpilot:managed", "Value": "true"}]
    with pytest.raises(ClientError) as err:
        ssm.get_maintenance_window(WindowId="mw-0123456789abcdef0")
    assert code(err) == "DoesNotExistException"
    with pytest.raises(ClientError) as err:
        ssm.update_maintenance_window(WindowId="mw-0123456789abcdef0", Duration=2)
    assert code(err) == "DoesNotExistException"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"Schedule": "cron(0 6 * * SAT#1 *)"}, "schedule"),
        ({"Schedule": "cron(61 6 ? * SAT *)"}, "schedule"),
        ({"Schedule": "every saturday"}, "schedule"),
        ({"Schedule": "rate(1 days)"}, "schedule"),
        ({"Duration": 4, "Cutoff": 4}, "Cutoff"),
        ({"Duration": 25}, "less than or equal to 24"),
        ({"Duration": 0, "Cutoff": 0}, "greater than or equal to 1"),
        ({"Cutoff": 24, "Duration": 24}, "less than or equal to 23"),
        ({"ScheduleTimezone": "Mars/Olympus"}, "ScheduleTimezone"),
    ],
)
def test_maintenance_window_validation(emu: Emulator, overrides: dict[str, Any], fragment: str) -> None:
    ssm = emu.client("ssm", validate=False)
    with pytest.raises(ClientError) as err:
        ssm.create_maintenance_window(
            **{
                "Name": "patchpilot-test",
                "Schedule": "cron(0 6 ? * SAT#1 *)",
                "Duration": 4,
                "Cutoff": 1,
                "AllowUnassociatedTargets": False,
                **overrides,
            }
        )
    assert code(err) == "ValidationException"
    assert fragment.lower() in message(err).lower()
    wid = window(emu)
    with pytest.raises(ClientError) as err:
        ssm.update_maintenance_window(WindowId=wid, **overrides)
    assert code(err) == "ValidationException"


def test_valid_schedules_accepted(emu: Emulator) -> None:
    for schedule in ("cron(0 6 ? * SAT#3 *)", "rate(7 days)", "cron(30 2 ? * MON-FRI *)", "cron(0 0 1 * ? *)", "at(2030-01-01T06:00:00)"):
        window(emu, name=f"w-{abs(hash(schedule))}", Schedule=schedule)


def test_targets_and_tasks(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    wid = window(emu)
    tid = ssm.register_target_with_maintenance_window(
        WindowId=wid, ResourceType="INSTANCE", Name="patch_test_0600_batch_1",
        Targets=[{"Key": "tag:Patch Group", "Values": ["patch_test_0600_batch_1"]}], OwnerInformation="owner",
    )["WindowTargetId"]
    targets = ssm.describe_maintenance_window_targets(WindowId=wid)["Targets"]
    assert targets[0]["OwnerInformation"] == "owner"
    upd = ssm.update_maintenance_window_target(
        WindowId=wid, WindowTargetId=tid, Targets=[{"Key": "tag:Patch Group", "Values": ["patch_test_0600_batch_2"]}]
    )
    assert upd["Targets"][0]["Values"] == ["patch_test_0600_batch_2"] and upd["Name"] == "patch_test_0600_batch_1"
    replaced = ssm.update_maintenance_window_target(
        WindowId=wid, WindowTargetId=tid, Targets=[{"Key": "tag:Patch Group", "Values": ["patch_test_0600_batch_1"]}], Replace=True
    )
    assert "Name" not in replaced and "OwnerInformation" not in replaced
    with pytest.raises(ClientError) as err:
        ssm.update_maintenance_window_target(WindowId=wid, WindowTargetId="00000000-0000-0000-0000-000000000000", Name="xyz")
    assert code(err) == "DoesNotExistException"

    task_id = ssm.register_task_with_maintenance_window(
        WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Priority=1,
        Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="10%", MaxErrors="1",
        ServiceRoleArn="arn:aws:iam::123456789012:role/mw", Name="patch_test_0600_batch_1", Description="install",
        TaskInvocationParameters={"RunCommand": {"Parameters": {"Operation": ["Install"]}, "OutputS3BucketName": "out", "OutputS3KeyPrefix": "patch"}},
    )["WindowTaskId"]
    tasks = ssm.describe_maintenance_window_tasks(WindowId=wid)["Tasks"]
    t = tasks[0]
    assert t["Type"] == "RUN_COMMAND" and t["Priority"] == 1 and t["MaxConcurrency"] == "10%"
    assert t["MaxErrors"] == "1" and t["ServiceRoleArn"].endswith("role/mw")
    assert t["Name"] == "patch_test_0600_batch_1" and t["Description"] == "install"
    got = ssm.get_maintenance_window_task(WindowId=wid, WindowTaskId=task_id)
    assert got["TaskInvocationParameters"]["RunCommand"]["Parameters"] == {"Operation": ["Install"]}
    assert got["TaskType"] == "RUN_COMMAND"
    upd_task = ssm.update_maintenance_window_task(WindowId=wid, WindowTaskId=task_id, Priority=2, MaxErrors="2")
    assert upd_task["Priority"] == 2 and upd_task["MaxErrors"] == "2" and upd_task["MaxConcurrency"] == "10%"
    # Replace with targets still needs MaxConcurrency/MaxErrors (UpdateMaintenanceWindowTask)
    rep_task = ssm.update_maintenance_window_task(
        WindowId=wid, WindowTaskId=task_id, TaskArn="AWS-RunPatchBaseline", Replace=True,
        Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="5", MaxErrors="0",
    )
    assert rep_task["MaxConcurrency"] == "5" and "Description" not in rep_task
    with pytest.raises(ClientError) as err:
        ssm.get_maintenance_window_task(WindowId=wid, WindowTaskId="00000000-0000-0000-0000-000000000000")
    assert code(err) == "DoesNotExistException"
    bad = emu.client("ssm", validate=False)
    with pytest.raises(ClientError) as err:
        bad.update_maintenance_window_task(WindowId=wid, WindowTaskId=task_id, MaxConcurrency="0")
    assert code(err) == "ValidationException"
    ssm.deregister_task_from_maintenance_window(WindowId=wid, WindowTaskId=task_id)
    ssm.deregister_target_from_maintenance_window(WindowId=wid, WindowTargetId=tid)
    assert ssm.describe_maintenance_window_targets(WindowId=wid)["Targets"] == []
    with pytest.raises(ClientError) as err:
        ssm.deregister_target_from_maintenance_window(WindowId=wid, WindowTargetId=tid)
    assert code(err) == "DoesNotExistException"


# --- commands, instance information ------------------------------------------------------------


def test_send_command_targets_only_given_instances(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    a = launch(emu, "rhel-9", "g1")
    launch(emu, "ubuntu-22.04", "g2")
    emu.client("s3").create_bucket(Bucket="bkt")
    emu.allow_instance_uploads("bkt")
    cmd = ssm.send_command(InstanceIds=[a], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}, OutputS3BucketName="bkt", OutputS3KeyPrefix="p")["Command"]
    assert cmd["InstanceIds"] == [a]
    listed = ssm.list_commands(CommandId=cmd["CommandId"])["Commands"][0]
    assert listed["TargetCount"] == 1 and listed["CompletedCount"] == 1 and listed["ErrorCount"] == 0
    assert listed["Status"] == "Success"
    by_tag = ssm.send_command(Targets=[{"Key": "tag:Patch Group", "Values": ["g2"]}], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]})["Command"]
    assert len(by_tag["InstanceIds"]) == 1 and by_tag["InstanceIds"][0] != a
    invs = ssm.list_command_invocations(CommandId=cmd["CommandId"], Details=True)["CommandInvocations"]
    assert invs[0]["InstanceId"] == a
    # regional URL as in the ListCommandInvocations example of the API reference
    assert invs[0]["StandardOutputUrl"] == f"https://s3.us-east-1.amazonaws.com/bkt/p/{cmd['CommandId']}/{a}/awsrunShellScript/0.awsrunShellScript/stdout"
    body = emu.client("s3").get_object(Bucket="bkt", Key=f"p/{cmd['CommandId']}/{a}/awsrunShellScript/0.awsrunShellScript/stdout")["Body"].read()
    assert body.decode() == invs[0]["CommandPlugins"][0]["Output"]
    assert invs[0]["CommandPlugins"][0]["Name"] == "aws:runShellScript"
    no_details = ssm.list_command_invocations(CommandId=cmd["CommandId"])["CommandInvocations"]
    assert no_details[0]["CommandPlugins"] == []
    with pytest.raises(ClientError) as err:
        ssm.send_command(InstanceIds=["i-0123456789abcdef0"], DocumentName="AWS-RunShellScript")
    assert code(err) == "InvalidInstanceId"
    with pytest.raises(ClientError) as err:
        ssm.list_commands(CommandId="00000000-0000-0000-0000-000000000000")
    assert code(err) == "InvalidCommandId"


def test_describe_instance_information(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    ids = {key: launch(emu, key, "g") for key in AMIS}
    status, body = emu.post(
        "/patchpilot-emulator/register-managed-instance",
        {"PlatformType": "Linux", "PlatformName": "Ubuntu", "PlatformVersion": "20.04", "Name": "onprem-1", "Tags": {"Patch Group": "g"}},
    )
    assert status == 200
    mi = body["InstanceId"]
    assert mi.startswith("mi-") and len(mi) == 20
    everything = ssm.describe_instance_information()["InstanceInformationList"]
    assert len(everything) == 7
    win = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [ids["windows-2022"]]}])["InstanceInformationList"][0]
    assert win["PlatformType"] == "Windows" and win["PingStatus"] == "Online" and win["ResourceType"] == "EC2Instance"
    assert win["PlatformName"].startswith("Microsoft Windows Server 2022")
    managed = ssm.describe_instance_information(Filters=[{"Key": "ResourceType", "Values": ["ManagedInstance"]}])["InstanceInformationList"]
    assert [m["InstanceId"] for m in managed] == [mi]
    assert managed[0]["Name"] == "onprem-1" and managed[0]["PlatformVersion"] == "20.04"
    legacy = ssm.describe_instance_information(InstanceInformationFilterList=[{"key": "PlatformTypes", "valueSet": ["Windows"]}])
    assert len(legacy["InstanceInformationList"]) == 1
    tagged = ssm.describe_instance_information(Filters=[{"Key": "tag:Patch Group", "Values": ["g"]}])
    assert len(tagged["InstanceInformationList"]) == 7
    page = ssm.describe_instance_information(MaxResults=5)
    assert len(page["InstanceInformationList"]) == 5
    assert len(ssm.describe_instance_information(MaxResults=5, NextToken=page["NextToken"])["InstanceInformationList"]) == 2
    ssm.add_tags_to_resource(ResourceType="ManagedInstance", ResourceId=mi, Tags=[{"Key": "Environment", "Value": "prod"}])
    assert {"Key": "Environment", "Value": "prod"} in ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=mi)["TagList"]
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_information(Filters=[{"Key": "Bogus", "Values": ["x"]}])
    assert code(err) == "InvalidFilterKey"
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": ["nonsense"]}])
    assert code(err) == "InvalidInstanceId"
    with pytest.raises(ClientError) as err:
        emu.client("ssm", validate=False).describe_instance_information(MaxResults=51)
    assert code(err) == "ValidationException"


# --- execute-window hook ------------------------------------------------------------------------


def _scenario(emu: Emulator) -> dict[str, Any]:
    ssm = emu.client("ssm")
    linux_group, win_group = "patch_test_0600_batch_1", "patch_test_0600_batch_2"
    rhel = launch(emu, "rhel-9", linux_group, "rhel-test")
    ubuntu = launch(emu, "ubuntu-22.04", linux_group, "ubuntu-test")
    win = launch(emu, "windows-2022", win_group, "win-test")
    rhel_b = baseline(emu)
    ssm.register_patch_baseline_for_patch_group(BaselineId=rhel_b, PatchGroup=linux_group)
    emu.client("s3").create_bucket(Bucket="patch-logs")
    emu.allow_instance_uploads("patch-logs")
    wid = window(emu)
    ids = {}
    for priority, group in ((2, win_group), (1, linux_group)):
        tid = ssm.register_target_with_maintenance_window(
            WindowId=wid, ResourceType="INSTANCE", Name=group, Targets=[{"Key": "tag:Patch Group", "Values": [group]}]
        )["WindowTargetId"]
        ids[group] = ssm.register_task_with_maintenance_window(
            WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Priority=priority,
            Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="50%", MaxErrors="1",
            TaskInvocationParameters={"RunCommand": {"Parameters": {"Operation": ["Install"]}, "OutputS3BucketName": "patch-logs", "OutputS3KeyPrefix": "runs"}},
        )["WindowTaskId"]
    return {"window": wid, "rhel": rhel, "ubuntu": ubuntu, "win": win, "rhel_baseline": rhel_b, "tasks": ids}


def test_execute_window_success(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    s = _scenario(emu)
    status, run = emu.post("/patchpilot-emulator/execute-window", {"WindowId": s["window"], "RebootPendingInstances": [s["win"]]})
    assert status == 200, run
    assert run["Status"] == "SUCCESS"
    assert [t["WindowTaskId"] for t in run["Tasks"]] == [s["tasks"]["patch_test_0600_batch_1"], s["tasks"]["patch_test_0600_batch_2"]]
    assert sorted(run["Tasks"][0]["InstanceIds"]) == sorted([s["rhel"], s["ubuntu"]])
    exe = ssm.get_maintenance_window_execution(WindowExecutionId=run["WindowExecutionId"])
    assert exe["Status"] == "SUCCESS" and exe["TaskIds"] == run["TaskIds"]
    listed = ssm.describe_maintenance_window_executions(WindowId=s["window"])["WindowExecutions"]
    assert listed[0]["WindowExecutionId"] == run["WindowExecutionId"]
    tasks = ssm.describe_maintenance_window_execution_tasks(WindowExecutionId=run["WindowExecutionId"])["WindowExecutionTaskIdentities"]
    assert [t["Status"] for t in tasks] == ["SUCCESS", "SUCCESS"] and tasks[0]["TaskArn"] == "AWS-RunPatchBaseline"
    invs = ssm.describe_maintenance_window_execution_task_invocations(WindowExecutionId=run["WindowExecutionId"], TaskId=run["TaskIds"][0])["WindowExecutionTaskInvocationIdentities"]
    assert invs[0]["ExecutionId"] == run["Tasks"][0]["CommandIds"][0]
    detail = ssm.get_maintenance_window_execution_task(WindowExecutionId=run["WindowExecutionId"], TaskId=run["TaskIds"][1])
    assert detail["Priority"] == 2 and detail["Type"] == "RUN_COMMAND"
    cmd = ssm.list_commands(CommandId=run["Tasks"][0]["CommandIds"][0])["Commands"][0]
    assert cmd["DocumentName"] == "AWS-RunPatchBaseline" and cmd["Parameters"] == {"Operation": ["Install"]}
    assert cmd["TargetCount"] == 2 and cmd["CompletedCount"] == 2 and cmd["ErrorCount"] == 0
    win_inv = ssm.list_command_invocations(CommandId=run["Tasks"][1]["CommandIds"][0], Details=True)["CommandInvocations"][0]
    assert win_inv["CommandPlugins"][0]["Name"] == "PatchWindows"
    assert "/patch-logs/runs/" in win_inv["StandardOutputUrl"] and "awsrunPowerShellScript/PatchWindows" in win_inv["StandardOutputUrl"]
    states = {p["InstanceId"]: p for p in ssm.describe_instance_patch_states(InstanceIds=[s["rhel"], s["ubuntu"], s["win"]])["InstancePatchStates"]}
    assert states[s["rhel"]]["BaselineId"] == s["rhel_baseline"]
    assert states[s["rhel"]]["PatchGroup"] == "patch_test_0600_batch_1"
    assert states[s["rhel"]]["Operation"] == "Install" and states[s["rhel"]]["FailedCount"] == 0
    assert states[s["win"]]["InstalledPendingRebootCount"] > 0
    assert "patchbaseline/pb-" in states[s["ubuntu"]]["BaselineId"]  # default baseline: no UBUNTU registration
    page = ssm.describe_instance_patch_states(InstanceIds=[s["rhel"], s["ubuntu"], s["win"]], MaxResults=10)
    assert len(page["InstancePatchStates"]) == 3


def test_execute_window_failures(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    s = _scenario(emu)
    status, run = emu.post(
        "/patchpilot-emulator/execute-window",
        {"WindowId": s["window"], "FailInstances": [s["rhel"]], "UnreachableInstances": [s["ubuntu"]]},
    )
    assert status == 200 and run["Status"] == "FAILED"
    linux_cmd = run["Tasks"][0]["CommandIds"][0]
    cmd = ssm.list_commands(CommandId=linux_cmd)["Commands"][0]
    # MaxErrors "1": one Failed invocation is "the value of MaxErrors or more" -> Failed;
    # Undeliverable doesn't count against MaxErrors (ErrorCount counts Failed/ExecutionTimedOut).
    assert cmd["Status"] == "Failed" and cmd["StatusDetails"] == "Failed"
    assert cmd["ErrorCount"] == 1 and cmd["DeliveryTimedOutCount"] == 0 and cmd["TargetCount"] == 2
    failed = ssm.list_command_invocations(CommandId=linux_cmd, Filters=[{"key": "Status", "value": "Failed"}], Details=True)["CommandInvocations"]
    by_id = {f["InstanceId"]: f for f in failed}
    assert by_id[s["rhel"]]["CommandPlugins"][0]["ResponseCode"] == 1 and by_id[s["rhel"]]["StatusDetails"] == "Failed"
    # agent ConnectionLost: never delivered -> Undeliverable (Status Failed, no plugin output)
    assert by_id[s["ubuntu"]]["StatusDetails"] == "Undeliverable" and by_id[s["ubuntu"]]["CommandPlugins"] == []
    result = {r["InstanceId"]: r for r in run["Tasks"][0]["InstanceResults"]}
    assert result[s["ubuntu"]]["StatusHistory"] == ["Pending", "Delayed", "Undeliverable"]
    assert ssm.describe_instance_patch_states(InstanceIds=[s["rhel"]])["InstancePatchStates"][0]["FailedCount"] > 0
    assert ssm.describe_instance_patch_states(InstanceIds=[s["ubuntu"]])["InstancePatchStates"] == []
    info = ssm.describe_instance_information(Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])["InstanceInformationList"]
    assert [i["InstanceId"] for i in info] == [s["ubuntu"]]
    failed_tasks = ssm.describe_maintenance_window_execution_tasks(
        WindowExecutionId=run["WindowExecutionId"], Filters=[{"Key": "STATUS", "Values": ["FAILED"]}]
    )["WindowExecutionTaskIdentities"]
    assert len(failed_tasks) == 1
    status, forced = emu.post("/patchpilot-emulator/execute-window", {"WindowId": s["window"], "Status": "TIMED_OUT"})
    assert forced["Status"] == "TIMED_OUT"
    assert ssm.get_maintenance_window_execution(WindowExecutionId=forced["WindowExecutionId"])["Status"] == "TIMED_OUT"
    status, missing = emu.post("/patchpilot-emulator/execute-window", {"WindowId": "mw-0123456789abcdef0"})
    assert status == 404 and missing["__type"] == "DoesNotExistException"
    with pytest.raises(ClientError) as err:
        ssm.get_maintenance_window_execution(WindowExecutionId="00000000-0000-0000-0000-000000000000")
    assert code(err) == "DoesNotExistException"


def test_execute_window_includes_managed_instances(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    s = _scenario(emu)
    _, body = emu.post(
        "/patchpilot-emulator/register-managed-instance",
        {"PlatformType": "Linux", "PlatformName": "CentOS Linux", "PlatformVersion": "7.9", "Tags": [{"Key": "Patch Group", "Value": "patch_test_0600_batch_1"}]},
    )
    _, run = emu.post("/patchpilot-emulator/execute-window", {"WindowId": s["window"]})
    assert body["InstanceId"] in run["Tasks"][0]["InstanceIds"]
    state = ssm.describe_instance_patch_states(InstanceIds=[body["InstanceId"]])["InstancePatchStates"][0]
    assert "patchbaseline/pb-" in state["BaselineId"]


# --- request counter, faults, reset ------------------------------------------------------------


def test_request_counter(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    ec2 = emu.client("ec2")
    emu.post("/patchpilot-emulator/request-log/reset")
    ssm.describe_patch_baselines()
    ssm.describe_patch_baselines()
    ec2.describe_instances()
    log = emu.get("/patchpilot-emulator/request-log")
    assert log["counts"] == {"ssm:DescribePatchBaselines": 2, "ec2:DescribeInstances": 1}
    assert log["total"] == 3
    _, posted = emu.post("/patchpilot-emulator/request-log")
    assert posted["total"] == 3
    emu.post("/patchpilot-emulator/request-log/reset")
    assert emu.get("/patchpilot-emulator/request-log")["total"] == 0


def test_fault_injection(emu: Emulator) -> None:
    ec2 = emu.client("ec2")
    ssm = emu.client("ssm")
    status, _ = emu.post("/patchpilot-emulator/faults", {"service": "ec2", "action": "DescribeInstances", "error": "InvalidInstanceID.NotFound", "count": 2})
    assert status == 200
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])
        assert code(err) == "InvalidInstanceID.NotFound"
    ec2.describe_instances()
    emu.post("/patchpilot-emulator/faults", {"service": "ssm", "action": "DescribePatchBaselines", "error": "ThrottlingException", "count": 1})
    with pytest.raises(ClientError) as err:
        ssm.describe_patch_baselines()
    assert code(err) == "ThrottlingException"
    ssm.describe_patch_baselines()
    emu.post("/patchpilot-emulator/faults", {"service": "sns", "action": "Publish", "error": "Throttling", "count": 1})
    sns = emu.client("sns")
    topic = sns.create_topic(Name="t")["TopicArn"]
    with pytest.raises(ClientError) as err:
        sns.publish(TopicArn=topic, Message="m")
    assert code(err) == "Throttling"
    log = emu.get("/patchpilot-emulator/request-log")["counts"]
    assert log["ec2:DescribeInstances"] == 3 and log["ssm:DescribePatchBaselines"] == 2


def test_reset_clears_extension_state(emu: Emulator) -> None:
    ssm = emu.client("ssm")
    s = _scenario(emu)
    emu.post("/patchpilot-emulator/register-managed-instance", {"PlatformType": "Linux", "PlatformName": "Ubuntu", "PlatformVersion": "22.04"})
    emu.post("/patchpilot-emulator/execute-window", {"WindowId": s["window"]})
    emu.post("/patchpilot-emulator/faults", {"service": "ssm", "action": "ListCommands", "error": "ThrottlingException", "count": 5})
    emu.reset()
    assert emu.get("/patchpilot-emulator/request-log")["total"] == 0
    assert ssm.describe_patch_groups()["Mappings"] == []
    assert ssm.describe_instance_information()["InstanceInformationList"] == []
    assert ssm.list_commands()["Commands"] == []
    assert emu.get("/patchpilot-emulator/faults")["faults"] == []
