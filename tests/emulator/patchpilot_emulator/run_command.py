"""Run Command operations: SendCommand, ListCommands, ListCommandInvocations (SSM API
Reference; commands and invocations themselves are modelled in ``commands.py``). Split from
``ssm_ext``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from moto.core.responses import ActionResult

from . import patching
from .ssm_ext import R, SSMError, _b, nodes, paginate, prune, validation




def send_command(self: R) -> ActionResult:
    from .commands import command_json

    backend = _b(self)
    instance_ids = self._get_param("InstanceIds", []) or []
    targets = self._get_param("Targets", []) or []
    if not instance_ids and not targets:
        raise validation("Either InstanceIds or Targets must be specified.")
    if instance_ids and targets:
        raise validation("InstanceIds and Targets cannot be specified together.")
    problem = patching.parameter_problem(self._get_param("DocumentName"), self._get_param("Parameters", {}) or {})
    if problem:
        raise SSMError("InvalidParameters", problem)
    # InvalidInstanceId only for unknown, shutting-down or terminated instances (SendCommand)
    known = {n.instance_id for n in nodes(backend)}
    for iid in instance_ids:
        if iid not in known:
            raise SSMError("InvalidInstanceId", f"Instances [[{iid}]] not in a valid state for account {backend.account_id}")
    command = backend.send_command(
        comment=self._get_param("Comment", ""),
        document_name=self._get_param("DocumentName"),
        timeout_seconds=self._get_int_param("TimeoutSeconds"),
        instance_ids=list(instance_ids),
        max_concurrency=self._get_param("MaxConcurrency", "50"),
        max_errors=self._get_param("MaxErrors", "0"),
        notification_config=self._get_param("NotificationConfig"),
        output_s3_bucket_name=self._get_param("OutputS3BucketName", ""),
        output_s3_key_prefix=self._get_param("OutputS3KeyPrefix", ""),
        output_s3_region=self._get_param("OutputS3Region", ""),
        parameters=self._get_param("Parameters", {}),
        service_role_arn=self._get_param("ServiceRoleArn", ""),
        targets=targets,
    )
    data = command_json(command)
    # SendCommand answers before the command ran: counts are 0 and status Pending (AWS)
    data.update(
        {"Status": "Pending", "StatusDetails": "Pending", "CompletedCount": 0, "ErrorCount": 0,
         "DeliveryTimedOutCount": 0}
    )
    return ActionResult({"Command": data})


def _command_filters(filters: list[dict[str, str]], for_invocations: bool) -> list[Callable[[dict[str, Any]], bool]]:
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for f in filters:
        key, value = f.get("key"), f.get("value", "")
        if key in ("InvokedAfter", "InvokedBefore"):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
            except ValueError:
                raise SSMError("InvalidFilter", f"Invalid value {value} for filter {key}.")
            if key == "InvokedAfter":
                checks.append(lambda d, m=moment: d["RequestedDateTime"].replace(tzinfo=None) >= m)
            else:
                checks.append(lambda d, m=moment: d["RequestedDateTime"].replace(tzinfo=None) <= m)
        elif key == "Status":
            if value == "TimedOut":
                checks.append(lambda d: d["Status"] == "TimedOut")
            elif value in ("DeliveryTimedOut", "ExecutionTimedOut"):
                checks.append(lambda d, v=value: d["Status"] == "TimedOut" and d["StatusDetails"].replace(" ", "") == v)
            else:
                checks.append(lambda d, v=value: d["Status"] == v)
        elif key == "DocumentName":
            checks.append(lambda d, v=value: d["DocumentName"] == v)
        elif key == "ExecutionStage" and not for_invocations:
            if value not in ("Executing", "Complete"):
                raise SSMError("InvalidFilter", f"Invalid value {value} for filter ExecutionStage.")
            terminal = ("Success", "Failed", "TimedOut", "Cancelled")
            checks.append(
                lambda d, v=value: (d["Status"] in terminal) == (v == "Complete")
            )
        else:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key}.")
    return checks


def list_commands(self: R) -> ActionResult:
    from .commands import command_json

    backend = _b(self)
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    commands = list(backend._commands)
    if command_id:
        commands = [c for c in commands if c.command_id == command_id]
        if not commands:
            raise SSMError("InvalidCommandId", "Invalid command id.")
    if instance_id:
        commands = [c for c in commands if instance_id in c.instance_ids]
    items = [command_json(c) for c in reversed(commands)]
    for check in _command_filters(self._get_param("Filters", []) or [], False):
        items = [i for i in items if check(i)]
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    return ActionResult(prune({"Commands": page, "NextToken": token}))


def list_command_invocations(self: R) -> ActionResult:
    from .commands import invocation_json

    backend = _b(self)
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    details = bool(self._get_param("Details", False))
    commands = list(backend._commands)
    if command_id:
        commands = [c for c in commands if c.command_id == command_id]
        if not commands:
            raise SSMError("InvalidCommandId", "Invalid command id.")
    items: list[dict[str, Any]] = []
    for command in reversed(commands):
        for inv in getattr(command, "pp_invocations", []):
            if instance_id and inv["InstanceId"] != instance_id:
                continue
            items.append(invocation_json(inv, details))
    for check in _command_filters(self._get_param("Filters", []) or [], True):
        items = [i for i in items if check(i)]
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    return ActionResult(prune({"CommandInvocations": page, "NextToken": token}))


RESPONSE_METHODS: list[Callable[..., Any]] = [
    send_command,
    list_commands,
    list_command_invocations,
]
