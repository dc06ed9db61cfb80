"""`weights upload`: torchvision's DenseNet-161 ImageNet weights into the bucket, checked,
for training jobs that cannot download them (network isolation, a VPC without internet)."""

from __future__ import annotations

import logging
from pathlib import Path

import pipeline.cli.options as options
from pipeline import aws, weights
from pipeline.errors import UsageError

log = logging.getLogger("pipeline.cli")

WEIGHTS_FOLDER = "weights"


def upload(args) -> int:
    client = aws.connect(region=args.region, profile=args.profile)
    bucket, owner = aws.bucket_or_default(client, args.bucket)
    prefix = args.prefix.strip("/")
    if not prefix:
        raise UsageError("--prefix must not be empty")
    aws.check_bucket(client, bucket, expected_owner=owner)
    expected = weights.published()
    with weights.scratch_folder() as scratch:
        if args.file is not None:
            weights.check_file(args.file, expected)
            path = args.file
        else:
            log.info("downloading %s", expected.url)
            path = weights.download(expected, Path(scratch))
        key = f"{prefix}/{WEIGHTS_FOLDER}/{expected.filename}"
        uploaded, _ = aws.upload_objects(client, bucket, {key: path.read_bytes()})
    uri = f"s3://{bucket}/{key}"
    log.info(
        "%s %s (SHA-256 %s... as published)",
        "uploaded" if uploaded else "already there:",
        uri,
        expected.hash_prefix,
    )
    log.info("start executions with --param %s=%s", weights.PARAMETER, uri)
    print(uri)
    return 0


def add_weights(parser) -> None:
    parser.description = (
        "Pretrained weights for training jobs without internet. `upload` puts torchvision's "
        "DenseNet-161 ImageNet weights (downloaded, or --file) into the bucket after checking "
        "their SHA-256 against the prefix torchvision publishes in the file name, and prints "
        f"the S3 URI to pass as --param {weights.PARAMETER}=URI."
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("upload", help="check and upload the weights file")
    up.add_argument("--bucket", help="S3 bucket (default: SageMaker's default bucket)")
    up.add_argument(
        "--prefix",
        default=options.DEFAULTS.prefix,
        help=f"key prefix; the file goes under PREFIX/{WEIGHTS_FOLDER}/ "
        f"(default: {options.DEFAULTS.prefix})",
    )
    up.add_argument(
        "--file",
        type=Path,
        metavar="FILE",
        help="a copy of torchvision's file already on this machine (default: download it)",
    )
    options.add_aws(up)
    up.set_defaults(handler=upload)


PARSERS = {"weights": add_weights}
