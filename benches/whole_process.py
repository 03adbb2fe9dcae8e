"""Cold start by the whole-process method: each bootstrap timed as a process, no interpreter in
the timed path, alternated pair by pair with the no-SDK hello (method: benches/README.md).

`benches/run.py` calls `measure()` and `tables()`; the timer is the Rust harness
`benches/coldstart` (built with the functions), which this module starts once per run:

- **init** (`coldstart init`): the closed-port method. `AWS_LAMBDA_RUNTIME_API` names a loopback
  port nobody listens on; the runtime initializes, its first `GET /next` is refused, the process
  exits. Spawn → exit is the init. The function's output must show the refusal, so a process
  that stops early for another reason (a missing setting) is an error, not a fast init.
- **init + first response** (`coldstart invoke`): the harness serves the Runtime API with the
  event queued before the spawn; spawn → the answer to the event.
- **peak RSS**: `ru_maxrss` of `wait4(2)`, the kernel's own accounting, over the process's life.

For each function: warm-ups, then N pairs (hello, function) back to back; the ratio is taken per
pair and its median and p90 (nearest rank) reported, so slow moments of the shared machine hit
both sides of a pair. Setup that a run needs (a freshly launched instance, a new window
execution) happens before the harness starts: never timed.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402
    ROOT, VENV_PY, BenchError, Harness, free_port, load_event, notifier_env, percentile,
    prepare_window, say, setup_notifier_resources, state_event, window_event,
)

INIT_GOAL = 2.0  # function init ÷ hello init, median of the per-pair ratios (DESIGN.md §6)
PY_GOAL = 5.0  # Python ÷ Rust auto-tagger, first response (DESIGN.md §6)
RSS_GOAL_KB = 32 * 1024
# How a runtime reports its refused `GET /next`: Rust (hyper) and Python (http.client).
REFUSED = re.compile(r"connection ?refused|os error 111|errno 111", re.IGNORECASE)


@dataclass
class Sample:
    ms: float  # init: spawn → exit; first: spawn → answer
    maxrss_kb: int
    init_ms: float | None = None  # first: spawn → first GET /next


@dataclass
class Paired:
    label: str
    kind: str  # "init" | "first"
    hello: list[Sample] = field(default_factory=list)
    subject: list[Sample] = field(default_factory=list)
    note: str = ""

    def ratios(self) -> list[float]:
        return [s.ms / h.ms for h, s in zip(self.hello, self.subject)]


@dataclass
class Subject:
    label: str
    name: str  # AWS_LAMBDA_FUNCTION_NAME and log name
    argv: list[str]
    event: Callable[[int], Any]  # run i → the event (launches / executes what it needs)
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[], None] | None = None  # once, before its series (emulator state)


# Set by run.py's Harness for the AWS-call runs, but not by Lambda: the timed runs go without them,
# so the SDK's standard chain looks for ~/.aws/config and ~/.aws/credentials as it does in Lambda.
NOT_IN_LAMBDA = ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED")


def lambda_env(h: Harness, name: str, extra: dict[str, str]) -> dict[str, str]:
    env = h.env(name, extra)
    for key in NOT_IN_LAMBDA:
        env.pop(key, None)
    return env


class Timer:
    """Runs the `coldstart` harness once per measurement."""

    def __init__(self, h: Harness, rel: Path) -> None:
        self.h, self.rel = h, rel
        self.harness = rel / "coldstart"
        if not self.harness.is_file():
            raise BenchError(f"{self.harness} is missing: build it (cargo build --release -p coldstart)")
        self.tmp = h.logdir / "whole-process"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _harness(self, name: str, mode: list[str], argv: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
        log.write_bytes(b"")
        out = subprocess.run([str(self.harness), *mode, "--log", str(log), "--", *argv],
                             cwd=ROOT, env=lambda_env(self.h, name, env), text=True, capture_output=True)
        if out.returncode != 0:
            raise BenchError(f"{name}: {out.stderr.strip()} (log {log})")
        return json.loads(out.stdout)

    def init(self, name: str, argv: list[str], env: dict[str, str]) -> Sample:
        log = self.tmp / f"{name}.init.log"
        r = self._harness(name, ["init", "--timeout-ms", "60000"], argv, env, log)
        if not REFUSED.search(log.read_text(errors="replace")):
            raise BenchError(f"{name} exited (status {r['exit_code']}) without reaching its first /next "
                             f"(no refused connection in its output; log {log})")
        return Sample(r["wall_ms"], r["maxrss_kb"])

    def first(self, name: str, argv: list[str], event: Any, env: dict[str, str]) -> Sample:
        log = self.tmp / f"{name}.invoke.log"
        event_file = self.tmp / f"{name}.event.json"
        event_file.write_text(json.dumps(event))
        r = self._harness(name, ["invoke", "--event", str(event_file), "--timeout-ms", "120000"], argv, env, log)
        if r["outcome"] != "response":
            raise BenchError(f"{name} answered {r['outcome']} {r['error_type']}: {r['body'][:300]} (log {log})")
        return Sample(r["first_ms"], r["maxrss_kb"], r["init_ms"])


def subjects(h: Harness, rel: Path) -> list[Subject]:
    emu = h.emu

    def fresh_instance(name: str) -> Callable[[int], Any]:
        def event(i: int) -> Any:
            [iid] = emu.launch("amazon-linux-2", {"Name": f"bench-{name}-{i}", "Environment": "test"})
            return state_event(iid)
        return event

    window: dict[str, str] = {}

    def notifier_setup() -> None:
        emu.reset()
        window["id"] = prepare_window(h, rel)

    def window_run(i: int) -> Any:
        execution = emu.request("POST", "/patchpilot-emulator/execute-window", {"WindowId": window["id"]})
        return window_event(execution)

    def sync_setup() -> None:
        emu.reset()
        setup_notifier_resources(emu)

    return [
        Subject("auto-tagger (Rust)", "auto-tagger", [str(rel / "auto-tagger")], fresh_instance("auto-tagger"),
                setup=emu.reset),
        Subject("auto-tagger (Python/boto3)", "python-tagger",
                [str(VENV_PY), str(ROOT / "benches/python_tagger/bootstrap.py")], fresh_instance("python-tagger")),
        # As deployed (template.yaml): TOPIC_ARN and IDEMPOTENCY_TABLE set, so init builds the
        # coverage notifier's clients too.
        Subject("baseline-sync (dry run)", "baseline-sync", [str(rel / "baseline-sync")],
                lambda i: load_event("baseline-sync/manual-dry-run.json"), env=notifier_env(emu), setup=sync_setup),
        Subject("run-notifier (12-instance window report)", "run-notifier", [str(rel / "run-notifier")],
                window_run, env=notifier_env(emu), setup=notifier_setup),
    ]


def measure(h: Harness, rel: Path, pairs: int, warmup: int) -> list[Paired]:
    timer = Timer(h, rel)
    hello = [str(rel / "hello")]
    hello_event = load_event("auto-tagger/ec2-state-running.json")
    out: list[Paired] = []
    for s in subjects(h, rel):
        if s.setup:
            try:
                s.setup()
            except (BenchError, OSError) as e:
                out += [Paired(s.label, k, note=f"setup failed: {e}") for k in ("init", "first")]
                continue
        for kind in ("init", "first"):
            say(f"==> whole process, {kind}: hello vs {s.label}, {warmup} warm-ups + {pairs} pairs")
            p = Paired(s.label, kind)
            try:
                for i in range(warmup + pairs):
                    if kind == "init":
                        a = timer.init("hello", hello, {})
                        b = timer.init(s.name, s.argv, s.env)
                    else:
                        a = timer.first("hello", hello, hello_event, {})
                        b = timer.first(s.name, s.argv, s.event(i), s.env)
                    if i >= warmup:
                        p.hello.append(a)
                        p.subject.append(b)
                        say(f"  pair {i - warmup + 1}: hello {a.ms:6.2f} ms  {s.name} {b.ms:7.2f} ms  "
                            f"ratio {b.ms / a.ms:5.2f}  peak RSS {b.maxrss_kb} kB")
            except (BenchError, OSError) as e:
                p.note = str(e)
                say(f"  FAILED: {e}")
            out.append(p)
    return out


def first_response_ms(results: list[Paired]) -> dict[str, float]:
    """{function: median init + first response, ms} of the Rust functions measured."""
    out = {}
    for p in results:
        if p.kind == "first" and p.subject and "Python" not in p.label:
            out[p.label.split(" ")[0]] = statistics.median(s.ms for s in p.subject)
    return out


def _med(v: list[float]) -> float | None:
    return statistics.median(v) if v else None


def _p90(v: list[float]) -> float | None:
    return percentile(v, 90) if v else None


def _f(v: float | None, digits: int = 2, unit: str = "") -> str:
    return "–" if v is None else f"{v:.{digits}f}{unit}"


def tables(results: list[Paired], pairs: int, warmup: int) -> list[str]:
    L = [f"## 2. Cold start, whole process (x86_64 release, local; {warmup} warm-ups + {pairs} pairs per row)", ""]
    L.append("Each row alternates the no-SDK hello and the function, pair by pair; times in ms from the spawn "
             "(`benches/coldstart`, no interpreter in the timed path); ratio = function ÷ hello of the same pair. "
             "Peak RSS: `ru_maxrss` from `wait4(2)`.")
    L.append("")
    for kind, title in (("init", "**Init** (closed-port method: spawn → exit after the refused first `GET /next`)"),
                        ("first", "**Init + first response** (spawn → the answer to the queued event, emulator calls included)")):
        L.append(title)
        L.append("")
        L.append("| function | pairs | hello median / p90 | function median / p90 | ratio median | ratio p90 | goal | peak RSS median / max |")
        L.append("|---|---|---|---|---|---|---|---|")
        for p in (r for r in results if r.kind == kind):
            if not p.subject:
                L.append(f"| {p.label} | 0 | – | – | – | – | – | – (not measured: {p.note}) |")
                continue
            hm = [s.ms for s in p.hello]
            sm = [s.ms for s in p.subject]
            ratios = p.ratios()
            rss = [s.maxrss_kb for s in p.subject]
            rust = "Python" not in p.label
            if kind == "init" and rust:
                goal = f"≤ {INIT_GOAL:.1f}×: {'met' if _med(ratios) <= INIT_GOAL else '**missed**'}"
            else:
                goal = "–"
            rss_txt = f"{statistics.median(rss) / 1024:.1f} / {max(rss) / 1024:.1f} MiB"
            if rust:
                rss_txt += f" ({'met' if max(rss) <= RSS_GOAL_KB else '**missed**'})"
            note = f" (stopped early: {p.note})" if p.note else ""
            L.append(f"| {p.label}{note} | {len(p.subject)} | {_f(_med(hm))} / {_f(_p90(hm))} | {_f(_med(sm))} / {_f(_p90(sm))} "
                     f"| {_f(_med(ratios))}× | {_f(_p90(ratios))}× | {goal} | {rss_txt} |")
        L.append("")
    rust = next((r for r in results if r.kind == "first" and r.label == "auto-tagger (Rust)" and r.subject), None)
    py = next((r for r in results if r.kind == "first" and "Python" in r.label and r.subject), None)
    rust_i = next((r for r in results if r.kind == "init" and r.label == "auto-tagger (Rust)" and r.subject), None)
    py_i = next((r for r in results if r.kind == "init" and "Python" in r.label and r.subject), None)
    if rust and py:
        ratio = _med([s.ms for s in py.subject]) / _med([s.ms for s in rust.subject])
        line = f"Python/boto3 ÷ Rust auto-tagger, first response (medians): **{ratio:.1f}×** (goal ≥ {PY_GOAL:.0f}×: {'met' if ratio >= PY_GOAL else '**missed**'})"
        if rust_i and py_i:
            line += f"; init: {_med([s.ms for s in py_i.subject]) / _med([s.ms for s in rust_i.subject]):.1f}×"
        L.append(line + ".")
        L.append("")
    return L


# --- syscalls and files at init (strace, optional) -----------------------------------------

STRACE_LINE = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((.*)$")
OPEN_PATH = re.compile(r'^(?:AT_FDCWD|\d+),\s+"([^"]*)"')


@dataclass
class Trace:
    label: str
    syscalls: int = 0
    by_call: dict[str, int] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)  # openat that returned an fd
    failed: list[str] = field(default_factory=list)  # openat that failed (ENOENT, …)
    note: str = ""


def strace_init(h: Harness, rel: Path) -> list[Trace] | str:
    """Counts each bootstrap's syscalls and opened files from exec to exit, closed-port method,
    under `strace -f`. Optional: returns why it was skipped when strace is not installed."""
    strace = shutil.which("strace")
    if not strace:
        return ("strace is not installed: syscall and file counts skipped "
                "(`apt-get install strace`, then re-run; RESULTS.md keeps the last recorded counts)")
    tmp = h.logdir / "whole-process"
    tmp.mkdir(parents=True, exist_ok=True)
    runs = [("hello", "hello", [str(rel / "hello")], {})]
    for s in subjects(h, rel):
        runs.append((s.label, s.name, s.argv, s.env))
    traces: list[Trace] = []
    for label, name, argv, env in runs:
        say(f"==> strace (init, closed port): {label}")
        out = tmp / f"{name}.strace"
        e = lambda_env(h, name, env)
        e["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{free_port()}"
        subprocess.run([strace, "-f", "-qq", "-o", str(out), "--", *argv], cwd=ROOT, env=e,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        t = Trace(label)
        for line in out.read_text(errors="replace").splitlines():
            m = STRACE_LINE.match(line)
            if not m or "resumed>" in line:
                continue
            call, rest = m.group(1), m.group(2)
            t.syscalls += 1
            t.by_call[call] = t.by_call.get(call, 0) + 1
            if call in ("open", "openat", "openat2"):
                pm = OPEN_PATH.match(rest) if call != "open" else re.match(r'^"([^"]*)"', rest)
                if pm:
                    (t.failed if re.search(r"= -1 ", rest) else t.opened).append(pm.group(1))
        traces.append(t)
    return traces


def _paths(paths: list[str]) -> str:
    """Distinct paths, runs under one directory collapsed (`/etc/ssl/certs/* ×146`)."""
    by_dir: dict[str, list[str]] = {}
    for p in dict.fromkeys(paths):
        by_dir.setdefault(str(Path(p).parent), []).append(p)
    parts = []
    for d, ps in by_dir.items():
        parts.extend(ps if len(ps) <= 3 else [f"{d}/* ×{len(ps)}"])
    return ", ".join(f"`{p}`" for p in parts) or "none"


def strace_table(traces: list[Trace] | str) -> list[str]:
    L = ["## 2b. Syscalls and files at init (`strace -f`, closed-port method, exec → exit)", ""]
    if isinstance(traces, str):
        return L + [traces, ""]
    L.append("| binary | syscalls | openat (ok / failed) | files opened | paths that failed |")
    L.append("|---|---|---|---|---|")
    for t in traces:
        python = "Python" in t.label
        opened = f"{len(set(t.opened))} distinct" if python else _paths(t.opened)
        failed = f"{len(set(t.failed))} distinct" if python else _paths(t.failed)
        L.append(f"| {t.label} | {t.syscalls} | {len(t.opened)} / {len(t.failed)} | {opened} | {failed} |")
    L.append("")
    return L
