"""Faults on every operation, and AWS's request-rate limits, for the stack's function keys.

Two test-only hooks, both off by default and cleared by ``POST /moto-api/reset``:

* **fault mix** (``POST /patchpilot-emulator/fault-mix``): each request signed with a
  ``deploy-stack`` key (a function's role) fails with probability ``Throttle`` (the service's
  throttling error), ``ServerError`` (its 5xx) or ``Reset`` (the connection is closed with a
  TCP reset and no response). The draw is seeded: the n-th request of a principal for a
  (service, action) gets the same fate in every run with the same seed, so a campaign is
  reproducible as long as each function's requests come in the same order. Faults are
  injected *before* the request reaches moto: a faulted request has no effect. (In AWS a 5xx
  or a reset may come after the request took effect; that case is not emulated: an SNS
  Publish whose answer is lost is then published twice by any client that retries, which no
  code on the client side can prevent.)
* **rate limits** (``POST /patchpilot-emulator/rate-limits``): token buckets per account and
  action, as EC2 documents them (request rate and, for RunInstances / TerminateInstances /
  StartInstances / StopInstances, resource rate); SSM's per-action buckets are an assumption
  (see ``SSM_BUCKET``). A request finding its bucket empty gets the service's throttling
  error.

The administrator key (``testing``: fixtures and the harness's own reads of the end state) is
never faulted nor throttled, unless ``Principals`` is ``all``.

Error codes and statuses (what each service answers when it throttles or fails):

* EC2: ``RequestLimitExceeded`` — "If you exceed an API throttling limit, you get the
  RequestLimitExceeded error code" (EC2 Developer Guide, "Request throttling for the Amazon
  EC2 API"), HTTP 503; ``InternalError`` 500 (EC2 API Reference, "Error codes for the Amazon
  EC2 API": server errors).
* SSM: ``ThrottlingException`` 400 and ``InternalServerError`` 500 (SSM API Reference,
  "Common Errors" and every operation's Errors; botocore's SSM model lists both).
* SNS: ``Throttling`` 400 (the query protocol's common error "ThrottlingException ... The
  request was denied due to request throttling", code ``Throttling`` on awsQuery services;
  Publish lists no throttling error of its own) and ``InternalError`` 500 (SNS API
  Reference, Publish errors: InternalError, HTTP 500).
* DynamoDB: ``ThrottlingException`` 400 and ``InternalServerError`` 500 (DynamoDB API
  Reference, "Common Errors"; PutItem/GetItem errors in botocore's model).
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from typing import Any, Mapping

from . import stack
from .ssm_ext import SSMError

_lock = threading.Lock()

# service -> (throttling code, status), (server error code, status)
THROTTLE: dict[str, tuple[str, int]] = {
    "ec2": ("RequestLimitExceeded", 503),
    "ssm": ("ThrottlingException", 400),
    "sns": ("Throttling", 400),
    "dynamodb": ("ThrottlingException", 400),
    # S3 API Reference, "Error responses" (list of error codes): SlowDown 503, InternalError 500.
    "s3": ("SlowDown", 503),
}
SERVER_ERROR: dict[str, tuple[str, int]] = {
    "ec2": ("InternalError", 500),
    "ssm": ("InternalServerError", 500),
    "sns": ("InternalError", 500),
    "dynamodb": ("InternalServerError", 500),
    "s3": ("InternalError", 500),
}
# Any other service: the common errors of the AWS APIs ("ThrottlingException" 400,
# "InternalFailure" 500; e.g. SSM API Reference, "Common Errors").
DEFAULT_THROTTLE = ("ThrottlingException", 400)
DEFAULT_SERVER_ERROR = ("InternalFailure", 500)


def throttle_error(service: str) -> tuple[str, int]:
    return THROTTLE.get(service, DEFAULT_THROTTLE)


def server_error(service: str) -> tuple[str, int]:
    return SERVER_ERROR.get(service, DEFAULT_SERVER_ERROR)


class ResetConnection(ConnectionResetError):
    """Raised after the client socket was closed with a TCP reset: werkzeug's request handler
    treats a ConnectionError as a dropped connection and writes nothing more."""


def reset_connection(environ: Mapping[str, Any]) -> None:
    """End the request's connection without a response, then unwind the request.

    ``shutdown`` ends the connection at once (the client reads end-of-stream where the answer
    should be); with SO_LINGER 0 the server's final close then sends a TCP RST. (A plain
    ``close`` would not: werkzeug's reader and writer still hold the socket's descriptor.)"""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ResetConnection("connection reset by the emulator's fault mix")


# --- fault mix ---------------------------------------------------------------------------------

_mix: dict[str, Any] | None = None
_mix_counters: dict[tuple[str, str, str], int] = {}
_mix_stats: dict[str, Any] = {}


def _empty_stats() -> dict[str, Any]:
    return {"Requests": 0, "Throttle": 0, "ServerError": 0, "Reset": 0, "ByAction": {}, "ByPrincipal": {}}


def _probability(body: Mapping[str, Any], key: str) -> float:
    value = body.get(key, 0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise SSMError("ValidationException", f"'{key}' must be a number from 0 to 1, got {value!r}")
    return float(value)


def configure_mix(body: Mapping[str, Any]) -> dict[str, Any]:
    """Start (or replace) the fault mix; ``{"Enabled": false}`` stops it. Counters restart."""
    global _mix
    enabled = body.get("Enabled", True)
    if not isinstance(enabled, bool):
        raise SSMError("ValidationException", "'Enabled' must be true or false")
    mix = {
        "Seed": body.get("Seed", 0),
        "Throttle": _probability(body, "Throttle"),
        "ServerError": _probability(body, "ServerError"),
        "Reset": _probability(body, "Reset"),
        "Principals": body.get("Principals", "functions"),
    }
    if not isinstance(mix["Seed"], (int, str)) or isinstance(mix["Seed"], bool):
        raise SSMError("ValidationException", "'Seed' must be an integer or a string")
    if mix["Principals"] not in ("functions", "all"):
        raise SSMError("ValidationException", "'Principals' must be 'functions' or 'all'")
    if mix["Throttle"] + mix["ServerError"] + mix["Reset"] > 1:
        raise SSMError("ValidationException", "'Throttle' + 'ServerError' + 'Reset' must not exceed 1")
    with _lock:
        _mix = mix if enabled else None
        _mix_counters.clear()
        _mix_stats.clear()
        _mix_stats.update(_empty_stats())
    return mix_report()


def mix_report() -> dict[str, Any]:
    with _lock:
        stats = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (_mix_stats or _empty_stats()).items()}
        return {"Enabled": _mix is not None, "Mix": dict(_mix) if _mix else None, **stats}


def _principal(environ: Mapping[str, Any]) -> dict[str, Any] | None:
    """The deploy-stack key's entry (role name, account), None for the administrator."""
    from .enforce import access_key_of

    key = access_key_of(environ)
    return stack.principal_for_key(key) if key else None


def _subject(environ: Mapping[str, Any], setting: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
    """(whether a hook's ``setting`` applies to this request, the caller's key entry)."""
    if setting is None:
        return False, None
    entry = _principal(environ)
    return entry is not None or setting["Principals"] == "all", entry


def _draw(seed: Any, principal: str, service: str, action: str, n: int) -> float:
    digest = hashlib.sha256(f"{seed}|{principal}|{service}|{action}|{n}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def mix_fault(environ: Mapping[str, Any], service: str, action: str) -> str | None:
    """``"Throttle"``, ``"ServerError"``, ``"Reset"`` or None for this request."""
    applies, entry = _subject(environ, _mix)
    if not applies:
        return None
    principal = str(entry["role_name"]) if entry else "administrator"
    with _lock:
        mix = _mix
        if mix is None:
            return None
        counter = (principal, service, action)
        n = _mix_counters.get(counter, 0)
        _mix_counters[counter] = n + 1
        u = _draw(mix["Seed"], principal, service, action, n)
        kind = None
        if u < mix["Throttle"]:
            kind = "Throttle"
        elif u < mix["Throttle"] + mix["ServerError"]:
            kind = "ServerError"
        elif u < mix["Throttle"] + mix["ServerError"] + mix["Reset"]:
            kind = "Reset"
        _mix_stats["Requests"] += 1
        if kind:
            _mix_stats[kind] += 1
            by_action = _mix_stats["ByAction"].setdefault(f"{service}:{action}", {})
            by_action[kind] = by_action.get(kind, 0) + 1
            by_principal = _mix_stats["ByPrincipal"].setdefault(principal, {})
            by_principal[kind] = by_principal.get(kind, 0) + 1
        return kind


# --- token buckets -----------------------------------------------------------------------------

# "Request throttling for the Amazon EC2 API" (EC2 Developer Guide): request token buckets per
# API action (each API is evaluated individually, one token per request); (capacity, refill/s).
EC2_NON_MUTATING = (100, 20)
# DescribeInstances, DescribeInstanceStatus, ... "when requested without specifying either
# pagination or a filter, use tokens from a smaller token bucket".
EC2_UNFILTERED = (50, 10)
EC2_UNFILTERED_ACTIONS = {
    "DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces", "DescribeSecurityGroups",
    "DescribeSnapshots", "DescribeSpotInstanceRequests", "DescribeVolumes",
}  # fmt: skip
EC2_MUTATING = (50, 5)
EC2_UNCATEGORIZED = {
    "CreateTags": (100, 10),
    "DeleteTags": (100, 10),
    "RunInstances": (5, 2),
    "StartInstances": (5, 2),
    "TerminateInstances": (100, 5),
}
# Resource token buckets: one token per instance ("Resource token bucket sizes and refill rates").
EC2_RESOURCE = {
    "RunInstances": (1000, 2),
    "TerminateInstances": (1000, 20),
    "StartInstances": (1000, 2),
    "StopInstances": (1000, 20),
}
# Systems Manager publishes no per-action request rate for the actions patchpilot calls
# (DescribeInstanceInformation, ListCommandInvocations, DescribeInstancePatchStates,
# maintenance-window actions...): it answers ThrottlingException ("Rate exceeded") when a
# per-account rate is exceeded. The emulator assumes a bucket of 20 tokens refilled at 10 per
# second per action, which is an assumption, listed in the README's "verified only in the
# emulator" table; a caller may set other numbers per action ("Buckets").
SSM_BUCKET = (20, 10)

_rate: dict[str, Any] | None = None
_buckets: dict[tuple[str, ...], list[float]] = {}
_rate_stats: dict[str, Any] = {}


def configure_rate_limits(body: Mapping[str, Any]) -> dict[str, Any]:
    """``{"Enabled": true, "Principals": "functions"|"all", "Buckets": {"ssm:SendCommand":
    [capacity, refill_per_second], ...}}``: start (or stop) the token buckets; all buckets
    start full."""
    global _rate
    enabled = body.get("Enabled", True)
    if not isinstance(enabled, bool):
        raise SSMError("ValidationException", "'Enabled' must be true or false")
    principals = body.get("Principals", "functions")
    if principals not in ("functions", "all"):
        raise SSMError("ValidationException", "'Principals' must be 'functions' or 'all'")
    overrides: dict[str, tuple[float, float]] = {}
    for name, value in (body.get("Buckets") or {}).items():
        if (
            ":" not in name
            or not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise SSMError("ValidationException", f"bucket {name!r}: expected 'service:Action': [capacity, refill per second] > 0")
        overrides[name] = (float(value[0]), float(value[1]))
    with _lock:
        _rate = {"Principals": principals, "Buckets": overrides} if enabled else None
        _buckets.clear()
        _rate_stats.clear()
        _rate_stats.update({"Requests": 0, "Throttled": 0, "ByAction": {}})
    return rate_report()


def rate_report() -> dict[str, Any]:
    with _lock:
        stats = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (_rate_stats or {"Requests": 0, "Throttled": 0, "ByAction": {}}).items()}
        return {"Enabled": _rate is not None, **stats}


def _ec2_paginated_or_filtered(form: Mapping[str, list[str]]) -> bool:
    return any(k.startswith("Filter.") or k in ("MaxResults", "NextToken") for k in form)


def _request_buckets(service: str, action: str, form: Mapping[str, list[str]]) -> list[tuple[str, tuple[float, float], int]]:
    """[(bucket name, (capacity, refill), tokens this request takes)]: the request bucket
    first, then EC2's resource bucket where the action has one."""
    if service == "ec2":
        if action in EC2_UNCATEGORIZED:
            buckets = [(f"ec2:{action}", EC2_UNCATEGORIZED[action], 1)]
        elif action.startswith(("Describe", "List", "Search", "Get")):
            if action in EC2_UNFILTERED_ACTIONS and not _ec2_paginated_or_filtered(form):
                buckets = [(f"ec2:{action}:unfiltered", EC2_UNFILTERED, 1)]
            else:
                buckets = [(f"ec2:{action}", EC2_NON_MUTATING, 1)]
        else:
            buckets = [(f"ec2:{action}", EC2_MUTATING, 1)]
        if action in EC2_RESOURCE:
            if action == "RunInstances":
                count = int((form.get("MaxCount") or ["1"])[0] or 1)
            else:
                count = sum(1 for k in form if k.startswith("InstanceId."))
            buckets.append((f"ec2:{action}:resource", EC2_RESOURCE[action], max(count, 1)))
        return buckets
    if service == "ssm":
        return [(f"ssm:{action}", SSM_BUCKET, 1)]
    return []


def rate_limited(environ: Mapping[str, Any], service: str, action: str, form: Mapping[str, list[str]]) -> bool:
    """True when this request finds one of its buckets short of tokens (it then takes none)."""
    applies, entry = _subject(environ, _rate)
    if not applies:
        return False
    account = str(entry["account"]) if entry else "administrator"
    wanted = _request_buckets(service, action, form)
    if not wanted:
        return False
    now = time.monotonic()
    with _lock:
        rate = _rate
        if rate is None:
            return False
        _rate_stats["Requests"] += 1
        states = []
        for i, (name, default, cost) in enumerate(wanted):
            # An override names the action ("ec2:CreateTags") and sets its request bucket.
            capacity, refill = rate["Buckets"].get(f"{service}:{action}", default) if i == 0 else default
            state = _buckets.setdefault((account, name), [capacity, now])
            tokens = min(capacity, state[0] + (now - state[1]) * refill)
            state[0], state[1] = tokens, now
            states.append((state, cost))
        if any(state[0] < cost for state, cost in states):
            _rate_stats["Throttled"] += 1
            key = f"{service}:{action}"
            _rate_stats["ByAction"][key] = _rate_stats["ByAction"].get(key, 0) + 1
            return True
        for state, cost in states:
            state[0] -= cost
        return False


def reset() -> None:
    global _mix, _rate
    with _lock:
        _mix = None
        _mix_counters.clear()
        _mix_stats.clear()
        _rate = None
        _buckets.clear()
        _rate_stats.clear()
