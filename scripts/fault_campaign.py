"""Fault campaign: the demo's scenario through the real binaries, with and without faults.

    .venv/bin/python scripts/fault_campaign.py [--seed N] [--throttle 0.30 --server-error 0.10
        --reset 0.05] [--duplicates 0.25]          # what `make fault-campaign` runs

The scenario (the article's 12 instances, as in scripts/demo.py): one `EC2 Instance
State-change Notification` per instance to auto-tagger, baseline-sync (apply), the test window
run in the emulator with one host failing, its `Maintenance Window Execution State-change
Notification` to run-notifier, and baseline-sync again. It runs twice, each time on a fresh
emulator with template.yaml deployed and the three functions in their own `cargo lambda watch`
with their own role's key:

1. fault-free: the reference end state;
2. faulted: the emulator's fault mix (tests/emulator/README.md, "Fault mix") makes every
   request of the functions fail with probability 30 % throttling (the service's own
   throttling error), 10 % 5xx and 5 % connection reset (closed without an answer), seeded.
   Events are delivered with Lambda's asynchronous invocation semantics: an invocation that
   returns an error is retried up to two more times, then the event is a dead letter ("If the
   function returns an error, by default Lambda attempts to run it two more times", Lambda
   Developer Guide, "How Lambda handles errors and retries with asynchronous invocation";
   EventBridge invokes Lambda asynchronously). Lambda's waits between attempts (one minute,
   then two) are not reproduced: faults are drawn per request, so waiting changes nothing
   but the time. The same page warns that a function "might receive the same event ... multiple
   times": a seeded share of the events (`--duplicates`) is delivered a second time after it
   succeeded.

Then the two end states are compared: instance tags, patch baselines (OS, rules, patch groups,
tags), patch-group registrations, maintenance windows, targets and tasks, and the mails on the
report topic (read from an SQS queue subscribed to it; identical content counted, ids and times
normalised). Expected: the same end state, 0 lost reports, 0 duplicate mails, 0 wrong tags, no
dead letter. The harness's own reads use the administrator key, which the fault mix spares.

It prints the faults injected (by kind, service and function), the Lambda retries, the
duplicates delivered and the time, and exits 1 when the end states differ.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo import ENVIRONMENTS, FAILING_HOST, FLEET, load_event, window_event  # noqa: E402
from pplocal import (  # noqa: E402
    ROOT,
    Emulator,
    Functions,
    HarnessError,
    Stack,
    build_functions,
    say,
)

STACK_NAME = "patchpilot"
LAMBDA_ATTEMPTS = 3  # the first invocation and Lambda's two retries
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2}| UTC)?")


@dataclass
class Delivery:
    """One event through Lambda's asynchronous invocation: attempts until one succeeds."""

    name: str
    function: str
    attempts: int = 0
    ok: bool = False
    errors: list[str] = field(default_factory=list)
    answer: Any = None


@dataclass
class Run:
    label: str
    deliveries: list[Delivery] = field(default_factory=list)
    duplicates: int = 0
    snapshot: dict[str, Any] = field(default_factory=dict)
    mails: Counter[str] = field(default_factory=Counter)
    faults: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def lambda_retries(self) -> int:
        return sum(d.attempts - 1 for d in self.deliveries)

    @property
    def dead_letters(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.ok]


class AsyncLambda:
    """Lambda's asynchronous invocation around the real binaries (see the module doc)."""

    def __init__(self, functions: Functions, run: Run, duplicates: float, seed: int) -> None:
        self.functions = functions
        self.run = run
        self.duplicates = duplicates
        self.rng = random.Random(f"duplicates:{seed}")

    def deliver(self, function: str, event: Any, name: str) -> Delivery:
        delivery = self._attempts(function, event, name)
        self.run.deliveries.append(delivery)
        if delivery.ok and self.rng.random() < self.duplicates:
            # At-least-once: the same event once more, after it was handled.
            self.run.duplicates += 1
            again = self._attempts(function, event, f"{name}-again")
            self.run.deliveries.append(again)
        return delivery

    def _attempts(self, function: str, event: Any, name: str) -> Delivery:
        delivery = Delivery(name, function)
        while delivery.attempts < LAMBDA_ATTEMPTS:
            delivery.attempts += 1
            inv = self.functions.invoke_json(function, event, f"{name}-{delivery.attempts}")
            if inv.ok:
                delivery.ok = True
                try:
                    delivery.answer = inv.json()
                except json.JSONDecodeError:
                    delivery.answer = inv.output
                break
            delivery.errors.append(inv.output[-4000:])
        return delivery


def launch_fleet(emu: Emulator) -> dict[str, str]:
    """The article's 12 instances (name -> id), untagged but for Name and Environment."""
    amis = {a["patchpilot"]["key"]: a for a in json.loads((ROOT / "tests/emulator/patchpilot_emulator/amis.json").read_text())}
    ec2 = emu.client("ec2")
    ids = {}
    for env in ENVIRONMENTS:
        for stem, os_key, _ in FLEET:
            name = f"{stem}-{env}"
            reservation = ec2.run_instances(
                ImageId=amis[os_key]["ami_id"],
                MinCount=1,
                MaxCount=1,
                InstanceType="t3.medium",
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}, {"Key": "Environment", "Value": env}]}
                ],
            )
            ids[name] = reservation["Instances"][0]["InstanceId"]
    return ids


def scenario(run: Run, faults: dict[str, Any] | None, duplicates: float, seed: int) -> None:
    started = time.monotonic()
    with Stack() as stack:
        emu = Emulator(stack)
        # moto's ids from a seeded generator: both runs launch the same instance ids (the
        # emulator derives each host's patch counts from its id), so their reports compare.
        emu._request("POST", f"/moto-api/seed?a={seed}", {})
        deployed = emu.deploy_stack(STACK_NAME)
        topic_arn = deployed["Outputs"]["ReportTopicArn"]
        sqs, sns = emu.client("sqs"), emu.client("sns")
        queue_url = sqs.create_queue(QueueName="patchpilot-reports-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        functions = Functions(stack, emu, deployed)
        ids = launch_fleet(emu)
        if faults is not None:
            emu.hook("fault-mix", faults)
        lam = AsyncLambda(functions, run, duplicates if faults is not None else 0.0, seed)

        template = load_event("auto-tagger/ec2-state-pending.json")
        doc_id = template["detail"]["instance-id"]
        for name, instance_id in ids.items():
            lam.deliver("auto-tagger", json.loads(json.dumps(template).replace(doc_id, instance_id)), f"tag-{name}")
        lam.deliver("baseline-sync", load_event("baseline-sync/manual-apply.json"), "sync")

        windows = {w["Name"]: w["WindowId"] for w in emu.client("ssm").describe_maintenance_windows()["WindowIdentities"]}
        if "patchpilot-test" not in windows:
            raise HarnessError(f"{run.label}: no patchpilot-test window after the sync: {sorted(windows)}")
        execution = emu.hook("execute-window", {"WindowId": windows["patchpilot-test"], "FailInstances": [ids[FAILING_HOST]]})
        lam.deliver("run-notifier", window_event(execution), "notify")
        lam.deliver("baseline-sync", load_event("baseline-sync/scheduled.json"), "sync-again")

        if faults is not None:
            run.faults = emu._request("GET", "/patchpilot-emulator/fault-mix", None)
            emu.hook("fault-mix", {"Enabled": False})
        names = {**{v: k for k, v in ids.items()}, **{v: k for k, v in windows.items()}}
        names[execution["WindowExecutionId"]] = "<window-execution>"
        run.snapshot = snapshot(emu, ids, windows)
        run.mails = mails(emu, queue_url, names)
    run.seconds = time.monotonic() - started


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def snapshot(emu: Emulator, ids: dict[str, str], windows: dict[str, str]) -> dict[str, Any]:
    """Everything patchpilot owns or writes, keyed by names (ids differ between runs)."""
    ec2, ssm = emu.client("ec2"), emu.client("ssm")
    by_id = {v: k for k, v in ids.items()}
    instances = {
        by_id[i["InstanceId"]]: _tags(i.get("Tags"))
        for r in ec2.describe_instances(InstanceIds=list(ids.values()))["Reservations"]
        for i in r["Instances"]
    }
    baselines = {}
    for page in ssm.get_paginator("describe_patch_baselines").paginate(Filters=[{"Key": "OWNER", "Values": ["Self"]}]):
        for b in page["BaselineIdentities"]:
            full = ssm.get_patch_baseline(BaselineId=b["BaselineId"])
            tags = ssm.list_tags_for_resource(ResourceType="PatchBaseline", ResourceId=b["BaselineId"])["TagList"]
            baselines[b["BaselineName"]] = {
                "os": full.get("OperatingSystem"),
                "rules": full.get("ApprovalRules"),
                "approved": sorted(full.get("ApprovedPatches", [])),
                "rejected": sorted(full.get("RejectedPatches", [])),
                "compliance": full.get("ApprovedPatchesComplianceLevel"),
                "patch_groups": sorted(full.get("PatchGroups", [])),
                "tags": _tags(tags),
            }
    groups: dict[str, list[str]] = {}
    for m in ssm.describe_patch_groups()["Mappings"]:
        groups.setdefault(m["PatchGroup"], []).append(m["BaselineIdentity"]["BaselineName"])
    window_state = {}
    for name, wid in sorted(windows.items()):
        w = ssm.get_maintenance_window(WindowId=wid)
        targets = ssm.describe_maintenance_window_targets(WindowId=wid)["Targets"]
        target_names = {t["WindowTargetId"]: t.get("Name") for t in targets}
        tasks = {}
        for t in ssm.describe_maintenance_window_tasks(WindowId=wid)["Tasks"]:
            full = ssm.get_maintenance_window_task(WindowId=wid, WindowTaskId=t["WindowTaskId"])
            run_command = dict(full.get("TaskInvocationParameters", {}).get("RunCommand", {}))
            run_command.pop("ServiceRoleArn", None)
            tasks[t.get("Name", "")] = {
                "priority": t["Priority"],
                "document": t["TaskArn"],
                "rate": [t.get("MaxConcurrency"), t.get("MaxErrors")],
                "targets": sorted(target_names.get(v, v) for x in t["Targets"] for v in x["Values"]),
                "run_command": run_command,
                "cutoff_behavior": full.get("CutoffBehavior"),
            }
        window_state[name] = {
            "schedule": [w["Schedule"], w.get("ScheduleTimezone"), w.get("ScheduleOffset")],
            "duration_cutoff": [w["Duration"], w["Cutoff"]],
            "enabled": w["Enabled"],
            "unassociated": w.get("AllowUnassociatedTargets"),
            "tags": _tags(ssm.list_tags_for_resource(ResourceType="MaintenanceWindow", ResourceId=wid)["TagList"]),
            "targets": {t.get("Name"): [t["Targets"], t.get("OwnerInformation")] for t in targets},
            "tasks": tasks,
        }
    return {
        "instances": instances,
        "baselines": baselines,
        "patch_groups": {g: sorted(b) for g, b in sorted(groups.items())},
        "windows": window_state,
    }


def normalise(text: str, names: dict[str, str]) -> str:
    for old, new in sorted(names.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(old, new)
    text = UUID_RE.sub("<uuid>", text)
    return TIME_RE.sub("<time>", text)


def mails(emu: Emulator, queue_url: str, names: dict[str, str]) -> Counter[str]:
    """The messages the topic delivered, normalised (ids to names, uuids and times masked),
    counted: a duplicate mail shows as a count of 2."""
    sqs = emu.client("sqs")
    out: Counter[str] = Counter()
    empty = 0
    while empty < 2:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        empty = 0 if got else empty + 1
        for m in got:
            note = json.loads(m["Body"])
            attributes = {k: v.get("Value") for k, v in sorted(note.get("MessageAttributes", {}).items())}
            key = json.dumps({"subject": note.get("Subject"), "attributes": attributes, "message": note.get("Message")})
            out[normalise(key, names)] += 1
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return out


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: {'missing' if k not in b else 'extra'} in the faulted run")
            else:
                out.extend(differences(a[k], b[k], f"{path}/{k}"))
        return out
    return [] if a == b else [f"{path}: {a!r} without faults, {b!r} with faults"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--throttle", type=float, default=0.30)
    parser.add_argument("--server-error", type=float, default=0.10)
    parser.add_argument("--reset", type=float, default=0.05)
    parser.add_argument("--duplicates", type=float, default=0.25, help="share of events delivered twice")
    parser.add_argument("--dump", type=Path, help="write both end states (snapshot and mails) to this directory")
    args = parser.parse_args()
    mix = {"Seed": args.seed, "Throttle": args.throttle, "ServerError": args.server_error, "Reset": args.reset}
    say(
        f"fault campaign: seed {args.seed}, {args.throttle:.0%} throttling, {args.server_error:.0%} 5xx, "
        f"{args.reset:.0%} connection resets on every request of the functions; {args.duplicates:.0%} of events delivered twice"
    )
    started = time.monotonic()
    clean, faulted = Run("fault-free"), Run("faulted")
    try:
        build_functions()
        scenario(clean, None, 0.0, args.seed)
        say(f"fault-free run: {len(clean.deliveries)} invocations, {clean.seconds:.0f}s")
        scenario(faulted, mix, args.duplicates, args.seed)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for run in (clean, faulted):
            state = {"snapshot": run.snapshot, "mails": [{"count": n, **json.loads(m)} for m, n in sorted(run.mails.items())]}
            (args.dump / f"{run.label}.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    problems = report(clean, faulted)
    say(f"fault-campaign: {'FAILED' if problems else 'passed'} in {time.monotonic() - started:.0f}s")
    return 1 if problems else 0


def report(clean: Run, faulted: Run) -> list[str]:
    problems = []
    for d in clean.dead_letters:
        problems.append(f"without faults, {d.name} ({d.function}) failed: {d.errors[-1] if d.errors else ''}")
    f = faulted.faults
    say(
        f"faulted run: {len(faulted.deliveries)} invocations ({faulted.duplicates} duplicate deliveries), "
        f"{faulted.seconds:.0f}s (fault-free {clean.seconds:.0f}s)"
    )
    say(
        f"  requests of the functions: {f.get('Requests', 0)}; faults injected: {f.get('Throttle', 0)} throttling, "
        f"{f.get('ServerError', 0)} 5xx, {f.get('Reset', 0)} connection resets "
        f"(each one an SDK retry, unless the SDK gave up and the invocation failed)"
    )
    for principal, kinds in sorted(f.get("ByPrincipal", {}).items()):
        say(f"    {principal}: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    by_service: Counter[str] = Counter()
    for action, kinds in f.get("ByAction", {}).items():
        by_service[action.split(":", 1)[0]] += sum(kinds.values())
    say("    by service: " + ", ".join(f"{s} {n}" for s, n in sorted(by_service.items())))
    failed_attempts = [(d, e) for d in faulted.deliveries for e in d.errors]
    say(f"  Lambda retries: {faulted.lambda_retries} (invocations that returned an error); dead letters: {len(faulted.dead_letters)}")
    for d, error in failed_attempts:
        lines = [line.strip(" │×") for line in error.splitlines() if line.strip()]
        # cargo lambda invoke prints `Error: <type>` then the message under a `×`.
        what = " ".join(lines[:3]) if lines else ""
        say(f"    {d.name} ({d.function}) attempt failed: {what[:300]}")
    for d in faulted.dead_letters:
        problems.append(f"dead letter: {d.name} ({d.function}) failed {d.attempts} times; last error: {d.errors[-1] if d.errors else ''}")

    diff = differences(clean.snapshot, faulted.snapshot)
    wrong_tags = [line for line in diff if line.startswith("/instances/")]
    problems.extend(diff)
    lost = [m for m in clean.mails if faulted.mails[m] == 0]
    duplicated = {m: n for m, n in faulted.mails.items() if n > max(clean.mails[m], 1)}
    unexpected = [m for m in faulted.mails if m not in clean.mails]
    clean_dupes = {m: n for m, n in clean.mails.items() if n > 1}
    say(
        f"  mails: {sum(clean.mails.values())} without faults, {sum(faulted.mails.values())} with faults; "
        f"lost {len(lost)}, duplicate {sum(n - 1 for n in duplicated.values())}, unexpected {len(unexpected)}"
    )
    say(f"  wrong tags: {len(wrong_tags)}; other end-state differences: {len(diff) - len(wrong_tags)}")
    problems += [f"mail lost: {m[:300]}" for m in lost]
    problems += [f"mail sent {n} times: {m[:300]}" for m, n in duplicated.items()]
    problems += [f"mail only with faults: {m[:300]}" for m in unexpected]
    problems += [f"mail sent {n} times without faults: {m[:300]}" for m, n in clean_dupes.items()]
    if not clean.mails:
        problems.append("no mail at all without faults: the scenario's run report is missing")
    if not clean.snapshot.get("instances") or not clean.snapshot.get("windows"):
        problems.append("the fault-free end state is empty: nothing to compare")
    for p in problems:
        say(f"  PROBLEM: {p}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
