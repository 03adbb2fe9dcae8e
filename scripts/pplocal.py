"""Local harness shared by the demo and the Lambda invoke check.

* :class:`Emulator` — the local AWS (moto server + patchpilot's extension, ``tests/emulator``)
  on a free loopback port, with boto3 clients and the extension's test hooks.
* :class:`LambdaWatch` — ``cargo lambda watch`` (the Lambda runtime API emulator) on a free
  loopback port, running the real function binaries with the emulator's endpoint in their
  environment; :meth:`LambdaWatch.invoke` is ``cargo lambda invoke``.
* :class:`Functions` — the three functions of a stack deployed into the emulator
  (:meth:`Emulator.deploy_stack`), each in its own ``cargo lambda watch`` with exactly its
  environment from template.yaml and its own access key: every AWS request a function makes is
  authorized against its role, as in AWS.

Everything started here is stopped by :class:`Stack` on exit, on error and on SIGINT/SIGTERM
(each process runs in its own process group, which is signalled by its id).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
EMULATOR_DIR = ROOT / "tests" / "emulator"
AMIS_PATH = EMULATOR_DIR / "patchpilot_emulator" / "amis.json"
FUNCTIONS = ("auto-tagger", "baseline-sync", "run-notifier")
REGION = "us-east-1"
ACCOUNT = "123456789012"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool_env() -> dict[str, str]:
    """Environment for cargo / cargo-lambda: the venv first on PATH (cargo-lambda, zig)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("CARGO_TERM_COLOR", "never")
    return env


class HarnessError(RuntimeError):
    """Something the harness started did not behave; the message says what and where."""


class Stack:
    """Owns every process the harness starts; stops them all, always."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs: list[Path] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="patchpilot-local-"))
        self._old_handlers: dict[int, Any] = {}

    def __enter__(self) -> "Stack":
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_all()
        raise SystemExit(128 + signum)

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        handle = open(log, "wb")  # noqa: SIM115 - closed when the process is stopped
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        self.procs.append((name, proc))
        return proc

    def log_of(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def stop_all(self) -> None:
        while self.procs:
            name, proc = self.procs.pop()
            if proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


class Emulator:
    """moto server + patchpilot's extension on 127.0.0.1:<free port>."""

    def __init__(self, stack: Stack) -> None:
        python = VENV_BIN / "python"
        if not python.exists():
            raise HarnessError(f"{python} is missing: run `make venv` first")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(EMULATOR_DIR), MOTO_AMIS_PATH=str(AMIS_PATH), **CREDENTIALS)
        self.proc = stack.start(
            "emulator",
            [str(python), "-m", "patchpilot_emulator", "--host", "127.0.0.1", "--port", str(self.port), "--exit-with-stdin"],
            env,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).read()
                break
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise HarnessError(
                        f"the emulator did not start on {self.endpoint}:\n{stack.log_of('emulator')[-3000:]}"
                    ) from None
                time.sleep(0.2)
        self._clients: dict[str, Any] = {}

    def env(self) -> dict[str, str]:
        """What a process needs to talk to the emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **CREDENTIALS,
        }

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint,
                region_name=REGION,
                config=Config(retries={"total_max_attempts": 2, "mode": "standard"}),
                **{k.lower(): v for k, v in CREDENTIALS.items()},
            )
        return self._clients[service]

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        data = None if method == "GET" else json.dumps(body or {}).encode()
        request = urllib.request.Request(
            self.endpoint + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            raise HarnessError(f"emulator {method} {path} answered {err.code}: {err.read().decode(errors='replace')}") from None

    def deploy_stack(self, name: str = "patchpilot", **options: Any) -> dict[str, Any]:
        """template.yaml deployed as stack `name` (see tests/emulator/README.md, deploy-stack)."""
        return dict(self.hook("deploy-stack", {"StackName": name, **options}))

    def function_env(self, deployed: dict[str, Any], function: str) -> dict[str, str]:
        """What a function's process needs: the emulator endpoint, the function's own access
        key (its role), and its environment exactly as template.yaml resolves it."""
        f = deployed["Functions"][function]
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": f["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": f["SecretAccessKey"],
            **f["Environment"],
        }

    def iam_cost(self) -> str:
        """What IAM enforcement cost this run, from the emulator's own accounting."""
        stats = self._request("GET", "/patchpilot-emulator/iam/stats", None)
        n, seconds = int(stats.get("Requests", 0)), float(stats.get("Seconds", 0.0))
        per = seconds / n * 1000 if n else 0.0
        return f"IAM checks: {n} requests, {seconds * 1000:.0f} ms in all ({per:.2f} ms each)"

    def hook(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request("POST", "/patchpilot-emulator/" + path, body)

    def request_log(self) -> dict[str, int]:
        """``{"ssm:CreatePatchBaseline": n, ...}`` since the last reset."""
        return dict(self._request("GET", "/patchpilot-emulator/request-log", None).get("counts", {}))

    def reset_request_log(self) -> None:
        self.hook("request-log/reset")


WRITE_PREFIXES = (
    "Create", "Update", "Delete", "Put", "Register", "Deregister", "Add", "Remove", "Send",
    "Modify", "Start", "Stop", "Terminate", "Run", "Publish", "Tag", "Untag", "Associate",
    "Disassociate", "Attach", "Detach", "Set",
)  # fmt: skip


def writes(counts: dict[str, int]) -> dict[str, int]:
    """The write calls among request-log counts (service:Action -> n)."""
    return {k: v for k, v in counts.items() if k.split(":", 1)[-1].startswith(WRITE_PREFIXES)}


def build_functions() -> None:
    """Debug build of the function binaries (and the CLI) before `cargo lambda watch` starts.

    `cargo lambda watch` starts a function with `cargo run --bin <name>` from the workspace
    root: no package is named, so cargo unifies dependency features over the whole workspace.
    `cargo build --workspace --bins` asks for exactly that feature set, so the `cargo run`
    finds everything fresh. (Naming packages with `-p` would unify over those packages only
    and build the SDK a second time under another hash.)"""
    argv = ["cargo", "build", "--quiet", "--workspace", "--bins"]
    result = subprocess.run(argv, cwd=ROOT, env=tool_env(), check=False)
    if result.returncode != 0:
        raise HarnessError(f"`{' '.join(argv)}` failed (exit {result.returncode})")


@dataclass
class Invocation:
    ok: bool
    """The function answered (exit 0) rather than with an error."""
    output: str
    """What `cargo lambda invoke` printed (the response JSON, or the error)."""
    seconds: float

    def json(self) -> Any:
        return json.loads(self.output)


class LambdaWatch:
    """`cargo lambda watch` on 127.0.0.1:<free port>, functions talking to the emulator."""

    def __init__(self, stack: Stack, env: dict[str, str], name: str = "cargo-lambda-watch") -> None:
        self.stack = stack
        self.name = name
        self.port = free_port()
        full_env = tool_env()
        # A function never sees the administrator's credentials: only the key it is given.
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            full_env.pop(key, None)
        full_env.update(env)
        # Logs as JSON lines in the watch log; keep them readable for a person who opens it.
        full_env.setdefault("RUST_LOG", "info")
        self.proc = stack.start(
            name,
            [
                "cargo", "lambda", "watch", "--ignore-changes", "--quiet",
                "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
                # The first invoke of a function waits for its `cargo run` (a no-op after
                # build_functions, a rebuild if sources changed since).
                "--timeout", "600",
            ],
            full_env,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise HarnessError(
                        f"cargo lambda watch ({name}) did not start:\n" + stack.log_of(name)[-3000:]
                    ) from None
                time.sleep(0.2)

    def invoke(self, function: str, data_file: Path) -> Invocation:
        argv = [
            "cargo", "lambda", "invoke", function,
            "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
            "--data-file", str(data_file), "--output-format", "json",
        ]  # fmt: skip
        started = time.monotonic()
        result = subprocess.run(argv, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - started
        output = result.stdout.strip() if result.returncode == 0 else (result.stdout + result.stderr).strip()
        return Invocation(ok=result.returncode == 0, output=output, seconds=elapsed)

    def invoke_json(self, function: str, payload: Any, name: str) -> Invocation:
        path = self.stack.tmp / f"{name}.json"
        path.write_text(json.dumps(payload, indent=2))
        return self.invoke(function, path)


class Functions:
    """The three functions of a deployed stack, each in its own `cargo lambda watch` (they
    cannot share one: each needs its own credentials and environment, as in Lambda)."""

    def __init__(
        self, stack: Stack, emu: Emulator, deployed: dict[str, Any], overrides: dict[str, str] | None = None
    ) -> None:
        self.watches: dict[str, LambdaWatch] = {}
        for function in FUNCTIONS:
            env = emu.function_env(deployed, function)
            env.update(overrides or {})
            self.watches[function] = LambdaWatch(stack, env, name=f"cargo-lambda-watch-{function}")

    def describe(self) -> str:
        return ", ".join(f"{f} 127.0.0.1:{w.port}" for f, w in self.watches.items())

    def invoke(self, function: str, data_file: Path) -> Invocation:
        return self.watches[function].invoke(function, data_file)

    def invoke_json(self, function: str, payload: Any, name: str) -> Invocation:
        return self.watches[function].invoke_json(function, payload, name)


def say(msg: str = "") -> None:
    print(msg, flush=True)


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
