"""The AWS SAM transform of template.yaml, run offline (shared by the lint scripts).

There is one transform in the repository: tests/emulator/patchpilot_emulator/sam.py, which the
emulator's deploy-stack also uses, so what the lint scripts check is what the tests deploy.
This module only adapts it to the scripts' error type.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
sys.path.insert(0, str(ROOT / "tests" / "emulator"))

from patchpilot_emulator.sam import decode_template, transform_template  # noqa: E402


class TemplateError(Exception):
    """template.yaml could not be parsed; the messages are cfn-lint's matches."""


def sam_transform(path: Path = TEMPLATE) -> dict:
    """The CloudFormation template (dict) the SAM transform makes of `path`."""
    try:
        template = decode_template(path)
    except ValueError as e:
        raise TemplateError(str(e)) from None
    return transform_template(template)
