"""The system monitor of a local training job and its ProfilerReport summary.

On SageMaker the ProfilerConfig makes the job's instance record system metrics every
`ProfilingIntervalInMilliseconds` and the ProfilerReport rule turns them into a report. Here
`SystemMonitor(pid, interval_ms)` samples the job's process tree from a background thread of
the runner while the job runs, and `write_report(monitor, job_dir, log_path)` writes
`<job_dir>/profiler-report.json` and a short `profiler-report.md`, and returns the JSON's
content.

What a sample holds
    - CPU: the CPU time the job's process tree used since the previous sample, as a
      percentage of that wall time (100 = one core busy), summed over the training process,
      its DataLoader workers and any torchrun ranks (psutil, children recursively). A child
      that starts and exits between two samples is missed; the first sample is a baseline.
    - Memory: the resident set of the job's main process, the sum over its tree (pages that
      forked workers share with it count once per process, so the sum overstates what the
      tree needs; exact proportional figures from /proc/*/smaps cost tens of milliseconds a
      process a sample) and the machine's memory in use.
    - GPU: utilisation and memory of every GPU from `nvidia-smi`, when there is one. The
      whole device is measured, as SageMaker's system metrics do; torch.cuda in the runner
      would only see the runner's own allocations. Without nvidia-smi the report says "no GPU".

Timings from the training log
    The machine-readable lines of dogbreed_jobs/contract.py, never train.py's human progress lines:
    EPOCH (per finished epoch: its time and training throughput), STEP (the steps an epoch
    has, known before it finishes) and TIMING (per epoch: step-time percentiles and the time
    spent waiting for the DataLoader), each read when present.
"""

from __future__ import annotations

import math
import shutil
import subprocess  # nosec B404 - only nvidia-smi with fixed arguments, never a shell
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from dogbreed_jobs import contract
from pipeline.local.records import write_json, write_text

__all__ = ["SystemMonitor", "parse_training_log", "write_report"]

REPORT_JSON = "profiler-report.json"
REPORT_MARKDOWN = "profiler-report.md"
NVIDIA_SMI_TIMEOUT = 5.0
_NVIDIA_SMI_QUERY = "index,utilization.gpu,memory.used,memory.total"
# Observations, in the spirit of ProfilerReport's rules (their default thresholds).
LOW_GPU_P95 = 70.0
CPU_BOTTLENECK_CPU = 90.0
CPU_BOTTLENECK_GPU = 50.0
DATA_WAIT_SHARE = 0.2


# ------------------------------------------------------------------------------- sampling


def _query_gpus() -> tuple[list[dict] | None, str]:
    """(per-GPU readings, note); None when there is no usable GPU tool."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None, "no GPU: nvidia-smi not found"
    try:
        # nvidia-smi found on PATH by shutil.which, fixed arguments, no shell.
        done = subprocess.run(  # nosec B603
            [tool, f"--query-gpu={_NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"no GPU readings: nvidia-smi failed ({err})"
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        return (
            None,
            f"no GPU readings: nvidia-smi exited {done.returncode} ({' '.join(message[:1])})",
        )
    gpus = []
    for line in done.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4:
            continue
        try:
            index, utilisation, used, total = int(fields[0]), *map(float, fields[1:])
        except ValueError:
            continue  # "[N/A]" on GPUs that do not report a field
        gpus.append(
            {
                "index": index,
                "utilization_percent": utilisation,
                "memory_used_bytes": int(used * 2**20),
                "memory_total_bytes": int(total * 2**20),
            }
        )
    if not gpus:
        return None, "no GPU: nvidia-smi lists none"
    return gpus, f"{len(gpus)} GPU(s) read with nvidia-smi"


class SystemMonitor:
    """Samples a process tree's CPU, memory and the GPUs every `interval_ms` while in use.

    `with SystemMonitor(proc.pid, 500) as monitor: proc.wait()`; then `monitor.samples`.
    """

    def __init__(self, pid: int, interval_ms: int):
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")
        self.pid = pid
        self.interval_ms = int(interval_ms)
        self.samples: list[dict] = []
        self.gpu_note = "no GPU readings taken"
        self.started_at: str | None = None
        self.wall_seconds = 0.0
        self.cpu_seconds = 0.0
        self.logical_cores = psutil.cpu_count(logical=True) or 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._previous_time: float | None = None
        self._previous_wall: float | None = None
        # CPU seconds per process seen, keyed by (pid, create_time) so a reused pid is new.
        self._cpu_seen: dict[tuple[int, float], float] = {}
        self._gpu_enabled = True
        self.error: str | None = None

    def __enter__(self) -> SystemMonitor:
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._started = time.monotonic()
        psutil.cpu_percent(interval=None)  # primes the machine-wide counter
        self._thread = threading.Thread(target=self._run, name=f"monitor-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.wall_seconds = time.monotonic() - self._started
        return False

    def _run(self) -> None:
        interval = self.interval_ms / 1000.0
        while True:
            try:
                alive = self._sample()
            except Exception as err:  # a broken sampler must not break the job it watches
                self.error = f"sampling stopped: {type(err).__name__}: {err}"
                return
            if not alive or self._stop.wait(interval):
                return

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        try:
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return [root]

    def _sample(self) -> bool:
        """Records one sample; False once the watched process is gone."""
        now, wall = time.monotonic(), time.time()
        try:
            tree = self._tree()
        except psutil.NoSuchProcess:
            return False
        cpu_delta, main_rss, tree_rss, counted = 0.0, 0, 0, 0
        for process in tree:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
                    rss = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            tree_rss += rss
            if process.pid == self.pid:
                main_rss = rss
            counted += 1
            used = times.user + times.system
            previous = self._cpu_seen.get(key)
            if previous is None:
                # A process born since the last sample used all its CPU time in this interval;
                # the ones there at the first sample are the baseline.
                born_since = self._previous_wall is not None and key[1] >= self._previous_wall
                previous = 0.0 if born_since else used
            cpu_delta += max(0.0, used - previous)
            self._cpu_seen[key] = used
        machine = psutil.virtual_memory()
        sample = {
            "seconds": round(now - self._started, 3),
            "processes": counted,
            "cpu_percent": None,
            "rss_bytes": main_rss,
            "tree_rss_bytes": tree_rss,
            "system_cpu_percent": psutil.cpu_percent(interval=None),
            "system_memory_percent": machine.percent,
            "system_memory_used_bytes": machine.used,
            "gpus": [],
        }
        if self._previous_time is not None:
            elapsed = max(now - self._previous_time, 1e-6)
            sample["cpu_percent"] = round(100.0 * cpu_delta / elapsed, 1)
            self.cpu_seconds += cpu_delta
        if self._gpu_enabled:
            gpus, self.gpu_note = _query_gpus()
            if gpus is None:
                # No tool or a broken driver does not mend itself mid-job.
                self._gpu_enabled = False
            else:
                sample["gpus"] = gpus
        self._previous_time, self._previous_wall = now, wall
        self.samples.append(sample)
        return True


# --------------------------------------------------------------------------------- report


def _stats(values: list[float]) -> dict | None:
    clean = sorted(v for v in values if v is not None and math.isfinite(v))
    if not clean:
        return None

    return {
        "p50": round(contract.percentile(clean, 0.50), 2),
        "p95": round(contract.percentile(clean, 0.95), 2),
        "max": round(clean[-1], 2),
        "mean": round(sum(clean) / len(clean), 2),
    }


# What an epoch's entry takes from its EPOCH and STEP lines.
_EPOCH_ENTRY = ("steps", "seconds", "train_images_per_second")


def parse_training_log(log_path: Path) -> dict:
    """Per-epoch steps, times and throughput, and the TIMING lines, from train.py's log."""
    lines = contract
    epochs: dict[int, dict] = {}
    timings: list[dict] = []
    log_path = Path(log_path)
    if not log_path.is_file():
        return {"epochs": [], "timings": [], "note": f"no training log at {log_path}"}
    with log_path.open(errors="replace") as stream:
        for raw in stream:
            line = raw.strip()
            if timing := lines.parse_timing(line):
                timings.append(timing)
            elif progress := lines.parse_epoch(line) or lines.parse_step(line):
                entry = epochs.setdefault(progress["epoch"], {"epoch": progress["epoch"]})
                entry.update({k: v for k, v in progress.items() if k in _EPOCH_ENTRY})
    return {"epochs": [epochs[e] for e in sorted(epochs)], "timings": timings, "note": ""}


def _training_section(log: dict) -> dict:
    epochs = [e for e in log["epochs"] if "seconds" in e]
    section = {
        "epochs": log["epochs"],
        "epoch_seconds": _stats([e["seconds"] for e in epochs]),
        "train_images_per_second": _stats([e["train_images_per_second"] for e in epochs]),
        "step_seconds": None,
        "data_wait": None,
        "note": log["note"],
    }
    timings = log["timings"]
    if not timings:
        section["note"] = section["note"] or (
            "Step time and DataLoader wait unavailable: the training log has no TIMING lines"
        )
        return section
    section["step_seconds"] = {
        "p50": _stats([t.get("step_seconds_p50") for t in timings]),
        "p95": _stats([t.get("step_seconds_p95") for t in timings]),
        "max": max((t.get("step_seconds_max", 0.0) for t in timings), default=None),
    }
    wait = sum(t.get("data_wait_seconds", 0.0) for t in timings)
    compute = sum(t.get("compute_seconds", 0.0) for t in timings)
    if wait + compute > 0:
        section["data_wait"] = {
            "seconds": round(wait, 3),
            "compute_seconds": round(compute, 3),
            "share": round(wait / (wait + compute), 4),
        }
    return section


def _observations(cpu: dict | None, gpus: list[dict], cores: int, training: dict) -> list[str]:
    notes = []
    if not gpus:
        notes.append("Trained on the CPU: no GPU was visible to the job.")
    for gpu in gpus:
        utilisation = gpu["utilization_percent"]
        if utilisation and utilisation["p95"] < LOW_GPU_P95:
            notes.append(
                f"LowGPUUtilization: GPU {gpu['index']} p95 utilisation {utilisation['p95']}% "
                f"< {LOW_GPU_P95:g}%: a larger batch, more DataLoader workers or a smaller "
                "instance would use it better."
            )
        if (
            cpu
            and utilisation
            and utilisation["p50"] < CPU_BOTTLENECK_GPU
            and cpu["p95"] > CPU_BOTTLENECK_CPU * cores
        ):
            notes.append(
                f"CPUBottleneck: the CPUs were {cpu['p95'] / cores:.0f}% busy (p95) while GPU "
                f"{gpu['index']} idled at {utilisation['p50']}% (p50): decoding and augmenting "
                "images limits training; train.py's decode=device moves it onto the GPU."
            )
    wait = training.get("data_wait")
    if wait and wait["share"] > DATA_WAIT_SHARE:
        notes.append(
            f"Dataloader: {wait['share']:.0%} of the training time was spent waiting for "
            "batches: more workers, pre-resized images (MaxImageSide) or decoding on the GPU "
            "(train.py's decode=device) would help."
        )
    return notes


def _markdown(report: dict) -> str:
    cpu, memory, gpu, training = report["cpu"], report["memory"], report["gpu"], report["training"]
    lines = [
        "# Profiler report (local run)",
        "",
        f"Process {report['pid']}, sampled every {report['interval_ms']} ms "
        f"({report['samples']} samples) over {report['wall_seconds']:.1f} s.",
        "",
        "| metric | p50 | p95 | max |",
        "| --- | --- | --- | --- |",
    ]

    def row(name: str, stats: dict | None, unit: str = "") -> None:
        if stats:
            lines.append(
                f"| {name} | {stats['p50']}{unit} | {stats['p95']}{unit} | {stats['max']}{unit} |"
            )
        else:
            lines.append(f"| {name} | n/a | n/a | n/a |")

    row(f"job CPU (100% = one of {cpu['logical_cores']} cores)", cpu["utilization_percent"], "%")
    row("machine CPU", cpu["system_utilization_percent"], "%")
    for device in gpu["devices"]:
        row(f"GPU {device['index']} utilisation", device["utilization_percent"], "%")
    row("epoch time", training["epoch_seconds"], " s")
    row("train images/s", training["train_images_per_second"])
    if training["step_seconds"]:
        row("step time p50", training["step_seconds"]["p50"], " s")
    lines += [
        "",
        f"- Peak resident memory: {memory['peak_rss_bytes'] / 2**20:.0f} MiB in the job's main "
        f"process, {memory['peak_tree_rss_bytes'] / 2**20:.0f} MiB summed over its processes "
        f"(shared pages counted in each); the machine at most "
        f"{memory['peak_system_percent']}% used.",
        f"- CPU time used by the job: {cpu['cpu_seconds']:.1f} s "
        f"(up to {cpu['max_processes']} processes).",
        f"- {gpu['note'][0].upper()}{gpu['note'][1:]}.",
    ]
    for device in gpu["devices"]:
        lines.append(
            f"- GPU {device['index']} peak memory {device['peak_memory_used_bytes'] / 2**20:.0f} "
            f"of {device['memory_total_bytes'] / 2**20:.0f} MiB."
        )
    if training["data_wait"]:
        wait = training["data_wait"]
        lines.append(
            f"- DataLoader wait: {wait['seconds']:.1f} s, {wait['share']:.0%} of training time."
        )
    if training["note"]:
        lines.append(f"- {training['note']}.")
    if report["observations"]:
        lines += ["", "## Observations", ""]
        lines += [f"- {note}" for note in report["observations"]]
    return "\n".join(lines) + "\n"


def write_report(monitor: SystemMonitor, job_dir: Path, log_path: Path) -> dict:
    """Writes profiler-report.json and profiler-report.md into `job_dir`; the JSON's content."""
    job_dir = Path(job_dir)
    samples = monitor.samples
    gpu_indices = sorted({g["index"] for s in samples for g in s["gpus"]})
    devices = []
    for index in gpu_indices:
        readings = [g for s in samples for g in s["gpus"] if g["index"] == index]
        devices.append(
            {
                "index": index,
                "utilization_percent": _stats([g["utilization_percent"] for g in readings]),
                "peak_memory_used_bytes": max(g["memory_used_bytes"] for g in readings),
                "memory_total_bytes": readings[-1]["memory_total_bytes"],
            }
        )
    cpu = {
        "logical_cores": monitor.logical_cores,
        "utilization_percent": _stats([s["cpu_percent"] for s in samples]),
        "system_utilization_percent": _stats([s["system_cpu_percent"] for s in samples]),
        "cpu_seconds": round(monitor.cpu_seconds, 3),
        "max_processes": max((s["processes"] for s in samples), default=0),
    }
    training = _training_section(parse_training_log(log_path))
    report = {
        "rule": "ProfilerReport",
        "pid": monitor.pid,
        "started_at": monitor.started_at,
        "interval_ms": monitor.interval_ms,
        "wall_seconds": round(monitor.wall_seconds, 3),
        "samples": len(samples),
        "monitor_error": monitor.error,
        "cpu": cpu,
        "memory": {
            "peak_rss_bytes": max((s["rss_bytes"] for s in samples), default=0),
            "peak_tree_rss_bytes": max((s["tree_rss_bytes"] for s in samples), default=0),
            "peak_system_percent": max((s["system_memory_percent"] for s in samples), default=0),
        },
        "gpu": {"available": bool(devices), "note": monitor.gpu_note, "devices": devices},
        "training": training,
        "observations": _observations(
            cpu["utilization_percent"], devices, monitor.logical_cores, training
        ),
        "files": {
            "json": str(job_dir / REPORT_JSON),
            "markdown": str(job_dir / REPORT_MARKDOWN),
        },
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    write_json(job_dir / REPORT_JSON, report, sort_keys=False)
    write_text(job_dir / REPORT_MARKDOWN, _markdown(report))
    return report
