"""What the Ray Serve DLC's entrypoint does on `serve`, for a venv that mirrors the image.

scripts/docker/ray/sagemaker_entrypoint.sh puts /opt/ml/model and /opt/ml/model/code on
PYTHONPATH (the caller sets it, so Ray's workers inherit it), starts Ray (`ray start --head
--include-dashboard=False`) and Serve (`serve start --http-port=8000`), then runs `serve run
/opt/ml/model/config.yaml`. Here Ray is started in this process with the CPUs the caller
allows, no dashboard and a private temporary folder, Serve on the caller's HTTP port, and
then Ray Serve's own `serve run` command runs on the model's config.yaml (it keeps the Ray
instance this process started). SIGINT or SIGTERM stops Serve, as `serve run` does on Ctrl-C,
and then the Ray instance with everything it started.

    python ray_entrypoint.py MODEL_DIR --http-port 8000 --num-cpus 2 --temp-dir /tmp/rayXYZ
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--temp-dir", default=None)
    args = parser.parse_args(argv)

    import ray
    from ray import serve
    from ray.serve.scripts import cli

    # `serve run` shuts Serve down on KeyboardInterrupt; a parent process stops with SIGTERM.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        namespace="serve",
        _temp_dir=args.temp_dir,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": args.http_port})
    config = os.path.join(args.model_dir, "config.yaml")
    try:
        cli.main(["run", config], prog_name="serve", standalone_mode=False)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
