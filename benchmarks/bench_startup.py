"""Benchmark the fixed cost of a run: a whole default pipeline on a handful of images, with and without
``pipeline.dofn_specs`` (Beam's state-and-timer check answered once per DoFn class).

Each round runs the real pipeline (``pipeline.launch.run``, the function ``unishard run`` calls, on the in-process
FnApiRunner, ``clip.smoke``) on ``--images`` generated 64x48 JPEGs twice, alternating which goes first: once with
Beam's own ``userstate.get_dofn_specs`` and once with the per-class cache. A first, untimed run pays the imports and
model loads. Reported: the median seconds of each, their ratio (the yardstick is the run without the cache, in the
same process and round), and how many times Beam's function ran in each.

    python benchmarks/bench_startup.py --rounds 3
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from apache_beam.transforms import userstate
    from PIL import Image

    import pipeline.launch as launch
    from pipeline.dofn_specs import per_class
    from schemas.config.unishard import UnishardConfig

    beams = getattr(userstate.get_dofn_specs, "__wrapped__", userstate.get_dofn_specs)
    calls = {"beam": 0}

    def counted(dofn):
        calls["beam"] += 1
        return beams(dofn)

    seconds: dict[str, list[float]] = {"beam": [], "per_class": []}
    counts: dict[str, list[int]] = {"beam": [], "per_class": []}
    with tempfile.TemporaryDirectory() as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        rng = random.Random(0)
        for index in range(args.images):
            pixels = bytes(rng.getrandbits(8) for _ in range(64 * 48 * 3))
            Image.frombytes("RGB", (64, 48), pixels).save(inputs / f"{index}.jpg", quality=90)

        def once(name: str, number: int) -> None:
            data = {
                "ingest": {"inputs": [{"path": str(inputs)}]},
                "run": {"output": str(Path(folder) / f"out-{name}-{number}")},
                "clip": {"smoke": True},
                "text": {"required": False},
                "caption": {"required": False},
            }
            # a fresh cache each run, as a new process starts with
            userstate.get_dofn_specs = counted if name == "beam" else per_class(counted)
            calls["beam"] = 0
            started = time.perf_counter()
            launch.run(UnishardConfig.model_validate(data), ["--runner=DirectRunner"])
            seconds[name].append(time.perf_counter() - started)
            counts[name].append(calls["beam"])

        # resolve_options installs the cache; keep the variant under test in its place on every run
        launch.resolve_options = _keeping(launch.resolve_options, userstate)
        once("beam", -1)
        seconds["beam"].clear()
        counts["beam"].clear()
        for number in range(args.rounds):
            order = ("beam", "per_class") if number % 2 == 0 else ("per_class", "beam")
            for name in order:
                once(name, number)
    beam_s, cached_s = statistics.median(seconds["beam"]), statistics.median(seconds["per_class"])
    print(
        json.dumps(
            {
                "images": args.images,
                "rounds": args.rounds,
                "run_s_beam": round(beam_s, 2),
                "run_s_per_class": round(cached_s, 2),
                "ratio_per_class_to_beam": round(cached_s / beam_s, 3),
                "beam_calls_beam": statistics.median(counts["beam"]),
                "beam_calls_per_class": statistics.median(counts["per_class"]),
            },
            indent=1,
        )
    )


def _keeping(resolve_options, userstate):
    """``resolve_options`` that leaves the variant under test in place of the cache it installs."""

    def resolve(options):
        chosen = userstate.get_dofn_specs
        runner = resolve_options(options)
        userstate.get_dofn_specs = chosen
        return runner

    return resolve


if __name__ == "__main__":
    main()
