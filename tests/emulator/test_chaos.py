"""The fault mix and the request-rate token buckets (patchpilot_emulator/chaos.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import Emulator  # noqa: E402
from test_iam import UBUNTU_AMI, client, deploy  # noqa: E402


def _fates(emu: Emulator, ssm: Any, n: int) -> list[str]:
    out = []
    for _ in range(n):
        try:
            ssm.describe_patch_baselines(MaxResults=1)
            out.append("ok")
        except ClientError as exc:
            r = exc.response
            out.append(f"{r['Error']['Code']} {r['ResponseMetadata']['HTTPStatusCode']}")
        except (ConnectionClosedError, EndpointConnectionError, ConnectionResetError):
            out.append("reset")
    return out


def test_fault_mix_is_seeded_uses_each_services_errors_and_spares_the_administrator(emu: Emulator) -> None:
    stack = deploy(emu)
    ssm = client(emu, "ssm", stack["Functions"]["baseline-sync"])
    mix = {"Seed": 7, "Throttle": 0.3, "ServerError": 0.1, "Reset": 0.05}
    status, _ = emu.post("/patchpilot-emulator/fault-mix", mix)
    assert status == 200
    first = _fates(emu, ssm, 200)
    # The administrator (fixtures, the harness's own reads) is never faulted.
    admin = emu.client("ssm")
    for _ in range(30):
        admin.describe_patch_baselines(MaxResults=1)
    report = emu.get("/patchpilot-emulator/fault-mix")
    assert report["Requests"] == 200
    assert report["Throttle"] == first.count("ThrottlingException 400")
    assert report["ServerError"] == first.count("InternalServerError 500")
    assert report["Reset"] == first.count("reset")
    # Roughly the mix asked for (200 draws), and every kind happens.
    assert 40 <= report["Throttle"] <= 80 and 8 <= report["ServerError"] <= 35 and 2 <= report["Reset"] <= 20, report
    # Same seed, same fates; another seed, other fates.
    emu.post("/patchpilot-emulator/fault-mix", mix)
    assert _fates(emu, ssm, 200) == first
    emu.post("/patchpilot-emulator/fault-mix", {**mix, "Seed": 8})
    assert _fates(emu, ssm, 200) != first

    # EC2 throttles with RequestLimitExceeded 503, SNS with Throttling 400.
    emu.post("/patchpilot-emulator/fault-mix", {"Seed": 1, "Throttle": 1.0})
    ec2 = client(emu, "ec2", stack["Functions"]["auto-tagger"])
    with pytest.raises(ClientError) as exc:
        ec2.describe_instances()
    assert (exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("RequestLimitExceeded", 503)
    sns = client(emu, "sns", stack["Functions"]["run-notifier"])
    with pytest.raises(ClientError) as exc:
        sns.publish(TopicArn=stack["Outputs"]["ReportTopicArn"], Message="m")
    assert (exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("Throttling", 400)
    # S3 answers its REST XML <Error>: SlowDown 503 (an SDK must parse it to retry it).
    s3 = client(emu, "s3", stack["Functions"]["run-notifier"])
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=stack["Outputs"]["OutputBucketName"], Key="patchpilot/promotion/x", Body=b"x")
    assert (exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("SlowDown", 503)
    assert exc.value.response["Error"]["Message"] == "Rate exceeded"
    emu.post("/patchpilot-emulator/fault-mix", {"Seed": 1, "ServerError": 1.0})
    with pytest.raises(ClientError) as exc:
        ec2.describe_instances()
    assert (exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalError", 500)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=stack["Outputs"]["OutputBucketName"], Key="patchpilot/promotion/x")
    assert (exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalError", 500)

    emu.post("/patchpilot-emulator/fault-mix", {"Enabled": False})
    ec2.describe_instances()
    status, body = emu.post("/patchpilot-emulator/fault-mix", {"Throttle": 0.9, "Reset": 0.2})
    assert status == 400 and "must not exceed 1" in body["message"]
    emu.reset()
    assert emu.get("/patchpilot-emulator/fault-mix")["Enabled"] is False


def test_a_reset_fault_closes_the_connection_without_an_answer(emu: Emulator) -> None:
    stack = deploy(emu)
    ssm = client(emu, "ssm", stack["Functions"]["baseline-sync"])
    emu.post("/patchpilot-emulator/fault-mix", {"Seed": 1, "Reset": 1.0})
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        ssm.describe_patch_baselines()
    # The request never reached the service: the server is fine and answers the next one.
    emu.post("/patchpilot-emulator/fault-mix", {"Enabled": False})
    ssm.describe_patch_baselines()


def test_ec2_token_buckets_throttle_create_tags_after_100_and_refill_10_per_second(emu: Emulator) -> None:
    stack = deploy(emu)
    instance = emu.client("ec2").run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2 = client(emu, "ec2", stack["Functions"]["auto-tagger"])
    status, _ = emu.post("/patchpilot-emulator/rate-limits", {"Enabled": True})
    assert status == 200
    tag = {"Resources": [instance], "Tags": [{"Key": "Patch Group", "Value": "patch_test_0600_batch_1"}]}
    done = 0
    started = time.monotonic()
    with pytest.raises(ClientError) as exc:
        for _ in range(1000):
            ec2.create_tags(**tag)
            done += 1
    # 100 tokens, plus 10 per second refilled while the loop ran (however slow the machine).
    assert 100 <= done <= 100 + 10 * (time.monotonic() - started) + 1, done
    assert (exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("RequestLimitExceeded", 503)
    # DescribeInstances has its own bucket; the administrator is not limited.
    ec2.describe_instances(InstanceIds=[instance])
    for _ in range(120):
        emu.client("ec2").create_tags(**tag)
    report = emu.get("/patchpilot-emulator/rate-limits")
    assert report["Throttled"] == 1 and report["ByAction"] == {"ec2:CreateTags": 1}


def test_run_instances_spends_one_resource_token_per_instance(emu: Emulator) -> None:
    emu.post("/patchpilot-emulator/rate-limits", {"Enabled": True, "Principals": "all"})
    ec2 = emu.client("ec2")
    ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1000, MaxCount=1000)
    with pytest.raises(ClientError) as exc:
        ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=50, MaxCount=50)
    assert exc.value.response["Error"]["Code"] == "RequestLimitExceeded"


def test_ssm_buckets_can_be_set_per_action(emu: Emulator) -> None:
    stack = deploy(emu)
    ssm = client(emu, "ssm", stack["Functions"]["baseline-sync"])
    emu.post("/patchpilot-emulator/rate-limits", {"Buckets": {"ssm:DescribePatchBaselines": [3, 0.001]}})
    for _ in range(3):
        ssm.describe_patch_baselines()
    with pytest.raises(ClientError) as exc:
        ssm.describe_patch_baselines()
    assert (exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("ThrottlingException", 400)
    ssm.describe_maintenance_windows()  # another action, another bucket
    status, body = emu.post("/patchpilot-emulator/rate-limits", {"Buckets": {"DescribePatchBaselines": [3, 1]}})
    assert status == 400 and "service:Action" in body["message"]
