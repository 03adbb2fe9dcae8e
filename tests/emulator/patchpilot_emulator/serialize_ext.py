"""A faster attribute picker for moto's response serializer: same answers, found once.

moto 5.2.5 serialises every ``ActionResult`` through ``moto.core.serialize``: for each member of
the botocore output shape, ``XFormedAttributePicker`` asks six alias providers which attribute
names to try on the Python object (``InstanceId``, ``instance_id``, ``id``, ...), tries them in
order, then tests the dotted key path against every entry of the response class's
``RESPONSE_KEY_PATH_TO_TRANSFORMER`` (EC2: ~40 entries). A DescribeInstances of 1,000
instances asks that ~80,000 times; the provider objects and the ``endswith`` loop were ~70 % of
the emulator's CPU for it (cProfile, benches/README.md "Coverage read, 10,000 instances").

What the providers answer depends only on the object's class (its name, its ``Meta``), the
member name and the shape object (its name, serialization name, parent structure), and which
transformer applies depends only on the key path and the transformer table, which does not
change while one response is serialised. ``MemoPicker`` remembers both for the life of one
picker (moto builds a new one per response) and still reads every value from the object each
time, in the same order of candidate names, so a response is byte-for-byte what moto's picker
gives (checked by ``test_perf.py``). An object with a ``Meta`` of its own (not its class's) is
never memoised.
"""

from __future__ import annotations

from typing import Any, Callable

import moto.core.responses as moto_responses
from moto.core.serialize import AttributePickerContext, XFormedAttributePicker
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


_installed = False


def install() -> None:
    """``ActionResult.execute_result`` (moto.core.responses) builds its picker by this name."""
    global _installed
    if _installed:
        return
    _installed = True
    moto_responses.XFormedAttributePicker = MemoPicker  # type: ignore[misc]
