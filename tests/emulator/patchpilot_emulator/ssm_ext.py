"""SSM additions and fixes on top of moto 5.2.5.

Every operation here is written to the "AWS Systems Manager API Reference" page of the same
name (request/response members, error codes, limits); see tests/emulator/README.md.  The
response methods are installed on ``moto.ssm.responses.SimpleSystemManagerResponse`` (one
method per action, snake_case) and read their input with ``self._get_param``; state lives on
``moto.ssm.models.SimpleSystemManagerBackend`` so that ``POST /moto-api/reset`` clears it.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import partial
from itertools import islice
from typing import Any, Callable, Iterable, Iterator
from zoneinfo import ZoneInfo, available_timezones

import botocore.session
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.ec2.models import ec2_backends
from moto.ssm.models import (
    FakeMaintenanceWindow,
    FakeMaintenanceWindowTarget,
    FakeMaintenanceWindowTask,
    FakePatchBaseline,
    FakePatchGroup,
    SimpleSystemManagerBackend,
    ssm_backends,
)
from moto.ssm.responses import SimpleSystemManagerResponse

from .validation import schedule_error, validate_against_model

_END = object()
_SSM_MODEL = botocore.session.get_session().get_service_model("ssm")
AGENT_VERSION = "3.3.40.0"

# Service quotas ("AWS Systems Manager endpoints and quotas").
MAX_BASELINES = 50
MAX_WINDOWS = 50
MAX_GROUPS_PER_BASELINE = 25
MAX_TARGETS_PER_WINDOW = 100
MAX_TASKS_PER_WINDOW = 20

DEFAULT_BASELINE_NAMES = {
    "WINDOWS": "AWS-DefaultPatchBaseline",
    "AMAZON_LINUX": "AWS-AmazonLinuxDefaultPatchBaseline",
    "AMAZON_LINUX_2": "AWS-AmazonLinux2DefaultPatchBaseline",
    "AMAZON_LINUX_2022": "AWS-AmazonLinux2022DefaultPatchBaseline",
    "AMAZON_LINUX_2023": "AWS-AmazonLinux2023DefaultPatchBaseline",
    "UBUNTU": "AWS-UbuntuDefaultPatchBaseline",
    "REDHAT_ENTERPRISE_LINUX": "AWS-RedHatDefaultPatchBaseline",
    "SUSE": "AWS-SuseDefaultPatchBaseline",
    "CENTOS": "AWS-CentOSDefaultPatchBaseline",
    "ORACLE_LINUX": "AWS-OracleLinuxDefaultPatchBaseline",
    "DEBIAN": "AWS-DebianDefaultPatchBaseline",
    "MACOS": "AWS-MacOSDefaultPatchBaseline",
    "RASPBIAN": "AWS-RaspbianDefaultPatchBaseline",
    "ROCKY_LINUX": "AWS-RockyLinuxDefaultPatchBaseline",
    "ALMA_LINUX": "AWS-AlmaLinuxDefaultPatchBaseline",
}
NO_APPROVE_AFTER_DAYS = ("UBUNTU", "DEBIAN")


# AWS predefined baselines, per "About predefined and custom patch baselines" (SSM User Guide,
# patch-manager-predefined-and-custom-patch-baselines): the approval rules each describes;
# "the predefined baselines assign a compliance level of Unspecified to all patches".
def _rule(filters: dict[str, list[str]], days: int | None = 7, non_security: bool = False) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "PatchFilterGroup": {"PatchFilters": [{"Key": k, "Values": v} for k, v in filters.items()]},
        "ComplianceLevel": "UNSPECIFIED",
        "EnableNonSecurity": non_security,
    }
    if days is not None:
        rule["ApproveAfterDays"] = days
    return rule


_SEC_CRIT_IMP_PLUS_BUGFIX = [
    # "classified as "Security" and that have a severity level of "Critical" or "Important".
    # Also approves all patches with a classification of "Bugfix". ... 7 days"
    _rule({"CLASSIFICATION": ["Security"], "SEVERITY": ["Critical", "Important"]}),
    _rule({"CLASSIFICATION": ["Bugfix"]}),
]
# Debian/Ubuntu/Raspberry Pi OS: "Immediately approves all operating system security-related
# patches that have a priority of "Required", "Important", "Standard," "Optional," or "Extra."
# There is no wait before approval" (and PatchRule: ApproveAfterDays not supported).
_APT_PRIORITIES = [_rule({"PRIORITY": ["Required", "Important", "Standard", "Optional", "Extra"]}, days=None)]
PREDEFINED_RULES: dict[str, list[dict[str, Any]]] = {
    # "CriticalUpdates" or "SecurityUpdates" with MSRC severity "Critical" or "Important", 7 days
    "WINDOWS": [_rule({"CLASSIFICATION": ["CriticalUpdates", "SecurityUpdates"], "MSRC_SEVERITY": ["Critical", "Important"]})],
    "AMAZON_LINUX": _SEC_CRIT_IMP_PLUS_BUGFIX,
    "AMAZON_LINUX_2": _SEC_CRIT_IMP_PLUS_BUGFIX,
    "AMAZON_LINUX_2022": _SEC_CRIT_IMP_PLUS_BUGFIX,
    "AMAZON_LINUX_2023": _SEC_CRIT_IMP_PLUS_BUGFIX,
    "REDHAT_ENTERPRISE_LINUX": _SEC_CRIT_IMP_PLUS_BUGFIX,
    "ROCKY_LINUX": _SEC_CRIT_IMP_PLUS_BUGFIX,
    "ALMA_LINUX": _SEC_CRIT_IMP_PLUS_BUGFIX,
    # "Approves all updates 7 days after they become available, including nonsecurity updates"
    "CENTOS": [_rule({}, non_security=True)],
    # "Security" with severity "Important" or "Moderate"; "Bugfix" 7 days after release
    "ORACLE_LINUX": [
        _rule({"CLASSIFICATION": ["Security"], "SEVERITY": ["Important", "Moderate"]}),
        _rule({"CLASSIFICATION": ["Bugfix"]}),
    ],
    # "Security" with severity "Critical" or "Important", 7 days
    "SUSE": [_rule({"CLASSIFICATION": ["Security"], "SEVERITY": ["Critical", "Important"]})],
    "UBUNTU": _APT_PRIORITIES,
    "DEBIAN": _APT_PRIORITIES,
    "RASPBIAN": _APT_PRIORITIES,
    # "Approves all operating system patches that are classified as "Security". Also approves
    # all packages with a current update." (no delay stated)
    "MACOS": [_rule({"CLASSIFICATION": ["Security"]}, days=0), _rule({}, days=0, non_security=True)],
}
PREDEFINED_DESCRIPTIONS = {
    "WINDOWS": "Default Patch Baseline for Windows Provided by AWS.",
}


class SSMError(ServiceException):
    """An SSM error in the awsJson1.1 wire format (``__type`` + ``message``)."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)


def validation(message: str) -> SSMError:
    return SSMError("ValidationException", message)


def does_not_exist(message: str) -> SSMError:
    return SSMError("DoesNotExistException", message)


# --------------------------------------------------------------------------------------------
# state added to the backend (cleared by BaseBackend.reset, which rebuilds __dict__)
# --------------------------------------------------------------------------------------------


class PatchpilotState:
    def __init__(self) -> None:
        # (patch group, operating system) -> baseline id, in registration order
        self.patch_groups: dict[tuple[str, str], str] = {}
        self.managed_instances: dict[str, dict[str, Any]] = {}
        self.patch_states: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.ping_status: dict[str, str] = {}
        # instance id -> when its agent was last heard (set with PingStatus ConnectionLost)
        self.last_ping: dict[str, datetime] = {}
        # instance id -> managed or not, set by the set-managed hook (overrides the AMI's
        # ``ssm_agent`` flag)
        self.managed: dict[str, bool] = {}
        # OperatingSystem -> baseline id registered with RegisterDefaultPatchBaseline
        self.default_baselines: dict[str, str] = {}
        # SettingId -> (value, modified date, modified user) of customized service settings
        self.service_settings: dict[str, tuple[str, datetime, str]] = {}
        self.counter = 0


def state(backend: SimpleSystemManagerBackend) -> PatchpilotState:
    existing = backend.__dict__.get("_patchpilot")
    if existing is None:
        existing = backend.__dict__.setdefault("_patchpilot", PatchpilotState())
    return existing


def backend_for(account_id: str, region: str) -> SimpleSystemManagerBackend:
    return ssm_backends[account_id][region]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def paginate(
    items: list[Any], max_results: int | None, next_token: str | None, default: int
) -> tuple[list[Any], str | None]:
    start = 0
    if next_token:
        if not next_token.isdigit() or int(next_token) > len(items):
            raise SSMError("InvalidNextToken", "The specified token isn't valid.")
        start = int(next_token)
    size = max_results or default
    page = items[start : start + size]
    following = start + size
    return page, (str(following) if following < len(items) else None)


def paginate_lazy(
    items: Iterable[Any], max_results: int | None, next_token: str | None, default: int
) -> tuple[list[Any], str | None]:
    """``paginate`` over an iterable, reading only as far as the page and one item beyond it
    (to know whether a NextToken follows): the same page, token and InvalidNextToken, without
    materialising every item for every page of a long listing."""
    start = 0
    if next_token:
        if not next_token.isdigit():
            raise SSMError("InvalidNextToken", "The specified token isn't valid.")
        start = int(next_token)
    size = max_results or default
    it = iter(items)
    skipped = sum(1 for _ in islice(it, start))
    if skipped < start:
        # paginate: int(next_token) > len(items)
        raise SSMError("InvalidNextToken", "The specified token isn't valid.")
    page = list(islice(it, size))
    more = len(page) == size and next(it, _END) is not _END
    return page, (str(start + size) if more else None)


def prune(value: Any) -> Any:
    """Drops None members so the serializer does not emit nulls."""
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def tags_dict(tags: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (tags or [])}


def ec2_backend_for(ssm_backend: SimpleSystemManagerBackend) -> Any:
    return ec2_backends[ssm_backend.account_id][ssm_backend.region_name]


def ec2_instance_tags(ec2: Any, instance_id: str) -> dict[str, str]:
    return dict(ec2.tags.get(instance_id, {}))


def all_ec2_instances(ec2: Any) -> list[Any]:
    return [i for r in ec2.all_reservations() for i in r.instances]


def aws_default_baseline_id(region: str, operating_system: str) -> str:
    """ARN of the AWS predefined baseline of an OS in a Region (moto's table of the real ids,
    e.g. CENTOS in us-east-2 = arn:aws:ssm:us-east-2:733109147000:patchbaseline/pb-0574b43a65ea646ed,
    the example of the RegisterDefaultPatchBaseline API reference)."""
    defaults = FakePatchGroup("default", region).default_associations
    return str(defaults.get(operating_system, ""))


def default_baseline_id(backend: SimpleSystemManagerBackend, operating_system: str) -> str:
    """The account's default baseline of an OS: the one registered with
    RegisterDefaultPatchBaseline, else AWS's predefined one ("These predefined patch baselines
    are used as the default patch baselines for each operating system type unless you create
    your own patch baseline and designate it as the default", "About predefined and custom
    patch baselines")."""
    registered = state(backend).default_baselines.get(operating_system)
    if registered and registered in backend.baselines:
        return registered
    return aws_default_baseline_id(backend.region_name, operating_system)


def _baseline_os_from_platform(name: str, version: str) -> str:
    lowered = name.lower()
    if "windows" in lowered:
        return "WINDOWS"
    if "red hat" in lowered or "rhel" in lowered:
        return "REDHAT_ENTERPRISE_LINUX"
    if "ubuntu" in lowered:
        return "UBUNTU"
    if "amazon linux" in lowered:
        # /etc/os-release VERSION_ID: "2023", "2022", "2"; Amazon Linux (1) reports
        # "Amazon Linux AMI" / "2018.03" (which starts with "2" too)
        if version.startswith("2023"):
            return "AMAZON_LINUX_2023"
        if version.startswith("2022"):
            return "AMAZON_LINUX_2022"
        if version == "2" or version.startswith("2."):
            return "AMAZON_LINUX_2"
        return "AMAZON_LINUX"
    if "centos" in lowered:
        return "CENTOS"
    if "sles" in lowered or "suse" in lowered:
        return "SUSE"
    if "debian" in lowered:
        return "DEBIAN"
    if "oracle" in lowered:
        return "ORACLE_LINUX"
    if "rocky" in lowered:
        return "ROCKY_LINUX"
    if "alma" in lowered:
        return "ALMA_LINUX"
    if "mac" in lowered:
        return "MACOS"
    return "AMAZON_LINUX_2"


class NodeView:
    """A managed node as SSM sees it: an EC2 instance or an on-premises ``mi-*`` instance."""

    def __init__(self, **kwargs: Any) -> None:
        self.instance_id: str = kwargs["instance_id"]
        self.resource_type: str = kwargs["resource_type"]
        self.platform_type: str = kwargs["platform_type"]
        self.platform_name: str = kwargs["platform_name"]
        self.platform_version: str = kwargs["platform_version"]
        self.patch_os: str = kwargs["patch_os"]
        self.tags: dict[str, str] = kwargs["tags"]
        self.running: bool = kwargs["running"]
        self.stopped_at: datetime | None = kwargs.get("stopped_at")
        self.ip_address: str | None = kwargs.get("ip_address")
        self.computer_name: str | None = kwargs.get("computer_name")
        self.name: str | None = kwargs.get("name")
        self.registration_date: datetime | None = kwargs.get("registration_date")
        self.iam_role: str | None = kwargs.get("iam_role")
        self.activation_id: str | None = kwargs.get("activation_id")


def ec2_managed(backend: SimpleSystemManagerBackend, instance: Any) -> bool:
    """Whether an EC2 instance is a managed node: SSM Agent installed ("Amazon Machine Images
    (AMIs) with SSM Agent preinstalled": AMIs not on that list need the agent installed by hand,
    ``ssm_agent: false`` in amis.json) unless the set-managed hook said otherwise (the agent
    installed by hand, or removed / its instance profile missing)."""
    override = state(backend).managed.get(instance.id)
    if override is not None:
        return override
    info = getattr(instance, "patchpilot_info", {}) or {}
    return bool(info.get("ssm_agent", True))


_STOP_REASON_RE = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:UTC|GMT)\)")


def stopped_at(instance: Any) -> datetime | None:
    """When moto stopped the instance (its StateTransitionReason "User initiated (<time> UTC)")."""
    match = _STOP_REASON_RE.search(getattr(instance, "_reason", "") or "")
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")


def nodes(backend: SimpleSystemManagerBackend) -> list[NodeView]:
    """Every node SSM knows in this account/region (EC2 instances that are not terminated
    and are managed nodes, then registered managed instances).

    An instance that is not a managed node (no SSM Agent) is unknown to SSM: absent from
    DescribeInstanceInformation, never selected by Run Command or maintenance-window targets,
    and SendCommand naming it fails with InvalidInstanceId ("Managed nodes": "A managed node is
    any machine configured for Systems Manager"; SendCommand InvalidInstanceId: "SSM Agent isn't
    running")."""
    return [view() for view in node_views(backend)]


def node_views(backend: SimpleSystemManagerBackend) -> Iterator[Callable[[], NodeView]]:
    """The nodes of ``nodes()``, in the same order, each as a function that builds its
    ``NodeView``: a listing that pages through a large fleet (DescribeInstanceInformation,
    50 nodes a page) builds the views of its page only, not of every node on every page."""
    ec2 = ec2_backend_for(backend)
    instances = all_ec2_instances(ec2)
    registered = list(state(backend).managed_instances.values())
    for instance in instances:
        if instance.state in ("terminated", "shutting-down"):
            continue
        if not ec2_managed(backend, instance):
            continue
        yield partial(_ec2_node, ec2, instance)
    for mi in registered:
        yield partial(_registered_node, backend, mi)


def node_by_id(backend: SimpleSystemManagerBackend, instance_id: str) -> NodeView | None:
    """The node ``nodes()`` holds for ``instance_id``, or None, without building every other
    node's view: DescribeInstancePatches and ListInventoryEntries name one node, and a reader
    of a 5,000-node fleet calls them once per node."""
    ec2 = ec2_backend_for(backend)
    for instance in all_ec2_instances(ec2):
        if instance.id != instance_id:
            continue
        if instance.state in ("terminated", "shutting-down") or not ec2_managed(backend, instance):
            return None
        return _ec2_node(ec2, instance)
    mi = state(backend).managed_instances.get(instance_id)
    return _registered_node(backend, mi) if mi is not None else None


def nodes_among(backend: SimpleSystemManagerBackend, ids: set[str]) -> Iterator[NodeView]:
    """The nodes of ``nodes()`` whose id is in ``ids``, in the same order, building only their
    views (an ``InstanceIds`` filter of 50 ids over a 5,000-node fleet)."""
    ec2 = ec2_backend_for(backend)
    for instance in all_ec2_instances(ec2):
        if instance.id not in ids or instance.state in ("terminated", "shutting-down"):
            continue
        if ec2_managed(backend, instance):
            yield _ec2_node(ec2, instance)
    for mi in state(backend).managed_instances.values():
        if mi["InstanceId"] in ids:
            yield _registered_node(backend, mi)


def _ec2_node(ec2: Any, instance: Any) -> NodeView:
    info = getattr(instance, "patchpilot_info", {}) or {}
    windows = instance.platform == "windows"
    return NodeView(
        instance_id=instance.id,
        resource_type="EC2Instance",
        platform_type=info.get("platform_type", "Windows" if windows else "Linux"),
        platform_name=info.get(
            "platform_name",
            "Microsoft Windows Server 2022 Datacenter" if windows else "Amazon Linux",
        ),
        platform_version=info.get("platform_version", "10.0.20348" if windows else "2"),
        patch_os=info.get("patch_os", "WINDOWS" if windows else "AMAZON_LINUX_2"),
        tags=ec2_instance_tags(ec2, instance.id),
        running=instance.state == "running",
        stopped_at=stopped_at(instance) if instance.state in ("stopped", "stopping") else None,
        ip_address=instance.private_ip,
        computer_name=instance.private_dns_name,
    )


def _registered_node(backend: SimpleSystemManagerBackend, mi: dict[str, Any]) -> NodeView:
    return NodeView(
        instance_id=mi["InstanceId"],
        resource_type="ManagedInstance",
        platform_type=mi["PlatformType"],
        platform_name=mi["PlatformName"],
        platform_version=mi["PlatformVersion"],
        patch_os=mi["PatchOperatingSystem"],
        tags=dict(backend._resource_tags["ManagedInstance"][mi["InstanceId"]]),
        running=True,
        ip_address=mi.get("IPAddress"),
        computer_name=mi.get("ComputerName"),
        name=mi.get("Name"),
        registration_date=mi["RegistrationDate"],
        iam_role=mi.get("IamRole"),
        activation_id=mi.get("ActivationId"),
    )


def resolve_targets(backend: SimpleSystemManagerBackend, targets: list[dict[str, Any]]) -> list[str]:
    """Instance ids selected by SSM ``Targets`` (``InstanceIds``, ``tag:<key>``, ``tag-key``).

    Every managed node is selected whatever its state (running, pending, stopping, stopped EC2
    instances; managed instances whose agent is offline): they get an invocation that ends
    Delivery Timed Out / Undeliverable ("Understanding command statuses": Delayed "because the
    node was stopped"; SSM API Reference SendCommand/ListCommandInvocations InvalidInstanceId:
    "Valid states are: Running, Pending, Stopped, and Stopping. Invalid states are:
    Shutting-down and Terminated"). ``nodes`` already leaves terminated instances out."""
    if not targets:
        return []
    all_nodes = nodes(backend)
    # Each Target entry selects a set; a node must satisfy every entry: "If you specify more
    # than one key-value pair, a node must be tagged with all the tag keys and values you
    # specify to be included in the target group" (SSM User Guide, "Examples: Register targets
    # with a maintenance window"). Within one entry, any of its Values matches.
    selected: dict[str, None] | None = None
    for target in targets:
        key = target.get("Key", "")
        values = target.get("Values", []) or []
        this: dict[str, None] = {}
        if key == "InstanceIds":
            known = {n.instance_id for n in all_nodes}
            for value in values:
                if value in known:
                    this[value] = None
        elif key.startswith("tag:"):
            tag_key = key[4:]
            for node in all_nodes:
                if node.tags.get(tag_key) in values:
                    this[node.instance_id] = None
        elif key == "tag-key":
            for node in all_nodes:
                if any(v in node.tags for v in values):
                    this[node.instance_id] = None
        selected = this if selected is None else {i: None for i in selected if i in this}
    return list(selected or {})


def patch_group_of(tags: dict[str, str]) -> str:
    return tags.get("Patch Group") or tags.get("PatchGroup") or ""


# --------------------------------------------------------------------------------------------
# validation helpers (semantic rules beyond the model constraints)
# --------------------------------------------------------------------------------------------


def check_schedule(schedule: str | None) -> None:
    if schedule is None:
        return
    reason = schedule_error(schedule)
    if reason:
        raise validation(f"Invalid schedule expression '{schedule}': {reason}.")


def check_timezone(tz: str | None) -> None:
    if not tz:
        return
    try:
        ZoneInfo(tz)
    except Exception:
        if available_timezones():
            raise validation(f"Invalid ScheduleTimezone '{tz}': not an IANA time zone ID.")


def check_window_times(duration: int | None, cutoff: int | None) -> None:
    if duration is not None and cutoff is not None and cutoff >= duration:
        raise validation(
            f"Cutoff was {cutoff} but must be smaller than {duration} (Duration): no task "
            "could ever start."
        )


def check_approval_rules(operating_system: str, approval_rules: dict[str, Any] | None) -> None:
    if not approval_rules:
        return
    for index, rule in enumerate(approval_rules.get("PatchRules", []) or [], start=1):
        days = rule.get("ApproveAfterDays")
        until = rule.get("ApproveUntilDate")
        if operating_system in NO_APPROVE_AFTER_DAYS:
            if days is not None or until is not None:
                raise validation(
                    f"ApproveAfterDays and ApproveUntilDate are not supported for operating "
                    f"system {operating_system} (approvalRules.patchRules.{index}): packages are "
                    "approved as soon as they are available in the repository."
                )
            continue
        if days is not None and until is not None:
            raise validation(
                f"Specify either ApproveAfterDays or ApproveUntilDate, not both "
                f"(approvalRules.patchRules.{index})."
            )
        if days is None and until is None:
            raise validation(
                f"Either ApproveAfterDays or ApproveUntilDate is required "
                f"(approvalRules.patchRules.{index})."
            )


def now() -> datetime:
    return utcnow()


# --------------------------------------------------------------------------------------------
# backend patches (model level)
# --------------------------------------------------------------------------------------------


def _validate_resource_type_and_id(
    self: SimpleSystemManagerBackend, resource_type: str, resource_id: str
) -> str:
    if resource_type == "PatchBaseline":
        if resource_id not in self.baselines:
            raise SSMError("InvalidResourceId", "The resource ID isn't valid. Verify that you entered the correct ID and try again.")
        return resource_id
    if resource_type == "MaintenanceWindow":
        if resource_id not in self.windows:
            raise SSMError("InvalidResourceId", "The resource ID isn't valid. Verify that you entered the correct ID and try again.")
        return resource_id
    if resource_type == "ManagedInstance":
        if resource_id not in state(self).managed_instances:
            raise SSMError("InvalidResourceId", "The resource ID isn't valid. Verify that you entered the correct ID and try again.")
        return resource_id
    return _original_validate(self, resource_type, resource_id)


_original_validate = SimpleSystemManagerBackend._validate_resource_type_and_id


# --------------------------------------------------------------------------------------------
# JSON views of moto's objects, per the API reference shapes
# --------------------------------------------------------------------------------------------


def baseline_identity(b: FakePatchBaseline, backend: SimpleSystemManagerBackend) -> dict[str, Any]:
    return {
        "BaselineId": b.id,
        "BaselineName": b.name,
        "OperatingSystem": b.operating_system,
        "BaselineDescription": b.description,
        # DefaultBaseline: "Whether this is the default baseline", i.e. the account's default
        # for its OS (RegisterDefaultPatchBaseline)
        "DefaultBaseline": is_default_baseline(backend, b.id, b.operating_system),
    }


def baseline_json(b: FakePatchBaseline) -> dict[str, Any]:
    return prune(
        {
            "BaselineId": b.id,
            "Name": b.name,
            "OperatingSystem": b.operating_system,
            "GlobalFilters": b.global_filters or {"PatchFilters": []},
            "ApprovalRules": b.approval_rules or {"PatchRules": []},
            "ApprovedPatches": b.approved_patches or [],
            "ApprovedPatchesComplianceLevel": b.approved_patches_compliance_level or "UNSPECIFIED",
            "ApprovedPatchesEnableNonSecurity": bool(b.approved_patches_enable_non_security),
            "RejectedPatches": b.rejected_patches or [],
            "RejectedPatchesAction": b.rejected_patches_action or "ALLOW_AS_DEPENDENCY",
            "CreatedDate": getattr(b, "created_date", None),
            "ModifiedDate": getattr(b, "modified_date", None),
            "Description": b.description,
            "Sources": b.sources or [],
            "AvailableSecurityUpdatesComplianceStatus": getattr(
                b, "available_security_updates_compliance_status", None
            ),
        }
    )


def window_json(w: FakeMaintenanceWindow) -> dict[str, Any]:
    return prune(
        {
            "WindowId": w.id,
            "Name": w.name,
            "Description": w.description,
            "StartDate": w.start_date,
            "EndDate": w.end_date,
            "Schedule": w.schedule,
            "ScheduleTimezone": w.schedule_timezone,
            "ScheduleOffset": w.schedule_offset,
            "Duration": w.duration,
            "Cutoff": w.cutoff,
            "AllowUnassociatedTargets": getattr(w, "allow_unassociated_targets", False),
            "Enabled": getattr(w, "enabled", True),
            "CreatedDate": getattr(w, "created_date", None),
            "ModifiedDate": getattr(w, "modified_date", None),
        }
    )


def target_json(t: FakeMaintenanceWindowTarget) -> dict[str, Any]:
    return prune(
        {
            "WindowId": t.window_id,
            "WindowTargetId": t.window_target_id,
            "ResourceType": t.resource_type,
            "Targets": t.targets,
            "OwnerInformation": t.owner_information,
            "Name": t.name,
            "Description": t.description,
        }
    )


def task_json(t: FakeMaintenanceWindowTask, full: bool) -> dict[str, Any]:
    data = {
        "WindowId": t.window_id,
        "WindowTaskId": t.window_task_id,
        "TaskArn": t.task_arn,
        "Targets": t.targets or [],
        "ServiceRoleArn": t.service_role_arn,
        "TaskParameters": t.task_parameters,
        "Priority": t.priority,
        "MaxConcurrency": t.max_concurrency,
        "MaxErrors": t.max_errors,
        "LoggingInfo": t.logging_info,
        "Name": t.name,
        "Description": t.description,
        "CutoffBehavior": t.cutoff_behavior or "CONTINUE_TASK",
        "AlarmConfiguration": t.alarm_configurations,
    }
    if full:
        data["TaskType"] = t.task_type
        data["TaskInvocationParameters"] = t.task_invocation_parameters
    else:
        data["Type"] = t.task_type
    return prune(data)


# --------------------------------------------------------------------------------------------
# response methods
# --------------------------------------------------------------------------------------------

R = SimpleSystemManagerResponse


def _b(self: R) -> SimpleSystemManagerBackend:
    return self.ssm_backend


def _get_baseline(backend: SimpleSystemManagerBackend, baseline_id: str) -> FakePatchBaseline:
    baseline = backend.baselines.get(baseline_id)
    if baseline is None:
        raise does_not_exist(f"Patch Baseline {baseline_id} does not exist.")
    return baseline


def _get_window(backend: SimpleSystemManagerBackend, window_id: str) -> FakeMaintenanceWindow:
    window = backend.windows.get(window_id)
    if window is None:
        raise does_not_exist(f"Maintenance window {window_id} does not exist")
    return window


# --- patch baselines -----------------------------------------------------------------------


def create_patch_baseline(self: R) -> ActionResult:
    backend = _b(self)
    operating_system = self._get_param("OperatingSystem", "WINDOWS")
    approval_rules = self._get_param("ApprovalRules")
    check_approval_rules(operating_system, approval_rules)
    name = self._get_param("Name")
    if len(backend.baselines) >= MAX_BASELINES:
        raise SSMError(
            "ResourceLimitExceededException",
            f"Maximum number of patch baselines ({MAX_BASELINES}) reached.",
        )
    baseline_id = backend.create_patch_baseline(
        name=name,
        operating_system=operating_system,
        global_filters=self._get_param("GlobalFilters"),
        approval_rules=approval_rules,
        approved_patches=self._get_param("ApprovedPatches", []),
        approved_patches_compliance_level=self._get_param(
            "ApprovedPatchesComplianceLevel", "UNSPECIFIED"
        ),
        approved_patches_enable_non_security=self._get_param(
            "ApprovedPatchesEnableNonSecurity", False
        ),
        rejected_patches=self._get_param("RejectedPatches", []),
        rejected_patches_action=self._get_param("RejectedPatchesAction", "ALLOW_AS_DEPENDENCY"),
        description=self._get_param("Description"),
        sources=self._get_param("Sources", []),
        tags=self._get_param("Tags", []),
    )
    baseline = backend.baselines[baseline_id]
    baseline.created_date = baseline.modified_date = now()
    baseline.available_security_updates_compliance_status = self._get_param(
        "AvailableSecurityUpdatesComplianceStatus"
    )
    return ActionResult({"BaselineId": baseline_id})


def get_patch_baseline(self: R) -> ActionResult:
    backend = _b(self)
    baseline_id = self._get_param("BaselineId")
    baseline = backend.baselines.get(baseline_id)
    if baseline is None:
        for os_name, default_id in FakePatchGroup("d", backend.region_name).default_associations.items():
            if baseline_id in (default_id, default_id.split("/")[-1]):
                return ActionResult(predefined_baseline_json(backend, os_name))
        raise does_not_exist(f"Patch Baseline {baseline_id} does not exist.")
    data = baseline_json(baseline)
    data["PatchGroups"] = [
        group for (group, _os), bid in state(backend).patch_groups.items() if bid == baseline_id
    ]
    return ActionResult(data)


def predefined_baseline_json(backend: SimpleSystemManagerBackend, os_name: str) -> dict[str, Any]:
    """GetPatchBaseline of an AWS predefined baseline (answers by ARN or bare id)."""
    return {
        "BaselineId": aws_default_baseline_id(backend.region_name, os_name),
        "Name": DEFAULT_BASELINE_NAMES.get(os_name, "AWS-DefaultPatchBaseline"),
        "OperatingSystem": os_name,
        "GlobalFilters": {"PatchFilters": []},
        "ApprovalRules": {"PatchRules": PREDEFINED_RULES.get(os_name, [])},
        "ApprovedPatches": [],
        "ApprovedPatchesComplianceLevel": "UNSPECIFIED",
        "ApprovedPatchesEnableNonSecurity": False,
        "RejectedPatches": [],
        "RejectedPatchesAction": "ALLOW_AS_DEPENDENCY",
        "PatchGroups": [],
        "Description": PREDEFINED_DESCRIPTIONS.get(os_name, f"Default Patch Baseline for {os_name} Provided by AWS."),
        "Sources": [],
    }


def is_default_baseline(backend: SimpleSystemManagerBackend, baseline_id: str, os_name: str) -> bool:
    return default_baseline_id(backend, os_name) == baseline_id


def update_patch_baseline(self: R) -> ActionResult:
    backend = _b(self)
    baseline = _get_baseline(backend, self._get_param("BaselineId"))
    replace = bool(self._get_param("Replace", False))
    if replace and self._get_param("Name") is None:
        raise validation(
            "Name is required when Replace is true: all fields required by "
            "CreatePatchBaseline are required."
        )
    approval_rules = self._get_param("ApprovalRules")
    if approval_rules is not None:
        check_approval_rules(baseline.operating_system, approval_rules)

    def field(param: str, attr: str, default: Any) -> None:
        value = self._get_param(param)
        if value is not None:
            setattr(baseline, attr, value)
        elif replace:
            setattr(baseline, attr, default)

    field("Name", "name", baseline.name)
    field("GlobalFilters", "global_filters", None)
    field("ApprovalRules", "approval_rules", None)
    field("ApprovedPatches", "approved_patches", [])
    field("ApprovedPatchesComplianceLevel", "approved_patches_compliance_level", "UNSPECIFIED")
    field("ApprovedPatchesEnableNonSecurity", "approved_patches_enable_non_security", False)
    field("RejectedPatches", "rejected_patches", [])
    field("RejectedPatchesAction", "rejected_patches_action", "ALLOW_AS_DEPENDENCY")
    field("Description", "description", None)
    field("Sources", "sources", [])
    field(
        "AvailableSecurityUpdatesComplianceStatus",
        "available_security_updates_compliance_status",
        None,
    )
    baseline.modified_date = now()
    return ActionResult(baseline_json(baseline))


def delete_patch_baseline(self: R) -> ActionResult:
    backend = _b(self)
    baseline_id = self._get_param("BaselineId")
    groups = [g for (g, _os), bid in state(backend).patch_groups.items() if bid == baseline_id]
    if groups:
        raise SSMError(
            "ResourceInUseException",
            f"Patch baseline {baseline_id} is registered with patch group(s) "
            f"{', '.join(groups)}; deregister it first.",
        )
    baseline = backend.baselines.get(baseline_id)
    if baseline is not None and is_default_baseline(backend, baseline_id, baseline.operating_system):
        # README: verified only in the emulator (the default baseline is in use by every node
        # without a patch group)
        raise SSMError(
            "ResourceInUseException",
            f"Patch baseline {baseline_id} is the default patch baseline for "
            f"{baseline.operating_system}; register another default first.",
        )
    if baseline_id in backend.baselines:
        del backend.baselines[baseline_id]
        backend._resource_tags["PatchBaseline"].pop(baseline_id, None)
    return ActionResult({"BaselineId": baseline_id})


def describe_patch_baselines(self: R) -> ActionResult:
    backend = _b(self)
    filters = self._get_param("Filters", []) or []
    owner = "All"
    items: list[dict[str, Any]] = [baseline_identity(b, backend) for b in backend.baselines.values()]
    defaults = [
        {
            "BaselineId": default_id,
            "BaselineName": DEFAULT_BASELINE_NAMES.get(os_name, "AWS-DefaultPatchBaseline"),
            "OperatingSystem": os_name,
            "BaselineDescription": f"Default Patch Baseline for {os_name} provided by AWS.",
            "DefaultBaseline": is_default_baseline(backend, default_id, os_name),
        }
        for os_name, default_id in FakePatchGroup("d", backend.region_name).default_associations.items()
    ]
    for f in filters:
        key, values = f.get("Key"), f.get("Values", [])
        if key == "NAME_PREFIX":
            items = [i for i in items if any(i["BaselineName"].startswith(v) for v in values)]
            defaults = [i for i in defaults if any(i["BaselineName"].startswith(v) for v in values)]
        elif key == "OWNER":
            owner = values[0] if values else "All"
        elif key == "OPERATING_SYSTEM":
            items = [i for i in items if i["OperatingSystem"] in values]
            defaults = [i for i in defaults if i["OperatingSystem"] in values]
        else:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key} for DescribePatchBaselines.")
    if owner == "Self":
        result = items
    elif owner == "AWS":
        result = defaults
    else:
        result = defaults + items
    page, token = paginate(result, self._get_param("MaxResults"), self._get_param("NextToken"), 100)
    return ActionResult(prune({"BaselineIdentities": page, "NextToken": token}))


def get_default_patch_baseline(self: R) -> ActionResult:
    """GetDefaultPatchBaseline: "If you don't specify an operating system value, the default
    patch baseline for Windows is returned." """
    backend = _b(self)
    operating_system = self._get_param("OperatingSystem") or "WINDOWS"
    return ActionResult(
        {"BaselineId": default_baseline_id(backend, operating_system), "OperatingSystem": operating_system}
    )


def register_default_patch_baseline(self: R) -> ActionResult:
    """RegisterDefaultPatchBaseline: "Defines the default patch baseline for the relevant
    operating system. To reset the Amazon Web Services-predefined patch baseline as the
    default, specify the full patch baseline ARN as the baseline ID value ... instead of
    pb-…". A bare id of a predefined baseline is not a baseline of the account:
    DoesNotExistException."""
    backend = _b(self)
    baseline_id = self._get_param("BaselineId")
    pp = state(backend)
    if baseline_id.startswith("arn:"):
        for os_name, default_id in FakePatchGroup("d", backend.region_name).default_associations.items():
            if baseline_id == default_id:
                pp.default_baselines.pop(os_name, None)
                return ActionResult({"BaselineId": baseline_id})
        if re.match(r"^arn:aws:ssm:[a-z0-9-]+:\d{12}:patchbaseline/pb-[0-9a-f]{17}$", baseline_id) is None:
            raise SSMError("InvalidResourceId", f"Invalid patch baseline ARN {baseline_id}.")
        raise does_not_exist(f"Patch Baseline {baseline_id} does not exist.")
    if re.match(r"^pb-[0-9a-f]{17}$", baseline_id) is None:
        raise SSMError("InvalidResourceId", f"Invalid patch baseline id {baseline_id}.")
    baseline = backend.baselines.get(baseline_id)
    if baseline is None:
        raise does_not_exist(f"Patch Baseline {baseline_id} does not exist.")
    pp.default_baselines[baseline.operating_system] = baseline_id
    return ActionResult({"BaselineId": baseline_id})


# --- patch groups --------------------------------------------------------------------------


def register_patch_baseline_for_patch_group(self: R) -> ActionResult:
    backend = _b(self)
    baseline_id = self._get_param("BaselineId")
    group = self._get_param("PatchGroup")
    baseline = _get_baseline(backend, baseline_id)
    groups = state(backend).patch_groups
    existing = groups.get((group, baseline.operating_system))
    if existing is not None:
        raise SSMError(
            "AlreadyExistsException",
            f"Patch Group {group} already has a baseline registered for OperatingSystem "
            f"{baseline.operating_system}.",
        )
    if sum(1 for bid in groups.values() if bid == baseline_id) >= MAX_GROUPS_PER_BASELINE:
        raise SSMError(
            "ResourceLimitExceededException",
            f"Patch baseline {baseline_id} already has {MAX_GROUPS_PER_BASELINE} patch groups.",
        )
    groups[(group, baseline.operating_system)] = baseline_id
    return ActionResult({"BaselineId": baseline_id, "PatchGroup": group})


def deregister_patch_baseline_for_patch_group(self: R) -> ActionResult:
    backend = _b(self)
    baseline_id = self._get_param("BaselineId")
    group = self._get_param("PatchGroup")
    baseline = _get_baseline(backend, baseline_id)
    groups = state(backend).patch_groups
    if groups.get((group, baseline.operating_system)) != baseline_id:
        raise SSMError(
            "InvalidResourceId",
            f"Patch Group {group} is not registered with patch baseline {baseline_id}.",
        )
    del groups[(group, baseline.operating_system)]
    return ActionResult({"BaselineId": baseline_id, "PatchGroup": group})


def get_patch_baseline_for_patch_group(self: R) -> ActionResult:
    backend = _b(self)
    group = self._get_param("PatchGroup")
    operating_system = self._get_param("OperatingSystem", "WINDOWS")
    baseline_id = state(backend).patch_groups.get((group, operating_system))
    if baseline_id is None:
        baseline_id = default_baseline_id(backend, operating_system)
    return ActionResult(
        {"BaselineId": baseline_id, "PatchGroup": group, "OperatingSystem": operating_system}
    )


def describe_patch_groups(self: R) -> ActionResult:
    backend = _b(self)
    mappings = []
    for (group, _os), baseline_id in state(backend).patch_groups.items():
        baseline = backend.baselines.get(baseline_id)
        if baseline is None:
            continue
        mappings.append({"PatchGroup": group, "BaselineIdentity": baseline_identity(baseline, backend)})
    for f in self._get_param("Filters", []) or []:
        key, values = f.get("Key"), f.get("Values", [])
        if key == "NAME_PREFIX":
            mappings = [m for m in mappings if any(m["PatchGroup"].startswith(v) for v in values)]
        elif key == "OPERATING_SYSTEM":
            mappings = [m for m in mappings if m["BaselineIdentity"]["OperatingSystem"] in values]
        else:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key} for DescribePatchGroups.")
    page, token = paginate(mappings, self._get_param("MaxResults"), self._get_param("NextToken"), 100)
    return ActionResult(prune({"Mappings": page, "NextToken": token}))


# --- maintenance windows -------------------------------------------------------------------


def create_maintenance_window(self: R) -> ActionResult:
    backend = _b(self)
    schedule = self._get_param("Schedule")
    duration = self._get_param("Duration")
    cutoff = self._get_param("Cutoff")
    check_schedule(schedule)
    check_timezone(self._get_param("ScheduleTimezone"))
    check_window_times(duration, cutoff)
    offset = self._get_param("ScheduleOffset")
    if offset is not None and not str(schedule).startswith("cron("):
        raise validation("ScheduleOffset is only supported with cron schedule expressions.")
    if len(backend.windows) >= MAX_WINDOWS:
        raise SSMError(
            "ResourceLimitExceededException",
            f"Maximum number of maintenance windows ({MAX_WINDOWS}) reached.",
        )
    window_id = backend.create_maintenance_window(
        name=self._get_param("Name"),
        description=self._get_param("Description"),
        duration=duration,
        cutoff=cutoff,
        schedule=schedule,
        schedule_timezone=self._get_param("ScheduleTimezone"),
        schedule_offset=offset,
        start_date=self._get_param("StartDate"),
        end_date=self._get_param("EndDate"),
        tags=self._get_param("Tags"),
    )
    window = backend.windows[window_id]
    window.allow_unassociated_targets = bool(self._get_param("AllowUnassociatedTargets", False))
    window.enabled = True
    window.created_date = window.modified_date = now()
    return ActionResult({"WindowId": window_id})


def get_maintenance_window(self: R) -> ActionResult:
    return ActionResult(window_json(_get_window(_b(self), self._get_param("WindowId"))))


def describe_maintenance_windows(self: R) -> ActionResult:
    windows = list(_b(self).windows.values())
    for f in self._get_param("Filters", []) or []:
        key, values = f.get("Key"), f.get("Values", [])
        if key == "Name":
            windows = [w for w in windows if w.name in values]
        elif key == "Enabled":
            wanted = {v.lower() == "true" for v in values}
            windows = [w for w in windows if getattr(w, "enabled", True) in wanted]
        else:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key}.")
    items = []
    for w in windows:
        data = window_json(w)
        for key in ("AllowUnassociatedTargets", "CreatedDate", "ModifiedDate"):
            data.pop(key, None)
        items.append(data)
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    return ActionResult(prune({"WindowIdentities": page, "NextToken": token}))


def update_maintenance_window(self: R) -> ActionResult:
    backend = _b(self)
    window = _get_window(backend, self._get_param("WindowId"))
    replace = bool(self._get_param("Replace", False))
    if replace:
        missing = [
            p
            for p in ("Name", "Schedule", "Duration", "Cutoff", "AllowUnassociatedTargets")
            if self._get_param(p) is None
        ]
        if missing:
            raise validation(
                "When Replace is true, all fields required by CreateMaintenanceWindow are "
                "required: missing " + ", ".join(missing) + "."
            )
    schedule = self._get_param("Schedule")
    check_schedule(schedule)
    check_timezone(self._get_param("ScheduleTimezone"))
    duration = self._get_param("Duration", window.duration)
    cutoff = self._get_param("Cutoff", window.cutoff)
    check_window_times(duration, cutoff)
    effective_schedule = schedule or window.schedule
    offset = self._get_param("ScheduleOffset")
    if offset is not None and not str(effective_schedule).startswith("cron("):
        raise validation("ScheduleOffset is only supported with cron schedule expressions.")

    def field(param: str, attr: str, default: Any) -> None:
        value = self._get_param(param)
        if value is not None:
            setattr(window, attr, value)
        elif replace:
            setattr(window, attr, default)

    field("Name", "name", window.name)
    field("Description", "description", None)
    field("StartDate", "start_date", None)
    field("EndDate", "end_date", None)
    field("Schedule", "schedule", window.schedule)
    field("ScheduleTimezone", "schedule_timezone", None)
    field("ScheduleOffset", "schedule_offset", None)
    field("Duration", "duration", window.duration)
    field("Cutoff", "cutoff", window.cutoff)
    field("AllowUnassociatedTargets", "allow_unassociated_targets", False)
    field("Enabled", "enabled", True)
    window.modified_date = now()
    data = window_json(window)
    data.pop("CreatedDate", None)
    data.pop("ModifiedDate", None)
    return ActionResult(data)


def delete_maintenance_window(self: R) -> ActionResult:
    backend = _b(self)
    window_id = self._get_param("WindowId")
    if window_id in backend.windows:
        del backend.windows[window_id]
        backend._resource_tags["MaintenanceWindow"].pop(window_id, None)
    return ActionResult({"WindowId": window_id})


# --- targets -------------------------------------------------------------------------------


def _get_target(window: FakeMaintenanceWindow, target_id: str) -> FakeMaintenanceWindowTarget:
    target = window.targets.get(target_id)
    if target is None:
        raise does_not_exist(
            f"Maintenance window target {target_id} does not exist in window {window.id}"
        )
    return target


def register_target_with_maintenance_window(self: R) -> ActionResult:
    backend = _b(self)
    window = _get_window(backend, self._get_param("WindowId"))
    if len(window.targets) >= MAX_TARGETS_PER_WINDOW:
        raise SSMError(
            "ResourceLimitExceededException",
            f"Maximum number of targets per maintenance window ({MAX_TARGETS_PER_WINDOW}) reached.",
        )
    target_id = backend.register_target_with_maintenance_window(
        window_id=window.id,
        resource_type=self._get_param("ResourceType"),
        targets=self._get_param("Targets"),
        owner_information=self._get_param("OwnerInformation"),
        name=self._get_param("Name"),
        description=self._get_param("Description"),
    )
    return ActionResult({"WindowTargetId": target_id})


def describe_maintenance_window_targets(self: R) -> ActionResult:
    window = _get_window(_b(self), self._get_param("WindowId"))
    targets = list(window.targets.values())
    for f in self._get_param("Filters", []) or []:
        key, values = f.get("Key"), f.get("Values", [])
        attr = {
            "WindowTargetId": "window_target_id",
            "Name": "name",
            "OwnerInformation": "owner_information",
        }.get(key)
        if attr is None:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key}.")
        targets = [t for t in targets if getattr(t, attr) in values]
    page, token = paginate(
        [target_json(t) for t in targets],
        self._get_param("MaxResults"),
        self._get_param("NextToken"),
        50,
    )
    return ActionResult(prune({"Targets": page, "NextToken": token}))


def update_maintenance_window_target(self: R) -> ActionResult:
    window = _get_window(_b(self), self._get_param("WindowId"))
    target = _get_target(window, self._get_param("WindowTargetId"))
    replace = bool(self._get_param("Replace", False))
    if replace and self._get_param("Targets") is None:
        raise validation("Targets is required when Replace is true.")
    for param, attr in (
        ("Targets", "targets"),
        ("OwnerInformation", "owner_information"),
        ("Name", "name"),
        ("Description", "description"),
    ):
        value = self._get_param(param)
        if value is not None:
            setattr(target, attr, value)
        elif replace:
            setattr(target, attr, None)
    data = target_json(target)
    data.pop("ResourceType", None)
    return ActionResult(data)


def deregister_target_from_maintenance_window(self: R) -> ActionResult:
    window = _get_window(_b(self), self._get_param("WindowId"))
    target_id = self._get_param("WindowTargetId")
    _get_target(window, target_id)
    safe = self._get_param("Safe", False)
    if safe:
        for task in window.tasks.values():
            for t in task.targets or []:
                if t.get("Key") == "WindowTargetIds" and target_id in t.get("Values", []):
                    raise SSMError(
                        "TargetInUseException",
                        f"Target {target_id} is referenced by task {task.window_task_id}.",
                    )
    del window.targets[target_id]
    return ActionResult({"WindowId": window.id, "WindowTargetId": target_id})


# --- tasks ---------------------------------------------------------------------------------


def _get_task(window: FakeMaintenanceWindow, task_id: str) -> FakeMaintenanceWindowTask:
    task = window.tasks.get(task_id)
    if task is None:
        raise does_not_exist(f"Maintenance window task {task_id} does not exist in window {window.id}")
    return task


def _check_task_targets(window: FakeMaintenanceWindow, targets: list[dict[str, Any]] | None) -> None:
    for t in targets or []:
        if t.get("Key") == "WindowTargetIds":
            for target_id in t.get("Values", []):
                if target_id not in window.targets:
                    raise does_not_exist(
                        f"Maintenance window target {target_id} does not exist in window {window.id}"
                    )


def check_task_rate_controls(task_type: str | None, targets: Any, max_concurrency: Any, max_errors: Any) -> None:
    """RegisterTaskWithMaintenanceWindow / UpdateMaintenanceWindowTask, ``Targets``: "One or
    more targets must be specified for maintenance window Run Command-type tasks";
    ``MaxConcurrency``/``MaxErrors``: "a value can be omitted only when you are registering or
    updating a targetless task. You must provide a value in all other cases."""
    if task_type == "RUN_COMMAND" and not targets:
        raise validation("Targets must be specified for maintenance window Run Command-type tasks.")
    if targets:
        missing = [n for n, v in (("MaxConcurrency", max_concurrency), ("MaxErrors", max_errors)) if not v]
        if missing:
            raise validation(
                f"{' and '.join(missing)} must be specified for maintenance window tasks with targets."
            )


def register_task_with_maintenance_window(self: R) -> ActionResult:
    backend = _b(self)
    window = _get_window(backend, self._get_param("WindowId"))
    if len(window.tasks) >= MAX_TASKS_PER_WINDOW:
        raise SSMError(
            "ResourceLimitExceededException",
            f"Maximum number of tasks per maintenance window ({MAX_TASKS_PER_WINDOW}) reached.",
        )
    targets = self._get_param("Targets")
    _check_task_targets(window, targets)
    check_task_rate_controls(
        self._get_param("TaskType"), targets, self._get_param("MaxConcurrency"), self._get_param("MaxErrors")
    )
    task_id = backend.register_task_with_maintenance_window(
        window_id=window.id,
        targets=targets,
        task_arn=self._get_param("TaskArn"),
        service_role_arn=self._get_param("ServiceRoleArn"),
        task_type=self._get_param("TaskType"),
        task_parameters=self._get_param("TaskParameters"),
        task_invocation_parameters=self._get_param("TaskInvocationParameters"),
        priority=self._get_param("Priority", 1),
        max_concurrency=self._get_param("MaxConcurrency"),
        max_errors=self._get_param("MaxErrors"),
        logging_info=self._get_param("LoggingInfo"),
        name=self._get_param("Name"),
        description=self._get_param("Description"),
        cutoff_behavior=self._get_param("CutoffBehavior", "CONTINUE_TASK"),
        alarm_configurations=self._get_param("AlarmConfiguration"),
    )
    return ActionResult({"WindowTaskId": task_id})


def describe_maintenance_window_tasks(self: R) -> ActionResult:
    window = _get_window(_b(self), self._get_param("WindowId"))
    tasks = list(window.tasks.values())
    for f in self._get_param("Filters", []) or []:
        key, values = f.get("Key"), f.get("Values", [])
        getter: Callable[[FakeMaintenanceWindowTask], str] | None = {
            "WindowTaskId": lambda t: t.window_task_id,
            "TaskArn": lambda t: t.task_arn,
            "Priority": lambda t: str(t.priority),
            "TaskType": lambda t: t.task_type,
        }.get(key)
        if getter is None:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key}.")
        tasks = [t for t in tasks if getter(t) in values]
    page, token = paginate(
        [task_json(t, full=False) for t in tasks],
        self._get_param("MaxResults"),
        self._get_param("NextToken"),
        50,
    )
    return ActionResult(prune({"Tasks": page, "NextToken": token}))


def get_maintenance_window_task(self: R) -> ActionResult:
    window = _get_window(_b(self), self._get_param("WindowId"))
    return ActionResult(task_json(_get_task(window, self._get_param("WindowTaskId")), full=True))


def update_maintenance_window_task(self: R) -> ActionResult:
    window = _get_window(_b(self), self._get_param("WindowId"))
    task = _get_task(window, self._get_param("WindowTaskId"))
    replace = bool(self._get_param("Replace", False))
    if replace and self._get_param("TaskArn") is None:
        raise validation(
            "TaskArn is required when Replace is true: all fields required by "
            "RegisterTaskWithMaintenanceWindow are required."
        )
    targets = self._get_param("Targets")
    _check_task_targets(window, targets)

    def resulting(param: str, attr: str) -> Any:
        value = self._get_param(param)
        return value if value is not None or replace else getattr(task, attr)

    check_task_rate_controls(
        task.task_type,
        resulting("Targets", "targets"),
        resulting("MaxConcurrency", "max_concurrency"),
        resulting("MaxErrors", "max_errors"),
    )
    for param, attr, default in (
        ("Targets", "targets", []),
        ("TaskArn", "task_arn", task.task_arn),
        ("ServiceRoleArn", "service_role_arn", None),
        ("TaskParameters", "task_parameters", None),
        ("TaskInvocationParameters", "task_invocation_parameters", None),
        ("Priority", "priority", 1),
        ("MaxConcurrency", "max_concurrency", None),
        ("MaxErrors", "max_errors", None),
        ("LoggingInfo", "logging_info", None),
        ("Name", "name", None),
        ("Description", "description", None),
        ("CutoffBehavior", "cutoff_behavior", "CONTINUE_TASK"),
        ("AlarmConfiguration", "alarm_configurations", None),
    ):
        value = self._get_param(param)
        if value is not None:
            setattr(task, attr, value)
        elif replace:
            setattr(task, attr, default)
    data = task_json(task, full=True)
    data.pop("TaskType", None)
    return ActionResult(data)


def deregister_task_from_maintenance_window(self: R) -> ActionResult:
    window = _get_window(_b(self), self._get_param("WindowId"))
    task_id = self._get_param("WindowTaskId")
    _get_task(window, task_id)
    del window.tasks[task_id]
    return ActionResult({"WindowId": window.id, "WindowTaskId": task_id})


# --- tags ----------------------------------------------------------------------------------


def add_tags_to_resource(self: R) -> ActionResult:
    backend = _b(self)
    resource_type = self._get_param("ResourceType")
    resource_id = self._get_param("ResourceId")
    tags = tags_dict(self._get_param("Tags"))
    resource_id = backend._validate_resource_type_and_id(resource_type, resource_id)
    current = backend._resource_tags[resource_type][resource_id]
    if len(set(current) | set(tags)) > 50:
        raise SSMError("TooManyTagsError", "The Targets parameter includes too many tags. Remove one or more tags and try the command again.")
    current.update(tags)
    return EmptyResult()


INSTANCE_ID_RE = re.compile(r"^(i-(\w{8}|\w{17})|mi-\w{17})$")


# --------------------------------------------------------------------------------------------
# model-driven input validation for every SSM action
# --------------------------------------------------------------------------------------------

_original_call_action = SimpleSystemManagerResponse.call_action


def _call_action(self: R) -> Any:
    try:
        action = self._get_action()
        operation = _SSM_MODEL.operation_model(action)
    except Exception:
        return _original_call_action(self)
    try:
        params = json.loads(self.body) if self.body else {}
    except (TypeError, ValueError):
        params = {}
    if isinstance(params, dict):
        message = validate_against_model(operation, params)
        if message:
            status, headers, body = self.serialized(ActionResult(validation(message)))
            headers["status"] = str(status)
            return status, headers, body
    return _original_call_action(self)


# --------------------------------------------------------------------------------------------
# install
# --------------------------------------------------------------------------------------------

RESPONSE_METHODS: list[Callable[..., Any]] = [
    create_patch_baseline,
    get_patch_baseline,
    update_patch_baseline,
    delete_patch_baseline,
    describe_patch_baselines,
    register_patch_baseline_for_patch_group,
    deregister_patch_baseline_for_patch_group,
    get_patch_baseline_for_patch_group,
    describe_patch_groups,
    get_default_patch_baseline,
    register_default_patch_baseline,
    create_maintenance_window,
    get_maintenance_window,
    describe_maintenance_windows,
    update_maintenance_window,
    delete_maintenance_window,
    register_target_with_maintenance_window,
    describe_maintenance_window_targets,
    update_maintenance_window_target,
    deregister_target_from_maintenance_window,
    register_task_with_maintenance_window,
    describe_maintenance_window_tasks,
    get_maintenance_window_task,
    update_maintenance_window_task,
    deregister_task_from_maintenance_window,
    add_tags_to_resource,
]

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    from . import instance_info, run_command, service_settings, window_executions

    for method in (
        RESPONSE_METHODS
        + run_command.RESPONSE_METHODS
        + instance_info.RESPONSE_METHODS
        + service_settings.RESPONSE_METHODS
        + window_executions.RESPONSE_METHODS
    ):
        setattr(SimpleSystemManagerResponse, method.__name__, method)
    SimpleSystemManagerResponse.call_action = _call_action  # type: ignore[method-assign]
    SimpleSystemManagerBackend._validate_resource_type_and_id = _validate_resource_type_and_id  # type: ignore[method-assign]
    from . import commands

    commands.install()
