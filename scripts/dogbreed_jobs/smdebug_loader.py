"""smdebug for the Debugger hook: the interpreter's own if it has one, else the bundled wheel.

AWS's PyTorch 2.x training images ship no smdebug, and a requirements.txt in the code bundle
makes SageMaker's training toolkit run `pip install -r requirements.txt` from PyPI at the start
of every job: that fails with network isolation or in a VPC without PyPI, and smdebug's pins
downgraded the image's protobuf and numpy. So the bundle carries smdebug's pure-Python wheel
and no requirements file, and only a run that saves tensors (TrainModel, whose DebugHookConfig
makes SageMaker write debughookconfig.json, or a local `--debugger-local-dir` run) unpacks it:
pip installs it from the file alone (no index, no dependencies) into a folder of this process,
which goes on sys.path. The interpreter's site-packages, the image's or a user's venv, is never
written to.

smdebug 1.0.34 is its last release and predates protobuf 4 and numpy 2.3. What its import needs
from a newer image is arranged here, for this process only (protobuf's implementation, the
pyinstrument it imports); debug_hook.py adapts what the hook writes (numpy).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import shutil
import subprocess  # nosec B404 - pip on the bundled wheel, fixed arguments, no shell
import sys
import tempfile
import types
from pathlib import Path

from dogbreed_jobs.data import SetupError

WHEEL = Path(__file__).with_name("smdebug-1.0.34-py2.py3-none-any.whl")
# Module -> distribution: what `import smdebug.pytorch` imports beyond the standard library
# and torch (smdebug.core.hook loads its profiler, S3 and pandas-based analysis modules). The
# wheel is installed without dependencies, and smdebug never declared pandas, psutil or
# requests; AWS's PyTorch training images ship all of them.
IMPORTED_DEPENDENCIES = {
    "boto3": "boto3",
    "google.protobuf": "protobuf",
    "numpy": "numpy",
    "packaging": "packaging",
    "pandas": "pandas",
    "psutil": "psutil",
    "requests": "requests",
}
PROTOBUF_IMPLEMENTATION = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"


@functools.cache
def load() -> types.ModuleType:
    """smdebug.pytorch, importable and working in this interpreter; SetupError if it cannot be.

    Prints one line when it had to do anything (install the wheel, adapt the import).
    """
    done = []
    if "smdebug" not in sys.modules and importlib.util.find_spec("smdebug") is None:
        done.append(f"installed from the bundled {WHEEL.name} into {_install_wheel()}")
    missing = [dist for module, dist in IMPORTED_DEPENDENCIES.items() if not _importable(module)]
    if missing:
        raise SetupError(
            f"smdebug needs {', '.join(missing)}, missing from this Python ({sys.executable}): "
            "use an image that has them (AWS's PyTorch training images do)"
        )
    done += _use_pure_python_protobuf()
    with _absent_pyinstrument_refused() as note:
        try:
            import smdebug.pytorch
        except Exception as err:  # noqa: BLE001 - any failure here is one setup error
            raise SetupError(f"smdebug cannot be imported: {type(err).__name__}: {err}") from err
    done += note
    if done:
        from importlib.metadata import version

        print(f"smdebug {version('smdebug')}: {'; '.join(done)}", flush=True)
    return smdebug.pytorch


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a dotted name whose parent package is missing
        return False


def _install_wheel() -> Path:
    if not WHEEL.is_file():
        raise SetupError(f"smdebug is not installed and the code bundle lacks {WHEEL.name}")
    target = Path(tempfile.mkdtemp(prefix="smdebug-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    # No pip configuration of the machine or the user (an index, constraints, a cache) may
    # change what an offline install of one file does.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps"]
    command += ["--no-cache-dir", "--disable-pip-version-check", "--quiet"]
    command += ["--target", str(target), str(WHEEL)]
    # This interpreter's pip on a file of the bundle: no shell, nothing from the outside.
    proc = subprocess.run(  # nosec B603
        command, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()[-2000:]
        raise SetupError(f"installing the bundled {WHEEL.name} failed: {output}")
    # Appended: the folder holds smdebug alone, which nothing earlier on the path provides.
    sys.path.append(str(target))
    importlib.invalidate_caches()
    return target


def _use_pure_python_protobuf() -> list[str]:
    """smdebug's *_pb2.py modules are protoc output from before protobuf 4, whose C (upb)
    implementation refuses them at import ("Descriptors cannot be created directly"); the
    pure-Python implementation still loads them (verified with protobuf 6.33.6). protobuf reads
    the choice from the environment once, when google.protobuf.internal.api_implementation is
    first imported, so it is set for that import and then restored: child processes keep the
    default, and this process's other protobuf users get the slower implementation too."""
    import google.protobuf  # its __init__ only sets __version__: no implementation chosen yet

    version = google.protobuf.__version__
    if int(version.split(".")[0]) < 4:
        return []
    chosen = "google.protobuf.internal.api_implementation" in sys.modules
    saved = os.environ.get(PROTOBUF_IMPLEMENTATION)
    os.environ[PROTOBUF_IMPLEMENTATION] = "python"
    try:
        from google.protobuf.internal import api_implementation
    finally:
        if saved is None:
            del os.environ[PROTOBUF_IMPLEMENTATION]
        else:
            os.environ[PROTOBUF_IMPLEMENTATION] = saved
    if api_implementation.Type() == "python":
        return [] if chosen else [f"protobuf {version} in its pure-Python implementation"]
    raise SetupError(
        f"smdebug needs protobuf's pure-Python implementation, but protobuf {version} was "
        f"imported with its {api_implementation.Type()} implementation before it: set "
        f"{PROTOBUF_IMPLEMENTATION}=python"
    )


@contextlib.contextmanager
def _absent_pyinstrument_refused():
    """Let smdebug import without pyinstrument, which the images lack.

    smdebug.profiler.python_profiler imports pyinstrument at module level (on the path of
    every hook), but uses it only when a ProfilerConfig asks for Python profiling with
    pyinstrument, which the pipeline's never does (system metrics only). pyinstrument 3.4.2,
    smdebug's pin, needs pyinstrument_cext, published as source only: the compile on every job
    this bundle avoids. So while smdebug imports, an absent pyinstrument is a module whose
    classes refuse to be used, saying why; it leaves sys.modules afterwards, so no other code of
    the process takes it for pyinstrument. Yields the note to log (a list, empty when pyinstrument
    is there).
    """
    try:
        import pyinstrument  # noqa: F401
    except ImportError as err:
        reason = f"pyinstrument is not installed ({err}): smdebug's pyinstrument profiler is off"
    else:
        yield []
        return

    class Unavailable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(reason)

    module, renderers = types.ModuleType("pyinstrument"), types.ModuleType("renderers")
    module.Profiler, module.renderers, renderers.JSONRenderer = Unavailable, renderers, Unavailable
    sys.modules.update({"pyinstrument": module, "pyinstrument.renderers": renderers})
    try:
        yield ["pyinstrument absent, its profiler refused"]
    finally:
        for name, value in (("pyinstrument", module), ("pyinstrument.renderers", renderers)):
            if sys.modules.get(name) is value:
                del sys.modules[name]
