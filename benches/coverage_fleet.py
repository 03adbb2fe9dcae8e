"""Coverage read of a 10,000-instance fleet against the local AWS emulator.

Usage: .venv/bin/python benches/coverage_fleet.py [--instances N] [--cli PATH] [--skip-build]

`benches/run.py` calls `measure()` and adds its table to RESULTS.md (`make bench`); run alone,
this prints the table. Method in benches/README.md ("Coverage read, 10,000 instances").

1. starts the emulator (tests/emulator) and builds the fleet — *not timed*: RunInstances in
   batches of 1,000 (MinCount = MaxCount = 1000) cycling through a mix of OSes, some with the
   agent and some without, some batches tagged with a patch group; then `set-managed` marks a
   few instances ConnectionLost and a few as having no agent;
2. resets the emulator's request counter and runs `patchpilot coverage --json` (the release
   CLI, the reads of `patchpilot::aws::coverage::CoverageReader`, the same code baseline-sync
   runs every sync) — *timed*: wall time of that process;
3. reads the calls from the emulator's request counter (cross-checked with the CLI's own
   `CallLog` in its JSON) and the hosts/verdicts from the JSON.

Goals: ≤ 300 read calls, ≤ 30 s. A measurement, not a test: exits 0 either way, 2 when it
cannot measure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import REGION, ROOT, BenchError, Emulator, is_write, say  # noqa: E402

CALLS_GOAL = 300
SECONDS_GOAL = 30.0
BATCH = 1000  # RunInstances MinCount/MaxCount per call
# One entry per batch of 1,000, cycled: (AMI key of the emulator's catalogue, tags). The
# catalogue decides whether the instance has the SSM Agent (debian-12, rocky-9: none).
PG = {"Patch Group": "patch_test_0600_batch_1"}
MIX: list[tuple[str, dict[str, str]]] = [
    ("amazon-linux-2", {"Name": "web-test", **PG}),
    ("amazon-linux-2", {"Name": "web-prod"}),
    ("amazon-linux-2023", {"Name": "api-test", **PG}),
    ("windows-2019", {"Name": "win-test"}),
    ("windows-2022", {"Name": "win-prod"}),
    ("ubuntu-22.04", {"Name": "app-test"}),
    ("rhel-9", {"Name": "db-prod"}),
    ("sles-15", {"Name": "sap-prod"}),
    ("debian-12", {"Name": "edge-test"}),
    ("rocky-9", {"Name": "batch-prod"}),
]
CONNECTION_LOST = 25  # instances of the first batch set ConnectionLost
NO_AGENT = 25  # instances of the second batch set to no agent


@dataclass
class FleetResult:
    instances: int
    build_s: float
    wall_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    cli_calls: dict[str, int] = field(default_factory=dict)
    hosts: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    note: str = ""
    cli_cpu_s: float | None = None
    emulator_cpu_s: float | None = None

    @property
    def reads(self) -> int:
        return sum(n for k, n in self.counts.items() if not is_write(k))

    @property
    def writes(self) -> int:
        return sum(n for k, n in self.counts.items() if is_write(k))


def cli_path(explicit: str | None, skip_build: bool, target: Path) -> Path:
    if explicit:
        return Path(explicit).resolve()
    path = target / "release" / "patchpilot"
    if not skip_build:
        say("==> cargo build --release -p patchpilot-cli")
        env = dict(os.environ, CARGO_TARGET_DIR=str(target))
        subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "-p", "patchpilot-cli"],
                       cwd=ROOT, env=env, check=True)
    if not path.is_file():
        raise BenchError(f"{path} is missing: build it (cargo build --release -p patchpilot-cli) or pass --cli")
    return path


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of a running process (/proc/<pid>/stat), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def build_fleet(emu: Emulator, instances: int) -> float:
    started = time.monotonic()
    ids: list[list[str]] = []
    for n in range(0, instances, BATCH):
        os_key, tags = MIX[(n // BATCH) % len(MIX)]
        ids.append(emu.launch(os_key, tags, count=min(BATCH, instances - n)))
        say(f"    launched {n + len(ids[-1])}/{instances} ({os_key})")
    for iid in ids[0][:CONNECTION_LOST]:
        emu.request("POST", "/patchpilot-emulator/set-managed", {
            "InstanceId": iid, "PingStatus": "ConnectionLost", "LastPingDateTime": "2026-01-02T03:04:05Z"})
    for iid in (ids[1] if len(ids) > 1 else [])[:NO_AGENT]:
        emu.request("POST", "/patchpilot-emulator/set-managed", {"InstanceId": iid, "Managed": False})
    return time.monotonic() - started


def measure(instances: int = 10_000, cli: Path | None = None) -> FleetResult:
    """Builds the fleet in a fresh emulator and times one coverage read of it."""
    if cli is None:
        cli = cli_path(None, True, ROOT / "target")
    say(f"==> coverage read, {instances} instances: building the fleet (not timed)")
    emu = Emulator()
    try:
        result = FleetResult(instances=instances, build_s=build_fleet(emu, instances))
        emu.reset_counts()
        env = dict(os.environ)
        env.update({
            "AWS_ENDPOINT_URL": emu.url, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "RUST_LOG": "warn",
        })
        env.pop("AWS_PROFILE", None)
        say("==> patchpilot coverage --json (timed)")
        emu_cpu0 = process_cpu_s(emu.proc.pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.run([str(cli), "coverage", "--json"], env=env, capture_output=True, text=True)
        wall = time.monotonic() - t0
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        result.cli_cpu_s = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
        emu_cpu1 = process_cpu_s(emu.proc.pid)
        if emu_cpu0 is not None and emu_cpu1 is not None:
            result.emulator_cpu_s = emu_cpu1 - emu_cpu0
        result.counts = {k: v for k, v in emu.counts().items() if v}
        if proc.returncode != 0:
            result.note = f"coverage failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}"
            return result
        result.wall_s = wall
        doc = json.loads(proc.stdout)
        result.cli_calls = dict(doc["calls"]["by_operation"])
        result.hosts = len(doc["coverage"]["hosts"])
        result.verdicts = {k: v for k, v in doc["coverage"]["counts"].items() if v}
        return result
    finally:
        emu.stop()


def fmt_s(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} s"


def table(r: FleetResult) -> list[str]:
    L = [f"## 5. Coverage read of a {r.instances:,}-instance fleet (emulator; benches/coverage_fleet.py)", ""]
    if r.wall_s is None:
        L += [f"not measured: {r.note}", ""]
        return L
    calls_ok = r.reads <= CALLS_GOAL
    time_ok = r.wall_s <= SECONDS_GOAL
    by_op = ", ".join(f"{k.split(':', 1)[-1]} {v}" for k, v in sorted(r.counts.items()))
    L += [
        "| instances | hosts assessed | read calls (goal ≤ 300) | writes | wall time (goal ≤ 30 s) | CPU: patchpilot / emulator | fleet build (not timed) |",
        "|---|---|---|---|---|---|---|",
        f"| {r.instances:,} | {r.hosts:,} | {r.reads} {'met' if calls_ok else '**missed**'} | {r.writes} "
        f"| {r.wall_s:.1f} s {'met' if time_ok else '**missed**'} | {fmt_s(r.cli_cpu_s)} / {fmt_s(r.emulator_cpu_s)} "
        f"| {r.build_s:.0f} s |",
        "",
        f"Calls by operation (emulator counter): {by_op}.",
        "",
        "Verdicts: " + ", ".join(f"{k} {v:,}" for k, v in r.verdicts.items()) + ".",
        "",
    ]
    # moto pages DescribeInstances by reservation (one per RunInstances call), AWS by instance
    # (MaxResults 5-1000): in AWS the fleet is ceil(N / 1000) pages.
    di = sum(v for k, v in r.counts.items() if k.endswith("DescribeInstances"))
    aws_reads = r.reads - di + -(-r.instances // 1000)
    L += [
        f"In AWS, DescribeInstances pages by instance, not by reservation as the emulator does: "
        f"{di} → {-(-r.instances // 1000)} call(s), **{aws_reads} read calls** "
        f"({'met' if aws_reads <= CALLS_GOAL else '**missed**'}).",
        "",
    ]
    cli_ops = {k: v for k, v in r.cli_calls.items()}
    emu_ops = {k.split(":", 1)[-1]: v for k, v in r.counts.items()}
    if cli_ops != emu_ops:
        L += [f"The CLI's own call log differs from the emulator's counter: {cli_ops} (SDK retries?).", ""]
    return L


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--cli", help="patchpilot binary to time (default: target/release/patchpilot, built)")
    parser.add_argument("--skip-build", action="store_true", help="do not build the release CLI")
    args = parser.parse_args()
    (ROOT / "target" / "tmp").mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        cli = cli_path(args.cli, args.skip_build, Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")))
        r = measure(args.instances, cli)
    except (BenchError, subprocess.CalledProcessError) as e:
        say(f"benchmark failed: {e}")
        return 2
    say("")
    say(f"measured {started}, binary {cli}")
    say("\n".join(table(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
