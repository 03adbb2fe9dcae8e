"""WSGI layer in front of moto's DomainDispatcherApplication.

* ``/patchpilot-emulator/*``: test-only endpoints (execute a window, register a managed
  instance, request counter, fault injection).
* Every AWS API request is counted per service + action before moto handles it.
* Injected faults answer in the wire format of the service: EC2 query XML
  (``<Response><Errors><Error>``), SNS/awsQuery XML (``<ErrorResponse>``), JSON protocols
  (``{"__type", "message"}`` + ``x-amzn-ErrorType``).
* The fault mix and the request-rate token buckets (``chaos.py``) apply to requests signed
  with a ``deploy-stack`` key, after the counter and before IAM.
* Requests signed with an access key issued by ``deploy-stack`` are authorized against the
  stack role's IAM policies before moto sees them (``enforce.py``, ``iam.py``).
* ``POST /moto-api/reset`` also clears the counter and the pending faults (backend state
  added by the extension lives on moto's backends and is reset by moto itself).
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from . import chaos, enforce, execute, stack
from .ssm_ext import SSMError

PREFIX = "/patchpilot-emulator/"
_lock = threading.Lock()
_counts: "OrderedDict[tuple[str, str], int]" = OrderedDict()
_faults: list[dict[str, Any]] = []

_CREDENTIAL_RE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_TARGET_SERVICES = {
    "AmazonSSM": "ssm",
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodbstreams",
    "AmazonSQS": "sqs",
}
_JSON_CONTENT_TYPES = {"dynamodb": "application/x-amz-json-1.0", "sqs": "application/x-amz-json-1.0"}
_QUERY_XML_NAMESPACES = {
    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
    "sqs": "http://queue.amazonaws.com/doc/2012-11-05/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}


_iam_stats: dict[str, float] = {"Requests": 0, "Seconds": 0.0, "StartUpSeconds": 0.0}


def record_start_up(seconds: float) -> None:
    """Time spent at start-up on IAM (reading the Service Authorization Reference data)."""
    with _lock:
        _iam_stats["StartUpSeconds"] += seconds


def iam_stats() -> dict[str, float]:
    with _lock:
        return dict(_iam_stats)


def _record_iam_time(seconds: float) -> None:
    with _lock:
        _iam_stats["Requests"] += 1
        _iam_stats["Seconds"] += seconds


def reset_all() -> None:
    # The IAM cost figures are kept across resets: they measure a whole test run.
    with _lock:
        _counts.clear()
        _faults.clear()
    chaos.reset()
    stack.reset()


def snapshot() -> dict[str, Any]:
    with _lock:
        items = [
            {"service": service, "action": action, "count": count}
            for (service, action), count in _counts.items()
        ]
    return {
        "requests": items,
        "counts": {f"{i['service']}:{i['action']}": i["count"] for i in items},
        "total": sum(i["count"] for i in items),
    }


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return b""
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def identify(environ: dict[str, Any], body: bytes) -> tuple[str, str] | None:
    """(service, action) of an AWS API request, or None for anything else."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = _CREDENTIAL_RE.search(auth)
    service = match.group(2) if match else None
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    action = None
    if target:
        prefix, _, action = target.rpartition(".")
        service = service or _TARGET_SERVICES.get(prefix)
    if action is None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "Action" in query:
            action = query["Action"][0]
        elif body and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:
                action = form["Action"][0]
    if action is None:
        # Smithy RPC v2 CBOR: /service/<Service>/operation/<Operation>
        rpc = re.match(r"^/service/[^/]+/operation/([^/]+)$", environ.get("PATH_INFO", ""))
        if rpc:
            action = rpc.group(1)
    if service is None and action is None:
        return None
    return (service or "unknown", action or f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '')}")


def _record(service: str, action: str) -> dict[str, Any] | None:
    with _lock:
        _counts[(service, action)] = _counts.get((service, action), 0) + 1
        for fault in _faults:
            if fault["service"] == service and fault["action"] == action and fault["remaining"] > 0:
                fault["remaining"] -= 1
                return dict(fault)
    return None


def fault_response(service: str, fault: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    code = fault["error"]
    message = fault.get("message") or f"Injected fault: {code}"
    request_id = str(uuid.uuid4())
    status = int(fault.get("status") or (503 if code in ("RequestLimitExceeded", "ServiceUnavailable", "Unavailable") else 400))
    if service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{_xml(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
        headers = [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-RequestId", request_id)]
        return status, headers, body.encode()
    if service == "s3":
        # S3's REST error body: an <Error> root with Code, Message, RequestId (S3 API
        # Reference, "Error responses"); an SDK cannot classify anything else.
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{_xml(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        return status, headers, body.encode()
    if service in _QUERY_XML_NAMESPACES and service not in ("sqs",):
        kind = "Receiver" if status >= 500 else "Sender"
        body = (
            f'<ErrorResponse xmlns="{_QUERY_XML_NAMESPACES[service]}"><Error><Type>{kind}</Type>'
            f"<Code>{code}</Code><Message>{_xml(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
        return status, headers, body.encode()
    content_type = _JSON_CONTENT_TYPES.get(service, "application/x-amz-json-1.1")
    body_json = json.dumps({"__type": code, "message": message})
    headers = [
        ("Content-Type", content_type),
        ("x-amzn-ErrorType", code),
        ("x-amzn-RequestId", request_id),
    ]
    return status, headers, body_json.encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_STATUS_TEXT = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


def _respond(
    start_response: Callable[..., Any], status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Iterable[bytes]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, default=str).encode()
    hdrs = headers or [("Content-Type", "application/json")]
    hdrs = hdrs + [("Content-Length", str(len(body)))]
    start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}", hdrs)
    return [body]


def _json_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    data = json.loads(body.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    return data


def handle_hook(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")[len(PREFIX) :].strip("/")
    method = environ.get("REQUEST_METHOD", "GET")
    try:
        body = _json_body(_read_body(environ))
    except ValueError as exc:
        return _respond(start_response, 400, {"__type": "ValidationException", "message": f"invalid JSON: {exc}"})
    try:
        if path == "request-log" and method in ("GET", "POST"):
            return _respond(start_response, 200, snapshot())
        if path == "request-log/reset" and method == "POST":
            with _lock:
                _counts.clear()
            return _respond(start_response, 200, {"reset": True})
        if path == "faults" and method == "POST":
            for field in ("service", "action", "error"):
                if not body.get(field):
                    raise SSMError("ValidationException", f"'{field}' is required")
            count = int(body.get("count", 1))
            fault = {
                "service": body["service"],
                "action": body["action"],
                "error": body["error"],
                "message": body.get("message"),
                "status": body.get("status"),
                "remaining": count,
            }
            with _lock:
                _faults.append(fault)
            return _respond(start_response, 200, {"service": fault["service"], "action": fault["action"], "error": fault["error"], "count": count})
        if path == "faults" and method == "GET":
            with _lock:
                pending = [dict(f) for f in _faults if f["remaining"] > 0]
            return _respond(start_response, 200, {"faults": pending})
        if path == "faults/reset" and method == "POST":
            with _lock:
                _faults.clear()
            return _respond(start_response, 200, {"reset": True})
        if path == "fault-mix" and method == "POST":
            return _respond(start_response, 200, chaos.configure_mix(body))
        if path == "fault-mix" and method == "GET":
            return _respond(start_response, 200, chaos.mix_report())
        if path == "rate-limits" and method == "POST":
            return _respond(start_response, 200, chaos.configure_rate_limits(body))
        if path == "rate-limits" and method == "GET":
            return _respond(start_response, 200, chaos.rate_report())
        if path == "deploy-stack" and method == "POST":
            try:
                return _respond(start_response, 200, stack.deploy(body))
            except stack.DeployError as exc:
                return _respond(start_response, 400, {"__type": "ValidationError", "message": exc.message})
        if path == "iam/decisions" and method in ("GET", "POST"):
            return _respond(start_response, 200, {"decisions": stack.decisions()})
        if path == "iam/stats" and method in ("GET", "POST"):
            # What IAM enforcement costs: every AWS request passes the check (a stack key's is
            # evaluated, another key's is recognised as the administrator's).
            return _respond(start_response, 200, iam_stats())
        if path == "iam/decisions/reset" and method == "POST":
            stack.reset_decisions()
            return _respond(start_response, 200, {"reset": True})
        if path == "s3-object" and method == "POST":
            # What an operator would find in the bucket (tests check that a report's log link
            # points at an object that exists). Reads moto's S3 directly, as the admin.
            from .s3_output import s3_backend_for

            bucket, key = body.get("Bucket"), body.get("Key")
            if not bucket or not key:
                raise SSMError("ValidationException", "'Bucket' and 'Key' are required")
            try:
                obj = s3_backend_for(body.get("AccountId") or "123456789012").get_object(bucket, key)
            except Exception:  # moto raises MissingBucket / MissingKey
                obj = None
            if obj is None:
                return _respond(start_response, 404, {"__type": "NoSuchKey", "message": f"s3://{bucket}/{key} does not exist"})
            return _respond(start_response, 200, {"Bucket": bucket, "Key": key, "Size": len(obj.value), "Body": obj.value.decode("utf-8", "replace")})
        if path == "execute-window" and method == "POST":
            return _respond(start_response, 200, execute.execute_window(body))
        if path == "register-managed-instance" and method == "POST":
            return _respond(start_response, 200, execute.register_managed_instance(body))
        if path == "set-managed" and method == "POST":
            return _respond(start_response, 200, execute.set_managed(body))
        if path.startswith("patch-catalogue") or path == "installed-packages":
            return _respond(start_response, 200, _patching_hook(path, method, body))
    except SSMError as exc:
        status = 404 if exc.code == "DoesNotExistException" else 400
        return _respond(start_response, status, {"__type": exc.code, "message": exc.message})
    return _respond(start_response, 404, {"__type": "NotFound", "message": f"no test hook {method} {PREFIX}{path}"})


def _patching_hook(path: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """The patch catalogue (change it, list it) and a node's installed packages (patching.py)."""
    from . import patching
    from .ssm_ext import backend_for

    backend = backend_for(body.get("AccountId") or "123456789012", body.get("Region") or "us-east-1")
    if path == "patch-catalogue" and method == "POST":
        return patching.change_catalogue(backend, body)
    if path == "patch-catalogue/list" and method == "POST":
        return patching.list_catalogue(backend, body)
    if path == "installed-packages" and method == "POST":
        return patching.node_packages(backend, patching.find_node(backend, str(body.get("InstanceId"))))
    raise SSMError("ValidationException", f"no test hook {method} {PREFIX}{path}")


def _chaos_response(
    environ: dict[str, Any], body: bytes, service: str, action: str
) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """The fault mix's or the token buckets' answer to this request, if any (a reset answers
    nothing: the connection is closed)."""
    kind = chaos.mix_fault(environ, service, action)
    if kind == "Reset":
        chaos.reset_connection(environ)
    if kind is not None:
        code, status = chaos.throttle_error(service) if kind == "Throttle" else chaos.server_error(service)
        message = "Rate exceeded" if kind == "Throttle" else "An internal error has occurred. Retry your request."
        return fault_response(service, {"error": code, "status": status, "message": message})
    form: dict[str, list[str]] = {}
    if service == "ec2":
        form = parse_qs(environ.get("QUERY_STRING", ""))
        if body and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            form.update(parse_qs(body.decode("utf-8", "replace")))
    if chaos.rate_limited(environ, service, action, form):
        code, status = chaos.throttle_error(service)
        return fault_response(service, {"error": code, "status": status, "message": "Rate exceeded"})
    return None


_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    enforce.install()
    original_call = DomainDispatcherApplication.__call__

    def __call__(self: DomainDispatcherApplication, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX):
            return handle_hook(environ, start_response)
        if path.startswith("/moto-api"):
            if path.rstrip("/") == "/moto-api/reset":
                reset_all()
            return original_call(self, environ, start_response)
        body = _read_body(environ)
        identified = identify(environ, body)
        if identified is not None:
            service, action = identified
            fault = _record(service, action)
            if fault is not None:
                status, headers, payload = fault_response(service, fault)
                return _respond(start_response, status, payload, headers)
            injected = _chaos_response(environ, body, service, action)
            if injected is not None:
                status, headers, payload = injected
                return _respond(start_response, status, payload, headers)
            # IAM: requests signed with a deploy-stack key are evaluated against that role's
            # policies (enforce.py); a denied request never reaches moto.
            started = time.perf_counter()
            denied = enforce.authorize_request(environ, body, service, action)
            _record_iam_time(time.perf_counter() - started)
            if denied is not None:
                return _respond(start_response, denied.status, denied.body, denied.headers)
        return original_call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = __call__  # type: ignore[method-assign]
