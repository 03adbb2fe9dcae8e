"""Scale under AWS's request-rate limits: a 20,000-instance launch burst through the auto-tagger
at concurrency 50, and a 5,000-instance window report.

Usage: .venv/bin/python benches/scale.py [--instances 20000] [--concurrency 50]
           [--report-instances 5000] [--retry-delays 60,120] [--skip-build] [--only burst|report]

`benches/run.py` calls `measure()` and adds its tables to RESULTS.md (`make bench`, `--scale`);
run alone, this prints them. Method in benches/README.md ("Scale under request-rate limits").

Both cases run the **release** binaries as Lambda runs them: a local Lambda Runtime API
(`run.RuntimeApi`) that `--concurrency` processes of the function poll at once (Lambda's
concurrent execution environments), each with the function's own role key and environment
from `deploy-stack`. Events are delivered with Lambda's asynchronous semantics: an invocation
that returns an error is queued again after 60 s, then 120 s ("with a one-minute wait between
the first two attempts, and two minutes between the second and third attempts", Lambda
Developer Guide, "How Lambda handles errors and retries with asynchronous invocation"); after
three failed attempts the event is a dead letter. The emulator's token buckets
(`POST /patchpilot-emulator/rate-limits`: EC2's documented request and resource buckets, SSM's
assumed ones, tests/emulator/README.md) apply to the functions' keys; fixtures (launching the
fleet, running the window) use the administrator key and are not limited nor timed.

A measurement, not a test: it reports whether each goal of DESIGN.md §6 is met and exits 0
either way (2 when it cannot measure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402
    ROOT,
    BenchError,
    Emulator,
    Harness,
    Invocation,
    RuntimeApi,
    load_event,
    say,
    tool_env,
    window_event,
)

SNS_MAX = 262_144
REPORT_SECONDS_GOAL = 10.0
BATCH = 1000
STACK = "patchpilot"
# (AMI catalogue key, Name, Environment, expected Patch Group), cycled per batch of 1,000.
BURST_MIX = [
    ("amazon-linux-2", "web-test", "test", "patch_test_0600_batch_1"),
    ("amazon-linux-2", "web-prod", "prod", "patch_prod_0600_batch_1"),
    ("windows-2022", "win-test", "test", "patch_test_0600_batch_2"),
    ("rhel-9", "db-prod", "prod", "patch_prod_0600_batch_1"),
]


@dataclass
class Event:
    """One event in Lambda's asynchronous queue."""

    payload: Any
    attempts: list[Invocation] = field(default_factory=list)
    due: float = 0.0
    dead: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].outcome == "response"


class AsyncLambda:
    """`concurrency` processes of one function polling `api`; events retried as Lambda does."""

    def __init__(self, h: Harness, api: RuntimeApi, name: str, binary: Path, env: dict[str, str], concurrency: int) -> None:
        self.h, self.api, self.name = h, api, name
        api.reset(name)
        self.procs = []
        self.cpu_s = 0.0
        self.log = open(h.logdir / f"scale-{name}.log", "wb")
        environment = h.env(name, env)
        environment.pop("AWS_SESSION_TOKEN", None)
        for _ in range(concurrency):
            self.procs.append(
                subprocess.Popen([str(binary)], cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
            )

    def run(self, events: list[Event], delays: list[float], timeout: float) -> float:
        """Queue every event at once (the burst), retry the failed ones after `delays`, until each
        succeeded or failed len(delays) + 1 times. Returns the wall time."""
        started = time.monotonic()
        waiting = list(events)
        for e in waiting:
            e.attempts.append(self.api.queue_event(e.payload))
        while waiting:
            if time.monotonic() - started > timeout:
                raise BenchError(f"{self.name}: {len(waiting)} events unresolved after {timeout:.0f}s")
            if any(p.poll() is not None for p in self.procs):
                raise BenchError(f"{self.name}: a function process exited (log {self.log.name})")
            time.sleep(0.2)
            now = time.monotonic()
            still = []
            for e in waiting:
                inv = e.attempts[-1]
                if inv.done.is_set() and inv.outcome == "response":
                    continue
                if inv.done.is_set() and not e.due:
                    if len(e.attempts) > len(delays):
                        e.dead = True
                        continue
                    e.due = now + delays[len(e.attempts) - 1]
                if e.due and now >= e.due:
                    e.due = 0.0
                    e.attempts.append(self.api.queue_event(e.payload))
                still.append(e)
            waiting = still
        return time.monotonic() - started

    def stop(self) -> None:
        """Stops the processes; `cpu_s` is their CPU time (user + system, from /proc), the
        function's own share of the wall time, the rest being the emulator's."""
        tick = os.sysconf("SC_CLK_TCK")
        self.cpu_s = 0.0
        for p in self.procs:
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                self.cpu_s += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
        for _ in self.procs:
            self.api.release()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.log.close()


def function_env(deployed: dict[str, Any], function: str) -> dict[str, str]:
    f = deployed["Functions"][function]
    return {"AWS_ACCESS_KEY_ID": f["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": f["SecretAccessKey"], **f["Environment"]}


def build() -> None:
    argv = ["cargo", "build", "--release", "-p", "auto-tagger", "-p", "baseline-sync", "-p", "run-notifier"]
    if subprocess.run(argv, cwd=ROOT, env=tool_env(), check=False).returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` failed")


def binary(target: Path, name: str) -> Path:
    path = target / "release" / name
    if not path.is_file():
        raise BenchError(f"{path} is missing: build it (`cargo build --release -p {name}`) or run without --skip-build")
    return path


@dataclass
class BurstResult:
    instances: int
    concurrency: int
    build_s: float
    wall_s: float = 0.0
    invocations: int = 0
    lambda_retries: int = 0
    dead_letters: int = 0
    function_s: float = 0.0
    throttled: int = 0
    throttled_by_action: dict[str, int] = field(default_factory=dict)
    limited_requests: int = 0
    tagged_right: int = 0
    tagged_wrong: int = 0
    untagged: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0


def burst(h: Harness, emu: Emulator, target: Path, instances: int, concurrency: int, delays: list[float]) -> BurstResult:
    t = time.monotonic()
    deployed = emu.request("POST", "/patchpilot-emulator/deploy-stack", {"StackName": STACK})
    expected: dict[str, str] = {}
    for i in range(0, instances, BATCH):
        os_key, name, env, group = BURST_MIX[(i // BATCH) % len(BURST_MIX)]
        for iid in emu.launch(os_key, {"Name": name, "Environment": env}, min(BATCH, instances - i)):
            expected[iid] = group
    result = BurstResult(instances, concurrency, time.monotonic() - t)
    say(f"  burst: {instances} instances launched in {result.build_s:.0f}s (untimed); {concurrency} auto-tagger processes")
    emu.request("POST", "/patchpilot-emulator/rate-limits", {"Enabled": True})
    template = load_event("auto-tagger/ec2-state-pending.json")
    doc_id = template["detail"]["instance-id"]
    text = json.dumps(template)
    events = [Event(json.loads(text.replace(doc_id, iid))) for iid in expected]
    lam = AsyncLambda(h, h.api, "auto-tagger", binary(target, "auto-tagger"), function_env(deployed, "auto-tagger"), concurrency)
    try:
        result.wall_s = lam.run(events, delays, timeout=6 * 3600)
    finally:
        lam.stop()
    result.cpu_s = lam.cpu_s
    limits = emu.request("GET", "/patchpilot-emulator/rate-limits")
    emu.request("POST", "/patchpilot-emulator/rate-limits", {"Enabled": False})
    result.throttled, result.limited_requests = limits["Throttled"], limits["Requests"]
    result.throttled_by_action = limits["ByAction"]
    for e in events:
        result.invocations += len(e.attempts)
        result.lambda_retries += len(e.attempts) - 1
        result.dead_letters += e.dead
        for inv in e.attempts:
            if inv.t_next and inv.t_done:
                result.function_s += inv.t_done - inv.t_next
            if inv.outcome == "error":
                result.errors[inv.error_type or "?"] = result.errors.get(inv.error_type or "?", 0) + 1
    ec2 = emu.client("ec2")
    for page in ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 1000}):
        for r in page["Reservations"]:
            for i in r["Instances"]:
                if i["InstanceId"] not in expected:
                    continue
                group = {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("Patch Group")
                if group is None:
                    result.untagged += 1
                elif group == expected[i["InstanceId"]]:
                    result.tagged_right += 1
                else:
                    result.tagged_wrong += 1
    return result


@dataclass
class ReportResult:
    instances: int
    build_s: float
    function_s: float | None = None
    message_bytes: int | None = None
    truncated: bool | None = None
    outcome: str = ""
    throttled: int = 0
    throttled_by_action: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    unlimited_function_s: float | None = None
    cpu_s: float | None = None
    note: str = ""


def report_case(h: Harness, emu: Emulator, target: Path, instances: int) -> ReportResult:
    emu.reset()
    t = time.monotonic()
    deployed = emu.request("POST", "/patchpilot-emulator/deploy-stack", {"StackName": STACK})
    ids: list[str] = []
    for i in range(0, instances, BATCH):
        ids += emu.launch("amazon-linux-2", {"Name": "web-test", "Environment": "test", "Patch Group": "patch_test_0600_batch_1"}, min(BATCH, instances - i))
    # The windows, targets and tasks: baseline-sync itself, untimed and unlimited (set-up).
    sync = AsyncLambda(h, h.api, "baseline-sync", binary(target, "baseline-sync"), function_env(deployed, "baseline-sync"), 1)
    try:
        synced = Event(load_event("baseline-sync/manual-apply.json"))
        sync.run([synced], [], timeout=600)
    finally:
        sync.stop()
    if not synced.ok:
        raise BenchError(f"baseline-sync failed setting up the report case: {synced.attempts[-1].body[:500]!r}")
    windows = {w["Name"]: w["WindowId"] for w in emu.client("ssm").describe_maintenance_windows()["WindowIdentities"]}
    result = ReportResult(instances, 0.0)

    def one_run(limited: bool) -> tuple[Invocation, dict[str, Any], float]:
        execution = emu.request(
            "POST",
            "/patchpilot-emulator/execute-window",
            {"WindowId": windows["patchpilot-test"], "FailInstances": ids[::500], "RebootPendingInstances": ids[3::100]},
        )
        emu.reset_counts()
        emu.request("POST", "/patchpilot-emulator/rate-limits", {"Enabled": limited})
        lam = AsyncLambda(h, h.api, "run-notifier", binary(target, "run-notifier"), function_env(deployed, "run-notifier"), 1)
        try:
            event = Event(window_event(execution, "run-notifier/window-execution-failed.json"))
            lam.run([event], [], timeout=900)
        finally:
            lam.stop()
        limits = emu.request("GET", "/patchpilot-emulator/rate-limits")
        emu.request("POST", "/patchpilot-emulator/rate-limits", {"Enabled": False})
        return event.attempts[-1], limits, lam.cpu_s

    result.build_s = time.monotonic() - t
    say(f"  report: {instances} instances and their windows (baseline-sync) set up in {result.build_s:.0f}s (untimed)")
    inv, limits, result.cpu_s = one_run(limited=True)
    result.calls = emu.counts()
    result.outcome = inv.outcome
    result.throttled, result.throttled_by_action = limits["Throttled"], limits["ByAction"]
    if inv.t_next and inv.t_done:
        result.function_s = inv.t_done - inv.t_next
    try:
        answer = json.loads(inv.body)
        result.message_bytes = answer.get("message_bytes")
        result.truncated = answer.get("truncated")
    except (json.JSONDecodeError, AttributeError):
        result.note = inv.body.decode(errors="replace")[:300]
    unlimited, _, _ = one_run(limited=False)
    if unlimited.t_next and unlimited.t_done and unlimited.outcome == "response":
        result.unlimited_function_s = unlimited.t_done - unlimited.t_next
    return result


def tables(b: BurstResult | None, r: ReportResult | None, delays: list[float]) -> list[str]:
    L = ["## 6. Scale under AWS's request-rate limits (emulator token buckets; benches/scale.py)", ""]
    L.append(
        "EC2 buckets as documented (\"Request throttling for the Amazon EC2 API\"): CreateTags 100 tokens, "
        "10/s; DescribeInstances 100, 20/s filtered or paginated, 50, 10/s otherwise; SSM: an assumed 20 "
        "tokens, 10/s per action (AWS publishes no rate for these actions). Lambda's async retries after "
        + ", ".join(f"{d:.0f} s" for d in delays)
        + "; after the last, a dead letter."
    )
    L.append("")
    if b:
        absorbed = b.dead_letters == 0 and b.untagged == 0 and b.tagged_wrong == 0
        L.append(f"**Launch burst**: {b.instances:,} instances launched at once, one `EC2 Instance State-change Notification` each, auto-tagger at concurrency {b.concurrency}.")
        L.append("")
        L.append("| wall time | function time (sum; CPU) | invocations | Lambda retries | dead letters | throttled requests (absorbed or not) | rate-limited requests | tagged right | wrong | untagged | goal: all tagged, every throttle absorbed |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        L.append(
            f"| {b.wall_s:.0f} s | {b.function_s:.0f} s; {b.cpu_s:.1f} s | {b.invocations:,} | {b.lambda_retries:,} | {b.dead_letters:,} | "
            f"{b.throttled:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(b.throttled_by_action.items())) or 'none'}) | {b.limited_requests:,} | "
            f"{b.tagged_right:,} | {b.tagged_wrong:,} | {b.untagged:,} | {'met' if absorbed else '**missed**'} |"
        )
        if b.errors:
            L.append("")
            L.append("Failed invocations by error type: " + ", ".join(f"{k} {v:,}" for k, v in sorted(b.errors.items())))
        L.append("")
    if r:
        size_ok = r.message_bytes is not None and r.message_bytes <= SNS_MAX
        time_ok = r.function_s is not None and r.function_s <= REPORT_SECONDS_GOAL
        L.append(f"**Window report**: {r.instances:,} instances in one window run (every 500th failed, every 100th pending reboot), run-notifier once, with the buckets on.")
        L.append("")
        L.append("| outcome | published message | truncated (marker + full list in S3) | function time (wall) | its CPU time | without the buckets (wall) | throttled | AWS calls | goals: ≤ 256 KB, ≤ 10 s |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        calls = sum(r.calls.values())
        L.append(
            f"| {r.outcome} | {r.message_bytes if r.message_bytes is not None else '–'} bytes | {r.truncated} | "
            f"{f'{r.function_s:.2f} s' if r.function_s is not None else '–'} | "
            f"{f'{r.cpu_s:.2f} s' if r.cpu_s is not None else '–'} | "
            f"{f'{r.unlimited_function_s:.2f} s' if r.unlimited_function_s is not None else '–'} | "
            f"{r.throttled} ({', '.join(f'{k} {v}' for k, v in sorted(r.throttled_by_action.items())) or 'none'}) | {calls} | "
            f"size {'met' if size_ok else '**missed**'}, time {'met' if time_ok else '**missed**'} |"
        )
        if r.note:
            L.append("")
            L.append(f"Note: {r.note}")
        L.append("")
    return L


def measure(instances: int, concurrency: int, report_instances: int, delays: list[float], target: Path, only: str | None) -> list[str]:
    (ROOT / "target" / "tmp").mkdir(parents=True, exist_ok=True)
    emu = Emulator()
    api = RuntimeApi()
    try:
        h = Harness(emu, api)
        b = burst(h, emu, target, instances, concurrency, delays) if only in (None, "burst") and instances else None
        r = report_case(h, emu, target, report_instances) if only in (None, "report") and report_instances else None
    finally:
        api.close()
        emu.stop()
    return tables(b, r, delays)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--report-instances", type=int, default=5_000)
    parser.add_argument("--retry-delays", default="60,120", help="seconds before Lambda's second and third attempts")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--only", choices=["burst", "report"])
    parser.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    args = parser.parse_args()
    delays = [float(x) for x in args.retry_delays.split(",") if x]
    try:
        if not args.skip_build:
            build()
        text = "\n".join(measure(args.instances, args.concurrency, args.report_instances, delays, Path(args.target_dir), args.only))
    except (BenchError, subprocess.CalledProcessError) as e:
        say(f"benchmark failed: {e}")
        return 2
    say(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
