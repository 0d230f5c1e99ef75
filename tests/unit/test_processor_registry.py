"""The processors come from Settings (processors/registry.py): the simulator is on while its URL is set, new
payments go to TENDER_DEFAULT_PROCESSOR, and a default that is unknown or off stops the start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tender.config import Settings
from tender.processors import registry
from tender.processors.simulator import SimulatorProcessor
from tender.processors.stripe import StripeProcessor


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, simulator_notify_secret="test-secret", **values)  # type: ignore[arg-type]


def test_the_simulator_is_on_by_default_and_is_the_default_processor(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert (s.default_processor, s.simulator_url) == ("simulator", "http://127.0.0.1:8001")
    built = registry.build(s)
    assert list(built) == ["simulator"]
    assert isinstance(built["simulator"], SimulatorProcessor)
    assert built["simulator"].name == "simulator"


def test_an_empty_simulator_url_turns_it_off_and_a_default_that_is_off_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENDER_SIMULATOR_URL", "")
    s = settings(tmp_path)
    assert s.simulator_url is None
    with pytest.raises(registry.ProcessorNotConfigured, match="'simulator' is off"):
        registry.build(s)


def test_an_unknown_default_processor_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENDER_DEFAULT_PROCESSOR", "acme")
    with pytest.raises(registry.ProcessorNotConfigured, match=r"'acme' is unknown; processors on: simulator"):
        registry.build(settings(tmp_path))


def test_stripe_is_off_without_its_key_and_on_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "stripe" not in registry.build(settings(tmp_path))  # `make run` needs no Stripe setting
    monkeypatch.setenv("TENDER_DEFAULT_PROCESSOR", "stripe")
    with pytest.raises(registry.ProcessorNotConfigured, match=r"'stripe' is off \(its settings are missing\)"):
        registry.build(settings(tmp_path))
    monkeypatch.setenv("TENDER_STRIPE_SECRET_KEY", "sk_test_x")
    monkeypatch.setenv("TENDER_STRIPE_API_BASE", "http://127.0.0.1:9/")
    built = registry.build(settings(tmp_path))
    assert sorted(built) == ["simulator", "stripe"]
    assert isinstance(built["stripe"], StripeProcessor) and built["stripe"].name == "stripe"


def test_a_new_processor_is_one_more_factory(tmp_path: Path) -> None:
    """What adding Stripe takes: its factory under its name; the default may then be it."""
    factories = {**registry.FACTORIES, "acquirer2": lambda s: SimulatorProcessor("http://127.0.0.1:9")}
    built = registry.build(settings(tmp_path, default_processor="acquirer2"), factories)
    assert sorted(built) == ["acquirer2", "simulator"]
    off = {**registry.FACTORIES, "acquirer2": lambda s: None}
    with pytest.raises(registry.ProcessorNotConfigured, match="'acquirer2' is off"):
        registry.build(settings(tmp_path, default_processor="acquirer2"), off)


def test_retention_settings_keep_the_api_promise(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert (s.idempotency_key_hours, s.webhook_attempt_days, s.worker_action_lookup_seconds) == (48, 30, 60.0)
    with pytest.raises(ValidationError, match="idempotency_key_hours"):
        settings(tmp_path, idempotency_key_hours=23)  # API.md: keys are kept at least 24 hours


def test_stripe_refuses_to_start_when_stripe_python_would_print_request_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STRIPE_LOG=debug makes stripe-python print every request body (card numbers too) to stderr."""
    monkeypatch.setenv("TENDER_STRIPE_SECRET_KEY", "sk_test_x")
    monkeypatch.setenv("STRIPE_LOG", "debug")
    with pytest.raises(ValueError, match="STRIPE_LOG=debug"):
        registry.build(settings(tmp_path))
    monkeypatch.setenv("STRIPE_LOG", "info")  # method, URL and status only
    assert "stripe" in registry.build(settings(tmp_path))
