"""patchpilot demo: the article's whole patching setup, run locally, end to end, with prod
installing exactly what test installed (promotion).

    make demo                      # or: .venv/bin/python scripts/demo.py
    .venv/bin/python scripts/demo.py --check   # what `make test` runs: also asserts the end state

1. builds the three functions and the CLI (debug), starts the local AWS emulator (moto +
   tests/emulator) and the Lambda runtime API emulator (`cargo lambda watch`);
2. launches the article's 12 instances (six OSes x test/prod, `Environment` tags), and three
   hosts Patch Manager will not patch as the policy intends (no SSM Agent, an OS without a
   baseline in the policy, one stopped through the prod window);
3. delivers an `EC2 Instance State-change Notification` per instance to the auto-tagger binary
   and shows the resulting Patch Group tags;
4. invokes baseline-sync as a dry run (the plan), then for real: prod promotes from test and
   no test run is recorded yet, so prod is held (one `Scan` task per batch); the coverage
   message about the hosts that are not covered;
5. shows what exists now: baselines, patch-group registrations, windows with their next runs,
   targets, tasks;
6. runs test's Patch Saturday (2026-11-07 05:00 UTC) with every host succeeding, delivers the
   `Maintenance Window Execution State-change Notification` to run-notifier and prints its
   email; run-notifier recorded the promotion manifest (read back from the output bucket:
   per-OS summary, Ubuntu's InstallOverrideList) and the gate's verdict (pass);
7. delivers the S3 `Object Created` event of that state to baseline-sync: prod gets one
   target and task per (batch, OS), each installing its OS's override list; then patches are
   released between the two runs (the emulator's patch catalogue);
8. runs prod (2026-11-21 05:00 UTC) with i-legacy-linux-prod stopped: each prod host installs
   exactly what its test twin installed (the emulator's ground truth), none of the patches
   released in between; the prod email compares each host with the manifest;
9. the daily sync: no changes; the host stopped through the prod run is news (coverage message);
10. runs test again (2026-12-05) with one host failing: the gate holds prod (its tasks scan
    again, `patchpilot schedule --bucket` says so) until an operator forces the promotion
    (`{"promote": "force"}` to baseline-sync);
11. syncs twice more (the forced state's S3 event, the daily schedule): no changes, no write
    call, no message;
12. stops everything it started.

Everything runs as in AWS: template.yaml is deployed into the emulator (the SAM transform, then
the parameter, topic, table, bucket, key and roles), each function runs in its own
`cargo lambda watch` with its own access key, and every request it makes is authorized against
its role; window tasks send as the maintenance-window role, instances upload their logs and
download their override lists under the bucket policy.

With --check every step's outcome is asserted and the run ends with
`demo-check: N passed, N failed`; the exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
    writes,
)

STACK_NAME = "patchpilot"
FAILING_HOST = "i-redhat-linux-test"
STEPS = 12
PROMOTION_PREFIX = "patchpilot/promotion/prod"
STATE_KEY = f"{PROMOTION_PREFIX}/state.json"

# The reference policy's runs (06:00 Europe/Zurich = 05:00 UTC): test on the first Saturday of
# November, prod on the third, test again on December's first Saturday. The emulator evaluates
# release dates and approval rules at the execution's start (`at`).
TEST_RUN = "2026-11-07T05:00:00Z"
PROD_RUN = "2026-11-21T05:00:00Z"
NEXT_TEST_RUN = "2026-12-05T05:00:00Z"

# Released on 2026-11-14, between test's and prod's run (tests/emulator/README.md, "Patching").
# Ubuntu's baseline approves libc6 (priority Required) on release: apt cannot delay approval,
# so only the promotion keeps it out of prod. The Windows KB shows the same for a KB.
RELEASED_IN_BETWEEN: list[dict[str, Any]] = [
    {"OperatingSystem": "UBUNTU", "Name": "libc6", "Arch": "amd64", "Version": "2.35-0ubuntu3.11",
     "Released": "2026-11-14", "Classification": "libs", "Severity": "Required",
     "Advisory": "USN-7751-1", "Repository": "jammy-security"},
    {"OperatingSystem": "WINDOWS", "KBId": "KB5051150", "Product": "WindowsServer2022",
     "Title": "2026-11 Security Update for Microsoft server operating system version 21H2 for "
              "x64-based Systems (KB5051150)",
     "Released": "2026-11-14", "Classification": "SecurityUpdates", "Severity": "Critical"},
]  # fmt: skip
# What must not reach prod: the two above, and the catalogue's own releases of 2026-11-10
# (after test's run), which prod's baseline rules alone would let in on Ubuntu.
NOT_ON_PROD = {
    "libc6.amd64:2.35-0ubuntu3.11": "UBUNTU",
    "KB5051150": "WINDOWS",
    "libssl3.amd64:3.0.2-0ubuntu1.19": "UBUNTU",
    "openssl.x86_64:1:1.0.2k-24.amzn2.0.12": "AMAZON_LINUX_2",
    "KB5051010": "WINDOWS",
}

# Three hosts with a coverage problem each: (name, AMI catalogue key, environment).
# debian-12 has no SSM Agent in the emulator's catalogue; the reference policy has no Amazon
# Linux 2023 baseline; the third one is stopped through the prod window run (step 8).
NO_AGENT = "i-debian-linux-test"
NO_BASELINE = "i-al2023-linux-test"
STOPPED = "i-legacy-linux-prod"
PROBLEMS = [
    (NO_AGENT, "debian-12", "test"),
    (NO_BASELINE, "amazon-linux-2023", "test"),
    (STOPPED, "amazon-linux-2", "prod"),
]

# The article's fleet: name stem -> AMI catalogue key (tests/emulator/patchpilot_emulator/amis.json)
# and the OS Patch Manager reports for it.
FLEET = [
    ("i-amazon-linux", "amazon-linux-2", "AMAZON_LINUX_2"),
    ("i-centos-linux", "centos-7", "CENTOS"),
    ("i-redhat-linux", "rhel-9", "REDHAT_ENTERPRISE_LINUX"),
    ("i-suse-linux", "sles-15", "SUSE"),
    ("i-ubuntu-linux", "ubuntu-22.04", "UBUNTU"),
    ("i-windows", "windows-2022", "WINDOWS"),
]
SIX_OSES = [os_name for _, _, os_name in FLEET]
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


def s3_object_created(emu: Emulator, bucket: str, key: str) -> dict[str, Any]:
    """The `Object Created` event S3 sends to EventBridge when run-notifier (or a forced
    promotion) writes `key` (S3 User Guide, "EventBridge event message structure"); the
    template's `PromotionRecorded` rule routes it to baseline-sync."""
    body = s3_text(emu, bucket, key)
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": len(body.encode()),
                "etag": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - S3's ETag, not security
                "sequencer": "617f08299329d189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }


def s3_text(emu: Emulator, bucket: str, key: str) -> str:
    """An object of the output bucket, read as the administrator (the s3-object hook)."""
    return str(emu.hook("s3-object", {"Bucket": bucket, "Key": key})["Body"])


def s3_json(emu: Emulator, bucket: str, key: str) -> dict[str, Any]:
    try:
        doc = json.loads(s3_text(emu, bucket, key))
    except json.JSONDecodeError as err:
        raise HarnessError(f"s3://{bucket}/{key} is not JSON: {err}") from None
    return doc if isinstance(doc, dict) else {}


def sqs_messages(emu: Emulator, queue_url: str, empty_polls: int = 10) -> list[dict[str, Any]]:
    """The messages in the inbox; waits up to `empty_polls` one-second polls for the first."""
    sqs = emu.client("sqs")
    out = []
    for _ in range(empty_polls):
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


def report_json(note: dict[str, Any]) -> dict[str, Any]:
    """The JSON report a machine subscriber gets (the `default` member)."""
    try:
        report = json.loads(note.get("Message", ""))
    except json.JSONDecodeError:
        return {}
    return report if isinstance(report, dict) else {}


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


def show_email(demo: Demo, note: dict[str, Any], body: str, sections: list[str] | None = None) -> None:
    """Print a report email: all of it, or its summary and the named sections."""
    demo.say("\n  ---- email to ops@example.com " + "-" * 50)
    demo.say(f"  Subject: {note.get('Subject')}")
    attributes = message_attributes(note)
    demo.say(f"  (message attributes: {', '.join(f'{k}={v}' for k, v in sorted(attributes.items()))})")
    demo.say("")
    if sections is None:
        lines = body.splitlines()
    else:
        paragraphs = body.split("\n\n")
        kept = [paragraphs[0]] + [p for p in paragraphs[1:] if p.split("\n", 1)[0].startswith(tuple(sections))]
        lines = "\n\n".join(kept).splitlines()
        if len(kept) < len(paragraphs):
            lines.append("")
            lines.append(f"[{len(paragraphs) - len(kept)} more section(s) of the email not shown]")
    for line in lines:
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


def next_runs(schedule: str, timezone_name: str, offset: int | None) -> list[str]:
    argv = [str(ROOT / "target" / "debug" / "patchpilot"), "next-runs", schedule, "--timezone", timezone_name, "-n", "3"]
    if offset:
        argv += ["--offset", str(offset)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return [f"({result.stderr.strip()})"]
    # "Sat 2026-12-05 06:00 CET  2026-12-05 05:00 UTC" -> the local part
    return [line.split("  ")[0] for line in result.stdout.splitlines() if line.strip()]


def cli(emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    """The `patchpilot` CLI against the emulator, as an operator with the account's credentials."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "OUTPUT_BUCKET")}
    env.update(emu.env())
    argv = [str(ROOT / "target" / "debug" / "patchpilot"), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=120)


def window_tasks(ssm: Any, window_id: str) -> list[dict[str, Any]]:
    """Every task of a window with its target, as the console shows them, in priority order."""
    targets = {t["WindowTargetId"]: t for t in ssm.describe_maintenance_window_targets(WindowId=window_id)["Targets"]}
    out = []
    for task in ssm.describe_maintenance_window_tasks(WindowId=window_id)["Tasks"]:
        full = ssm.get_maintenance_window_task(WindowId=window_id, WindowTaskId=task["WindowTaskId"])
        params = full.get("TaskInvocationParameters", {}).get("RunCommand", {}).get("Parameters", {})
        target_ids = [v for x in task["Targets"] for v in x["Values"]]
        target = targets.get(target_ids[0], {}) if target_ids else {}
        out.append(
            {
                "id": task["WindowTaskId"],
                "name": task.get("Name", ""),
                "priority": task["Priority"],
                "document": task["TaskArn"],
                "target": target.get("Name", ", ".join(target_ids)),
                "selects": "; ".join(f"{x['Key']} = {','.join(x['Values'])}" for x in target.get("Targets", [])),
                "operation": (params.get("Operation") or [""])[0],
                "override_list": (params.get("InstallOverrideList") or [None])[0],
                "parameters": params,
                "rate": f"{task.get('MaxConcurrency')} / {task.get('MaxErrors')}",
            }
        )
    return sorted(out, key=lambda t: (t["priority"], t["name"]))


def short_url(url: str | None, bucket: str) -> str:
    """`s3://<bucket>/patchpilot/promotion/prod/1a2b3c4d5e6f…/UBUNTU.yaml`: the bucket and the
    manifest's hash shortened for reading."""
    if not url:
        return "-"
    head, sep, tail = url.replace(f"s3://{bucket}/", "s3://<bucket>/").rpartition("/")
    folder, _, digest = head.rpartition("/")
    return f"{folder}/{digest[:12]}…/{tail}" if sep and len(digest) == 64 else url


def show_prod_tasks(demo: Demo, tasks: list[dict[str, Any]], bucket: str) -> None:
    demo.table(
        ["PRIORITY", "TASK", "TARGET", "OPERATION", "INSTALLOVERRIDELIST"],
        [
            [
                str(t["priority"]),
                t["name"],
                t["target"],
                t["operation"],
                short_url(t["override_list"], bucket),
            ]
            for t in tasks
        ],
        "    ",
    )


def task_os(task: dict[str, Any]) -> str | None:
    """The OS of a per-OS task (`…-<OS>`), None for a task per batch."""
    return next((o for o in SIX_OSES if task["name"].endswith("-" + o)), None)


def installed_since(emu: Emulator, instance_id: str, since: str) -> set[tuple[str, str]]:
    """What the emulator holds installed on a node since `since` (its ground truth, not what
    the SSM APIs patchpilot reads report): (KBId, Title) of each non-base package."""
    answer = emu.hook("installed-packages", {"InstanceId": instance_id})
    cut = parse_time(since)
    return {
        (p["KBId"], p["Title"])
        for p in answer.get("Packages", [])
        if not p.get("Base") and parse_time(p["InstalledTime"]) >= cut
    }


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def short_titles(items: set[tuple[str, str]]) -> str:
    """`KB5050560, libssl3.amd64:3.0.2-0ubuntu1.18`: Linux titles carry the version, KBs are one."""
    return ", ".join(sorted(kb if kb.startswith("KB") else title for kb, title in items)) or "(nothing)"


def run_window(
    demo: Demo,
    emu: Emulator,
    watch: Functions,
    queue_url: str,
    topic_arn: str,
    window_id: str,
    body: dict[str, Any],
    task_names: dict[str, str],
    name: str,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """Run a window in the emulator, print each task's outcome, deliver its state-change event
    to run-notifier. Returns the execution, the email's note, its JSON report and its text."""
    execution = emu.hook("execute-window", {"WindowId": window_id, **body})
    rows = []
    for task in sorted(execution["Tasks"], key=lambda t: (t["Priority"], task_names.get(t["WindowTaskId"], ""))):
        by_status: dict[str, int] = {}
        for r in task.get("InstanceResults", []):
            by_status[r["StatusDetails"]] = by_status.get(r["StatusDetails"], 0) + 1
        rows.append(
            [
                str(task["Priority"]),
                task_names.get(task["WindowTaskId"], task["WindowTaskId"]),
                task["Status"],
                ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())),
            ]
        )
    demo.table(["PRIORITY", "TASK", "STATUS", "INVOCATIONS"], rows, "    ")
    demo.say(f"  window execution {execution['WindowExecutionId']}: {execution['Status']}, started {execution['StartTime'][:16].replace('T', ' ')} UTC")
    demo.say("  -> `Maintenance Window Execution State-change Notification` to run-notifier")
    answer = invoke(watch, "run-notifier", window_event(execution), name)
    reports = sqs_messages(emu, queue_url)
    demo.say(f"  run-notifier: {answer.get('outcome')}, message {answer.get('message_id')}, {answer.get('message_bytes')} bytes")
    if len(reports) != 1:
        demo.check(False, f"one report email for the run ({name})", f"{len(reports)} message(s)")
        return execution, reports[-1] if reports else {}, report_json(reports[-1]) if reports else {}, ""
    note = reports[0]
    return execution, note, report_json(note), email_member(emu, topic_arn, note.get("MessageId", "")) or ""


def sync(emu: Emulator, watch: Functions, payload: Any, name: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Invoke baseline-sync; return its answer and the write calls it made."""
    emu.reset_request_log()
    answer = invoke(watch, "baseline-sync", payload, name)
    return answer, writes(emu.request_log())


def sync_summary(answer: dict[str, Any], write_calls: dict[str, int]) -> str:
    plan = answer.get("plan", [])
    c = answer.get("counts", {})
    return (
        f"{'no changes' if not plan else f'{len(plan)} change(s)'} ({c.get('unchanged')} resources up to date), "
        f"write calls: " + (", ".join(f"{k} {n}" for k, n in sorted(write_calls.items())) or "none")
    )


def window_ids_by_name(ssm: Any) -> dict[str, str]:
    return {w["Name"]: w["WindowId"] for w in ssm.describe_maintenance_windows()["WindowIdentities"]}


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
        bucket = outputs["OutputBucketName"]
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
        hosts = [(f"{stem}-{env}", os_key, env, instances) for env in ENVIRONMENTS for stem, os_key, _ in FLEET]
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
        demo.step('baseline-sync: dry run ({"dry_run": true}), then apply ({}); prod is held until test has run')
        dry, dry_writes = sync(emu, watch, load_event("baseline-sync/manual-dry-run.json"), "sync-dry-run")
        plan_lines = dry.get("plan", [])
        demo.say(f"  plan ({len(plan_lines)} changes, {len(dry_writes)} write calls made):")
        for line in plan_lines:
            demo.say(f"    {line}")
        demo.check(not dry_writes and len(plan_lines) > 0, "the dry run plans changes and writes nothing", str(dry_writes))
        applied, applied_writes = sync(emu, watch, load_event("baseline-sync/manual-apply.json"), "sync-apply")
        counts = applied.get("counts", {})
        demo.say(
            f"  applied: created {counts.get('created')}, updated {counts.get('updated')}, deleted {counts.get('deleted')}, "
            f"failed {counts.get('failed')} — {sum(applied_writes.values())} write calls in {applied.get('duration_ms')} ms"
        )
        creates = sum(1 for line in plan_lines if line.startswith("+"))
        demo.check(
            counts.get("failed") == 0 and counts.get("created") == creates and applied.get("plan") == plan_lines,
            "every planned change applied",
            f"{counts}, {creates} planned creations",
        )
        window_ids = window_ids_by_name(ssm)
        test_window, prod_window = window_ids.get("patchpilot-test"), window_ids.get("patchpilot-prod")
        if test_window is None or prod_window is None:
            raise HarnessError(f"baseline-sync did not create both windows: {sorted(window_ids)}")
        held_tasks = window_tasks(ssm, prod_window)
        demo.say("  prod promotes from test (approval mode promote) and no test run is recorded yet: prod is")
        demo.say("  held. Its window has one task per batch running AWS-RunPatchBaseline with Operation=Scan:")
        demo.say("  its hosts report compliance, nothing is installed.")
        show_prod_tasks(demo, held_tasks, bucket)
        demo.check(
            len(held_tasks) == 2 and all(t["operation"] == "Scan" and not t["override_list"] for t in held_tasks),
            "prod is held before any test run: one Scan task per batch, no override list",
            str([(t["name"], t["operation"]) for t in held_tasks]),
        )
        coverage = applied.get("coverage", {})
        demo.say(
            f"  coverage: {coverage.get('hosts')} hosts, "
            + ", ".join(f"{n} {k}" for k, n in coverage.get("counts", {}).items() if n)
        )
        notes = sqs_messages(emu, queue_url)
        show_coverage_message(demo, emu, topic_arn, notes)
        first_body = (email_member(emu, topic_arn, notes[0].get("MessageId", "")) or "") if notes else ""
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
        demo.check(
            prod_delays_ok,
            "while prod is held its baselines approve 14 days after release, for compliance scans (Ubuntu cannot delay)",
            str(approvals),
        )

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

        rows = []
        for name in ("patchpilot-test", "patchpilot-prod"):
            full = ssm.get_maintenance_window(WindowId=window_ids[name])
            tz = full.get("ScheduleTimezone", "UTC")
            rows.append(
                [
                    name,
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
            for t in ssm.describe_maintenance_window_targets(WindowId=window_ids[name])["Targets"]:
                spec = "; ".join(f"{x['Key']} = {','.join(x['Values'])}" for x in t["Targets"])
                target_rows.append([name, t.get("Name", ""), spec, t.get("OwnerInformation", "")])
            for task in window_tasks(ssm, window_ids[name]):
                task_rows.append(
                    [
                        name,
                        str(task["priority"]),
                        task["name"],
                        task["document"],
                        task["target"],
                        " ".join(f"{k}={','.join(v)}" for k, v in sorted(task["parameters"].items())),
                        task["rate"],
                    ]
                )
        demo.say("\n  Window targets")
        demo.table(["WINDOW", "TARGET", "SELECTS", "OWNER INFO"], target_rows, "    ")
        demo.say("\n  Window tasks (run in priority order: Linux before Windows; prod only scans while held)")
        demo.table(["WINDOW", "PRIORITY", "TASK", "DOCUMENT", "TARGET", "PARAMETERS", "CONCURRENCY/ERRORS"], task_rows, "    ")

        # ------------------------------------------------------------------------------ 6
        demo.step("Patch Saturday, 2026-11-07 06:00 CET: test's run, every host succeeds")
        demo.say(f"  the emulator runs patchpilot-test at {TEST_RUN}: AWS-RunPatchBaseline installs, on each host, what")
        demo.say("  its baseline approves among the patches released by then (the emulator's patch catalogue).")
        execution, note, report, body = run_window(
            demo, emu, watch, queue_url, topic_arn, test_window, {"at": TEST_RUN},
            {t["id"]: t["name"] for t in window_tasks(ssm, test_window)}, "notify-test",
        )  # fmt: skip
        show_email(demo, note, body)
        demo.check(
            execution["Status"] == "SUCCESS" and report.get("counts", {}).get("failed") == 0,
            "one email: test's run succeeded on every host it reached",
            f"{execution['Status']}, counts {report.get('counts')}",
        )
        demo.check(
            f"{problems[NO_AGENT]['id']} ({NO_AGENT})" in body.split("MISSED TARGETS", 1)[-1],
            f"it lists {NO_AGENT} (no SSM Agent) as a missed target",
        )
        promotion_lines = report.get("promotion", [])
        demo.check(
            bool(promotion_lines) and str(promotion_lines[0]).startswith("prod installs manifest "),
            "its promotion section: prod installs the manifest of this run",
            str(promotion_lines),
        )
        state = s3_json(emu, bucket, STATE_KEY)
        decision = state.get("decision", {})
        manifest_hash = str(state.get("manifest", {}).get("hash", ""))
        lists: dict[str, str] = state.get("manifest", {}).get("lists", {})
        manifest = s3_json(emu, bucket, f"{PROMOTION_PREFIX}/{manifest_hash}/manifest.json")
        demo.say(f"\n  s3://<bucket>/{STATE_KEY}: verdict {decision.get('verdict')}: {decision.get('reason')}")
        demo.say(
            f"  s3://<bucket>/{PROMOTION_PREFIX}/{manifest_hash[:12]}…/manifest.json: what test's hosts installed in the run"
            f" of {manifest.get('run_date')}, per OS:"
        )
        rows = []
        for os_name, entries in sorted(manifest.get("patches", {}).items()):
            for i, e in enumerate(entries):
                rows.append(
                    [
                        os_name if i == 0 else "",
                        str(manifest.get("hosts", {}).get(os_name, "")) if i == 0 else "",
                        e["id"],
                        e.get("version") or "(the KB is its version)",
                    ]
                )
        if rows:
            demo.table(["OS", "HOSTS", "PATCH", "VERSION"], rows, "    ")
        else:
            demo.say("    (no entries)")
        for u in manifest.get("unpinned", []):
            demo.say(f"    not pinned: {u.get('os')} {u.get('id')}: {u.get('reason')}")
        if "UBUNTU" not in lists:
            demo.say("\n  no UBUNTU InstallOverrideList was recorded.")
        else:
            demo.say(f"\n  prod's Ubuntu task will get this InstallOverrideList, {short_url(lists['UBUNTU'], bucket)}:")
            for line in s3_text(emu, bucket, lists["UBUNTU"].removeprefix(f"s3://{bucket}/")).splitlines():
                demo.say(f"    {line}")
        demo.check(decision.get("verdict") == "pass", "state.json: the gate's verdict is pass", str(decision))
        demo.check(
            all(manifest.get("patches", {}).get(o) for o in SIX_OSES) and all(o in lists for o in SIX_OSES),
            "the manifest has entries, and an override list, for each of the six OSes",
            f"{sorted(manifest.get('patches', {}))}, lists {sorted(lists)}",
        )
        tested: dict[str, set[tuple[str, str]]] = {}
        for stem, _, os_name in FLEET:
            tested[os_name] = installed_since(emu, instances[f"{stem}-test"]["id"], TEST_RUN)
        mismatched = [
            o for o in SIX_OSES if {(e["id"], e["title"]) for e in manifest.get("patches", {}).get(o, [])} != tested[o]
        ]
        demo.check(
            not mismatched,
            "the manifest lists exactly what each test host installed (the emulator's ground truth)",
            f"differs for {mismatched}",
        )

        # ------------------------------------------------------------------------------ 7
        demo.step("The promotion reaches prod's window; patches are released in between")
        demo.say("  run-notifier's write of state.json is an S3 `Object Created` event; template.yaml's rule")
        demo.say("  PromotionRecorded sends it to baseline-sync, which replays the manifest in prod's window:")
        promoted, promoted_writes = sync(emu, watch, s3_object_created(emu, bucket, STATE_KEY), "sync-promotion")
        demo.say(f"  {sync_summary(promoted, promoted_writes)}")
        for line in promoted.get("plan", []):
            demo.say(f"    {line}")
        show_coverage_message(demo, emu, topic_arn, sqs_messages(emu, queue_url, empty_polls=2))
        prod_tasks = window_tasks(ssm, prod_window)
        demo.say("  prod's tasks: one target and task per (batch, OS), at the batch's priority, each installing its OS's list")
        demo.say("  (the target selects the batch's patch group and patchpilot:os=<OS>):")
        show_prod_tasks(demo, prod_tasks, bucket)
        demo.check(
            promoted.get("counts", {}).get("failed") == 0 and bool(promoted.get("plan")),
            "the S3 event's sync applied the promotion",
            str(promoted.get("counts")),
        )
        check_promoted_tasks(demo, prod_tasks, lists, manifest_hash, set(SIX_OSES), "after test's good run")
        until = prod_approve_until(ssm)
        demo.check(
            all(v == ({"none"} if n.endswith("UBUNTU") else {"2026-11-07"}) for n, v in until.items()) and len(until) == 6,
            "prod's baselines approve patches released until test's run date (2026-11-07), for compliance scans",
            str(until),
        )
        added = emu.hook("patch-catalogue", {"Add": RELEASED_IN_BETWEEN})
        demo.say(f"\n  released on 2026-11-14 (added to the emulator's patch catalogue: {len(added.get('Added', []))} patch(es)):")
        for p in RELEASED_IN_BETWEEN:
            what = p.get("KBId") or f"{p['Name']}.{p['Arch']}:{p['Version']}"
            demo.say(f"    {p['OperatingSystem']:<8} {what}  ({p['Classification']}/{p['Severity']})")
        demo.say("  Ubuntu's baseline approves libc6 (priority Required) on release, as it approves libssl3")
        demo.say("  3.0.2-0ubuntu1.19 of 2026-11-10: apt cannot delay approval, so without the promotion prod's")
        demo.say("  Ubuntu host would install both. Its override list pins what test installed.")

        # ------------------------------------------------------------------------------ 8
        demo.step(f"Prod's run, 2026-11-21 06:00 CET: it installs the manifest; {STOPPED} is stopped through it")
        stopped_id = problems[STOPPED]["id"]
        demo.say(f"  {STOPPED} (Amazon Linux 2) is stopped before the run; its invocation ends Delivery Timed Out,")
        demo.say("  which fails the AMAZON_LINUX_2 task (MaxErrors 25% of its 2 targets = 0) and so the execution.")
        demo.say("  The five Linux tasks share priority 1 and run together, then Windows. Each (batch, OS) task has its")
        demo.say("  own MaxErrors budget: a failing OS no longer stops the batch's other OSes, but no error threshold")
        demo.say("  spans the whole batch any more.")
        execution, note, report, body = run_window(
            demo, emu, watch, queue_url, topic_arn, prod_window, {"at": PROD_RUN, "Outcomes": {stopped_id: "stopped"}},
            {t["id"]: t["name"] for t in prod_tasks}, "notify-prod",
        )  # fmt: skip
        show_email(demo, note, body, sections=["Promotion", "FAILED", "MISSED TARGETS"])
        rows = []
        leaked: list[str] = []
        for stem, _, os_name in FLEET:
            prod_set = installed_since(emu, instances[f"{stem}-prod"]["id"], PROD_RUN)
            same = prod_set == tested[os_name]
            rows.append([os_name, f"{stem}-prod", "yes" if same else "NO", short_titles(prod_set)])
            demo.check(
                same and bool(prod_set),
                f"{os_name}: {stem}-prod installed exactly what {stem}-test installed ({len(prod_set)} patch(es))",
                f"prod {short_titles(prod_set)}; test {short_titles(tested[os_name])}",
            )
            leaked += [
                f"{title} on {stem}-prod"
                for kb, title in prod_set
                if (kb if kb.startswith("KB") else title) in NOT_ON_PROD
            ]
        demo.say("\n  What each prod host installed in its run (the emulator's ground truth), against its test twin:")
        demo.table(["OS", "PROD HOST", "SAME AS TEST", "INSTALLED 2026-11-21"], rows, "    ")
        demo.check(
            not leaked,
            "nothing released after test's run reached prod (" + ", ".join(sorted(NOT_ON_PROD)) + ")",
            ", ".join(leaked),
        )
        comparison = [str(line).strip() for line in report.get("promotion", [])]
        # One line per host, each with as many exact patches as its test twin installed.
        host_lines = [
            f"{instances[f'{stem}-prod']['id']} {os_name}: {len(tested[os_name])} exact"
            for stem, _, os_name in FLEET
        ]
        demo.check(
            f"manifest {manifest_hash[:12]} of test's run of 2026-11-07: 6/6 host(s) installed exactly the manifest" in comparison
            and all(line in comparison for line in host_lines),
            "the prod email: 6/6 hosts installed exactly the manifest, one line per host with its exact patch count",
            "".join(f"\n    {line}" for line in comparison),
        )
        demo.check(
            f"{stopped_id} ({STOPPED})" in body.split("MISSED TARGETS", 1)[-1],
            f"it lists {STOPPED}, stopped through the run, among the missed targets",
            body,
        )

        # ------------------------------------------------------------------------------ 9
        demo.step("The next daily sync (`Scheduled Event`): nothing drifted, one host more uncovered")
        again, again_writes = sync(emu, watch, load_event("baseline-sync/scheduled.json"), "sync-daily")
        demo.say(f"  {sync_summary(again, again_writes)}")
        notes = sqs_messages(emu, queue_url)
        show_coverage_message(demo, emu, topic_arn, notes)
        cover_body = (email_member(emu, topic_arn, notes[0].get("MessageId", "")) or "") if notes else ""
        demo.check(
            not again.get("plan") and set(again_writes) <= {"sns:Publish", "dynamodb:PutItem"},
            "daily sync: no changes; its only writes are the coverage message and its record",
            str(again_writes or again.get("plan")),
        )
        demo.check(
            len(notes) == 1
            and notes[0].get("Subject") == "[patchpilot] coverage: 3 hosts not covered"
            and f"* [missed-window] {stopped_id} ({STOPPED}) was stopped" in cover_body
            and "was stopped through its last window (" in cover_body,
            "the host stopped through the prod window is news: one coverage message, marked new",
            f"{[n.get('Subject') for n in notes]}\n{cover_body}",
        )

        # ------------------------------------------------------------------------------ 10
        demo.step(f"Test's next run, 2026-12-05 06:00 CET: {FAILING_HOST} fails, the gate holds prod")
        failing_id = instances[FAILING_HOST]["id"]
        execution, note, report, body = run_window(
            demo, emu, watch, queue_url, topic_arn, test_window, {"at": NEXT_TEST_RUN, "Outcomes": {failing_id: "failed"}},
            {t["id"]: t["name"] for t in window_tasks(ssm, test_window)}, "notify-test-2",
        )  # fmt: skip
        show_email(demo, note, body, sections=["Promotion", "FAILED"])
        promotion_lines = [str(line) for line in report.get("promotion", [])]
        demo.check(
            report.get("counts", {}).get("failed") == 1
            and bool(promotion_lines)
            and promotion_lines[0].startswith("prod is held (scan only): 1/"),
            f"the email reports {FAILING_HOST} failed and says prod is held (scan only)",
            f"counts {report.get('counts')}, {promotion_lines}",
        )
        held = s3_json(emu, bucket, STATE_KEY)
        held_hash = str(held.get("manifest", {}).get("hash", ""))
        demo.check(
            held.get("decision", {}).get("verdict") == "held" and held_hash != manifest_hash,
            "state.json: verdict held, on the new run's manifest",
            str(held.get("decision")),
        )
        demo.say("\n  the state's write reaches baseline-sync (S3 `Object Created`):")
        answer, answer_writes = sync(emu, watch, s3_object_created(emu, bucket, STATE_KEY), "sync-held")
        demo.say(f"  {sync_summary(answer, answer_writes)}")
        for line in answer.get("plan", []):
            demo.say(f"    {line}")
        show_coverage_message(demo, emu, topic_arn, sqs_messages(emu, queue_url, empty_polls=2))
        held_tasks = window_tasks(ssm, prod_window)
        show_prod_tasks(demo, held_tasks, bucket)
        held_targets = sorted(
            t.get("Name", "") for t in ssm.describe_maintenance_window_targets(WindowId=prod_window)["Targets"]
        )
        demo.say(f"  prod's window targets now: {', '.join(held_targets)}")
        demo.check(
            len(held_tasks) == 2 and all(t["operation"] == "Scan" and not t["override_list"] for t in held_tasks),
            "prod is held: back to one Scan task per batch",
            str([(t["name"], t["operation"]) for t in held_tasks]),
        )
        demo.check(
            held_targets == ["patch_prod_0600_batch_1", "patch_prod_0600_batch_2"],
            "prod's window keeps only the batch targets (no per-OS target left without a task)",
            ", ".join(held_targets),
        )
        demo.say("\n  $ patchpilot schedule --bucket <bucket>   (the CLI, as an operator; its promotion gates part)")
        shown = cli(emu, "schedule", "--bucket", bucket)
        gates = shown.stdout.split("Promotion gates", 1)
        for line in ("Promotion gates" + gates[1]).splitlines() if len(gates) == 2 else shown.stdout.splitlines():
            demo.say(f"    {line}")
        if shown.stderr.strip():
            demo.say(f"    (stderr: {shown.stderr.strip()})")
        demo.check(
            shown.returncode == 0 and len(gates) == 2 and "prod: prod is held (scan only): 1/" in gates[1],
            "`patchpilot schedule --bucket` shows that prod is held, and why",
            f"exit {shown.returncode}\n{shown.stdout}{shown.stderr}",
        )
        demo.say('\n  an operator accepts the failure and forces the promotion: baseline-sync {"promote": "force"}')
        forced_sync, forced_writes = sync(emu, watch, {"promote": "force"}, "sync-force")
        demo.say(f"  {sync_summary(forced_sync, forced_writes)}")
        for line in forced_sync.get("plan", []):
            demo.say(f"    {line}")
        show_coverage_message(demo, emu, topic_arn, sqs_messages(emu, queue_url, empty_polls=2))
        forced = s3_json(emu, bucket, STATE_KEY)
        forced_lists: dict[str, str] = forced.get("manifest", {}).get("lists", {})
        demo.say(f"  state.json: verdict {forced.get('decision', {}).get('verdict')}, forced by {forced.get('forced_by')}")
        forced_tasks = window_tasks(ssm, prod_window)
        show_prod_tasks(demo, forced_tasks, bucket)
        forced_manifest = s3_json(emu, bucket, f"{PROMOTION_PREFIX}/{held_hash}/manifest.json")
        for o in (o for o in SIX_OSES if o not in forced_lists):
            if o in forced_manifest.get("hosts", {}):
                demo.say(f"  {o} scans: test's run installed nothing there.")
            else:
                demo.say(f"  {o} scans: the manifest records only test hosts the run patched, and {o}'s failed.")
        demo.check(
            forced.get("decision", {}).get("verdict") == "forced"
            and bool(forced.get("forced_by"))
            and forced.get("manifest", {}).get("hash") == held_hash,
            "state.json: verdict forced, by whom, on the manifest prod was held on",
            str({k: forced.get(k) for k in ("decision", "forced_by")}),
        )
        succeeded = {o for stem, _, o in FLEET if f"{stem}-test" != FAILING_HOST}
        demo.check(
            set(forced_lists) & set(SIX_OSES) == succeeded,
            "the forced manifest has an override list for each OS whose test host succeeded (all but RHEL)",
            str(sorted(forced_lists)),
        )
        check_promoted_tasks(demo, forced_tasks, forced_lists, held_hash, succeeded, "after the forced promotion")

        # ------------------------------------------------------------------------------ 11
        demo.step("Idempotence: the forced state's S3 event, then the daily sync: nothing to do")
        rows = []
        for name, payload in (
            ("sync-after-force", s3_object_created(emu, bucket, STATE_KEY)),
            ("sync-daily-2", load_event("baseline-sync/scheduled.json")),
        ):
            answer, answer_writes = sync(emu, watch, payload, name)
            notes = sqs_messages(emu, queue_url, empty_polls=2)
            trigger = "S3 Object Created (state.json)" if name == "sync-after-force" else "Scheduled Event (daily)"
            demo.say(f"  {trigger}: {sync_summary(answer, answer_writes)}, {len(notes)} message(s)")
            demo.check(
                not answer.get("plan") and not answer_writes and not notes,
                f"{trigger}: no changes, zero write calls, no coverage message (same uncovered hosts)",
                f"{answer.get('plan')} {answer_writes} {[n.get('Subject') for n in notes]}",
            )

        # ------------------------------------------------------------------------------ 12
        demo.step("Stop everything")
        demo.say(f"  {emu.iam_cost()}")
        stack.stop_all()
        demo.say("  emulator and cargo lambda watch stopped.")
    print(
        f"""
Look further:
  cargo run -q -p patchpilot-cli -- render            the resources derived from the policy
  cargo run -q -p patchpilot-cli -- schedule -n 6     next runs and how prod follows test
  cargo run -q -p patchpilot-cli -- validate my.yaml  check your own policy (start from examples/policy.yaml)
  make lambda-check                                   every payload in events/ through the real binaries
  README.md "Promotion"                               what prod installs, per OS, and the gate
  tests/emulator/README.md                            what the local AWS emulates, and how to start it by hand
  README.md "Deploy"                                  sam build && sam deploy --guided
(demo finished in {time.monotonic() - demo.started:.0f}s)""",
        flush=True,
    )


def check_promoted_tasks(
    demo: Demo,
    tasks: list[dict[str, Any]],
    lists: dict[str, str],
    manifest_hash: str,
    must_install: set[str],
    when: str,
) -> None:
    """Prod's window installs a manifest: one task per (batch, OS), at the batch's priority, on
    the target `<group>_<OS>`; Install with the OS's override list, or Scan for an OS the
    manifest has no list for. The OSes in `must_install` must have a list."""
    problems = [f"{o}: no override list in the manifest" for o in sorted(must_install - set(lists))]
    for t in tasks:
        os_name = task_os(t)
        if os_name is None:
            problems.append(f"{t['name']}: not a per-OS task")
            continue
        batch = 2 if os_name == "WINDOWS" else 1
        group = f"patch_prod_0600_batch_{batch}"
        if t["priority"] != batch or t["target"] != f"{group}_{os_name}":
            problems.append(f"{t['name']}: priority {t['priority']}, target {t['target']}")
        if f"tag:patchpilot:os = {os_name}" not in t["selects"]:
            problems.append(f"{t['name']}: target selects {t['selects']}")
        url = lists.get(os_name)
        if url is None:
            if t["operation"] != "Scan" or t["override_list"]:
                problems.append(f"{t['name']}: {t['operation']} {t['override_list']} without a list in the manifest")
        elif t["operation"] != "Install" or t["override_list"] != url or not url.endswith(f"/{manifest_hash}/{os_name}.yaml"):
            problems.append(f"{t['name']}: {t['operation']} {t['override_list']}, expected Install {url}")
    demo.check(
        sorted(filter(None, map(task_os, tasks))) == sorted(SIX_OSES) and not problems,
        f"{when}: prod has one task per (batch, OS) at the batch's priority, target <group>_<OS>, each Install with "
        "its OS's InstallOverrideList from the manifest (Scan where the manifest has none)",
        "; ".join(problems) or str([t["name"] for t in tasks]),
    )


def prod_approve_until(ssm: Any) -> dict[str, set[str]]:
    """Each prod baseline's ApproveUntilDate values ('none' for a rule without one)."""
    out: dict[str, set[str]] = {}
    for page in ssm.get_paginator("describe_patch_baselines").paginate(Filters=[{"Key": "OWNER", "Values": ["Self"]}]):
        for b in page["BaselineIdentities"]:
            if not b["BaselineName"].startswith("patchpilot-prod-"):
                continue
            full = ssm.get_patch_baseline(BaselineId=b["BaselineId"])
            rules = full.get("ApprovalRules", {}).get("PatchRules", [])
            out[b["BaselineName"]] = {r.get("ApproveUntilDate") or "none" for r in rules}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="assert the end state (used by `make test`)")
    args = parser.parse_args()
    demo = Demo(args.check)
    print("patchpilot demo: the article's patching setup on a local AWS emulator, prod promoted from test", flush=True)
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
