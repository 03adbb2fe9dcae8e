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
    )
    _, body = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    assert body["Tasks"][0]["InstanceIds"] == [managed]
    # unmanaged instances can't get an outcome: they are not managed nodes
    status, err_body = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid, "Outcomes": {rhel: "failed"}})
    assert status == 400 and err_body["__type"] == "ValidationException"
    # managed again (agent back): listed again
    set_managed(emu, {"InstanceId": rhel, "Managed": True})
    assert info(emu, rhel)[0]["PingStatus"] == "Online"


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
