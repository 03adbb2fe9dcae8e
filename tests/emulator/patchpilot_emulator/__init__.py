"""patchpilot's extension of moto server (see tests/emulator/README.md).

``install()`` patches moto's own classes; it must run before the server starts.  Importing
this package sets ``MOTO_AMIS_PATH`` to the bundled AMI catalogue unless it is already set,
because moto reads that variable when ``moto.ec2`` is first imported.
"""

from __future__ import annotations

import os
from pathlib import Path

AMIS_PATH = str(Path(__file__).with_name("amis.json"))
os.environ.setdefault("MOTO_AMIS_PATH", AMIS_PATH)

__all__ = ["AMIS_PATH", "install"]


def install() -> None:
    from . import ec2_ext, hooks, serialize_ext, ssm_ext

    serialize_ext.install()
    ec2_ext.install()
    ssm_ext.install()
    hooks.install()
