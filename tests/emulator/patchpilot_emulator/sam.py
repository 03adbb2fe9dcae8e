"""The AWS SAM transform, run offline exactly as ``scripts/sam_transform_check.py`` runs it.

``transformed_template(path, parameters)`` decodes the SAM template with cfn-lint's decoder
(the same YAML loader ``sam validate`` uses, short-form intrinsics included), stubs the local
``CodeUri`` the way ``sam build`` replaces it with an S3 location, and runs samtranslator's
``transform`` (what CloudFormation runs for ``Transform: AWS::Serverless-2016-10-31``) with a
stub for the managed-policy lookup, so no AWS call is made.  Results are cached by
(path, mtime, parameters); callers get a deep copy.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"

# The AWS managed policies SAM attaches for logging and X-Ray (name -> ARN), answered
# without calling iam:ListPolicies.
MANAGED_POLICY_ARNS = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
}


class ManagedPolicies:
    """Offline stand-in for samtranslator's managed-policy loader (no AWS call)."""

    def load(self) -> dict[str, str]:
        return dict(MANAGED_POLICY_ARNS)


_cache: dict[tuple[str, float, str], dict[str, Any]] = {}
_lock = threading.Lock()


def decode_template(template_path: str | os.PathLike[str]) -> dict[str, Any]:
    from cfnlint.decode import decode

    template, matches = decode(str(template_path))
    if template is None:
        raise ValueError("; ".join(str(m) for m in matches) or f"cannot decode {template_path}")
    return json.loads(json.dumps(template, default=str))


def transform_template(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """samtranslator's transform of an already decoded SAM template."""
    from samtranslator.translator.transform import transform

    # The transform asks boto for the region (pseudo parameters); no AWS call is made.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(template)
    # `sam build` replaces the local CodeUri with the built artifact's S3 location.
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = "s3://bucket/key"
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    params = {"AWS::Region": "us-east-1", "AWS::Partition": "aws"}
    params.update(parameters or {})
    return transform(template, params, ManagedPolicies())


def transformed_template(
    template_path: str | os.PathLike[str] | None = None, parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The CloudFormation template the SAM transform makes of ``template_path``."""
    path = Path(template_path or DEFAULT_TEMPLATE).resolve()
    key = (str(path), path.stat().st_mtime, json.dumps(parameters or {}, sort_keys=True))
    with _lock:
        cached = _cache.get(key)
    if cached is None:
        cached = transform_template(decode_template(path), parameters)
        with _lock:
            _cache[key] = cached
    return copy.deepcopy(cached)
