"""infra/dogbreed-pipeline.yaml: cfn-lint clean, and the security properties the issue asks for.

The structural tests read the template with cfn-lint's loader (it understands !Sub, !GetAtt
and friends) and check the policies as data, so a loosened statement fails here before it
reaches an account.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import ROOT

cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")

TEMPLATE = ROOT / "infra" / "dogbreed-pipeline.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"

# The one wildcard the issue allows: ecr:GetAuthorizationToken has no resource-level form.
ALLOWED_WILDCARD_ACTIONS = {"ecr:GetAuthorizationToken"}


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def resources_of_type(template: dict, kind: str) -> dict:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def iam_statements(template: dict):
    """(resource name, statement) for every identity policy: role inline and RolePolicy."""
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield name, statement
        elif resource["Type"] in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy"):
            for statement in props["PolicyDocument"]["Statement"]:
                yield name, statement


def sub_text(value) -> str:
    """The string of a plain value or an Fn::Sub, for matching ARNs by their pattern."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        return value["Fn::Sub"]
    return value if isinstance(value, str) else repr(dict(value))


def test_template_passes_cfn_lint():
    result = subprocess.run(
        [str(CFN_LINT), str(TEMPLATE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_wildcard_action_or_resource_except_the_ecr_login(template):
    statements = list(iam_statements(template))
    assert statements
    for owner, statement in statements:
        actions = as_list(statement["Action"])
        assert "*" not in actions and not any(a.endswith(":*") for a in actions), (owner, actions)
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= ALLOWED_WILDCARD_ACTIONS, (owner, statement.get("Sid"))
    wildcard_sids = {s.get("Sid") for _, s in statements if "*" in as_list(s["Resource"])}
    assert wildcard_sids == {"EcrLogin"}


def test_bucket_blocks_all_public_access(template):
    (bucket,) = resources_of_type(template, "AWS::S3::Bucket").values()
    block = bucket["Properties"]["PublicAccessBlockConfiguration"]
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    assert {flag: block.get(flag) for flag in flags} == dict.fromkeys(flags, True)


def test_bucket_is_sse_kms_with_the_project_key_and_a_bucket_key(template):
    (bucket,) = resources_of_type(template, "AWS::S3::Bucket").values()
    (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    default = rule["ServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms"
    assert default["KMSMasterKeyID"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert rule["BucketKeyEnabled"] is True
    assert bucket["Properties"]["VersioningConfiguration"]["Status"] == "Enabled"


def test_key_rotates(template):
    (key,) = resources_of_type(template, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True


def bucket_policy_statements(template) -> list:
    (policy,) = resources_of_type(template, "AWS::S3::BucketPolicy").values()
    return policy["Properties"]["PolicyDocument"]["Statement"]


def test_bucket_policy_denies_every_request_without_tls(template):
    denies = [
        s
        for s in bucket_policy_statements(template)
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(denies) == 1
    (deny,) = denies
    assert deny["Principal"] == "*"
    assert as_list(deny["Action"]) == ["s3:*"]
    # Both the bucket (list, policy) and its objects.
    assert len(as_list(deny["Resource"])) == 2


def test_bucket_policy_denies_puts_not_encrypted_with_kms(template):
    denies = [
        s
        for s in bucket_policy_statements(template)
        if s["Effect"] == "Deny" and "s3:PutObject" in as_list(s["Action"])
    ]
    conditions = [
        cond.get("s3:x-amz-server-side-encryption")
        for s in denies
        for op, cond in s.get("Condition", {}).items()
        if op.startswith("StringNotEquals")
    ]
    assert "aws:kms" in conditions


def scheduler_role(template) -> dict:
    roles = resources_of_type(template, "AWS::IAM::Role")
    (role,) = [
        r
        for r in roles.values()
        if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "scheduler.amazonaws.com"}
    ]
    return role


def test_scheduler_role_may_only_start_this_pipeline(template):
    role = scheduler_role(template)
    assert set(template["Resources"]) >= {"SchedulerRole"}
    statements = [
        s
        for policy in role["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    assert [as_list(s["Action"]) for s in statements] == [["sagemaker:StartPipelineExecution"]]
    (resource,) = as_list(statements[0]["Resource"])
    assert sub_text(resource).endswith(":pipeline/${PipelineName}")
    # Nothing else attaches a policy to it.
    for resource in template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy"):
            targets = as_list(
                resource["Properties"].get("RoleName", resource["Properties"].get("Roles"))
            )
            assert {"Ref": "SchedulerRole"} not in targets


def test_scheduler_trust_is_limited_to_this_account(template):
    (trust,) = scheduler_role(template)["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def execution_statements(template) -> dict:
    return {s["Sid"]: s for owner, s in iam_statements(template) if owner == "ExecutionRolePolicy"}


def test_execution_role_reaches_s3_only_under_the_project_prefix(template):
    s3 = [
        s
        for s in execution_statements(template).values()
        if any(a.startswith("s3:") for a in as_list(s["Action"]))
    ]
    assert s3
    for statement in s3:
        for resource in as_list(statement["Resource"]):
            text = (
                sub_text(resource) if isinstance(resource, dict) and "Fn::Sub" in resource else None
            )
            if text is not None:
                assert text == "${ArtifactBucket.Arn}/${ProjectPrefix}/*"
            else:
                # Bucket-level actions only with a prefix condition or harmless metadata.
                assert resource == {"Fn::GetAtt": ["ArtifactBucket", "Arn"]}
                actions = as_list(statement["Action"])
                assert actions == ["s3:GetBucketLocation"] or "Condition" in statement


def test_execution_role_may_pass_only_itself_and_only_to_sagemaker(template):
    (statement,) = [
        s for s in execution_statements(template).values() if "iam:PassRole" in as_list(s["Action"])
    ]
    assert statement["Resource"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == (
        "sagemaker.amazonaws.com"
    )


def test_execution_role_sagemaker_resources_are_named_for_the_project(template):
    allowed_names = ("/pipelines-*", "/dogbreed-*", "${ModelPackageGroupName}", "${EndpointName}")
    sagemaker = [
        s
        for s in execution_statements(template).values()
        if any(a.startswith("sagemaker:") for a in as_list(s["Action"]))
    ]
    assert sagemaker
    for statement in sagemaker:
        for resource in as_list(statement["Resource"]):
            text = sub_text(resource)
            assert any(name in text for name in allowed_names), text


def test_outputs_give_what_upsert_and_schedule_take(template):
    assert set(template["Outputs"]) == {
        "BucketName",
        "ExecutionRoleArn",
        "SchedulerRoleArn",
        "KmsKeyArn",
    }
