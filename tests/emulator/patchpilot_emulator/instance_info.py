"""Managed-node information and patch states: DescribeInstanceInformation,
DescribeInstancePatchStates, DescribeInstancePatchStatesForPatchGroup (SSM API Reference), and
the agent's ping status. Split from ``ssm_ext``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Callable

from moto.core.responses import ActionResult
from moto.ssm.models import SimpleSystemManagerBackend

from . import patching
from .ssm_ext import (
    AGENT_VERSION,
    INSTANCE_ID_RE,
    NodeView,
    R,
    SSMError,
    _b,
    node_views,
    nodes_among,
    now,
    paginate,
    paginate_lazy,
    prune,
    state,
)


# The agent's health ping: an Online agent was heard within this interval; a node whose agent
# stopped answering was last heard at least this long ago.
PING_INTERVAL = timedelta(minutes=5)


def ping_of(backend: SimpleSystemManagerBackend, node: NodeView) -> tuple[str, datetime]:
    """(PingStatus, LastPingDateTime) of a managed node (InstanceInformation: PingStatus
    "Connection status of SSM Agent", Online | ConnectionLost | Inactive (deprecated);
    LastPingDateTime "The date and time when the agent last pinged the Systems Manager
    service"). A stopped EC2 instance has no running agent: ConnectionLost, last heard when it
    stopped. A node set ConnectionLost was last heard at the time given to the hook (default:
    when it was set)."""
    pp = state(backend)
    status = pp.ping_status.get(node.instance_id)
    if not node.running:
        # a stopped instance's agent is down whatever was set before
        last = node.stopped_at or pp.last_ping.get(node.instance_id) or now() - PING_INTERVAL
        if node.instance_id in pp.last_ping:
            last = min(last, pp.last_ping[node.instance_id])
        return "ConnectionLost", last
    if status and status != "Online":
        return status, pp.last_ping.get(node.instance_id) or now() - PING_INTERVAL
    return "Online", now()


def _node_info(node: NodeView, backend: SimpleSystemManagerBackend) -> dict[str, Any]:
    ping, last_ping = ping_of(backend, node)
    data: dict[str, Any] = {
        "InstanceId": node.instance_id,
        "PingStatus": ping,
        "LastPingDateTime": last_ping,
        "AgentVersion": AGENT_VERSION,
        "IsLatestVersion": True,
        "PlatformType": node.platform_type,
        "PlatformName": node.platform_name,
        "PlatformVersion": node.platform_version,
        "ResourceType": node.resource_type,
        "IPAddress": node.ip_address,
        "ComputerName": node.computer_name,
        "SourceId": node.instance_id,
        "SourceType": "AWS::EC2::Instance" if node.resource_type == "EC2Instance" else "AWS::SSM::ManagedInstance",
    }
    if node.resource_type == "ManagedInstance":
        data.update(
            {
                "Name": node.name,
                "RegistrationDate": node.registration_date,
                "IamRole": node.iam_role,
                "ActivationId": node.activation_id,
            }
        )
    return prune(data)


def describe_instance_information(self: R) -> ActionResult:
    backend = _b(self)
    legacy = self._get_param("InstanceInformationFilterList")
    filters = self._get_param("Filters")
    if legacy and filters:
        raise SSMError(
            "InvalidInstanceInformationFilterValue",
            "InstanceInformationFilterList and Filters cannot be used in the same request.",
        )
    normalized: list[tuple[str, list[str]]] = []
    for f in legacy or []:
        normalized.append((f.get("key", ""), f.get("valueSet", [])))
    for f in filters or []:
        normalized.append((f.get("Key", ""), f.get("Values", [])))
    infos: dict[str, dict[str, Any]] = {}

    def info_of(node: NodeView) -> dict[str, Any]:
        # built once per node and request: a filter on PingStatus reads it, the page answers it
        info = infos.get(node.instance_id)
        if info is None:
            info = infos[node.instance_id] = _node_info(node, backend)
        return info

    matches = _filter(normalized, info_of)
    max_results, next_token = self._get_param("MaxResults"), self._get_param("NextToken")
    if matches is None:
        # the views of the requested page only (160 pages of a 10,000-node fleet would
        # otherwise build every node's view 160 times)
        makers, token = paginate_lazy(node_views(backend), max_results, next_token, 50)
        page = [make() for make in makers]
    else:
        id_sets = [set(values) for key, values in normalized if key == "InstanceIds"]
        if id_sets:
            # only the named nodes can match: build their views alone, in the same order
            candidates = nodes_among(backend, set.intersection(*id_sets))
        else:
            candidates = (make() for make in node_views(backend))
        page, token = paginate_lazy((n for n in candidates if matches(n)), max_results, next_token, 50)
    return ActionResult(prune({"InstanceInformationList": [info_of(n) for n in page], "NextToken": token}))


def _filter(
    normalized: list[tuple[str, list[str]]], info_of: Callable[[NodeView], dict[str, Any]]
) -> Callable[[NodeView], bool] | None:
    """The conjunction of DescribeInstanceInformation's filters as one predicate (None: no
    filter), after checking them in request order: InvalidInstanceId for a malformed id of an
    InstanceIds filter, InvalidFilterKey for an unknown key, whichever comes first."""
    tests: list[Callable[[NodeView], bool]] = []
    for key, values in normalized:
        if key == "InstanceIds":
            for v in values:
                if not INSTANCE_ID_RE.match(v):
                    raise SSMError("InvalidInstanceId", f"Instance Id {v} is invalid.")
            tests.append(lambda n, values=values: n.instance_id in values)
        elif key in ("PingStatus", "ResourceType", "AgentVersion"):
            tests.append(lambda n, key=key, values=values: info_of(n).get(key) in values)
        elif key in ("PlatformTypes", "PlatformType"):
            tests.append(lambda n, values=values: info_of(n)["PlatformType"] in values)
        elif key == "SourceIds":
            tests.append(lambda n, values=values: info_of(n)["SourceId"] in values)
        elif key == "SourceTypes":
            tests.append(lambda n, values=values: info_of(n)["SourceType"] in values)
        elif key == "IamRole":
            tests.append(lambda n, values=values: info_of(n).get("IamRole") in values)
        elif key == "ActivationIds":
            tests.append(lambda n, values=values: info_of(n).get("ActivationId") in values)
        elif key == "AssociationStatus":
            tests.append(lambda n: False)
        elif key.startswith("tag:"):
            tests.append(lambda n, tag_key=key[4:], values=values: n.tags.get(tag_key) in values)
        elif key == "tag-key":
            tests.append(lambda n, values=values: any(v in n.tags for v in values))
        else:
            raise SSMError("InvalidFilterKey", f"The filter key {key} isn't valid.")
    if not tests:
        return None
    return lambda n: all(test(n) for test in tests)


def describe_instance_patch_states(self: R) -> ActionResult:
    backend = _b(self)
    wanted = self._get_param("InstanceIds", []) or []
    for v in wanted:
        if not INSTANCE_ID_RE.match(v):
            raise SSMError("InvalidInstanceId", f"Instance Id {v} is invalid.")
    states = state(backend).patch_states
    items = [states[i] for i in wanted if i in states]
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 10)
    return ActionResult(prune({"InstancePatchStates": page, "NextToken": token}))


_PATCH_STATE_FILTER_KEYS = (
    "InstalledCount", "InstalledOtherCount", "InstalledPendingRebootCount", "InstalledRejectedCount",
    "MissingCount", "FailedCount", "UnreportedNotApplicableCount", "NotApplicableCount",
)


def describe_instance_patch_states_for_patch_group(self: R) -> ActionResult:
    """SSM API Reference: DescribeInstancePatchStatesForPatchGroup; InstancePatchStateFilter
    (Key one of the counts, one Value "an integer greater than or equal to 0", Type Equal |
    NotEqual | LessThan | GreaterThan); errors InvalidFilter, InvalidNextToken."""
    backend = _b(self)
    group = self._get_param("PatchGroup")
    items = [p for p in state(backend).patch_states.values() if p.get("PatchGroup") == group]
    items.sort(key=lambda p: p["InstanceId"])
    compare = {
        "Equal": lambda a, b: a == b,
        "NotEqual": lambda a, b: a != b,
        "LessThan": lambda a, b: a < b,
        "GreaterThan": lambda a, b: a > b,
    }
    for f in self._get_param("Filters", []) or []:
        key, values, kind = f.get("Key"), f.get("Values") or [], f.get("Type")
        if key not in _PATCH_STATE_FILTER_KEYS:
            raise SSMError("InvalidFilter", f"The filter key {key} isn't valid.")
        if len(values) != 1 or not str(values[0]).isdigit():
            raise SSMError("InvalidFilter", f"The filter {key} needs one value, an integer >= 0.")
        if kind not in compare:
            raise SSMError("InvalidFilter", f"The filter {key} needs a Type: Equal, NotEqual, LessThan or GreaterThan.")
        items = [p for p in items if compare[kind](int(p.get(key) or 0), int(values[0]))]
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    return ActionResult(prune({"InstancePatchStates": page, "NextToken": token}))


def _state_name(value: str) -> str:
    """DescribeInstancePatches ``State`` filter: the API answers INSTALLED_OTHER, the filter's
    sample values are ``Installed | InstalledOther | InstalledPendingReboot``; both accepted."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", value).upper()


_PATCH_FILTER_KEYS = {"Classification": "Classification", "KBId": "KBId", "Severity": "Severity", "State": "State"}


def describe_instance_patches(self: R) -> ActionResult:
    """SSM API Reference: DescribeInstancePatches (Filters "Supported keys ... Classification,
    KBId, Severity, State"; MaxResults 10-100; errors InvalidInstanceId, InvalidFilter,
    InvalidNextToken); PatchComplianceData. The records are those of the node's last
    AWS-RunPatchBaseline operation (patching.py), empty before its first."""
    backend = _b(self)
    instance_id = self._get_param("InstanceId")
    node = patching.find_node(backend, instance_id)
    items = [patching.public_record(r) for r in patching.patching_state(backend).records.get(node.instance_id, [])]
    for f in self._get_param("Filters", []) or []:
        key, values = f.get("Key"), f.get("Values") or []
        if key not in _PATCH_FILTER_KEYS:
            raise SSMError("InvalidFilter", f"The filter key {key} isn't valid. Valid keys: {', '.join(_PATCH_FILTER_KEYS)}.")
        if key == "State":
            wanted = {_state_name(v) for v in values}
            unknown = wanted - set(patching.STATES)
            if unknown:
                raise SSMError("InvalidFilter", f"The filter value {sorted(unknown)[0]} isn't a valid State.")
            items = [i for i in items if i["State"] in wanted]
        else:
            items = [i for i in items if i.get(key) in values]
    page, token = paginate(items, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    return ActionResult(prune({"Patches": page, "NextToken": token}))


# "Metadata collected by inventory" (sysman-inventory-schema): the AWS types and attributes.
INVENTORY_TYPES = {
    "AWS:Application": ("Name", "ApplicationType", "Publisher", "Version", "Release", "Epoch", "InstalledTime",
                        "Architecture", "URL", "Summary", "PackageId"),
    "AWS:WindowsUpdate": ("HotFixId", "Description", "InstalledTime", "InstalledBy"),
    "AWS:InstanceInformation": (), "AWS:File": (), "AWS:Process": (), "AWS:AWSComponent": (), "AWS:Network": (),
    "AWS:PatchSummary": (), "AWS:PatchCompliance": (), "AWS:ComplianceItem": (), "AWS:ComplianceSummary": (),
    "AWS:InstanceDetailedInformation": (), "AWS:Service": (), "AWS:WindowsRegistry": (), "AWS:WindowsRole": (),
    "AWS:Tag": (), "AWS:ResourceGroup": (), "AWS:BillingInfo": (),
}
_INVENTORY_COMPARE = {
    "Equal": lambda have, want: any(have == w for w in want),
    "NotEqual": lambda have, want: all(have != w for w in want),
    "BeginWith": lambda have, want: any(have.startswith(w) for w in want),
    "LessThan": lambda have, want: any(patching.vercmp(have, w) < 0 for w in want),
    "GreaterThan": lambda have, want: any(patching.vercmp(have, w) > 0 for w in want),
}


def list_inventory_entries(self: R) -> ActionResult:
    """SSM API Reference: ListInventoryEntries (InstanceId, TypeName, Filters 1-5 InventoryFilter,
    MaxResults 1-50, NextToken; response TypeName, InstanceId, SchemaVersion, CaptureTime,
    Entries, NextToken; errors InvalidInstanceId, InvalidTypeNameException, InvalidFilter,
    InvalidNextToken). InventoryFilter: Key ``<TypeName>.<Attribute>`` (its example
    ``AWS:InstanceInformation.InstanceId``), Type Equal | NotEqual | BeginWith | LessThan |
    GreaterThan ("The Exists filter must be used with aggregators"). AWS:Application and
    AWS:WindowsUpdate come from the node's installed packages (patching.py); the other AWS
    types and Custom:* types hold nothing here."""
    backend = _b(self)
    node = patching.find_node(backend, self._get_param("InstanceId"))
    type_name = self._get_param("TypeName")
    if type_name not in INVENTORY_TYPES and not str(type_name).startswith("Custom:"):
        raise SSMError("InvalidTypeNameException", f"The parameter type name {type_name} isn't valid.")
    schema_version, entries = patching.inventory_entries(backend, node, type_name)
    attributes = INVENTORY_TYPES.get(type_name, ())
    for f in self._get_param("Filters", []) or []:
        key, values, kind = str(f.get("Key", "")), f.get("Values") or [], f.get("Type") or "Equal"
        attribute = key[len(type_name) + 1:] if key.startswith(type_name + ".") else None
        if attribute not in attributes:
            raise SSMError(
                "InvalidFilter",
                f"The filter key {key} isn't valid for {type_name}: use {type_name}.<attribute> with one of "
                f"{', '.join(attributes) or 'no attributes'}.",
            )
        if kind not in _INVENTORY_COMPARE:
            raise SSMError("InvalidFilter", f"The filter type {kind} isn't valid here (Exists needs an aggregator).")
        entries = [e for e in entries if _INVENTORY_COMPARE[kind](e.get(attribute, ""), [str(v) for v in values])]
    page, token = paginate(entries, self._get_param("MaxResults"), self._get_param("NextToken"), 50)
    answer: dict[str, Any] = {"TypeName": type_name, "InstanceId": node.instance_id, "Entries": page, "NextToken": token}
    if schema_version is not None:
        answer["SchemaVersion"] = schema_version
        answer["CaptureTime"] = patching.capture_time(backend, node).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ActionResult(prune(answer))


RESPONSE_METHODS: list[Callable[..., Any]] = [
    describe_instance_information,
    describe_instance_patch_states,
    describe_instance_patch_states_for_patch_group,
    describe_instance_patches,
    list_inventory_entries,
]
