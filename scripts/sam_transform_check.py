#!/usr/bin/env python3
"""Run the AWS SAM transform on template.yaml offline and lint the result.

`sam validate --lint` lints the SAM template as written; it does not run the transform
that CloudFormation runs at deploy time, so some errors (an EventInvokeConfig destination
without `Type`, a policy template with a bad parameter, ...) only show up at `sam deploy`.
This runs the same transform (samtranslator, which aws-sam-cli ships) with a stub for the
managed-policy lookup, then runs cfn-lint on the generated CloudFormation.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One transform for this check and the emulator's deploy-stack: tests/emulator/patchpilot_emulator/sam.py.
sys.path.insert(0, str(ROOT / "tests" / "emulator"))

from patchpilot_emulator.sam import decode_template, transform_template  # noqa: E402


def main() -> int:
    try:
        template = decode_template(ROOT / "template.yaml")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    out = transform_template(template)
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
