"""Maintenance-window execution history: the Describe/Get execution, task and task-invocation
operations (SSM API Reference: DescribeMaintenanceWindowExecutions,
GetMaintenanceWindowExecution, DescribeMaintenanceWindowExecutionTasks,
GetMaintenanceWindowExecutionTask, DescribeMaintenanceWindowExecutionTaskInvocations), over the
executions the execute-window hook records (``execute.py``). Split from ``ssm_ext``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from moto.core.responses import ActionResult
from moto.ssm.models import SimpleSystemManagerBackend

from .ssm_ext import R, SSMError, _b, _get_window, does_not_exist, paginate, prune, state, validation

# --- maintenance window executions ---------------------------------------------------------


def _get_execution(backend: SimpleSystemManagerBackend, execution_id: str) -> dict[str, Any]:
    execution = state(backend).executions.get(execution_id)
    if execution is None:
        raise does_not_exist(f"Maintenance window execution {execution_id} does not exist")
    return execution


def _status_filter(items: list[dict[str, Any]], filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for f in filters or []:
        key, values = f.get("Key"), f.get("Values", [])
        if key == "STATUS":
            items = [i for i in items if i["Status"] in values]
        else:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key}.")
    return items


def describe_maintenance_window_executions(self: R) -> ActionResult:
    backend = _b(self)
    window_id = self._get_param("WindowId")
    _get_window(backend, window_id)
    items = [
        {k: e[k] for k in ("WindowId", "WindowExecutionId", "Status", "StatusDetails", "StartTime", "EndTime")}
        for e in state(backend).executions.values()
        if e["WindowId"] == window_id
    ]
    items.sort(key=lambda e: e["StartTime"], reverse=True)
    for f in self._get_param("Filters", []) or []:
        key, values = f.get("Key"), f.get("Values", [])
        if key in ("ExecutedBefore", "ExecutedAfter"):
            try:
                moment = datetime.fromisoformat(values[0].replace("Z", "+00:00")).replace(tzinfo=None)
            except (ValueError, IndexError):
                raise validation(f"Invalid value for filter {key}.")
            if key == "ExecutedBefore":
                items = [i for i in items if i["StartTime"].replace(tzinfo=None) <= moment]
            else:
                items = [i for i in items if i["StartTime"].replace(tzinfo=None) >= moment]
        else:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key}.")
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    return ActionResult(prune({"WindowExecutions": page, "NextToken": token}))


def get_maintenance_window_execution(self: R) -> ActionResult:
    execution = _get_execution(_b(self), self._get_param("WindowExecutionId"))
    return ActionResult(
        prune(
            {
                "WindowExecutionId": execution["WindowExecutionId"],
                "TaskIds": [t["TaskExecutionId"] for t in execution["Tasks"]],
                "Status": execution["Status"],
                "StatusDetails": execution["StatusDetails"],
                "StartTime": execution["StartTime"],
                "EndTime": execution["EndTime"],
            }
        )
    )


def describe_maintenance_window_execution_tasks(self: R) -> ActionResult:
    execution = _get_execution(_b(self), self._get_param("WindowExecutionId"))
    items = [
        {
            "WindowExecutionId": execution["WindowExecutionId"],
            "TaskExecutionId": t["TaskExecutionId"],
            "Status": t["Status"],
            "StatusDetails": t["StatusDetails"],
            "StartTime": t["StartTime"],
            "EndTime": t["EndTime"],
            "TaskArn": t["TaskArn"],
            "TaskType": t["TaskType"],
        }
        for t in execution["Tasks"]
    ]
    items = _status_filter(items, self._get_param("Filters", []))
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    return ActionResult(prune({"WindowExecutionTaskIdentities": page, "NextToken": token}))


def _get_execution_task(execution: dict[str, Any], task_id: str) -> dict[str, Any]:
    for task in execution["Tasks"]:
        if task["TaskExecutionId"] == task_id:
            return task
    raise does_not_exist(
        f"Task {task_id} does not exist in maintenance window execution {execution['WindowExecutionId']}"
    )


def get_maintenance_window_execution_task(self: R) -> ActionResult:
    execution = _get_execution(_b(self), self._get_param("WindowExecutionId"))
    t = _get_execution_task(execution, self._get_param("TaskId"))
    return ActionResult(
        prune(
            {
                "WindowExecutionId": execution["WindowExecutionId"],
                "TaskExecutionId": t["TaskExecutionId"],
                "TaskArn": t["TaskArn"],
                "ServiceRole": t.get("ServiceRole"),
                "Type": t["TaskType"],
                "TaskParameters": t.get("TaskParameters"),
                "Priority": t["Priority"],
                "MaxConcurrency": t.get("MaxConcurrency"),
                "MaxErrors": t.get("MaxErrors"),
                "Status": t["Status"],
                "StatusDetails": t["StatusDetails"],
                "StartTime": t["StartTime"],
                "EndTime": t["EndTime"],
            }
        )
    )


def describe_maintenance_window_execution_task_invocations(self: R) -> ActionResult:
    execution = _get_execution(_b(self), self._get_param("WindowExecutionId"))
    task = _get_execution_task(execution, self._get_param("TaskId"))
    items = _status_filter([dict(i) for i in task["Invocations"]], self._get_param("Filters", []))
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    return ActionResult(prune({"WindowExecutionTaskInvocationIdentities": page, "NextToken": token}))


RESPONSE_METHODS: list[Callable[..., Any]] = [
    describe_maintenance_window_executions,
    get_maintenance_window_execution,
    describe_maintenance_window_execution_tasks,
    get_maintenance_window_execution_task,
    describe_maintenance_window_execution_task_invocations,
]
