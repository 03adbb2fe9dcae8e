"""Tests of scripts/iam_reference_check.py itself, on synthetic statements (no template)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from iam_reference_check import Reference, Resolver, Statement, arn_matches, check, collect  # noqa: E402

ARN = "arn:aws:ssm:us-east-1:123456789012"


@pytest.fixture(scope="module")
def ref():
    return Reference.load()


def run(ref, actions, resources, conditions=()):
    st = Statement("role R policy P Sid=S", "role R", list(actions), list(resources), list(conditions))
    return check([st], ref)


def test_correct_statement_passes(ref):
    n, problems = run(
        ref,
        ["ssm:UpdatePatchBaseline", "ssm:GetPatchBaseline"],
        [f"{ARN}:patchbaseline/*"],
        [("StringEquals", "ssm:resourceTag/patchpilot:managed"), ("Bool", "aws:SecureTransport")],
    )
    assert (n, problems) == (2, [])


def test_no_resource_type_action_on_star_passes(ref):
    assert run(ref, ["ssm:CreatePatchBaseline"], ["*"], [("StringEquals", "aws:RequestTag/k")]) == (1, [])


def test_unknown_action_fails(ref):
    _, problems = run(ref, ["ssm:CreatePatchBaselines"], [f"{ARN}:patchbaseline/*"])
    assert len(problems) == 1
    assert "ssm:CreatePatchBaselines is not in the Service Authorization Reference" in problems[0]
    assert "Sid=S" in problems[0]


def test_wildcard_action_must_match_something(ref):
    n, problems = run(ref, ["ssm:GetPatchBaseline*"], [f"{ARN}:patchbaseline/*"])
    assert n >= 2 and not [p for p in problems if "not in the" in p]
    _, problems = run(ref, ["ssm:NoSuchThing*"], ["*"])
    assert len(problems) == 1 and "ssm:NoSuchThing*" in problems[0]


def test_arn_of_wrong_type_fails(ref):
    _, problems = run(ref, ["ssm:GetPatchBaseline"], [f"{ARN}:maintenancewindow/*"])
    assert len(problems) == 1
    p = problems[0]
    assert "ssm:GetPatchBaseline" in p and f"{ARN}:maintenancewindow/*" in p
    # Names what the reference allows: the resource type and its ARN format.
    assert "patchbaseline* arn:${Partition}:ssm:${Region}:${Account}:patchbaseline/" in p


def test_non_star_resource_for_action_without_resource_types_fails(ref):
    _, problems = run(ref, ["ssm:CreatePatchBaseline"], [f"{ARN}:patchbaseline/*"])
    assert len(problems) == 1
    p = problems[0]
    assert "ssm:CreatePatchBaseline supports no resource type" in p and f"{ARN}:patchbaseline/*" in p


def test_unsupported_condition_key_fails(ref):
    # CreatePatchBaseline supports aws:RequestTag / aws:TagKeys, not a resource tag.
    _, problems = run(ref, ["ssm:CreatePatchBaseline"], ["*"], [("StringEquals", "ssm:resourceTag/patchpilot:managed")])
    assert len(problems) == 1
    p = problems[0]
    assert "ssm:CreatePatchBaseline" in p and "condition key ssm:resourceTag/patchpilot:managed" in p
    assert "aws:RequestTag/${TagKey}" in p


def test_service_specific_aws_key_is_not_global(ref):
    _, problems = run(ref, ["ssm:GetPatchBaseline"], [f"{ARN}:patchbaseline/*"], [("StringEquals", "aws:RequestTag/k")])
    assert len(problems) == 1 and "aws:RequestTag/k" in problems[0]


def test_required_resource_type_must_be_covered(ref):
    _, problems = run(ref, ["ssm:UpdateMaintenanceWindowTask"], [f"{ARN}:windowtask/*"])
    assert len(problems) == 1 and "requires resource type maintenancewindow*" in problems[0]


def test_arn_matching():
    bucket, obj = "arn:${Partition}:s3:::${BucketName}", "arn:${Partition}:s3:::${BucketName}/${ObjectName}"
    assert arn_matches("arn:aws:s3:::b", bucket) and not arn_matches("arn:aws:s3:::b/*", bucket)
    assert arn_matches("arn:aws:s3:::b/*", obj) and arn_matches("*", obj)
    doc = "arn:${Partition}:ssm:${Region}:${Account}:document/${DocumentName}"
    assert arn_matches("arn:aws:ssm:us-east-1::document/AWS-RunPatchBaseline", doc)
    assert not arn_matches(f"{ARN}:patchbaseline/*", doc)


def test_collect_resolves_intrinsics():
    template = {
        "Parameters": {"Name": {"Type": "String", "Default": "/p/q"}},
        "Resources": {
            "B": {"Type": "AWS::S3::Bucket"},
            "T": {"Type": "AWS::SNS::Topic"},
            "R": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [{"PolicyName": "x", "PolicyDocument": {"Statement": [
                        {"Sid": "A", "Effect": "Allow", "Action": "s3:PutObject", "Resource": {"Fn::Sub": "${B.Arn}/*"}},
                        {"Sid": "B", "Effect": "Allow", "Action": "sns:Publish", "Resource": {"Ref": "T"}},
                        {"Sid": "C", "Effect": "Allow", "Action": "ssm:GetParameter",
                         "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${Name}"}},
                        {"Sid": "D", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},
                    ]}}]
                },
            },
        },
    }
    problems = []
    sts = collect(template, problems)
    assert problems == []
    assert [s.resources for s in sts] == [
        ["arn:aws:s3:::b/*"],
        ["arn:aws:sns:us-east-1:123456789012:T"],
        ["arn:aws:ssm:us-east-1:123456789012:parameter/p/q"],
    ]
    assert Resolver(template).values({"Fn::GetAtt": ["B", "Arn"]}) == ["arn:aws:s3:::b"]
