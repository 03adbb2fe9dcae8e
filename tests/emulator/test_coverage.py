"""Coverage: which EC2 instances are SSM managed nodes, what their agent reports, AWS's
predefined patch baselines and the account defaults, and the Default Host Management
Configuration service setting. Each test names the AWS page it follows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Emulator
from test_emulator import RULES, code, window

# key -> (AMI id, PlatformType, PlatformName, PlatformVersion, Patch Manager OperatingSystem,
#         EC2 PlatformDetails, SSM Agent preinstalled)
NEW_AMIS = {
    "amazon-linux-2023": ("ami-0cf10cdf9fcd62d37", "Linux", "Amazon Linux", "2023", "AMAZON_LINUX_2023", "Linux/UNIX", True),
    "amazon-linux-1": ("ami-0ff8a91507f77f867", "Linux", "Amazon Linux AMI", "2018.03", "AMAZON_LINUX", "Linux/UNIX", True),
    "debian-12": ("ami-058bd2d568351da34", "Linux", "Debian GNU/Linux", "12", "DEBIAN", "Linux/UNIX", False),
    "rocky-9": ("ami-0cc3a8dc7ba6aa1b2", "Linux", "Rocky Linux", "9.3", "ROCKY_LINUX", "Linux/UNIX", False),
    "alma-9": ("ami-0de0d0b8a3f6a3f3b", "Linux", "AlmaLinux", "9.3", "ALMA_LINUX", "Linux/UNIX", False),
    "oracle-8": ("ami-0b8b37a2d1ec3b7a1", "Linux", "Oracle Linux Server", "8.9", "ORACLE_LINUX", "Linux/UNIX", False),
    "windows-2019": ("ami-0bde1eb2c18cb2abe", "Windows", "Microsoft Windows Server 2019 Datacenter", "10.0.17763", "WINDOWS", "Windows", True),
    "macos-14": ("ami-0a1e4a9c2d8f1b3c7", "MacOS", "macOS", "14.3", "MACOS", "Linux/UNIX", True),
}
RHEL_9 = "ami-023c11a32b0207432"
US_EAST_1 = "arn:aws:ssm:us-east-1:075727635805:patchbaseline/"


def run(emu: Emulator, ami: str, group: str = "g", name: str = "host", instance_type: str = "t3.micro") -> str:
    res = emu.client("ec2").run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType=instance_type,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}, {"Key": "Patch Group", "Value": group}]}],
    )
    return str(res["Instances"][0]["InstanceId"])


def info(emu: Emulator, instance_id: str) -> list[dict[str, Any]]:
    return list(
        emu.client("ssm").describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])["InstanceInformationList"]
    )


def set_managed(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = emu.post("/patchpilot-emulator/set-managed", body)
    assert status == 200, answer
    return answer


# --- AMI catalogue: what the agent reports ------------------------------------------------------


def test_new_amis_platform_details_and_agent_report(emu: Emulator) -> None:
    """EC2 "AMI billing information fields" (all of these bill as Linux/UNIX except Windows);
    InstanceInformation PlatformType/Name/Version as SSM Agent reports them (/etc/os-release
    NAME and VERSION_ID, sw_vers on macOS); "Amazon Machine Images (AMIs) with SSM Agent
    preinstalled" decides which are managed nodes at launch."""
    ec2 = emu.client("ec2")
    images = {i["ImageId"]: i for i in ec2.describe_images(ImageIds=[v[0] for v in NEW_AMIS.values()])["Images"]}
    assert len(images) == len(NEW_AMIS)
    assert images[NEW_AMIS["amazon-linux-2023"][0]]["Name"].startswith("al2023-ami-2023.")
    assert images[NEW_AMIS["macos-14"][0]]["Architecture"] == "arm64_mac"
    for key, (ami, ptype, pname, pversion, _os, details, agent) in NEW_AMIS.items():
        assert images[ami]["PlatformDetails"] == details, key
        iid = run(emu, ami, name=key, instance_type="mac2.metal" if key == "macos-14" else "t3.micro")
        instance = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        assert instance["PlatformDetails"] == details, key
        assert instance.get("Platform") == ("windows" if ptype == "Windows" else None), key
        found = info(emu, iid)
        if not agent:
            assert found == [], f"{key}: no SSM Agent on the AMI, not a managed node"
            continue
        assert found[0]["PlatformType"] == ptype and found[0]["PlatformName"] == pname, key
        assert found[0]["PlatformVersion"] == pversion and found[0]["PingStatus"] == "Online", key


def test_agent_installed_by_hand_patches_with_the_os_baseline(emu: Emulator) -> None:
    """Debian has no agent preinstalled; once installed ("Manually installing SSM Agent on EC2
    instances for Linux") it reports "Debian GNU/Linux" 12 and RunPatchBaseline uses the
    DEBIAN default baseline (AWS-DebianDefaultPatchBaseline)."""
    ssm = emu.client("ssm")
    debian = run(emu, NEW_AMIS["debian-12"][0], group="deb")
    assert set_managed(emu, {"InstanceId": debian, "Managed": True})["PingStatus"] == "Online"
    assert info(emu, debian)[0]["PlatformName"] == "Debian GNU/Linux"
    wid = window(emu)
    tid = ssm.register_target_with_maintenance_window(WindowId=wid, ResourceType="INSTANCE", Targets=[{"Key": "tag:Patch Group", "Values": ["deb"]}])["WindowTargetId"]
    ssm.register_task_with_maintenance_window(
        WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Priority=1,
        Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="1", MaxErrors="0",
        TaskInvocationParameters={"RunCommand": {"Parameters": {"Operation": ["Scan"]}}},
    )
    status, body = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    assert status == 200 and body["Status"] == "SUCCESS", body
    patch = ssm.describe_instance_patch_states(InstanceIds=[debian])["InstancePatchStates"][0]
    assert patch["BaselineId"] == US_EAST_1 + "pb-09a5f8eb62bde80b1"


@pytest.mark.parametrize(
    "platform_type,name,version,expected",
    [
        ("Linux", "Amazon Linux", "2023", "AMAZON_LINUX_2023"),
        ("Linux", "Amazon Linux AMI", "2018.03", "AMAZON_LINUX"),
        ("Linux", "Amazon Linux", "2", "AMAZON_LINUX_2"),
        ("Linux", "Debian GNU/Linux", "12", "DEBIAN"),
        ("Linux", "Rocky Linux", "9.3", "ROCKY_LINUX"),
        ("Linux", "AlmaLinux", "9.3", "ALMA_LINUX"),
        ("Linux", "Oracle Linux Server", "8.9", "ORACLE_LINUX"),
        ("MacOS", "macOS", "14.3", "MACOS"),
        ("Windows", "Microsoft Windows Server 2019 Datacenter", "10.0.17763", "WINDOWS"),
    ],
)
def test_register_managed_instance_platforms(emu: Emulator, platform_type: str, name: str, version: str, expected: str) -> None:
    """Hybrid nodes report the same PlatformName/Version; their patch state uses the default
    baseline of the OS Patch Manager maps them to."""
    status, body = emu.post(
        "/patchpilot-emulator/register-managed-instance",
        {"PlatformType": platform_type, "PlatformName": name, "PlatformVersion": version, "Tags": {"Patch Group": "onprem"}},
    )
    assert status == 200, body
    node = info(emu, body["InstanceId"])[0]
    assert (node["PlatformType"], node["PlatformName"], node["PlatformVersion"]) == (platform_type, name, version)
    ssm = emu.client("ssm")
    wid = window(emu)
    tid = ssm.register_target_with_maintenance_window(WindowId=wid, ResourceType="INSTANCE", Targets=[{"Key": "tag:Patch Group", "Values": ["onprem"]}])["WindowTargetId"]
    ssm.register_task_with_maintenance_window(
        WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Priority=1,
        Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="1", MaxErrors="0",
        TaskInvocationParameters={"RunCommand": {"Parameters": {"Operation": ["Scan"]}}},
    )
    emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    patch = ssm.describe_instance_patch_states(InstanceIds=[body["InstanceId"]])["InstancePatchStates"][0]
    assert patch["BaselineId"] == ssm.get_default_patch_baseline(OperatingSystem=expected)["BaselineId"]


def test_register_managed_instance_rejects_unknown_patch_os(emu: Emulator) -> None:
    status, body = emu.post("/patchpilot-emulator/register-managed-instance", {"PlatformType": "Linux", "PatchOperatingSystem": "GENTOO"})
    assert status == 400 and body["__type"] == "ValidationException"


# --- managed or not -----------------------------------------------------------------------------


def test_unmanaged_instance_is_unknown_to_ssm(emu: Emulator) -> None:
    """An instance that is not a managed node: absent from DescribeInstanceInformation, not
    selected by tag targets (Run Command and maintenance windows target managed nodes only),
    SendCommand naming it → InvalidInstanceId (SendCommand "Errors": "SSM Agent isn't
    running" / not a valid managed node)."""
    ssm = emu.client("ssm")
    rocky = run(emu, NEW_AMIS["rocky-9"][0])  # no agent on the AMI
    rhel = run(emu, RHEL_9)
    assert set_managed(emu, {"InstanceId": rhel, "Managed": False}) == {"InstanceId": rhel, "Managed": False}
    listed = {i["InstanceId"] for i in ssm.describe_instance_information()["InstanceInformationList"]}
    assert rocky not in listed and rhel not in listed
    assert info(emu, rhel) == []
    for iid in (rocky, rhel):
        with pytest.raises(ClientError) as err:
            ssm.send_command(InstanceIds=[iid], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]})
        assert code(err) == "InvalidInstanceId"
    managed = run(emu, RHEL_9)
    cmd = ssm.send_command(Targets=[{"Key": "tag:Patch Group", "Values": ["g"]}], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]})["Command"]
    assert cmd["InstanceIds"] == [managed]
    wid = window(emu)
    tid = ssm.register_target_with_maintenance_window(WindowId=wid, ResourceType="INSTANCE", Targets=[{"Key": "tag:Patch Group", "Values": ["g"]}])["WindowTargetId"]
    ssm.register_task_with_maintenance_window(
        WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Priority=1,
        Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="2", MaxErrors="0",
        TaskInvocationParameters={"RunCommand": {"Parameters": {"Operation": ["Scan"]}}},
    )
    _, body = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    assert body["Tasks"][0]["InstanceIds"] == [managed]
    # unmanaged instances can't get an outcome: they are not managed nodes
    status, err_body = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid, "Outcomes": {rhel: "failed"}})
    assert status == 400 and err_body["__type"] == "ValidationException"
    # managed again (agent back): listed again
    set_managed(emu, {"InstanceId": rhel, "Managed": True})
    assert info(emu, rhel)[0]["PingStatus"] == "Online"


def test_run_patch_baseline_requires_its_operation(emu: Emulator) -> None:
    """AWS-RunPatchBaseline's Operation is "(Required)" with no default (the document's
    content), so SendCommand without it, with a value outside Scan | Install, or with a
    parameter the document does not define fails with InvalidParameters; a window task sending
    such a command fails with that error and reaches no node."""
    ssm = emu.client("ssm")
    iid = run(emu, RHEL_9, group="strict")
    for parameters in ({}, {"Operation": ["Patch"]}, {"Operation": ["Scan"], "Reboot": ["No"]},
                       {"Operation": ["Install"], "RebootOption": ["Always"]}):
        with pytest.raises(ClientError) as err:
            ssm.send_command(InstanceIds=[iid], DocumentName="AWS-RunPatchBaseline", Parameters=parameters)
        assert code(err) == "InvalidParameters", parameters
    ok = ssm.send_command(InstanceIds=[iid], DocumentName="AWS-RunPatchBaseline",
                          Parameters={"Operation": ["Scan"], "RebootOption": ["NoReboot"]})["Command"]
    assert ok["DocumentName"] == "AWS-RunPatchBaseline"
    wid = window(emu)
    tid = ssm.register_target_with_maintenance_window(WindowId=wid, ResourceType="INSTANCE", Targets=[{"Key": "tag:Patch Group", "Values": ["strict"]}])["WindowTargetId"]
    ssm.register_task_with_maintenance_window(
        WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Priority=1,
        Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="1", MaxErrors="0",
    )
    _, body = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    assert body["Status"] == "FAILED", body
    task = ssm.describe_maintenance_window_execution_tasks(WindowExecutionId=body["WindowExecutionId"])["WindowExecutionTaskIdentities"][0]
    invocations = ssm.describe_maintenance_window_execution_task_invocations(
        WindowExecutionId=body["WindowExecutionId"], TaskId=task["TaskExecutionId"])["WindowExecutionTaskInvocationIdentities"]
    assert [i["Status"] for i in invocations] == ["FAILED"]
    assert "InvalidParameters" in invocations[0]["StatusDetails"], invocations
    assert body["Tasks"][0]["CommandIds"] == []


def test_connection_lost_node(emu: Emulator) -> None:
    """PingStatus ConnectionLost (InstanceInformation PingStatus): still listed, LastPingDateTime
    in the past; invocations to it end Undeliverable ("Understanding command statuses":
    "The command can't be delivered to the managed node ... might not be responding")."""
    ssm = emu.client("ssm")
    iid = run(emu, RHEL_9)
    lost_at = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(microsecond=0)
    answer = set_managed(emu, {"InstanceId": iid, "PingStatus": "ConnectionLost", "LastPingDateTime": lost_at.isoformat()})
    assert answer["PingStatus"] == "ConnectionLost"
    node = info(emu, iid)[0]
    assert node["PingStatus"] == "ConnectionLost"
    assert node["LastPingDateTime"] == lost_at
    lost = ssm.describe_instance_information(Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])["InstanceInformationList"]
    assert [n["InstanceId"] for n in lost] == [iid]
    cmd = ssm.send_command(InstanceIds=[iid], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]})["Command"]
    inv = ssm.list_command_invocations(CommandId=cmd["CommandId"])["CommandInvocations"][0]
    assert inv["Status"] == "Failed" and inv["StatusDetails"] == "Undeliverable"
    # default LastPingDateTime: in the past
    other = run(emu, RHEL_9)
    set_managed(emu, {"InstanceId": other, "PingStatus": "ConnectionLost"})
    assert info(emu, other)[0]["LastPingDateTime"] < datetime.now(timezone.utc)
    set_managed(emu, {"InstanceId": iid, "PingStatus": "Online"})
    assert info(emu, iid)[0]["PingStatus"] == "Online"


def test_connection_lost_managed_instance(emu: Emulator) -> None:
    _, mi = emu.post("/patchpilot-emulator/register-managed-instance", {"PlatformType": "Linux", "PlatformName": "Ubuntu", "PlatformVersion": "22.04"})
    set_managed(emu, {"InstanceId": mi["InstanceId"], "PingStatus": "ConnectionLost"})
    assert info(emu, mi["InstanceId"])[0]["PingStatus"] == "ConnectionLost"
    status, body = emu.post("/patchpilot-emulator/set-managed", {"InstanceId": mi["InstanceId"], "Managed": False})
    assert status == 400 and body["__type"] == "ValidationException"


def test_stopped_instance_is_connection_lost(emu: Emulator) -> None:
    """A stopped EC2 instance stays a managed node; its agent is not running, so PingStatus is
    ConnectionLost with LastPingDateTime no later than the stop (InstanceInformation)."""
    ec2 = emu.client("ec2")
    iid = run(emu, RHEL_9)
    ec2.stop_instances(InstanceIds=[iid])
    node = info(emu, iid)[0]
    assert node["PingStatus"] == "ConnectionLost"
    assert node["LastPingDateTime"] <= datetime.now(timezone.utc)
    # Online can't be forced on a stopped instance
    assert set_managed(emu, {"InstanceId": iid, "PingStatus": "Online"})["PingStatus"] == "ConnectionLost"
    ec2.start_instances(InstanceIds=[iid])
    assert info(emu, iid)[0]["PingStatus"] == "Online"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"InstanceId": "i-0123456789abcdef0", "Managed": False},
        {"InstanceId": "@", "PingStatus": "Inactive"},
        {"InstanceId": "@", "Managed": "no"},
        {"InstanceId": "@"},
        {"InstanceId": "@", "Managed": False, "PingStatus": "ConnectionLost"},
        {"InstanceId": "@", "PingStatus": "Online", "LastPingDateTime": "2024-01-01T00:00:00Z"},
        {"InstanceId": "@", "PingStatus": "ConnectionLost", "LastPingDateTime": "2999-01-01T00:00:00Z"},
        {"InstanceId": "@", "PingStatus": "ConnectionLost", "LastPingDateTime": "yesterday"},
    ],
)
def test_set_managed_validation(emu: Emulator, body: dict[str, Any]) -> None:
    iid = run(emu, RHEL_9)
    body = {k: (iid if v == "@" else v) for k, v in body.items()}
    status, answer = emu.post("/patchpilot-emulator/set-managed", body)
    assert status == 400 and answer["__type"] == "ValidationException", answer


def test_set_ping_on_unmanaged_instance_rejected(emu: Emulator) -> None:
    debian = run(emu, NEW_AMIS["debian-12"][0])
    status, answer = emu.post("/patchpilot-emulator/set-managed", {"InstanceId": debian, "PingStatus": "ConnectionLost"})
    assert status == 400 and answer["__type"] == "ValidationException"


# --- AWS predefined baselines and the account's defaults ---------------------------------------


PREDEFINED = {
    "WINDOWS": ("AWS-DefaultPatchBaseline", "pb-09ca3fb51f0412ec3"),
    "AMAZON_LINUX_2023": ("AWS-AmazonLinux2023DefaultPatchBaseline", "pb-05c9c9bf778d4c4d0"),
    "AMAZON_LINUX": ("AWS-AmazonLinuxDefaultPatchBaseline", "pb-0c10e657807c7a700"),
    "UBUNTU": ("AWS-UbuntuDefaultPatchBaseline", "pb-0c7e89f711c3095f4"),
    "DEBIAN": ("AWS-DebianDefaultPatchBaseline", "pb-09a5f8eb62bde80b1"),
    "ROCKY_LINUX": ("AWS-RockyLinuxDefaultPatchBaseline", "pb-03ec98bc512aa3ac0"),
    "ALMA_LINUX": ("AWS-AlmaLinuxDefaultPatchBaseline", "pb-0cb0c4966f86b059b"),
    "ORACLE_LINUX": ("AWS-OracleLinuxDefaultPatchBaseline", "pb-06bff38e95fe85c02"),
    "MACOS": ("AWS-MacOSDefaultPatchBaseline", "pb-0ee4f94581368c0d4"),
}


def _filters(rule: dict[str, Any]) -> dict[str, list[str]]:
    return {f["Key"]: f["Values"] for f in rule["PatchFilterGroup"]["PatchFilters"]}


@pytest.mark.parametrize("os_name", sorted(PREDEFINED))
def test_predefined_baselines(emu: Emulator, os_name: str) -> None:
    """GetPatchBaseline on AWS's predefined baselines (by ARN, as in RegisterDefaultPatchBaseline's
    example) answers the rules of "About predefined and custom patch baselines"; every rule has
    ComplianceLevel UNSPECIFIED ("the predefined baselines assign a compliance level of
    Unspecified")."""
    ssm = emu.client("ssm")
    name, pb = PREDEFINED[os_name]
    default = ssm.get_default_patch_baseline(OperatingSystem=os_name)
    assert default == {"BaselineId": US_EAST_1 + pb, "OperatingSystem": os_name, "ResponseMetadata": default["ResponseMetadata"]}
    got = ssm.get_patch_baseline(BaselineId=US_EAST_1 + pb)
    assert got["Name"] == name and got["OperatingSystem"] == os_name and got["BaselineId"] == US_EAST_1 + pb
    rules = got["ApprovalRules"]["PatchRules"]
    assert rules and all(r["ComplianceLevel"] == "UNSPECIFIED" for r in rules)
    first = _filters(rules[0])
    if os_name == "WINDOWS":
        assert first == {"CLASSIFICATION": ["CriticalUpdates", "SecurityUpdates"], "MSRC_SEVERITY": ["Critical", "Important"]}
        assert rules[0]["ApproveAfterDays"] == 7
    elif os_name in ("UBUNTU", "DEBIAN"):
        assert first == {"PRIORITY": ["Required", "Important", "Standard", "Optional", "Extra"]}
        assert "ApproveAfterDays" not in rules[0] and "ApproveUntilDate" not in rules[0]
    elif os_name == "ORACLE_LINUX":
        assert first == {"CLASSIFICATION": ["Security"], "SEVERITY": ["Important", "Moderate"]}
        assert _filters(rules[1]) == {"CLASSIFICATION": ["Bugfix"]} and rules[1]["ApproveAfterDays"] == 7
    elif os_name == "MACOS":
        assert first == {"CLASSIFICATION": ["Security"]}
    else:
        assert first == {"CLASSIFICATION": ["Security"], "SEVERITY": ["Critical", "Important"]}
        assert _filters(rules[1]) == {"CLASSIFICATION": ["Bugfix"]}
        assert [r["ApproveAfterDays"] for r in rules] == [7, 7]


def test_get_default_patch_baseline_defaults_to_windows(emu: Emulator) -> None:
    """GetDefaultPatchBaseline: "If you don't specify an operating system value, the default
    patch baseline for Windows is returned." """
    got = emu.client("ssm").get_default_patch_baseline()
    assert got["OperatingSystem"] == "WINDOWS" and got["BaselineId"] == US_EAST_1 + "pb-09ca3fb51f0412ec3"


def test_register_default_patch_baseline(emu: Emulator) -> None:
    """RegisterDefaultPatchBaseline sets the account's default for the baseline's OS; the
    predefined one comes back by its full ARN (not its pb- id); DescribePatchBaselines'
    DefaultBaseline follows; nodes without a patch group patch with it."""
    ssm = emu.client("ssm")
    custom = ssm.create_patch_baseline(Name="al2023-prod", OperatingSystem="AMAZON_LINUX_2023", ApprovalRules=RULES)["BaselineId"]
    assert ssm.register_default_patch_baseline(BaselineId=custom)["BaselineId"] == custom
    assert ssm.get_default_patch_baseline(OperatingSystem="AMAZON_LINUX_2023")["BaselineId"] == custom
    assert ssm.get_default_patch_baseline()["BaselineId"] == US_EAST_1 + "pb-09ca3fb51f0412ec3"  # other OSes unchanged
    assert ssm.get_patch_baseline_for_patch_group(PatchGroup="none", OperatingSystem="AMAZON_LINUX_2023")["BaselineId"] == custom
    ids = {b["BaselineId"]: b for b in ssm.describe_patch_baselines(Filters=[{"Key": "OPERATING_SYSTEM", "Values": ["AMAZON_LINUX_2023"]}])["BaselineIdentities"]}
    assert ids[custom]["DefaultBaseline"] is True
    assert ids[US_EAST_1 + "pb-05c9c9bf778d4c4d0"]["DefaultBaseline"] is False
    # the default can't be deleted while it is the default
    with pytest.raises(ClientError) as err:
        ssm.delete_patch_baseline(BaselineId=custom)
    assert code(err) == "ResourceInUseException"
    # a node with no patch group patches with the account default
    al = run(emu, NEW_AMIS["amazon-linux-2023"][0], group="")
    wid = window(emu)
    ssm.register_task_with_maintenance_window(
        WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Priority=1,
        Targets=[{"Key": "InstanceIds", "Values": [al]}], MaxConcurrency="1", MaxErrors="0",
        TaskInvocationParameters={"RunCommand": {"Parameters": {"Operation": ["Scan"]}}},
    )
    emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    assert ssm.describe_instance_patch_states(InstanceIds=[al])["InstancePatchStates"][0]["BaselineId"] == custom
    # back to AWS's: the full ARN; the bare pb- id of a predefined baseline is not the account's
    with pytest.raises(ClientError) as err:
        ssm.register_default_patch_baseline(BaselineId="pb-05c9c9bf778d4c4d0")
    assert code(err) == "DoesNotExistException"
    ssm.register_default_patch_baseline(BaselineId=US_EAST_1 + "pb-05c9c9bf778d4c4d0")
    assert ssm.get_default_patch_baseline(OperatingSystem="AMAZON_LINUX_2023")["BaselineId"] == US_EAST_1 + "pb-05c9c9bf778d4c4d0"
    ssm.delete_patch_baseline(BaselineId=custom)
    with pytest.raises(ClientError) as err:
        ssm.register_default_patch_baseline(BaselineId="pb-0123456789abcdef0")
    assert code(err) == "DoesNotExistException"


# --- Default Host Management Configuration ------------------------------------------------------

DHMC = "/ssm/managed-instance/default-ec2-instance-management-role"
DHMC_ARN = "arn:aws:ssm:us-east-1:123456789012:servicesetting" + DHMC


def test_default_host_management_setting(emu: Emulator) -> None:
    """GetServiceSetting / UpdateServiceSetting / ResetServiceSetting (API reference) on the
    DHMC setting ("Default Host Management Configuration": the value is the name of an IAM
    role); SettingId as the path or the setting's ARN; Status Default / Customized."""
    ssm = emu.client("ssm")
    setting = ssm.get_service_setting(SettingId=DHMC)["ServiceSetting"]
    assert setting["SettingId"] == DHMC and setting["ARN"] == DHMC_ARN
    assert setting["Status"] == "Default" and setting["SettingValue"] == "$None"
    assert "LastModifiedUser" not in setting
    ssm.update_service_setting(SettingId=DHMC_ARN, SettingValue="service-role/AWSSystemsManagerDefaultEC2InstanceManagementRole")
    setting = ssm.get_service_setting(SettingId=DHMC_ARN)["ServiceSetting"]
    assert setting["Status"] == "Customized"
    assert setting["SettingValue"] == "service-role/AWSSystemsManagerDefaultEC2InstanceManagementRole"
    assert setting["LastModifiedUser"].startswith("arn:aws:") and "LastModifiedDate" in setting
    reset = ssm.reset_service_setting(SettingId=DHMC)["ServiceSetting"]
    assert reset["Status"] == "Default" and reset["SettingValue"] == "$None"
    assert ssm.get_service_setting(SettingId=DHMC)["ServiceSetting"]["Status"] == "Default"


@pytest.mark.parametrize(
    "setting_id,value,error",
    [
        ("/ssm/managed-instance/default-ec2-instance-role", "MyRole", "ServiceSettingNotFound"),
        ("arn:aws:ssm:eu-west-1:123456789012:servicesetting" + DHMC, "MyRole", "ServiceSettingNotFound"),
        ("arn:aws:ssm:us-east-1:210987654321:servicesetting" + DHMC, "MyRole", "ServiceSettingNotFound"),
        (DHMC, "arn:aws:iam::123456789012:role/MyRole", "ValidationException"),
        ("/ssm/parameter-store/default-parameter-tier", "Premium", "ValidationException"),
    ],
)
def test_service_setting_errors(emu: Emulator, setting_id: str, value: str, error: str) -> None:
    ssm = emu.client("ssm")
    with pytest.raises(ClientError) as err:
        ssm.update_service_setting(SettingId=setting_id, SettingValue=value)
    assert code(err) == error
    if error == "ServiceSettingNotFound":
        with pytest.raises(ClientError) as err:
            ssm.get_service_setting(SettingId=setting_id)
        assert code(err) == error
        with pytest.raises(ClientError) as err:
            ssm.reset_service_setting(SettingId=setting_id)
        assert code(err) == error


def test_reset_clears_coverage_state(emu: Emulator) -> None:
    """POST /moto-api/reset forgets set-managed, ping, default baselines and service settings."""
    ssm = emu.client("ssm")
    ssm.update_service_setting(SettingId=DHMC, SettingValue="MyRole")
    custom = ssm.create_patch_baseline(Name="win-default", ApprovalRules=RULES)["BaselineId"]
    ssm.register_default_patch_baseline(BaselineId=custom)
    emu.reset()
    assert ssm.get_service_setting(SettingId=DHMC)["ServiceSetting"]["Status"] == "Default"
    assert ssm.get_default_patch_baseline()["BaselineId"] == US_EAST_1 + "pb-09ca3fb51f0412ec3"
