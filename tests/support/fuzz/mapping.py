"""Where the fuzzer's values meet the real objects: pools of real ids (and a few valid values) per parameter,
which the schema's hooks mix into what Schemathesis generates. Generated values stay in the mix, so the
not-found and malformed paths are fuzzed too; the real ones let operations get past their look-up.

Operations that spoil what they touch get their own objects: DELETE an endpoint, cancel or capture a
payment, expire a session, roll a merchant's keys. Everything else shares the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from schemathesis import BaseSchema, HookContext

from tender.api.prefer import wait_seconds
from tests.support.fuzz.world import CREDIT, World, card

Pools = Mapping[str, tuple[Any, ...]]
PoolsFor = Callable[[World, str, str], Pools]

# A `Prefer: wait=N` on a payment nobody works on (no worker runs here) holds the answer for N seconds.
MAX_FUZZ_WAIT = 1

# Values that have broken services like this one (Tender too: issue 11). A generator left to itself almost
# never draws a NUL, a Unicode digit or a number past 64 bits, so many cases get one of these in one place
# (a path or query parameter, or any leaf of the body, however deep): see `mix`.
HOSTILE: tuple[str | int, ...] = (
    "\x00",
    "pay_\x00",
    "a\x00b",
    "²/30",  # a superscript digit: str.isdigit() says yes, int() may not
    "١٢٣",  # Arabic-Indic digits
    "\uff11\uff12",  # full-width digits
    "\u202e",  # right-to-left override
    "'; SELECT 1; --",
    "%",
    "\\",
    "x" * 5000,
    0,
    -1,
    2**31,
    2**63,
    -(2**63) - 1,
    10**30,
)


def path_pools(world: World, method: str, path: str) -> Pools:
    if path.endswith("/capture"):
        payments = world.capturable
    elif path.endswith("/cancel"):
        payments = world.cancelable
    elif path.endswith("/events"):
        payments = world.final_payments  # an open payment's stream lasts until it ends
    else:
        payments = world.all_payments()
    return {
        "payment_id": payments,
        "refund_id": world.refunds,
        "session_id": world.expirable_sessions if path.endswith("/expire") else world.sessions,
        "event_id": world.events,
        "endpoint_id": world.deletable_endpoints if method.upper() == "DELETE" else world.endpoints,
        "dead_letter_id": world.dead_letters,
        # Only the fee plan is harmless to the fuzzing merchant; anything else (rolling keys) gets the spare.
        "merchant_id": (world.merchant_id,) if path.endswith("/fee_plan") else (world.spare_merchant_id,),
        "payable_id": world.payables,
        "settlement_id": world.settlements,
        "transaction_id": world.balance_transactions,
        "processor": ("simulator",),
        "customer_id": world.deletable_customers if method.upper() == "DELETE" else world.customers,
        "payment_method_id": world.payment_methods,
        "clock_id": world.test_clocks,
        "subscription_id": world.cancelable_subscriptions if path.endswith("/cancel") else world.subscriptions,
        "invoice_id": world.invoices,
    }


_LISTS = {
    "/v1/payments": "all_payments",
    "/v1/refunds": "refunds",
    "/v1/checkout/sessions": "sessions",
    "/v1/events": "events",
    "/v1/webhook_endpoints": "endpoints",
    "/v1/payables": "payables",
    "/v1/settlements": "settlements",
    "/v1/balance_transactions": "balance_transactions",
    "/admin/v1/dead_letters": "dead_letters",
    "/v1/customers": "customers",
    "/v1/test_clocks": "test_clocks",
    "/v1/subscriptions": "subscriptions",
    "/v1/invoices": "invoices",
}


def query_pools(world: World, method: str, path: str) -> Pools:
    pool = getattr(world, _LISTS[path], ()) if path in _LISTS else ()
    return {
        "starting_after": pool() if callable(pool) else pool,
        "limit": (1, 100),
        "payment": world.all_payments(),
        "source": world.all_payments() + world.refunds,
        "object": world.all_payments() + world.refunds + world.sessions,
        "event": world.events,
        "subscription": world.subscriptions + world.cancelable_subscriptions,
        "customer": world.customers,
    }


def body_pools(world: World, method: str, path: str) -> Pools:
    return {
        "payment": world.refundable,
        "endpoint": world.endpoints,
        "payment_method": (card(CREDIT),),
        "currency": ("BRL", "USD", "JPY"),
        "amount": (100, 2500),
        "url": ("https://receiver.example/fuzz",),
        "success_url": ("https://shop.example/thanks",),
        "cancel_url": ("https://shop.example/cart",),
        "return_url": ("https://shop.example/back",),
        "events": (["*"], ["payment.succeeded", "refund.succeeded"]),
        "customer": world.customers,
        "test_clock": world.test_clocks,
        "frozen_time": ("2027-02-28T12:00:00Z", "2030-01-01T00:00:00Z", 1801396800),
    }


def valid_core(world: World, method: str, path: str) -> dict[str, Any] | None:
    """The fields a create (or a fee plan) needs to succeed. Laid over a generated body they leave its optional fields
    (descriptions, metadata, references) to the fuzzer, and those then reach the service and the database
    instead of stopping at the first invalid required field."""
    if method.upper() == "PUT" and path.endswith("/fee_plan"):
        catch_all = {"payment_method": "*", "funding": "*", "percent": "2.5", "delay_days": 1, "starts": "paid"}
        return {"rules": [catch_all]}
    if method.upper() == "PUT" and path.endswith("/routing"):  # the spare merchant's (path_pools), to the default
        return {"rules": [{"currency": "BRL", "amount_min": 0, "processors": ["simulator"]}]}
    if method.upper() == "PUT" and path.endswith("/billing_settings"):  # the spare merchant's (path_pools)
        return {"dunning_days": [1, 3, 5], "on_final_failure": "unpaid"}
    if method.upper() != "POST":
        return None
    # With the optional text fields filled in too, so that a hostile leaf often lands in one that is stored.
    cores: dict[str, dict[str, Any]] = {
        "/v1/payments": {
            "amount": 2500,
            "currency": "BRL",
            "payment_method": card(CREDIT),
            "description": "Fuzz order",
            "customer": "cus-fuzz",
            "metadata": {"order": "42"},
            "return_url": "https://shop.example/back",
        },
        "/v1/refunds": {"payment": world.refundable[-1], "amount": 1, "metadata": {"ticket": "7"}},
        "/v1/checkout/sessions": {
            "amount": 1500,
            "currency": "BRL",
            "success_url": "https://shop.example/thanks",
            "cancel_url": "https://shop.example/cart",
            "reference": "fuzz-core",  # one open session per reference: the same one again answers 200
            "description": "Fuzz cart",
        },
        "/v1/webhook_endpoints": {"url": "https://receiver.example/fuzz", "events": ["*"], "description": "fuzz"},
        # The spare merchant's (path_pools): a stored account is never used for calls by the fuzzing merchant.
        "/admin/v1/merchants/{merchant_id}/processor_accounts": {
            "processor": "stripe",
            "secret_key": "sk_test_fuzz_0000",
            "webhook_secret": "whsec_fuzz",
        },
        "/v1/customers": {
            "email": "fuzz@shop.example",
            "name": "Fuzz",
            "metadata": {"crm": "7"},
            "test_clock": world.test_clocks[0],
        },
        "/v1/customers/{customer_id}": {"name": "Fuzz again", "metadata": {"crm": "", "tier": "gold"}},
        "/v1/payment_methods": {
            "type": "card",
            "card": {"number": CREDIT, "exp_month": 12, "exp_year": 2034, "cvc": "123", "holder_name": "Fuzz"},
            "customer": world.customers[0],
        },
        "/v1/payment_methods/{payment_method_id}/attach": {"customer": world.customers[0]},
        "/v1/test_clocks": {"frozen_time": "2027-01-31T12:00:00Z", "name": "fuzz"},
        # Far ahead, and the same each time: the first advance moves the clock, the rest are no-ops.
        "/v1/test_clocks/{clock_id}/advance": {"frozen_time": "2030-01-01T00:00:00Z"},
        "/v1/subscriptions": {
            "customer": world.customers[0],
            "payment_method": world.payment_methods[0],
            "amount": 1000,
            "currency": "BRL",
            "interval": "month",
            "metadata": {"plan": "fuzz"},
        },
        "/v1/subscriptions/{subscription_id}": {"amount": 1200, "metadata": {"plan": "fuzz+"}},
        "/v1/subscriptions/{subscription_id}/cancel": {"at_period_end": True},
    }
    return cores.get(path)


def _leaves(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Paths to the strings and numbers inside a JSON value."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [path] if isinstance(value, str | int) and not isinstance(value, bool) else []


def _replace(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[int(head)] = _replace(copy[int(head)], rest, new)
    return copy


def one_hostile(values: Any) -> st.SearchStrategy[Any]:
    """`values` with one of its leaves replaced by a hostile value."""
    leaves = _leaves(values)
    if not leaves:
        return st.just(values)
    return st.tuples(st.sampled_from(leaves), st.sampled_from(HOSTILE)).map(lambda c: _replace(values, *c))


def mix(values: Any, pools: Pools, core: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """`values` with each key that has a pool either kept or replaced by one of the pool's values, and a
    third of the time one hostile leaf. With a `core` (a create), as often: the core laid over `values`,
    or the core alone; and half of all cases get a hostile leaf, since a hostile value inside an otherwise
    valid create is what reaches the service and the database."""
    if not isinstance(values, dict):
        return st.just(values)
    parts = {
        key: st.sampled_from([value, *pools[key]]) if pools.get(key) else st.just(value)
        for key, value in values.items()
    }
    mixed: st.SearchStrategy[Any] = st.fixed_dictionaries(parts)
    if core is None:
        return st.one_of(mixed, mixed, mixed.flatmap(one_hostile))  # one_of picks a branch uniformly
    creates = st.one_of(mixed, st.just({**values, **core}), st.just(core))
    return st.one_of(creates, creates.flatmap(one_hostile))


def headers(values: Any) -> st.SearchStrategy[Any]:
    """A `Prefer: wait` capped, and the generated `Idempotency-Key` either kept or left out: the generated
    ones are mostly invalid (empty, NUL), which would stop every POST at the header check."""
    if not isinstance(values, dict):
        return st.just(values)
    if isinstance(values.get("Prefer"), str):
        wait = wait_seconds([values["Prefer"]])
        if wait is not None and wait > MAX_FUZZ_WAIT:
            values = {**values, "Prefer": f"wait={MAX_FUZZ_WAIT}"}
    if "Idempotency-Key" in values:
        return st.sampled_from([values, {k: v for k, v in values.items() if k != "Idempotency-Key"}])
    return st.just(values)


@dataclass
class _Current:
    """The session's world: the schema is built at import (pytest collects its operations), the world only
    once the `world` fixture has run, before the first case is generated."""

    world: World | None = None


CURRENT = _Current()


def _pools(ctx: HookContext, which: PoolsFor) -> Pools:
    if CURRENT.world is None or ctx.operation is None:
        return {}
    return which(CURRENT.world, ctx.operation.method, ctx.operation.path)


def install_hooks(schema: BaseSchema) -> None:
    @schema.hook
    def flatmap_path_parameters(ctx: HookContext, values: dict[str, Any]) -> st.SearchStrategy[Any]:
        return mix(values, _pools(ctx, path_pools))

    @schema.hook
    def flatmap_query(ctx: HookContext, values: dict[str, Any]) -> st.SearchStrategy[Any]:
        return mix(values, _pools(ctx, query_pools))

    @schema.hook
    def flatmap_body(ctx: HookContext, body: Any) -> st.SearchStrategy[Any]:
        world, op = CURRENT.world, ctx.operation
        core = valid_core(world, op.method, op.path) if world is not None and op is not None else None
        return mix(body, _pools(ctx, body_pools), core)

    @schema.hook
    def flatmap_headers(ctx: HookContext, values: Any) -> st.SearchStrategy[Any]:
        return headers(values)
