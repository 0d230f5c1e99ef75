"""Failover's pure decisions (domain/failover.py): where an authorization that charged nothing goes next, and the
extra simulator processors of TENDER_SIMULATOR_INSTANCES (config.py, processors/registry.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from tender.config import Settings, simulator_instances
from tender.domain.failover import Gate, Hold, Move, Stay, after_refusal, before_sending, candidates
from tender.processors import registry
from tender.processors.simulator import SimulatorProcessor

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
ON = {"a", "b", "c"}
DOWN = Gate(False, NOW + timedelta(seconds=30))
PAUSED = Gate(False)


def test_candidates_follow_the_route_after_the_current_one_and_wrap_round() -> None:
    assert candidates(["a", "b", "c"], "a") == ["b", "c"]
    assert candidates(["a", "b", "c"], "b") == ["c", "a"]
    assert candidates(["a", "b", "a"], "a") == ["b"]  # listed twice: tried once
    assert candidates(["a", "b"], "x") == ["a", "b"]  # not on its route: the whole route
    assert candidates(None, "a") == [] and candidates([], "a") == []  # no route: nowhere else


def test_before_sending_stays_while_the_processor_is_usable() -> None:
    assert before_sending(["a", "b"], "a", {}, on=ON) == Stay()
    assert before_sending(["a", "b"], "a", {"b": DOWN}, on=ON) == Stay()


def test_before_sending_skips_an_open_a_paused_and_an_off_processor() -> None:
    assert before_sending(["a", "b"], "a", {"a": DOWN}, on=ON) == Move("b", wrapped=False)
    assert before_sending(["a", "b", "c"], "a", {"a": PAUSED, "b": DOWN}, on=ON) == Move("c", wrapped=False)
    assert before_sending(["a", "b"], "a", {}, on={"b"}) == Move("b", wrapped=False)  # a is not on
    assert before_sending(["a", "b"], "b", {"b": DOWN}, on=ON) == Move("a", wrapped=True)


def test_before_sending_holds_until_the_earliest_half_open_when_none_can_take_it() -> None:
    later = Gate(False, NOW + timedelta(seconds=90))
    assert before_sending(["a", "b"], "a", {"a": later, "b": DOWN}, on=ON) == Hold(DOWN.retry_at)
    assert before_sending(["a", "b"], "a", {"a": PAUSED, "b": PAUSED}, on=ON) == Hold(None)  # paused: poll
    assert before_sending(None, "a", {"a": DOWN}, on=ON) == Hold(DOWN.retry_at)  # forced: waits for its own
    assert before_sending(["a", "z"], "a", {"a": PAUSED}, on=ON) == Hold(None)  # z is not on: not a way out


def test_after_a_refusal_the_next_usable_processor_or_none() -> None:
    assert after_refusal(["a", "b"], "a", {}, on=ON) == Move("b", wrapped=False)
    assert after_refusal(["a", "b", "c"], "a", {"b": DOWN}, on=ON) == Move("c", wrapped=False)
    assert after_refusal(["a", "b"], "b", {}, on=ON) == Move("a", wrapped=True)  # gone round: caller backs off
    assert after_refusal(["a", "b"], "a", {"b": PAUSED}, on=ON) is None  # retry at a
    assert after_refusal(["a"], "a", {}, on=ON) is None
    assert after_refusal(None, "a", {}, on=ON) is None


def test_simulator_instances_parse_and_refuse_bad_values() -> None:
    assert simulator_instances("") == {}
    assert simulator_instances(" sim_b=http://127.0.0.1:8101 , acq2=https://acq.example ") == {
        "sim_b": "http://127.0.0.1:8101",
        "acq2": "https://acq.example",
    }
    for bad in ("Sim=http://x", "sim", "1sim=http://x", "sim=ftp://x", "a=http://x,a=http://y", "s-b=http://x"):
        with pytest.raises(ValueError, match="entry"):
            simulator_instances(bad)
    with pytest.raises(ValueError, match="entry 1"):
        simulator_instances("x" * 33 + "=http://x")


def test_extra_simulators_are_processors_of_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENDER_SIMULATOR_INSTANCES", "sim_b=http://127.0.0.1:8101,sim_c=http://127.0.0.1:8102")
    built = registry.build(Settings(data_dir=tmp_path, simulator_notify_secret="s"))
    assert list(built) == ["simulator", "sim_b", "sim_c"]
    assert isinstance(built["sim_b"], SimulatorProcessor) and built["sim_b"].name == "sim_b"
    assert built["simulator"].name == "simulator"


def test_a_bad_or_clashing_instance_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENDER_SIMULATOR_INSTANCES", "Sim B=http://127.0.0.1:8101")
    with pytest.raises(ValidationError, match="name=url"):
        Settings(data_dir=tmp_path)
    monkeypatch.setenv("TENDER_SIMULATOR_INSTANCES", "stripe=http://127.0.0.1:8101")
    with pytest.raises(registry.ProcessorNotConfigured, match="stripe, a processor kind's name"):
        registry.build(Settings(data_dir=tmp_path, simulator_notify_secret="s"))
