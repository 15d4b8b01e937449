"""Same input, same config, three ways of running: the output digests must be equal, and no input may be lost.

Runs ``unishard run`` on N distinct generated photos (``--smoke-models``, texts not required) in one process, with
worker processes (``--direct_running_mode=multi_processing``), and on Beam's portable runner (``python -m
pipeline.job_service`` plus a worker pool, both started here on loopback), then prints, as JSON lines, each run's
wall time, ledger rows, kept samples and the SHA-256 over every output file except those that record where and how
the run happened (``_run/run.json``, ``_run/config.json``, ``report/``).

    python benchmarks/bench_determinism.py --images 4000 --workers 2

Digests compare within one invocation only: each invocation generates its inputs in a new folder, and the sources
(input paths) are part of the output (ledger, sample JSON, sidecars, the config hash in ``_run/state.json``).
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RUN_SPECIFIC = ("_run/run.json", "_run/config.json", "report/", "_lock")
POOL_ADDRESS = re.compile(r"Started worker pool servicer at port: (\S+)")


def emit(kind: str, **values) -> None:
    print(json.dumps({"kind": kind, **values}), flush=True)


def make_images(folder: Path, count: int) -> None:
    """``count`` distinct smooth photos of 320x240 with noise (about 20 KB each)."""
    folder.mkdir(parents=True)
    for index in range(count):
        rng = np.random.default_rng(index)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((320, 240), Image.Resampling.BICUBIC)
        pixels = np.asarray(image).astype(np.int16) + rng.normal(0, 6, (240, 320, 3)).astype(np.int16)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img{index:05d}.jpg", quality=90)


def digest(output: Path) -> str:
    hasher = hashlib.sha256()
    for path in sorted(output.rglob("*")):
        name = str(path.relative_to(output))
        if path.is_file() and not name.startswith(RUN_SPECIFIC):
            hasher.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()


def run(name: str, inputs: Path, output: Path, extra: list[str], env: dict) -> None:
    command = [sys.executable, "-m", "pipeline", "run", "--input", str(inputs), "--output", str(output)]
    command += ["--smoke-models", "--set", "text.required=false", "--set", "caption.required=false"]
    command += ["--no-progress", "--no-report", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        emit("run", mode=name, failed=True, stderr=done.stderr[-3000:])
        return
    rows = pq.read_table(output / "ledger").num_rows
    kept = sum(pq.read_metadata(path).num_rows for path in (output / "shards" / "pairs").rglob("*.parquet"))
    emit("run", mode=name, wall_s=round(seconds, 1), ledger_rows=rows, kept=kept, digest=digest(output))


def _wait(pattern, log: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern(log)
        if found:
            return found
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting on {log}:\n{log.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", default="in_process,multi_processing,portable")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the outputs (to compare files)")
    args = parser.parse_args()
    os.chdir(ROOT)
    # The worker pool starts SDK workers with the first `python` on PATH: this environment's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": path}
    with tempfile.TemporaryDirectory(prefix="unishard-determinism-") as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp)
        make_images(work / "inputs", args.images)
        modes = args.modes.split(",")
        if "in_process" in modes:
            run("in_process", work / "inputs", work / "in_process", [], env)
        if "multi_processing" in modes:
            workers = ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]
            run("multi_processing", work / "inputs", work / "multi_processing", workers, env)
        if "portable" in modes:
            port_file, service_log, pool_log = work / "port", work / "job_service.log", work / "pool.log"
            with open(service_log, "w") as s_log, open(pool_log, "w") as p_log:
                service = subprocess.Popen(
                    [sys.executable, "-m", "pipeline.job_service", "--port=0", f"--port_file={port_file}"],
                    stdout=s_log, stderr=subprocess.STDOUT, env=env,
                )  # fmt: skip
                pool = subprocess.Popen(
                    [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port=0"],
                    stdout=p_log, stderr=subprocess.STDOUT, env=env,
                )  # fmt: skip
                try:
                    port = _wait(lambda _: port_file.exists() and port_file.read_text().strip(), port_file)
                    address = _wait(lambda log: (m := POOL_ADDRESS.search(log.read_text())) and m.group(1), pool_log)
                    portable = ["--profile", "portable", f"--job_endpoint=localhost:{port}"]
                    portable += [f"--environment_config={address}"]
                    run("portable", work / "inputs", work / "portable", portable, env)
                finally:
                    service.terminate()
                    pool.terminate()


if __name__ == "__main__":
    main()
