"""patchpilot benchmarks: binary size, cold start, peak RSS, AWS calls per run, dependency hygiene.

Usage: .venv/bin/python benches/run.py [--quick] [--pairs N] [--warmup N] [--skip-build] [--no-arm64] [--out FILE]

What it does (method in benches/README.md, goals in DESIGN.md §6):
  1. builds the x86_64 release binaries of the three functions, of benches/hello and of the
     timing harness benches/coldstart (`cargo build --release`) and the arm64 bootstraps
     (`cargo lambda build --release --arm64`), both under `nice -n 10`; reports stripped sizes
     (goal ≤ 8 MB);
  2. cold start by the whole-process method (benches/whole_process.py, timed by the Rust
     harness, no interpreter in the timed path): init by the closed-port method and init +
     first response with the local emulator, each function alternated pair by pair with the
     no-SDK hello, median and p90 of the per-pair ratios; the Python/boto3 auto-tagger
     (benches/python_tagger/bootstrap.py) timed the same way; peak RSS from wait4's ru_maxrss;
     then, when strace is installed, the syscalls and files of each init;
  3. (kept for the AWS calls below) a minimal Lambda Runtime API in Python (`RuntimeApi`);
  4. AWS calls per run from the emulator's request counter;
  5. one hyper and one rustls per function (`cargo tree -i`);
  6. the coverage read of a 10,000-instance fleet (benches/coverage_fleet.py: read calls, wall
     time of `patchpilot coverage --json`; the release CLI is built with the functions).
Prints the tables and writes them to benches/RESULTS.md (--out). Exit status 0 even when a goal
is missed (the table says so): this is a measurement, not a test; 2 when it cannot measure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
EVENTS = ROOT / "events"
FUNCTIONS = ["auto-tagger", "baseline-sync", "run-notifier"]
REGION = "us-east-1"
ACCOUNT = "123456789012"
MB = 1024 * 1024
# Where the x86_64 release binaries are built (--x86-target-dir): target/ by default, the
# workspace's one target dir; another dir lets the benchmark build while an arm64 build holds
# target/'s lock.
X86_TARGET = ROOT / "target"
SIZE_GOAL = 8 * MB
RSS_GOAL_KB = 32 * 1024
EM_AARCH64, EM_X86_64 = 183, 62
DOC_INSTANCE = "i-1234567890abcdef0"  # the instance id of events/auto-tagger/ec2-state-running.json
TOPIC_NAME = "patchpilot-reports"
TABLE_NAME = "patchpilot-idempotency"
WRITE_PREFIXES = (
    "Create", "Update", "Delete", "Put", "Register", "Deregister", "Add", "Remove", "Send",
    "Modify", "Start", "Stop", "Terminate", "Run", "Publish", "Tag", "Untag", "Associate",
    "Disassociate", "Attach", "Detach", "Cancel",
)


class BenchError(RuntimeError):
    pass


def say(msg: str = "") -> None:
    print(msg, flush=True)


def is_write(action_key: str) -> bool:
    action = action_key.split(":", 1)[-1]
    return action.startswith(WRITE_PREFIXES)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


def run(cmd: list[str], *, nice: bool = False, capture: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = (["nice", "-n", "10"] if nice else []) + cmd
    say(f"  $ {' '.join(argv)}")
    return subprocess.run(argv, cwd=ROOT, text=True, capture_output=capture, env=env)


# --- 1. build and size -----------------------------------------------------------------------


def tool_env() -> dict[str, str]:
    """cargo-lambda and zig come from the venv, as in the Makefile."""
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def build(arm64: bool) -> dict[str, str]:
    """Builds what the benchmark needs; returns {what: problem} for builds that failed."""
    problems: dict[str, str] = {}
    say("==> build: x86_64 release (local timing)")
    pkgs = [a for p in FUNCTIONS + ["hello", "coldstart"] for a in ("-p", p)]
    if run(["cargo", "build", "--release", "--target-dir", str(X86_TARGET), *pkgs], nice=True).returncode != 0:
        raise BenchError("cargo build --release failed (see above)")
    if arm64:
        say("==> build: arm64 release bootstraps (cargo lambda build --release --arm64)")
        rc = run(["rustup", "target", "add", "aarch64-unknown-linux-gnu"], capture=True).returncode
        if rc != 0:
            problems["arm64"] = "rustup target add aarch64-unknown-linux-gnu failed"
        else:
            cmd = ["cargo", "lambda", "build", "--release", "--arm64", *[a for p in FUNCTIONS for a in ("--package", p)]]
            if run(cmd, nice=True, env=tool_env()).returncode != 0:
                problems["arm64"] = "cargo lambda build --release --arm64 failed (see the build output)"
    return problems


def elf_info(path: Path) -> tuple[int | None, bool]:
    """(e_machine, has .symtab) of an ELF64 little-endian file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None, False
    machine = struct.unpack_from("<H", data, 18)[0]
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shoff == 0 or shnum == 0:
        return machine, False
    strtab_off = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)[0]
    names = []
    for i in range(shnum):
        name_off = struct.unpack_from("<I", data, shoff + i * shentsize)[0]
        end = data.index(b"\0", strtab_off + name_off)
        names.append(data[strtab_off + name_off:end].decode(errors="replace"))
    return machine, ".symtab" in names


@dataclass
class SizeRow:
    name: str
    arch: str
    path: Path
    size: int | None = None
    stripped: bool | None = None
    note: str = ""


def measure_sizes(arm64_problem: str | None) -> list[SizeRow]:
    rows = []
    for fn in FUNCTIONS + ["hello"]:
        for arch, path, want in (
            ("arm64", ROOT / "target" / "lambda" / fn / "bootstrap", EM_AARCH64),
            ("x86_64", X86_TARGET / "release" / fn, EM_X86_64),
        ):
            if fn == "hello" and arch == "arm64":
                continue  # the baseline is only run locally
            row = SizeRow(fn, arch, path)
            if not path.is_file():
                row.note = f"missing: {path}" + (f" ({arm64_problem})" if arch == "arm64" and arm64_problem else "")
            else:
                machine, symtab = elf_info(path)
                if machine != want:
                    row.note = f"not an {arch} ELF (e_machine={machine})"
                size = path.stat().st_size
                if symtab and shutil.which("strip") and arch == "x86_64":
                    stripped = ROOT / "target" / "tmp" / f"bench-{fn}-stripped"
                    stripped.parent.mkdir(parents=True, exist_ok=True)
                    subprocess.run(["strip", "-o", str(stripped), str(path)], check=True)
                    size, symtab = stripped.stat().st_size, False
                    row.note = (row.note + " " if row.note else "") + "size after `strip`"
                row.size, row.stripped = size, not symtab
            rows.append(row)
    return rows


# --- 2. the minimal Lambda Runtime API -------------------------------------------------------


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    t_next: float | None = None  # when the runtime fetched it
    t_done: float | None = None  # when the answer arrived
    outcome: str = ""  # "response" | "error"
    body: bytes = b""
    error_type: str = ""
    done: threading.Event = field(default_factory=threading.Event)


class RuntimeApi:
    """Lambda Runtime API 2018-06-01 for one function process at a time, on 127.0.0.1.

    Implements, per the Lambda Runtime API reference: GET /runtime/invocation/next (blocks
    until an event is queued; headers Lambda-Runtime-Aws-Request-Id, -Deadline-Ms,
    -Invoked-Function-Arn, -Trace-Id), POST /runtime/invocation/{id}/response and
    /runtime/invocation/{id}/error (202 Accepted; 400 for an unknown id, 413 over 6 MB),
    POST /runtime/init/error (202). It records when each request arrives (perf_counter).
    """

    PREFIX = "/2018-06-01/runtime"
    MAX_PAYLOAD = 6 * MB

    def __init__(self) -> None:
        self.function_name = "bench"
        self.pending: queue.Queue[Invocation | None] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.first_next: float | None = None
        self.init_error: bytes | None = None
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def do_GET(self) -> None:  # noqa: N802
                now = time.perf_counter()
                if self.path != f"{api.PREFIX}/invocation/next":
                    self._send(404, {"errorMessage": f"unknown path {self.path}", "errorType": "NotFound"})
                    return
                with api.lock:
                    if api.first_next is None:
                        api.first_next = now
                inv = api.pending.get()
                if inv is None:  # the harness is stopping the process: never answer
                    self.close_connection = True
                    return
                inv.t_next = time.perf_counter()
                deadline_ms = int(time.time() * 1000) + 900_000
                self._send(200, inv.payload, {
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{api.function_name}",
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0",
                })

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                now = time.perf_counter()
                path = self.path
                if path == f"{api.PREFIX}/init/error":
                    api.init_error = body or b"{}"
                    self._send(202, {"status": "OK"})
                    return
                m = re.fullmatch(re.escape(api.PREFIX) + r"/invocation/([^/]+)/(response|error)", path)
                if not m:
                    self._send(404, {"errorMessage": f"unknown path {path}", "errorType": "NotFound"})
                    return
                inv = api.invocations.get(m.group(1))
                if inv is None or inv.done.is_set():
                    self._send(400, {"errorMessage": f"unknown or finished request id {m.group(1)}", "errorType": "InvalidRequestID"})
                    return
                if len(body) > api.MAX_PAYLOAD:
                    self._send(413, {"errorMessage": "response payload too large", "errorType": "RequestEntityTooLarge"})
                    return
                inv.t_done, inv.outcome, inv.body = now, m.group(2), body
                inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
                self._send(202, {"status": "OK"})
                inv.done.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, function_name: str) -> None:
        self.release()
        self.pending = queue.Queue()
        self.invocations = {}
        self.first_next = None
        self.init_error = None
        self.function_name = function_name

    def queue_event(self, payload: Any) -> Invocation:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        inv = Invocation(str(uuid.uuid4()), data)
        self.invocations[inv.request_id] = inv
        self.pending.put(inv)
        return inv

    def release(self) -> None:
        """Unblocks a waiting /next without an event (before the process is stopped)."""
        for _ in range(4):
            self.pending.put(None)

    def close(self) -> None:
        self.release()
        self.server.shutdown()


# --- the emulator --------------------------------------------------------------------------


class Emulator:
    def __init__(self) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": str(ROOT / "tests" / "emulator"),
            "MOTO_AMIS_PATH": str(ROOT / "tests" / "emulator" / "patchpilot_emulator" / "amis.json"),
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        self.log = open(ROOT / "target" / "tmp" / "bench-emulator.log", "w")
        self.proc = subprocess.Popen(
            [str(VENV_PY), "-m", "patchpilot_emulator", "--port", str(self.port), "--host", "127.0.0.1", "--exit-with-stdin"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                self.request("GET", "/patchpilot-emulator/request-log")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"emulator did not start (log: {self.log.name})")
                time.sleep(0.2)
        self.amis = {
            a["patchpilot"]["key"]: a["ami_id"]
            for a in json.loads((ROOT / "tests/emulator/patchpilot_emulator/amis.json").read_text())
        }
        self._clients: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        if resp.status >= 300:
            raise BenchError(f"emulator {method} {path}: HTTP {resp.status}: {text[:300]}")
        return json.loads(text) if text else None

    def reset(self) -> None:
        self.request("POST", "/moto-api/reset")

    def counts(self) -> dict[str, int]:
        return dict(self.request("GET", "/patchpilot-emulator/request-log")["counts"])

    def reset_counts(self) -> None:
        self.request("POST", "/patchpilot-emulator/request-log/reset")

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3  # the venv's; only the harness and the Python baseline use it

            from botocore.config import Config

            # The harness's own reads of a 20,000-instance fleet (benches/scale.py) take minutes
            # on a busy 2-core machine: botocore's 60 s read timeout lost a whole burst's
            # figures on 2026-12-08. Not timed; the functions' own timeouts are unchanged.
            self._clients[service] = boto3.client(
                service, endpoint_url=self.url, region_name=REGION,
                aws_access_key_id="testing", aws_secret_access_key="testing",
                config=Config(read_timeout=900, retries={"mode": "standard", "max_attempts": 3}),
            )
        return self._clients[service]

    def launch(self, os_key: str, tags: dict[str, str], count: int = 1) -> list[str]:
        out = self.client("ec2").run_instances(
            ImageId=self.amis[os_key], MinCount=count, MaxCount=count,
            InstanceType="t3.large" if os_key.startswith("windows") else "t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )
        return [i["InstanceId"] for i in out["Instances"]]

    def stop(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --- running a function as Lambda would ------------------------------------------------------


@dataclass
class Run:
    init_ms: float | None
    first_ms: float | None
    vmhwm_kb: int | None
    outcome: str
    body: str
    error_type: str = ""
    calls: list[dict[str, int]] = field(default_factory=list)  # per event, when counted


def vmhwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Harness:
    def __init__(self, emu: Emulator, api: RuntimeApi) -> None:
        self.emu, self.api = emu, api
        self.logdir = ROOT / "target" / "tmp" / "bench-logs"
        self.logdir.mkdir(parents=True, exist_ok=True)

    def env(self, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_ENDPOINT_URL": self.emu.url,
            # No IMDS / shared-config probing: Lambda has neither.
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "RUST_LOG": "info",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(extra or {})
        return env

    def invoke_process(
        self,
        name: str,
        argv: list[str],
        events: list[Any],
        *,
        env_extra: dict[str, str] | None = None,
        count_calls: bool = False,
        before_event: Any = None,
        timeout: float = 120.0,
    ) -> Run:
        """Starts the process with the first event already queued (a cold start), feeds the rest
        one by one, reads VmHWM, stops it. Times are from just before Popen."""
        self.api.reset(name)
        if before_event:
            before_event(0)
        if count_calls:
            self.emu.reset_counts()
        first = self.api.queue_event(events[0])
        log = open(self.logdir / f"{name}.log", "ab")
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env(name, env_extra), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        calls: list[dict[str, int]] = []
        try:
            invs = [first]
            for i in range(len(events)):
                inv = invs[i]
                deadline = time.monotonic() + timeout
                while not inv.done.wait(0.05):
                    if proc.poll() is not None:
                        raise BenchError(f"{name} exited with {proc.returncode} before answering (init error: {self.api.init_error!r}; log {log.name})")
                    if time.monotonic() > deadline:
                        raise BenchError(f"{name} did not answer within {timeout}s (log {log.name})")
                if count_calls:
                    calls.append(self.emu.counts())
                if i + 1 < len(events):
                    if before_event:
                        before_event(i + 1)
                    if count_calls:
                        self.emu.reset_counts()
                    invs.append(self.api.queue_event(events[i + 1]))
            # The process is now blocked in its next /next: its peak RSS is final.
            time.sleep(0.02)
            hwm = vmhwm_kb(proc.pid)
        finally:
            self.api.release()
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.close()
        init_ms = (self.api.first_next - t0) * 1000 if self.api.first_next else None
        return Run(
            init_ms=init_ms,
            first_ms=(first.t_done - t0) * 1000 if first.t_done else None,
            vmhwm_kb=hwm,
            outcome=first.outcome,
            body=invs[-1].body.decode(errors="replace"),
            error_type=first.error_type,
            calls=calls,
        )


# --- scenarios -----------------------------------------------------------------------------


def load_event(rel: str) -> Any:
    return json.loads((EVENTS / rel).read_text())


def state_event(instance_id: str) -> Any:
    text = (EVENTS / "auto-tagger" / "ec2-state-running.json").read_text()
    return json.loads(text.replace(DOC_INSTANCE, instance_id))


def window_event(execution: dict[str, Any], rel: str = "run-notifier/window-execution-success.json") -> Any:
    payload = load_event(rel)
    text = json.dumps(payload)
    text = text.replace(payload["detail"]["window-id"], execution["WindowId"])
    text = text.replace(payload["detail"]["window-execution-id"], execution["WindowExecutionId"])
    return json.loads(text)


def writes_of(counts: dict[str, int]) -> int:
    return sum(n for k, n in counts.items() if is_write(k))


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.split(':', 1)[-1]}×{n}" if n > 1 else k.split(":", 1)[-1] for k, n in sorted(counts.items())) or "none"


def notifier_env(emu: Emulator) -> dict[str, str]:
    return {"TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC_NAME}", "IDEMPOTENCY_TABLE": TABLE_NAME}


def setup_notifier_resources(emu: Emulator) -> None:
    emu.client("sns").create_topic(Name=TOPIC_NAME)
    emu.client("dynamodb").create_table(
        TableName=TABLE_NAME,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    emu.client("s3").create_bucket(Bucket="patchpilot-output")


FLEET_12 = [
    ("amazon-linux-2", 3), ("rhel-9", 2), ("ubuntu-22.04", 2), ("centos-7", 1), ("sles-15", 1), ("windows-2022", 3),
]


def prepare_window(h: Harness, rel: Path | None = None) -> str:
    """12 test instances, baseline-sync apply (creates the windows and tags the fleet); returns the
    id of the window that reaches all 12 (patchpilot-test)."""
    emu = h.emu
    setup_notifier_resources(emu)
    n = 0
    for os_key, count in FLEET_12:
        for _ in range(count):
            n += 1
            emu.launch(os_key, {"Name": f"bench-{os_key}-{n}-test", "Environment": "test"})
    r = h.invoke_process("baseline-sync", [str((rel or X86_TARGET / "release") / "baseline-sync")], [load_event("baseline-sync/manual-apply.json")])
    if r.outcome != "response":
        raise BenchError(f"baseline-sync apply answered {r.outcome}: {r.body[:300]}")
    windows = {w["Name"]: w["WindowId"] for w in emu.client("ssm").describe_maintenance_windows()["WindowIdentities"]}
    if "patchpilot-test" not in windows:
        raise BenchError(f"baseline-sync created no patchpilot-test window (windows: {sorted(windows)})")
    return windows["patchpilot-test"]


@dataclass
class CallRow:
    function: str
    case: str
    counts: dict[str, int] | None
    note: str = ""
    goal: str = ""
    met: bool | None = None


def aws_calls(h: Harness) -> list[CallRow]:
    emu = h.emu
    rel = X86_TARGET / "release"
    rows: list[CallRow] = []
    say("==> AWS calls per run")

    # auto-tagger: two events for the same instance in one (warm after the first) process.
    emu.reset()
    [iid] = emu.launch("amazon-linux-2", {"Name": "bench-calls-test", "Environment": "test"})
    try:
        r = h.invoke_process("auto-tagger", [str(rel / "auto-tagger")], [state_event(iid), state_event(iid)], count_calls=True)
        for i, counts in enumerate(r.calls):
            describes = sum(n for k, n in counts.items() if k.split(":", 1)[-1].startswith("Describe"))
            w = writes_of(counts)
            rows.append(CallRow("auto-tagger", f"{'first' if i == 0 else 'second'} event, same Amazon Linux 2 instance", counts,
                                goal="≤ 1 describe + ≤ 1 write" + (", second: 0 writes" if i else ""),
                                met=describes <= 1 and w <= (0 if i else 1)))
    except BenchError as e:
        rows.append(CallRow("auto-tagger", "two events, same instance", None, note=str(e)))

    # An instance whose OS is in PlatformDetails (RHEL): no AMI-name lookup needed.
    [iid] = emu.launch("rhel-9", {"Name": "bench-calls-rhel-test", "Environment": "test"})
    try:
        r = h.invoke_process("auto-tagger", [str(rel / "auto-tagger")], [state_event(iid)], count_calls=True)
        counts = r.calls[0]
        describes = sum(n for k, n in counts.items() if k.split(":", 1)[-1].startswith("Describe"))
        rows.append(CallRow("auto-tagger", "first event, RHEL instance (OS in PlatformDetails)", counts,
                            goal="≤ 1 describe + ≤ 1 write", met=describes <= 1 and writes_of(counts) <= 1))
    except BenchError as e:
        rows.append(CallRow("auto-tagger", "first event, RHEL instance", None, note=str(e)))

    # Python baseline, for comparison (same two events).
    [iid] = emu.launch("amazon-linux-2", {"Name": "bench-calls-py-test", "Environment": "test"})
    try:
        r = h.invoke_process("python-tagger", [str(VENV_PY), str(ROOT / "benches/python_tagger/bootstrap.py")], [state_event(iid), state_event(iid)], count_calls=True)
        for i, counts in enumerate(r.calls):
            rows.append(CallRow("python tagger (baseline)", f"{'first' if i == 0 else 'second'} event, same instance", counts))
    except BenchError as e:
        rows.append(CallRow("python tagger (baseline)", "two events", None, note=str(e)))

    # baseline-sync: apply from an empty account with a 12-instance fleet, then again.
    emu.reset()
    setup_notifier_resources(emu)
    n = 0
    for os_key, count in FLEET_12:
        for _ in range(count):
            n += 1
            emu.launch(os_key, {"Name": f"bench-{os_key}-{n}-test", "Environment": "test"})
    for label in ("first run (empty account, 12 instances)", "second run (nothing changed)"):
        try:
            r = h.invoke_process("baseline-sync", [str(rel / "baseline-sync")], [load_event("baseline-sync/manual-apply.json")], count_calls=True)
            counts = r.calls[0]
            second = label.startswith("second")
            rows.append(CallRow("baseline-sync", label, counts,
                                note="" if r.outcome == "response" else f"answered {r.outcome}: {r.body[:200]}",
                                goal="0 writes" if second else "converges",
                                met=(writes_of(counts) == 0) if second else r.outcome == "response"))
        except BenchError as e:
            rows.append(CallRow("baseline-sync", label, None, note=str(e)))

    # run-notifier: the report of a 12-instance window run.
    windows = {w["Name"]: w["WindowId"] for w in emu.client("ssm").describe_maintenance_windows()["WindowIdentities"]}
    if "patchpilot-test" not in windows:
        rows.append(CallRow("run-notifier", "12-instance window run", None, note=f"no patchpilot-test window (windows: {sorted(windows)})"))
        return rows
    execution = emu.request("POST", "/patchpilot-emulator/execute-window", {"WindowId": windows["patchpilot-test"]})
    reached = sorted({i for t in execution["Tasks"] for i in t["InstanceIds"]})
    for label in (f"window run reaching {len(reached)} instances", "same event again (duplicate delivery)"):
        try:
            r = h.invoke_process("run-notifier", [str(rel / "run-notifier")], [window_event(execution)], env_extra=notifier_env(emu), count_calls=True)
            counts = r.calls[0]
            dup = label.startswith("same")
            published = counts.get("sns:Publish", 0)
            rows.append(CallRow("run-notifier", label, counts,
                                note="" if r.outcome == "response" else f"answered {r.outcome} {r.error_type}: {r.body[:200]}",
                                goal="0 Publish" if dup else "1 Publish",
                                met=(published == 0) if dup else (published == 1 and r.outcome == "response")))
        except BenchError as e:
            rows.append(CallRow("run-notifier", label, None, note=str(e)))
    return rows


# --- 5. dependency hygiene -----------------------------------------------------------------


def tree_versions(pkg: str) -> tuple[dict[str, set[str]], str]:
    """{crate: {versions}} of every crate in `pkg`'s normal-dependency tree (what the binary
    links). One `cargo tree` per binary; the same answer as `cargo tree -e normal -p <pkg> -i
    <crate>` per crate, and it also works when a crate appears in several versions (where `-i
    <crate>` stops with an ambiguity error)."""
    out = subprocess.run(
        ["cargo", "tree", "-e", "normal", "-p", pkg, "--prefix", "none", "-f", "{p}"],
        cwd=ROOT, text=True, capture_output=True,
    )
    if out.returncode != 0:
        err = out.stderr.strip().splitlines()
        return {}, err[-1] if err else "cargo tree failed"
    versions: dict[str, set[str]] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("v"):
            versions.setdefault(parts[0], set()).add(parts[1])
    return versions, ""


HYGIENE_CRATES = ["hyper", "rustls", "h2", "http", "aws-lc-rs", "ring", "openssl", "native-tls"]


def hygiene() -> list[tuple[str, str, list[str], str]]:
    say("==> dependency hygiene (cargo tree -e normal)")
    rows = []
    for fn in FUNCTIONS + ["hello"]:
        tree, err = tree_versions(fn)
        for crate in HYGIENE_CRATES:
            rows.append((fn, crate, sorted(tree.get(crate, set())), err))
    return rows


# --- report --------------------------------------------------------------------------------


def mib(n: int | None) -> str:
    return "–" if n is None else f"{n / MB:.2f} MiB ({n:,} B)"


def ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], text=True, capture_output=True).stdout.strip()
    load = os.getloadavg()
    return (f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), "
            f"{rustc}, Python {platform.python_version()}; load average at start {load[0]:.2f}")


def report(args: argparse.Namespace, sizes: list[SizeRow], cold: list[str], calls: list[CallRow],
           deps: list[tuple[str, str, list[str], str]], notes: list[str], machine: str, started: str, elapsed: float,
           fleet: list[str] | None = None) -> str:
    L: list[str] = []
    L.append("# patchpilot benchmark results")
    L.append("")
    L.append(f"Measured {started} on {machine}. Command: `.venv/bin/python benches/run.py"
             f"{' --quick' if args.quick else ''}{' --skip-build' if args.skip_build else ''}{' --no-arm64' if not args.arm64 and not args.quick else ''}"
             f"{' --x86-target-dir ' + os.path.relpath(X86_TARGET, ROOT) if X86_TARGET != ROOT / 'target' else ''}`"
             f"{' --pairs ' + str(args.pairs) if args.pairs != (10 if args.quick else 30) else ''}"
             f" ({args.pairs} pairs per cold-start row, {elapsed:.0f} s). Method: benches/README.md. Goals: DESIGN.md §6.")
    L.append("")

    L.append("## 1. Binary size (stripped; goal ≤ 8 MB each)")
    L.append("")
    L.append("| binary | arch | size | stripped | goal | note |")
    L.append("|---|---|---|---|---|---|")
    for s in sizes:
        goal = "–" if s.size is None or s.name == "hello" else ("met" if s.size <= SIZE_GOAL else "**missed**")
        L.append(f"| {s.name} | {s.arch} | {mib(s.size)} | {'–' if s.stripped is None else ('yes' if s.stripped else 'no')} | {goal} | {s.note} |")
    L.append("")

    L.extend(cold)
    L.append("## 3. AWS calls per run (emulator request counter)")
    L.append("")
    L.append("| function | case | calls | total | writes | goal | note |")
    L.append("|---|---|---|---|---|---|---|")
    for c in calls:
        if c.counts is None:
            L.append(f"| {c.function} | {c.case} | – | – | – | {c.goal or '–'} | not measured: {c.note} |")
            continue
        goal = f"{c.goal}: {'met' if c.met else '**missed**'}" if c.goal else "–"
        L.append(f"| {c.function} | {c.case} | {fmt_counts(c.counts)} | {sum(c.counts.values())} | {writes_of(c.counts)} | {goal} | {c.note} |")
    L.append("")

    L.append("## 4. Dependency hygiene (versions in `cargo tree -e normal -p <bin>`; goal: exactly one hyper and one rustls)")
    L.append("")
    crates = HYGIENE_CRATES
    L.append("| binary | " + " | ".join(crates) + " | goal |")
    L.append("|---|" + "---|" * len(crates) + "---|")
    for fn in FUNCTIONS + ["hello"]:
        cells, ok = [], True
        for crate in crates:
            row = next(r for r in deps if r[0] == fn and r[1] == crate)
            versions, err = row[2], row[3]
            cells.append(err if err else (", ".join(versions) if versions else "absent"))
            if crate in ("hyper", "rustls") and fn != "hello":
                ok = ok and len(versions) == 1
        goal = "–" if fn == "hello" else ("met" if ok else "**missed**")
        L.append(f"| {fn} | " + " | ".join(cells) + f" | {goal} |")
    L.append("")
    if fleet:
        L.extend(fleet)
    if notes:
        L.append("## Notes from this run")
        L.append("")
        for n in notes:
            L.append(f"- {n}")
        L.append("")
    return "\n".join(L)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="10 cold starts per binary instead of 20 and no arm64 build (the arm64 sizes are those of the last `make build`, if any)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="(hello, function) pairs per cold-start row, after --warmup pairs (default 30, --quick 10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up pairs before each cold-start row (default 3)")
    parser.add_argument("--skip-build", action="store_true", help="use the binaries already in target/")
    parser.add_argument("--no-arm64", dest="arm64", action="store_false", help="do not build the arm64 bootstraps")
    parser.add_argument("--out", default=str(ROOT / "benches" / "RESULTS.md"))
    parser.add_argument("--fleet", type=int, default=10_000,
                        help="instances of the coverage-read benchmark (benches/coverage_fleet.py); 0 skips it")
    parser.add_argument("--no-scale", dest="scale", action="store_false",
                        help="skip benches/scale.py (the 20,000-instance burst and the 5,000-instance report under rate limits, ~40 min)")
    parser.add_argument("--x86-target-dir", default=str(ROOT / "target"),
                        help="cargo target dir of the x86_64 release build (default: target/)")
    args = parser.parse_args()
    global X86_TARGET
    X86_TARGET = Path(args.x86_target_dir).resolve()
    if args.pairs is None:
        args.pairs = 10 if args.quick else 30
    if args.quick:
        args.arm64 = False
    if not VENV_PY.exists():
        say("benches/run.py needs the project venv: run `make venv` first")
        return 2
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_line()
    t_start = time.monotonic()
    (ROOT / "target" / "tmp").mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    problems: dict[str, str] = {}
    try:
        if not args.skip_build:
            problems = build(args.arm64)
        arm64_problem = problems.get("arm64") or (None if args.arm64 else "not built in this run (--quick / --no-arm64): sizes are of the existing target/lambda bootstraps")
        if arm64_problem:
            notes.append(f"arm64: {arm64_problem}")
        sizes = measure_sizes(arm64_problem)
        for fn in FUNCTIONS + ["hello"]:
            if not (X86_TARGET / "release" / fn).is_file():
                raise BenchError(f"{X86_TARGET / 'release' / fn} is missing: run without --skip-build")
        say("==> emulator + Runtime API")
        emu = Emulator()
        api = RuntimeApi()
        try:
            h = Harness(emu, api)
            import whole_process  # benches/, next to this file

            rel = X86_TARGET / "release"
            measured = whole_process.measure(h, rel, args.pairs, args.warmup)
            cold = whole_process.tables(measured, args.pairs, args.warmup)
            cold += whole_process.strace_table(whole_process.strace_init(h, rel))
            calls = aws_calls(h)
        finally:
            api.close()
            emu.stop()
        deps = hygiene()
        if args.fleet:
            import coverage_fleet  # benches/, next to this file

            cli = coverage_fleet.cli_path(None, args.skip_build, X86_TARGET)
            fleet = coverage_fleet.table(coverage_fleet.measure(args.fleet, cli))
        else:
            fleet = None
        if args.scale:
            import scale  # benches/, next to this file

            fleet = (fleet or []) + scale.measure(20_000, 50, 5_000, [60.0, 120.0], X86_TARGET, None)
    except (BenchError, subprocess.CalledProcessError) as e:
        say(f"benchmark failed: {e}")
        return 2
    import cost  # benches/, next to this file

    fleet = (fleet or []) + cost.table(whole_process.first_response_ms(measured), "this run")
    text = report(args, sizes, cold, calls, deps, notes, machine, started, time.monotonic() - t_start, fleet)
    say("")
    say(text)
    Path(args.out).write_text(text + "\n")
    say(f"\nwritten to {Path(args.out).relative_to(ROOT) if Path(args.out).is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
