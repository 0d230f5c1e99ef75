"""Finding 16b: "a fee plan accepts `percent: true` and stores `1E+1` unnormalised"."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tender.services.fee_plans import parse_percent
from tests.support.money import admin, plan_rule

pytestmark = pytest.mark.integration


def path(merchant: Any) -> str:
    return f"/admin/v1/merchants/{merchant.merchant.id}/fee_plan"


async def put_raw(api: Any, settings: Any, merchant: Any, percent_json: str) -> Any:
    """PUT a one-rule plan whose percent is `percent_json` as written in the body (numbers stay as sent)."""
    body = '{"rules": [{"payment_method": "*", "funding": "*", "percent": %s, "delay_days": 2, "starts": "paid"}]}'
    return await api.put(
        path(merchant),
        content=(body % percent_json).encode(),
        headers={**admin(settings), "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    ("percent_json", "shown"),
    [
        ('"10"', "10"),
        ("10", "10"),
        ("1E1", "10"),
        ("10.0", "10"),
        ('"2.5"', "2.5"),
        ('"2.50"', "2.5"),
        ("2.5", "2.5"),
        ("2.9", "2.9"),  # a JSON number read as the decimal written, not as the float nearest to it
        ("0.0125", "0.0125"),
        ('"100"', "100"),
        ("0", "0"),
        ("-0.0", "0"),
    ],
)
async def test_a_percent_is_stored_and_shown_normalised(
    api: Any, settings: Any, merchant: Any, percent_json: str, shown: str
) -> None:
    r = await put_raw(api, settings, merchant, percent_json)
    assert r.status_code == 200, r.text
    assert r.json()["rules"][0]["percent"] == shown
    assert (await api.get(path(merchant), headers=admin(settings))).json()["rules"][0]["percent"] == shown


@pytest.mark.parametrize(
    "percent_json",
    [
        "true",
        "false",
        "null",
        '"1E+1"',  # a string is a plain decimal
        '"-1"',
        "-1",
        "101",
        '"100.0001"',
        "2.12345",  # 5 decimal places
        '"2.12345"',
        "2.00000000000000000000001",  # more places than a double holds: not silently read as 2
        '"\\u00b2"',  # superscript two: not an ASCII digit
        '"\\u0663"',  # Arabic-Indic three
        '"1_0"',
        '" 2"',
        '""',
        "[2]",
        '{"value": 2}',
    ],
)
async def test_a_bad_percent_is_a_400_naming_it_and_stores_nothing(
    api: Any, settings: Any, merchant: Any, percent_json: str
) -> None:
    good = await api.put(path(merchant), json={"rules": [plan_rule("3", 1)]}, headers=admin(settings))
    assert good.status_code == 200
    r = await put_raw(api, settings, merchant, percent_json)
    assert r.status_code == 400, (percent_json, r.text)
    error = r.json()["error"]
    assert error["param"] == "rules[0].percent", error
    assert (await api.get(path(merchant), headers=admin(settings))).json() == good.json()


@pytest.mark.parametrize("percent_json", ["1" + "0" * 400, "1e400", "NaN", "Infinity"])
async def test_a_number_json_cannot_hold_is_a_400(api: Any, settings: Any, merchant: Any, percent_json: str) -> None:
    r = await put_raw(api, settings, merchant, percent_json)
    assert r.status_code == 400, (percent_json, r.text)
    assert r.json()["error"]["param"] in ("body", "rules[0].percent")


def test_parse_percent_never_takes_a_float_or_a_boolean() -> None:
    for bad in (True, False, 2.5, float("nan"), None):
        with pytest.raises(ValueError, match="percent"):
            parse_percent(bad)
    assert parse_percent(Decimal("2.9")) == Decimal("2.9")
    assert parse_percent(7) == 7
