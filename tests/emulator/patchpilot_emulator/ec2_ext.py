"""EC2 additions: PlatformDetails / UsageOperation on AMIs and on instances; a direct tag
lookup for one resource (performance only, same answer as moto's scan).

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
from moto.ec2.models.tags import TagBackend
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

_installed = False
moto_describe_tags = TagBackend.describe_tags  # moto's own, kept for the equivalence test

# fnmatch's special characters (and the backslash moto's simple_aws_filter_to_re rewrites):
# an id without them is a literal pattern, matched by equality.
_WILDCARD_CHARS = frozenset("*?[\\")


def _literal(value: Any) -> bool:
    return isinstance(value, str) and not _WILDCARD_CHARS.intersection(value)


def _install_tag_lookup() -> None:
    r"""moto's ``TagBackend.describe_tags(filters={"resource-id": [id]})`` (what every
    ``tag_set`` / ``tag_list`` of an instance, volume, ... calls) scans the tags of *every*
    resource and matches each id against ``fnmatch.translate(id)``: one DescribeInstances of N
    instances is O(N²) (10,000 instances: ~10⁸ regex matches). For one literal id the pattern
    ``(?s:<id>)\Z`` matches that id and nothing else, so the answer is the tags of that one
    entry, in the same order and shape; anything else (several ids, wildcards, other filters)
    still goes through moto's scan."""

    def describe_tags(self: TagBackend, filters: dict[str, list[str]] | None = None) -> list[dict[str, str]]:
        if filters is not None and list(filters) == ["resource-id"]:
            ids = filters["resource-id"]
            if len(ids) == 1 and _literal(ids[0]):
                resource_id = ids[0]
                tags = self.tags.get(resource_id)  # .get: never create an entry in the defaultdict
                if not tags:
                    return []
                resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
                return [
                    {"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
                    for key, value in tags.items()
                ]
        return moto_describe_tags(self, filters)

    TagBackend.describe_tags = describe_tags  # type: ignore[method-assign]


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    _install_tag_lookup()

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
