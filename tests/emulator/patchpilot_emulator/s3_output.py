"""Run Command output objects in S3, written the way SSM Agent writes them.

Key layout (SSM API Reference: ListCommandInvocations example; CommandPlugin
``OutputS3KeyPrefix``): ``<prefix>/<command-id>/<instance-id>/<plugin dir>/stdout|stderr``,
e.g. ``runs/<cmd>/<i-…>/awsrunShellScript/PatchLinux/stdout`` for AWS-RunPatchBaseline on
Linux and ``…/awsrunPowerShellScript/PatchWindows/stdout`` on Windows.

``upload_output`` is the single place an invocation's output reaches S3: the agent uploads
with the *instance's* credentials, so a later IAM check (instance profile role + bucket
policy) belongs inside it.
"""

from __future__ import annotations

from typing import Any

from moto.s3.exceptions import MissingBucket
from moto.s3.models import s3_backends


def s3_backend_for(account_id: str) -> Any:
    return s3_backends[account_id]["global"]


def bucket_region(s3: Any, bucket: str) -> str | None:
    try:
        return str(s3.get_bucket(bucket).region_name)
    except MissingBucket:
        return None


def upload_output(
    backend: Any, bucket: str, key: str, body: str, instance_id: str, account: str, region: str
) -> tuple[bool, str | None]:
    """Writes one output object as the agent on ``instance_id`` would.

    The agent uploads with the *instance's* credentials (its instance profile or the Default
    Host Management role: SSM User Guide, "Setting up Systems Manager" / "Configure instance
    permissions"): modelled as the AWS managed policy AmazonSSMManagedInstanceCore, which has no
    S3 write, evaluated with the bucket policy (``enforce.instance_can_put_object``). So the
    upload works only where the bucket policy grants it, as in AWS.

    Returns (True, None) or (False, reason) where reason is the S3 error the agent reports."""
    from . import enforce

    try:
        backend.get_bucket(bucket)
    except MissingBucket:
        return False, "NoSuchBucket: The specified bucket does not exist"
    allowed, reason = enforce.instance_can_put_object(account, region, bucket, key)
    if not allowed:
        return False, f"AccessDenied: {reason}"
    backend.put_object(bucket, key, body.encode("utf-8"))
    return True, None


def output_url(region: str, bucket: str, key: str) -> str:
    # Regional virtual form as in the ListCommandInvocations example of the API reference:
    # https://s3.us-east-2.amazonaws.com/<bucket>/<prefix>/<command-id>/<instance-id>/...
    return f"https://s3.{region}.amazonaws.com/{bucket}/{key}"
