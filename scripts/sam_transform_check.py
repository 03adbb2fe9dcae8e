#!/usr/bin/env python3
"""Run the AWS SAM transform on template.yaml offline and lint the result.

`sam validate --lint` lints the SAM template as written; it does not run the transform
that CloudFormation runs at deploy time, so some errors (an EventInvokeConfig destination
without `Type`, a policy template with a bad parameter, ...) only show up at `sam deploy`.
This runs the same transform (samtranslator, which aws-sam-cli ships) with a stub for the
managed-policy lookup, then runs cfn-lint on the generated CloudFormation.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cfnlint.decode import decode
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parent.parent


class ManagedPolicies:
    """The AWS managed policies SAM attaches for logging and X-Ray (no AWS call)."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
        }


def main() -> int:
    # The transform asks boto for the region (pseudo parameters); no AWS call is made.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template, matches = decode(str(ROOT / "template.yaml"))
    if template is None:
        for m in matches:
            print(m, file=sys.stderr)
        return 1
    template = json.loads(json.dumps(template, default=str))
    # `sam build` replaces the local CodeUri with the built artifact's S3 location.
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = "s3://bucket/key"
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    out = transform(template, {"AWS::Region": "us-east-1", "AWS::Partition": "aws"}, ManagedPolicies())
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(out, f, indent=1)
        path = f.name
    kinds = {}
    for r in out["Resources"].values():
        kinds[r["Type"]] = kinds.get(r["Type"], 0) + 1
    print(f"SAM transform OK: {len(out['Resources'])} CloudFormation resources")
    for k in sorted(kinds):
        print(f"  {kinds[k]:3d} {k}")
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), path], capture_output=True, text=True)
    if lint.returncode != 0:
        print(lint.stdout, lint.stderr, sep="\n", file=sys.stderr)
        print("cfn-lint found problems in the transformed template", file=sys.stderr)
        return 1
    print("cfn-lint on the transformed template: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
