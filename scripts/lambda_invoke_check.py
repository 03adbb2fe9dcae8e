"""Send every payload in events/ to the real function binaries and check each answer.

Starts the local AWS emulator and `cargo lambda watch` (the Lambda runtime API emulator) on
free loopback ports, then `cargo lambda invoke <function> --data-file <file>` for every file in
events/auto-tagger, events/baseline-sync and events/run-notifier, every look-alike in
events/lookalikes (sent to the function whose rule it resembles), and one malformed payload
per function. It prints one line per invocation and `N passed, N failed` at the end; it exits
1 if anything failed. Everything it starts is stopped on exit, error or Ctrl-C.

The documented payloads name resources (instance, window, execution and command ids) that do
not exist in a fresh emulator. The check first builds a small fleet and runs the scenario's
windows in the emulator, then invokes each file with those ids substituted for the documented
ones (each line says which): the payload's shape — what the function must parse — is the
file's, unchanged.

Expectations:
  * a file in events/<function>/ is answered with a JSON result (the function succeeded) and
    has the effect the scenario implies (tag written, baselines created, email published), or
    none when nothing needs doing (a second event, a re-run sync: zero write calls);
  * a look-alike is not acted on: no write call at all (the function may answer "ignored" or
    reject it with an error);
  * a malformed payload is a permanent failure (patchpilot::failure): the function answers
    `{"errorType": ..., "retried": false}` instead of a Lambda error, so Lambda neither retries
    it nor dead-letters it; no panic, no write, and the errorType is the expected one.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pplocal import (  # noqa: E402
    ACCOUNT,
    REGION,
    ROOT,
    Emulator,
    Functions,
    HarnessError,
    Invocation,
    Stack,
    build_functions,
    say,
    writes,
)

EVENTS = ROOT / "events"
POLICY_PARAMETER = "/patchpilot/policy"
# The stack deployed into the emulator (= samconfig.toml's stack name): its name is the
# ownership marker's value.
STACK_NAME = "patchpilot"

# Ids used by the documented payloads in events/.
DOC_LAUNCHED = "i-1234567890abcdef0"
DOC_RETAGGED = "i-0000000aaaaaaaaaa"
DOC_MANAGED = "mi-0123456789abcdef0"


@dataclass
class Fleet:
    """What the check created in the emulator, by role."""

    launched: str = ""  # Amazon Linux 2 test host, untagged: the EC2 state-change events
    retagged: str = ""  # RHEL host tagged Environment=prod: the tag-change events
    windows_test: str = ""  # Windows test host, batch 2
    managed: str = DOC_MANAGED  # on-prem Ubuntu node, registered with the documented id
    topic_arn: str = ""
    queue_url: str = ""
    bucket: str = ""
    windows: dict[str, str] = field(default_factory=dict)  # window name -> id
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)  # "success"/"failed" -> hook answer


@dataclass
class Case:
    function: str
    label: str
    payload: Any
    kind: str  # "ok" | "ignore" | "reject" (a permanent failure)
    mapped: str = ""
    check: Callable[[Invocation, dict[str, int]], str | None] | None = None
    before: Callable[[], None] | None = None
    # "reject": the errorType the permanent failure must name.
    error_type: str = ""
    seconds: float = 0.0


def load(rel: str) -> Any:
    return json.loads((EVENTS / rel).read_text())


def instance_arn(instance_id: str) -> str:
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"


def replace_ids(payload: Any, mapping: dict[str, str]) -> Any:
    text = json.dumps(payload)
    for old, new in mapping.items():
        text = text.replace(old, new)
    return json.loads(text)


def tags_of(emu: Emulator, instance_id: str) -> dict[str, str]:
    if instance_id.startswith("mi-"):
        tags = emu.client("ssm").list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=instance_id)
        return {t["Key"]: t["Value"] for t in tags.get("TagList", [])}
    reservations = emu.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return {t["Key"]: t["Value"] for r in reservations for i in r["Instances"] for t in i.get("Tags", [])}


def drain(emu: Emulator, fleet: Fleet) -> list[dict[str, Any]]:
    """SNS notifications delivered to the check's SQS queue since the last drain."""
    sqs = emu.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=fleet.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return out
        for m in messages:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=fleet.queue_url, ReceiptHandle=m["ReceiptHandle"])


def setup(emu: Emulator, deployed: dict[str, Any]) -> Fleet:
    """The stack provides the policy parameter (`embedded-default`), the topic, the table and
    the bucket; the check adds an SQS inbox on the topic and a small fleet."""
    fleet = Fleet()
    ec2, sns, sqs = (emu.client(s) for s in ("ec2", "sns", "sqs"))
    fleet.topic_arn = deployed["Outputs"]["ReportTopicArn"]
    fleet.bucket = deployed["Outputs"]["OutputBucketName"]
    fleet.queue_url = sqs.create_queue(QueueName="patchpilot-reports-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=fleet.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=fleet.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    amis = {a["patchpilot"]["key"]: a["ami_id"] for a in json.loads((ROOT / "tests/emulator/patchpilot_emulator/amis.json").read_text())}

    def launch(os_key: str, tags: dict[str, str]) -> str:
        reservation = ec2.run_instances(
            ImageId=amis[os_key],
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )
        return reservation["Instances"][0]["InstanceId"]

    fleet.launched = launch("amazon-linux-2", {"Name": "i-amazon-linux-test", "Environment": "test"})
    fleet.retagged = launch("rhel-9", {"Name": "web-01-prod", "Environment": "prod"})
    fleet.windows_test = launch(
        "windows-2022",
        {"Name": "i-windows-test", "Environment": "test", "Patch Group": "patch_test_0600_batch_2"},
    )
    emu.hook(
        "register-managed-instance",
        {
            "InstanceId": DOC_MANAGED,
            "PlatformType": "Linux",
            "PlatformName": "Ubuntu",
            "PlatformVersion": "22.04",
            "Name": "onprem-db-test",
            "Tags": {"Environment": "test"},
        },
    )
    return fleet


def run_window(emu: Emulator, fleet: Fleet, which: str, fail: list[str]) -> None:
    """Run patchpilot-test (created by baseline-sync) in the emulator, with `fail` failing."""
    ssm = emu.client("ssm")
    for w in ssm.describe_maintenance_windows()["WindowIdentities"]:
        fleet.windows[w["Name"]] = w["WindowId"]
    window = fleet.windows.get("patchpilot-test")
    if window is None:
        raise HarnessError(f"baseline-sync created no patchpilot-test window (windows: {sorted(fleet.windows)})")
    fleet.executions[which] = emu.hook("execute-window", {"WindowId": window, "FailInstances": fail})
    drain(emu, fleet)


def patch_now(emu: Emulator, fleet: Fleet) -> tuple[str, list[str]]:
    """An AWS-RunPatchBaseline command sent outside any window ("patch now")."""
    instances = [fleet.launched, fleet.windows_test]
    command = emu.client("ssm").send_command(
        InstanceIds=instances,
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": ["Install"], "RebootOption": ["RebootIfNeeded"]},
        OutputS3BucketName=fleet.bucket,
        OutputS3KeyPrefix="patchpilot/run-command/patch-now",
    )["Command"]
    return command["CommandId"], instances


def command_of(execution: dict[str, Any], want_instance: str | None = None) -> tuple[str, list[str]]:
    """(command id, instance ids) of the first task of an execution (or the one reaching an instance)."""
    for task in execution["Tasks"]:
        if want_instance is None or want_instance in task["InstanceIds"]:
            if task["CommandIds"] and task["InstanceIds"]:
                return task["CommandIds"][0], task["InstanceIds"]
    raise HarnessError(f"execution {execution['WindowExecutionId']} has no command (tasks: {execution['Tasks']})")


def window_event(rel: str, fleet: Fleet, which: str) -> tuple[Any, str]:
    ex = fleet.executions[which]
    payload = load(rel)
    doc_window = payload["detail"]["window-id"]
    doc_exec = payload["detail"]["window-execution-id"]
    payload = replace_ids(payload, {doc_window: ex["WindowId"], doc_exec: ex["WindowExecutionId"]})
    return payload, f"window {ex['WindowId']}, execution {ex['WindowExecutionId'][:8]}…"


def command_event(rel: str, command_id: str, instances: list[str], origin: str) -> tuple[Any, str]:
    payload = copy.deepcopy(load(rel))
    payload["detail"]["command-id"] = command_id
    payload["resources"] = [instance_arn(i) for i in instances]
    return payload, f"{origin} command {command_id[:8]}…, {len(instances)} instance(s)"


# --- checks on effects -----------------------------------------------------------------------


def no_writes(_inv: Invocation, delta: dict[str, int]) -> str | None:
    w = writes(delta)
    return f"expected no write call, made {w}" if w else None


def only_writes(allowed: dict[str, int]) -> Callable[[Invocation, dict[str, int]], str | None]:
    def check(_inv: Invocation, delta: dict[str, int]) -> str | None:
        w = writes(delta)
        return None if w == allowed else f"expected exactly the writes {allowed}, made {w}"

    return check


def tagged(emu: Emulator, instance: str, group: str) -> Callable[[Invocation, dict[str, int]], str | None]:
    def check(_inv: Invocation, _delta: dict[str, int]) -> str | None:
        tags = tags_of(emu, instance)
        if tags.get("Patch Group") != group:
            return f"{instance}: Patch Group is {tags.get('Patch Group')!r}, expected {group!r}"
        if tags.get("patchpilot:managed") != STACK_NAME:
            return f"{instance}: ownership tag patchpilot:managed={STACK_NAME} missing ({tags})"
        return None

    return check


def emails(emu: Emulator, fleet: Fleet, count: int, contains: str = "") -> Callable[[Invocation, dict[str, int]], str | None]:
    def check(_inv: Invocation, _delta: dict[str, int]) -> str | None:
        got = drain(emu, fleet)
        if len(got) != count:
            return f"expected {count} report(s) on the topic, got {len(got)}: {[m.get('Subject') for m in got]}"
        for m in got:
            subject = m.get("Subject", "")
            if not subject or len(subject) >= 100:
                return f"report subject must be 1-99 characters: {subject!r}"
            if contains and contains not in subject + m.get("Message", ""):
                return f"report does not mention {contains!r}: {subject!r}"
        return None

    return check


def all_of(*checks: Callable[[Invocation, dict[str, int]], str | None]) -> Callable[[Invocation, dict[str, int]], str | None]:
    def check(inv: Invocation, delta: dict[str, int]) -> str | None:
        for c in checks:
            problem = c(inv, delta)
            if problem:
                return problem
        return None

    return check


def built_the_scenario(emu: Emulator) -> Callable[[Invocation, dict[str, int]], str | None]:
    def check(_inv: Invocation, _delta: dict[str, int]) -> str | None:
        ssm = emu.client("ssm")
        baselines = [
            b["BaselineName"]
            for page in ssm.get_paginator("describe_patch_baselines").paginate(
                Filters=[{"Key": "OWNER", "Values": ["Self"]}]
            )
            for b in page["BaselineIdentities"]
            if b["BaselineName"].startswith("patchpilot-")
        ]
        windows = [w["Name"] for w in ssm.describe_maintenance_windows()["WindowIdentities"]]
        if len(baselines) != 12 or sorted(windows) != ["patchpilot-prod", "patchpilot-test"]:
            return f"expected 12 baselines and 2 windows, found {len(baselines)} baselines and windows {windows}"
        return None

    return check


# --- the cases -------------------------------------------------------------------------------


def cases(emu: Emulator, fleet: Fleet) -> list[Case]:
    tagger = "auto-tagger"
    sync = "baseline-sync"
    notifier = "run-notifier"
    launched = {DOC_LAUNCHED: fleet.launched}
    retagged = {DOC_RETAGGED: fleet.retagged}
    c: list[Case] = [
        Case(tagger, "auto-tagger/ec2-state-pending.json", replace_ids(load("auto-tagger/ec2-state-pending.json"), launched), "ok",
             f"instance {fleet.launched}", tagged(emu, fleet.launched, "patch_test_0600_batch_1")),
        Case(tagger, "auto-tagger/ec2-state-running.json", replace_ids(load("auto-tagger/ec2-state-running.json"), launched), "ok",
             f"instance {fleet.launched}, already tagged", no_writes),
        Case(tagger, "auto-tagger/managed-instance-registration.json", load("auto-tagger/managed-instance-registration.json"), "ok",
             f"node {fleet.managed}", tagged(emu, fleet.managed, "patch_test_0600_batch_1")),
        Case(tagger, "auto-tagger/tag-change-environment.json", replace_ids(load("auto-tagger/tag-change-environment.json"), retagged), "ok",
             f"instance {fleet.retagged}", tagged(emu, fleet.retagged, "patch_prod_0600_batch_1")),
        Case(tagger, "auto-tagger/tag-change-patch-group-by-patchpilot.json",
             replace_ids(load("auto-tagger/tag-change-patch-group-by-patchpilot.json"), retagged), "ok",
             f"instance {fleet.retagged}, patchpilot's own write", no_writes),
        *exclusion_cases(emu, fleet, retagged),
        Case(tagger, "lookalikes/ec2-state-stopping.json", replace_ids(load("lookalikes/ec2-state-stopping.json"), launched), "ignore",
             f"instance {fleet.launched}"),
        Case(tagger, "lookalikes/tag-change-volume.json", load("lookalikes/tag-change-volume.json"), "ignore"),
        # Another key changed: the group stays, but the event is claimed in event order
        # (tagorder#<stack>#<id> in the stack's table) so that an older racing event cannot
        # overwrite what this one's tags decide. That claim is its only write.
        Case(tagger, "lookalikes/tag-change-other-key.json", replace_ids(load("lookalikes/tag-change-other-key.json"), retagged), "ok",
             f"instance {fleet.retagged}, claimed in event order", only_writes({"dynamodb:PutItem": 1})),
        Case(tagger, "malformed: state change without instance-id",
             {**load("auto-tagger/ec2-state-running.json"), "detail": {"state": "running"}}, "reject",
             error_type="MalformedEvent"),
        Case(tagger, "malformed: a 10 KB instance id (never sent to EC2)",
             {**load("auto-tagger/ec2-state-running.json"), "resources": [],
              "detail": {"instance-id": "i-" + "0" * 10240, "state": "running"}}, "reject",
             error_type="MalformedEvent"),
        Case(sync, "baseline-sync/manual-dry-run.json", load("baseline-sync/manual-dry-run.json"), "ok", "", no_writes),
        Case(sync, "baseline-sync/manual-apply.json", load("baseline-sync/manual-apply.json"), "ok", "", built_the_scenario(emu)),
        Case(sync, "baseline-sync/parameter-change.json", load("baseline-sync/parameter-change.json"), "ok", "no drift", no_writes),
        Case(sync, "baseline-sync/scheduled.json", load("baseline-sync/scheduled.json"), "ok", "no drift", no_writes),
        Case(sync, "lookalikes/parameter-change-other-parameter.json", load("lookalikes/parameter-change-other-parameter.json"), "ignore"),
        Case(sync, "lookalikes/parameter-delete-policy.json", load("lookalikes/parameter-delete-policy.json"), "ignore"),
        # No test run recorded yet: prod stays held (scan only), as the apply above left it.
        Case(sync, "baseline-sync/promotion-recorded.json", s3_event("baseline-sync/promotion-recorded.json", fleet), "ok",
             f"bucket {fleet.bucket}, no state yet", all_of(no_writes, prod_operations(emu, "Scan"))),
        Case(sync, "lookalikes/s3-promotion-manifest-created.json", s3_event("lookalikes/s3-promotion-manifest-created.json", fleet),
             "ignore", f"bucket {fleet.bucket}"),
        Case(sync, "lookalikes/s3-run-command-output-created.json", s3_event("lookalikes/s3-run-command-output-created.json", fleet),
             "ignore", f"bucket {fleet.bucket}"),
        Case(sync, "malformed: dry_run is not a boolean", {"dry_run": "yes please"}, "reject",
             error_type="UnsupportedEvent"),
    ]
    return c


def s3_event(rel: str, fleet: Fleet) -> Any:
    """An S3 `Object Created` file with the documented bucket name replaced by the stack's."""
    payload = copy.deepcopy(load(rel))
    doc_bucket = payload["detail"]["bucket"]["name"]
    return replace_ids(payload, {doc_bucket: fleet.bucket})


def prod_tasks(emu: Emulator) -> dict[str, tuple[str, str | None]]:
    """patchpilot-prod's AWS-RunPatchBaseline tasks: name -> (Operation, InstallOverrideList)."""
    ssm = emu.client("ssm")
    windows = {w["Name"]: w["WindowId"] for w in ssm.describe_maintenance_windows()["WindowIdentities"]}
    out: dict[str, tuple[str, str | None]] = {}
    for task in ssm.describe_maintenance_window_tasks(WindowId=windows.get("patchpilot-prod", ""))["Tasks"]:
        full = ssm.get_maintenance_window_task(WindowId=windows["patchpilot-prod"], WindowTaskId=task["WindowTaskId"])
        params = full["TaskInvocationParameters"]["RunCommand"]["Parameters"]
        out[full.get("Name", task["WindowTaskId"])] = (params["Operation"][0], (params.get("InstallOverrideList") or [None])[0])
    return out


def prod_operations(emu: Emulator, want: str, fleet: Fleet | None = None) -> Callable[[Invocation, dict[str, int]], str | None]:
    """`Scan`: prod is held, every task scans. `Install`: prod installs the promoted manifest:
    each OS with an override list in state.json installs exactly that list, the others
    (no test host of that OS, or its test host failed) scan."""

    def check(_inv: Invocation, _delta: dict[str, int]) -> str | None:
        tasks = prod_tasks(emu)
        if not tasks:
            return "no patchpilot-prod tasks"
        if want == "Scan":
            wrong = {n: t for n, t in tasks.items() if t != ("Scan", None)}
            return f"expected every prod task to scan, found {wrong}" if wrong else None
        if fleet is None:
            return "the promoted layout needs the fleet's bucket"
        body = emu.client("s3").get_object(Bucket=fleet.bucket, Key="patchpilot/promotion/prod/state.json")["Body"].read()
        lists: dict[str, str] = json.loads(body)["manifest"]["lists"]
        expected = {n: ("Install", url) if (url := next((u for os_, u in lists.items() if n.endswith(f"-{os_}")), None)) else ("Scan", None)
                    for n in tasks}
        if not lists or tasks != expected:
            return f"expected {expected} (lists {lists}), found {tasks}"
        return None

    return check


def promotion_cases(emu: Emulator, fleet: Fleet) -> list[Case]:
    """After test's failed run the gate holds prod; an operator forces the promotion."""
    sync = "baseline-sync"
    rel = "baseline-sync/manual-force-promotion.json"

    def state_is(verdict: str) -> Callable[[Invocation, dict[str, int]], str | None]:
        def check(_inv: Invocation, _delta: dict[str, int]) -> str | None:
            body = emu.client("s3").get_object(Bucket=fleet.bucket, Key="patchpilot/promotion/prod/state.json")["Body"].read()
            got = json.loads(body).get("decision", {}).get("verdict")
            return None if got == verdict else f"expected state verdict {verdict!r}, got {got!r}"

        return check

    return [
        Case(sync, "baseline-sync/promotion-recorded.json (held)", s3_event("baseline-sync/promotion-recorded.json", fleet), "ok",
             "test's last run failed: prod scans only", all_of(state_is("held"), prod_operations(emu, "Scan"))),
        Case(sync, rel, load(rel), "ok", "operator forces the held manifest",
             all_of(state_is("forced"), prod_operations(emu, "Install", fleet))),
        Case(sync, f"{rel} (again)", load(rel), "reject", "nothing held any more: refused, nothing changed",
             error_type="PromotionRefused"),
        Case(sync, "baseline-sync/promotion-recorded.json (forced)", s3_event("baseline-sync/promotion-recorded.json", fleet), "ok",
             "the forced state's own event: no drift", all_of(no_writes, prod_operations(emu, "Install", fleet))),
    ]


def exclusion_cases(emu: Emulator, fleet: Fleet, retagged: dict[str, str]) -> list[Case]:
    """An operator excludes a host patchpilot tagged: the tagger takes its tags back off."""
    rel = "auto-tagger/tag-change-exclude.json"
    if not (EVENTS / rel).exists():
        return []
    payload = replace_ids(load(rel), retagged)
    exclude = {k: v for k, v in payload["detail"]["tags"].items() if k == "patchpilot:exclude"}

    def operator_excludes() -> None:
        emu.client("ec2").create_tags(
            Resources=[fleet.retagged], Tags=[{"Key": k, "Value": v} for k, v in exclude.items()]
        )

    def untagged(_inv: Invocation, _delta: dict[str, int]) -> str | None:
        left = {k for k in tags_of(emu, fleet.retagged) if k in ("Patch Group", "patchpilot:managed")}
        return f"{fleet.retagged} still has {sorted(left)} after being excluded" if left else None

    return [
        Case("auto-tagger", rel, payload, "ok", f"instance {fleet.retagged}, patchpilot:exclude added", untagged,
             before=operator_excludes),
    ]


def notifier_cases(emu: Emulator, fleet: Fleet, phase: str) -> list[Case]:
    """Phase "success": a clean run of patchpilot-test and a patch-now command; phase
    "failed": a run with the Windows host failing, then the look-alikes. Each phase's events
    are delivered right after its run: DescribeInstancePatchStates answers the latest state."""
    notifier = "run-notifier"
    if phase == "success":
        success, success_ids = window_event("run-notifier/window-execution-success.json", fleet, "success")
        command_id, instances = patch_now(emu, fleet)
        cmd_ok, cmd_ok_ids = command_event("run-notifier/command-success.json", command_id, instances, "patch-now")
        return [
            Case(notifier, "run-notifier/window-execution-success.json", success, "ok", success_ids,
                 all_of(outcome("published"), emails(emu, fleet, 1, "3/3 patched"))),
            Case(notifier, "run-notifier/window-execution-success.json (again)", success, "ok",
                 "duplicate delivery: no second email", all_of(outcome("duplicate"), emails(emu, fleet, 0), no_publish)),
            Case(notifier, "run-notifier/command-success.json", cmd_ok, "ok", cmd_ok_ids,
                 all_of(outcome("published"), emails(emu, fleet, 1, "patch now"))),
        ]
    failed, failed_ids = window_event("run-notifier/window-execution-failed.json", fleet, "failed")
    window_command, instances = command_of(fleet.executions["failed"], fleet.windows_test)
    cmd_failed, cmd_failed_ids = command_event("run-notifier/command-failed.json", window_command, instances, "window")
    in_progress, _ = window_event("lookalikes/window-execution-in-progress.json", fleet, "failed")
    task_event, _ = window_event("lookalikes/window-task-execution-success.json", fleet, "failed")
    return [
        Case(notifier, "run-notifier/window-execution-failed.json", failed, "ok", failed_ids,
             all_of(outcome("published"), emails(emu, fleet, 1, "1 failed"))),
        # A command a patchpilot window sent is reported with its window (no second email).
        Case(notifier, "run-notifier/command-failed.json", cmd_failed, "ok", cmd_failed_ids),
        Case(notifier, "lookalikes/window-execution-in-progress.json", in_progress, "ignore"),
        Case(notifier, "lookalikes/window-task-execution-success.json", task_event, "ignore"),
        Case(notifier, "lookalikes/command-run-shell-script.json", load("lookalikes/command-run-shell-script.json"), "ignore"),
        Case(notifier, "lookalikes/command-in-progress.json", load("lookalikes/command-in-progress.json"), "ignore"),
        Case(notifier, "lookalikes/command-invocation-success.json", load("lookalikes/command-invocation-success.json"), "ignore"),
        Case(notifier, "malformed: window execution without window-id",
             {**load("run-notifier/window-execution-success.json"), "detail": {"status": "SUCCESS"}}, "reject",
             error_type="MalformedEvent"),
    ]


def no_publish(_inv: Invocation, delta: dict[str, int]) -> str | None:
    n = delta.get("sns:Publish", 0)
    return f"expected no sns:Publish, made {n}" if n else None


def every_event_file_is_covered(all_cases: list[Case]) -> list[str]:
    covered = {c.label.split(" ")[0] for c in all_cases}
    missing = []
    for path in sorted(EVENTS.glob("*/*.json")):
        rel = f"{path.parent.name}/{path.name}"
        if rel not in covered:
            missing.append(rel)
    return missing


def outcome(expected: str) -> Callable[[Invocation, dict[str, int]], str | None]:
    """run-notifier's answer says what it did: published, duplicate, suppressed, ignored."""

    def check(inv: Invocation, _delta: dict[str, int]) -> str | None:
        got = inv.json().get("outcome")
        return None if got == expected else f"expected outcome {expected!r}, got {got!r}"

    return check


def summarize(function: str, answer: Any) -> str:
    """One readable phrase for a function's JSON answer."""
    if not isinstance(answer, dict):
        return json.dumps(answer)[:120]
    if "errorType" in answer:
        message = str(answer.get("errorMessage", ""))
        message = message if len(message) <= 160 else message[:157] + "..."
        return f"permanent {answer['errorType']} (retried: {answer.get('retried')}): {message}"
    calls = answer.get("aws_calls", {})
    io = f"{calls.get('reads', '?')} reads, {calls.get('writes', '?')} writes"
    if function == "auto-tagger":
        if answer.get("ignored"):
            return f"ignored ({answer['ignored']}); {io}"
        parts = [
            f"{r.get('instance_id')} {r.get('action')} {r.get('patch_group') or r.get('reason') or ''}".strip()
            for r in answer.get("results", [])
        ]
        return f"{'; '.join(parts) or 'no instance'}; {io}"
    if function == "baseline-sync":
        c = answer.get("counts", {})
        sweep = answer.get("sweep") or {}
        mode = "dry run" if answer.get("dry_run") else "applied"
        return (
            f"{mode}: {len(answer.get('plan', []))} planned change(s), created {c.get('created')}, "
            f"updated {c.get('updated')}, deleted {c.get('deleted')}, unchanged {c.get('unchanged')}, "
            f"failed {c.get('failed')}; sweep {'yes' if sweep else 'no'}; {io}"
        )
    if function == "run-notifier":
        what = answer.get("subject") or answer.get("reason") or ""
        return f"{answer.get('outcome')}: {what}; {io}"
    return json.dumps(answer)[:120]


def error_text(output: str) -> str:
    """cargo lambda invoke's error report (a box-drawn diagnostic) as one line."""
    kept = []
    for line in output.splitlines():
        line = line.strip().lstrip("×│╰─ ").strip()
        if not line or line.startswith(("Was this behavior unexpected", "Please file", "Start a thread")):
            continue
        kept.append(line)
    text = " ".join(kept)
    return text if len(text) <= 220 else text[:217] + "..."


def run_case(emu: Emulator, watch: Functions, case: Case, index: int) -> tuple[bool, str]:
    if case.before:
        case.before()
    before = emu.request_log()
    inv = watch.invoke_json(case.function, case.payload, f"{index:02d}-{case.function}")
    case.seconds = inv.seconds
    time.sleep(0.2)  # SNS -> SQS fan-out in moto is synchronous, but let the log settle
    after = emu.request_log()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    answer = summarize(case.function, _json_or_none(inv)) if inv.ok else error_text(inv.output)
    if case.kind == "ok":
        if not inv.ok:
            return False, f"expected a result, got an error: {answer}"
        if _json_or_none(inv) is None:
            return False, f"answer is not JSON: {inv.output[:200]}"
        if case.check:
            problem = case.check(inv, delta)
            if problem:
                return False, f"{problem} (answer: {answer})"
        return True, answer
    if case.kind == "ignore":
        problem = no_writes(inv, delta)
        if problem:
            return False, problem
        return True, answer if inv.ok else "rejected: " + answer
    # reject: a permanent failure ends the invocation without a Lambda error
    if "panick" in inv.output.lower():
        return False, f"the function panicked: {answer}"
    if not inv.ok:
        return False, f"a Lambda error (Lambda would retry it twice, then dead-letter it): {answer}"
    body = _json_or_none(inv)
    if not isinstance(body, dict) or "errorType" not in body:
        return False, f"expected a permanent failure, got a result: {answer}"
    if body.get("retried") is not False:
        return False, f"a permanent failure must say retried: false: {answer}"
    if case.error_type and body["errorType"] != case.error_type:
        return False, f"expected errorType {case.error_type}: {answer}"
    w = writes(delta)
    if w:
        return False, f"rejected, but made write calls {w}"
    return True, answer


def _json_or_none(inv: Invocation) -> Any:
    try:
        return inv.json()
    except json.JSONDecodeError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-build", action="store_true", help="skip `cargo build` of the functions")
    args = parser.parse_args()

    passed = failed = 0
    with Stack() as stack:
        try:
            if not args.no_build:
                say("building the function binaries (debug) ...")
                build_functions()
            emu = Emulator(stack)
            # template.yaml deployed into the emulator: each function runs under its own role.
            deployed = emu.deploy_stack(STACK_NAME)
            fleet = setup(emu, deployed)
            # The policy cache is off so that each case reads the parameter it set up.
            watch = Functions(stack, emu, deployed, {"POLICY_CACHE_SECONDS": "0"})
            say(f"emulator {emu.endpoint}, stack {STACK_NAME}, cargo lambda watch: {watch.describe()}, logs in {stack.tmp}")

            all_cases: list[Case] = []
            results: list[tuple[Case, bool, str]] = []

            def run(batch: list[Case]) -> None:
                for case in batch:
                    ok, detail = run_case(emu, watch, case, len(all_cases))
                    all_cases.append(case)
                    results.append((case, ok, detail))
                    report(case, ok, detail)

            run(cases(emu, fleet))
            # The notifier needs the windows baseline-sync created, run in the emulator.
            run_window(emu, fleet, "success", [])
            run(notifier_cases(emu, fleet, "success"))
            run_window(emu, fleet, "failed", [fleet.windows_test])
            run(notifier_cases(emu, fleet, "failed"))
            run(promotion_cases(emu, fleet))
            say(emu.iam_cost())
            passed = sum(1 for _, ok, _ in results if ok)
            failed = len(results) - passed
            missing = every_event_file_is_covered(all_cases)
            if missing:
                failed += len(missing)
                for m in missing:
                    say(f"FAIL  events/{m}: not covered by the invoke check (add a case)")
        except HarnessError as err:
            say(f"FAIL  harness: {err}")
            failed += 1
        if failed:
            say(f"logs: {stack.tmp} (emulator.log, cargo-lambda-watch-<function>.log)")
    say(f"lambda-invoke-check: {passed} passed, {failed} failed")
    return 1 if failed else 0


def report(case: Case, ok: bool, detail: str) -> None:
    mapped = f" [{case.mapped}]" if case.mapped else ""
    say(f"{'ok  ' if ok else 'FAIL'}  {case.function:<13} {case.label}{mapped} ({case.seconds:.1f}s): {detail}")


if __name__ == "__main__":
    sys.exit(main())
