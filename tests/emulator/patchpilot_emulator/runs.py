"""Rate control and status rules of Run Command, as pure functions over a simulated clock.

Every rule names the page it follows (see also tests/emulator/README.md):

* "Run commands at scale" > "Using rate controls" (SSM User Guide, send-commands-multiple):
  ``max-concurrency`` / ``max-errors`` are a number or a percentage of the target set; "If
  you specify 3, the system stops sending the command when the fourth error is received. If
  you specify 0, [it] stops sending the command to additional managed nodes after the first
  error result is returned"; invocations already running are allowed to complete.
* "Understanding command statuses" (SSM User Guide, monitor-commands) and the
  ``StatusDetails`` members of Command / CommandInvocation (SSM API Reference): which
  invocation states count against MaxErrors (Failed, Execution Timed Out) and which don't
  (Delivery Timed Out, Undeliverable), and how the command status is aggregated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Detailed invocation states (StatusDetails) -> API Status enum (CommandInvocationStatus).
# Undeliverable -> Failed: as AWS answers (GetCommandInvocation {"Status": "Failed",
# "StatusDetails": "Undeliverable", "ResponseCode": -1}); Terminated -> Cancelled: "subsequent
# command invocations were canceled by the system" (README: verified only in the emulator).
INVOCATION_STATUS = {
    "Success": "Success",
    "Failed": "Failed",
    "ExecutionTimedOut": "TimedOut",
    "DeliveryTimedOut": "TimedOut",
    "Undeliverable": "Failed",
    "Terminated": "Cancelled",
    "Cancelled": "Cancelled",
}
# "Execution timeouts count against the MaxErrors limit"; "Invocation failures count against
# the MaxErrors limit"; delivery timeouts and undeliverable invocations don't.
COUNTS_AS_ERROR = ("Failed", "ExecutionTimedOut")
DELIVERED = ("Success", "Failed", "ExecutionTimedOut")

DEFAULT_MAX_CONCURRENCY = "50"  # SendCommand: "The default value is 50."
DEFAULT_MAX_ERRORS = "0"  # SendCommand: "The default value is 0."


def absolute(value: str | None, targets: int, default: str, minimum: int) -> int:
    """A MaxConcurrency / MaxErrors value as a number of targets.

    Percentages are of the command's target count, rounded down (AWS documents no rounding;
    rounding down is the stricter reading: fewer nodes in flight, fewer errors tolerated);
    MaxConcurrency is at least 1 so that a command can make progress."""
    text = (value or default).strip()
    if text.endswith("%"):
        number = math.floor(int(text[:-1]) * targets / 100)
    else:
        number = int(text)
    return max(number, minimum)


@dataclass
class Plan:
    """What happens to one instance when it gets the command."""

    detail: str  # Success | Failed | DeliveryTimedOut | Undeliverable
    seconds: float  # how long the invocation occupies a concurrency slot


@dataclass
class Result:
    detail: str
    start: float | None = None  # seconds after the command was sent
    end: float | None = None
    history: list[str] = field(default_factory=list)


def simulate(
    order: list[str],
    plans: dict[str, Plan],
    max_concurrency: str | None,
    max_errors: str | None,
    cancel_at: float | None = None,
) -> tuple[dict[str, Result], float, bool]:
    """Sends ``order`` one by one with at most MaxConcurrency in flight; stops sending once the
    errors exceed MaxErrors (never-sent invocations end ``Terminated``).  ``cancel_at``: a
    CancelCommand at that offset (maintenance window cutoff with CANCEL_TASK) cancels the
    running and the not yet sent invocations.

    Returns (results, end offset of the command, cancelled)."""
    n = len(order)
    concurrency = absolute(max_concurrency, n, DEFAULT_MAX_CONCURRENCY, 1)
    allowed = absolute(max_errors, n, DEFAULT_MAX_ERRORS, 0)
    results: dict[str, Result] = {}
    queue = list(order)
    running: list[tuple[float, str]] = []  # (end, instance)
    clock = 0.0
    errors = 0
    stopped = False
    cancelled = False
    while queue or running:
        while queue and not stopped and len(running) < concurrency:
            if cancel_at is not None and clock >= cancel_at:
                break
            iid = queue.pop(0)
            plan = plans[iid]
            history = ["Pending", "InProgress"]
            if plan.detail in ("DeliveryTimedOut", "Undeliverable"):
                # "Delayed: The system attempted to send the command to the managed node but
                # wasn't successful. The system retries again."
                history = ["Pending", "Delayed"]
            results[iid] = Result(plan.detail, start=clock, history=history)
            running.append((clock + plan.seconds, iid))
        if not running:
            break
        running.sort()
        next_end, iid = running[0]
        if cancel_at is not None and cancel_at < next_end:
            clock = max(clock, cancel_at)
            for _, rid in running:
                r = results[rid]
                r.detail, r.end = "Cancelled", clock
                r.history.append("Cancelled")
            running = []
            cancelled = True
            break
        running.pop(0)
        clock = next_end
        r = results[iid]
        r.end = clock
        r.history.append(r.detail)
        if r.detail in COUNTS_AS_ERROR:
            errors += 1
            if errors > allowed:
                stopped = True
    for iid in queue:
        detail = "Cancelled" if cancelled else "Terminated"
        results[iid] = Result(detail, start=None, end=clock, history=["Pending", detail])
    return results, clock, cancelled


def command_status(details: list[str], max_errors: str | None, cancelled: bool = False) -> tuple[str, str]:
    """(Status, StatusDetails) of a command from its invocations' StatusDetails.

    Command StatusDetails (SSM API Reference: Command): "Failed: The value of MaxErrors or more
    command invocations shows a status of Failed"; "Delivery Timed Out: The value of MaxErrors or
    more command invocations shows a status of Delivery Timed Out"; "Incomplete: The command was
    attempted on all managed nodes and one or more invocations doesn't have a value of Success
    but not enough invocations failed for the status to be Failed"; Undeliverable invocations
    "don't contribute to whether the parent command status is Success or Incomplete", and "if
    all invocations in a command have the status Undeliverable, then the command status
    returned is Failed" (User Guide: Understanding command statuses)."""
    if cancelled:
        return "Cancelled", "Cancelled"
    if not details:
        # User Guide command status "No Instances In Tag: The tag key-pair value or resource
        # group targeted by the command doesn't match any managed nodes."
        return "Failed", "NoInstancesInTag"
    threshold = max(absolute(max_errors, len(details), DEFAULT_MAX_ERRORS, 0), 1)
    failed = details.count("Failed")
    exec_timed_out = details.count("ExecutionTimedOut")
    delivery_timed_out = details.count("DeliveryTimedOut")
    if failed + exec_timed_out >= threshold:
        if failed >= exec_timed_out:
            return "Failed", "Failed"
        return "TimedOut", "ExecutionTimedOut"
    if delivery_timed_out >= threshold:
        return "TimedOut", "DeliveryTimedOut"
    if all(d == "Undeliverable" for d in details):
        return "Failed", "Failed"
    if any(d not in ("Success", "Undeliverable") for d in details):
        # Incomplete has no value of its own in the CommandStatus enum; the API Status is
        # Failed (README: verified only in the emulator).
        return "Failed", "Incomplete"
    return "Success", "Success"
