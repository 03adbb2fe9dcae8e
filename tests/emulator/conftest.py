"""Starts the emulator once per pytest session on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(
            self.endpoint + path, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.endpoint + path, timeout=30) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(self.endpoint + "/moto-api/reset", data=b"", method="POST"), timeout=30
        ).read()

    def allow_instance_uploads(self, bucket: str, account: str = "123456789012") -> None:
        """Lets the account's instances upload Run Command output to ``bucket``: the SSM Agent
        uploads with the instance's credentials (AmazonSSMManagedInstanceCore has no S3
        write), so a bucket policy has to grant it, as template.yaml's does."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                    "Condition": {"StringEquals": {"aws:PrincipalAccount": account}},
                }
            ],
        }
        self.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    def client(self, service: str, validate: bool = True) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            config=Config(parameter_validation=validate, retries={"total_max_attempts": 1, "mode": "standard"}),
        )


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[key] = value
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(HERE))
    env.pop("MOTO_AMIS_PATH", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchpilot_emulator", "--port", str(port), "--exit-with-stdin"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).read()
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("patchpilot emulator did not start")
            time.sleep(0.2)
    try:
        yield Emulator(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def emu(emulator: Emulator) -> Emulator:
    emulator.reset()
    return emulator
