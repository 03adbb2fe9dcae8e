"""EC2 additions: PlatformDetails / UsageOperation on AMIs and on instances.

Follows "Amazon EC2 API Reference: Image" (PlatformDetails, UsageOperation, Platform) and
"Amazon EC2 API Reference: Instance" (PlatformDetails, UsageOperation, Platform = windows).
moto 5.2.5 serialises model objects by attribute name (XFormedAttributePicker), so setting
``platform_details`` / ``usage_operation`` on the objects is enough for DescribeImages and
DescribeInstances to return them.
"""

from __future__ import annotations

from typing import Any

from moto.ec2.models.amis import Ami
from moto.ec2.models.instances import Instance

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True

    original_ami_init = Ami.__init__

    def ami_init(self: Ami, *args: Any, **kwargs: Any) -> None:
        platform_details = kwargs.pop("platform_details", None)
        usage_operation = kwargs.pop("usage_operation", None)
        patchpilot = kwargs.pop("patchpilot", None)
        original_ami_init(self, *args, **kwargs)
        source = kwargs.get("source_ami") or kwargs.get("instance")
        if platform_details is None and source is not None:
            platform_details = getattr(source, "platform_details", None)
            usage_operation = getattr(source, "usage_operation", None)
            patchpilot = getattr(source, "patchpilot_info", None)
        if platform_details is None:
            platform_details = "Windows" if self.platform == "windows" else "Linux/UNIX"
        if usage_operation is None:
            usage_operation = (
                "RunInstances:0002" if self.platform == "windows" else "RunInstances"
            )
        self.platform_details = platform_details
        self.usage_operation = usage_operation
        self.patchpilot_info = patchpilot or {}

    Ami.__init__ = ami_init  # type: ignore[method-assign]

    original_instance_init = Instance.__init__

    def instance_init(self: Instance, *args: Any, **kwargs: Any) -> None:
        original_instance_init(self, *args, **kwargs)
        ami = self.ec2_backend.amis.get(self.image_id)
        if ami is not None:
            self.platform_details = ami.platform_details
            self.usage_operation = ami.usage_operation
            self.patchpilot_info = ami.patchpilot_info
        else:
            windows = self.platform == "windows"
            self.platform_details = "Windows" if windows else "Linux/UNIX"
            self.usage_operation = "RunInstances:0002" if windows else "RunInstances"
            self.patchpilot_info = {}
        self.usage_operation_update_time = self.launch_time

    Instance.__init__ = instance_init  # type: ignore[method-assign]
