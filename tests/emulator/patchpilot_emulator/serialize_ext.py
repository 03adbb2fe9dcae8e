"""Faster serialisation of moto's responses, byte-for-byte what moto answers.

1. A memoising attribute picker (``MemoPicker``).
2. A direct XML writer for EC2's query responses (``ec2_xml``).

**Picker.**
moto 5.2.5 serialises every ``ActionResult`` through ``moto.core.serialize``: for each member of
the botocore output shape, ``XFormedAttributePicker`` asks six alias providers which attribute
names to try on the Python object (``InstanceId``, ``instance_id``, ``id``, ...), tries them in
order, then tests the dotted key path against every entry of the response class's
``RESPONSE_KEY_PATH_TO_TRANSFORMER`` (EC2: ~40 entries). A DescribeInstances of 1,000
instances asks that ~150,000 times; the provider objects and the ``endswith`` loop were about a
third of its profiled time (cProfile, benches/README.md "Coverage read, 10,000 instances").

What the providers answer depends only on the object's class (its name, its ``Meta``), the
member name and the shape object (its name, serialization name, parent structure), and which
transformer applies depends only on the key path and the transformer table, which does not
change while one response is serialised. ``MemoPicker`` remembers both for the life of one
picker (moto builds a new one per response) and still reads every value from the object each
time, in the same order of candidate names, so a response is byte-for-byte what moto's picker
gives (checked by ``test_perf.py``). An object with a ``Meta`` of its own (not its class's) is
never memoised.

**EC2 XML.** ``EC2Serializer._serialize_body`` turns the serialised dict into XML with
``xmltodict.unparse`` over ``xml.sax.saxutils.XMLGenerator``: ~20 Python calls per element,
~45 % of a large DescribeInstances's profiled time once the picker is memoised. ``ec2_xml`` writes the same
text for what moto's EC2 serializer produces (dicts, lists, strings, booleans, numbers, None, an
``@xmlns`` attribute): the same declaration, element order, ``<a/>`` for empty elements
(``short_empty_elements``), empty lists left out, ``true``/``false``, text escaped by the same
``saxutils.escape`` and attributes by ``quoteattr``. Anything else (``#text``/``#comment``
keys, nested lists, bytes, other types, a name xmltodict would reject, pretty printing) is
handed to ``xmltodict.unparse`` unchanged, so its output (or its error) stays xmltodict's.
"""

from __future__ import annotations

from typing import Any, Callable
from xml.sax.saxutils import escape, quoteattr

import moto.core.responses as moto_responses
import xmltodict
from moto.core.serialize import AttributePickerContext, EC2Serializer, XFormedAttributePicker
from moto.core.utils import MISSING, get_value

_UNSEEN = object()
_NO_TRANSFORM = object()


class MemoPicker(XFormedAttributePicker):
    """``XFormedAttributePicker`` with its candidate names and transformer lookups memoised."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys: dict[tuple[type, str, Any], tuple[str, ...]] = {}
        self._transforms: dict[str, Any] = {}

    def _candidate_keys(self, context: AttributePickerContext) -> tuple[str, ...]:
        obj = context.obj
        own = getattr(obj, "__dict__", None)
        if own is not None and "Meta" in own:
            return tuple(self.get_possible_keys(context))
        memo_key = (obj.__class__, context.key, context.shape)
        keys = self._keys.get(memo_key)
        if keys is None:
            keys = tuple(self.get_possible_keys(context))
            self._keys[memo_key] = keys
        return keys

    def _transform(self, key_path: str) -> Callable[[Any], Any] | None:
        found = self._transforms.get(key_path, _UNSEEN)
        if found is _UNSEEN:
            found = _NO_TRANSFORM
            for transform_path, transform in self.response_transformers.items():
                if key_path.endswith(transform_path):
                    found = transform
                    break
            self._transforms[key_path] = found
        return None if found is _NO_TRANSFORM else found

    def __call__(self, context: AttributePickerContext) -> Any:
        obj = context.obj
        for possible_key in self._candidate_keys(context):
            value = get_value(obj, possible_key, MISSING)
            if value is not MISSING:
                break
        else:
            value = None
        transform = self._transform(f"{context.key_path}.{context.key}")
        return value if transform is None else transform(value)


class _Unusual(Exception):
    """Input outside what ``ec2_xml`` writes itself: xmltodict handles it."""


# Names xmltodict has already accepted (its _validate_name), by kind. Names come from the
# botocore model (a few hundred); bounded anyway.
_VALID: dict[str, set[str]] = {"element": set(), "attribute": set()}
_VALID_LIMIT = 10_000


def _valid(name: Any, kind: str) -> str:
    if name in _VALID[kind]:
        return str(name)
    if not isinstance(name, str) or name.startswith(("@", "#")):
        raise _Unusual(name)
    try:
        xmltodict._validate_name(name, kind)
    except ValueError as exc:
        raise _Unusual(name) from exc
    if len(_VALID[kind]) < _VALID_LIMIT:
        _VALID[kind].add(name)
    return name


def _element(name: str, value: Any, out: list[str]) -> None:
    """One element, as xmltodict's ``_emit`` writes it through XMLGenerator."""
    if value is None:
        out.append(f"<{name}/>")
        return
    if isinstance(value, str):
        text = value
    elif type(value) is bool:
        text = "true" if value else "false"
    elif type(value) is int or type(value) is float:
        text = str(value)
    elif isinstance(value, dict):
        attrs: list[str] = []
        children: list[tuple[str, Any]] = []
        for key, child in value.items():
            if not isinstance(key, str) or key.startswith("#"):
                raise _Unusual(key)  # xmltodict's text and comment keys, or no name at all
            if key.startswith("@"):
                if not isinstance(child, str):
                    raise _Unusual(key)
                attrs.append(f" {_valid(key[1:], 'attribute')}={quoteattr(child)}")
                continue
            if isinstance(child, list) and not child:
                continue  # xmltodict leaves empty lists out
            children.append((key, child))
        out.append(f"<{name}{''.join(attrs)}")
        if not children:
            out.append("/>")
            return
        out.append(">")
        for key, child in children:
            _emit(_valid(key, "element"), child, out)
        out.append(f"</{name}>")
        return
    else:
        raise _Unusual(type(value).__name__)
    out.append(f"<{name}>{escape(text)}</{name}>" if text else f"<{name}/>")


def _emit(name: str, value: Any, out: list[str]) -> None:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                raise _Unusual("nested list")
            _element(name, item, out)
    else:
        _element(name, value, out)


def ec2_xml(body: Any) -> str:
    """``xmltodict.unparse(body, full_document=True, short_empty_elements=True)``, faster."""
    try:
        if not isinstance(body, dict) or len(body) != 1:
            raise _Unusual("not one root")
        ((root, value),) = body.items()
        if not isinstance(value, dict):
            raise _Unusual("root is not a structure")
        out = ['<?xml version="1.0" encoding="utf-8"?>\n']
        _element(_valid(root, "element"), value, out)
        return "".join(out)
    except _Unusual:
        return str(xmltodict.unparse(body, full_document=True, pretty=False, short_empty_elements=True))


def _ec2_serialize_body(self: EC2Serializer, body: Any) -> str:
    if self.pretty_print:
        return _original_ec2_body(self, body)
    return ec2_xml(body)


_original_ec2_body = EC2Serializer._serialize_body
_installed = False


def install() -> None:
    """``ActionResult.execute_result`` (moto.core.responses) builds its picker by this name;
    EC2's serializer writes its body with ``ec2_xml``."""
    global _installed
    if _installed:
        return
    _installed = True
    moto_responses.XFormedAttributePicker = MemoPicker  # type: ignore[misc]
    EC2Serializer._serialize_body = _ec2_serialize_body  # type: ignore[method-assign]
