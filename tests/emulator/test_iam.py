"""IAM enforcement: deploy the repo's template.yaml, call AWS with each function's keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Emulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from patchpilot_emulator import iam  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"
UBUNTU_AMI = "ami-0c7217cdde317cfec"


def deploy(emu: Emulator, name: str = "patchpilot", **extra: Any) -> dict[str, Any]:
    status, body = emu.post("/patchpilot-emulator/deploy-stack", {"StackName": name, **extra})
    assert status == 200, body
    return body


def client(emu: Emulator, service: str, creds: dict[str, Any], insecure: bool = False) -> Any:
    c = boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"}),
    )
    if insecure:
        c.meta.events.register("before-sign.*.*", lambda request, **_: request.headers.__setitem__("X-Patchpilot-Emulator-Insecure", "true"))
    return c


def err(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


@pytest.fixture()
def stack(emu: Emulator) -> dict[str, Any]:
    return deploy(emu)


def launch(emu: Emulator, tags: dict[str, str] | None = None) -> str:
    ec2 = emu.client("ec2")
    kwargs: dict[str, Any] = {}
    if tags:
        kwargs["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    return str(ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, **kwargs)["Instances"][0]["InstanceId"])


# ----------------------------------------------------------------------------- deploy-stack


def test_deploy_answer_resolves_names_env_and_keys(emu: Emulator, stack: dict[str, Any]) -> None:
    fns = stack["Functions"]
    assert set(fns) == {"auto-tagger", "baseline-sync", "run-notifier"}
    bs = fns["baseline-sync"]
    assert bs["FunctionName"].startswith("patchpilot-BaselineSyncFunction-")
    role = bs["RoleArn"].rsplit("/", 1)[-1]
    assert bs["Principal"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{bs['FunctionName']}"
    env = bs["Environment"]
    assert env["POLICY_PARAMETER"] == "/patchpilot/policy" and env["RUST_LOG"] == "info" and env["POLICY_CACHE_SECONDS"] == "60"
    assert env["OUTPUT_BUCKET"] == stack["Outputs"]["OutputBucketName"]
    assert env["MAINTENANCE_WINDOW_ROLE_ARN"] == stack["Outputs"]["MaintenanceWindowRoleArn"]
    rn = fns["run-notifier"]["Environment"]
    assert rn["TOPIC_ARN"] == stack["Outputs"]["ReportTopicArn"]
    assert rn["IDEMPOTENCY_TABLE"] == stack["Resources"]["IdempotencyTable"]["PhysicalId"]
    # resources exist in moto
    assert emu.client("ssm").get_parameter(Name="/patchpilot/policy")["Parameter"]["Value"] == "embedded-default"
    attrs = emu.client("sns").get_topic_attributes(TopicArn=rn["TOPIC_ARN"])["Attributes"]
    assert attrs["KmsMasterKeyId"] == stack["Resources"]["TopicKey"]["PhysicalId"]
    bucket = env["OUTPUT_BUCKET"]
    assert "DenyNonTls" in emu.client("s3").get_bucket_policy(Bucket=bucket)["Policy"]
    assert emu.client("s3").get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    iamc = emu.client("iam")
    names = {p["PolicyName"] for p in iamc.list_attached_role_policies(RoleName=role)["AttachedPolicies"]}
    assert names == {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess"}
    assert "BaselineSyncFunctionRolePolicy0" in iamc.list_role_policies(RoleName=role)["PolicyNames"]
    key = emu.client("kms").describe_key(KeyId=stack["Resources"]["TopicKey"]["Arn"])["KeyMetadata"]
    assert key["Arn"] == stack["Resources"]["TopicKey"]["Arn"]
    # same stack twice: same answer; parameters override defaults
    assert deploy(emu) == stack


def test_two_stacks_coexist_and_reset_clears(emu: Emulator, stack: dict[str, Any]) -> None:
    other = deploy(emu, "other", Parameters={"PolicyParameterName": "/other/policy", "LogLevel": "debug"})
    assert other["Outputs"]["OutputBucketName"] != stack["Outputs"]["OutputBucketName"]
    assert other["Functions"]["baseline-sync"]["AccessKeyId"] != stack["Functions"]["baseline-sync"]["AccessKeyId"]
    assert other["Functions"]["auto-tagger"]["Environment"]["RUST_LOG"] == "debug"
    # each stack's function reads only its own parameter
    ssm_other = client(emu, "ssm", other["Functions"]["auto-tagger"])
    assert ssm_other.get_parameter(Name="/other/policy")["Parameter"]["Value"] == "embedded-default"
    with pytest.raises(ClientError) as e:
        ssm_other.get_parameter(Name="/patchpilot/policy")
    assert err(e)[0] == "AccessDeniedException"
    client(emu, "ssm", stack["Functions"]["auto-tagger"]).get_parameter(Name="/patchpilot/policy")
    assert emu.get("/patchpilot-emulator/iam/decisions")["decisions"]
    emu.reset()
    assert emu.get("/patchpilot-emulator/iam/decisions")["decisions"] == []
    with pytest.raises(ClientError):
        emu.client("ssm").get_parameter(Name="/other/policy")


def test_other_account_and_region(emu: Emulator) -> None:
    st = deploy(emu, "acct2", AccountId="210987654321", Region="eu-west-1")
    assert st["Functions"]["auto-tagger"]["Principal"].startswith("arn:aws:sts::210987654321:assumed-role/")
    c = boto3.client("ssm", endpoint_url=emu.endpoint, region_name="eu-west-1",
                     aws_access_key_id=st["Functions"]["auto-tagger"]["AccessKeyId"],
                     aws_secret_access_key=st["Functions"]["auto-tagger"]["SecretAccessKey"])
    assert c.get_parameter(Name="/patchpilot/policy")["Parameter"]["ARN"].startswith("arn:aws:ssm:eu-west-1:210987654321:")


def test_admin_key_is_unrestricted(emu: Emulator, stack: dict[str, Any]) -> None:
    ssm = emu.client("ssm")
    ssm.create_patch_baseline(Name="admin", OperatingSystem="UBUNTU", ApprovalRules={"PatchRules": [{"PatchFilterGroup": {"PatchFilters": [{"Key": "PRIORITY", "Values": ["Required"]}]}}]})
    emu.client("ec2").describe_instances()
    assert emu.get("/patchpilot-emulator/iam/decisions")["decisions"] == []


# ----------------------------------------------------------------------------- auto-tagger


def test_auto_tagger_allowed_calls(emu: Emulator, stack: dict[str, Any]) -> None:
    fn = stack["Functions"]["auto-tagger"]
    iid = launch(emu, {"Name": "web"})
    ec2 = client(emu, "ec2", fn)
    ec2.describe_instances()
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "Patch Group", "Value": "prod"}, {"Key": "patchpilot:managed", "Value": "true"}])
    ec2.delete_tags(Resources=[iid], Tags=[{"Key": "Patch Group"}])
    client(emu, "ssm", fn).get_parameter(Name="/patchpilot/policy")
    client(emu, "ssm", fn).describe_instance_information()


def test_ec2_create_tags_outside_tag_keys_denied(emu: Emulator, stack: dict[str, Any]) -> None:
    fn = stack["Functions"]["auto-tagger"]
    iid = launch(emu)
    ec2 = client(emu, "ec2", fn)
    with pytest.raises(ClientError) as e:
        ec2.create_tags(Resources=[iid], Tags=[{"Key": "Patch Group", "Value": "x"}, {"Key": "Owner", "Value": "me"}])
    code, status, msg = err(e)
    assert (code, status) == ("UnauthorizedOperation", 403)
    arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{iid}"
    assert msg.startswith(
        f"You are not authorized to perform this operation. User: {fn['Principal']} is not authorized to perform: "
        f"ec2:CreateTags on resource: {arn} because no identity-based policy allows the ec2:CreateTags action. "
        "Encoded authorization failure message: "
    )
    tags = {t["Key"] for t in emu.client("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [iid]}])["Tags"]}
    assert tags == set()  # the denied request never reached moto


def test_ec2_delete_tags_without_keys_denied_by_null(emu: Emulator, stack: dict[str, Any]) -> None:
    iid = launch(emu, {"Patch Group": "prod"})
    with pytest.raises(ClientError) as e:
        client(emu, "ec2", stack["Functions"]["auto-tagger"]).delete_tags(Resources=[iid])
    assert err(e)[:2] == ("UnauthorizedOperation", 403)


def test_ssm_denied_message_format(emu: Emulator, stack: dict[str, Any]) -> None:
    fn = stack["Functions"]["auto-tagger"]
    emu.client("ssm").put_parameter(Name="/secret", Value="x", Type="String")
    with pytest.raises(ClientError) as e:
        client(emu, "ssm", fn).get_parameter(Name="/secret")
    code, status, msg = err(e)
    assert (code, status) == ("AccessDeniedException", 400)
    assert msg == (
        f"User: {fn['Principal']} is not authorized to perform: ssm:GetParameter on resource: "
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/secret because no identity-based policy allows the ssm:GetParameter action"
    )


def test_managed_instance_tags(emu: Emulator, stack: dict[str, Any]) -> None:
    _, mi = emu.post("/patchpilot-emulator/register-managed-instance", {"PlatformType": "Linux", "PlatformName": "Ubuntu", "PlatformVersion": "22.04", "Name": "onprem"})
    ssm = client(emu, "ssm", stack["Functions"]["auto-tagger"])
    ssm.add_tags_to_resource(ResourceType="ManagedInstance", ResourceId=mi["InstanceId"], Tags=[{"Key": "Patch Group", "Value": "p"}])
    ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=mi["InstanceId"])
    with pytest.raises(ClientError) as e:
        ssm.add_tags_to_resource(ResourceType="ManagedInstance", ResourceId=mi["InstanceId"], Tags=[{"Key": "Env", "Value": "p"}])
    assert err(e)[0] == "AccessDeniedException"
    with pytest.raises(ClientError) as e:
        ssm.remove_tags_from_resource(ResourceType="ManagedInstance", ResourceId=mi["InstanceId"], TagKeys=["Env"])
    assert err(e)[0] == "AccessDeniedException"


def test_coverage_reads_default_baseline_and_host_management_setting(emu: Emulator, stack: dict[str, Any]) -> None:
    sync = client(emu, "ssm", stack["Functions"]["baseline-sync"])
    answer = sync.get_default_patch_baseline(OperatingSystem="AMAZON_LINUX_2023")
    assert answer["BaselineId"].startswith(f"arn:aws:ssm:{REGION}:")
    assert sync.get_service_setting(SettingId="/ssm/managed-instance/default-ec2-instance-management-role")["ServiceSetting"]["SettingValue"] == "$None"
    # Only the Default Host Management setting.
    with pytest.raises(ClientError) as e:
        sync.get_service_setting(SettingId="/ssm/parameter-store/default-parameter-tier")
    code, _, msg = err(e)
    assert code == "AccessDeniedException"
    assert f"arn:aws:ssm:{REGION}:{ACCOUNT}:servicesetting/ssm/parameter-store/default-parameter-tier" in msg
    # auto-tagger has neither.
    tagger = client(emu, "ssm", stack["Functions"]["auto-tagger"])
    with pytest.raises(ClientError) as e:
        tagger.get_default_patch_baseline(OperatingSystem="WINDOWS")
    assert err(e)[0] == "AccessDeniedException"


# ----------------------------------------------------------------------------- baseline-sync

RULES = {"PatchRules": [{"PatchFilterGroup": {"PatchFilters": [{"Key": "PRIORITY", "Values": ["Required"]}]}}]}


def test_creates_need_this_stacks_marker_and_nothing_else(emu: Emulator, stack: dict[str, Any]) -> None:
    """CreatePatchBaseline / CreateMaintenanceWindow have no resource type in the SAR: they are
    authorized on "*", limited by aws:RequestTag and aws:TagKeys (template statement
    CreateOnlyMarkedWithThisStack)."""
    fn = stack["Functions"]["baseline-sync"]
    ssm = client(emu, "ssm", fn)
    mine = [{"Key": "patchpilot:managed", "Value": stack["StackName"]}]
    ssm.create_patch_baseline(Name="patchpilot-x", OperatingSystem="UBUNTU", ApprovalRules=RULES, Tags=mine)
    ssm.create_maintenance_window(Name="patchpilot-x", Schedule="rate(7 days)", Duration=2, Cutoff=1, AllowUnassociatedTargets=False, Tags=mine)
    for tags in (
        [],
        [{"Key": "patchpilot:managed", "Value": "another-stack"}],
        mine + [{"Key": "Owner", "Value": "db-team"}],
    ):
        with pytest.raises(ClientError) as e:
            ssm.create_patch_baseline(Name="patchpilot-y", OperatingSystem="UBUNTU", ApprovalRules=RULES, Tags=tags)
        code, status, msg = err(e)
        assert (code, status) == ("AccessDeniedException", 400)
        assert msg == (
            f"User: {fn['Principal']} is not authorized to perform: ssm:CreatePatchBaseline on resource: "
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:* because no identity-based policy allows the ssm:CreatePatchBaseline action"
        )
    names = [b["BaselineName"] for b in emu.client("ssm").describe_patch_baselines(Filters=[{"Key": "OWNER", "Values": ["Self"]}])["BaselineIdentities"]]
    assert names == ["patchpilot-x"]


CREATE_ON_STAR = """              Resource: "*"
              Condition:
                StringEquals:
                  aws:RequestTag/patchpilot:managed: !Ref AWS::StackName"""


def test_a_create_scoped_to_arns_is_denied_as_aws_denies_it(emu: Emulator, tmp_path: Any) -> None:
    """The template before this fix scoped the creates to patchbaseline/* ARNs; the SAR lists no
    resource type for them, so the request is on "*" and such a statement never matches."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "template.yaml").read_text()
    broken = text.replace(
        CREATE_ON_STAR,
        CREATE_ON_STAR.replace('"*"', "!Sub arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:patchbaseline/*"),
    )
    assert broken != text, "the create statement changed; update this test"
    path = tmp_path / "template.yaml"
    path.write_text(broken)
    status, deployed = emu.post("/patchpilot-emulator/deploy-stack", {"StackName": "old", "TemplatePath": str(path)})
    assert status == 200, deployed
    ssm = client(emu, "ssm", deployed["Functions"]["baseline-sync"])
    with pytest.raises(ClientError) as e:
        ssm.create_patch_baseline(Name="patchpilot-x", OperatingSystem="UBUNTU", ApprovalRules=RULES, Tags=[{"Key": "patchpilot:managed", "Value": "old"}])
    assert err(e)[0] == "AccessDeniedException"


def test_update_baseline_needs_ownership_tag(emu: Emulator, stack: dict[str, Any]) -> None:
    admin = emu.client("ssm")
    owned = admin.create_patch_baseline(Name="owned", OperatingSystem="UBUNTU", ApprovalRules=RULES, Tags=[{"Key": "patchpilot:managed", "Value": stack["StackName"]}])["BaselineId"]
    foreign = admin.create_patch_baseline(Name="foreign", OperatingSystem="UBUNTU", ApprovalRules=RULES)["BaselineId"]
    ssm = client(emu, "ssm", stack["Functions"]["baseline-sync"])
    ssm.update_patch_baseline(BaselineId=owned, Description="ok")
    ssm.get_patch_baseline(BaselineId=foreign)
    with pytest.raises(ClientError) as e:
        ssm.update_patch_baseline(BaselineId=foreign, Description="no")
    assert f"ssm:UpdatePatchBaseline on resource: arn:aws:ssm:{REGION}:{ACCOUNT}:patchbaseline/{foreign}" in err(e)[2]
    with pytest.raises(ClientError):
        ssm.delete_patch_baseline(BaselineId=foreign)
    ssm.register_patch_baseline_for_patch_group(BaselineId=owned, PatchGroup="prod")
    ssm.deregister_patch_baseline_for_patch_group(BaselineId=owned, PatchGroup="prod")
    ssm.delete_patch_baseline(BaselineId=owned)


def test_window_task_pass_role(emu: Emulator, stack: dict[str, Any]) -> None:
    admin = emu.client("ssm")
    wid = admin.create_maintenance_window(Name="patchpilot-w", Schedule="rate(7 days)", Duration=2, Cutoff=1, AllowUnassociatedTargets=False, Tags=[{"Key": "patchpilot:managed", "Value": stack["StackName"]}])["WindowId"]
    ssm = client(emu, "ssm", stack["Functions"]["baseline-sync"])
    tid = ssm.register_target_with_maintenance_window(WindowId=wid, ResourceType="INSTANCE", Targets=[{"Key": "tag:Patch Group", "Values": ["prod"]}])["WindowTargetId"]
    role = stack["Outputs"]["MaintenanceWindowRoleArn"]
    task = dict(WindowId=wid, TaskArn="AWS-RunPatchBaseline", TaskType="RUN_COMMAND", Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="1", MaxErrors="1", Priority=1)
    task_id = ssm.register_task_with_maintenance_window(ServiceRoleArn=role, **task)["WindowTaskId"]
    ssm.update_maintenance_window_task(WindowId=wid, WindowTaskId=task_id, ServiceRoleArn=role)
    other = f"arn:aws:iam::{ACCOUNT}:role/SomeAdminRole"
    with pytest.raises(ClientError) as e:
        ssm.register_task_with_maintenance_window(ServiceRoleArn=other, **task)
    code, _, msg = err(e)
    assert code == "AccessDeniedException"
    assert f"is not authorized to perform: iam:PassRole on resource: {other} because no identity-based policy allows the iam:PassRole action" in msg
    ssm.deregister_task_from_maintenance_window(WindowId=wid, WindowTaskId=task_id)
    ssm.deregister_target_from_maintenance_window(WindowId=wid, WindowTargetId=tid)


# ----------------------------------------------------------------------------- run-notifier


def test_run_notifier_publish_dynamodb_and_kms(emu: Emulator, stack: dict[str, Any]) -> None:
    fn = stack["Functions"]["run-notifier"]
    topic = fn["Environment"]["TOPIC_ARN"]
    table = fn["Environment"]["IDEMPOTENCY_TABLE"]
    client(emu, "sns", fn).publish(TopicArn=topic, Message="report")
    ddb = client(emu, "dynamodb", fn)
    ddb.put_item(TableName=table, Item={"id": {"S": "run-1"}})
    # GetItem: the last known good policy (item policy#<stack>) when the parameter's is invalid
    assert "Item" in ddb.get_item(TableName=table, Key={"id": {"S": "run-1"}})
    ddb.delete_item(TableName=table, Key={"id": {"S": "run-1"}})
    with pytest.raises(ClientError) as e:
        ddb.scan(TableName=table)
    code, status, msg = err(e)
    assert (code, status) == ("AccessDeniedException", 400)
    assert msg == (
        f"User: {fn['Principal']} is not authorized to perform: dynamodb:Scan on resource: "
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table} because no identity-based policy allows the dynamodb:Scan action"
    )
    # another topic: SNS's AuthorizationError, 403, "SNS:Publish"
    other = emu.client("sns").create_topic(Name="other")["TopicArn"]
    with pytest.raises(ClientError) as e:
        client(emu, "sns", fn).publish(TopicArn=other, Message="x")
    code, status, msg = err(e)
    assert (code, status) == ("AuthorizationError", 403)
    assert msg == f"User: {fn['Principal']} is not authorized to perform: SNS:Publish on resource: {other} because no identity-based policy allows the SNS:Publish action"
    # key policy without the account delegation: the encrypted topic refuses the publisher
    key = stack["Resources"]["TopicKey"]["Arn"]
    kms = emu.client("kms")
    policy = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "AccountAdministersAndDelegatesToIam"]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    with pytest.raises(ClientError) as e:
        client(emu, "sns", fn).publish(TopicArn=topic, Message="x")
    code, status, msg = err(e)
    assert (code, status) == ("KMSAccessDenied", 400)
    assert f"kms:GenerateDataKey on resource: {key} because no resource-based policy allows the kms:GenerateDataKey action" in msg


def test_run_notifier_reads_run(emu: Emulator, stack: dict[str, Any]) -> None:
    ssm = client(emu, "ssm", stack["Functions"]["run-notifier"])
    ssm.list_commands()
    ssm.describe_maintenance_windows()
    ssm.describe_instance_patch_states(InstanceIds=[launch(emu)])
    with pytest.raises(ClientError) as e:
        ssm.describe_patch_baselines()
    assert err(e)[0] == "AccessDeniedException"


# ----------------------------------------------------------------------------- S3, resource policies


def test_s3_bucket_policy_tls_deny_beats_allow(emu: Emulator, stack: dict[str, Any]) -> None:
    # Any principal of the account may upload Run Command output under the output prefix: the
    # bucket policy's RunCommandOutputFromThisAccountsNodes (same-account: a resource-based
    # allow suffices). The TLS-only deny beats it, and nothing outside the prefix is granted.
    creds = stack["Roles"]["MaintenanceWindowRole"]
    bucket = stack["Outputs"]["OutputBucketName"]
    s3 = client(emu, "s3", creds)
    key = "patchpilot/run-command/cmd/i-1/stdout"
    s3.put_object(Bucket=bucket, Key=key, Body=b"ok")
    with pytest.raises(ClientError) as e:
        client(emu, "s3", creds, insecure=True).put_object(Bucket=bucket, Key=key + "2", Body=b"x")
    code, status, msg = err(e)
    assert (code, status) == ("AccessDenied", 403)
    assert msg == f'User: {creds["Principal"]} is not authorized to perform: s3:PutObject on resource: "arn:aws:s3:::{bucket}/{key}2" with an explicit deny in a resource-based policy'
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="promotion/manifest.json", Body=b"x")
    assert "because no identity-based policy allows the s3:PutObject action" in err(e)[2]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key=key)
    code, status, msg = err(e)
    assert (code, status) == ("AccessDenied", 403)
    assert "because no identity-based policy allows the s3:GetObject action" in msg
    with pytest.raises(ClientError) as e:
        s3.get_bucket_acl(Bucket=bucket)  # not modelled: denied, never silently allowed
    assert err(e)[0] == "AccessDenied"


def test_decisions_endpoint(emu: Emulator, stack: dict[str, Any]) -> None:
    emu.post("/patchpilot-emulator/iam/decisions/reset")
    fn = stack["Functions"]["auto-tagger"]
    client(emu, "ssm", fn).get_parameter(Name="/patchpilot/policy")
    d = emu.get("/patchpilot-emulator/iam/decisions")["decisions"]
    assert d[-1]["Decision"] == "Allow" and d[-1]["Sid"] == "ReadPolicy" and d[-1]["Principal"] == fn["Principal"]
    assert d[-1]["Resources"] == [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/patchpilot/policy"]


# ----------------------------------------------------------------------------- functions to wire


def test_authorize_role_window_send_command(emu: Emulator, stack: dict[str, Any]) -> None:
    # in-process: the emulator's state is in the server process, so deploy locally too
    import patchpilot_emulator
    from patchpilot_emulator import enforce
    from patchpilot_emulator import stack as st

    patchpilot_emulator.install()  # moto's classes as the server has them (AMI catalogue)

    st.reset()
    local = st.deploy({"StackName": "patchpilot"})
    role = local["Outputs"]["MaintenanceWindowRoleArn"]
    doc = f"arn:aws:ssm:{REGION}::document/AWS-RunPatchBaseline"
    inst = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"
    assert enforce.authorize_role(ACCOUNT, REGION, role, "ssm:SendCommand", [doc, inst]).allowed
    d = enforce.authorize_role(ACCOUNT, REGION, role, "ssm:SendCommand", [f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript", inst])
    assert not d.allowed
    assert d.message.endswith("ssm:SendCommand on resource: arn:aws:ssm:us-east-1::document/AWS-RunShellScript because no identity-based policy allows the ssm:SendCommand action")  # type: ignore[attr-defined]
    bucket = local["Outputs"]["OutputBucketName"]
    # The SAR lists "bucket" among ssm:SendCommand's resource types: a window task that sets
    # OutputS3BucketName is checked on the bucket too; the window role grants it.
    d = enforce.authorize_role(ACCOUNT, REGION, role, "ssm:SendCommand", [doc, inst, f"arn:aws:s3:::{bucket}"])
    assert d.allowed
    d = enforce.authorize_role(ACCOUNT, REGION, role, "ssm:SendCommand", [doc, inst, "arn:aws:s3:::someone-elses-bucket"])
    assert not d.allowed and d.resource == "arn:aws:s3:::someone-elses-bucket"
    # An instance (AmazonSSMManagedInstanceCore only) may upload under the output prefix, by
    # the bucket policy; elsewhere in the bucket it may not, and never over plain HTTP.
    key = "patchpilot/run-command/test/cmd/i-1/awsrunShellScript/PatchLinux/stdout"
    assert enforce.instance_can_put_object(ACCOUNT, REGION, bucket, key) == (True, "allowed")
    ok, reason = enforce.instance_can_put_object(ACCOUNT, REGION, bucket, "out/stdout")
    assert not ok and "because no identity-based policy allows the s3:PutObject action" in reason
    ok, reason = enforce.instance_can_put_object(ACCOUNT, REGION, bucket, key, secure_transport=False)
    assert not ok and "explicit deny in a resource-based policy" in reason
    st.reset()


# ----------------------------------------------------------------------------- evaluator (pure)


def pol(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(**kw: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": "*", "Resource": "*", **kw}


def test_explicit_deny_wins_and_default_deny() -> None:
    p = [pol(allow(Action="s3:*"), {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*", "Sid": "NoDelete"})]
    assert iam.evaluate(p, "s3:GetObject", ["arn:aws:s3:::b/k"]).allowed
    d = iam.evaluate(p, "s3:DeleteObject", ["arn:aws:s3:::b/k"])
    assert (d.allowed, d.reason, d.sid) == (False, "explicit", "NoDelete")
    assert iam.evaluate(p, "sqs:SendMessage", ["*"]).reason == "implicit"


def test_action_case_insensitive_resource_wildcards_not_forms() -> None:
    p = [pol(allow(Action="SSM:getparam?ter", Resource="arn:aws:ssm:*:*:parameter/app/*"))]
    assert iam.evaluate(p, "ssm:GetParameter", ["arn:aws:ssm:us-east-1:1:parameter/app/x"]).allowed
    assert not iam.evaluate(p, "ssm:GetParameter", ["arn:aws:ssm:us-east-1:1:parameter/App/x"]).allowed
    assert not iam.evaluate(p, "ssm:GetParameter", ["*"]).allowed  # "*" requests match only Resource "*"
    p = [pol({"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret/*"})]
    assert iam.evaluate(p, "s3:GetObject", ["arn:aws:s3:::b/k"]).allowed
    assert not iam.evaluate(p, "s3:GetObject", ["arn:aws:s3:::secret/k"]).allowed
    assert not iam.evaluate(p, "iam:PassRole", ["arn:aws:iam::1:role/r"]).allowed


def test_multi_resource_needs_every_resource() -> None:
    p = [pol(allow(Action="ec2:CreateTags", Resource="arn:aws:ec2:*:*:instance/*"))]
    assert not iam.evaluate(p, "ec2:CreateTags", ["arn:aws:ec2:r:1:instance/i-1", "arn:aws:ec2:r:1:volume/vol-1"]).allowed


@pytest.mark.parametrize(
    "condition,context,expected",
    [
        ({"StringEquals": {"aws:RequestTag/team": "a"}}, {"aws:RequestTag/team": "a"}, True),
        ({"StringEquals": {"aws:RequestTag/team": "a"}}, {}, False),
        ({"StringNotEquals": {"aws:RequestTag/team": "a"}}, {}, True),  # negated + absent key
        ({"StringLike": {"aws:RequestTag/team": "a*"}}, {"aws:requesttag/TEAM": "abc"}, True),  # key names case-insensitive
        ({"StringNotLike": {"aws:RequestTag/team": "a*"}}, {"aws:RequestTag/team": "abc"}, False),
        ({"StringEqualsIgnoreCase": {"k": "ABC"}}, {"k": "abc"}, True),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["a"]}, True),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["a", "c"]}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {}, True),  # absent key: true
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:TagKeys": ["c", "a"]}, True),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {}, False),
        ({"Null": {"aws:TagKeys": "false"}}, {}, False),
        ({"Null": {"aws:TagKeys": "true"}}, {}, True),
        ({"Null": {"aws:TagKeys": "false"}}, {"aws:TagKeys": ["a"]}, True),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:events:*:1:rule/x-*"}}, {"aws:SourceArn": "arn:aws:events:r:1:rule/x-1"}, True),
        ({"ArnEquals": {"aws:SourceArn": "arn:aws:events:r:1:rule/x"}}, {"aws:SourceArn": "arn:aws:events:r:1:rule/y"}, False),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
        ({"Bool": {"aws:SecureTransport": False}}, {"aws:SecureTransport": "false"}, True),
        ({"StringEqualsIfExists": {"ec2:InstanceType": "t3.micro"}}, {}, True),
        ({"StringEqualsIfExists": {"ec2:InstanceType": "t3.micro"}}, {"ec2:InstanceType": "m5.large"}, False),
        ({"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}}, {"iam:PassedToService": "ec2.amazonaws.com"}, False),
        ({"StringEquals": {"aws:PrincipalAccount": "1"}, "StringLike": {"aws:SourceAccount": "*"}}, {"aws:PrincipalAccount": "1"}, False),
        ({"NumericLessThan": {"n": "5"}}, {"n": "3"}, True),
        ({"NoSuchOperator": {"k": "v"}}, {"k": "v"}, False),
    ],
)
def test_condition_operators(condition: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    p = [pol(allow(Condition=condition))]
    assert iam.evaluate(p, "s3:GetObject", ["*"], context).allowed is expected


def test_resource_tag_per_resource_and_unknown_operator_in_deny() -> None:
    p = [pol(allow(Action="ssm:UpdatePatchBaseline", Condition={"StringEquals": {"ssm:resourceTag/owner": "me"}}))]
    ctx = {"arn:a": {"ssm:resourceTag/owner": "me"}, "arn:b": {}}
    assert iam.evaluate(p, "ssm:UpdatePatchBaseline", ["arn:a"], resource_context=ctx).allowed
    assert not iam.evaluate(p, "ssm:UpdatePatchBaseline", ["arn:a", "arn:b"], resource_context=ctx).allowed
    deny = [pol(allow(), {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bogus": {"k": "v"}}})]
    assert not iam.evaluate(deny, "s3:GetObject", ["*"]).allowed  # never kinder than AWS


def test_same_account_resource_policy_and_kms_key_policy() -> None:
    role = "arn:aws:iam::1:role/r"
    bucket_allow = {"arn:aws:s3:::b/k": [pol({"Effect": "Allow", "Principal": {"AWS": role}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})]}
    assert iam.evaluate([], "s3:GetObject", ["arn:aws:s3:::b/k"], resource_policies=bucket_allow, principal_arns=[role], account="1").allowed
    key = "arn:aws:kms:r:1:key/k"
    root = {key: [pol({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "kms:*", "Resource": "*"})]}
    ident = [pol(allow(Action="kms:Decrypt", Resource=key))]
    assert iam.evaluate(ident, "kms:Decrypt", [key], resource_policies=root, principal_arns=[role], account="1", resource_policy_required=True).allowed
    assert not iam.evaluate([], "kms:Decrypt", [key], resource_policies=root, principal_arns=[role], account="1", resource_policy_required=True).allowed
    d = iam.evaluate(ident, "kms:Decrypt", [key], resource_policies={key: []}, principal_arns=[role], account="1", resource_policy_required=True)
    assert (d.allowed, d.policy_type) == (False, "resource-based")


def test_pass_role_to_wrong_service_denied() -> None:
    p = [pol(allow(Action="iam:PassRole", Resource="arn:aws:iam::1:role/w", Condition={"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}}))]
    assert iam.evaluate(p, "iam:PassRole", ["arn:aws:iam::1:role/w"], {"iam:PassedToService": "ssm.amazonaws.com"}).allowed
    assert not iam.evaluate(p, "iam:PassRole", ["arn:aws:iam::1:role/w"], {"iam:PassedToService": "ec2.amazonaws.com"}).allowed


def test_sar_drives_resource_types() -> None:
    assert iam.sar_action("ssm:CreatePatchBaseline")["resource_types"] == {}  # type: ignore[index]
    assert iam.sar_action("ssm:DeregisterTargetFromMaintenanceWindow")["resource_types"] == {"maintenancewindow": True, "windowtarget": True}  # type: ignore[index]
    assert iam.sar_arn("ssm", "patchbaseline", "aws", "us-east-1", "1", PatchBaselineIdResourceId="pb-1") == "arn:aws:ssm:us-east-1:1:patchbaseline/pb-1"


# ----------------------------------------------------------------------------- window tasks run as the window role


def _patch_window(emu: Emulator, stack: dict[str, Any], document: str, role: str) -> tuple[str, str]:
    """A window with one target (tag:Patch Group=g1, one running RHEL host) and one task that
    writes its output to the stack's bucket under the stack's prefix."""
    ec2 = emu.client("ec2")
    image = [i for i in ec2.describe_images(Owners=["amazon", "self", "aws-marketplace"])["Images"] if "RHEL" in i.get("Name", "")][0]
    iid = ec2.run_instances(
        ImageId=image["ImageId"], MinCount=1, MaxCount=1, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Patch Group", "Value": "g1"}]}],
    )["Instances"][0]["InstanceId"]
    ssm = emu.client("ssm")
    wid = ssm.create_maintenance_window(Name="patch-window", Schedule="rate(7 days)", Duration=2, Cutoff=1, AllowUnassociatedTargets=False)["WindowId"]
    tid = ssm.register_target_with_maintenance_window(WindowId=wid, ResourceType="INSTANCE", Targets=[{"Key": "tag:Patch Group", "Values": ["g1"]}])["WindowTargetId"]
    ssm.register_task_with_maintenance_window(
        WindowId=wid, TaskArn=document, TaskType="RUN_COMMAND", Priority=1, ServiceRoleArn=role,
        Targets=[{"Key": "WindowTargetIds", "Values": [tid]}], MaxConcurrency="1", MaxErrors="0",
        TaskInvocationParameters={"RunCommand": {"Parameters": {"Operation": ["Install"]} if document == "AWS-RunPatchBaseline" else {"commands": ["id"]},
                                                 "OutputS3BucketName": stack["Outputs"]["OutputBucketName"],
                                                 "OutputS3KeyPrefix": "patchpilot/run-command/test"}},
    )
    return wid, iid


def test_window_tasks_send_as_the_window_role_and_instances_upload_by_the_bucket_policy(emu: Emulator, stack: dict[str, Any]) -> None:
    role = stack["Outputs"]["MaintenanceWindowRoleArn"]
    bucket = stack["Outputs"]["OutputBucketName"]
    wid, iid = _patch_window(emu, stack, "AWS-RunPatchBaseline", role)
    status, run = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    assert status == 200 and run["Status"] == "SUCCESS", run
    cmd = run["Tasks"][0]["CommandIds"][0]
    inv = emu.client("ssm").get_command_invocation(CommandId=cmd, InstanceId=iid)
    key = f"patchpilot/run-command/test/{cmd}/{iid}/awsrunShellScript/PatchLinux/stdout"
    assert inv["StandardOutputUrl"] == f"https://s3.{REGION}.amazonaws.com/{bucket}/{key}"
    assert emu.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_window_task_the_role_may_not_send_fails_with_access_denied(emu: Emulator, stack: dict[str, Any]) -> None:
    # The window role may send only AWS-RunPatchBaseline (SendOnlyRunPatchBaseline).
    wid, _ = _patch_window(emu, stack, "AWS-RunShellScript", stack["Outputs"]["MaintenanceWindowRoleArn"])
    status, run = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    assert status == 200 and run["Status"] == "FAILED", run
    task = run["Tasks"][0]
    assert task["Status"] == "FAILED" and task["CommandIds"] == []
    assert "AccessDeniedException" in task["StatusDetails"] and "document/AWS-RunShellScript" in task["StatusDetails"]


def test_a_window_task_with_an_unknown_role_cannot_run(emu: Emulator, stack: dict[str, Any]) -> None:
    wid, _ = _patch_window(emu, stack, "AWS-RunPatchBaseline", f"arn:aws:iam::{ACCOUNT}:role/nobody")
    status, run = emu.post("/patchpilot-emulator/execute-window", {"WindowId": wid})
    assert status == 200 and run["Tasks"][0]["Status"] == "FAILED"
    assert "could not be assumed" in run["Tasks"][0]["StatusDetails"]
