"""The execution role grants every call the pipeline definition makes AWS make on its behalf.

The definition is the live build (pipeline.definition.definition_dict), not the committed
file, built for the account, region, bucket and role the template's defaults give. Each
step is mapped to the SageMaker calls the service makes for its type; its arguments add
the rest: every image to pull, S3 location, KMS key, role to pass, Debugger rule job and
log group. Each (action, ARN) is then checked against the Allow statements of the
template's execution role, its !Sub resolved with fake pseudo parameters and the
parameters' defaults, Action and Resource matched as IAM globs. The ARN forms this file
writes are themselves checked against the Service Authorization Reference (the copy that
ships with cfn-lint), so a wrong form here fails instead of matching by luck.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import pytest
from helpers.paths import ROOT

from pipeline.config import PLACEHOLDER_ACCOUNT, PipelineConfig
from pipeline.definition_json import iter_steps, own_expressions

cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")

TEMPLATE = ROOT / "infra" / "dogbreed-pipeline.yaml"
PARTITION = "aws"
# The region the definition's image URIs are looked up for must be the one the template's
# ARNs are resolved with, and the template's registry accounts default to this region's.
REGION = "us-east-1"
ACCOUNT = PLACEHOLDER_ACCOUNT
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
# SageMaker names every job of an execution pipelines-<execution id>-<step>-<hash>
# (use_custom_job_prefix=False); these stand in for one execution's values.
EXECUTION_ID = "0a1b2c3d4e5f"
HASH = "1a2b3c4d5e"
IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)")
S3_URI = re.compile(r"s3://([a-z0-9.-]+)/([^\"\s]*)")
# The "step" of what an execution's experiment config makes the pipeline service do.
EXPERIMENTS = "PipelineExperimentConfig"
PASS_TO_SAGEMAKER = (("iam:PassedToService", "sagemaker.amazonaws.com"),)
GRANT_FOR_AWS_RESOURCE = (("kms:GrantIsForAWSResource", "true"),)
ECR_PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
JOB_LOGS = ("logs:CreateLogStream", "logs:PutLogEvents")
GROUP_LOGS = ("logs:CreateLogGroup", "logs:DescribeLogStreams")
KMS_USE = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey")
# The MLflow REST calls of dogbreed_jobs/tracking.py (MlflowClient's get_experiment_by_name,
# create_experiment, search_runs, get_run, create_run, delete_run, update_run and
# set_terminated, log_batch), as sagemaker-mlflow's IAM actions.
MLFLOW_CALLS = tuple(
    f"sagemaker-mlflow:{call}"
    for call in (
        "GetExperimentByName",
        "CreateExperiment",
        "SearchRuns",
        "GetRun",
        "CreateRun",
        "DeleteRun",
        "UpdateRun",
        "LogBatch",
    )
)
MLFLOW_ARN = f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/dogbreed"
MLFLOW_BUCKET = "dogbreed-mlflow-artifacts"


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Need:
    step: str
    action: str
    resource: str
    # The request's condition keys that the role's conditions are tested against.
    context: tuple[tuple[str, str], ...] = ()

    def __str__(self):
        extra = f" with {dict(self.context)}" if self.context else ""
        return f"{self.step}: {self.action} on {self.resource}{extra}"


# ---------------------------------------------------------------- the template, resolved


class Template:
    """The template's values as CloudFormation would give them in the fake account."""

    def __init__(self, data: dict, **parameters):
        self.data = data
        self.values = {
            "AWS::Partition": PARTITION,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            **{name: p.get("Default") for name, p in data["Parameters"].items()},
            **parameters,
        }

    def condition(self, name: str) -> bool:
        """A named condition of the template, with the stack's parameter values."""

        def holds(expression) -> bool:
            ((function, argument),) = expression.items()
            if function == "Condition":
                return self.condition(argument)
            if function == "Fn::Not":
                return not holds(argument[0])
            if function == "Fn::And":
                return all(holds(item) for item in argument)
            if function == "Fn::Equals":
                left, right = (self.resolve(item) for item in argument)
                return left == right
            raise ValueError(f"this test cannot evaluate condition function {function}")

        return holds(self.data["Conditions"][name])

    def resolve(self, value):
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self.ref(argument)
            if function == "Fn::GetAtt":
                name, attribute = argument if isinstance(argument, list) else argument.split(".")
                return self.attribute(name, attribute)
            if function == "Fn::Sub":
                return self.sub(argument)
            if function.startswith("Fn::"):
                raise ValueError(f"this test cannot resolve {function}: {value}")
        return {key: self.resolve(item) for key, item in value.items()}

    def sub(self, argument) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def one(match):
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return self.attribute(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def ref(self, name):
        if name in self.values:
            return self.values[name]
        return self.attribute(name, None)

    def attribute(self, name: str, attribute: str | None) -> str:
        resource = self.data["Resources"][name]
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            bucket = self.resolve(props["BucketName"])
            physical = {None: bucket, "Arn": f"arn:{PARTITION}:s3:::{bucket}"}
        elif kind == "AWS::IAM::Role":
            role = self.resolve(props["RoleName"])
            physical = {None: role, "Arn": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{role}"}
        elif kind == "AWS::KMS::Key":
            physical = {None: KEY_ID, "Arn": arn("kms", f"key/{KEY_ID}")}
        else:
            raise KeyError(f"no fake physical value for {name} ({kind}): add one to this test")
        return physical[attribute]

    def role_statements(self, role: str) -> list[dict]:
        """Every identity-policy statement attached to `role`, resolved."""
        resources = self.data["Resources"]
        statements = [
            statement
            for policy in resources[role].get("Properties", {}).get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]
        ]
        for resource in resources.values():
            props = resource.get("Properties", {})
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            if resource["Type"] in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy"):
                if {"Ref": role} in as_list(props.get("RoleName", props.get("Roles", []))):
                    statements += props["PolicyDocument"]["Statement"]
        return [self.resolve(statement) for statement in statements]

    def bucket_key(self, bucket: str) -> str | None:
        """The SSE-KMS key the template gives `bucket` by default, if it is the template's."""
        for name, resource in self.data["Resources"].items():
            if resource["Type"] == "AWS::S3::Bucket" and self.ref(name) == bucket:
                rules = resource["Properties"]["BucketEncryption"][
                    "ServerSideEncryptionConfiguration"
                ]
                for rule in rules:
                    default = rule["ServerSideEncryptionByDefault"]
                    if default["SSEAlgorithm"] == "aws:kms":
                        return self.resolve(default["KMSMasterKeyID"])
        return None


def arn(service: str, path: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{account}:{path}"


def sm(path: str) -> str:
    return arn("sagemaker", path)


# ---------------------------------------------------------------- IAM evaluation


def glob(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE if ignore_case else 0) is not None


def condition_holds(condition: dict, context: dict) -> bool:
    # A key the request lacks fails its condition, as in IAM (no ...IfExists here).
    for operator, tests in condition.items():
        for key, expected in tests.items():
            if key not in context:
                return False
            actual, expected = context[key], [str(e) for e in as_list(expected)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = actual in expected
            elif operator == "Bool":
                ok = actual.lower() in [e.lower() for e in expected]
            elif operator in ("StringLike", "ArnLike"):
                ok = any(glob(e, actual) for e in expected)
            else:
                raise AssertionError(f"condition operator {operator} is unknown to this test")
            if not ok:
                return False
    return True


def statement_matches(statement: dict, need: Need) -> bool:
    if "NotAction" in statement or "NotResource" in statement:
        raise AssertionError(f"NotAction/NotResource is unknown to this test: {statement}")
    return (
        any(glob(a, need.action, ignore_case=True) for a in as_list(statement["Action"]))
        and any(glob(r, need.resource) for r in as_list(statement["Resource"]))
        and condition_holds(statement.get("Condition", {}), dict(need.context))
    )


def allowed(statements: list[dict], need: Need) -> bool:
    if any(statement_matches(s, need) for s in statements if s["Effect"] == "Deny"):
        return False
    return any(statement_matches(s, need) for s in statements if s["Effect"] == "Allow")


def missing(statements: list[dict], needs) -> list[Need]:
    return sorted({n for n in needs if not allowed(statements, n)}, key=str)


def report(gaps: list[Need]) -> str:
    return "the execution role does not grant:\n" + "\n".join(f"  {gap}" for gap in gaps)


# ---------------------------------------------------------------- what the definition needs


def walk(value, key=None):
    """(key, value) for every scalar in `value`, its parent key beside it."""
    if isinstance(value, dict):
        for k, item in value.items():
            yield from walk(item, k)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item, key)
    else:
        yield key, value


def compare_deployed_calls(step: str, endpoint: str, group: str) -> list[Need]:
    """What scripts/compare_deployed.py asks SageMaker from inside its container."""
    return [
        Need(step, "sagemaker:DescribeEndpoint", sm(f"endpoint/{endpoint}")),
        # The deployed configuration and model are an earlier execution's.
        Need(step, "sagemaker:DescribeEndpointConfig", sm(f"endpoint-config/{endpoint}-{HASH}")),
        Need(step, "sagemaker:DescribeModel", sm(f"model/pipelines-{HASH}-createmodel")),
        Need(step, "sagemaker:DescribeModel", sm(f"model/dogbreed-classifier-{HASH}")),
        # The ARN a filtered list is authorised against is undocumented; its resource type
        # is model-package, so: every version of the group.
        Need(step, "sagemaker:ListModelPackages", sm(f"model-package/{group}/*")),
        Need(step, "sagemaker:DescribeModelPackage", sm(f"model-package/{group}/1")),
    ]


SCALABLE_TARGET = arn("application-autoscaling", "scalable-target/056f2bd1a8d54f2a9c4b0e1c7d1e3b5a")
AUTOSCALING_SLR = (
    "arn:aws:iam::111122223333:role/aws-service-role/sagemaker.application-autoscaling."
    "amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


def release_calls(step: str, endpoint: str, group: str) -> list[Need]:
    """What scripts/release.py (dogbreed_jobs/release.py) asks AWS from inside its container,
    and what the services it calls then do on its authority."""
    from dogbreed_jobs.contract import alarm_names

    config = sm(f"endpoint-config/{endpoint}-{EXECUTION_ID}")
    served = sm(f"endpoint-config/{endpoint}-{HASH}")  # an earlier execution's
    target_tracking = arn("cloudwatch", f"alarm:TargetTracking-endpoint/{endpoint}/variant/"
                          "AllTraffic-AlarmHigh-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d")  # fmt: skip
    needs = [
        Need(step, "sagemaker:DescribeEndpoint", sm(f"endpoint/{endpoint}")),
        Need(step, "sagemaker:DescribeEndpointConfig", served),
        Need(step, "sagemaker:DescribeEndpointConfig", config),
        Need(step, "sagemaker:CreateEndpointConfig", config),
        Need(step, "sagemaker:AddTags", config),
        # Creating or updating an endpoint is authorised on it and on its configuration.
        *[
            Need(step, f"sagemaker:{call}Endpoint", resource)
            for call in ("Create", "Update")
            for resource in (sm(f"endpoint/{endpoint}"), config)
        ],
        Need(step, "sagemaker:AddTags", sm(f"endpoint/{endpoint}")),
        # The auto-rollback alarms: read by the job, and by SageMaker for the update.
        *[
            Need(step, "cloudwatch:DescribeAlarms", arn("cloudwatch", f"alarm:{name}"))
            for name in alarm_names(endpoint)
        ],
        # Autoscaling: the target's ARN ends in an id the service picks.
        *[
            Need(step, f"application-autoscaling:{call}", SCALABLE_TARGET)
            for call in (
                "RegisterScalableTarget",
                "DeregisterScalableTarget",
                "PutScalingPolicy",
                "DeleteScalingPolicy",
            )
        ],
        Need(step, "application-autoscaling:DescribeScalableTargets", "*"),
        Need(step, "application-autoscaling:DescribeScalingPolicies", "*"),
        Need(step, "sagemaker:UpdateEndpointWeightsAndCapacities", sm(f"endpoint/{endpoint}")),
        *[
            Need(step, f"cloudwatch:{call}", target_tracking)
            for call in ("PutMetricAlarm", "DeleteAlarms", "DescribeAlarms")
        ],
        Need(
            step,
            "iam:CreateServiceLinkedRole",
            AUTOSCALING_SLR,
            (("iam:AWSServiceName", "sagemaker.application-autoscaling.amazonaws.com"),),
        ),
    ]
    # The endpoint's instances log to their log group.
    group_logs = arn("logs", f"log-group:/aws/sagemaker/Endpoints/{endpoint}")
    stream = f"{group_logs}:log-stream:AllTraffic/i-0123456789abcdef0"
    needs += [Need(step, action, group_logs) for action in GROUP_LOGS]
    needs += [Need(step, action, stream) for action in JOB_LOGS]
    return needs


# What each processing script calls in AWS itself, by the script its entrypoint runs. A new
# script fails the test until it is listed here (an empty list is an answer too).
CONTAINER_CALLS = {
    "preprocess.py": lambda step, endpoint, group: [],
    "evaluate.py": lambda step, endpoint, group: [],
    "compare_deployed.py": compare_deployed_calls,
    "check_rules.py": lambda step, endpoint, group: [],
    "release.py": release_calls,
}


class Derivation:
    def __init__(self, definition: dict, pipeline_name: str, template: Template):
        self.definition = definition
        self.pipeline_name = pipeline_name
        self.template = template
        self.steps = {entry.name: entry for entry in iter_steps(definition)}
        self.defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
        self.needs: list[Need] = []

    def add(self, step: str, actions, resource: str, context=()):
        self.needs += [Need(step, action, resource, context) for action in as_list(actions)]

    def evaluate(self, value) -> str:
        """A name-shaped expression with the parameters' defaults and one execution's id."""
        if isinstance(value, (str, int, float)):
            return str(value)
        if "Std:Join" in value:
            join = value["Std:Join"]
            return join["On"].join(self.evaluate(item) for item in join["Values"])
        reference = value.get("Get", "")
        if reference == "Execution.PipelineExecutionId":
            return EXECUTION_ID
        if reference == "Execution.PipelineName":
            return self.pipeline_name
        if reference.startswith("Parameters."):
            return str(self.defaults[reference.split(".", 1)[1]])
        step, _, prop = reference.removeprefix("Steps.").partition(".")
        if step in self.steps and prop == "TrainingJobName":
            return self.job_name(step)
        if step in self.steps:
            # A property that is one of the step's own arguments, at any depth.
            found = self.steps[step].arguments
            for part in prop.split("."):
                found = found.get(part) if isinstance(found, dict) else None
            if found is not None:
                return self.evaluate(found)
        raise ValueError(f"this test cannot evaluate {value}")

    @staticmethod
    def job_name(step: str) -> str:
        return f"pipelines-{EXECUTION_ID}-{step.lower()}-{HASH}"

    def derive(self) -> list[Need]:
        for entry in self.steps.values():
            handler = getattr(self, f"_{entry.type}", None)
            if handler is None:
                raise AssertionError(
                    f"step {entry.name}: no mapping of step type {entry.type} to the AWS calls "
                    "SageMaker makes for it; add one to this test"
                )
            handler(entry.name, entry.arguments)
            # A condition's branches are steps of their own, visited in turn.
            self._arguments(entry.name, own_expressions(entry.step))
        self._parameters()
        self._experiments()
        self._tracking()
        return self.needs

    # -- per step type: what the service calls for it

    def _job(self, step: str, kind: str, name: str, actions) -> None:
        self.add(step, actions, sm(f"{kind}/{name}"))
        group = {"processing-job": "ProcessingJobs", "training-job": "TrainingJobs"}[kind]
        self._logs(step, f"/aws/sagemaker/{group}", f"{name}/algo-1-1700000000")

    def _logs(self, step: str, group: str, stream: str) -> None:
        self.add(step, GROUP_LOGS, arn("logs", f"log-group:{group}"))
        self.add(step, JOB_LOGS, arn("logs", f"log-group:{group}:log-stream:{stream}"))

    def _Processing(self, step: str, args: dict) -> None:
        job = self.job_name(step)
        actions = ("Create", "Describe", "Stop")
        self._job(step, "processing-job", job, [f"sagemaker:{a}ProcessingJob" for a in actions])
        self.add(step, "sagemaker:AddTags", sm(f"processing-job/{job}"))
        entrypoint = args["AppSpecification"].get("ContainerEntrypoint") or []
        script = PurePosixPath(entrypoint[-1]).name if entrypoint else None
        if script not in CONTAINER_CALLS:
            raise AssertionError(
                f"step {step}: which AWS calls does {script} make? List them in CONTAINER_CALLS"
            )
        group = self._group()
        self.needs += CONTAINER_CALLS[script](step, self.defaults["EndpointName"], group)
        # An input joined from another step's properties (CheckTrainingRules reads TrainModel's
        # output.tar.gz) names no s3:// text of its own for _arguments to find. (A plain Get of
        # another step's output is that step's own S3 location, derived with that step.)
        for item in args.get("ProcessingInputs", []):
            uri = item["S3Input"]["S3Uri"]
            if isinstance(uri, dict) and "Std:Join" in uri:
                for bucket, key in S3_URI.findall(self.evaluate(uri)):
                    self._s3(step, bucket, key)

    def _Training(self, step: str, args: dict) -> None:
        job = self.job_name(step)
        actions = [f"sagemaker:{a}TrainingJob" for a in ("Create", "Describe", "Stop")]
        self._job(step, "training-job", job, [*actions, "sagemaker:AddTags"])
        # Debugger runs each built-in rule as a processing job named after the training job,
        # from the rule's RuleEvaluatorImage (pulled through _arguments).
        rules = [
            *args.get("DebugRuleConfigurations", []),
            *args.get("ProfilerRuleConfigurations", []),
        ]
        for rule in rules:
            rule_job = f"{job}-{rule['RuleConfigurationName'].lower()}-{HASH}"
            rule_actions = [f"sagemaker:{a}ProcessingJob" for a in ("Create", "Describe", "Stop")]
            self._job(
                f"{step} rule {rule['RuleConfigurationName']}",
                "processing-job",
                rule_job,
                rule_actions,
            )

    def _Tuning(self, step: str, args: dict) -> None:
        tuning = f"pipelines-{EXECUTION_ID}-{HASH}"[:32]
        actions = [f"sagemaker:{a}HyperParameterTuningJob" for a in ("Create", "Describe", "Stop")]
        actions += ["sagemaker:ListTrainingJobsForHyperParameterTuningJob", "sagemaker:AddTags"]
        self.add(step, actions, sm(f"hyper-parameter-tuning-job/{tuning}"))
        # The trials are training jobs the tuning job names after itself.
        trial = f"{tuning}-001-{HASH[:8]}"
        trial_actions = [f"sagemaker:{a}TrainingJob" for a in ("Create", "Describe", "Stop")]
        self._job(f"{step} trial", "training-job", trial, [*trial_actions, "sagemaker:AddTags"])

    def _group(self) -> str:
        groups = {
            entry.arguments["ModelPackageGroupName"]
            for entry in self.steps.values()
            if entry.type == "RegisterModel"
        }
        (group,) = groups or {self.template.values["ModelPackageGroupName"]}
        return group

    def _RegisterModel(self, step: str, args: dict) -> None:
        group = self.evaluate(args["ModelPackageGroupName"])
        self.add(step, "sagemaker:CreateModelPackage", sm(f"model-package/{group}/1"))
        # A missing group is created by the step itself.
        group_actions = ("sagemaker:CreateModelPackageGroup", "sagemaker:DescribeModelPackageGroup")
        self.add(step, group_actions, sm(f"model-package-group/{group}"))

    def _Model(self, step: str, args: dict) -> None:
        model = f"pipelines-{EXECUTION_ID}-{step.lower()}-{HASH}"
        self.add(step, ("sagemaker:CreateModel", "sagemaker:DescribeModel"), sm(f"model/{model}"))

    def _Condition(self, step: str, args: dict) -> None:
        """Evaluated by the pipeline service itself: no call on the role's behalf."""

    def _Fail(self, step: str, args: dict) -> None:
        """Ends the execution: no call on the role's behalf."""

    # -- what any step's arguments name

    def _arguments(self, step: str, args: dict) -> None:
        for key, value in walk(args):
            if not isinstance(value, str):
                continue
            if image := IMAGE.match(value):
                account, region, repository = image.groups()
                self.add(step, "ecr:GetAuthorizationToken", "*")
                self.add(step, ECR_PULL, arn("ecr", f"repository/{repository}", region, account))
            for bucket, key_name in S3_URI.findall(value):
                self._s3(step, bucket, key_name)
            if key in ("KmsKeyId", "VolumeKmsKeyId") and value:
                assert value.startswith("arn:"), f"step {step}: {key} {value} is not a key ARN"
                self.add(step, KMS_USE, value)
                self.add(step, "kms:CreateGrant", value, GRANT_FOR_AWS_RESOURCE)
            if key is not None and key.endswith("RoleArn"):
                self.add(step, "iam:PassRole", value, PASS_TO_SAGEMAKER)

    def _s3(self, step: str, bucket: str, key: str) -> None:
        self.add(step, ("s3:GetObject", "s3:PutObject"), f"arn:{PARTITION}:s3:::{bucket}/{key}")
        self.add(step, "s3:ListBucket", f"arn:{PARTITION}:s3:::{bucket}", (("s3:prefix", key),))
        # Objects in the template's bucket are SSE-KMS with its key whatever the request says.
        if bucket_key := self.template.bucket_key(bucket):
            self.add(step, ("kms:Decrypt", "kms:GenerateDataKey"), bucket_key)

    def _parameters(self) -> None:
        for name, default in self.defaults.items():
            for bucket, key in S3_URI.findall(str(default or "")):
                self._s3(f"parameter {name}", bucket, key)

    def _tracking(self) -> None:
        """What dogbreed_jobs/tracking.py calls from a job whose environment names an MLflow
        tracking server: on the server, and S3 uploads to its artifact store."""
        for entry in self.steps.values():
            definition = entry.arguments.get("TrainingJobDefinition") or entry.arguments
            uri = (definition.get("Environment") or {}).get("MLFLOW_TRACKING_URI")
            if uri is None:
                continue
            self.add(entry.name, MLFLOW_CALLS, self.evaluate(uri))
            bucket = self.template.values.get("MlflowArtifactBucket")
            if bucket:
                run = "0123456789abcdef0123456789abcdef"
                self.add(entry.name, "s3:PutObject", f"arn:{PARTITION}:s3:::{bucket}/1/{run}/x")

    def _experiments(self) -> None:
        config = self.definition.get("PipelineExperimentConfig")
        if not config:
            return
        # The pipeline service creates the experiment and a trial per execution; each job
        # then gets a trial component associated with that trial.
        experiment = self.evaluate(config["ExperimentName"]).lower()
        trial = self.evaluate(config["TrialName"]).lower()
        step = EXPERIMENTS
        self.add(
            step,
            ("sagemaker:CreateExperiment", "sagemaker:DescribeExperiment"),
            sm(f"experiment/{experiment}"),
        )
        self.add(
            step,
            ("sagemaker:CreateTrial", "sagemaker:DescribeTrial"),
            sm(f"experiment-trial/{trial}"),
        )
        component = sm(
            f"experiment-trial-component/pipelines-{EXECUTION_ID}-{HASH}-aws-processing-job"
        )
        self.add(
            step, ("sagemaker:CreateTrialComponent", "sagemaker:AssociateTrialComponent"), component
        )
        self.add(step, "sagemaker:AssociateTrialComponent", sm(f"experiment-trial/{trial}"))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template() -> Template:
    return Template(cfn_yaml.load(str(TEMPLATE)))


@pytest.fixture(scope="module")
def role(template) -> list[dict]:
    return template.role_statements("ExecutionRole")


def config_for(template: Template, **security) -> PipelineConfig:
    """The build settings the template's outputs and defaults hand to upsert."""
    return PipelineConfig(
        pipeline_name=template.values["PipelineName"],
        region=REGION,
        bucket=template.ref("ArtifactBucket"),
        prefix=template.values["ProjectPrefix"],
        role_arn=template.attribute("ExecutionRole", "Arn"),
        model_package_group=template.values["ModelPackageGroupName"],
        **security,
    )


# "secured" adds what upsert's security flags add, with the template's key. --subnet is not
# built: VpcConfig needs EC2 network-interface rights that the template leaves out on purpose
# (README, "Reliability and security"). "pipeline" and "off" are the other Debugger modes
# (`--debugger`); "default" is service mode.
@pytest.fixture(scope="module", params=["default", "secured", "pipeline", "off"])
def definition(request, template) -> dict:
    from pipeline.definition import definition_dict

    security = {}
    if request.param in ("pipeline", "off"):
        security = {"debugger": request.param}
    if request.param == "secured":
        security = {
            "kms_key_id": template.attribute("DataKey", "Arn"),
            "enable_network_isolation": True,
            "encrypt_inter_container_traffic": True,
        }
    return definition_dict(config_for(template, **security))


@pytest.fixture(scope="module")
def needs(definition, template) -> list[Need]:
    return Derivation(definition, template.values["PipelineName"], template).derive()


@pytest.fixture(scope="module")
def authorization_reference() -> dict:
    specs = importlib.resources.files("cfnlint.data.AdditionalSpecs") / "Policies.json"
    return json.loads(specs.read_text())


# ---------------------------------------------------------------- tests


def test_execution_role_grants_every_call_the_definition_makes(role, needs):
    gaps = missing(role, needs)
    assert not gaps, report(gaps)


def test_derivation_covers_every_step_and_what_their_arguments_name(definition, needs):
    # A derivation that quietly found nothing would make the test above pass.
    steps = {need.step.split(" ")[0] for need in needs}
    for entry in iter_steps(definition):
        if entry.type not in ("Condition", "Fail"):
            assert entry.name in steps, entry.name
    actions = {need.action for need in needs}
    assert {"ecr:BatchGetImage", "s3:GetObject", "iam:PassRole", "logs:PutLogEvents"} <= actions
    repositories = {n.resource.rsplit("/", 1)[1] for n in needs if n.action == "ecr:BatchGetImage"}
    rule_jobs = {n.step for n in needs if n.action == "sagemaker:CreateProcessingJob"}
    for entry in iter_steps(definition):
        rules = [
            *entry.arguments.get("DebugRuleConfigurations", []),
            *entry.arguments.get("ProfilerRuleConfigurations", []),
        ]
        for rule in rules:
            assert f"{entry.name} rule {rule['RuleConfigurationName']}" in rule_jobs
        if rules:
            assert "sagemaker-debugger-rules" in repositories
    if any("KmsKeyId" in json.dumps(entry.arguments) for entry in iter_steps(definition)):
        assert "kms:CreateGrant" in actions
    if "CheckTrainingRules" in steps:
        # Its input is joined from TrainModel's properties: the derivation must reach it.
        job = Derivation.job_name("TrainModel")
        assert any(
            n.step == "CheckTrainingRules"
            and n.action == "s3:GetObject"
            and n.resource.endswith(f"/models/{job}/output/output.tar.gz")
            for n in needs
        )


def test_the_role_pulls_only_image_repositories_the_definition_runs(role, needs, definition):
    # The other direction of the test above, for images: a repository left over from images
    # the steps no longer run (pytorch-training, before the move to the `pytorch` DLCs) fails.
    pulled = {n.resource for n in needs if n.action == "ecr:BatchGetImage"}
    granted = {
        resource
        for statement in role
        if statement["Effect"] == "Allow" and "ecr:BatchGetImage" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    # One role serves every Debugger mode: the rule containers' repository is pulled only by
    # service mode's rules (the default definition, where the two sets are equal).
    rules = arn("ecr", "repository/sagemaker-debugger-rules", REGION, "503895931360")
    uses_rules = "DebugRuleConfigurations" in json.dumps(definition)
    # And both serving stacks: the TorchServe image's repository is pulled only by a
    # definition built with --serving torchserve.
    torchserve = arn("ecr", "repository/pytorch-inference", REGION, "763104351884")
    assert torchserve not in pulled
    assert granted == (pulled if uses_rules else pulled | {rules}) | {torchserve}


def test_derived_arns_have_the_forms_the_service_authorization_reference_gives(
    needs, authorization_reference
):
    wrong = wrong_forms(needs, authorization_reference)
    assert not wrong, "\n".join(wrong)


def wrong_forms(needs, authorization_reference) -> list[str]:
    wrong = []
    for need in needs:
        service, action = need.action.split(":")
        entry = authorization_reference[service]["Actions"][action.lower()]
        types = entry.get("Resources", [])
        formats = [
            re.sub(
                r"\$\{(\w+)\}",
                lambda m: {"Partition": "aws[a-z-]*", "Region": "[a-z0-9-]+"}.get(
                    m.group(1), r"\d{12}" if m.group(1) == "Account" else "[^:/]+"
                ),
                fmt,
            )
            for kind in types
            # The reference spells some resource types in lower case in its resource table only
            # (application-autoscaling's ScalableTarget).
            for fmt in {
                k.lower(): v for k, v in authorization_reference[service]["Resources"].items()
            }[kind.lower()]["ARNFormats"]
        ]
        ok = any(re.fullmatch(f, need.resource) for f in formats) if types else need.resource == "*"
        if not ok:
            wrong.append(f"{need} (resource types: {types or 'none, so *'})")
    return wrong


@pytest.fixture(scope="module")
def tracking(template):
    """The stack with MLflow tracking on, the definition upsert builds for it, its needs."""
    from pipeline.definition import definition_dict

    stack = Template(
        template.data, MlflowTrackingArn=MLFLOW_ARN, MlflowArtifactBucket=MLFLOW_BUCKET
    )
    definition = definition_dict(config_for(stack, mlflow_tracking_arn=MLFLOW_ARN))
    needs = Derivation(definition, stack.values["PipelineName"], stack).derive()
    return stack, needs


def test_with_mlflow_tracking_the_role_grants_the_jobs_calls_on_that_server_only(
    tracking, role, authorization_reference
):
    stack, needs = tracking
    tracked = {n.step for n in needs if n.action.startswith("sagemaker-mlflow:")}
    assert tracked == {"TuneHyperparameters", "TrainModel", "EvaluateModel"}
    assert {n.resource for n in needs if n.action.startswith("sagemaker-mlflow:")} == {MLFLOW_ARN}
    statements = stack.role_statements("ExecutionRole")
    gaps = missing(statements, needs)
    assert not gaps, report(gaps)
    assert not wrong_forms(needs, authorization_reference)
    elsewhere = [
        Need("x", "sagemaker-mlflow:CreateRun", MLFLOW_ARN.replace("/dogbreed", "/other")),
        Need("x", "sagemaker-mlflow:DeleteExperiment", MLFLOW_ARN),
        Need("x", "s3:GetObject", f"arn:{PARTITION}:s3:::{MLFLOW_BUCKET}/1/x"),
    ]
    assert missing(statements, elsewhere) == sorted(elsewhere, key=str)
    # The default stack grants no MLflow call at all.
    assert not any(
        glob(action, "sagemaker-mlflow:CreateRun", ignore_case=True)
        for statement in role
        for action in as_list(statement["Action"])
    )


def test_role_grants_the_calls_compare_deployed_makes_from_its_container(role, template):
    calls = compare_deployed_calls(
        "CompareWithDeployed",
        template.values["EndpointName"],
        template.values["ModelPackageGroupName"],
    )
    gaps = missing(role, calls)
    assert not gaps, report(gaps)


def test_an_experiment_config_would_need_experiments_rights_the_role_lacks(
    definition, template, role
):
    with_experiments = copy.deepcopy(definition)
    # The SDK's default, which pipeline.definition turns off.
    with_experiments["PipelineExperimentConfig"] = {
        "ExperimentName": {"Get": "Execution.PipelineName"},
        "TrialName": {"Get": "Execution.PipelineExecutionId"},
    }
    needs = Derivation(with_experiments, template.values["PipelineName"], template).derive()
    lacking = {gap.action for gap in missing(role, needs) if gap.step == EXPERIMENTS}
    assert lacking == {
        "sagemaker:CreateExperiment",
        "sagemaker:DescribeExperiment",
        "sagemaker:CreateTrial",
        "sagemaker:DescribeTrial",
        "sagemaker:CreateTrialComponent",
        "sagemaker:AssociateTrialComponent",
    }


def test_a_missing_grant_is_reported_with_its_step_action_and_resource(role, definition, needs):
    (register,) = [e.name for e in iter_steps(definition) if e.type == "RegisterModel"]
    without_registry = [s for s in role if s.get("Sid") != "ModelRegistry"]
    message = report(missing(without_registry, needs))
    assert f"{register}: sagemaker:CreateModelPackageGroup on {sm('model-package-group/')}" in (
        message
    )


def test_role_grants_the_release_s_calls_and_only_for_the_pipeline_s_endpoint(role, template):
    endpoint = template.values["EndpointName"]
    calls = release_calls("DeployEndpoint", endpoint, template.values["ModelPackageGroupName"])
    gaps = missing(role, calls)
    assert not gaps, report(gaps)
    elsewhere = [
        Need("x", "cloudwatch:DescribeAlarms", arn("cloudwatch", "alarm:someone-elses")),
        Need("x", "cloudwatch:PutMetricAlarm", arn("cloudwatch", f"alarm:{endpoint}-5xx-rate")),
        Need("x", "sagemaker:UpdateEndpointWeightsAndCapacities", sm("endpoint/other")),
        # The service-linked role of another service, or for another service.
        Need(
            "x",
            "iam:CreateServiceLinkedRole",
            AUTOSCALING_SLR,
            (("iam:AWSServiceName", "ecs.application-autoscaling.amazonaws.com"),),
        ),  # fmt: skip
    ]
    assert missing(role, elsewhere) == sorted(elsewhere, key=str)
