"""``POST /patchpilot-emulator/deploy-stack``: "deploy" the SAM stack into moto's backends.

The template goes through the SAM transform (``sam.py``), its intrinsics are resolved the way
CloudFormation resolves them ("Intrinsic function reference", "Pseudo parameters reference",
and each resource type's "Return values" section in the CloudFormation User Guide), and the
resources the functions and the tests need are created in moto: the SSM parameter, SNS topic
(with ``KmsMasterKeyId``), SQS queues, DynamoDB table, S3 bucket (+ bucket policy, public access
block), KMS key (+ key policy) and every IAM role with its inline and attached managed policies.
Physical names follow CloudFormation's ``<stack>-<LogicalId>-<suffix>`` pattern, deterministic
per stack name.  Every function gets an access key mapped to its role; requests signed with it
are evaluated against the role's policies by ``enforce.py``.
"""

from __future__ import annotations

import hashlib
import json
import string
import threading
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from . import sam

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"

_lock = threading.RLock()
# (account, region, stack name) -> deployed stack
_stacks: dict[tuple[str, str, str], dict[str, Any]] = {}
# access key id -> principal
_keys: dict[str, dict[str, Any]] = {}
_decisions: "deque[dict[str, Any]]" = deque(maxlen=2000)


class DeployError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def reset() -> None:
    with _lock:
        for key in list(_keys):
            _forget_moto_key(_keys[key])
        _stacks.clear()
        _keys.clear()
        _decisions.clear()


def record_decision(entry: dict[str, Any]) -> None:
    _decisions.append(entry)


def decisions() -> list[dict[str, Any]]:
    return list(_decisions)


def reset_decisions() -> None:
    _decisions.clear()


def principal_for_key(access_key: str) -> dict[str, Any] | None:
    return _keys.get(access_key)


def stacks() -> list[dict[str, Any]]:
    with _lock:
        return list(_stacks.values())


def role_by_arn(account: str, role_arn: str) -> dict[str, Any] | None:
    with _lock:
        for st in _stacks.values():
            if st["account"] != account:
                continue
            for role in st["roles"].values():
                if role["arn"] == role_arn:
                    return role  # type: ignore[no-any-return]
    return None


def bucket_policies(account: str, bucket: str) -> list[dict[str, Any]]:
    """The bucket's current policy, read from moto (so a put-bucket-policy is seen)."""
    from moto.s3.models import s3_backends

    try:
        b = s3_backends[account]["aws"].get_bucket(bucket)
    except Exception:
        return []
    if not b.policy:
        return []
    raw = b.policy.decode() if isinstance(b.policy, bytes) else b.policy
    return [{"PolicyName": "bucket-policy", "PolicyDocument": json.loads(raw)}]


# --------------------------------------------------------------------------- naming


def _suffix(*parts: str, length: int = 12, lower: bool = False) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    alphabet = (string.ascii_lowercase if lower else string.ascii_uppercase) + string.digits
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def physical_name(stack: str, logical_id: str, max_len: int = 64, lower: bool = False) -> str:
    suffix = _suffix(stack, logical_id, lower=lower)
    room = max_len - len(suffix) - 2
    s, lid = stack, logical_id
    if len(s) + len(lid) > room:
        # CloudFormation shortens the stack and logical-id parts to fit the name limit.
        half = max(room // 2, 1)
        s, lid = s[:half], lid[: room - min(len(s), half)]
    name = f"{s}-{lid}-{suffix}"
    return name.lower() if lower else name


# --------------------------------------------------------------------------- intrinsics


class Resolver:
    def __init__(self, template: dict[str, Any], stack: str, account: str, region: str, parameters: dict[str, Any]):
        self.template = template
        self.stack = stack
        self.account = account
        self.region = region
        self.partition = "aws"
        self.params: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if name in parameters:
                self.params[name] = parameters[name]
            elif "Default" in spec:
                self.params[name] = spec["Default"]
            else:
                raise DeployError(f"Parameters: [{name}] must have values")
            allowed = spec.get("AllowedValues")
            if allowed is not None and str(self.params[name]) not in [str(a) for a in allowed]:
                raise DeployError(f"Parameter '{name}' must be one of AllowedValues")
            if spec.get("Type") == "Number":
                self.params[name] = str(self.params[name])
        self.pseudo = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": self.partition,
            "AWS::StackName": stack,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack}/{uuid.UUID(_hex(stack, account, region))}",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
            "AWS::NotificationARNs": [],
        }
        self.physical: dict[str, dict[str, Any]] = {}
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions") or {}:
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.physical:
            return self.physical[name]["Ref"]
        raise DeployError(f"Template format error: Unresolved resource dependencies [{name}] in the Resources block of the template")

    def getatt(self, name: str, attr: str) -> Any:
        if name not in self.physical:
            raise DeployError(f"Template error: instance of Fn::GetAtt references undefined resource {name}")
        attrs = self.physical[name]["Attrs"]
        if attr not in attrs:
            raise DeployError(f"Template error: resource {name} does not support attribute type {attr} in Fn::GetAtt")
        return attrs[attr]

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            out = [self.resolve(n) for n in node]
            return [o for o in out if o is not _NOVALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                value = self.ref(arg)
                return _NOVALUE if arg == "AWS::NoValue" else value
            if fn == "Fn::GetAtt":
                if isinstance(arg, str):
                    arg = arg.split(".", 1)
                return self.getatt(arg[0], self.resolve(arg[1]))
            if fn == "Fn::Sub":
                if isinstance(arg, list):
                    text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
                else:
                    text, variables = arg, {}
                return self.sub(text, variables)
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.resolve(items))
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if fn == "Fn::Equals":
                a, b = self.resolve(arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if fn == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if fn == "Fn::GetAZs":
                return [f"{self.region}{z}" for z in "abc"]
        out = {}
        for k, v in node.items():
            r = self.resolve(v)
            if r is not _NOVALUE:
                out[k] = r
        return out

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def repl(m: Any) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                res, attr = expr.split(".", 1)
                return str(self.getatt(res, attr))
            return str(self.ref(expr))

        import re

        return re.sub(r"\$\{([^}]+)\}", repl, text)


_NOVALUE = object()


def _hex(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- physical ids


def _plan_physical(r: Resolver, logical_id: str, res: dict[str, Any]) -> dict[str, Any]:
    """Ref and GetAtt values of a resource, per the type's CloudFormation "Return values"."""
    t = res["Type"]
    props = res.get("Properties") or {}
    acct, region, stack = r.account, r.region, r.stack
    if t == "AWS::IAM::Role":
        name = props.get("RoleName") or physical_name(stack, logical_id, 64)
        path = props.get("Path") or "/"
        arn = f"arn:aws:iam::{acct}:role{path}{name}"
        return {"Ref": name, "Attrs": {"Arn": arn, "RoleId": "AROA" + _suffix(stack, logical_id, length=17)}}
    if t == "AWS::Lambda::Function":
        name = props.get("FunctionName") or physical_name(stack, logical_id, 64)
        return {"Ref": name, "Attrs": {"Arn": f"arn:aws:lambda:{region}:{acct}:function:{name}"}}
    if t == "AWS::S3::Bucket":
        name = props.get("BucketName") or physical_name(stack, logical_id, 63, lower=True)
        return {
            "Ref": name,
            "Attrs": {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
            },
        }
    if t == "AWS::KMS::Key":
        key_id = str(uuid.UUID(_hex(acct, region, stack, logical_id)))
        return {"Ref": key_id, "Attrs": {"Arn": f"arn:aws:kms:{region}:{acct}:key/{key_id}", "KeyId": key_id}}
    if t == "AWS::SNS::Topic":
        name = props.get("TopicName") or physical_name(stack, logical_id, 256)
        arn = f"arn:aws:sns:{region}:{acct}:{name}"
        return {"Ref": arn, "Attrs": {"TopicArn": arn, "TopicName": name}}
    if t == "AWS::SQS::Queue":
        name = props.get("QueueName") or physical_name(stack, logical_id, 80)
        url = f"https://sqs.{region}.amazonaws.com/{acct}/{name}"
        return {"Ref": url, "Attrs": {"Arn": f"arn:aws:sqs:{region}:{acct}:{name}", "QueueName": name, "QueueUrl": url}}
    if t == "AWS::DynamoDB::Table":
        name = props.get("TableName") or physical_name(stack, logical_id, 255)
        arn = f"arn:aws:dynamodb:{region}:{acct}:table/{name}"
        return {"Ref": name, "Attrs": {"Arn": arn, "StreamArn": f"{arn}/stream/1970-01-01T00:00:00.000"}}
    if t == "AWS::SSM::Parameter":
        return {"Ref": None, "Attrs": {"Type": None, "Value": None}}  # name resolved from Properties
    if t == "AWS::Events::Rule":
        name = props.get("Name") or physical_name(stack, logical_id, 64)
        return {"Ref": name, "Attrs": {"Arn": f"arn:aws:events:{region}:{acct}:rule/{name}"}}
    if t == "AWS::CloudWatch::Alarm":
        name = props.get("AlarmName") or physical_name(stack, logical_id, 255)
        return {"Ref": name, "Attrs": {"Arn": f"arn:aws:cloudwatch:{region}:{acct}:alarm:{name}"}}
    name = physical_name(stack, logical_id, 128)
    return {"Ref": name, "Attrs": {"Arn": name}}


def _order(resources: dict[str, Any]) -> list[str]:
    """Logical ids in dependency order (Ref / GetAtt / Sub / DependsOn)."""
    import re

    deps: dict[str, set[str]] = {}
    for lid, res in resources.items():
        found: set[str] = set()

        def walk(n: Any) -> None:
            if isinstance(n, dict):
                for k, v in n.items():
                    if k == "Ref" and isinstance(v, str) and v in resources:
                        found.add(v)
                    elif k == "Fn::GetAtt":
                        name = v.split(".")[0] if isinstance(v, str) else v[0]
                        if name in resources:
                            found.add(name)
                    elif k == "Fn::Sub":
                        text = v if isinstance(v, str) else v[0]
                        for m in re.findall(r"\$\{([^}!]+)\}", text):
                            name = m.split(".")[0]
                            if name in resources:
                                found.add(name)
                        walk(v)
                        continue
                    walk(v)
            elif isinstance(n, list):
                for x in n:
                    walk(x)

        walk(res.get("Properties"))
        for d in _as_list(res.get("DependsOn")):
            found.add(d)
        deps[lid] = found - {lid}
    order: list[str] = []
    seen: set[str] = set()

    def visit(n: str, stack: tuple[str, ...] = ()) -> None:
        if n in seen:
            return
        if n in stack:
            raise DeployError(f"Circular dependency between resources: {list(stack)}")
        for d in sorted(deps.get(n, ())):
            visit(d, stack + (n,))
        seen.add(n)
        order.append(n)

    for lid in resources:
        visit(lid)
    return order


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


# --------------------------------------------------------------------------- deploy


def managed_policy_document(arn: str) -> dict[str, Any] | None:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    data = _managed_data(aws_managed_policies_data)
    name = arn.rsplit("/", 1)[-1]
    entry = data.get(name)
    return entry["Document"] if entry else None


_managed_cache: dict[str, Any] = {}


def _managed_data(raw: str) -> dict[str, Any]:
    if not _managed_cache:
        _managed_cache.update(json.loads(raw))
    return _managed_cache


def deploy(body: dict[str, Any]) -> dict[str, Any]:
    stack = body.get("StackName")
    if not stack or not isinstance(stack, str):
        raise DeployError("StackName is required")
    account = str(body.get("AccountId") or DEFAULT_ACCOUNT)
    region = str(body.get("Region") or DEFAULT_REGION)
    template_path = Path(body.get("TemplatePath") or sam.DEFAULT_TEMPLATE)
    overrides = body.get("Parameters") or {}
    try:
        template = sam.transformed_template(template_path)
    except FileNotFoundError as err:
        raise DeployError(f"template not found: {err}") from err
    with _lock:
        return _deploy(template, stack, account, region, overrides)


def _deploy(template: dict[str, Any], stack: str, account: str, region: str, overrides: dict[str, Any]) -> dict[str, Any]:
    r = Resolver(template, stack, account, region, overrides)
    resources = template.get("Resources") or {}
    active = {lid: res for lid, res in resources.items() if "Condition" not in res or r.condition(res["Condition"])}
    for lid in _order(active):
        res = active[lid]
        r.physical[lid] = _plan_physical(r, lid, res)
        if res["Type"] == "AWS::SSM::Parameter":
            props = r.resolve(res.get("Properties") or {})
            name = props.get("Name") or physical_name(stack, lid, 128)
            arn = f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"
            r.physical[lid] = {"Ref": name, "Attrs": {"Type": props.get("Type"), "Value": props.get("Value"), "Arn": arn}}
    resolved = {lid: {"Type": res["Type"], "Properties": r.resolve(res.get("Properties") or {}), "Metadata": res.get("Metadata") or {}} for lid, res in active.items()}

    roles: dict[str, dict[str, Any]] = {}
    for lid in _order(active):
        res = resolved[lid]
        _create(account, region, stack, lid, res, r, resolved, roles)

    key = (account, region, stack)
    previous = _stacks.get(key)
    functions: dict[str, Any] = {}
    globals_env = {}
    for lid, res in resolved.items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        props = res["Properties"]
        binary = (active[lid].get("Metadata") or {}).get("BuildProperties", {}).get("Binary")
        if not binary:
            # SAM moves the function's Metadata onto the AWS::Lambda::Function.
            binary = lid
        role_arn = props.get("Role")
        role = next((x for x in roles.values() if x["arn"] == role_arn), None)
        if role is None:
            raise DeployError(f"function {lid}: role {role_arn} is not a role of this stack")
        fname = r.physical[lid]["Ref"]
        cred = _issue_key(account, region, stack, lid, role, session=fname)
        functions[binary] = {
            "LogicalId": lid,
            "FunctionName": fname,
            "RoleArn": role_arn,
            "AccessKeyId": cred["AccessKeyId"],
            "SecretAccessKey": cred["SecretAccessKey"],
            "Principal": cred["Principal"],
            "Environment": {**globals_env, **((props.get("Environment") or {}).get("Variables") or {})},
        }
    role_out = {}
    for lid, role in roles.items():
        cred = _issue_key(account, region, stack, lid, role, session=f"{stack}-{lid}")
        role_out[lid] = {"RoleArn": role["arn"], "AccessKeyId": cred["AccessKeyId"], "SecretAccessKey": cred["SecretAccessKey"], "Principal": cred["Principal"]}
    outputs = {}
    for name, out in (template.get("Outputs") or {}).items():
        if "Condition" in out and not r.condition(out["Condition"]):
            continue
        outputs[name] = r.resolve(out.get("Value"))
    answer = {
        "StackName": stack,
        "AccountId": account,
        "Region": region,
        "Resources": {
            lid: {
                "Type": res["Type"],
                "PhysicalId": r.physical[lid]["Ref"],
                "Arn": r.physical[lid]["Attrs"].get("Arn") or r.physical[lid]["Attrs"].get("TopicArn"),
            }
            for lid, res in resolved.items()
        },
        "Outputs": outputs,
        "Functions": functions,
        "Roles": role_out,
        "Parameters": {k: v for k, v in r.params.items()},
    }
    _stacks[key] = {"account": account, "region": region, "name": stack, "roles": roles, "answer": answer, "resolved": resolved}
    del previous
    return answer


def _issue_key(account: str, region: str, stack: str, lid: str, role: dict[str, Any], session: str) -> dict[str, str]:
    access_key = "ASIA" + _suffix(account, region, stack, lid, "key", length=16)
    secret = _suffix(account, region, stack, lid, "secret", length=40)
    principal = f"arn:aws:sts::{account}:assumed-role/{role['name']}/{session}"
    entry = {
        "access_key": access_key,
        "account": account,
        "region": region,
        "stack": stack,
        "role_logical_id": role["logical_id"],
        "role_arn": role["arn"],
        "role_name": role["name"],
        "session": session,
        "principal": principal,
    }
    _keys[access_key] = entry
    _register_moto_key(entry, secret)
    return {"AccessKeyId": access_key, "SecretAccessKey": secret, "Principal": principal}


def _register_moto_key(entry: dict[str, Any], secret: str) -> None:
    """moto picks the account of a request from the access key's entry in its IAM backend."""
    from moto.iam.models import AccessKey, iam_backends

    backend = iam_backends[entry["account"]]["aws"]
    key = AccessKey(None, prefix="ASIA", account_id=entry["account"])
    key.access_key_id = entry["access_key"]
    key.secret_access_key = secret
    key.role_arn = entry["role_arn"]
    backend.access_keys[entry["access_key"]] = key


def _forget_moto_key(entry: dict[str, Any]) -> None:
    try:
        from moto.iam.models import iam_backends

        iam_backends[entry["account"]]["aws"].access_keys.pop(entry["access_key"], None)
    except Exception:
        pass


def _create(account: str, region: str, stack: str, lid: str, res: dict[str, Any], r: Resolver, resolved: dict[str, Any], roles: dict[str, Any]) -> None:
    t = res["Type"]
    p = res["Properties"]
    phys = r.physical[lid]
    if t == "AWS::IAM::Role":
        _create_role(account, lid, p, phys, roles)
    elif t == "AWS::SSM::Parameter":
        from moto.ssm.models import ssm_backends

        backend = ssm_backends[account][region]
        if backend.get_parameter(phys["Ref"]) is None:
            backend.put_parameter(
                name=phys["Ref"], description=p.get("Description", ""), value=str(p.get("Value")),
                parameter_type=p.get("Type", "String"), allowed_pattern=p.get("AllowedPattern"), keyid=None,
                overwrite=False, tags=[{"Key": k, "Value": v} for k, v in (p.get("Tags") or {}).items()],
                data_type=p.get("DataType", "text"),
                tier="Standard" if p.get("Tier") in (None, "Intelligent-Tiering") else p.get("Tier"), policies=None,
            )
    elif t == "AWS::KMS::Key":
        from moto.kms.models import kms_backends

        backend = kms_backends[account][region]
        key_id = phys["Ref"]
        if key_id not in backend.keys:
            key = backend.create_key(
                policy=json.dumps(p.get("KeyPolicy")) if p.get("KeyPolicy") else None,
                key_usage=p.get("KeyUsage", "ENCRYPT_DECRYPT"), key_spec=p.get("KeySpec", "SYMMETRIC_DEFAULT"),
                description=p.get("Description", ""), tags=p.get("Tags"),
            )
            backend.keys.pop(key.id, None)
            key.id = key_id
            key.arn = phys["Attrs"]["Arn"]
            backend.keys[key_id] = key
        else:
            backend.keys[key_id].policy = json.dumps(p.get("KeyPolicy"))
    elif t == "AWS::SNS::Topic":
        from moto.sns.models import sns_backends

        backend = sns_backends[account][region]
        attrs = {}
        if p.get("KmsMasterKeyId"):
            attrs["KmsMasterKeyId"] = p["KmsMasterKeyId"]
        if p.get("DisplayName"):
            attrs["DisplayName"] = p["DisplayName"]
        if phys["Ref"] not in backend.topics:
            backend.create_topic(phys["Attrs"]["TopicName"], attributes=attrs)
        else:
            for k, v in attrs.items():
                backend.set_topic_attribute(phys["Ref"], k, v)
    elif t == "AWS::SNS::TopicPolicy":
        from moto.sns.models import sns_backends

        for arn in p.get("Topics") or []:
            sns_backends[account][region].set_topic_attribute(arn, "Policy", json.dumps(p["PolicyDocument"]))
    elif t == "AWS::SQS::Queue":
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[account][region]
        name = phys["Attrs"]["QueueName"]
        if name not in backend.queues:
            attrs = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in p.items() if k not in ("Tags", "QueueName")}
            backend.create_queue(name, **attrs)
    elif t == "AWS::SQS::QueuePolicy":
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[account][region]
        for url in p.get("Queues") or []:
            backend.set_queue_attributes(url.rsplit("/", 1)[-1], {"Policy": json.dumps(p["PolicyDocument"])})
    elif t == "AWS::DynamoDB::Table":
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[account][region]
        if phys["Ref"] not in backend.tables:
            backend.create_table(
                phys["Ref"], schema=p["KeySchema"], throughput=p.get("ProvisionedThroughput"),
                attr=p["AttributeDefinitions"], global_indexes=p.get("GlobalSecondaryIndexes"),
                indexes=p.get("LocalSecondaryIndexes"), streams=p.get("StreamSpecification"),
                billing_mode=p.get("BillingMode", "PROVISIONED"), sse_specification=p.get("SSESpecification"),
                tags=p.get("Tags") or [], deletion_protection_enabled=p.get("DeletionProtectionEnabled"),
                warm_throughput=None,
            )
    elif t == "AWS::S3::Bucket":
        from moto.s3.models import s3_backends

        backend = s3_backends[account]["aws"]
        name = phys["Ref"]
        if name not in backend.buckets:
            backend.create_bucket(name, region)
        pab = p.get("PublicAccessBlockConfiguration")
        if pab:
            backend.put_public_access_block(name, {k: str(v).lower() for k, v in pab.items()})
    elif t == "AWS::S3::BucketPolicy":
        from moto.s3.models import s3_backends

        s3_backends[account]["aws"].put_bucket_policy(p["Bucket"], json.dumps(p["PolicyDocument"]).encode())


def _create_role(account: str, lid: str, p: dict[str, Any], phys: dict[str, Any], roles: dict[str, Any]) -> None:
    from moto.iam.models import AWSManagedPolicy, iam_backends

    backend = iam_backends[account]["aws"]
    name = phys["Ref"]
    inline = [{"PolicyName": x["PolicyName"], "PolicyDocument": x["PolicyDocument"]} for x in p.get("Policies") or []]
    managed = []
    for arn in p.get("ManagedPolicyArns") or []:
        doc = managed_policy_document(arn)
        if doc is None:
            raise DeployError(f"Policy {arn} does not exist or is not attachable.")
        managed.append({"PolicyName": arn, "PolicyDocument": doc, "Arn": arn})
    try:
        backend.get_role(name)
    except Exception:
        backend.create_role(
            role_name=name, assume_role_policy_document=json.dumps(p.get("AssumeRolePolicyDocument") or {}),
            path=p.get("Path") or "/", permissions_boundary=None, description=p.get("Description", ""),
            tags=p.get("Tags") or [], max_session_duration=None,
        )
    # Role.put_policy, not put_role_policy: SAM writes inline policies without "Version",
    # which IAM accepts (it defaults to 2008-10-17) and moto's validator rejects.
    role = backend.get_role(name)
    for pol in inline:
        role.put_policy(pol["PolicyName"], json.dumps(pol["PolicyDocument"]))
    for pol in managed:
        arn = pol["Arn"]
        if arn not in backend.managed_policies:
            from moto.iam.aws_managed_policies import aws_managed_policies_data

            data = _managed_data(aws_managed_policies_data)[arn.rsplit("/", 1)[-1]]
            backend.managed_policies[arn] = AWSManagedPolicy.from_data(arn.rsplit("/", 1)[-1], account, "us-east-1", data)
        try:
            backend.attach_role_policy(arn, name)
        except Exception:
            pass
    roles[lid] = {
        "logical_id": lid,
        "name": name,
        "arn": phys["Attrs"]["Arn"],
        "account": account,
        "policies": inline + [{"PolicyName": m["PolicyName"], "PolicyDocument": m["PolicyDocument"]} for m in managed],
        "trust_policy": p.get("AssumeRolePolicyDocument"),
    }
