"""What running patchpilot costs per month, for fleets of 1,000, 10,000 and 50,000 instances.

Usage: .venv/bin/python benches/cost.py [--auto-tagger-ms MS] [--baseline-sync-ms MS] [--run-notifier-ms MS]

`benches/run.py` calls `table()` with the durations it has just measured (init + first
response, whole process, medians); run alone, this prints the table with the durations recorded
in benches/RESULTS.md. The model, its assumptions and the prices are below, each in one place.

Lambda bills the configured memory (template.yaml's MemorySize) × the billed duration, init
included for a custom runtime (`provided.al2023`), plus the requests. A function's billed
duration is modelled as: the measured local duration of the reference scenario (an upper bound:
the emulator answers slower than AWS) + every API call beyond that scenario's × an assumed
in-Region call latency (calls are sequential). The calls per run come from the adapters' own
counts (`patchpilot::aws::runs`, `coverage`, benches/RESULTS.md §3 and §5).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

# --- list prices: US East (N. Virginia), USD, read 2026-12-01 --------------------------------
# https://aws.amazon.com/lambda/pricing/ : Arm, first 7.5 billion GB-s/month; requests.
LAMBDA_ARM_PER_GB_S = 0.0000133334
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
# https://aws.amazon.com/sns/pricing/ : standard topic publishes, each 64 KB chunk of a payload
# is billed as one request; email/email-JSON deliveries.
SNS_PER_PUBLISH_CHUNK = 0.50 / 1_000_000
SNS_PER_EMAIL = 2.00 / 100_000
# https://aws.amazon.com/dynamodb/pricing/on-demand/ : standard table class.
DDB_PER_WRU = 0.625 / 1_000_000
DDB_PER_RRU = 0.125 / 1_000_000
# https://aws.amazon.com/s3/pricing/ : S3 Standard, first 50 TB/month.
S3_PER_PUT = 0.005 / 1000
S3_PER_GET = 0.0004 / 1000
S3_PER_GB_MONTH = 0.023
# https://aws.amazon.com/systems-manager/pricing/ : Patch Manager, maintenance windows, Run
# Command and the standard-throughput API calls patchpilot makes cost nothing for EC2 instances
# (and for up to 1,000 standard-tier on-premises nodes per account and Region). Advanced-tier
# on-premises nodes (more than 1,000, or Session Manager / Microsoft application patching on
# them) are billed per node-hour by Systems Manager, whatever patches them: left out here.

# Fixed costs of the stack, outside the table: https://aws.amazon.com/kms/pricing/ (a customer
# managed key), https://aws.amazon.com/cloudwatch/pricing/ (standard-resolution alarm).
KMS_KEY_MONTH = 1.00
KMS_PER_10K_REQUESTS = 0.03
ALARM_MONTH = 0.10
ALARMS = 7  # template.yaml: AWS::CloudWatch::Alarm resources

# --- assumptions ----------------------------------------------------------------------------
MEMORY_MB = {"auto-tagger": 128, "baseline-sync": 256, "run-notifier": 256}  # template.yaml
LAUNCHES_PER_INSTANCE_PER_DAY = 0.05  # launches and restarts: 5 % of the fleet a day
EVENTS_PER_LAUNCH = 2  # EC2 state-change `pending` and `running`; the tagger's own tags trigger nothing
SYNCS_PER_DAY = 1  # template.yaml SyncSchedule default rate(1 day)
POLICY_CHANGES_PER_MONTH = 4  # each one more sync
WINDOWS_PER_MONTH = 2  # the reference policy: test on the 1st Saturday, prod on the 3rd, half the fleet each
TASKS_PER_WINDOW = 2  # batch 1 (Linux), batch 2 (Windows): one command-status event each, ignored
EMAIL_SUBSCRIBERS = 3
COVERAGE_NOTICES_PER_MONTH = 4  # published only when the set of uncovered hosts changes
CALL_LATENCY_MS = 30.0  # one AWS API call, same Region, sequential
DAYS_PER_MONTH = 30
OUTPUT_KB_PER_INSTANCE_RUN = 100  # Run Command stdout + stderr of AWS-RunPatchBaseline
PUTS_PER_INSTANCE_RUN = 2  # stdout and stderr objects, uploaded by each instance
OUTPUT_RETENTION_DAYS = 90  # template.yaml OutputRetentionDays default
REPORT_BYTES_PER_INSTANCE = 60  # one line per host in the mail; capped at SNS's 256 KB
SNS_MAX_BYTES = 256 * 1024
FLEETS = (1_000, 10_000, 50_000)

# The measured reference scenario of each duration (benches/RESULTS.md §2 and §3): its calls.
REFERENCE_CALLS = {"auto-tagger": 2, "baseline-sync": 9, "run-notifier": 17}
# Durations used when run alone: init + first response medians recorded in RESULTS.md.
DEFAULT_MS = {"auto-tagger": 30.0, "baseline-sync": 45.0, "run-notifier": 130.0}


@dataclass
class Month:
    fleet: int
    invocations: dict[str, float]
    gb_s: dict[str, float]
    lambda_usd: float
    sns_usd: float
    ddb_usd: float
    s3_usd: float

    @property
    def total(self) -> float:
        return self.lambda_usd + self.sns_usd + self.ddb_usd + self.s3_usd


def sync_calls(n: int) -> int:
    """One baseline-sync with nothing to change: the SSM reads of the reference second run
    (41, 12 baselines) + the tag sweep's DescribeInstances pages (1,000 ids) + the coverage
    read (`patchpilot::aws::coverage`: DescribeInstanceInformation and
    DescribeInstancePatchStates 50 a page, 2 × 6 OSes + 1) + GetItem of the coverage notice."""
    return 41 + math.ceil(n / 1000) + math.ceil(n / 50) * 2 + 13 + 1


def report_calls(n: int) -> int:
    """One window report of n instances (`patchpilot::aws::runs`: about 2 × n / 50 + a dozen)."""
    return 2 * math.ceil(n / 50) + 12


def month(n: int, measured_ms: dict[str, float]) -> Month:
    def billed_s(fn: str, calls: int) -> float:
        extra = max(0, calls - REFERENCE_CALLS[fn])
        return (measured_ms[fn] + extra * CALL_LATENCY_MS) / 1000

    launches = n * LAUNCHES_PER_INSTANCE_PER_DAY * DAYS_PER_MONTH
    syncs = SYNCS_PER_DAY * DAYS_PER_MONTH + POLICY_CHANGES_PER_MONTH
    per_window = n / 2
    inv = {
        "auto-tagger": launches * EVENTS_PER_LAUNCH,
        "baseline-sync": syncs,
        "run-notifier": WINDOWS_PER_MONTH * (1 + TASKS_PER_WINDOW),
    }
    seconds = {
        "auto-tagger": inv["auto-tagger"] * billed_s("auto-tagger", 2),
        "baseline-sync": syncs * billed_s("baseline-sync", sync_calls(n)),
        "run-notifier": WINDOWS_PER_MONTH * (billed_s("run-notifier", report_calls(int(per_window)))
                                             + TASKS_PER_WINDOW * billed_s("run-notifier", 3)),
    }
    gb_s = {fn: seconds[fn] * MEMORY_MB[fn] / 1024 for fn in seconds}
    lambda_usd = sum(gb_s.values()) * LAMBDA_ARM_PER_GB_S + sum(inv.values()) * LAMBDA_PER_REQUEST
    report_bytes = min(SNS_MAX_BYTES, 2048 + REPORT_BYTES_PER_INSTANCE * per_window)
    publishes = WINDOWS_PER_MONTH + COVERAGE_NOTICES_PER_MONTH
    chunks = WINDOWS_PER_MONTH * math.ceil(report_bytes / (64 * 1024)) + COVERAGE_NOTICES_PER_MONTH
    sns_usd = chunks * SNS_PER_PUBLISH_CHUNK + publishes * EMAIL_SUBSCRIBERS * SNS_PER_EMAIL
    # Idempotency: a report is claimed and completed (2 PutItem, items < 1 KB); each sync
    # reads the last coverage notice (1 strongly consistent GetItem) and writes it when changed.
    ddb_usd = (WINDOWS_PER_MONTH * 2 + COVERAGE_NOTICES_PER_MONTH) * DDB_PER_WRU + syncs * DDB_PER_RRU
    runs = WINDOWS_PER_MONTH * per_window  # instance patch runs a month
    stored_gb = runs * OUTPUT_KB_PER_INSTANCE_RUN / 1024 / 1024 * OUTPUT_RETENTION_DAYS / DAYS_PER_MONTH
    s3_usd = runs * PUTS_PER_INSTANCE_RUN * S3_PER_PUT + stored_gb * S3_PER_GB_MONTH
    return Month(n, inv, gb_s, lambda_usd, sns_usd, ddb_usd, s3_usd)


def usd(v: float) -> str:
    return f"${v:,.2f}" if v >= 0.01 else f"${v:.4f}"


def table(measured_ms: dict[str, float] | None = None, source: str = "") -> list[str]:
    ms = dict(DEFAULT_MS)
    ms.update({k: v for k, v in (measured_ms or {}).items() if v})
    rows = [month(n, ms) for n in FLEETS]
    L = ["## 6. What a fleet costs per month (AWS list prices, us-east-1, read 2026-12-01; benches/cost.py)", ""]
    L.append("| instances | invocations (tagger / sync / notifier) | Lambda GB-s | Lambda (arm64) | SNS | DynamoDB on-demand | S3 (Run Command output) | **total** | per 1,000 instances |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        inv = " / ".join(f"{r.invocations[f]:,.0f}" for f in ("auto-tagger", "baseline-sync", "run-notifier"))
        L.append(f"| {r.fleet:,} | {inv} | {sum(r.gb_s.values()):,.0f} | {usd(r.lambda_usd)} | {usd(r.sns_usd)} | "
                 f"{usd(r.ddb_usd)} | {usd(r.s3_usd)} | **{usd(r.total)}** | {usd(r.total / r.fleet * 1000)} |")
    L.append("")
    L.append("Durations (init + first response, whole process, local medians" + (f"; {source}" if source else "")
             + f"): auto-tagger {ms['auto-tagger']:.1f} ms, baseline-sync {ms['baseline-sync']:.1f} ms (dry run), "
             f"run-notifier {ms['run-notifier']:.1f} ms (12-instance report); each call beyond the measured "
             f"scenario's adds {CALL_LATENCY_MS:.0f} ms (a sync of 50,000 instances: {sync_calls(50_000):,} calls; "
             f"a report of 25,000: {report_calls(25_000):,}). Memory as configured in template.yaml "
             f"(128 / 256 / 256 MB; the measured peak RSS is below 16 MiB). Every invocation is counted as a cold "
             f"start (init billed), an upper bound.")
    L.append("")
    L.append(f"Assumptions: launches (and restarts) per day = {LAUNCHES_PER_INSTANCE_PER_DAY:.0%} of the fleet, "
             f"{EVENTS_PER_LAUNCH} tagger events each (`pending`, `running`); syncs = {SYNCS_PER_DAY} a day "
             f"(template.yaml `rate(1 day)`) + {POLICY_CHANGES_PER_MONTH} policy changes a month; "
             f"windows = {WINDOWS_PER_MONTH} a month (test 1st Saturday, prod 3rd, each reaching half the fleet, "
             f"{TASKS_PER_WINDOW} tasks whose command events the notifier ignores); {EMAIL_SUBSCRIBERS} email "
             f"subscribers; {COVERAGE_NOTICES_PER_MONTH} coverage notices a month; Run Command output "
             f"{OUTPUT_KB_PER_INSTANCE_RUN} KB in {PUTS_PER_INSTANCE_RUN} objects per instance and run, kept "
             f"{OUTPUT_RETENTION_DAYS} days (template.yaml default). No free tier deducted (Lambda's 400,000 GB-s "
             f"and 1 M requests a month, SNS's first 1 M publishes and 1,000 emails, would cover the smaller "
             f"fleets entirely). Not included: CloudWatch Logs ingestion, EventBridge (AWS service events and "
             f"scheduled rules on the default bus are free), data transfer, and Systems Manager's advanced-tier "
             f"on-premises nodes (see benches/cost.py). The stack's fixed costs, whatever the fleet, are larger "
             f"than all of the above: its KMS key (topic encryption) ${KMS_KEY_MONTH:.2f} a month plus "
             f"${KMS_PER_10K_REQUESTS:.2f} per 10,000 requests, and its {ALARMS} CloudWatch alarms "
             f"${ALARMS * ALARM_MONTH:.2f} a month.")
    L.append("")
    return L


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for fn in DEFAULT_MS:
        p.add_argument(f"--{fn}-ms", type=float, default=None, help=f"{fn}: init + first response, ms (default {DEFAULT_MS[fn]})")
    a = p.parse_args()
    measured = {fn: getattr(a, f"{fn.replace('-', '_')}_ms") for fn in DEFAULT_MS}
    print("\n".join(table(measured)))


if __name__ == "__main__":
    main()
