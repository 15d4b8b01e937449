"""Beam's check for user state and timers, answered once per DoFn class instead of once per call.

Beam 2.77 asks ``userstate.get_dofn_specs`` whether a ParDo uses state or timers when the pipeline is built, when it
is translated for the runner, and again for every operation of every bundle processor a worker creates. Each call
builds an ``inspect.signature`` for every method of the DoFn, about 1 ms. A unishard run holds some 340 ParDos and
made 2,802 calls: a run of six images took 10.0 s with them and 7.8 s with 45 (``python
benchmarks/bench_startup.py``).

The answer comes from the defaults of the DoFn's methods (``DoFn.StateParam``, ``DoFn.TimerParam``), which are
fixed by its class. An instance that holds bound methods of its own (``beam.FlatMap(obj.method)``) can answer
differently from its class, so such instances are asked every time. ``cache_dofn_specs`` installs this in the
process that calls it: the launcher, the local job service and the local worker processes (``pipeline.sdk_worker``)
call it. Output bytes do not change: only how often Beam inspects the same class.
"""

import functools
import threading
import types
from collections.abc import Callable
from typing import Any

_LOCK = threading.Lock()


def cache_dofn_specs() -> None:
    """Make ``apache_beam.transforms.userstate.get_dofn_specs`` answer from a per-class cache (idempotent)."""
    from apache_beam.transforms import userstate

    with _LOCK:
        if not getattr(userstate.get_dofn_specs, "cached_per_class", False):
            userstate.get_dofn_specs = per_class(userstate.get_dofn_specs)


def per_class(specs_of: Callable[[Any], tuple[set, set]]) -> Callable[[Any], tuple[set, set]]:
    answers: dict[type, tuple[frozenset, frozenset]] = {}

    @functools.wraps(specs_of)  # keeps Beam's function as __wrapped__
    def get_dofn_specs(dofn: Any) -> tuple[set, set]:
        if not class_decides(dofn):
            return specs_of(dofn)
        answer = answers.get(type(dofn))
        if answer is None:
            state, timers = specs_of(dofn)  # raises for a malformed DoFn, every time: nothing is cached then
            answer = answers.setdefault(type(dofn), (frozenset(state), frozenset(timers)))
        return set(answer[0]), set(answer[1])

    get_dofn_specs.cached_per_class = True
    return get_dofn_specs


def class_decides(dofn: Any) -> bool:
    """Whether ``dofn``'s methods all come from its class: no bound method is stored on the instance."""
    attributes = getattr(dofn, "__dict__", None)
    return attributes is not None and not any(isinstance(value, types.MethodType) for value in attributes.values())
