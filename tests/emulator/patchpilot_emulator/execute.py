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
from datetime import datetime, timedelta, timezone
from typing import Any

from moto.ssm.models import FakeMaintenanceWindow, FakeMaintenanceWindowTask

from . import patching, runs
from .commands import (
    DEFAULT_DELIVERY_TIMEOUT,
    build_invocations,
    deferred_run,
    invocation_seconds,
    materialize,
    reachability,
)
from .ssm_ext import (
    DEFAULT_BASELINE_NAMES,
    SSMError,
    _baseline_os_from_platform,
    backend_for,
    all_ec2_instances,
    does_not_exist,
    ec2_backend_for,
    ec2_managed,
    nodes,
    now,
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
OUTCOME_KINDS = ("success", "failed", "reboot-pending", "stopped", "unreachable", "slow")
DEFAULT_SLOW_MINUTES = 60


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


def _authorize_send_command(
    account: str, region: str, task: FakeMaintenanceWindowTask, settings: dict[str, Any], instances: list[str]
) -> str | None:
    """The window task's ``ssm:SendCommand``, authorized against its service role as AWS does
    when the window runs the task (RegisterTaskWithMaintenanceWindow ``ServiceRoleArn``: "The
    ARN of the IAM service role for Systems Manager to assume when running a maintenance window
    task"). Resources per the Service Authorization Reference (SSM, SendCommand): the document,
    every target node and the output bucket. ``None`` when allowed, else the error to record.
    A task without a service role runs with SSM's service-linked role, which may send it."""
    from . import enforce, stack

    role_arn = settings.get("service_role") or ""
    if not role_arn:
        return None
    if stack.role_by_arn(account, role_arn) is None:
        return (
            f"The maintenance window task's service role {role_arn} could not be assumed: no such "
            "role in this account."
        )
    resources = [f"arn:aws:ssm:{region}::document/{task.task_arn}"]
    for iid in instances:
        kind = "ssm" if iid.startswith("mi-") else "ec2"
        resource_type = "managed-instance" if kind == "ssm" else "instance"
        resources.append(f"arn:aws:{kind}:{region}:{account}:{resource_type}/{iid}")
    if settings.get("bucket"):
        resources.append(f"arn:aws:s3:::{settings['bucket']}")
    decision = enforce.authorize_role(account, region, role_arn, "ssm:SendCommand", resources)
    if decision.allowed:
        return None
    return f"AccessDeniedException: {decision.message}"  # type: ignore[attr-defined]


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


def _outcomes(body: dict[str, Any], known: set[str]) -> dict[str, dict[str, Any]]:
    """Per-instance outcome requests: ``Outcomes`` plus the legacy alias lists."""
    result: dict[str, dict[str, Any]] = {}
    for field, kind in (
        ("FailInstances", "failed"),
        ("UnreachableInstances", "unreachable"),
        ("RebootPendingInstances", "reboot-pending"),
    ):
        for iid in body.get(field) or []:
            entry = result.setdefault(iid, {"kind": kind})
            if kind == "reboot-pending":
                entry["reboot"] = True
    for iid, spec in (body.get("Outcomes") or {}).items():
        if isinstance(spec, str):
            spec = {"Outcome": spec}
        if not isinstance(spec, dict):
            raise validation(f"Outcomes[{iid}] must be a string or an object.")
        kind = spec.get("Outcome", "success")
        entry = {"kind": kind, "reboot": kind == "reboot-pending"}
        if spec.get("FailedPatches") is not None:
            entry["failed_patches"] = int(spec["FailedPatches"])
        if spec.get("Minutes") is not None:
            entry["minutes"] = float(spec["Minutes"])
        result[iid] = entry
    for iid, entry in result.items():
        if entry["kind"] not in OUTCOME_KINDS:
            raise validation(f"Outcome of {iid} must be one of {', '.join(OUTCOME_KINDS)}, got {entry['kind']}.")
        if iid not in known:
            raise validation(f"Outcomes name {iid}, which is not a managed node of this account and Region.")
        if entry["kind"] == "stopped" and not iid.startswith("i-"):
            raise validation(f"Outcome 'stopped' needs an EC2 instance, {iid} is a managed instance.")
    return result


def _plan(
    backend: Any, node: Any, iid: str, outcome: dict[str, Any], timeout: float, patch_plan: patching.PatchPlan | None = None
) -> runs.Plan:
    unreachable = reachability(backend, node)
    if unreachable:
        return runs.Plan(unreachable, timeout)
    kind = outcome.get("kind", "success")
    if kind == "failed" or (patch_plan is not None and patch_plan.fails):
        # AWS-RunPatchBaseline fails when its InstallOverrideList cannot be read or a listed
        # patch cannot be installed (patching.py)
        return runs.Plan("Failed", invocation_seconds(iid))
    if kind == "slow":
        return runs.Plan("Success", 60 * float(outcome.get("minutes", DEFAULT_SLOW_MINUTES)))
    return runs.Plan("Success", invocation_seconds(iid))


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
    if not window.enabled:
        # A disabled window does not run (CreateMaintenanceWindow/UpdateMaintenanceWindow
        # "Enabled: Whether the maintenance window is enabled"); nothing is recorded.
        raise SSMError(
            "MaintenanceWindowDisabled",
            f"Maintenance window {window_id} is disabled (Enabled=false): it does not run and no "
            "execution is recorded.",
        )
    forced_status = body.get("Status")
    if forced_status is not None and forced_status not in WINDOW_EXECUTION_STATUSES:
        raise validation(
            f"Status must be one of {', '.join(WINDOW_EXECUTION_STATUSES)}, got {forced_status}."
        )
    pp = state(backend)
    node_index = {n.instance_id: n for n in nodes(backend)}
    outcomes = _outcomes(body, set(node_index))
    # ``at``: the simulated start of the window execution (test-only); AWS-RunPatchBaseline
    # evaluates release dates and approval rules at that moment. Without it the run ends now.
    at = _parse_time(body["at"], "at") if body.get("at") else None
    if at is not None and body.get("StartTime") and _parse_time(body["StartTime"], "StartTime") != at:
        raise validation("Give either at or StartTime (both are the start of the window execution), not two different times.")
    if at is None and body.get("StartTime"):
        at = _parse_time(body["StartTime"], "StartTime")
    evaluated_at = at or now()
    baselines: dict[Any, patching.Baseline] = {}  # one evaluation of each baseline per run

    # Side effects the outcome asks for happen before the run.
    stop = [iid for iid, o in outcomes.items() if o["kind"] == "stopped"]
    if stop:
        ec2_backend_for(backend).stop_instances(stop)
    for iid, o in outcomes.items():
        if o["kind"] == "unreachable":
            pp.ping_status[iid] = "ConnectionLost"
            pp.last_ping.setdefault(iid, now())
    node_index = {n.instance_id: n for n in nodes(backend)}

    # Window timeline (CreateMaintenanceWindow: "Duration: The duration of the maintenance
    # window in hours"; "Cutoff: The number of hours before the end of the maintenance window
    # that Systems Manager stops scheduling new tasks for execution").
    duration_s = float(window.duration) * 3600
    cutoff_s = float(window.duration - (window.cutoff or 0)) * 3600

    # RegisterTaskWithMaintenanceWindow Priority: "Tasks in a maintenance window are scheduled
    # in priority order with tasks that have the same priority scheduled in parallel."
    by_priority: dict[int, list[FakeMaintenanceWindowTask]] = {}
    for task in window.tasks.values():
        by_priority.setdefault(task.priority if task.priority is not None else 1, []).append(task)

    sim_tasks: list[dict[str, Any]] = []
    clock = 0.0
    latest = 0.0
    for priority in sorted(by_priority):
        group_start = clock
        group_end = clock
        for task in by_priority[priority]:
            settings = _run_command_settings(task)
            entry: dict[str, Any] = {"task": task, "settings": settings, "priority": priority, "start": group_start, "commands": []}
            sim_tasks.append(entry)
            if group_start >= cutoff_s:
                # Not started by the cutoff: it never starts (Cutoff); its status is TIMED_OUT
                # (README: verified only in the emulator).
                entry.update(end=group_start, status="TIMED_OUT",
                             details="The task did not start: the maintenance window cutoff was reached.")
                continue
            cancel = task.cutoff_behavior == "CANCEL_TASK"
            timeout = float(settings["timeout"] or DEFAULT_DELIVERY_TIMEOUT)
            task_end = group_start
            for target_id, owner, instances in _invocation_groups(backend, window, task):
                order = sorted(instances)
                patch_plans = (
                    {iid: patching.plan(backend, account, region, node_index[iid], settings["parameters"], evaluated_at, baselines)
                     for iid in order if iid in node_index}
                    if task.task_arn == "AWS-RunPatchBaseline" else {}
                )
                plans = {
                    iid: _plan(backend, node_index.get(iid), iid, outcomes.get(iid, {}), timeout, patch_plans.get(iid))
                    for iid in order
                }
                results, span, cancelled = runs.simulate(
                    order, plans, task.max_concurrency, task.max_errors,
                    cancel_at=(cutoff_s - group_start) if cancel else None,
                )
                entry["commands"].append(
                    {"target_id": target_id, "owner": owner, "instances": order, "results": results,
                     "span": span, "cancelled": cancelled, "patch_plans": patch_plans}
                )
                task_end = max(task_end, group_start + span)
                for r in results.values():
                    if r.end is not None:
                        latest = max(latest, group_start + r.end)
            entry["end"] = task_end
            group_end = max(group_end, task_end)
        clock = group_end
        latest = max(latest, clock)

    # Every timestamp returned is <= now: the run is placed so that it has just finished.
    span_total = max(latest, clock)
    started = at if at is not None else now() - timedelta(seconds=span_total)
    for iid, o in outcomes.items():
        if o["kind"] == "unreachable":
            # the agent was already silent when the window started
            pp.last_ping[iid] = min(pp.last_ping.get(iid, started), started - timedelta(minutes=5))
    # The hook stopped these instances "before the run": EC2's StateTransitionReason carries
    # the stop time (EC2 API Reference, Instance: "User initiated (YYYY-MM-DD hh:mm:ss GMT)"),
    # which must then lie before the run's start, not at the moment the hook ran.
    for instance in ec2_backend_for(backend).get_multi_instances_by_id(stop) if stop else []:
        instance._reason = f"User initiated ({(started - timedelta(minutes=1)).strftime('%Y-%m-%d %H:%M:%S')} GMT)"
    execution_id = str(uuid.uuid4())
    tasks_out: list[dict[str, Any]] = []
    for entry in sim_tasks:
        task, settings = entry["task"], entry["settings"]
        task_execution_id = str(uuid.uuid4())
        invocations: list[dict[str, Any]] = []
        command_ids: list[str] = []
        instance_ids: list[str] = []
        instance_results: list[dict[str, Any]] = []
        statuses: list[str] = []
        any_cancelled = False
        denial = None
        for cmd in entry["commands"]:
            cmd_start = started + timedelta(seconds=entry["start"])
            denial = _authorize_send_command(account, region, task, settings, cmd["instances"])
            if denial is None:
                problem = patching.parameter_problem(task.task_arn, settings["parameters"])
                # the task's SendCommand is refused as the API refuses it (README: verified
                # only in the emulator)
                denial = f"InvalidParameters: {problem}" if problem else None
            if denial is not None:
                # The service role may not send this command: SSM records the task invocation
                # as failed with the error and sends nothing (README: verified only in the
                # emulator).
                invocations.append(
                    {
                        "WindowExecutionId": execution_id,
                        "TaskExecutionId": task_execution_id,
                        "InvocationId": str(uuid.uuid4()),
                        "TaskType": task.task_type,
                        "Status": "FAILED",
                        "StatusDetails": denial,
                        "StartTime": cmd_start,
                        "EndTime": cmd_start,
                        "OwnerInformation": cmd["owner"],
                        "WindowTargetId": cmd["target_id"],
                    }
                )
                statuses.append("Failed")
                continue
            with deferred_run():
                command = backend.send_command(
                    comment=settings["comment"],
                    document_name=task.task_arn,
                    timeout_seconds=settings["timeout"],
                    instance_ids=list(cmd["instances"]),
                    max_concurrency=task.max_concurrency or runs.DEFAULT_MAX_CONCURRENCY,
                    max_errors=task.max_errors or runs.DEFAULT_MAX_ERRORS,
                    notification_config=settings["notification"],
                    output_s3_bucket_name=settings["bucket"],
                    output_s3_key_prefix=settings["prefix"],
                    output_s3_region=settings["region"],
                    parameters=settings["parameters"],
                    service_role_arn=settings["service_role"],
                    targets=[],
                )
            command.requested_date_time = cmd_start
            command.expires_after = cmd_start + timedelta(seconds=command.timeout_seconds)
            absolute = materialize(cmd["results"], cmd_start)
            if task.task_arn == "AWS-RunPatchBaseline":
                for iid, res in absolute.items():
                    if res["detail"] not in runs.DELIVERED or iid not in node_index:
                        continue
                    o = outcomes.get(iid, {})
                    patch_plan = cmd["patch_plans"][iid]
                    if patch_plan.error is not None:
                        # the agent could not read its InstallOverrideList: nothing patched,
                        # no compliance upload, the previous patch state stands
                        res["stdout"] = patch_plan.error
                        res["stderr"] = patch_plan.error
                        continue
                    failed_patches = o.get("failed_patches")
                    if failed_patches is None:
                        failed_patches = 1 + (_h(iid) >> 12) % 3
                    patch_state, res["stdout"] = patching.apply(
                        backend, node_index[iid], patch_plan, settings["parameters"], res["start"], res["end"],
                        failed_patches=failed_patches, failed=o.get("kind") == "failed",
                        reboot_pending=bool(o.get("reboot")),
                    )
                    pp.patch_states[iid] = patch_state
            build_invocations(command, absolute, cancelled=cmd["cancelled"])
            any_cancelled = any_cancelled or cmd["cancelled"]
            command_ids.append(command.command_id)
            instance_ids.extend(cmd["instances"])
            statuses.append(command.status)
            for inv in command.pp_invocations:
                instance_results.append(
                    {"InstanceId": inv["InstanceId"], "CommandId": command.command_id,
                     "WindowTargetId": cmd["target_id"], "Status": inv["Status"],
                     "StatusDetails": inv["StatusDetails"], "StatusHistory": inv["_history"]}
                )
            if command.status == "Success":
                inv_status = "SUCCESS"
            elif command.status == "Cancelled":
                inv_status = "CANCELLED"
            elif command.status == "TimedOut":
                inv_status = "TIMED_OUT"
            else:
                inv_status = "FAILED"
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
                            "instanceIds": cmd["instances"],
                            "maxConcurrency": task.max_concurrency,
                            "maxErrors": task.max_errors,
                            "parameters": settings["parameters"],
                            "outputS3BucketName": settings["bucket"],
                            "outputS3KeyPrefix": settings["prefix"],
                        }
                    ),
                    "Status": inv_status,
                    "StatusDetails": command.status_details,
                    "StartTime": cmd_start,
                    "EndTime": cmd_start + timedelta(seconds=cmd["span"]),
                    "OwnerInformation": cmd["owner"],
                    "WindowTargetId": cmd["target_id"],
                }
            )
        task_end = entry["end"]
        if "status" in entry:
            status, details = entry["status"], entry["details"]
        elif denial is not None:
            status, details = "FAILED", denial
        elif any_cancelled:
            # CutoffBehavior CANCEL_TASK: "the system sends a CancelCommand operation ... The
            # status for tasks that are not completed is TIMED_OUT."
            status, details = "TIMED_OUT", "The task was cancelled at the maintenance window cutoff (CANCEL_TASK)."
        elif task_end > duration_s:
            status, details = "TIMED_OUT", "The task was still running when the maintenance window ended."
            task_end = duration_s
        elif not statuses:
            # No target resolved at all (README: verified only in the emulator).
            status, details = "FAILED", "No Instances In Tag: the task's targets match no managed nodes."
        elif all(s == "Success" for s in statuses):
            status, details = "SUCCESS", "Success"
        elif any(i["StatusDetails"] == "NoInstancesInTag" for i in invocations):
            status, details = "FAILED", "No Instances In Tag: a window target of this task matches no managed nodes."
        else:
            status, details = "FAILED", "One or more invocations of this task failed."
        tasks_out.append(
            {
                "TaskExecutionId": task_execution_id,
                "WindowTaskId": task.window_task_id,
                "TaskArn": task.task_arn,
                "TaskType": task.task_type,
                "Priority": entry["priority"],
                "ServiceRole": settings["service_role"] or None,
                "TaskParameters": [task.task_parameters] if task.task_parameters else None,
                "MaxConcurrency": task.max_concurrency,
                "MaxErrors": task.max_errors,
                "Status": status,
                "StatusDetails": details,
                "StartTime": started + timedelta(seconds=entry["start"]),
                "EndTime": started + timedelta(seconds=task_end),
                "Invocations": invocations,
                "CommandIds": command_ids,
                "InstanceIds": instance_ids,
                "InstanceResults": instance_results,
            }
        )
    end_offset = min(clock, duration_s)
    if not tasks_out:
        final, final_details = "SUCCESS", "No tasks to execute."
    elif clock > duration_s or any(t["Status"] == "TIMED_OUT" for t in tasks_out):
        # A window still running at the end of its Duration ends TIMED_OUT.
        final, final_details = "TIMED_OUT", "One or more tasks in the orchestration timed out."
    elif any(t["Status"] == "FAILED" for t in tasks_out):
        final, final_details = "FAILED", "One or more tasks in the orchestration failed."
    else:
        final, final_details = "SUCCESS", ""
    if forced_status is not None:
        # Test-only override of the final status (nothing else changes).
        final = forced_status
        final_details = body.get("StatusDetails") or f"Execution ended with status {forced_status}."
    finished = started + timedelta(seconds=end_offset)
    pp.executions[execution_id] = {
        "WindowId": window_id,
        "WindowExecutionId": execution_id,
        "Status": final,
        "StatusDetails": final_details,
        "StartTime": started,
        "EndTime": finished,
        "Tasks": tasks_out,
    }
    return {
        "WindowId": window_id,
        "WindowExecutionId": execution_id,
        "Status": final,
        "StatusDetails": final_details,
        "StartTime": started.isoformat(),
        "EndTime": finished.isoformat(),
        "TaskIds": [t["TaskExecutionId"] for t in tasks_out],
        "CommandIds": [c for t in tasks_out for c in t["CommandIds"]],
        "Tasks": [
            {
                "TaskExecutionId": t["TaskExecutionId"],
                "WindowTaskId": t["WindowTaskId"],
                "TaskArn": t["TaskArn"],
                "Priority": t["Priority"],
                "Status": t["Status"],
                "StatusDetails": t["StatusDetails"],
                "StartTime": t["StartTime"].isoformat(),
                "EndTime": t["EndTime"].isoformat(),
                "CommandIds": t["CommandIds"],
                "InvocationIds": [i["InvocationId"] for i in t["Invocations"]],
                "InstanceIds": t["InstanceIds"],
                "InstanceResults": t["InstanceResults"],
            }
            for t in tasks_out
        ],
    }


PING_STATUSES = ("Online", "ConnectionLost")


def _parse_time(value: Any, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise validation(f"{field} must be an ISO 8601 time, got {value!r}.")
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def set_managed(body: dict[str, Any]) -> dict[str, Any]:
    """Whether an EC2 instance is a managed node, and how its agent answers.

    * ``Managed: false``: the instance is not a managed node (no SSM Agent, or no instance
      profile): SSM does not know it (DescribeInstanceInformation, targets, SendCommand
      InvalidInstanceId). ``Managed: true``: the agent was installed by hand on an AMI that has
      none ("Amazon Machine Images (AMIs) with SSM Agent preinstalled").
    * ``PingStatus: ConnectionLost`` (with ``LastPingDateTime``, default now − 5 min): the agent
      stopped answering; invocations to it end ``Undeliverable``. ``Online`` brings it back.
      A stopped EC2 instance is ConnectionLost whatever is set here.
    Works on ``mi-*`` nodes for PingStatus only (a registered node is managed by registration).
    """
    account = body.get("AccountId") or "123456789012"
    region = body.get("Region") or "us-east-1"
    backend = backend_for(account, region)
    pp = state(backend)
    instance_id = body.get("InstanceId")
    if not instance_id:
        raise validation("InstanceId is required.")
    managed = body.get("Managed")
    ping = body.get("PingStatus")
    last_ping = body.get("LastPingDateTime")
    if managed is None and ping is None:
        raise validation("Give Managed and/or PingStatus.")
    if managed is not None and not isinstance(managed, bool):
        raise validation("Managed must be true or false.")
    if ping is not None and ping not in PING_STATUSES:
        # Inactive: "The status Inactive has been deprecated and is no longer in use."
        raise validation(f"PingStatus must be one of {', '.join(PING_STATUSES)}, got {ping}.")
    if last_ping is not None and ping != "ConnectionLost":
        raise validation("LastPingDateTime can only be given with PingStatus ConnectionLost.")
    if managed is False and ping is not None:
        raise validation("A node that is not managed has no PingStatus.")
    if instance_id.startswith("mi-"):
        if instance_id not in pp.managed_instances:
            raise validation(f"{instance_id} is not a registered managed instance of this account and Region.")
        if managed is not None:
            raise validation(
                "A registered managed instance (mi-*) is a managed node by registration; only "
                "PingStatus can be set."
            )
        instance = None
    else:
        ec2 = ec2_backend_for(backend)
        found = [i for i in all_ec2_instances(ec2) if i.id == instance_id]
        if not found or found[0].state in ("terminated", "shutting-down"):
            raise validation(f"{instance_id} is not an EC2 instance of this account and Region (or it is terminated).")
        instance = found[0]
        if managed is not None:
            pp.managed[instance_id] = managed
        if not ec2_managed(backend, instance):
            if ping is not None:
                raise validation(f"{instance_id} is not a managed node; set Managed true first.")
            pp.ping_status.pop(instance_id, None)
            pp.last_ping.pop(instance_id, None)
            return {"InstanceId": instance_id, "Managed": False}
    if ping == "ConnectionLost":
        moment = _parse_time(last_ping, "LastPingDateTime") if last_ping is not None else now() - timedelta(minutes=5)
        if moment > now():
            raise validation("LastPingDateTime must not be in the future.")
        pp.ping_status[instance_id] = "ConnectionLost"
        pp.last_ping[instance_id] = moment
    elif ping == "Online":
        pp.ping_status.pop(instance_id, None)
        pp.last_ping.pop(instance_id, None)
    node = next(n for n in nodes(backend) if n.instance_id == instance_id)
    from .instance_info import ping_of

    status, last = ping_of(backend, node)
    return {"InstanceId": instance_id, "Managed": True, "PingStatus": status, "LastPingDateTime": last.isoformat()}


def register_managed_instance(body: dict[str, Any]) -> dict[str, Any]:
    account = body.get("AccountId") or "123456789012"
    region = body.get("Region") or "us-east-1"
    backend = backend_for(account, region)
    platform_type = body.get("PlatformType") or "Linux"
    if platform_type not in ("Windows", "Linux", "MacOS"):
        raise validation("PlatformType must be one of Windows, Linux, MacOS.")
    # PlatformName / PlatformVersion as the agent reports them: /etc/os-release NAME and
    # VERSION_ID on Linux ("Amazon Linux" 2023, "Amazon Linux AMI" 2018.03, "Debian GNU/Linux"
    # 12, "Rocky Linux" 9.3, "AlmaLinux" 9.3, "Oracle Linux Server" 8.9), sw_vers on macOS
    # ("macOS"), the product name on Windows (amazon-ssm-agent agent/platform).
    platform_name = body.get("PlatformName") or {
        "Windows": "Microsoft Windows Server 2022 Datacenter",
        "MacOS": "macOS",
    }.get(platform_type, "Ubuntu")
    platform_version = str(body.get("PlatformVersion") or "")
    patch_os = body.get("PatchOperatingSystem")
    if patch_os is not None and patch_os not in DEFAULT_BASELINE_NAMES:
        raise validation(f"PatchOperatingSystem must be one of {', '.join(DEFAULT_BASELINE_NAMES)}, got {patch_os}.")
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
        "PatchOperatingSystem": patch_os or _baseline_os_from_platform(platform_name, platform_version),
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
