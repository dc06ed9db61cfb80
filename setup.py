"""dogbreed-pipeline: a SageMaker Pipelines workflow that fine-tunes DenseNet-161.

`pip install .` installs the orchestration side only (SageMaker SDK, boto3). The container
code ships too, so a wheel can export and upsert without a checkout: its package
`dogbreed_jobs` (scripts/dogbreed_jobs, which the host imports for the contract) and the
entry files at the bundle's root (scripts/*.py, as `pipeline.scripts_bundle`).
Extras: [local] adds what the container code and the local runner need; [dev] adds the test
tools on top.
"""

from setuptools import setup

# smdebug 1.0.34 forgets requests, pandas and psutil; it pins protobuf<=3.20.3, and its
# tensor writer calls ndarray.tostring(), removed in numpy 2.3.
LOCAL = [
    "torch>=2.6",
    "torchvision>=0.21",
    "Pillow>=10.0",
    "numpy>=1.24,<2.3",
    "smdebug==1.0.34",
    "requests",
    "pandas",
    "psutil",
    "protobuf<=3.20.3",
    "matplotlib>=3.7",
    "waitress>=3.0",
    # The training image's MLflow: the jobs log to it, run-local's store is its SQLite one.
    "mlflow==3.15.1",
]
DEV = LOCAL + [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "moto[server]>=5.0.20,<6",
    "ruff>=0.6",
    "hypothesis>=6.100",
    "build",
    "bandit>=1.7",
    "cfn-lint>=1.0",
    # AWS's serving stack of the PyTorch 2.6 inference DLC, which tests/e2e/
    # test_inference_toolkit.py serves the model with (TorchServe's frontend needs Java 11+;
    # without it that test runs only TorchServe's Python worker). The toolkit brings scipy.
    "sagemaker-pytorch-inference==2.0.25",
    "torchserve==0.12.0",
]

setup(
    name="dogbreed-pipeline",
    version="0.1.0",
    description="SageMaker Pipelines workflow that tunes, trains, evaluates, registers and "
    "deploys a DenseNet-161 image classifier, runnable locally without Docker or AWS.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        "pipeline",
        "pipeline.cli",
        "pipeline.local",
        "steps",
        "dogbreed_jobs",
        "pipeline.scripts_bundle",
    ],
    package_dir={"dogbreed_jobs": "scripts/dogbreed_jobs", "pipeline.scripts_bundle": "scripts"},
    # bundle.INCLUDE_SUFFIXES: the code and the smdebug wheel it installs in the jobs.
    package_data={"dogbreed_jobs": ["*.whl"], "pipeline.scripts_bundle": ["*.py"]},
    include_package_data=False,
    install_requires=[
        "sagemaker>=2.257.7,<3",
        "boto3>=1.35",
    ],
    extras_require={"local": LOCAL, "dev": DEV},
    entry_points={"console_scripts": ["dogbreed-pipeline=pipeline.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
