"""infra/dogbreed-pipeline.yaml: cfn-lint clean, and the security properties the issue asks for.

The structural tests read the template with cfn-lint's loader (it understands !Sub, !GetAtt
and friends) and check the policies as data, so a loosened statement fails here before it
reaches an account.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import ROOT

cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")

TEMPLATE = ROOT / "infra" / "dogbreed-pipeline.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"

# The wildcards allowed: actions with no resource-level form (the Service Authorization
# Reference lists no resource type for them; test_wildcard_actions_have_no_resource_type).
ALLOWED_WILDCARD_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
}


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


def test_no_wildcard_action_or_resource_except_those_without_a_resource_form(template):
    statements = list(iam_statements(template))
    assert statements
    for owner, statement in statements:
        actions = as_list(statement["Action"])
        assert "*" not in actions and not any(a.endswith(":*") for a in actions), (owner, actions)
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= ALLOWED_WILDCARD_ACTIONS, (owner, statement.get("Sid"))
    wildcard_sids = {s.get("Sid") for _, s in statements if "*" in as_list(s["Resource"])}
    assert wildcard_sids == {"EcrLogin", "DescribeEndpointAutoscaling"}


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


def test_outputs_give_what_upsert_and_schedule_take_and_the_topic(template):
    assert set(template["Outputs"]) == {
        "BucketName",
        "ExecutionRoleArn",
        "SchedulerRoleArn",
        "KmsKeyArn",
        "NotificationTopicArn",
    }
    assert template["Outputs"]["NotificationTopicArn"]["Value"] == {"Ref": "NotificationTopic"}


def test_model_package_group_is_the_parameters_retained_and_creatable_by_the_role(template):
    (group,) = resources_of_type(template, "AWS::SageMaker::ModelPackageGroup").values()
    assert group["Properties"]["ModelPackageGroupName"] == {"Ref": "ModelPackageGroupName"}
    # Its versions are the deployment record, as the bucket's objects are.
    assert group["DeletionPolicy"] == group["UpdateReplacePolicy"] == "Retain"
    registry = execution_statements(template)["ModelRegistry"]
    assert "sagemaker:CreateModelPackageGroup" in as_list(registry["Action"])
    assert {sub_text(r).rsplit(":", 1)[1] for r in as_list(registry["Resource"])} == {
        "model-package-group/${ModelPackageGroupName}",
        "model-package/${ModelPackageGroupName}/*",
    }


def test_debugger_rule_pull_is_only_the_rules_repository_of_the_parameters_account(template):
    statement = execution_statements(template)["PullDebuggerRuleImages"]
    assert statement["Effect"] == "Allow"
    assert set(as_list(statement["Action"])) <= {
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
    }
    assert [sub_text(r) for r in as_list(statement["Resource"])] == [
        "arn:${AWS::Partition}:ecr:${AWS::Region}:${DebuggerRulesRegistryAccount}"
        ":repository/sagemaker-debugger-rules"
    ]


def test_debugger_rules_account_default_is_the_sdks_us_east_1_registry(template):
    # find_spec locates the package without importing it (importing the SDK takes seconds).
    spec = importlib.util.find_spec("sagemaker")
    table = Path(spec.submodule_search_locations[0]) / "image_uri_config" / "debugger.json"
    registries = json.loads(table.read_text())["versions"]["latest"]["registries"]
    assert (
        template["Parameters"]["DebuggerRulesRegistryAccount"]["Default"]
        == (registries["us-east-1"])
    )


def key_statements(template) -> list:
    (key,) = resources_of_type(template, "AWS::KMS::Key").values()
    return key["Properties"]["KeyPolicy"]["Statement"]


def test_topic_is_encrypted_with_the_project_key(template):
    (topic,) = resources_of_type(template, "AWS::SNS::Topic").values()
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "DataKey"}


def test_key_lets_eventbridge_in_only_for_the_notification_topic_and_the_status_rule(template):
    services = [s for s in key_statements(template) if "Service" in s["Principal"]]
    (statement,) = services
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert set(as_list(statement["Action"])) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    condition = statement["Condition"]
    topic = template["Resources"]["NotificationTopic"]["Properties"]["TopicName"]
    rule = template["Resources"]["PipelineStatusRule"]["Properties"]["Name"]
    scope = "${AWS::Region}:${AWS::AccountId}:"
    assert sub_text(condition["StringEquals"]["kms:EncryptionContext:aws:sns:topicArn"]) == (
        "arn:${AWS::Partition}:sns:" + scope + sub_text(topic)
    )
    assert sub_text(condition["ArnEquals"]["aws:SourceArn"]) == (
        "arn:${AWS::Partition}:events:" + scope + "rule/" + sub_text(rule)
    )


def test_topic_policy_lets_only_eventbridge_publish_and_only_from_the_status_rule(template):
    (policy,) = resources_of_type(template, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": "NotificationTopic"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert as_list(statement["Action"]) == ["sns:Publish"]
    assert statement["Resource"] == {"Ref": "NotificationTopic"}
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["PipelineStatusRule", "Arn"]}}
    }


def test_status_rule_matches_this_pipelines_failures_and_successes_on_request(template):
    (rule,) = resources_of_type(template, "AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Model Building Pipeline Execution Status Change"]
    ((match, arn),) = [item for entry in pattern["detail"]["pipelineArn"] for item in entry.items()]
    assert match == "equals-ignore-case"
    assert sub_text(arn) == (
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:pipeline/${PipelineName}"
    )
    assert pattern["detail"]["currentPipelineExecutionStatus"] == {
        "Fn::If": ["NotifiesOnSuccess", ["Failed", "Succeeded"], ["Failed"]]
    }
    assert template["Conditions"]["NotifiesOnSuccess"] == {
        "Fn::Equals": [{"Ref": "NotifyOnSuccess"}, "true"]
    }
    assert template["Parameters"]["NotifyOnSuccess"]["Default"] == "false"
    assert rule["Properties"]["State"] == "ENABLED"


def test_status_rule_sends_the_topic_one_readable_line(template):
    (rule,) = resources_of_type(template, "AWS::Events::Rule").values()
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": "NotificationTopic"}
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {
        "pipeline": "$.detail.pipelineArn",
        "execution": "$.detail.pipelineExecutionArn",
        "status": "$.detail.currentPipelineExecutionStatus",
        "time": "$.time",
    }
    # A template that is a JSON string is delivered as that text, placeholders filled in.
    message = json.loads(transformer["InputTemplate"])
    assert isinstance(message, str)
    assert all(f"<{name}>" in message for name in transformer["InputPathsMap"])


def test_email_subscription_exists_only_when_an_address_is_given(template):
    (subscription,) = resources_of_type(template, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasNotificationEmail"
    assert template["Conditions"]["HasNotificationEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "NotificationEmail"}, ""]}]
    }
    assert template["Parameters"]["NotificationEmail"]["Default"] == ""
    props = subscription["Properties"]
    assert props["Protocol"] == "email"
    assert props["Endpoint"] == {"Ref": "NotificationEmail"}
    assert props["TopicArn"] == {"Ref": "NotificationTopic"}


def test_resource_policies_allow_no_wildcard_action_but_the_key_administration(template):
    allows = [
        (name, statement)
        for name, statements in (
            ("DataKey", key_statements(template)),
            *(
                (name, r["Properties"]["PolicyDocument"]["Statement"])
                for name, r in resources_of_type(template, "AWS::SNS::TopicPolicy").items()
            ),
        )
        for statement in statements
        if statement["Effect"] == "Allow"
    ]
    wildcards = {
        statement.get("Sid")
        for _, statement in allows
        if any(a == "*" or a.endswith(":*") for a in as_list(statement["Action"]))
    }
    # kms:* to the account root only hands the key's administration to IAM (see DataKey).
    assert wildcards == {"AccountAdministersThroughIam"}
    for name, statement in allows:
        if statement.get("Sid") != "AccountAdministersThroughIam":
            assert "*" not in as_list(statement.get("Principal", {}).get("AWS", [])), name


def test_wildcard_actions_have_no_resource_type():
    specs = importlib.resources.files("cfnlint.data.AdditionalSpecs") / "Policies.json"
    reference = json.loads(specs.read_text())
    for action in ALLOWED_WILDCARD_ACTIONS:
        service, name = action.split(":")
        assert not reference[service]["Actions"][name.lower()].get("Resources"), action


def test_the_auto_rollback_alarms_are_the_ones_the_release_names(template):
    from dogbreed_jobs.contract import VARIANT_NAME, alarm_names

    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    names = sorted(sub_text(a["Properties"]["AlarmName"]) for a in alarms.values())
    assert names == sorted(alarm_names("${EndpointName}"))
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["TreatMissingData"] == "notBreaching"
        assert props["Threshold"]["Ref"] in template["Parameters"]
        stats = [m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m]
        assert stats and all(
            {d["Name"]: d["Value"] for d in s["Metric"]["Dimensions"]}
            == {"EndpointName": {"Ref": "EndpointName"}, "VariantName": VARIANT_NAME}
            for s in stats
        )
        (shown,) = [m for m in props["Metrics"] if m.get("ReturnData")]
        assert "Expression" in shown
    by_metric = {
        m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Stat"]
        for a in alarms.values()
        for m in a["Properties"]["Metrics"]
        if "MetricStat" in m
    }
    assert by_metric == {"Invocation5XXErrors": "Sum", "Invocations": "Sum", "ModelLatency": "p99"}
