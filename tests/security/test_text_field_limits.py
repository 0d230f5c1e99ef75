"""Finding 7 (fields): "a 3 MB `customer` string was accepted, stored and echoed into every event": every text field
of every input has a documented maximum length (in the OpenAPI document), and one character more is a 400
naming the field that writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tender.api.app import create_app
from tests.support.api import auth, card_payment

pytestmark = pytest.mark.integration


def unbounded_strings(doc: dict[str, Any]) -> list[str]:
    """Every string a client may send (query parameters, JSON bodies) without maxLength, enum or const."""
    found: list[str] = []

    def walk(schema: Any, where: str, defs: dict[str, Any]) -> None:
        if not isinstance(schema, dict):
            return
        defs = {**defs, **schema.get("$defs", {})}
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            target = defs.get(name) or doc.get("components", {}).get("schemas", {}).get(name)
            assert target is not None, f"{where}: unresolved {schema['$ref']}"
            if where.count(f"<{name}>") < 2:  # a recursive schema is walked twice at most
                walk(target, f"{where}<{name}>", defs)
            return
        if schema.get("type") == "string" and not {"maxLength", "enum", "const"} & schema.keys():
            found.append(where)
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{name}", defs)
        for key in ("items", "additionalProperties"):
            walk(schema.get(key), f"{where}[{key}]", defs)
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub, where, defs)

    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for parameter in op.get("parameters", []):
                if parameter["in"] == "query":
                    walk(parameter["schema"], f"{method.upper()} {path} ?{parameter['name']}", {})
            content = op.get("requestBody", {}).get("content", {})
            for media in content.values():
                walk(media.get("schema"), f"{method.upper()} {path} body", {})
    return found


async def test_every_text_input_has_a_documented_maximum_length(container: Any) -> None:
    doc = create_app(container).openapi()
    assert unbounded_strings(doc) == []
    # The finding's own field, and its limit, are in the document.
    schema = doc["paths"]["/v1/payments"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["customer"]["anyOf"][0]["maxLength"] == 255


def _payment(**fields: Any) -> dict[str, Any]:
    return card_payment(**fields)


def _card(**fields: Any) -> dict[str, Any]:
    body = card_payment()
    body["payment_method"]["card"].update(fields)
    return body


URL = "https://shop.example/"

# (name, body of a field `n` characters long, param, the limit)
PAYMENT_FIELDS: list[tuple[str, Callable[[int], dict[str, Any]], str, int]] = [
    ("customer", lambda n: _payment(customer="c" * n), "customer", 255),
    ("reference", lambda n: _payment(reference="r" * n), "reference", 255),
    ("description", lambda n: _payment(description="d" * n), "description", 1000),
    ("return_url", lambda n: _payment(return_url=URL + "u" * (n - len(URL))), "return_url", 2048),
    ("metadata keys", lambda n: _payment(metadata={f"k{i}": "v" for i in range(n)}), "metadata", 50),
    ("metadata key", lambda n: _payment(metadata={"k" * n: "v"}), "metadata", 40),
    ("metadata value", lambda n: _payment(metadata={"key": "v" * n}), "metadata.key", 500),
    ("holder_name", lambda n: _card(holder_name="h" * n), "payment_method.card.holder_name", 200),
    ("card number", lambda n: _card(number="4242 4242 4242 4242".ljust(n)), "payment_method.card.number", 32),
    ("currency", lambda n: _payment(currency="BRL".ljust(n, "L")), "currency", 3),
]


async def payments_of(api: Any, merchant: Any) -> list[str]:
    r = await api.get("/v1/payments", params={"limit": 100}, headers=auth(merchant.secret_key))
    return [p["id"] for p in r.json()["data"]]


@pytest.mark.parametrize(("name", "body", "param", "limit"), PAYMENT_FIELDS, ids=[f[0] for f in PAYMENT_FIELDS])
async def test_a_payment_field_at_its_limit_is_taken_and_one_more_is_a_400(
    api: Any, merchant: Any, name: str, body: Callable[[int], dict[str, Any]], param: str, limit: int
) -> None:
    h = auth(merchant.secret_key)
    r = await api.post("/v1/payments", json=body(limit), headers=h)
    assert r.status_code == 202, r.text
    before = await payments_of(api, merchant)
    r = await api.post("/v1/payments", json=body(limit + 1), headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert await payments_of(api, merchant) == before


@pytest.mark.parametrize(("field", "param"), [("cvc", "payment_method.card.cvc")])
async def test_a_cvc_longer_than_4_is_a_400(api: Any, merchant: Any, field: str, param: str) -> None:
    r = await api.post("/v1/payments", json=_card(**{field: "1" * 5000}), headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def _session(**fields: Any) -> dict[str, Any]:
    body = {"amount": 100, "currency": "BRL", "reference": "limits", "success_url": URL + "ok", "cancel_url": URL}
    return {**body, **fields}


OTHER_FIELDS: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/v1/checkout/sessions", _session(reference="r" * 256), "reference"),
    ("POST", "/v1/checkout/sessions", _session(currency="BRLL"), "currency"),
    ("POST", "/v1/checkout/sessions", _session(success_url=URL + "s" * 2048), "success_url"),
    ("POST", "/v1/checkout/sessions", _session(cancel_url=URL + "c" * 2048), "cancel_url"),
    ("POST", "/v1/checkout/sessions", _session(description="d" * 501), "description"),
    ("POST", "/v1/checkout/sessions", _session(payment_method_types=["card"] * 11), "payment_method_types"),
    ("POST", "/v1/checkout/sessions", _session(payment_method_types=["c" * 33]), "payment_method_types[0]"),
    ("POST", "/v1/refunds", {"payment": "pay_" + "x" * 61}, "payment"),
    ("POST", "/v1/refunds", {"payment": "pay_x", "reason": "r" * 501}, "reason"),
    ("POST", "/v1/refunds", {"payment": "pay_x", "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
    ("POST", "/v1/webhook_endpoints", {"url": URL + "w" * 2048}, "url"),
    ("POST", "/v1/webhook_endpoints", {"url": URL, "description": "d" * 501}, "description"),
    ("POST", "/v1/webhook_endpoints", {"url": URL, "events": ["payment.succeeded"] * 65}, "events"),
    ("POST", "/v1/webhook_endpoints", {"url": URL, "events": ["e" * 65]}, "events[0]"),
    ("PATCH", "/v1/webhook_endpoints/we_x", {"url": URL + "w" * 2048}, "url"),
    ("PATCH", "/v1/webhook_endpoints/we_x", {"events": ["e" * 65]}, "events[0]"),
    ("POST", "/v1/events/evt_x/redeliver", {"endpoint": "we_" + "x" * 62}, "endpoint"),
]


@pytest.mark.parametrize(("method", "path", "body", "param"), OTHER_FIELDS)
async def test_other_inputs_one_over_their_limit_are_a_400_naming_the_field(
    api: Any, merchant: Any, method: str, path: str, body: dict[str, Any], param: str
) -> None:
    r = await api.request(method, path, json=body, headers=auth(merchant.secret_key))
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


async def test_a_merchant_name_over_200_characters_is_a_400(api: Any, settings: Any) -> None:
    h = auth(settings.admin_key.get_secret_value())
    r = await api.post("/admin/v1/merchants", json={"name": "n" * 201}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"


@pytest.mark.parametrize(
    ("path", "name", "limit"),
    [
        ("/v1/payments", "reference", 255),
        ("/v1/payments", "starting_after", 64),
        ("/v1/payments", "status", 32),
        ("/v1/refunds", "payment", 64),
        ("/v1/events", "type", 1024),
        ("/v1/events", "object", 64),
        ("/v1/payables", "payment", 64),
        ("/v1/balance_transactions", "source", 64),
        ("/v1/checkout/sessions", "status", 32),
        ("/v1/webhook_endpoints", "starting_after", 64),
    ],
)
async def test_query_parameters_one_over_their_limit_are_a_400(
    api: Any, merchant: Any, path: str, name: str, limit: int
) -> None:
    h = auth(merchant.secret_key)
    r = await api.get(path, params={name: "x" * limit}, headers=h)
    assert r.status_code in (200, 400) and (r.status_code == 200 or r.json()["error"]["param"] == name)
    r = await api.get(path, params={name: "x" * (limit + 1)}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == name, r.text
