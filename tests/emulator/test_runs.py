"""Maintenance-window execution: rate control, statuses, cutoff/duration, outputs.

Each test names the AWS page it follows (see README "Maintenance-window execution")."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Emulator
from test_emulator import code, launch, window

GROUP = "batch"


def _setup(emu: Emulator, hosts: int, *, max_concurrency: str = "50", max_errors: str = "0",
           cutoff_behavior: str = "CONTINUE_TASK", duration: int = 4, cutoff: int = 1,
           tasks: int = 1, priorities: list[int] | None = None, bucket: str | None = None) -> dict[str, Any]:
    ssm = emu.client("ssm")
    ids = sorted(launch(emu, "rhel-9", GROUP, f"h{i}") for i in range(hosts))
    wid = window(emu, Duration=duration, Cutoff=cutoff)
    tid = ssm.register_target_with_maintenance_window(
        WindowId=wid, ResourceType="INSTANCE", Targets=[{"Key": "tag:Patch Group", "Values": [GROUP]}]
    )["WindowTargetId"]
    task_ids = []
    for n in range(tasks):
        params: dict[str, Any] = {"Parameters": {"Operation": ["Install"]}}
        if bucket:
            params.update(OutputS3BucketName=bucket, OutputS3KeyPrefix="runs")
        task_ids.append(ssm.register_task_with_maintenance_window(
            WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND",
            Priority=(priorities or [1] * tasks)[n], Targets=[{"Key": "WindowTargetIds", "Values": [tid]}],
            MaxConcurrency=max_concurrency, MaxErrors=max_errors, CutoffBehavior=cutoff_behavior,
            TaskInvocationParameters={"RunCommand": params},
        )["WindowTaskId"])
    return {"window": wid, "target": tid, "hosts": ids, "tasks": task_ids}


def _run(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    status, run = emu.post("/patchpilot-emulator/execute-window", body)
    assert status == 200, run
    return run


def _results(run: dict[str, Any], task: int = 0) -> dict[str, dict[str, Any]]:
    return {r["InstanceId"]: r for r in run["Tasks"][task]["InstanceResults"]}


def test_max_errors_zero_stops_sending_after_first_failure(emu: Emulator) -> None:
    # "Run commands at scale" > error controls: "If you specify 0, then the system stops sending
    # the command to additional managed nodes after the first error result is returned";
    # "Terminated: The parent command exceeded its MaxErrors limit and subsequent command
    # invocations were canceled by the system" (Understanding command statuses).
    s = _setup(emu, 5, max_concurrency="1", max_errors="0")
    h = s["hosts"]
    run = _run(emu, {"WindowId": s["window"], "Outcomes": {h[1]: "failed", h[3]: {"Outcome": "failed", "FailedPatches": 2}}})
    res = _results(run)
    assert [res[i]["StatusDetails"] for i in h] == ["Success", "Failed", "Terminated", "Terminated", "Terminated"]
    assert res[h[2]]["Status"] == "Cancelled"
    ssm = emu.client("ssm")
    cmd = ssm.list_commands(CommandId=run["CommandIds"][0])["Commands"][0]
    assert (cmd["Status"], cmd["StatusDetails"]) == ("Failed", "Failed")
    assert cmd["TargetCount"] == 5 and cmd["CompletedCount"] == 5 and cmd["ErrorCount"] == 1
    # patch states only where the invocation ran
    states = ssm.describe_instance_patch_states(InstanceIds=h)["InstancePatchStates"]
    assert sorted(p["InstanceId"] for p in states) == sorted(h[:2])
    assert run["Status"] == "FAILED" and run["Tasks"][0]["Status"] == "FAILED"


def test_percentage_max_errors_incomplete(emu: Emulator) -> None:
    # Command StatusDetails "Incomplete: ... one or more invocations doesn't have a value of
    # Success but not enough invocations failed for the status to be Failed" (API Reference:
    # Command); 25% of 10 = 2 errors allowed, 1 failure -> Incomplete.
    s = _setup(emu, 10, max_concurrency="10%", max_errors="25%")
    run = _run(emu, {"WindowId": s["window"], "FailInstances": [s["hosts"][4]]})
    cmd = emu.client("ssm").list_commands(CommandId=run["CommandIds"][0])["Commands"][0]
    assert cmd["StatusDetails"] == "Incomplete" and cmd["Status"] == "Failed"
    assert cmd["ErrorCount"] == 1 and cmd["TargetCount"] == 10
    assert all(r["StatusDetails"] in ("Success", "Failed") for r in _results(run).values())
    assert run["Tasks"][0]["Status"] == "FAILED"


def test_stopped_and_unreachable_nodes_leave_a_record(emu: Emulator) -> None:
    # Delayed: "... because the node was stopped" -> Delivery Timed Out; Undeliverable: "might
    # not be responding"; neither counts against MaxErrors (Understanding command statuses).
    s = _setup(emu, 4, max_concurrency="4", max_errors="0")
    h = s["hosts"]
    ec2 = emu.client("ec2")
    ec2.terminate_instances(InstanceIds=[h[3]])  # terminated instances are never targeted
    run = _run(emu, {"WindowId": s["window"], "Outcomes": {h[0]: "stopped", h[1]: "unreachable"}})
    res = _results(run)
    assert set(res) == set(h[:3])
    assert (res[h[0]]["Status"], res[h[0]]["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    assert res[h[0]]["StatusHistory"] == ["Pending", "Delayed", "DeliveryTimedOut"]
    assert (res[h[1]]["Status"], res[h[1]]["StatusDetails"]) == ("Failed", "Undeliverable")
    assert res[h[2]]["StatusDetails"] == "Success"  # not Terminated: no error counted
    state = ec2.describe_instances(InstanceIds=[h[0]])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "stopped"
    ssm = emu.client("ssm")
    cmd = ssm.list_commands(CommandId=run["CommandIds"][0])["Commands"][0]
    assert cmd["ErrorCount"] == 0 and cmd["DeliveryTimedOutCount"] == 1
    assert cmd["StatusDetails"] == "DeliveryTimedOut"  # "MaxErrors or more ... Delivery Timed Out"
    ping = {i["InstanceId"]: i["PingStatus"] for i in ssm.describe_instance_information()["InstanceInformationList"]}
    assert ping[h[1]] == "ConnectionLost" and ping[h[0]] == "ConnectionLost"
    assert ssm.describe_instance_patch_states(InstanceIds=h[:2])["InstancePatchStates"] == []


def test_all_timestamps_in_the_past_and_priorities(emu: Emulator) -> None:
    s = _setup(emu, 2, tasks=3, priorities=[2, 1, 1])
    before = datetime.now(timezone.utc)
    run = _run(emu, {"WindowId": s["window"], "RebootPendingInstances": [s["hosts"][0]]})
    ssm = emu.client("ssm")
    exe = ssm.get_maintenance_window_execution(WindowExecutionId=run["WindowExecutionId"])
    assert exe["StartTime"] < before and exe["EndTime"] <= datetime.now(timezone.utc)
    tasks = {t["WindowTaskId"]: t for t in run["Tasks"]}
    # same priority: scheduled in parallel (RegisterTaskWithMaintenanceWindow Priority)
    assert tasks[s["tasks"][1]]["StartTime"] == tasks[s["tasks"][2]]["StartTime"] == run["StartTime"]
    assert tasks[s["tasks"][0]]["StartTime"] >= max(tasks[s["tasks"][1]]["EndTime"], tasks[s["tasks"][2]]["EndTime"])
    states = ssm.describe_instance_patch_states(InstanceIds=s["hosts"])["InstancePatchStates"]
    nowish = datetime.now(timezone.utc)
    for p in states:
        assert p["OperationEndTime"] <= nowish and p["OperationStartTime"] <= p["OperationEndTime"]
    for inv in ssm.list_command_invocations(Details=True)["CommandInvocations"]:
        assert inv["CommandPlugins"][0]["ResponseFinishDateTime"] <= nowish
    assert [p for p in states if p["InstanceId"] == s["hosts"][0]][0]["InstalledPendingRebootCount"] > 0


def test_task_not_started_by_cutoff_and_window_timed_out(emu: Emulator) -> None:
    # Cutoff: "hours before the end of the maintenance window that Systems Manager stops
    # scheduling new tasks"; Duration 2, Cutoff 1: a slow first task (90 min) keeps the second
    # from starting before the cutoff (60 min).
    s = _setup(emu, 1, duration=2, cutoff=1, tasks=2, priorities=[1, 2])
    run = _run(emu, {"WindowId": s["window"], "Outcomes": {s["hosts"][0]: {"Outcome": "slow", "Minutes": 90}}})
    assert [t["Status"] for t in run["Tasks"]] == ["SUCCESS", "TIMED_OUT"]
    assert run["Tasks"][1]["CommandIds"] == []
    assert run["Status"] == "TIMED_OUT"
    # slow beyond Duration: the window ends TIMED_OUT
    run = _run(emu, {"WindowId": s["window"], "Outcomes": {s["hosts"][0]: {"Outcome": "slow", "Minutes": 150}}})
    assert run["Tasks"][0]["Status"] == "TIMED_OUT" and run["Status"] == "TIMED_OUT"
    exe = emu.client("ssm").get_maintenance_window_execution(WindowExecutionId=run["WindowExecutionId"])
    assert (exe["EndTime"] - exe["StartTime"]).total_seconds() == 2 * 3600


def test_cancel_task_at_cutoff(emu: Emulator) -> None:
    # CutoffBehavior CANCEL_TASK: "the system sends a CancelCommand ... The status for tasks
    # that are not completed is TIMED_OUT."
    s = _setup(emu, 2, max_concurrency="1", duration=2, cutoff=1, cutoff_behavior="CANCEL_TASK")
    h = s["hosts"]
    run = _run(emu, {"WindowId": s["window"], "Outcomes": {h[0]: {"Outcome": "slow", "Minutes": 90}}})
    res = _results(run)
    assert res[h[0]]["StatusDetails"] == "Cancelled" and res[h[1]]["StatusDetails"] == "Cancelled"
    assert run["Tasks"][0]["Status"] == "TIMED_OUT" and run["Status"] == "TIMED_OUT"
    cmd = emu.client("ssm").list_commands(CommandId=run["CommandIds"][0])["Commands"][0]
    assert cmd["Status"] == "Cancelled"
    assert emu.client("ssm").describe_instance_patch_states(InstanceIds=h)["InstancePatchStates"] == []


def test_empty_targets_fail(emu: Emulator) -> None:
    s = _setup(emu, 0)
    run = _run(emu, {"WindowId": s["window"]})
    assert run["Tasks"][0]["Status"] == "FAILED" and run["Status"] == "FAILED"
    cmd = emu.client("ssm").list_commands(CommandId=run["CommandIds"][0])["Commands"][0]
    assert cmd["StatusDetails"] == "NoInstancesInTag" and cmd["TargetCount"] == 0


def test_disabled_window_does_not_run(emu: Emulator) -> None:
    s = _setup(emu, 1)
    ssm = emu.client("ssm")
    ssm.update_maintenance_window(WindowId=s["window"], Enabled=False)
    status, body = emu.post("/patchpilot-emulator/execute-window", {"WindowId": s["window"]})
    assert status == 400 and body["__type"] == "MaintenanceWindowDisabled"
    assert ssm.describe_maintenance_window_executions(WindowId=s["window"])["WindowExecutions"] == []


def test_output_objects_and_upload_failure(emu: Emulator) -> None:
    s = _setup(emu, 2, bucket="patch-out")
    h = s["hosts"]
    s3 = emu.client("s3")
    s3.create_bucket(Bucket="patch-out")
    # No bucket policy: the instance's AmazonSSMManagedInstanceCore has no S3 write, so the
    # agent's upload is denied and no URL points at a missing object.
    run = _run(emu, {"WindowId": s["window"]})
    inv = emu.client("ssm").get_command_invocation(CommandId=run["CommandIds"][0], InstanceId=h[1])
    assert inv["StandardOutputUrl"] == "" and "AccessDenied" in inv["StandardErrorContent"]
    assert "s3:PutObject" in inv["StandardErrorContent"]
    emu.allow_instance_uploads("patch-out")
    run = _run(emu, {"WindowId": s["window"], "FailInstances": [h[0]]})
    ssm = emu.client("ssm")
    cmd_id = run["CommandIds"][0]
    invs = {i["InstanceId"]: i for i in ssm.list_command_invocations(CommandId=cmd_id, Details=True)["CommandInvocations"]}
    key = f"runs/{cmd_id}/{h[0]}/awsrunShellScript/PatchLinux"
    assert invs[h[0]]["StandardOutputUrl"] == f"https://s3.us-east-1.amazonaws.com/patch-out/{key}/stdout"
    assert invs[h[0]]["StandardErrorUrl"] == f"https://s3.us-east-1.amazonaws.com/patch-out/{key}/stderr"
    assert b"Failed:" in s3.get_object(Bucket="patch-out", Key=f"{key}/stdout")["Body"].read()
    assert s3.get_object(Bucket="patch-out", Key=f"{key}/stderr")["Body"].read()
    assert invs[h[1]]["StandardErrorUrl"] == ""  # no stderr object when stderr is empty
    # bucket gone: no URL to a missing object, the failure shows in the output
    s3.delete_object(Bucket="patch-out", Key=f"{key}/stdout")
    s3.delete_object(Bucket="patch-out", Key=f"{key}/stderr")
    for k in [o["Key"] for o in s3.list_objects_v2(Bucket="patch-out").get("Contents", [])]:
        s3.delete_object(Bucket="patch-out", Key=k)
    s3.delete_bucket(Bucket="patch-out")
    run = _run(emu, {"WindowId": s["window"]})
    inv = ssm.get_command_invocation(CommandId=run["CommandIds"][0], InstanceId=h[1])
    assert inv["StandardOutputUrl"] == "" and "NoSuchBucket" in inv["StandardErrorContent"]
    assert inv["Status"] == "Success"


def test_register_task_requires_targets_and_rate_controls(emu: Emulator) -> None:
    # RegisterTaskWithMaintenanceWindow: "One or more targets must be specified for maintenance
    # window Run Command-type tasks"; MaxConcurrency/MaxErrors "can be omitted only when you are
    # registering or updating a targetless task".
    ssm = emu.client("ssm")
    s = _setup(emu, 1)
    base = dict(WindowId=s["window"], TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND")
    with pytest.raises(ClientError) as err:
        ssm.register_task_with_maintenance_window(**base, MaxConcurrency="1", MaxErrors="0")
    assert code(err) == "ValidationException"
    targets = [{"Key": "WindowTargetIds", "Values": [s["target"]]}]
    with pytest.raises(ClientError) as err:
        ssm.register_task_with_maintenance_window(**base, Targets=targets, MaxErrors="0")
    assert code(err) == "ValidationException" and "MaxConcurrency" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        ssm.update_maintenance_window_task(WindowId=s["window"], WindowTaskId=s["tasks"][0], TaskArn="AWS-RunPatchBaseline", Targets=targets, Replace=True)
    assert code(err) == "ValidationException"
    ok = ssm.update_maintenance_window_task(WindowId=s["window"], WindowTaskId=s["tasks"][0], Priority=3)
    assert ok["MaxConcurrency"] == "50"


@pytest.mark.parametrize(
    "schedule",
    # every maintenance-window example of "Reference: Cron and rate expressions for Systems Manager"
    ["cron(30 09 ? * * *)", "cron(24 30 09 ? * * *)", "cron(0 2 ? * THU#3 *)", "cron(15 10 ? * * *)",
     "cron(15 10 ? * MON-FRI *)", "cron(0 2 L * ? *)", "cron(15 10 ? * 6L *)", "rate(30 minutes)",
     "rate(1 hour)", "rate(5 hours)", "rate(25 days)", "cron(0 16 ? * TUE *)", "cron(30 23 ? * TUE#3 *)",
     "rate(7 days)", "at(2021-07-07T13:15:30)", "cron(0 30 23 ? * TUE#3 *)"],
)
def test_documented_schedules_accepted(emu: Emulator, schedule: str) -> None:
    window(emu, Schedule=schedule)


@pytest.mark.parametrize("schedule", ["cron(0/1 * ? * * *)", "cron(0/2 * ? * * *)", "cron(60 30 09 ? * * *)", "rate(1 minute)"])
def test_too_frequent_or_bad_seconds_rejected(emu: Emulator, schedule: str) -> None:
    with pytest.raises(ClientError) as err:
        window(emu, Schedule=schedule)
    assert code(err) == "ValidationException"


def test_describe_instance_patch_states_for_patch_group(emu: Emulator) -> None:
    # SSM API Reference: DescribeInstancePatchStatesForPatchGroup; InstancePatchStateFilter
    s = _setup(emu, 3, max_errors="3")
    h = s["hosts"]
    _run(emu, {"WindowId": s["window"], "Outcomes": {h[0]: {"Outcome": "failed", "FailedPatches": 4}}})
    ssm = emu.client("ssm")
    all_states = ssm.describe_instance_patch_states_for_patch_group(PatchGroup=GROUP)["InstancePatchStates"]
    assert sorted(p["InstanceId"] for p in all_states) == h
    failing = ssm.describe_instance_patch_states_for_patch_group(
        PatchGroup=GROUP, Filters=[{"Key": "FailedCount", "Values": ["3"], "Type": "GreaterThan"}]
    )["InstancePatchStates"]
    assert [p["InstanceId"] for p in failing] == [h[0]] and failing[0]["FailedCount"] == 4
    page = ssm.describe_instance_patch_states_for_patch_group(PatchGroup=GROUP, MaxResults=10)
    assert len(page["InstancePatchStates"]) == 3 and "NextToken" not in page
    assert ssm.describe_instance_patch_states_for_patch_group(PatchGroup="other")["InstancePatchStates"] == []
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_patch_states_for_patch_group(
            PatchGroup=GROUP, Filters=[{"Key": "Bogus", "Values": ["1"], "Type": "Equal"}]
        )
    assert code(err) == "InvalidFilter"
