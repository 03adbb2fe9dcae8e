"""patchpilot demo: the article's whole patching setup, run locally, end to end.

    make demo                      # or: .venv/bin/python scripts/demo.py
    .venv/bin/python scripts/demo.py --check   # what `make test` runs: also asserts the end state

1. builds the three functions and the CLI (debug), starts the local AWS emulator (moto +
   tests/emulator) and the Lambda runtime API emulator (`cargo lambda watch`);
2. launches the article's 12 instances (six OSes x test/prod, `Environment` tags), and three
   hosts Patch Manager will not patch as the policy intends (no SSM Agent, an OS without a
   baseline in the policy, one stopped through the prod window);
3. delivers an `EC2 Instance State-change Notification` per instance to the auto-tagger binary
   and shows the resulting Patch Group tags;
4. invokes baseline-sync as a dry run (the plan), then for real, and shows what exists now:
   baselines, patch-group registrations, windows with their next runs, targets, tasks; and
   the coverage message baseline-sync published about the hosts that are not covered;
5. runs the test window in the emulator with one host failing, delivers the
   `Maintenance Window Execution State-change Notification` to run-notifier and prints the
   email it published (read back from an SQS queue subscribed to the topic);
6. runs the prod window with two Linux hosts failing at once: the batch's error threshold
   (MaxErrors 25% of 5 = 1) stops Run Command, the other Linux hosts are never attempted, the
   Windows batch still runs, and the email says so;
7. runs baseline-sync again: no changes; the host stopped through the prod run is news, so one
   coverage message; a third sync sends nothing and makes no write call;
8. stops everything it started.

Everything runs as in AWS: template.yaml is deployed into the emulator (the SAM transform, then
the parameter, topic, table, bucket, key and roles), each function runs in its own
`cargo lambda watch` with its own access key, and every request it makes is authorized against
its role; window tasks send as the maintenance-window role, and instances upload their logs
under the bucket policy.

With --check every step's outcome is asserted (12 instances tagged as in the article, 12
baselines, 2 windows, one email with one failure, second sync without changes) and the run
ends with `demo-check: N passed, N failed`; the exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pplocal import (  # noqa: E402
    ROOT,
    Emulator,
    Functions,
    HarnessError,
    Invocation,
    Stack,
    build_functions,
    writes,
)

STACK_NAME = "patchpilot"
FAILING_HOST = "i-redhat-linux-test"
STEPS = 9

# Three hosts with a coverage problem each: (name, AMI catalogue key, environment).
# debian-12 has no SSM Agent in the emulator's catalogue; the reference policy has no Amazon
# Linux 2023 baseline; the third one is stopped by the prod window run (step 7).
NO_AGENT = "i-debian-linux-test"
NO_BASELINE = "i-al2023-linux-test"
STOPPED = "i-legacy-linux-prod"
PROBLEMS = [
    (NO_AGENT, "debian-12", "test"),
    (NO_BASELINE, "amazon-linux-2023", "test"),
    (STOPPED, "amazon-linux-2", "prod"),
]

# The article's fleet: name stem -> AMI catalogue key (tests/emulator/patchpilot_emulator/amis.json).
FLEET = [
    ("i-amazon-linux", "amazon-linux-2"),
    ("i-centos-linux", "centos-7"),
    ("i-redhat-linux", "rhel-9"),
    ("i-suse-linux", "sles-15"),
    ("i-ubuntu-linux", "ubuntu-22.04"),
    ("i-windows", "windows-2022"),
]
ENVIRONMENTS = ("test", "prod")


def article_group(name: str) -> str:
    """The Patch Group the article assigns by hand (its list of tags)."""
    env = "test" if name.endswith("-test") else "prod"
    batch = 2 if name.startswith("i-windows") else 1
    return f"patch_{env}_0600_batch_{batch}"


class Demo:
    def __init__(self, check: bool) -> None:
        self.check_mode = check
        self.passed = 0
        self.failed = 0
        self.started = time.monotonic()
        self.step_no = 0

    # --- output ------------------------------------------------------------------------------

    def step(self, title: str) -> None:
        self.step_no += 1
        elapsed = time.monotonic() - self.started
        print(f"\n[{self.step_no}/{STEPS}] {title}   (+{elapsed:.1f}s)", flush=True)

    @staticmethod
    def say(text: str = "") -> None:
        print(text, flush=True)

    @staticmethod
    def table(header: list[str], rows: list[list[str]], indent: str = "  ") -> None:
        widths = [len(h) for h in header]
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        for row in [header, *rows]:
            line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
            print(indent + line.rstrip(), flush=True)

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        """Record a check; printed in --check mode (failures always)."""
        if ok:
            self.passed += 1
            if self.check_mode:
                self.say(f"  check ok: {what}")
        else:
            self.failed += 1
            self.say(f"  CHECK FAILED: {what}{': ' + detail if detail else ''}")


def invoke(watch: Functions, function: str, payload: Any, name: str) -> dict[str, Any]:
    inv: Invocation = watch.invoke_json(function, payload, name)
    if not inv.ok:
        raise HarnessError(f"{function} answered with an error for {name}:\n{inv.output}")
    try:
        answer = inv.json()
    except json.JSONDecodeError:
        raise HarnessError(f"{function} answer for {name} is not JSON:\n{inv.output}") from None
    return answer if isinstance(answer, dict) else {"answer": answer}


def load_event(rel: str) -> Any:
    return json.loads((ROOT / "events" / rel).read_text())


def window_event(execution: dict[str, Any]) -> Any:
    """The `Maintenance Window Execution State-change Notification` AWS sends when the run the
    execute-window hook answered with ends (events/run-notifier/, with the run's ids)."""
    event = load_event("run-notifier/window-execution-failed.json")
    detail = event["detail"]
    event = json.loads(
        json.dumps(event)
        .replace(detail["window-execution-id"], execution["WindowExecutionId"])
        .replace(detail["window-id"], execution["WindowId"])
    )
    event["detail"]["status"] = execution["Status"]
    event["detail"]["start-time"] = execution["StartTime"][:23] + "Z"
    event["detail"]["end-time"] = execution["EndTime"][:23] + "Z"
    return event


def sqs_messages(emu: Emulator, queue_url: str) -> list[dict[str, Any]]:
    sqs = emu.client("sqs")
    out = []
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = got.get("Messages", [])
        for m in messages:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        if out and not messages:
            break
    return out


def message_attributes(note: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("Value") for k, v in note.get("MessageAttributes", {}).items()}


def show_coverage_message(demo: Demo, emu: Emulator, topic_arn: str, notes: list[dict[str, Any]]) -> None:
    """Print the coverage messages read from the inbox as the email subscriber gets them."""
    for note in notes:
        email = email_member(emu, topic_arn, note.get("MessageId", "")) or "(no email member)"
        attributes = message_attributes(note)
        demo.say("\n  ---- coverage email to ops@example.com " + "-" * 41)
        demo.say(f"  Subject: {note.get('Subject')}")
        demo.say(f"  (message attributes: {', '.join(f'{k}={v}' for k, v in sorted(attributes.items()))})")
        demo.say("")
        for line in email.splitlines():
            demo.say(f"  {line}")
        demo.say("  " + "-" * 80)


def email_member(emu: Emulator, topic_arn: str, message_id: str) -> str | None:
    """The `email` member of a published MessageStructure=json message — what an email
    subscriber receives. moto keeps every publish; its data API lists them."""
    with urllib.request.urlopen(emu.endpoint + "/moto-api/data.json", timeout=30) as r:
        data = json.loads(r.read())
    for topic in data.get("sns", {}).get("Topic", []):
        if topic.get("arn") != topic_arn:
            continue
        for sent in topic.get("sent_notifications", []):
            if sent and sent[0] == message_id:
                try:
                    return json.loads(sent[1]).get("email")
                except (json.JSONDecodeError, AttributeError):
                    return sent[1]
    return None


def next_runs(schedule: str, timezone: str, offset: int | None) -> list[str]:
    argv = [str(ROOT / "target" / "debug" / "patchpilot"), "next-runs", schedule, "--timezone", timezone, "-n", "3"]
    if offset:
        argv += ["--offset", str(offset)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return [f"({result.stderr.strip()})"]
    # "Sat 2026-12-05 06:00 CET  2026-12-05 05:00 UTC" -> the local part
    return [line.split("  ")[0] for line in result.stdout.splitlines() if line.strip()]


def run(demo: Demo) -> None:
    with Stack() as stack:
        # ------------------------------------------------------------------------------ 1
        demo.step("Build the three functions and the patchpilot CLI (debug), start the local AWS")
        t = time.monotonic()
        build_functions()
        demo.say(f"  built in {time.monotonic() - t:.0f}s")
        emu = Emulator(stack)
        ssm, ec2, sns, sqs = (emu.client(s) for s in ("ssm", "ec2", "sns", "sqs"))
        deployed = emu.deploy_stack(STACK_NAME)
        outputs = deployed["Outputs"]
        topic_arn = outputs["ReportTopicArn"]
        queue_url = sqs.create_queue(QueueName="patchpilot-reports-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint="ops@example.com")
        watch = Functions(stack, emu, deployed)
        demo.say(f"  AWS emulator        {emu.endpoint}  (moto server + tests/emulator, IAM enforced)")
        demo.say(f"  stack {STACK_NAME!r} deployed from template.yaml (SAM transform): policy parameter "
                 f"{outputs['PolicyParameterName']} = embedded-default, topic {topic_arn.rsplit(':', 1)[-1]}")
        demo.say(f"  (subscribed: an SQS inbox and ops@example.com), bucket {outputs['OutputBucketName']}, "
                 f"window role {outputs['MaintenanceWindowRoleArn'].rsplit('/', 1)[-1]}")
        for function in ("auto-tagger", "baseline-sync", "run-notifier"):
            f = deployed["Functions"][function]
            demo.say(f"  {function:<14} runs as {f['RoleArn'].rsplit('/', 1)[-1]}  "
                     f"(cargo lambda watch 127.0.0.1:{watch.watches[function].port})")

        # ------------------------------------------------------------------------------ 2
        demo.step("Launch the article's 12 instances and three problem hosts (no Patch Group tag yet)")
        amis = {
            a["patchpilot"]["key"]: a
            for a in json.loads((ROOT / "tests/emulator/patchpilot_emulator/amis.json").read_text())
        }
        instances: dict[str, dict[str, str]] = {}
        problems: dict[str, dict[str, str]] = {}
        hosts = [(f"{stem}-{env}", os_key, env, instances) for env in ENVIRONMENTS for stem, os_key in FLEET]
        hosts += [(name, os_key, env, problems) for name, os_key, env in PROBLEMS]
        for name, os_key, env_name, into in hosts:
            ami = amis[os_key]
            reservation = ec2.run_instances(
                ImageId=ami["ami_id"],
                MinCount=1,
                MaxCount=1,
                InstanceType="t3.medium",
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": "Name", "Value": name}, {"Key": "Environment", "Value": env_name}],
                    }
                ],
            )
            into[name] = {
                "id": reservation["Instances"][0]["InstanceId"],
                "os": ami["platform_details"],
                "ami": ami["name"],
                "environment": env_name,
            }
        demo.table(
            ["INSTANCE", "ID", "PLATFORM", "AMI", "Environment TAG"],
            [[n, i["id"], i["os"], i["ami"], i["environment"]] for n, i in {**instances, **problems}.items()],
        )
        demo.say(f"  problems: {NO_AGENT} has no SSM Agent, {NO_BASELINE} runs an OS the policy has no")
        demo.say(f"  baseline for, {STOPPED} will be stopped when the prod window runs")

        # ------------------------------------------------------------------------------ 3
        demo.step("auto-tagger: one `EC2 Instance State-change Notification` (pending) per instance")
        template = load_event("auto-tagger/ec2-state-pending.json")
        doc_id = template["detail"]["instance-id"]
        rows = []
        tagged_ok = 0
        problems_tagged = 0
        for name, info in {**instances, **problems}.items():
            event = json.loads(json.dumps(template).replace(doc_id, info["id"]))
            answer = invoke(watch, "auto-tagger", event, f"tag-{name}")
            result = next((r for r in answer.get("results", []) if r.get("instance_id") == info["id"]), {})
            tags = {
                t["Key"]: t["Value"]
                for r in ec2.describe_instances(InstanceIds=[info["id"]])["Reservations"]
                for i in r["Instances"]
                for t in i.get("Tags", [])
            }
            group = tags.get("Patch Group", "-")
            info["group"] = group
            ok = group == article_group(name) and tags.get("patchpilot:managed") == STACK_NAME
            if name in problems:
                problems_tagged += ok
            else:
                tagged_ok += ok
            rows.append([name, info["os"], info["environment"], group, str(result.get("action", answer.get("ignored", "?")))])
        demo.table(["INSTANCE", "OS", "ENVIRONMENT", "PATCH GROUP", "ACTION"], rows)
        demo.check(
            tagged_ok == 12,
            "all 12 instances tagged as in the article (Linux batch_1, Windows batch_2, per environment)",
            f"{tagged_ok}/12 match",
        )
        demo.check(
            problems_tagged == 3,
            "the three problem hosts are tagged too (Linux batch_1 of their environment): a tag does not make a host patchable",
            f"{problems_tagged}/3 match",
        )

        # ------------------------------------------------------------------------------ 4
        demo.step('baseline-sync: dry run ({"dry_run": true}), then apply ({})')
        emu.reset_request_log()
        dry = invoke(watch, "baseline-sync", load_event("baseline-sync/manual-dry-run.json"), "sync-dry-run")
        dry_writes = writes(emu.request_log())
        plan_lines = dry.get("plan", [])
        demo.say(f"  plan ({len(plan_lines)} changes, {len(dry_writes)} write calls made):")
        for line in plan_lines:
            demo.say(f"    {line}")
        demo.check(not dry_writes and len(plan_lines) > 0, "the dry run plans changes and writes nothing", str(dry_writes))
        emu.reset_request_log()
        applied = invoke(watch, "baseline-sync", load_event("baseline-sync/manual-apply.json"), "sync-apply")
        counts = applied.get("counts", {})
        n_writes = sum(writes(emu.request_log()).values())
        demo.say(
            f"  applied: created {counts.get('created')}, updated {counts.get('updated')}, deleted {counts.get('deleted')}, "
            f"failed {counts.get('failed')} — {n_writes} write calls in {applied.get('duration_ms')} ms"
        )
        demo.check(counts.get("failed") == 0 and counts.get("created") == len(plan_lines), "every planned change applied")
        coverage = applied.get("coverage", {})
        demo.say(
            f"  coverage: {coverage.get('hosts')} hosts, "
            + ", ".join(f"{n} {k}" for k, n in coverage.get("counts", {}).items() if n)
        )
        notes = sqs_messages(emu, queue_url)
        show_coverage_message(demo, emu, topic_arn, notes)
        first_body = email_member(emu, topic_arn, notes[0].get("MessageId", "")) or "" if notes else ""
        demo.check(
            len(notes) == 1
            and message_attributes(notes[0]).get("type") == "coverage"
            and notes[0].get("Subject") == "[patchpilot] coverage: 2 hosts not covered"
            and (applied.get("coverage_notice") or {}).get("outcome") == "published",
            "baseline-sync published one coverage message: 2 hosts not covered",
            f"{[n.get('Subject') for n in notes]}, {applied.get('coverage_notice')}",
        )
        demo.check(
            f"* [not-managed] {problems[NO_AGENT]['id']} ({NO_AGENT}) is not managed by SSM" in first_body
            and "it never registered (no SSM Agent" in first_body
            and f"* [default-baseline] {problems[NO_BASELINE]['id']} ({NO_BASELINE}) runs" in first_body
            and "AMAZON_LINUX_2023, for which the policy has no baseline" in first_body,
            "it names the host without an agent and the one without a baseline, with what to do",
            first_body,
        )

        # ------------------------------------------------------------------------------ 5
        demo.step("What exists in Systems Manager now (as the console shows it)")
        baselines = [
            b
            for page in ssm.get_paginator("describe_patch_baselines").paginate(
                Filters=[{"Key": "OWNER", "Values": ["Self"]}]
            )
            for b in page["BaselineIdentities"]
        ]
        rows = []
        approvals: dict[str, list[Any]] = {}
        for b in sorted(baselines, key=lambda b: b["BaselineName"]):
            full = ssm.get_patch_baseline(BaselineId=b["BaselineId"])
            rules = full.get("ApprovalRules", {}).get("PatchRules", [])
            delays = sorted({r.get("ApproveAfterDays") for r in rules}, key=str)
            approvals[b["BaselineName"]] = delays
            delay_text = ", ".join("none" if d is None else f"{d} days" for d in delays)
            rows.append(
                [b["BaselineName"], full.get("OperatingSystem", ""), delay_text, str(len(rules)), ", ".join(sorted(full.get("PatchGroups", [])))]
            )
        demo.say("  Patch baselines")
        demo.table(["BASELINE", "OS", "APPROVE AFTER", "RULES", "PATCH GROUPS"], rows, "    ")
        ours = [b for b in baselines if b["BaselineName"].startswith("patchpilot-")]
        demo.check(len(ours) == 12, "12 baselines (6 OSes x test/prod)", f"found {len(ours)}")
        prod_delays_ok = all(
            approvals[n] == ([None] if n.endswith("UBUNTU") else [14]) for n in approvals if n.startswith("patchpilot-prod-")
        )
        demo.check(prod_delays_ok, "prod baselines approve 14 days after release (Ubuntu cannot delay)", str(approvals))

        groups = ssm.describe_patch_groups()["Mappings"]
        by_group: dict[str, list[str]] = {}
        for m in groups:
            by_group.setdefault(m["PatchGroup"], []).append(m["BaselineIdentity"]["OperatingSystem"])
        demo.say("\n  Patch groups (registrations)")
        demo.table(
            ["PATCH GROUP", "BASELINES"],
            [[g, f"{len(oses)}: {', '.join(sorted(oses))}"] for g, oses in sorted(by_group.items())],
            "    ",
        )

        windows = ssm.describe_maintenance_windows()["WindowIdentities"]
        rows = []
        window_ids: dict[str, str] = {}
        for w in sorted(windows, key=lambda w: w["Name"], reverse=True):
            full = ssm.get_maintenance_window(WindowId=w["WindowId"])
            window_ids[w["Name"]] = w["WindowId"]
            tz = full.get("ScheduleTimezone", "UTC")
            rows.append(
                [
                    w["Name"],
                    full["Schedule"],
                    tz,
                    f"{full['Duration']}h / {full['Cutoff']}h",
                    ", ".join(next_runs(full["Schedule"], tz, full.get("ScheduleOffset"))),
                ]
            )
        demo.say("\n  Maintenance windows")
        demo.table(["WINDOW", "SCHEDULE", "TIMEZONE", "DURATION/CUTOFF", "NEXT THREE RUNS (window timezone)"], rows, "    ")
        demo.check(
            sorted(window_ids) == ["patchpilot-prod", "patchpilot-test"], "2 windows", str(sorted(window_ids))
        )

        target_rows, task_rows = [], []
        for name in ("patchpilot-test", "patchpilot-prod"):
            wid = window_ids.get(name)
            if wid is None:
                continue
            targets = ssm.describe_maintenance_window_targets(WindowId=wid)["Targets"]
            names = {t["WindowTargetId"]: t.get("Name", "") for t in targets}
            for t in targets:
                spec = "; ".join(f"{x['Key']} = {','.join(x['Values'])}" for x in t["Targets"])
                target_rows.append([name, t.get("Name", ""), spec, t.get("OwnerInformation", "")])
            tasks = ssm.describe_maintenance_window_tasks(WindowId=wid)["Tasks"]
            for task in sorted(tasks, key=lambda t: t["Priority"]):
                full = ssm.get_maintenance_window_task(WindowId=wid, WindowTaskId=task["WindowTaskId"])
                params = full.get("TaskInvocationParameters", {}).get("RunCommand", {}).get("Parameters", {})
                on = ", ".join(names.get(v, v) for x in task["Targets"] for v in x["Values"])
                task_rows.append(
                    [
                        name,
                        str(task["Priority"]),
                        task.get("Name", ""),
                        task["TaskArn"],
                        on,
                        " ".join(f"{k}={','.join(v)}" for k, v in sorted(params.items())),
                        f"{task.get('MaxConcurrency')} / {task.get('MaxErrors')}",
                    ]
                )
        demo.say("\n  Window targets")
        demo.table(["WINDOW", "TARGET", "SELECTS", "OWNER INFO"], target_rows, "    ")
        demo.say("\n  Window tasks (run in priority order: Linux before Windows)")
        demo.table(["WINDOW", "PRIORITY", "TASK", "DOCUMENT", "TARGET", "PARAMETERS", "CONCURRENCY/ERRORS"], task_rows, "    ")

        # ------------------------------------------------------------------------------ 6
        demo.step(f"Patch Saturday: run patchpilot-test with {FAILING_HOST} failing, report it")
        failing_id = instances[FAILING_HOST]["id"]
        test_window = window_ids.get("patchpilot-test")
        if test_window is None:
            raise HarnessError("no patchpilot-test window to run")
        execution = emu.hook("execute-window", {"WindowId": test_window, "FailInstances": [failing_id]})
        for task in execution["Tasks"]:
            demo.say(
                f"  task priority {task['Priority']}: {task['Status']:<8} on {len(task['InstanceIds'])} instance(s), "
                f"command {task['CommandIds'][0] if task['CommandIds'] else '-'}"
            )
        demo.say(f"  window execution {execution['WindowExecutionId']}: {execution['Status']}")
        event = window_event(execution)
        demo.say("  -> `Maintenance Window Execution State-change Notification` to run-notifier")
        answer = invoke(watch, "run-notifier", event, "notify")
        reports = sqs_messages(emu, queue_url)
        demo.say(f"  run-notifier: {answer.get('outcome')}, message {answer.get('message_id')}, {answer.get('message_bytes')} bytes")
        if reports:
            note = reports[-1]
            email = email_member(emu, topic_arn, note.get("MessageId", "")) or "(no email member)"
            attributes = {k: v.get("Value") for k, v in note.get("MessageAttributes", {}).items()}
            demo.say("\n  ---- email to ops@example.com " + "-" * 50)
            demo.say(f"  Subject: {note.get('Subject')}")
            demo.say(f"  (message attributes: {', '.join(f'{k}={v}' for k, v in sorted(attributes.items()))})")
            demo.say("")
            for line in email.splitlines():
                demo.say(f"  {line}")
            demo.say("  " + "-" * 80)
        failed_count = None
        if len(reports) == 1:
            try:
                failed_count = json.loads(reports[0]["Message"]).get("counts", {}).get("failed")
            except (json.JSONDecodeError, AttributeError):
                failed_count = None
        demo.check(
            len(reports) == 1 and failed_count == 1,
            f"one email, reporting one failure ({FAILING_HOST})",
            f"{len(reports)} message(s), failed count {failed_count}",
        )

        # ------------------------------------------------------------------------------ 7
        prod_window = window_ids.get("patchpilot-prod")
        if prod_window is None:
            raise HarnessError("no patchpilot-prod window to run")
        prod_linux = sorted(
            info["id"] for n, info in instances.items() if n.endswith("-prod") and not n.startswith("i-windows")
        )
        failing = prod_linux[:2]
        failing_names = [n for n, info in instances.items() if info["id"] in failing]
        demo.step(
            f"Prod run: {' and '.join(sorted(failing_names))} fail at once; the error threshold stops the batch"
        )
        stopped_id = problems[STOPPED]["id"]
        demo.say(f"  {STOPPED} is stopped before the run (it is one of the Linux batch's 6 targets).")
        demo.say("  Linux batch: MaxConcurrency 50% of 6 = 3 at a time, MaxErrors 25% of 6 = 1 (rounded down):")
        demo.say("  after the second error Run Command sends the command to no further host.")
        execution = emu.hook(
            "execute-window",
            {"WindowId": prod_window, "FailInstances": failing, "Outcomes": {stopped_id: "stopped"}},
        )
        for task in execution["Tasks"]:
            by_status: dict[str, int] = {}
            for r in task.get("InstanceResults", []):
                by_status[r["StatusDetails"]] = by_status.get(r["StatusDetails"], 0) + 1
            demo.say(
                f"  task priority {task['Priority']}: {task['Status']:<8} "
                + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
            )
        invoke(watch, "run-notifier", window_event(execution), "notify-prod")
        reports = sqs_messages(emu, queue_url)
        body = ""
        if reports:
            note = reports[-1]
            body = email_member(emu, topic_arn, note.get("MessageId", "")) or ""
            demo.say("\n  ---- email to ops@example.com " + "-" * 50)
            demo.say(f"  Subject: {note.get('Subject')}")
            demo.say("")
            for line in body.splitlines():
                demo.say(f"  {line}")
            demo.say("  " + "-" * 80)
        terminated = sum(
            1 for r in execution["Tasks"][0].get("InstanceResults", []) if r["StatusDetails"] == "Terminated"
        )
        not_attempted = body.count("not attempted (error threshold reached)")
        demo.check(
            len(reports) == 1 and terminated > 0 and not_attempted == terminated,
            f"the prod email lists the {terminated} Linux host(s) Run Command never sent the command to",
            f"{len(reports)} message(s), {not_attempted} 'not attempted', {terminated} Terminated",
        )
        demo.check(
            "error threshold MaxErrors 25% reached" in body and "patch_prod_0600_batch_2: SUCCESS" in body,
            "it says the Linux batch stopped at its error threshold and the Windows batch still ran",
        )
        # Stopped: its invocation times out (counted as an error), or, when Run Command reaches
        # it after the threshold, it is never attempted; both are missed targets.
        missed_section = body.split("MISSED TARGETS", 1)[-1]
        demo.check(
            f"{problems[STOPPED]['id']} ({STOPPED})" in missed_section,
            f"it lists {STOPPED}, stopped before the run, among the missed targets",
            body,
        )

        # ------------------------------------------------------------------------------ 8
        demo.step("baseline-sync again (the daily `Scheduled Event`): nothing drifted, one host more uncovered")
        emu.reset_request_log()
        again = invoke(watch, "baseline-sync", load_event("baseline-sync/scheduled.json"), "sync-again")
        again_writes = writes(emu.request_log())
        plan_again = again.get("plan", [])
        c = again.get("counts", {})
        demo.say(
            f"  {'no changes' if not plan_again else f'{len(plan_again)} change(s)'} "
            f"({c.get('unchanged')} resources up to date), write calls: "
            + (", ".join(f"{k} {n}" for k, n in sorted(again_writes.items())) or "none")
        )
        notes = sqs_messages(emu, queue_url)
        show_coverage_message(demo, emu, topic_arn, notes)
        body = email_member(emu, topic_arn, notes[0].get("MessageId", "")) or "" if notes else ""
        demo.check(
            not plan_again and set(again_writes) <= {"sns:Publish", "dynamodb:PutItem"},
            "second sync: no changes; its only writes are the coverage message and its record",
            str(again_writes or plan_again),
        )
        demo.check(
            len(notes) == 1
            and notes[0].get("Subject") == "[patchpilot] coverage: 3 hosts not covered"
            and f"* [missed-window] {stopped_id} ({STOPPED}) was stopped" in body
            and "was stopped through its last window (" in body,
            "the host stopped through the prod window is news: one coverage message, marked new",
            f"{[n.get('Subject') for n in notes]}\n{body}",
        )
        emu.reset_request_log()
        third = invoke(watch, "baseline-sync", load_event("baseline-sync/scheduled.json"), "sync-third")
        third_writes = writes(emu.request_log())
        notes = sqs_messages(emu, queue_url)
        demo.say(
            f"  third sync: {len(third.get('plan', []))} changes, {sum(third_writes.values())} write calls, "
            f"{len(notes)} message(s) (coverage unchanged: no daily repeat)"
        )
        demo.check(
            not third.get("plan") and not third_writes and not notes,
            "third sync: no changes, zero write calls, no coverage message (same uncovered hosts)",
            f"{third_writes} {[n.get('Subject') for n in notes]}",
        )

        # ------------------------------------------------------------------------------ 9
        demo.step("Stop everything")
        demo.say(f"  {emu.iam_cost()}")
        stack.stop_all()
        demo.say("  emulator and cargo lambda watch stopped.")
    print(
        f"""
Look further:
  cargo run -q -p patchpilot-cli -- render            the resources derived from the policy
  cargo run -q -p patchpilot-cli -- schedule -n 6     next runs and the test→prod approval check
  cargo run -q -p patchpilot-cli -- validate my.yaml  check your own policy (start from examples/policy.yaml)
  make lambda-check                                   every payload in events/ through the real binaries
  tests/emulator/README.md                            what the local AWS emulates, and how to start it by hand
  README.md "Deploy"                                  sam build && sam deploy --guided
(demo finished in {time.monotonic() - demo.started:.0f}s)""",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="assert the end state (used by `make test`)")
    args = parser.parse_args()
    demo = Demo(args.check)
    print("patchpilot demo: the article's patching setup on a local AWS emulator", flush=True)
    try:
        run(demo)
    except HarnessError as err:
        demo.failed += 1
        print(f"\nerror: {err}", file=sys.stderr, flush=True)
    if args.check or demo.failed:
        print(f"demo-check: {demo.passed} passed, {demo.failed} failed", flush=True)
    return 1 if demo.failed else 0


if __name__ == "__main__":
    sys.exit(main())
