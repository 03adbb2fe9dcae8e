"""The AWS SAM transform of template.yaml, run offline (shared by the lint scripts).

Runs the transform CloudFormation runs at deploy time (samtranslator, which aws-sam-cli
ships) with a stub for the managed-policy lookup, so no AWS call is made.
"""
import json
import os
from pathlib import Path

from cfnlint.decode import decode
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class ManagedPolicies:
    """The AWS managed policies SAM attaches for logging and X-Ray (no AWS call)."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
        }


class TemplateError(Exception):
    """template.yaml could not be parsed; the messages are cfn-lint's matches."""


def sam_transform(path: Path = TEMPLATE) -> dict:
    """The CloudFormation template (dict) the SAM transform makes of `path`."""
    # The transform asks boto for the region (pseudo parameters); no AWS call is made.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template, matches = decode(str(path))
    if template is None:
        raise TemplateError("\n".join(str(m) for m in matches))
    template = json.loads(json.dumps(template, default=str))
    # `sam build` replaces the local CodeUri with the built artifact's S3 location.
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = "s3://bucket/key"
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    return transform(template, {"AWS::Region": "us-east-1", "AWS::Partition": "aws"}, ManagedPolicies())
