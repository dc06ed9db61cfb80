"""A TrainingStep's (or a tuning trial's) job, under the SageMaker training toolkit's contract.

Hyperparameters are JSON-decoded and passed as sorted `--name value` pairs (str() of the
decoded value, so JSON `true` arrives as `True`), the `sagemaker_*` ones are the runner's
(program, code tarball, distribution), the model dir becomes `model.tar.gz` at
`<S3OutputPath>/<job>/output/`, and final metrics are the last match of each
MetricDefinitions regex in the log. Debugger rules and the ProfilerReport run after the
job, as SageMaker's rule containers do; neither can fail the job it watches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess  # nosec B404 - nvidia-smi with fixed arguments, never a shell
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dogbreed_jobs import contract
from pipeline.local import properties, records
from pipeline.local.container import (
    HOST,
    Job,
    container_path,
    discard,
    echo_metrics,
    environment,
    place_input,
    rewrite,
    tar_folder,
)
from pipeline.local.store import StoreError, join_uri
from pipeline.local.supervisor import Completed, JobFailed, failure_reason

log = logging.getLogger("pipeline.local")


@dataclass
class TrainingResult:
    properties: dict
    log_path: Path
    rule_evaluations: list[dict] = field(default_factory=list)
    profiler_report: dict | None = None


@dataclass(frozen=True)
class _Layout:
    """The training container's folders, under the job root's /opt/ml."""

    opt_ml: Path

    @property
    def code(self) -> Path:
        return self.opt_ml / "code"

    @property
    def input(self) -> Path:
        return self.opt_ml / "input"

    @property
    def config(self) -> Path:
        return self.input / "config"

    @property
    def data(self) -> Path:
        return self.input / "data"

    @property
    def model(self) -> Path:
        return self.opt_ml / "model"

    @property
    def output(self) -> Path:
        return self.opt_ml / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def tensors(self) -> Path:
        return self.output / "tensors"

    @property
    def checkpoints(self) -> Path:
        return self.opt_ml / "checkpoints"


@dataclass
class _Program:
    """What the toolkit runs: the entry point, from where, and the framework's settings."""

    name: str  # sagemaker_program
    submit: str  # sagemaker_submit_directory
    framework: dict  # the decoded sagemaker_* hyperparameters
    user: dict  # the decoded others, the script's own


# ---------------------------------------------------------------------- hyperparameters


def decode_hyperparameter(text):
    """The value the training toolkit sees: JSON-decoded when it parses, else the text."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def clamp_epochs(hyperparameters: dict, max_epochs: int | None) -> tuple[dict, dict]:
    """(hyperparameters with epochs at most max_epochs, {"epochs": [was, now]} if changed).

    The value keeps its encoding: a JSON-quoted categorical stays quoted.
    """
    text = hyperparameters.get("epochs")
    if max_epochs is None or text is None:
        return hyperparameters, {}
    value = decode_hyperparameter(text)
    quoted = isinstance(value, str)
    try:
        epochs = int(float(value))
    except (TypeError, ValueError):
        return hyperparameters, {}
    if epochs <= max_epochs:
        return hyperparameters, {}
    clamped = json.dumps(str(max_epochs)) if quoted else str(max_epochs)
    return {**hyperparameters, "epochs": clamped}, {"epochs": [text, clamped]}


def _toolkit_text(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in sorted(value.items()))
    return "" if value is None else str(value)


def gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        # nvidia-smi found on PATH by shutil.which, fixed arguments, no shell.
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)  # nosec B603
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))


# ---------------------------------------------------------------------------- the job


def run_training(job: Job, arguments: dict) -> TrainingResult:
    """Run the job; its DescribeTrainingJob-like properties and the rules' findings."""
    started = records.now()
    layout = _Layout(job.opt_ml)
    program = _program(arguments)
    channels = _place_channels(job, arguments, layout)
    _unpack_code(job, program.submit, layout.code)
    if not (layout.code / program.name).is_file():
        raise JobFailed(f"ClientError: {program.name} is not in {program.submit}")
    for folder in (layout.model, layout.output_data, layout.checkpoints):
        folder.mkdir(parents=True, exist_ok=True)
    checkpoint_uri = (arguments.get("CheckpointConfig") or {}).get("S3Uri")
    if checkpoint_uri and job.store.exists(checkpoint_uri):
        # SageMaker restores the checkpoint prefix before the script starts (spot resume).
        job.store.download(checkpoint_uri, layout.checkpoints)
    _warn_single_host(job, arguments)
    _write_config(arguments, channels, layout)
    own = {k: rewrite(str(v), job.root) for k, v in (arguments.get("Environment") or {}).items()}
    if job.container.toolkit:
        command = [job.container.python, "-m", "sagemaker_training.cli.train"]
        env = environment(job, {**_platform_environment(job, arguments, layout), **own})
    else:
        gpus = gpu_count()
        user_args = _user_args(program, layout)
        toolkit = _toolkit_environment(job, program, channels, layout, user_args, gpus)
        env = environment(job, {**toolkit, **own})
        command = _command(program, user_args, gpus)
    interval = _profiling_interval(arguments)
    started_clock = time.monotonic()
    done = job.supervisor.run(
        command,
        cwd=layout.code,
        env=env,
        log_path=job.log_path,
        on_line=echo_metrics(job),
        max_seconds=(arguments.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds"),
        monitor_factory=_system_monitor(job, interval) if interval else None,
    )
    seconds = int(round(time.monotonic() - started_clock))
    if done.exit_code == 0:
        # A finished job resumes no more: its latest checkpoint stays, the fallback goes
        # (each is the size of the weights and the optimizer state, ~300 MB for DenseNet-161).
        (layout.checkpoints / contract.PREVIOUS_CHECKPOINT_FILE).unlink(missing_ok=True)
        if checkpoint_uri:
            job.store.clear(join_uri(checkpoint_uri, contract.PREVIOUS_CHECKPOINT_FILE))
    if checkpoint_uri and any(layout.checkpoints.iterdir()):
        job.store.upload(layout.checkpoints, checkpoint_uri)
    if done.exit_code != 0:
        raise JobFailed(failure_reason("AlgorithmError", program.name, done, job.log_path))
    discard(layout.data)
    model_uri = _upload_outputs(job, arguments, layout)
    ended = records.now()
    definitions = (arguments.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    metrics = final_metrics(job.log_path, definitions, ended)
    result = TrainingResult({}, job.log_path)
    rule_statuses = _debugger_outputs(job, arguments, layout, result, ended)
    profiler_statuses = _profiler_outputs(job, arguments, done, result, ended)
    result.properties = properties.training_job(
        arguments,
        name=job.name,
        arn=records.arn("training-job", job.name),
        status="Completed",
        model_uri=model_uri,
        metrics=metrics,
        created=started,
        ended=ended,
        seconds=seconds,
        rule_statuses=rule_statuses,
        profiler_statuses=profiler_statuses,
    )
    return result


def _program(arguments: dict) -> _Program:
    decoded = {
        name: decode_hyperparameter(text)
        for name, text in (arguments.get("HyperParameters") or {}).items()
    }
    framework = {k: v for k, v in decoded.items() if k.startswith("sagemaker_")}
    user = {k: v for k, v in decoded.items() if not k.startswith("sagemaker_")}
    name = framework.get("sagemaker_program")
    submit = framework.get("sagemaker_submit_directory")
    if not name or not submit:
        raise JobFailed(
            "ClientError: HyperParameters need sagemaker_program and sagemaker_submit_directory "
            "(the SDK's framework estimators set them)"
        )
    return _Program(name, str(submit), framework, user)


def _unpack_code(job: Job, submit: str, code_dir: Path) -> None:
    """The code tarball into /opt/ml/code: from S3, or, with network isolation, from the
    `code` channel the SDK adds (sagemaker_submit_directory is then a path under
    /opt/ml/input/data/code/, placed with the other channels)."""
    if submit.startswith("/opt/ml/input/data/"):
        tarball = container_path(job.root, submit)
        if not tarball.is_file():
            raise JobFailed(f"ClientError: the code tarball {submit} is in no input channel")
    elif submit.startswith("s3://"):
        try:
            tarball = job.store.path(submit)
        except StoreError as err:
            raise JobFailed(f"ClientError: sagemaker_submit_directory: {err}") from None
        if not tarball.is_file():
            raise JobFailed(
                f"ClientError: the code tarball {submit} is not in the store ({tarball})"
            )
    else:
        raise JobFailed(
            f"ClientError: sagemaker_submit_directory {submit!r} is neither an s3:// URI nor "
            "a path in an input channel"
        )
    code_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(code_dir, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise JobFailed(f"ClientError: cannot unpack {submit}: {err}") from None


def _place_channels(job: Job, arguments: dict, layout: _Layout) -> dict[str, dict]:
    """Every input channel's objects in /opt/ml/input/data/<channel>; the channels by name."""
    channels = {}
    for channel in arguments.get("InputDataConfig") or []:
        name = channel["ChannelName"]
        source = channel.get("DataSource", {}).get("S3DataSource")
        if not source:
            raise JobFailed(f"ClientError: channel {name}: only S3DataSource is supported locally")
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise JobFailed(f"ClientError: channel {name}: only S3DataType S3Prefix is supported")
        place_input(job.store, source["S3Uri"], layout.data / name, f"channel {name}")
        channels[name] = channel
    return channels


def _warn_single_host(job: Job, arguments: dict) -> None:
    instance_count = int((arguments.get("ResourceConfig") or {}).get("InstanceCount") or 1)
    if instance_count > 1:
        log.warning(
            "[%s] InstanceCount %d: runs on this one machine as a single host",
            job.label,
            instance_count,
        )


def _write_config(arguments: dict, channels: dict, layout: _Layout) -> None:
    """/opt/ml/input/config as the toolkit reads it, and the Debugger hook's configuration."""
    hook = arguments.get("DebugHookConfig")
    if hook:
        records.write_json(
            layout.config / "debughookconfig.json",
            {
                "LocalPath": str(layout.tensors),
                "HookParameters": hook.get("HookParameters", {}),
                "CollectionConfigurations": hook.get("CollectionConfigurations", []),
            },
        )
    records.write_json(
        layout.config / "hyperparameters.json", dict(arguments.get("HyperParameters") or {})
    )
    records.write_json(
        layout.config / "inputdataconfig.json",
        {
            name: {
                **({"ContentType": c["ContentType"]} if c.get("ContentType") else {}),
                "TrainingInputMode": c.get("InputMode")
                or (arguments.get("AlgorithmSpecification") or {}).get("TrainingInputMode")
                or "File",
                "S3DistributionType": c["DataSource"]["S3DataSource"].get(
                    "S3DistributionType", "FullyReplicated"
                ),
                "RecordWrapperType": c.get("RecordWrapperType", "None"),
            }
            for name, c in channels.items()
        },
    )
    instance_type = str((arguments.get("ResourceConfig") or {}).get("InstanceType") or "local")
    records.write_json(
        layout.config / "resourceconfig.json",
        {
            "current_host": HOST,
            "current_instance_type": instance_type,
            "current_group_name": "homogeneousCluster",
            "hosts": [HOST],
            "instance_groups": [
                {
                    "instance_group_name": "homogeneousCluster",
                    "instance_type": instance_type,
                    "hosts": [HOST],
                }
            ],
            "network_interface_name": "lo",
        },
    )


def _user_args(program: _Program, layout: _Layout) -> list[str]:
    user_args: list[str] = []
    for name in sorted(program.user):
        user_args += [f"--{name}", _toolkit_text(program.user[name])]
    # Not SageMaker's: the script's container defaults point into /opt/ml, which is the job
    # root here (docs/local-runner.md, job contract).
    user_args += ["--checkpoint-dir", str(layout.checkpoints)]
    return user_args


def _toolkit_environment(
    job: Job, program: _Program, channels: dict, layout: _Layout, user_args: list, gpus: int
) -> dict:
    """The SM_* variables (SM_TRAINING_ENV among them) the training toolkit sets."""
    hosts = [HOST]
    module_name = Path(program.name).stem
    channel_dirs = {name: str(layout.data / name) for name in channels}
    training_env = {
        "additional_framework_parameters": program.framework,
        "channel_input_dirs": channel_dirs,
        "current_host": HOST,
        "hosts": hosts,
        "hyperparameters": program.user,
        "input_config_dir": str(layout.config),
        "input_data_config": {name: {} for name in channels},
        "input_dir": str(layout.input),
        "job_name": job.name,
        "log_level": int(program.framework.get("sagemaker_container_log_level", 20)),
        "model_dir": str(layout.model),
        "module_dir": program.submit,
        "module_name": module_name,
        "num_cpus": records.cpu_count(),
        "num_gpus": gpus,
        "output_data_dir": str(layout.output_data),
        "output_dir": str(layout.output),
        "resource_config": {"current_host": HOST, "hosts": hosts},
        "user_entry_point": program.name,
    }
    env = {
        "SM_MODEL_DIR": layout.model,
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_OUTPUT_DATA_DIR": layout.output_data,
        "SM_OUTPUT_DIR": layout.output,
        "SM_INPUT_DIR": layout.input,
        "SM_INPUT_CONFIG_DIR": layout.config,
        "SM_NUM_GPUS": gpus,
        "SM_NUM_CPUS": records.cpu_count(),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": HOST,
        "SM_HPS": json.dumps(program.user, sort_keys=True),
        "SM_USER_ARGS": json.dumps(user_args),
        "SM_USER_ENTRY_POINT": program.name,
        "SM_MODULE_NAME": module_name,
        "SM_MODULE_DIR": program.submit,
        "SM_LOG_LEVEL": training_env["log_level"],
        "SM_TRAINING_ENV": json.dumps(training_env, sort_keys=True),
        "SMDEBUG_CONFIG_FILE_PATH": layout.config / "debughookconfig.json",
        "TRAINING_JOB_NAME": job.name,
        "TRAINING_JOB_ARN": records.arn("training-job", job.name),
    }
    for name, value in sorted(channel_dirs.items()):
        env[f"SM_CHANNEL_{name.upper()}"] = value
    for name, value in program.user.items():
        env[f"SM_HP_{name.upper()}"] = _toolkit_text(value)
    return env


def _platform_environment(job: Job, arguments: dict, layout: _Layout) -> dict:
    """What SageMaker and the image give AWS's toolkit before it starts; the SM_* variables
    and train.py's arguments are then the toolkit's own.

    SAGEMAKER_BASE_DIR roots the toolkit's /opt/ml in the job root, and
    SM_STUDIO_LOCAL_MODE skips its DNS wait for `algo-1`, a name only SageMaker resolves.
    The code is already unpacked in /opt/ml/code (safely, by _unpack_code), so the toolkit
    uses it instead of fetching sagemaker_submit_directory from S3. torchrun is looked up
    on PATH, as in the image: the container venv's bin comes first.
    """
    env = {
        "SAGEMAKER_BASE_DIR": layout.opt_ml,
        # The PyTorch images' ENV: the toolkit hands the job to this framework module.
        "SAGEMAKER_TRAINING_MODULE": "sagemaker_pytorch_container.training:main",
        "SM_STUDIO_LOCAL_MODE": "true",
        "TRAINING_JOB_NAME": job.name,
        "TRAINING_JOB_ARN": records.arn("training-job", job.name),
        "PATH": os.pathsep.join(
            [str(Path(job.container.python).parent), os.environ.get("PATH", os.defpath)]
        ),
    }
    if arguments.get("DebugHookConfig"):
        env["SMDEBUG_CONFIG_FILE_PATH"] = layout.config / "debughookconfig.json"
    return env


def _command(program: _Program, user_args: list[str], gpus: int) -> list[str]:
    distributed = program.framework.get("sagemaker_torch_distributed_enabled", "")
    if str(distributed).lower() == "true" and gpus > 1:
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={gpus}", program.name, *user_args,
        ]  # fmt: skip
    return [sys.executable, program.name, *user_args]


def _upload_outputs(job: Job, arguments: dict, layout: _Layout) -> str:
    """model.tar.gz (and output.tar.gz when the job wrote output data) to the store; the
    model's URI."""
    output_path = (arguments.get("OutputDataConfig") or {}).get("S3OutputPath")
    if not output_path:
        raise JobFailed("ClientError: OutputDataConfig.S3OutputPath is missing")
    job_output = join_uri(output_path, job.name, "output")
    model_tarball = job.root / contract.MODEL_ARCHIVE
    tar_folder(layout.model, model_tarball)
    model_uri = join_uri(job_output, contract.MODEL_ARCHIVE)
    job.store.put_file(model_uri, model_tarball)
    if any(layout.output_data.iterdir()):
        output_tarball = job.root / contract.OUTPUT_ARCHIVE
        tar_folder(layout.output_data, output_tarball)
        job.store.put_file(join_uri(job_output, contract.OUTPUT_ARCHIVE), output_tarball)
    return model_uri


def final_metrics(log_path: Path, definitions: list[dict], timestamp: str) -> list[dict]:
    """FinalMetricDataList: the last value each regex matched in the log."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    found = []
    for definition in definitions:
        try:
            pattern = re.compile(definition["Regex"])
        except re.error as err:
            raise JobFailed(
                f"ClientError: metric {definition.get('Name')}: bad Regex: {err}"
            ) from None
        value = None
        for line in text.splitlines():
            match = pattern.search(line)
            if match:
                with contextlib.suppress(ValueError, IndexError):
                    value = float(match.group(1))
        if value is not None:
            found.append(properties.final_metric(definition["Name"], value, timestamp))
    return found


# ------------------------------------------------------------------ Debugger, profiler


def _debugger_outputs(
    job: Job, arguments: dict, layout: _Layout, result: TrainingResult, ended: str
) -> list[dict] | None:
    """The tensors to the hook's S3OutputPath, the rules evaluated on them; the
    DebugRuleEvaluationStatuses, None when the job has no rules."""
    hook = arguments.get("DebugHookConfig")
    if hook and layout.tensors.is_dir() and hook.get("S3OutputPath"):
        job.store.upload(layout.tensors, join_uri(hook["S3OutputPath"], job.name, "debug-output"))
    rules = arguments.get("DebugRuleConfigurations") or []
    if not rules:
        return None
    result.rule_evaluations = _evaluate_rules(job, rules, layout.tensors)
    return [{**status, "LastModifiedTime": ended} for status in result.rule_evaluations]


def _evaluate_rules(job: Job, rules: list[dict], tensors_dir: Path) -> list[dict]:
    """Every rule's DebugRuleEvaluationStatuses entry, decided by the bundle's check_rules.py:
    the code SageMaker runs in `--debugger pipeline`'s processing step, run here with the
    job's interpreter over the job's tensors, so one implementation decides in both places.
    As on SageMaker, a rule that cannot be evaluated is reported with status Error and never
    fails the training job it watches."""
    log.info("[%s] evaluating %d Debugger rule(s)", job.label, len(rules))
    try:
        report = _check_rules(job, rules, tensors_dir)
        statuses = [_rule_status(entry) for entry in report["rules"]]
        if len(statuses) != len(rules):
            raise ValueError(f"{len(statuses)} results for {len(rules)} rules")
    except Exception as err:  # whatever went wrong, the rules' Error, never the job's
        log.warning("[%s] Debugger rules not evaluated: %s", job.label, err)
        statuses = [
            {
                "RuleConfigurationName": rule.get("RuleConfigurationName"),
                "RuleEvaluationStatus": "Error",
                "StatusDetails": f"not evaluated: {err}",
            }
            for rule in rules
        ]
    for status in statuses:
        level = (
            logging.WARNING if status["RuleEvaluationStatus"] != "NoIssuesFound" else logging.INFO
        )
        detail = status.get("StatusDetails") or ""
        log.log(
            level,
            "[%s] rule %s: %s%s",
            job.label,
            status["RuleConfigurationName"],
            status["RuleEvaluationStatus"],
            f" ({detail})" if detail else "",
        )
    return statuses


def _check_rules(job: Job, rules: list[dict], tensors_dir: Path) -> dict:
    """check_rules.py's rules.json for this job; its output is appended to the job's log."""
    c = contract
    script = _Layout(job.opt_ml).code / c.CHECK_RULES_SCRIPT
    if not script.is_file():
        raise JobFailed(
            f"the job's code has no {c.CHECK_RULES_SCRIPT} (a definition exported before it "
            "existed: export it again)"
        )
    # Beside the job's /opt/ml, as SageMaker keeps a rule's output apart from the job's.
    output = job.root / "rule-output"
    output.mkdir(parents=True, exist_ok=True)
    rules_file = output / "rule-configurations.json"
    rules_file.write_text(json.dumps(rules, indent=2), encoding="utf-8")
    command = [job.container.python, str(script), "--tensors-dir", str(tensors_dir)]
    command += ["--rules", f"@{rules_file}", "--output-dir", str(output)]
    done = job.supervisor.run(
        command,
        cwd=script.parent,
        env=environment(job, {}),
        log_path=job.log_path,
        on_line=lambda _line: None,
        max_seconds=None,
    )
    if done.exit_code != 0:
        last = done.last_lines[-1] if done.last_lines else "no output"
        raise JobFailed(
            f"{c.CHECK_RULES_SCRIPT} exited with code {done.exit_code}: {last} "
            f"(log: {job.log_path})"
        )
    return json.loads((output / c.RULES_FILE).read_text(encoding="utf-8"))


def _rule_status(entry: dict) -> dict:
    """A rules.json entry as SageMaker reports it. DebugRuleEvaluationStatuses know only
    InProgress, NoIssuesFound, IssuesFound, Error and Stopping/Stopped, so NoData (the rule had
    nothing to read) becomes Error, the one that says "not judged", with "NoData:" leading the
    details so the cause stays visible; NoIssuesFound would claim a check that was not made."""
    c = contract
    status, details = entry["status"], entry.get("details") or ""
    seen = f" [read {entry.get('steps', 0)} step(s), {entry.get('tensors', 0)} tensor(s)]"
    if status == c.RULE_NO_DATA:
        status, details = c.RULE_ERROR, f"NoData: {details}"
    elif status not in (c.RULE_NO_ISSUES, c.RULE_ISSUES, c.RULE_ERROR):
        raise ValueError(f"rule {entry.get('name')!r}: unknown status {status!r}")
    return {
        "RuleConfigurationName": entry["name"],
        "RuleEvaluationStatus": status,
        "StatusDetails": details + seen,
    }


def _profiling_interval(arguments: dict) -> int | None:
    """The system monitor interval (ms) when the job asks for the profiler report."""
    if not properties.profiled(arguments):
        return None
    config = arguments.get("ProfilerConfig") or {}
    return int(config.get("ProfilingIntervalInMilliseconds") or 500)


def _system_monitor(job: Job, interval_ms: int):
    """A factory of the profiler's monitor, or None (a warning) when it cannot be loaded."""
    try:
        # Loaded here: psutil is an optional dependency, and only profiled jobs need it.
        from pipeline.local.profiler import SystemMonitor
    except ImportError as err:
        log.warning("[%s] no system profiler: %s", job.label, err)
        return None
    return lambda pid: SystemMonitor(pid, interval_ms)


def _profiler_outputs(
    job: Job, arguments: dict, done: Completed, result: TrainingResult, ended: str
) -> list[dict] | None:
    """The ProfilerReport, written and uploaded where SageMaker's rule leaves it; the
    ProfilerRuleEvaluationStatuses, None when the job is not profiled."""
    if not properties.profiled(arguments):
        return None
    result.profiler_report = _profiler_report(job, done.monitor)
    report_uri = (arguments.get("ProfilerConfig") or {}).get("S3OutputPath")
    files = (result.profiler_report or {}).get("files") or {}
    if report_uri:
        destination = join_uri(
            report_uri, job.name, "rule-output", "ProfilerReport", "profiler-output"
        )
        for path in files.values():
            if path and Path(path).is_file():
                job.store.put_file(join_uri(destination, Path(path).name), Path(path))
    return [
        {
            "RuleConfigurationName": rule.get("RuleConfigurationName"),
            "RuleEvaluationStatus": "NoIssuesFound" if result.profiler_report else "Error",
            "LastModifiedTime": ended,
        }
        for rule in arguments.get("ProfilerRuleConfigurations") or []
    ]


def _profiler_report(job: Job, monitor) -> dict | None:
    """The ProfilerReport summary; None (a warning) when it could not be written."""
    if monitor is None:
        return None
    try:
        from pipeline.local.profiler import write_report

        report = write_report(monitor, job.root, job.log_path)
    except Exception as err:
        log.warning("[%s] no profiler report: %s: %s", job.label, type(err).__name__, err)
        return None
    log.info("[%s] profiler report written under %s", job.label, job.root)
    return report
