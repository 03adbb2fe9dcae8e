"""auto-tagger in idiomatic Python/boto3: the cold-start comparison for benches/run.py.

A custom runtime (the `provided.al2023` way): a loop over the Lambda Runtime API
(`AWS_LAMBDA_RUNTIME_API`) with the standard library's HTTP client, boto3 clients created once
at init, and per event what the Rust auto-tagger does for an EC2 state-change event:
DescribeInstances, (DescribeImages for `Linux/UNIX` instances, whose OS is only in the AMI
name), then one CreateTags with the Patch Group tag and the ownership marker when the tag is
missing or different.

The classification is a compact table for the reference policy (environment from the
`Environment` tag or the Name suffix, window 06:00, batch 1 = Linux, batch 2 = Windows), not a
full port of `patchpilot::classify`: the Python version does *less* work than the Rust one, which
only flatters Python in the comparison.
"""

import http.client
import json
import os
import sys
import traceback

import boto3  # noqa: E402  (imported at init, as a Lambda function would)

RUNTIME = os.environ["AWS_LAMBDA_RUNTIME_API"]
TAG_KEY = "Patch Group"
OWNERSHIP = ("patchpilot:managed", "true")
ENVIRONMENTS = ("prod", "test")
WINDOW_TIME = "0600"
ec2 = None  # boto3 EC2 client, created by init()

def runtime(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(RUNTIME, timeout=None)
    conn.request(method, "/2018-06-01/runtime" + path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def os_of(instance):
    details = instance.get("PlatformDetails", "")
    if instance.get("Platform") == "windows" or details.startswith("Windows"):
        return "WINDOWS"
    if details.startswith("Red Hat"):
        return "REDHAT_ENTERPRISE_LINUX"
    if details.startswith("SUSE"):
        return "SUSE"
    image = ec2.describe_images(ImageIds=[instance["ImageId"]])["Images"]
    name = image[0]["Name"].lower() if image else ""
    for prefix, os_name in (("amzn2", "AMAZON_LINUX_2"), ("al2023", "AMAZON_LINUX_2023"),
                            ("ubuntu", "UBUNTU"), ("centos", "CENTOS"), ("debian", "DEBIAN")):
        if prefix in name:
            return os_name
    return None


def environment_of(tags):
    env = tags.get("Environment", "").lower()
    if env in ENVIRONMENTS:
        return env
    name = tags.get("Name", "").lower()
    for candidate in ENVIRONMENTS:
        if name.endswith("-" + candidate):
            return candidate
    return None


def handle(event):
    if event.get("detail-type") != "EC2 Instance State-change Notification":
        raise ValueError(f"unsupported event {event.get('detail-type')!r}")
    instance_id = event["detail"]["instance-id"]
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance = reservations[0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    env, os_name = environment_of(tags), os_of(instance)
    if env is None or os_name is None:
        return {"instance": instance_id, "action": "skipped", "os": os_name, "environment": env}
    batch = 2 if os_name == "WINDOWS" else 1
    group = f"patch_{env}_{WINDOW_TIME}_batch_{batch}"
    if tags.get(TAG_KEY) == group:
        return {"instance": instance_id, "action": "unchanged", "group": group}
    ec2.create_tags(
        Resources=[instance_id],
        Tags=[{"Key": TAG_KEY, "Value": group}, {"Key": OWNERSHIP[0], "Value": OWNERSHIP[1]}],
    )
    return {"instance": instance_id, "action": "tagged", "group": group}


def init():
    """Once per cold start, like the Rust functions; a failure goes to /init/error."""
    global ec2
    try:
        ec2 = boto3.client("ec2")
    except Exception as e:  # noqa: BLE001
        error = {"errorMessage": str(e), "errorType": type(e).__name__}
        runtime("POST", "/init/error", json.dumps(error), {"Lambda-Runtime-Function-Error-Type": "Runtime.InitError"})
        sys.exit(1)


def main():
    init()
    while True:
        resp, body = runtime("GET", "/invocation/next")
        request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id")
        try:
            result = handle(json.loads(body))
        except Exception as e:  # noqa: BLE001 - reported to the Runtime API, as Lambda's own runtime does
            error = {"errorMessage": str(e), "errorType": type(e).__name__,
                     "stackTrace": traceback.format_exc().splitlines()}
            runtime("POST", f"/invocation/{request_id}/error", json.dumps(error),
                    {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
            continue
        runtime("POST", f"/invocation/{request_id}/response", json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
