"""Run Command commands and their per-instance invocations (moto's ``Command`` extended).

* SSM API Reference: SendCommand, Command, CommandInvocation, CommandPlugin,
  GetCommandInvocation (members, Status enums).
* SSM User Guide "Understanding command statuses" and "Run commands at scale" (rate control,
  implemented in ``runs``).
* Output objects in S3 through ``s3_output.upload_output``.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from moto.ssm.models import Command

from . import runs, s3_output
from .ssm_ext import NodeView, backend_for, nodes, now, resolve_targets, state

DEFAULT_INVOCATION = timedelta(minutes=4)
# A node that can't be reached holds its slot until the delivery ("total") timeout expires
# ("Understanding command timeout values": Pending/Delayed -> Delivery Timed Out when the total
# timeout is reached). SendCommand TimeoutSeconds; the console's default is 600 seconds.
DEFAULT_DELIVERY_TIMEOUT = 600


def invocation_seconds(instance_id: str) -> float:
    """Default run time of one invocation: about four minutes, deterministic per instance."""
    return DEFAULT_INVOCATION.total_seconds() + sum(map(ord, instance_id)) % 50


def reachability(backend: Any, node: NodeView | None) -> str | None:
    """Why a node can't get a command: ``DeliveryTimedOut`` for a stopped (or stopping/pending)
    EC2 instance ("Delayed ... because the node was stopped", then Delivery Timed Out when the
    total timeout expires), ``Undeliverable`` for a node whose agent isn't online
    ("Undeliverable: The command can't be delivered to the managed node. The managed node might
    not exist or might not be responding"); None when the command can be delivered."""
    if node is None:
        return "Undeliverable"
    if not node.running:
        return "DeliveryTimedOut"
    if state(backend).ping_status.get(node.instance_id, "Online") != "Online":
        return "Undeliverable"
    return None


def _command_instance_ids_from_targets(self: Command) -> list[str]:
    return resolve_targets(backend_for(self.account_id, self.backend_region), self.targets)


_original_command_init = Command.__init__
# execute-window creates its commands through moto's send_command and builds their invocations
# itself; the default run below must not happen for them (it would upload output objects).
_deferred = threading.local()


class deferred_run:
    def __enter__(self) -> None:
        _deferred.active = True

    def __exit__(self, *exc: Any) -> None:
        _deferred.active = False


def _command_init(self: Command, *args: Any, **kwargs: Any) -> None:
    """SendCommand: the command runs at once with rate control; every timestamp is <= now."""
    _original_command_init(self, *args, **kwargs)
    requested = list(kwargs.get("instance_ids") or [])
    ordered = dict.fromkeys(requested + _command_instance_ids_from_targets(self))
    self.instance_ids = list(ordered)
    self.document_version = "$DEFAULT"
    self.service_role = self.service_role_arn
    if getattr(_deferred, "active", False):
        return
    backend = backend_for(self.account_id, self.backend_region)
    index = {n.instance_id: n for n in nodes(backend)}
    timeout = float(kwargs.get("timeout_seconds") or DEFAULT_DELIVERY_TIMEOUT)
    plans = {}
    for iid in self.instance_ids:
        unreachable = reachability(backend, index.get(iid))
        if unreachable:
            plans[iid] = runs.Plan(unreachable, timeout)
        else:
            plans[iid] = runs.Plan("Success", invocation_seconds(iid))
    results, span, _ = runs.simulate(sorted(plans), plans, self.max_concurrency, self.max_errors)
    start = now() - timedelta(seconds=span)
    self.requested_date_time = start
    self.expires_after = start + timedelta(seconds=self.timeout_seconds)
    build_invocations(self, materialize(results, start))


def materialize(results: dict[str, runs.Result], start: datetime, extra: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Simulation offsets -> absolute times (plus per-instance extras such as stdout)."""
    out: dict[str, dict[str, Any]] = {}
    for iid, r in results.items():
        item = {
            "detail": r.detail,
            "start": start + timedelta(seconds=r.start) if r.start is not None else None,
            "end": start + timedelta(seconds=r.end) if r.end is not None else None,
            "history": list(r.history),
        }
        item.update((extra or {}).get(iid, {}))
        out[iid] = item
    return out


def _plugin_for(document: str, patch_os: str) -> tuple[str, str]:
    """(plugin name, S3 output path segment) for a document on a platform."""
    windows = patch_os == "WINDOWS"
    if document == "AWS-RunPatchBaseline":
        if windows:
            return "PatchWindows", "awsrunPowerShellScript/PatchWindows"
        return "PatchLinux", "awsrunShellScript/PatchLinux"
    if document == "AWS-RunPowerShellScript":
        return "aws:runPowerShellScript", "awsrunPowerShellScript/0.awsrunPowerShellScript"
    return "aws:runShellScript", "awsrunShellScript/0.awsrunShellScript"


def build_invocations(command: Command, results: dict[str, dict[str, Any]], cancelled: bool = False) -> None:
    """Creates the per-instance invocations of ``command`` from simulated results.

    ``results[iid]``: ``detail`` (a StatusDetails value of ``runs.INVOCATION_STATUS``),
    ``start``/``end`` (None when never delivered), optional ``stdout``/``stderr``/``code``."""
    backend = backend_for(command.account_id, command.backend_region)
    index = {n.instance_id: n for n in nodes(backend)}
    s3 = s3_output.s3_backend_for(command.account_id)
    invocations: list[dict[str, Any]] = []
    bucket = command.output_s3_bucket_name or ""
    prefix = (command.output_s3_key_prefix or "").strip("/")
    region = command.output_s3_region or (s3_output.bucket_region(s3, bucket) if bucket else None) or command.backend_region
    for iid, res in results.items():
        node = index.get(iid)
        patch_os = node.patch_os if node else "AMAZON_LINUX_2"
        plugin, segment = _plugin_for(command.document_name or "", patch_os)
        detail = res["detail"]
        status = runs.INVOCATION_STATUS[detail]
        delivered = detail in runs.DELIVERED
        started = res.get("start")
        finished = res.get("end")
        out_url = err_url = ""
        stdout = stderr = ""
        if delivered:
            failed = detail != "Success"
            code = res.get("code", 1 if failed else 0)
            stdout = res.get("stdout") or f"{command.document_name} completed on {iid}."
            stderr = res.get("stderr", "failed to run commands: exit status 1" if failed else "")
            if bucket:
                key_base = "/".join(p for p in (prefix, command.command_id, iid, segment) if p)
                ok, reason = s3_output.upload_output(s3, bucket, f"{key_base}/stdout", stdout, iid, command.account_id, command.backend_region)
                if ok and stderr:
                    ok, reason = s3_output.upload_output(s3, bucket, f"{key_base}/stderr", stderr, iid, command.account_id, command.backend_region)
                if ok:
                    out_url = s3_output.output_url(region, bucket, f"{key_base}/stdout")
                    err_url = s3_output.output_url(region, bucket, f"{key_base}/stderr") if stderr else ""
                else:
                    # The command's own result stands; the upload error shows in the output and
                    # no URL points at an object that doesn't exist (README: verified only in
                    # the emulator).
                    note = f"Failed to upload output to S3 bucket {bucket}: {reason}"
                    stderr = (stderr + "\n" if stderr else "") + note
                    stdout = stdout + "\n----------ERROR-------\n" + note
        else:
            code = -1
        plugins = []
        if delivered or detail == "Cancelled" and started is not None:
            plugins = [
                {
                    "Name": plugin,
                    "Status": status,
                    "StatusDetails": detail,
                    "ResponseCode": code,
                    "ResponseStartDateTime": started,
                    "ResponseFinishDateTime": finished,
                    "Output": stdout[:2500],
                    "StandardOutputUrl": out_url,
                    "StandardErrorUrl": err_url,
                    "OutputS3Region": region if bucket else None,
                    "OutputS3BucketName": bucket,
                    "OutputS3KeyPrefix": prefix,
                }
            ]
        invocations.append(
            {
                "CommandId": command.command_id,
                "InstanceId": iid,
                "InstanceName": (node.computer_name if node else "") or "",
                "Comment": command.comment,
                "DocumentName": command.document_name,
                "DocumentVersion": "$DEFAULT",
                "RequestedDateTime": command.requested_date_time,
                "Status": status,
                "StatusDetails": detail,
                "TraceOutput": "",
                "StandardOutputUrl": out_url,
                "StandardErrorUrl": err_url,
                "CommandPlugins": plugins,
                "ServiceRole": command.service_role_arn or "",
                "NotificationConfig": command.notification_config,
                "CloudWatchOutputConfig": {"CloudWatchOutputEnabled": False},
                # GetCommandInvocation view / hook answer
                "_plugin": plugin,
                "_code": code,
                "_start": started,
                "_end": finished,
                "_stdout": stdout,
                "_stderr": stderr,
                "_history": res.get("history", []),
            }
        )
    command.pp_invocations = invocations
    details = [i["StatusDetails"] for i in invocations]
    command.target_count = len(invocations)
    # CompletedCount: "reached a terminal state" (all of them: the emulator runs to the end)
    command.completed_count = len(invocations)
    # ErrorCount: "the number of targets for which the status is Failed or Execution Timed Out"
    command.error_count = sum(1 for d in details if d in runs.COUNTS_AS_ERROR)
    command.delivery_timed_out_count = details.count("DeliveryTimedOut")
    command.status, command.status_details = runs.command_status(details, command.max_errors, cancelled)
    # keep moto's own GetCommandInvocation structure in line
    command.invocations = [
        {
            "CommandId": command.command_id,
            "InstanceId": inv["InstanceId"],
            "Comment": command.comment,
            "DocumentName": command.document_name,
            "DocumentVersion": "$DEFAULT",
            "PluginName": inv["_plugin"],
            "ResponseCode": inv["_code"],
            "ExecutionStartDateTime": inv["_start"].isoformat() if inv["_start"] else "",
            "ExecutionElapsedTime": _elapsed(inv["_start"], inv["_end"]),
            "ExecutionEndDateTime": inv["_end"].isoformat() if inv["_end"] and inv["_start"] else "",
            "Status": inv["Status"],
            "StatusDetails": inv["StatusDetails"],
            "StandardOutputContent": inv["_stdout"][:24000],
            "StandardOutputUrl": inv["StandardOutputUrl"],
            "StandardErrorContent": inv["_stderr"][:8000],
            "StandardErrorUrl": inv["StandardErrorUrl"],
            "CloudWatchOutputConfig": {"CloudWatchOutputEnabled": False},
        }
        for inv in invocations
    ]


def _elapsed(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = int((end - start).total_seconds())
    return f"PT{seconds // 60}M{seconds % 60}S" if seconds % 60 else f"PT{seconds // 60}M"


def command_json(command: Command) -> dict[str, Any]:
    data = command.response_object()
    data["DocumentVersion"] = "$DEFAULT"
    data["DeliveryTimedOutCount"] = getattr(command, "delivery_timed_out_count", 0)
    data["ServiceRole"] = command.service_role_arn or ""
    data["TargetCount"] = command.target_count
    data["CompletedCount"] = command.completed_count
    data["ErrorCount"] = command.error_count
    data["Status"] = command.status
    data["StatusDetails"] = command.status_details
    data["CloudWatchOutputConfig"] = {"CloudWatchOutputEnabled": False}
    return data


def invocation_json(invocation: dict[str, Any], details: bool) -> dict[str, Any]:
    data = {k: v for k, v in invocation.items() if not k.startswith("_")}
    if not details:
        data["CommandPlugins"] = []
    return data


def install() -> None:
    Command._get_instance_ids_from_targets = _command_instance_ids_from_targets  # type: ignore[method-assign]
    Command.__init__ = _command_init  # type: ignore[method-assign]
