"""One settings object for everything that is fixed when the pipeline is built.

What users change per execution lives in pipeline/parameters.py as Pipeline parameters;
what changes the definition itself (names, account-specific ARNs, versions) lives here.
The defaults are placeholders that make `export` work offline and deterministically:
`upsert` and `export` both take --role-arn, --bucket and --region to render a real one.
"""

from __future__ import annotations

import dataclasses
import re

# AWS documentation's example account: the committed definition must name no real account.
PLACEHOLDER_ACCOUNT = "111122223333"

ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
BUCKET_RE = re.compile(r"^(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str = "dogbreed-pipeline"
    region: str = "us-east-1"
    bucket: str = f"dogbreed-pipeline-{PLACEHOLDER_ACCOUNT}"
    prefix: str = "dogbreed-pipeline"
    role_arn: str = f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/DogbreedPipelineExecutionRole"
    model_package_group: str = "dogbreed-classifier"
    # SageMaker's PyTorch images: training has 2.0-2.8, inference stops at 2.6; one version
    # for both keeps the serialised weights and the serving code on the same torch.
    framework_version: str = "2.6"
    py_version: str = "py312"
    # The image URIs are looked up for these (GPU) instance types; a GPU image also runs on
    # the CPU instance types a user may pick through the pipeline parameters.
    image_instance_type: str = "ml.g5.xlarge"
    processing_framework_version: str = "2.6"
    # Debugger is closed to new AWS customers: one switch removes rules, hook and profiler.
    enable_debugger: bool = True
    enable_caching: bool = True
    cache_expire_after: str = "P30D"

    def __post_init__(self):
        problems = []
        if not ROLE_ARN_RE.match(self.role_arn):
            problems.append(
                f"role ARN {self.role_arn!r} is not an IAM role ARN "
                "(expected arn:aws:iam::<12-digit account>:role/<name>)"
            )
        if not BUCKET_RE.match(self.bucket) or ".." in self.bucket:
            problems.append(f"bucket {self.bucket!r} is not a valid S3 bucket name")
        if not REGION_RE.match(self.region):
            problems.append(f"region {self.region!r} is not an AWS region name such as us-east-1")
        if not NAME_RE.match(self.pipeline_name):
            problems.append(
                f"pipeline name {self.pipeline_name!r} may hold only letters, digits and hyphens"
            )
        if not NAME_RE.match(self.model_package_group):
            problems.append(
                f"model package group {self.model_package_group!r} may hold only letters, "
                "digits and hyphens"
            )
        if self.prefix != self.prefix.strip("/") or not self.prefix:
            problems.append(f"prefix {self.prefix!r} must be non-empty without leading/trailing /")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]

    def s3_uri(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, self.prefix, *parts])

    def replace(self, **changes) -> PipelineConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
