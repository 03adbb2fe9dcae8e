"""Test-only hooks that make things happen which AWS does on its own.

* ``execute_window``: runs a maintenance window now, the way the SSM scheduler would
  (window execution -> one execution task per registered task in ascending priority ->
  one Run Command command per task invocation (window target) -> per-instance command
  invocations -> per-instance patch states for AWS-RunPatchBaseline).
* ``register_managed_instance``: registers an on-premises ``mi-*`` node (what
  ``amazon-ssm-agent -register`` with a hybrid activation does).
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import timedelta
from typing import Any

from moto.ssm.models import FakeMaintenanceWindow, FakeMaintenanceWindowTask

from .ssm_ext import (
    SSMError,
    _baseline_os_from_platform,
    backend_for,
    build_invocations,
    default_baseline_id,
    does_not_exist,
    nodes,
    now,
    patch_group_of,
    resolve_targets,
    state,
    validation,
)

WINDOW_EXECUTION_STATUSES = (
    "PENDING",
    "IN_PROGRESS",
    "SUCCESS",
    "FAILED",
    "TIMED_OUT",
    "CANCELLING",
    "CANCELLED",
    "SKIPPED_OVERLAPPING",
)


def _h(instance_id: str) -> int:
    return int(hashlib.sha1(instance_id.encode()).hexdigest()[:8], 16)


def _run_command_settings(task: FakeMaintenanceWindowTask) -> dict[str, Any]:
    invocation = (task.task_invocation_parameters or {}).get("RunCommand") or {}
    parameters = invocation.get("Parameters")
    if parameters is None and task.task_parameters:
        parameters = {k: v.get("Values", []) for k, v in task.task_parameters.items()}
    logging = task.logging_info or {}
    return {
        "parameters": parameters or {},
        "bucket": invocation.get("OutputS3BucketName") or logging.get("S3BucketName") or "",
        "prefix": invocation.get("OutputS3KeyPrefix") or logging.get("S3KeyPrefix") or "",
        "region": logging.get("S3Region") or "",
        "service_role": invocation.get("ServiceRoleArn") or task.service_role_arn or "",
        "comment": invocation.get("Comment") or "",
        "timeout": invocation.get("TimeoutSeconds"),
        "notification": invocation.get("NotificationConfig"),
    }


def _invocation_groups(
    backend: Any, window: FakeMaintenanceWindow, task: FakeMaintenanceWindowTask
) -> list[tuple[str | None, str | None, list[str]]]:
    """(window target id, owner information, instance ids) per task invocation."""
    groups: list[tuple[str | None, str | None, list[str]]] = []
    for target in task.targets or []:
        if target.get("Key") == "WindowTargetIds":
            for target_id in target.get("Values", []):
                registered = window.targets.get(target_id)
                if registered is None:
                    continue
                groups.append(
                    (
                        target_id,
                        registered.owner_information,
                        resolve_targets(backend, registered.targets or []),
                    )
                )
        else:
            groups.append((None, None, resolve_targets(backend, [target])))
    return groups


def execute_window(body: dict[str, Any]) -> dict[str, Any]:
    account = body.get("AccountId") or "123456789012"
    region = body.get("Region") or "us-east-1"
    backend = backend_for(account, region)
    window_id = body.get("WindowId")
    if not window_id:
        raise validation("WindowId is required.")
    window = backend.windows.get(window_id)
    if window is None:
        raise does_not_exist(f"Maintenance window {window_id} does not exist")
    fail = set(body.get("FailInstances") or [])
    reboot = set(body.get("RebootPendingInstances") or [])
    unreachable = set(body.get("UnreachableInstances") or [])
    forced_status = body.get("Status")
    if forced_status is not None and forced_status not in WINDOW_EXECUTION_STATUSES:
        raise validation(
            f"Status must be one of {', '.join(WINDOW_EXECUTION_STATUSES)}, got {forced_status}."
        )

    pp = state(backend)
    node_index = {n.instance_id: n for n in nodes(backend)}
    execution_id = str(uuid.uuid4())
    started = now()
    clock = started
    tasks_out: list[dict[str, Any]] = []
    ordered = sorted(
        enumerate(window.tasks.values()),
        key=lambda pair: (pair[1].priority if pair[1].priority is not None else 1, pair[0]),
    )
    for _, task in ordered:
        task_execution_id = str(uuid.uuid4())
        task_start = clock
        settings = _run_command_settings(task)
        invocations: list[dict[str, Any]] = []
        command_ids: list[str] = []
        instance_ids: list[str] = []
        task_failed = False
        for target_id, owner, instances in _invocation_groups(backend, window, task):
            if not instances:
                continue
            command = backend.send_command(
                comment=settings["comment"],
                document_name=task.task_arn,
                timeout_seconds=settings["timeout"],
                instance_ids=list(instances),
                max_concurrency=task.max_concurrency or "50",
                max_errors=task.max_errors or "0",
                notification_config=settings["notification"],
                output_s3_bucket_name=settings["bucket"],
                output_s3_key_prefix=settings["prefix"],
                output_s3_region=settings["region"],
                parameters=settings["parameters"],
                service_role_arn=settings["service_role"],
                targets=[],
            )
            command.requested_date_time = clock
            outcomes: dict[str, str] = {}
            summaries: dict[str, str] = {}
            for iid in instances:
                if iid in unreachable:
                    outcomes[iid] = "DeliveryTimedOut"
                    pp.ping_status[iid] = "ConnectionLost"
                elif iid in fail:
                    outcomes[iid] = "Failed"
                else:
                    outcomes[iid] = "Success"
            if task.task_arn == "AWS-RunPatchBaseline":
                for iid, outcome in outcomes.items():
                    if outcome == "DeliveryTimedOut" or iid not in node_index:
                        continue
                    patch_state = _patch_state(
                        backend, node_index[iid], settings["parameters"], outcome == "Failed",
                        iid in reboot, clock,
                    )
                    pp.patch_states[iid] = patch_state
                    summaries[iid] = _summary(patch_state, outcome == "Failed")
            build_invocations(command, outcomes, start=clock, patch_summaries=summaries)
            command_ids.append(command.command_id)
            instance_ids.extend(instances)
            ok = command.status == "Success"
            task_failed = task_failed or not ok
            invocation_end = clock + timedelta(minutes=5)
            invocations.append(
                {
                    "WindowExecutionId": execution_id,
                    "TaskExecutionId": task_execution_id,
                    "InvocationId": str(uuid.uuid4()),
                    "ExecutionId": command.command_id,
                    "TaskType": task.task_type,
                    "Parameters": json.dumps(
                        {
                            "documentName": task.task_arn,
                            "instanceIds": instances,
                            "maxConcurrency": task.max_concurrency,
                            "maxErrors": task.max_errors,
                            "parameters": settings["parameters"],
                            "outputS3BucketName": settings["bucket"],
                            "outputS3KeyPrefix": settings["prefix"],
                        }
                    ),
                    "Status": "SUCCESS" if ok else "FAILED",
                    "StatusDetails": command.status_details,
                    "StartTime": clock,
                    "EndTime": invocation_end,
                    "OwnerInformation": owner,
                    "WindowTargetId": target_id,
                }
            )
            clock = invocation_end
        if invocations:
            status = "FAILED" if task_failed else "SUCCESS"
            details = (
                "One or more invocations of this task failed." if task_failed else "Success"
            )
        else:
            status, details = "SUCCESS", "No invocations to execute."
        clock = clock + timedelta(seconds=1)
        tasks_out.append(
            {
                "TaskExecutionId": task_execution_id,
                "WindowTaskId": task.window_task_id,
                "TaskArn": task.task_arn,
                "TaskType": task.task_type,
                "Priority": task.priority if task.priority is not None else 1,
                "ServiceRole": settings["service_role"] or None,
                "TaskParameters": [task.task_parameters] if task.task_parameters else None,
                "MaxConcurrency": task.max_concurrency,
                "MaxErrors": task.max_errors,
                "Status": status,
                "StatusDetails": details,
                "StartTime": task_start,
                "EndTime": clock,
                "Invocations": invocations,
                "CommandIds": command_ids,
                "InstanceIds": instance_ids,
            }
        )
    if not tasks_out:
        final, final_details = "SUCCESS", "No tasks to execute."
    elif any(t["Status"] == "FAILED" for t in tasks_out):
        final, final_details = "FAILED", "One or more tasks in the orchestration failed."
    else:
        final, final_details = "SUCCESS", ""
    if forced_status is not None:
        final = forced_status
        final_details = body.get("StatusDetails") or f"Execution ended with status {forced_status}."
    pp.executions[execution_id] = {
        "WindowId": window_id,
        "WindowExecutionId": execution_id,
        "Status": final,
        "StatusDetails": final_details,
        "StartTime": started,
        "EndTime": clock,
        "Tasks": tasks_out,
    }
    return {
        "WindowId": window_id,
        "WindowExecutionId": execution_id,
        "Status": final,
        "StatusDetails": final_details,
        "StartTime": started.isoformat(),
        "EndTime": clock.isoformat(),
        "TaskIds": [t["TaskExecutionId"] for t in tasks_out],
        "CommandIds": [c for t in tasks_out for c in t["CommandIds"]],
        "Tasks": [
            {
                "TaskExecutionId": t["TaskExecutionId"],
                "WindowTaskId": t["WindowTaskId"],
                "TaskArn": t["TaskArn"],
                "Priority": t["Priority"],
                "Status": t["Status"],
                "CommandIds": t["CommandIds"],
                "InvocationIds": [i["InvocationId"] for i in t["Invocations"]],
                "InstanceIds": t["InstanceIds"],
            }
            for t in tasks_out
        ],
    }


def _patch_state(
    backend: Any,
    node: Any,
    parameters: dict[str, Any],
    failed: bool,
    reboot_pending: bool,
    start: Any,
) -> dict[str, Any]:
    operation = (parameters.get("Operation") or ["Scan"])[0]
    reboot_option = (parameters.get("RebootOption") or ["RebootIfNeeded"])[0]
    h = _h(node.instance_id)
    group = patch_group_of(node.tags)
    baseline = state(backend).patch_groups.get((group, node.patch_os)) if group else None
    installed = 10 + h % 20
    other = 2 + (h >> 4) % 6
    not_applicable = 100 + (h >> 8) % 60
    failed_count = (1 + (h >> 12) % 3) if failed else 0
    pending_reboot = (1 + (h >> 14) % 3) if reboot_pending else 0
    if operation == "Scan":
        missing = 2 + (h >> 16) % 5
    else:
        missing = failed_count
    if reboot_pending:
        reboot_option = "NoReboot"
    end = start + timedelta(minutes=4)
    return {
        "InstanceId": node.instance_id,
        "PatchGroup": group,
        "BaselineId": baseline or default_baseline_id(backend, node.patch_os),
        "OwnerInformation": "",
        "InstalledCount": installed,
        "InstalledOtherCount": other,
        "InstalledPendingRebootCount": pending_reboot,
        "InstalledRejectedCount": 0,
        "MissingCount": missing,
        "FailedCount": failed_count,
        "UnreportedNotApplicableCount": 0,
        "NotApplicableCount": not_applicable,
        "AvailableSecurityUpdateCount": 0,
        "OperationStartTime": start,
        "OperationEndTime": end,
        "Operation": operation,
        "LastNoRebootInstallOperationTime": end if reboot_pending else None,
        "RebootOption": reboot_option,
        "CriticalNonCompliantCount": failed_count,
        "SecurityNonCompliantCount": missing,
        "OtherNonCompliantCount": 0,
    }


def _summary(patch_state: dict[str, Any], failed: bool) -> str:
    lines = [
        f"Patch group: {patch_state['PatchGroup'] or '(none)'}",
        f"Baseline: {patch_state['BaselineId']}",
        f"Operation: {patch_state['Operation']}",
        f"Installed: {patch_state['InstalledCount']}",
        f"InstalledOther: {patch_state['InstalledOtherCount']}",
        f"InstalledPendingReboot: {patch_state['InstalledPendingRebootCount']}",
        f"Missing: {patch_state['MissingCount']}",
        f"Failed: {patch_state['FailedCount']}",
        f"NotApplicable: {patch_state['NotApplicableCount']}",
    ]
    if failed:
        lines.append("ERROR: one or more patches failed to install")
    return "\n".join(lines)


def register_managed_instance(body: dict[str, Any]) -> dict[str, Any]:
    account = body.get("AccountId") or "123456789012"
    region = body.get("Region") or "us-east-1"
    backend = backend_for(account, region)
    platform_type = body.get("PlatformType") or "Linux"
    if platform_type not in ("Windows", "Linux", "MacOS"):
        raise validation("PlatformType must be one of Windows, Linux, MacOS.")
    platform_name = body.get("PlatformName") or (
        "Microsoft Windows Server 2022 Datacenter" if platform_type == "Windows" else "Ubuntu"
    )
    platform_version = str(body.get("PlatformVersion") or "")
    instance_id = body.get("InstanceId") or "mi-" + "".join(
        random.choice("0123456789abcdef") for _ in range(17)
    )
    if not instance_id.startswith("mi-") or len(instance_id) != 20:
        raise validation("InstanceId must look like mi-<17 hex characters>.")
    pp = state(backend)
    if instance_id in pp.managed_instances:
        raise SSMError("AlreadyExistsException", f"Managed instance {instance_id} already exists.")
    pp.managed_instances[instance_id] = {
        "InstanceId": instance_id,
        "PlatformType": platform_type,
        "PlatformName": platform_name,
        "PlatformVersion": platform_version,
        "PatchOperatingSystem": body.get("PatchOperatingSystem")
        or _baseline_os_from_platform(platform_name, platform_version),
        "Name": body.get("Name"),
        "IPAddress": body.get("IPAddress") or f"192.168.{_h(instance_id) % 250}.{(_h(instance_id) >> 8) % 250 + 2}",
        "ComputerName": body.get("ComputerName") or (body.get("Name") or instance_id) + ".corp.local",
        "IamRole": body.get("IamRole") or "SSMServiceRole",
        "ActivationId": body.get("ActivationId") or str(uuid.uuid4()),
        "RegistrationDate": now(),
    }
    tags = body.get("Tags") or {}
    if isinstance(tags, list):
        tags = {t["Key"]: t["Value"] for t in tags}
    backend._resource_tags["ManagedInstance"][instance_id].update(tags)
    return {"InstanceId": instance_id}
