"""The per-class answer to Beam's state-and-timer check is Beam's own answer, and instances that differ are asked."""

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer

from pipeline.dofn_specs import cache_dofn_specs, class_decides, per_class

BAG = BagStateSpec("seen", beam.coders.StrUtf8Coder())
TIMER = TimerSpec("flush", beam.TimeDomain.WATERMARK)
SEEN, FLUSH = beam.DoFn.StateParam(BAG), beam.DoFn.TimerParam(TIMER)


class _Plain(beam.DoFn):
    def process(self, element):
        yield element


class _Stateful(beam.DoFn):
    def process(self, element, seen=SEEN, flush=FLUSH):
        seen.add(element[1])
        yield element

    @on_timer(TIMER)
    def _flush(self, seen=SEEN):
        yield from seen.read()


class _Twice(beam.DoFn):
    def process(self, element, first=SEEN, second=SEEN):
        yield element


class _Holder:
    def plain(self, element):
        return [element]

    def stateful(self, element, seen=SEEN):
        return [element]


_BEAM = getattr(userstate.get_dofn_specs, "__wrapped__", userstate.get_dofn_specs)  # Beam's own function


@pytest.fixture
def counted():
    """``per_class`` around Beam's function, and the list of DoFns Beam itself was asked about."""
    asked = []

    def beams_answer(dofn):
        asked.append(dofn)
        return _BEAM(dofn)

    return per_class(beams_answer), asked


def test_every_answer_equals_beams_and_a_class_is_inspected_once(counted):
    specs, asked = counted
    for dofn in (_Plain(), _Plain(), _Stateful(), _Stateful(), beam.Map(len).dofn, beam.Map(abs).dofn):
        assert specs(dofn) == _BEAM(dofn)
    assert specs(_Stateful()) == ({BAG}, {TIMER})  # the specs declared above, not whatever Beam says
    assert specs(_Plain()) == (set(), set())
    assert [type(dofn).__name__ for dofn in asked] == ["_Plain", "_Stateful", "CallableWrapperDoFn"]


def test_an_instance_holding_its_own_bound_method_is_asked_every_time(counted):
    specs, asked = counted
    holder = _Holder()
    plain, stateful = beam.FlatMap(holder.plain).dofn, beam.FlatMap(holder.stateful).dofn
    assert not class_decides(plain) and class_decides(beam.Map(len).dofn)
    assert specs(stateful) == ({BAG}, set()) == _BEAM(stateful)
    assert specs(plain) == (set(), set()) == _BEAM(plain)
    assert specs(stateful) == ({BAG}, set())
    assert len(asked) == 3


def test_a_malformed_dofn_raises_every_time_and_a_caller_cannot_change_the_cached_answer(counted):
    specs, _ = counted
    for _ in range(2):
        with pytest.raises(ValueError, match="duplicate"):
            specs(_Twice())
    state, _ = specs(_Stateful())
    state.clear()
    assert specs(_Stateful()) == ({BAG}, {TIMER})


def test_installing_twice_wraps_beam_once_and_a_pipeline_still_runs(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", _BEAM)
    cache_dofn_specs()
    installed = userstate.get_dofn_specs
    cache_dofn_specs()
    assert userstate.get_dofn_specs is installed and installed.cached_per_class
    with beam.Pipeline() as pipeline:
        counts = (
            pipeline
            | beam.Create([("a", "x"), ("a", "y"), ("b", "z")])
            | beam.ParDo(_Stateful())
            | beam.combiners.Count.PerKey()
        )
        assert_that(counts, equal_to([("a", 2), ("b", 1)]))
