"""Finding 10: "`tender settle --as-of` accepts a future date and pays merchants early: refuse it unless `--force`"."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tender.errors import InvalidRequest
from tender.services.settlement import business_today, check_as_of
from tests.support.money import CREDIT, capture, payables_of, settlements_of
from tests.support.processes import tender

# Kiritimati is UTC+14 and Pago Pago UTC-11: Kiritimati's date is always a day or two ahead of Pago Pago's.
AHEAD, BEHIND = ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Pacific/Pago_Pago")


def test_a_future_date_in_the_business_time_zone_is_refused() -> None:
    ahead_today = datetime.now(AHEAD).date()
    with pytest.raises(InvalidRequest) as caught:
        check_as_of(ahead_today, BEHIND)
    assert caught.value.param == "as_of" and caught.value.code == "settlement_date_in_future"
    check_as_of(ahead_today, AHEAD)  # today where the business is: allowed
    check_as_of(ahead_today - timedelta(days=3), BEHIND)  # the past: allowed
    check_as_of(ahead_today, BEHIND, force=True)  # the operator insists


@pytest.mark.integration
async def test_tender_settle_refuses_a_future_date_unless_forced(
    api: Any, container: Any, merchant: Any, tender_env: dict[str, str]
) -> None:
    mid = merchant.merchant.id
    await capture(api, container, merchant, (CREDIT, 2500, "BRL"))
    [payable] = await payables_of(container, mid)
    due = payable["payment_date"]
    assert payable["status"] == "waiting_funds" and due > business_today(ZoneInfo("UTC"))

    refused = await tender(tender_env, "settle", "--as-of", due.isoformat())
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"--as-of {due.isoformat()} is after today" in refused.stderr and "--force" in refused.stderr
    assert await settlements_of(container, mid) == []
    assert [p["status"] for p in await payables_of(container, mid)] == ["waiting_funds"]

    forced = await tender(tender_env, "settle", "--as-of", due.isoformat(), "--force")
    assert forced.returncode == 0, forced.stderr
    assert [p["status"] for p in await payables_of(container, mid)] == ["paid"]
    assert len(await settlements_of(container, mid)) == 1


@pytest.mark.integration
async def test_future_means_future_in_the_business_time_zone(tender_env: dict[str, str]) -> None:
    ahead_today = datetime.now(AHEAD).date().isoformat()
    refused = await tender(
        {**tender_env, "TENDER_BUSINESS_TIMEZONE": "Pacific/Pago_Pago"}, "settle", "--as-of", ahead_today
    )
    assert refused.returncode == 2 and "Pacific/Pago_Pago" in refused.stderr, refused.stderr
