"""A merchant's billing settings over the admin API: the dunning days and what follows the last failed try,
validated (400 naming the field, nothing written), copied by subscriptions created afterwards (test_dunning.py
uses them end to end). Real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _admin(container: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {container.settings.admin_key.get_secret_value()}"}


async def test_the_defaults_then_a_change(api: Any, container: Any, merchant: Any) -> None:
    url = f"/admin/v1/merchants/{merchant.merchant.id}/billing_settings"
    r = await api.get(url, headers=_admin(container))
    assert r.status_code == 200, r.text
    assert (r.json()["dunning_days"], r.json()["on_final_failure"]) == ([1, 3, 5], "unpaid")
    r = await api.put(url, json={"dunning_days": [2, 7], "on_final_failure": "cancel"}, headers=_admin(container))
    assert r.status_code == 200, r.text
    again = (await api.get(url, headers=_admin(container))).json()
    assert (again["object"], again["dunning_days"], again["on_final_failure"]) == ("billing_settings", [2, 7], "cancel")
    r = await api.put(url, json={"dunning_days": [], "on_final_failure": "unpaid"}, headers=_admin(container))
    assert r.json()["dunning_days"] == []  # give up after the first failure


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"dunning_days": [3, 1], "on_final_failure": "unpaid"}, "dunning_days"),
        ({"dunning_days": [0], "on_final_failure": "unpaid"}, "dunning_days"),
        ({"dunning_days": [61], "on_final_failure": "unpaid"}, "dunning_days"),
        ({"dunning_days": list(range(1, 10)), "on_final_failure": "unpaid"}, "dunning_days"),
        ({"dunning_days": ["1"], "on_final_failure": "unpaid"}, "dunning_days"),
        ({"dunning_days": [1], "on_final_failure": "refund"}, "on_final_failure"),
        ({"dunning_days": [1]}, "on_final_failure"),
        ({"dunning_days": [1], "on_final_failure": "unpaid", "grace": 3}, "grace"),
    ],
)
async def test_bad_settings_are_a_400_naming_the_field_and_change_nothing(
    api: Any, container: Any, merchant: Any, body: dict[str, Any], param: str
) -> None:
    url = f"/admin/v1/merchants/{merchant.merchant.id}/billing_settings"
    before = (await api.get(url, headers=_admin(container))).json()
    r = await api.put(url, json=body, headers=_admin(container))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"].startswith(param), r.text
    assert (await api.get(url, headers=_admin(container))).json() == before


async def test_unknown_merchant_and_no_admin_key(api: Any, container: Any, merchant: Any) -> None:
    body = {"dunning_days": [1], "on_final_failure": "unpaid"}
    r = await api.put("/admin/v1/merchants/mer_nope/billing_settings", json=body, headers=_admin(container))
    assert r.status_code == 404
    r = await api.get("/admin/v1/merchants/mer_nope/billing_settings", headers=_admin(container))
    assert r.status_code == 404
    merchant_key = {"Authorization": f"Bearer {merchant.secret_key}"}
    r = await api.put(f"/admin/v1/merchants/{merchant.merchant.id}/billing_settings", json=body, headers=merchant_key)
    assert r.status_code in (401, 403)
