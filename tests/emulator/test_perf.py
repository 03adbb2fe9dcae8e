"""The emulator's speed-ups change no answer (tests/emulator/README.md, "Performance").

* ``serialize_ext``: the memoised attribute picker and the direct EC2 XML writer give
  byte-for-byte moto's own serialisation (in-process, moto's originals as the reference);
* ``ec2_ext``: the direct tag lookup answers what moto's scan answers;
* ``node_views`` / ``paginate_lazy``: DescribeInstanceInformation pages, tokens, filters and
  errors across page boundaries, and every page reads the fleet as it is now (a stop, a start,
  a tag, a termination or a ``set-managed`` between two pages shows on the next one).
"""

from __future__ import annotations

import random
from typing import Any, Iterator

import pytest
import xmltodict
from botocore.exceptions import ClientError

from conftest import Emulator
from test_coverage import NEW_AMIS, set_managed
from test_emulator import AMIS, code

ACCOUNT = "123456789012"


# --- in-process: the speed-ups against moto's own code ------------------------------------------


@pytest.fixture()
def moto_ec2() -> Iterator[Any]:
    """An in-process moto with the extension installed (mock_aws), and its EC2 backend."""
    import boto3
    from moto import mock_aws

    import patchpilot_emulator

    patchpilot_emulator.install()
    with mock_aws():
        from moto.ec2.models import ec2_backends

        yield boto3.client("ec2", region_name="us-east-1"), ec2_backends[ACCOUNT]["us-east-1"]


def _fleet(ec2: Any) -> list[str]:
    """Three reservations, tags with characters XML must escape and an empty value, a Windows
    instance, a stopped and a terminated one."""
    ids: list[str] = []
    for ami, count, tags in (
        (AMIS["rhel-9"], 3, {"Name": "db <primary> & \"replica\" 'x'", "Patch Group": "patch_test_0600_batch_1"}),
        (AMIS["windows-2022"], 2, {"Name": "win", "Empty": ""}),
        (AMIS["ubuntu-22.04"], 2, {}),
    ):
        spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
        out = ec2.run_instances(ImageId=ami, MinCount=count, MaxCount=count, InstanceType="t3.micro", TagSpecifications=spec)
        ids += [i["InstanceId"] for i in out["Instances"]]
    ec2.stop_instances(InstanceIds=[ids[1]])
    ec2.terminate_instances(InstanceIds=[ids[4]])
    ec2.create_tags(Resources=[ids[5]], Tags=[{"Key": "later", "Value": "a\tb\nc"}])
    return ids


def _bodies(operation: str, result: Any) -> tuple[str, str]:
    """(moto's own body, the extension's body) for one result of an EC2 operation."""
    from moto.core.serialize import EC2Serializer, SerializationContext, XFormedAttributePicker
    from moto.core.utils import get_service_model
    from moto.ec2.models.tags import TagBackend
    from moto.ec2.responses import EC2Response

    from patchpilot_emulator import ec2_ext, serialize_ext

    model = get_service_model("ec2").operation_model(operation)
    context = SerializationContext(request_id="req-1")
    transformers = EC2Response.RESPONSE_KEY_PATH_TO_TRANSFORMER

    class MotoSerializer(EC2Serializer):
        _serialize_body = serialize_ext._original_ec2_body

    fast_tags = TagBackend.describe_tags
    TagBackend.describe_tags = ec2_ext.moto_describe_tags  # type: ignore[method-assign]
    try:
        reference = MotoSerializer(model, context, value_picker=XFormedAttributePicker(response_transformers=transformers))
        expected = reference.serialize(result)["body"]
    finally:
        TagBackend.describe_tags = fast_tags  # type: ignore[method-assign]
    fast = EC2Serializer(model, context, value_picker=serialize_ext.MemoPicker(response_transformers=transformers))
    return expected, fast.serialize(result)["body"]


def test_describe_instances_body_is_motos_byte_for_byte(moto_ec2: Any) -> None:
    ec2, backend = moto_ec2
    _fleet(ec2)
    reservations = backend.describe_instances(filters=None)
    expected, actual = _bodies("DescribeInstances", {"Reservations": reservations, "NextToken": "r-next"})
    assert "&lt;primary&gt; &amp;" in expected and "<value/>" in expected
    assert actual == expected
    expected, actual = _bodies("RunInstances", reservations[0])
    assert actual == expected


def test_tag_lookup_answers_what_motos_scan_answers(moto_ec2: Any) -> None:
    from patchpilot_emulator import ec2_ext

    ec2, backend = moto_ec2
    ids = _fleet(ec2)
    for resource_id in ids + ["i-00000000000000000", "i-0*", ids[0][:-1] + "?", ""]:
        filters = {"resource-id": [resource_id]}
        assert backend.describe_tags(filters) == ec2_ext.moto_describe_tags(backend, filters), resource_id
    both = {"resource-id": ids[:2]}
    assert backend.describe_tags(both) == ec2_ext.moto_describe_tags(backend, both)


def test_error_body_is_motos_byte_for_byte(moto_ec2: Any) -> None:
    from moto.ec2.exceptions import InvalidInstanceIdError

    expected, actual = _bodies("DescribeInstances", InvalidInstanceIdError("i-0123456789abcdef0"))
    assert "InvalidInstanceID.NotFound" in expected and actual == expected


def _random_value(rng: random.Random, depth: int) -> Any:
    texts = ["", "plain", "a & b", "<tag>", "quote \" and ' ", "tab\tnew\nline", "ünï", "]]>", " "]
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice(texts)
    if kind == 1:
        return rng.choice([True, False, 0, 7, -3, 1.5, 1e-07])
    if kind == 2:
        return None
    if kind == 3:
        return rng.choice(texts) + str(rng.random())
    if kind == 4:
        return rng.choice([b"bytes", (1, 2), 3 + 4j]) if rng.random() < 0.3 else "s"
    if kind in (5, 6):
        return {_random_key(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _random_key(rng: random.Random) -> Any:
    return rng.choice(
        ["item", "Name", "instanceId", "tagSet", "@xmlns", "@attr", "#text", "#comment", "bad name", "a/b", "?x", "@bad=", 5]
    )


def test_ec2_xml_writes_what_xmltodict_writes() -> None:
    """Random documents (seeded): the same text, or the same error, as xmltodict.unparse."""
    from patchpilot_emulator.serialize_ext import ec2_xml

    rng = random.Random(12)
    compared = 0
    for _ in range(3000):
        root = {"DescribeInstancesResponse": {_random_key(rng): _random_value(rng, 0) for _ in range(rng.randrange(1, 5))}}
        if rng.random() < 0.2:
            root["DescribeInstancesResponse"]["@xmlns"] = "http://ec2.amazonaws.com/doc/2016-11-15/"
        try:
            expected: Any = xmltodict.unparse(root, full_document=True, pretty=False, short_empty_elements=True)
        except Exception as exc:  # noqa: BLE001 - the same exception type is the contract
            expected = type(exc)
        try:
            actual: Any = ec2_xml(root)
        except Exception as exc:  # noqa: BLE001
            actual = type(exc)
        assert actual == expected, root
        compared += isinstance(expected, str)
    assert compared > 1000  # most documents are valid: the fast path is what was compared


# --- through the server: DescribeInstanceInformation pages --------------------------------------


def _launch(emu: Emulator, ami: str, count: int, tags: dict[str, str]) -> list[str]:
    out = emu.client("ec2").run_instances(
        ImageId=ami, MinCount=count, MaxCount=count, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    return [i["InstanceId"] for i in out["Instances"]]


def _pages(emu: Emulator, **kwargs: Any) -> tuple[list[str], list[str | None]]:
    """Every page of a listing with MaxResults 5: (node ids in order, the tokens answered)."""
    ssm = emu.client("ssm")
    ids: list[str] = []
    tokens: list[str | None] = []
    token = None
    while True:
        page = ssm.describe_instance_information(MaxResults=5, **kwargs, **({"NextToken": token} if token else {}))
        ids += [n["InstanceId"] for n in page["InstanceInformationList"]]
        token = page.get("NextToken")
        tokens.append(token)
        if not token:
            return ids, tokens


@pytest.fixture()
def fleet(emu: Emulator) -> dict[str, Any]:
    """Twelve EC2 managed nodes in three reservations (one stopped, one terminated, one made
    unmanaged, one ConnectionLost), three without agent, two registered mi-* nodes."""
    group_a = _launch(emu, AMIS["rhel-9"], 8, {"Patch Group": "a"})
    group_b = _launch(emu, AMIS["ubuntu-22.04"], 4, {"Patch Group": "b"})
    no_agent = _launch(emu, NEW_AMIS["debian-12"][0], 3, {"Patch Group": "a"})
    mis = []
    for _ in range(2):
        status, mi = emu.post("/patchpilot-emulator/register-managed-instance", {"PlatformType": "Linux", "PlatformName": "Ubuntu", "PlatformVersion": "22.04"})
        assert status == 200, mi
        mis.append(mi["InstanceId"])
    ec2 = emu.client("ec2")
    ec2.stop_instances(InstanceIds=[group_a[2]])
    ec2.terminate_instances(InstanceIds=[group_a[6]])
    set_managed(emu, {"InstanceId": group_b[1], "Managed": False})
    set_managed(emu, {"InstanceId": group_a[4], "PingStatus": "ConnectionLost"})
    return {"a": group_a, "b": group_b, "no_agent": no_agent, "mi": mis}


def test_pages_cross_boundaries_with_and_without_filters(emu: Emulator, fleet: dict[str, Any]) -> None:
    """EC2 instances in launch order, then registered nodes; NextToken the offset of the next
    page; a filter pages over the matching nodes only (DescribeInstanceInformation
    MaxResults 5-50, NextToken)."""
    a, b, mis = fleet["a"], fleet["b"], fleet["mi"]
    every = [i for i in a if i != a[6]] + [i for i in b if i != b[1]] + mis
    assert _pages(emu) == (every, ["5", "10", None])
    in_a = [i for i in a if i != a[6]]
    assert _pages(emu, Filters=[{"Key": "tag:Patch Group", "Values": ["a"]}]) == (in_a, ["5", None])
    online = [i for i in every if i not in (a[2], a[4])]
    assert _pages(emu, Filters=[{"Key": "PingStatus", "Values": ["Online"]}])[0] == online
    both = [{"Key": "tag:Patch Group", "Values": ["a"]}, {"Key": "PingStatus", "Values": ["Online"]}]
    assert _pages(emu, Filters=both)[0] == [i for i in in_a if i in online]
    assert _pages(emu, Filters=[{"Key": "ResourceType", "Values": ["ManagedInstance"]}])[0] == mis
    legacy = [{"key": "InstanceIds", "valueSet": [b[3], a[0], fleet["no_agent"][0]]}]
    assert _pages(emu, InstanceInformationFilterList=legacy)[0] == [a[0], b[3]]


def test_tokens_at_and_beyond_the_end(emu: Emulator, fleet: dict[str, Any]) -> None:
    ssm = emu.client("ssm")
    total = len(_pages(emu)[0])
    last = ssm.describe_instance_information(MaxResults=5, NextToken=str(total))
    assert last["InstanceInformationList"] == [] and "NextToken" not in last
    exact = ssm.describe_instance_information(MaxResults=5, NextToken=str(total - 5))
    assert len(exact["InstanceInformationList"]) == 5 and "NextToken" not in exact
    for bad in (str(total + 1), "abc"):
        with pytest.raises(ClientError) as err:
            ssm.describe_instance_information(MaxResults=5, NextToken=bad)
        assert code(err) == "InvalidNextToken"
    with pytest.raises(ClientError) as err:  # beyond the filtered list, not the fleet
        ssm.describe_instance_information(MaxResults=5, NextToken="3", Filters=[{"Key": "ResourceType", "Values": ["ManagedInstance"]}])
    assert code(err) == "InvalidNextToken"


def test_filter_errors_in_request_order(emu: Emulator, fleet: dict[str, Any]) -> None:
    ssm = emu.client("ssm")
    bad_key = {"Key": "Colour", "Values": ["red"]}
    bad_id = {"Key": "InstanceIds", "Values": ["not-an-id"]}
    for filters, expected in (([bad_key, bad_id], "InvalidFilterKey"), ([bad_id, bad_key], "InvalidInstanceId")):
        with pytest.raises(ClientError) as err:
            ssm.describe_instance_information(Filters=filters)
        assert code(err) == expected


def test_every_page_reads_the_fleet_as_it_is_now(emu: Emulator, fleet: dict[str, Any]) -> None:
    """Changes between two pages show on the next page (nothing is remembered between
    requests): terminate, tag, set-managed, stop and start."""
    ssm, ec2 = emu.client("ssm"), emu.client("ec2")
    a, b = fleet["a"], fleet["b"]
    first = [n["InstanceId"] for n in ssm.describe_instance_information(MaxResults=5)["InstanceInformationList"]]
    ec2.terminate_instances(InstanceIds=[first[0]])
    second = [n["InstanceId"] for n in ssm.describe_instance_information(MaxResults=5, NextToken="5")["InstanceInformationList"]]
    assert second == _pages(emu)[0][5:10]  # shifted by the termination, as an offset token is

    ec2.create_tags(Resources=[b[0]], Tags=[{"Key": "Patch Group", "Value": "a"}])
    assert b[0] in _pages(emu, Filters=[{"Key": "tag:Patch Group", "Values": ["a"]}])[0]
    ec2.delete_tags(Resources=[b[0]], Tags=[{"Key": "Patch Group"}])
    assert b[0] not in _pages(emu, Filters=[{"Key": "tag:Patch Group", "Values": ["a"]}])[0]
    assert b[0] not in _pages(emu, Filters=[{"Key": "tag-key", "Values": ["Patch Group"]}])[0]

    set_managed(emu, {"InstanceId": b[2], "Managed": False})
    assert b[2] not in _pages(emu)[0]
    set_managed(emu, {"InstanceId": b[1], "Managed": True})
    assert b[1] in _pages(emu)[0]
    set_managed(emu, {"InstanceId": a[4], "PingStatus": "Online"})
    ec2.stop_instances(InstanceIds=[a[3]])
    lost = _pages(emu, Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])[0]
    assert lost == [a[2], a[3]]
    ec2.start_instances(InstanceIds=[a[2], a[3]])
    assert _pages(emu, Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])[0] == []


def test_describe_instances_pages_and_tags_are_current(emu: Emulator) -> None:
    """moto pages DescribeInstances by reservation (AWS by instance; benches/RESULTS.md §5):
    a state filter pages across reservations, and a tag written or removed shows at once."""
    ec2 = emu.client("ec2")
    reservations = [_launch(emu, AMIS["rhel-9"], 2, {"Name": f"r{n}"}) for n in range(7)]
    ec2.stop_instances(InstanceIds=[reservations[3][0]])
    seen: list[str] = []
    token = None
    pages = 0
    live = {"Name": "instance-state-name", "Values": ["running"]}
    while True:
        page = ec2.describe_instances(Filters=[live], MaxResults=5, **({"NextToken": token} if token else {}))
        pages += 1
        seen += [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 2
    assert seen == [i for r in reservations for i in r if i != reservations[3][0]]
    target = reservations[5][1]
    ec2.create_tags(Resources=[target], Tags=[{"Key": "Patch Group", "Value": "x & <y>"}, {"Key": "Empty", "Value": ""}])

    def tags() -> dict[str, str]:
        out = ec2.describe_instances(InstanceIds=[target])["Reservations"][0]["Instances"][0]
        return {t["Key"]: t["Value"] for t in out.get("Tags", [])}

    assert tags() == {"Name": "r5", "Patch Group": "x & <y>", "Empty": ""}
    ec2.delete_tags(Resources=[target], Tags=[{"Key": "Patch Group"}, {"Key": "Name"}, {"Key": "Empty"}])
    assert tags() == {}
