"""Processing and training jobs as subprocesses, under SageMaker's container contract.

A job gets its own root, `<execution>/jobs/<job>/`, standing in for the container's `/`:
every `/opt/ml/...` path of the job (arguments, LocalPaths, SM_* variables) is rewritten
into it. Inputs are placed there from the store before the script starts and outputs go
back to their S3 URIs after it succeeded, as SageMaker downloads and uploads them. What
the job prints goes to its log file; METRICS lines are also shown as progress.

Training follows the SageMaker training toolkit: hyperparameters are JSON-decoded and
passed as sorted `--name value` pairs (str() of the decoded value, so JSON `true` arrives
as `True`), the `sagemaker_*` ones are the runner's (program, code tarball, distribution),
the model dir becomes `model.tar.gz` at `<S3OutputPath>/<job>/output/`, and final metrics
are the last match of each MetricDefinitions regex in the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess  # nosec B404 - runs our own scripts and nvidia-smi, never a shell
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pipeline.local.store import Store, StoreError, join_uri

log = logging.getLogger("pipeline.local")

ACCOUNT = "000000000000"
HOST = "algo-1"
# After SIGTERM (a stop, a timeout) a job gets this long to save its state before SIGKILL;
# SageMaker allows 120 s, a local user waits less.
STOP_GRACE_SECONDS = 30
_CONTAINER_ROOT = re.compile(r"(?<![\w./-])/opt/ml(?=/|$)")
_PYTHON = ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}")
_METRIC_PAIR = re.compile(r"(\w+)=(\S+)")


class JobFailed(Exception):
    """The job ran and failed (or could not start); the message is its FailureReason."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:local:{ACCOUNT}:{kind}/{name}"


# ------------------------------------------------------------------------- processes

_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
_stopping = threading.Event()


def allow_jobs() -> None:
    """Let jobs start again (a new execution after a stopped one, in the same process)."""
    _stopping.clear()


def stop_all() -> None:
    """SIGTERM every running job's process group and start no new one (Ctrl-C)."""
    with _running_lock:
        _stopping.set()
        processes = list(_running)
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)


@dataclass
class Completed:
    exit_code: int
    last_lines: list[str]
    timed_out: bool
    monitor: object = None


def run_process(
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    on_line: Callable[[str], None],
    max_seconds: float | None,
    monitor_factory: Callable[[int], contextlib.AbstractContextManager] | None = None,
) -> Completed:
    """Run `command`, streaming its merged output to `log_path` and `on_line`."""
    if _stopping.is_set():
        raise JobFailed("Stopped: the execution was interrupted before this job started")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    last: list[str] = []
    with open(log_path, "a", encoding="utf-8") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        try:
            # An argv list, no shell: this interpreter running a script of the bundle.
            process = subprocess.Popen(  # nosec B603
                command,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                bufsize=1,
                # Its own process group: a stop reaches the loader workers too, and the
                # terminal's Ctrl-C reaches the runner first, which then stops it cleanly.
                start_new_session=True,
            )
        except OSError as err:
            raise JobFailed(f"ClientError: cannot start {command[0]}: {err.strerror}") from None
        with _running_lock:
            _running.add(process)
            stopping = _stopping.is_set()
        if stopping:  # stop_all() ran while this one was starting: it missed it
            _terminate(process)
        timer = None
        timed_out = threading.Event()
        if max_seconds:

            def expire():
                timed_out.set()
                _terminate(process)

            timer = threading.Timer(max_seconds, expire)
            timer.daemon = True
            timer.start()
        monitor = monitor_factory(process.pid) if monitor_factory else None
        try:
            with monitor if monitor is not None else contextlib.nullcontext():
                for line in process.stdout:
                    sink.write(line)
                    sink.flush()
                    text = line.rstrip("\n")
                    if text.strip():
                        last = [*last[-19:], text]
                    on_line(text)
                code = process.wait()
        finally:
            if timer:
                timer.cancel()
            if process.poll() is None:
                _terminate(process)
            with _running_lock:
                _running.discard(process)
        sink.write(f"exit code {code}\n")
    return Completed(code, last, timed_out.is_set(), monitor)


def _terminate(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _failure(kind: str, what: str, done: Completed, log_path: Path) -> str:
    if done.timed_out:
        return f"MaxRuntimeExceeded: {what} ran past its StoppingCondition (log: {log_path})"
    reason = next((line.strip() for line in reversed(done.last_lines) if line.strip()), "")
    detail = f": {reason}" if reason else ""
    return f"{kind}: {what} exited with code {done.exit_code}{detail} (log: {log_path})"


# ---------------------------------------------------------------------------- helpers


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


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def container_path(root: Path, path: str) -> Path:
    """Where the container path `/opt/ml/...` (or any absolute path) lives in the job root."""
    return root / path.lstrip("/")


def rewrite(text: str, root: Path) -> str:
    """Every /opt/ml path inside `text` moved into the job root."""
    return _CONTAINER_ROOT.sub(lambda _: str(root / "opt" / "ml"), text)


def parse_metrics_line(line: str) -> dict[str, str] | None:
    if not line.startswith("METRICS "):
        return None
    return dict(_METRIC_PAIR.findall(line))


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
            found.append({"MetricName": definition["Name"], "Value": value, "Timestamp": timestamp})
    return found


def _write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _place_input(store: Store, uri: str, destination: Path, what: str) -> int:
    try:
        return store.download(uri, destination)
    except StoreError as err:
        raise JobFailed(f"ClientError: {what}: {err}") from None


def _discard(folder: Path) -> None:
    """Drop a finished job's copy of its inputs: the store keeps the originals, and a job
    folder per trial holding the whole dataset would fill the disk. A failed job keeps
    everything, for its post-mortem."""
    shutil.rmtree(folder, ignore_errors=True)


def _tar_folder(folder: Path, tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Level 1: float weights hardly compress, and the default level costs seconds per job.
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)


# ------------------------------------------------------------------------- processing


@dataclass
class Job:
    """What every job needs besides its arguments."""

    store: Store
    name: str
    root: Path
    log_path: Path
    label: str  # how progress lines name it: the step, or the step and trial
    env: dict[str, str] = field(default_factory=dict)  # extra environment (thread limits)


def _base_env(job: Job, extra: dict) -> dict[str, str]:
    env = dict(os.environ)
    env.update(job.env)
    env.update({key: str(value) for key, value in extra.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _echo_metrics(job: Job) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        metrics = parse_metrics_line(line)
        if metrics:
            shown = " ".join(f"{key}={value}" for key, value in metrics.items())
            log.info("[%s] %s", job.label, shown)

    return on_line


def run_processing(job: Job, arguments: dict) -> dict:
    """A ProcessingStep's job; its DescribeProcessingJob-like properties."""
    started = now()
    root = job.root
    inputs = arguments.get("ProcessingInputs", [])
    for item in inputs:
        name = item.get("InputName", "?")
        source = item.get("S3Input")
        if not source:
            raise JobFailed(f"ClientError: input {name}: only S3Input is supported locally")
        if (
            source.get("S3DataType", "S3Prefix") != "S3Prefix"
            or source.get("S3InputMode", "File") != "File"
        ):
            raise JobFailed(
                f"ClientError: input {name}: only S3DataType S3Prefix in File mode is supported"
            )
        _place_input(job.store, source["S3Uri"], container_path(root, source["LocalPath"]), name)
    outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
    for item in outputs:
        if "S3Output" in item:
            container_path(root, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
    _write_json(root / "opt/ml/config/processingjobconfig.json", arguments)
    _write_json(
        root / "opt/ml/config/resourceconfig.json",
        {"current_host": HOST, "hosts": [HOST]},
    )

    app = arguments.get("AppSpecification", {})
    entrypoint = list(app.get("ContainerEntrypoint") or [])
    if not entrypoint:
        raise JobFailed("ClientError: AppSpecification has no ContainerEntrypoint")
    program = _program(entrypoint)
    if entrypoint[0] in _PYTHON:
        entrypoint[0] = sys.executable
    command = [rewrite(str(part), root) for part in entrypoint]
    command += [rewrite(str(part), root) for part in app.get("ContainerArguments") or []]
    env = _base_env(
        job, {k: rewrite(str(v), root) for k, v in arguments.get("Environment", {}).items()}
    )
    env["PROCESSING_JOB_NAME"] = job.name
    max_seconds = arguments.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    done = run_process(
        command,
        cwd=root,
        env=env,
        log_path=job.log_path,
        on_line=_echo_metrics(job),
        max_seconds=max_seconds,
    )
    if done.exit_code != 0:
        raise JobFailed(_failure("AlgorithmError", program, done, job.log_path))
    for item in outputs:
        if "S3Output" in item:
            output = item["S3Output"]
            job.store.upload(container_path(root, output["LocalPath"]), output["S3Uri"])
    for item in inputs:
        _discard(container_path(root, item["S3Input"]["LocalPath"]))
    return {
        **arguments,
        "ProcessingJobName": job.name,
        "ProcessingJobArn": arn("processing-job", job.name),
        "ProcessingJobStatus": "Completed",
        "ExitMessage": "",
        "CreationTime": started,
        "ProcessingStartTime": started,
        "ProcessingEndTime": now(),
        "LastModifiedTime": now(),
    }


def _program(entrypoint: list[str]) -> str:
    """What a failure names: the script (`preprocess.py`), else the executable."""
    script = next((part for part in entrypoint[1:] if part.endswith((".py", ".sh"))), None)
    return Path(script or entrypoint[0]).name


# --------------------------------------------------------------------------- training


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


@dataclass
class TrainingResult:
    properties: dict
    log_path: Path
    rule_evaluations: list[dict] = field(default_factory=list)
    profiler_report: dict | None = None


def run_training(job: Job, arguments: dict) -> TrainingResult:
    """A TrainingStep's (or a tuning trial's) job; DescribeTrainingJob-like properties."""
    started = now()
    root = job.root
    opt_ml = root / "opt" / "ml"
    hyperparameters = dict(arguments.get("HyperParameters") or {})
    decoded = {name: decode_hyperparameter(text) for name, text in hyperparameters.items()}
    framework = {k: v for k, v in decoded.items() if k.startswith("sagemaker_")}
    user = {k: v for k, v in decoded.items() if not k.startswith("sagemaker_")}
    program = framework.get("sagemaker_program")
    submit = framework.get("sagemaker_submit_directory")
    if not program or not submit:
        raise JobFailed(
            "ClientError: HyperParameters need sagemaker_program and sagemaker_submit_directory "
            "(the SDK's framework estimators set them)"
        )
    code_dir = opt_ml / "code"
    _unpack_code(job.store, str(submit), code_dir)
    if not (code_dir / program).is_file():
        raise JobFailed(f"ClientError: {program} is not in {submit}")

    channels = {}
    for channel in arguments.get("InputDataConfig") or []:
        name = channel["ChannelName"]
        source = channel.get("DataSource", {}).get("S3DataSource")
        if not source:
            raise JobFailed(f"ClientError: channel {name}: only S3DataSource is supported locally")
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise JobFailed(f"ClientError: channel {name}: only S3DataType S3Prefix is supported")
        directory = opt_ml / "input" / "data" / name
        _place_input(job.store, source["S3Uri"], directory, f"channel {name}")
        channels[name] = channel
    model_dir, output_dir = opt_ml / "model", opt_ml / "output"
    output_data_dir, checkpoint_dir = output_dir / "data", opt_ml / "checkpoints"
    for folder in (model_dir, output_data_dir, checkpoint_dir):
        folder.mkdir(parents=True, exist_ok=True)

    checkpoint_uri = (arguments.get("CheckpointConfig") or {}).get("S3Uri")
    if checkpoint_uri and job.store.exists(checkpoint_uri):
        # SageMaker restores the checkpoint prefix before the script starts (spot resume).
        job.store.download(checkpoint_uri, checkpoint_dir)

    config_dir = opt_ml / "input" / "config"
    debug_config = config_dir / "debughookconfig.json"
    tensors_dir = output_dir / "tensors"
    hook = arguments.get("DebugHookConfig")
    if hook:
        _write_json(
            debug_config,
            {
                "LocalPath": str(tensors_dir),
                "HookParameters": hook.get("HookParameters", {}),
                "CollectionConfigurations": hook.get("CollectionConfigurations", []),
            },
        )
    resources = arguments.get("ResourceConfig") or {}
    instance_count = int(resources.get("InstanceCount") or 1)
    if instance_count > 1:
        log.warning(
            "[%s] InstanceCount %d: runs on this one machine as a single host",
            job.label,
            instance_count,
        )
    gpus = gpu_count()
    hosts = [HOST]
    _write_json(config_dir / "hyperparameters.json", hyperparameters)
    _write_json(
        config_dir / "inputdataconfig.json",
        {name: {"ContentType": c.get("ContentType", "")} for name, c in channels.items()},
    )
    _write_json(
        config_dir / "resourceconfig.json",
        {"current_host": HOST, "hosts": hosts, "network_interface_name": "lo"},
    )

    user_args: list[str] = []
    for name in sorted(user):
        user_args += [f"--{name}", _toolkit_text(user[name])]
    # Not SageMaker's: the script's container defaults point into /opt/ml, which is the job
    # root here (docs/local-runner.md, job contract).
    user_args += ["--checkpoint-dir", str(checkpoint_dir)]
    channel_dirs = {name: str(opt_ml / "input" / "data" / name) for name in channels}
    training_env = {
        "additional_framework_parameters": framework,
        "channel_input_dirs": channel_dirs,
        "current_host": HOST,
        "hosts": hosts,
        "hyperparameters": user,
        "input_config_dir": str(config_dir),
        "input_data_config": {name: {} for name in channels},
        "input_dir": str(opt_ml / "input"),
        "job_name": job.name,
        "log_level": int(framework.get("sagemaker_container_log_level", 20)),
        "model_dir": str(model_dir),
        "module_dir": str(submit),
        "module_name": Path(program).stem,
        "num_cpus": cpu_count(),
        "num_gpus": gpus,
        "output_data_dir": str(output_data_dir),
        "output_dir": str(output_dir),
        "resource_config": {"current_host": HOST, "hosts": hosts},
        "user_entry_point": program,
    }
    extra_env = {
        "SM_MODEL_DIR": model_dir,
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_OUTPUT_DATA_DIR": output_data_dir,
        "SM_OUTPUT_DIR": output_dir,
        "SM_INPUT_DIR": opt_ml / "input",
        "SM_INPUT_CONFIG_DIR": config_dir,
        "SM_NUM_GPUS": gpus,
        "SM_NUM_CPUS": cpu_count(),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": HOST,
        "SM_HPS": json.dumps(user, sort_keys=True),
        "SM_USER_ARGS": json.dumps(user_args),
        "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_NAME": Path(program).stem,
        "SM_MODULE_DIR": submit,
        "SM_LOG_LEVEL": training_env["log_level"],
        "SM_TRAINING_ENV": json.dumps(training_env, sort_keys=True),
        "SMDEBUG_CONFIG_FILE_PATH": debug_config,
        "TRAINING_JOB_NAME": job.name,
        "TRAINING_JOB_ARN": arn("training-job", job.name),
    }
    for name, value in sorted(channel_dirs.items()):
        extra_env[f"SM_CHANNEL_{name.upper()}"] = value
    for name, value in user.items():
        extra_env[f"SM_HP_{name.upper()}"] = _toolkit_text(value)
    environment = {
        k: rewrite(str(v), root) for k, v in (arguments.get("Environment") or {}).items()
    }
    env = _base_env(job, {**extra_env, **environment})

    command = [sys.executable, program, *user_args]
    distributed = str(framework.get("sagemaker_torch_distributed_enabled", "")).lower() == "true"
    if distributed and gpus > 1:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={gpus}", program, *user_args,
        ]  # fmt: skip

    profiler = _profiler_settings(arguments)
    monitor_factory = _system_monitor(job, profiler) if profiler else None

    max_seconds = (arguments.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    started_clock = time.monotonic()
    done = run_process(
        command,
        cwd=code_dir,
        env=env,
        log_path=job.log_path,
        on_line=_echo_metrics(job),
        max_seconds=max_seconds,
        monitor_factory=monitor_factory,
    )
    seconds = int(round(time.monotonic() - started_clock))
    if checkpoint_uri and any(checkpoint_dir.iterdir()):
        job.store.upload(checkpoint_dir, checkpoint_uri)
    if done.exit_code != 0:
        raise JobFailed(_failure("AlgorithmError", program, done, job.log_path))
    _discard(opt_ml / "input" / "data")

    output_path = (arguments.get("OutputDataConfig") or {}).get("S3OutputPath")
    if not output_path:
        raise JobFailed("ClientError: OutputDataConfig.S3OutputPath is missing")
    job_output = join_uri(output_path, job.name, "output")
    model_tarball = root / "model.tar.gz"
    _tar_folder(model_dir, model_tarball)
    model_uri = join_uri(job_output, "model.tar.gz")
    job.store.put_file(model_uri, model_tarball)
    if any(output_data_dir.iterdir()):
        output_tarball = root / "output.tar.gz"
        _tar_folder(output_data_dir, output_tarball)
        job.store.put_file(join_uri(job_output, "output.tar.gz"), output_tarball)
    ended = now()
    properties = {
        **arguments,
        "TrainingJobName": job.name,
        "TrainingJobArn": arn("training-job", job.name),
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": model_uri},
        "FinalMetricDataList": final_metrics(
            job.log_path,
            (arguments.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or [],
            ended,
        ),
        "CreationTime": started,
        "TrainingStartTime": started,
        "TrainingEndTime": ended,
        "LastModifiedTime": ended,
        "TrainingTimeInSeconds": seconds,
        "BillableTimeInSeconds": seconds,
    }
    result = TrainingResult(properties, job.log_path)
    if hook and tensors_dir.is_dir() and hook.get("S3OutputPath"):
        job.store.upload(tensors_dir, join_uri(hook["S3OutputPath"], job.name, "debug-output"))
    rules = arguments.get("DebugRuleConfigurations") or []
    if rules:
        result.rule_evaluations = _evaluate_rules(job, rules, tensors_dir)
        properties["DebugRuleEvaluationStatuses"] = [
            {**status, "LastModifiedTime": ended} for status in result.rule_evaluations
        ]
    if profiler:
        result.profiler_report = _profiler_report(job, done.monitor)
        report_uri = (arguments.get("ProfilerConfig") or {}).get("S3OutputPath")
        files = (result.profiler_report or {}).get("files") or {}
        if report_uri:
            # Where SageMaker's ProfilerReport rule leaves its report.
            destination = join_uri(
                report_uri, job.name, "rule-output", "ProfilerReport", "profiler-output"
            )
            for path in files.values():
                if path and Path(path).is_file():
                    job.store.put_file(join_uri(destination, Path(path).name), Path(path))
        properties["ProfilerRuleEvaluationStatuses"] = [
            {
                "RuleConfigurationName": rule.get("RuleConfigurationName"),
                "RuleEvaluationStatus": "NoIssuesFound" if result.profiler_report else "Error",
                "LastModifiedTime": ended,
            }
            for rule in arguments.get("ProfilerRuleConfigurations") or []
        ]
    return result


def _unpack_code(store: Store, submit: str, code_dir: Path) -> None:
    if not submit.startswith("s3://"):
        raise JobFailed(f"ClientError: sagemaker_submit_directory {submit!r} is not an s3:// URI")
    try:
        tarball = store.path(submit)
    except StoreError as err:
        raise JobFailed(f"ClientError: sagemaker_submit_directory: {err}") from None
    if not tarball.is_file():
        raise JobFailed(f"ClientError: the code tarball {submit} is not in the store ({tarball})")
    code_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(code_dir, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise JobFailed(f"ClientError: cannot unpack {submit}: {err}") from None


def _profiler_settings(arguments: dict) -> int | None:
    """The system monitor interval (ms) when the job asks for the profiler report."""
    config = arguments.get("ProfilerConfig") or {}
    if not arguments.get("ProfilerRuleConfigurations") or config.get("DisableProfiler"):
        return None
    return int(config.get("ProfilingIntervalInMilliseconds") or 500)


def _system_monitor(job: Job, interval_ms: int):
    """A factory of the profiler's monitor, or None (a warning) when it cannot be loaded."""
    try:
        from pipeline.local.profiler import SystemMonitor
    except ImportError as err:
        log.warning("[%s] no system profiler: %s", job.label, err)
        return None
    return lambda pid: SystemMonitor(pid, interval_ms)


def _evaluate_rules(job: Job, rules: list[dict], tensors_dir: Path) -> list[dict]:
    """Every rule's status. As on SageMaker, a rule that cannot be evaluated is reported
    with status Error and never fails the training job it watches."""
    log.info("[%s] evaluating %d Debugger rule(s)", job.label, len(rules))
    try:
        from pipeline.local.debugger import evaluate_rules

        statuses = evaluate_rules(rules, tensors_dir)
    except Exception as err:
        log.warning("[%s] Debugger rules not evaluated: %s: %s", job.label, type(err).__name__, err)
        statuses = [
            {
                "RuleConfigurationName": rule.get("RuleConfigurationName"),
                "RuleEvaluationStatus": "Error",
                "StatusDetails": f"{type(err).__name__}: {err}",
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
