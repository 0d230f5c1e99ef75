"""Tender's client for the card-acquirer simulator (`tender.simulator`), a `Processor`.

Every call is classified into an `Outcome` and never raises for a network fault. The line that
matters is whether the request may have reached the simulator: if it certainly did not (refused
connection, no pooled connection, an injected 503) the outcome is TRANSIENT and a retry is safe;
if it may have (a timeout or a cut connection after sending) the outcome is UNKNOWN and the caller
must look the reference up before anything else. Messages never contain request bodies, so no
card number or CVC can leak through them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from tender import keyfiles
from tender.config import Settings
from tender.domain.bins import known_funding
from tender.domain.reconciliation import ChargeStatus, RecordKind, RefundStatus
from tender.processors.base import (
    AuthorizeRequest,
    InvalidNotification,
    Notification,
    Outcome,
    ProcessorRecord,
    ProcessorResult,
    RecordsUnavailable,
)

SIGNATURE_HEADER = "Simulator-Signature"

# Errors raised before any byte of the request left: the simulator cannot have acted on it.
# (aiohttp's ConnectionTimeoutError covers both waiting for a pooled connection and connecting.)
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL)


@dataclass(frozen=True, slots=True)
class _Answer:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


_AUTH_OUTCOMES = {
    "approved": Outcome.APPROVED,
    "declined": Outcome.DECLINED,
    "action_required": Outcome.ACTION_REQUIRED,
    "canceled": Outcome.DECLINED,  # voided through cancel: final, nothing to collect
}
_OPERATION_OUTCOMES = {"succeeded": Outcome.APPROVED, "failed": Outcome.DECLINED}

_Parser = Callable[[Any], ProcessorResult]


class InvalidSignature(InvalidNotification):
    """A notification whose signature is missing, malformed, wrong or too old."""


def _network_fault(exc: Exception, *, side_effect: bool) -> ProcessorResult:
    """A call that got no usable answer; for look-ups (no side effect) always TRANSIENT."""
    sent = not isinstance(exc, _NOT_SENT)
    outcome = Outcome.UNKNOWN if side_effect and sent else Outcome.TRANSIENT
    when = "after the request may have been sent" if sent else "before the request was sent"
    return ProcessorResult(outcome, message=f"simulator unreachable {when}: {type(exc).__name__}")


def _http_error(response: _Answer, *, side_effect: bool) -> ProcessorResult:
    status = response.status_code
    code, message = None, None
    try:
        error = response.json().get("error") or {}
        code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        pass
    detail = f"simulator answered HTTP {status}" + (f" ({code}): {message}" if code else "")
    if status in (429, 503) or (not side_effect and status >= 500):
        # The simulator refuses before doing anything (its injected outage is a 503).
        return ProcessorResult(Outcome.TRANSIENT, message=detail)
    if status >= 500 or status == 409:
        # A 500 may come after the charge was recorded; a 409 means the reference exists with a
        # different request. Either way only a look-up can tell what happened.
        return ProcessorResult(Outcome.UNKNOWN, failure_code=code, message=detail)
    if not side_effect:
        return ProcessorResult(Outcome.TRANSIENT, message=detail)
    # Any other 4xx: the simulator refused this request and charged nothing; resending won't help.
    return ProcessorResult(Outcome.DECLINED, failure_code="processing_error", message=detail)


def _authorization_result(data: Mapping[str, Any]) -> ProcessorResult:
    outcome = _AUTH_OUTCOMES.get(str(data.get("status")))
    if outcome is None:
        return ProcessorResult(Outcome.UNKNOWN, processor_reference=data.get("id"), message="unexpected status")
    failure_code = data.get("failure_code")
    if outcome is Outcome.DECLINED and data.get("status") == "canceled":
        failure_code = failure_code or "canceled"
    return ProcessorResult(
        outcome,
        processor_reference=data.get("id"),
        failure_code=failure_code,
        decline_code=data.get("decline_code"),
        message=data.get("message"),
        redirect_url=data.get("redirect_url") if outcome is Outcome.ACTION_REQUIRED else None,
        captured=bool(data.get("captured")) and outcome is Outcome.APPROVED,
        funding=known_funding(card.get("funding")) if isinstance(card := data.get("card"), dict) else None,
        amount_captured=_amount(data.get("amount_captured")),
    )


def _amount(value: Any) -> int | None:
    """A minor-unit amount from the simulator's JSON, or None for anything else (never a float)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _operation_result(data: Mapping[str, Any]) -> ProcessorResult:
    outcome = _OPERATION_OUTCOMES.get(str(data.get("status")))
    if outcome is None:
        return ProcessorResult(Outcome.UNKNOWN, processor_reference=data.get("id"), message="unexpected status")
    return ProcessorResult(
        outcome,
        processor_reference=data.get("id"),
        failure_code=data.get("failure_code"),
        message=data.get("message"),
        captured=data.get("object") == "capture" and outcome is Outcome.APPROVED,
    )


class SimulatorProcessor:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        notify_secret: str = "simsecret_dev",  # noqa: S107 - the simulator's development default
        max_connections: int = 400,
        name: str = "simulator",  # another instance (TENDER_SIMULATOR_INSTANCES) is a processor of its own
    ) -> None:
        self.name = name
        self._base_url = base_url.rstrip("/")
        self._notify_secret = notify_secret.encode()
        # `connect` bounds waiting for a pooled connection plus connecting (nothing sent yet: TRANSIENT);
        # `sock_read` bounds waiting for the answer once the request is out (UNKNOWN).
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # aiohttp, not httpx: with hundreds of calls in flight httpx's pool bookkeeping cost the worker
        # most of its CPU (measured with py-spy). Made lazily, inside the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> _Answer | ProcessorResult:
        """The answer, or the classified result of a call that got none."""
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        data = orjson.dumps(body) if body is not None else None
        try:
            async with self._client().request(method, self._base_url + path, data=data, headers=headers) as r:
                return _Answer(r.status, await r.read())
        except Exception as exc:  # classified, never raised: see the module docstring
            return _network_fault(exc, side_effect=method == "POST")

    async def _post(self, path: str, body: dict[str, Any], reference: str, parse: _Parser) -> ProcessorResult:
        response = await self._call("POST", path, body=body, idempotency_key=reference)
        if isinstance(response, ProcessorResult):
            return response
        if response.status_code != 200:
            return _http_error(response, side_effect=True)
        try:
            return parse(response.json())
        except Exception:  # an unreadable 200 may still have been a charge
            return ProcessorResult(Outcome.UNKNOWN, message="simulator answered 200 with an unreadable body")

    async def _get(self, path: str, parse: _Parser) -> ProcessorResult:
        response = await self._call("GET", path)
        if isinstance(response, ProcessorResult):
            return response
        if response.status_code == 404:
            return ProcessorResult(Outcome.NOT_FOUND, message="the simulator has no record of this reference")
        if response.status_code != 200:
            return _http_error(response, side_effect=False)
        try:
            return parse(response.json())
        except Exception:  # a look-up has no side effect: ask again later
            return ProcessorResult(Outcome.TRANSIENT, message="simulator answered 200 with an unreadable body")

    # -- Processor ----------------------------------------------------------------------------

    async def authorize(self, request: AuthorizeRequest) -> ProcessorResult:
        body: dict[str, Any] = {
            "reference": request.reference,
            "payment": request.payment_id,
            "amount": request.amount,
            "currency": request.currency,
            "capture": request.capture,
        }
        if (card := request.card) is not None:
            body["card"] = {
                "number": card.number,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "cvc": card.cvc,
                "holder_name": card.holder_name,
            }
        else:  # an alternative method: the simulator answers with its approval page (action_required)
            body["method"] = request.method
        if request.return_url:
            body["return_url"] = request.return_url
        if request.off_session:  # merchant-initiated: a saved card, no CVC, the shopper absent
            body["off_session"] = True
        return await self._post("/v1/authorizations", body, request.reference, _authorization_result)

    async def lookup(self, reference: str) -> ProcessorResult:
        return await self._get(f"/v1/authorizations/{_segment(reference)}", _authorization_result)

    # -- captures, cancels, refunds -----------------------------------------------------------

    async def capture(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
        """Capture `amount` (default: all) of the authorization whose reference is `authorization`.

        `reference` is this operation's own idempotency key and look-up key.
        """
        body: dict[str, Any] = {"reference": reference}
        if amount is not None:
            body["amount"] = amount
        path = f"/v1/authorizations/{_segment(authorization)}/capture"
        return await self._post(path, body, reference, _operation_result)

    async def cancel(self, reference: str, authorization: str) -> ProcessorResult:
        """Void an uncaptured (or still 3-D Secure pending) authorization."""
        path = f"/v1/authorizations/{_segment(authorization)}/cancel"
        return await self._post(path, {"reference": reference}, reference, _operation_result)

    async def refund(self, reference: str, authorization: str, amount: int | None = None) -> ProcessorResult:
        """Refund `amount` (default: all that is left) of a captured authorization."""
        body: dict[str, Any] = {"reference": reference, "authorization": authorization}
        if amount is not None:
            body["amount"] = amount
        return await self._post("/v1/refunds", body, reference, _operation_result)

    async def lookup_operation(self, reference: str) -> ProcessorResult:
        """A capture, cancel or refund by its own reference: APPROVED, DECLINED or NOT_FOUND."""
        return await self._get(f"/v1/operations/{_segment(reference)}", _operation_result)

    # -- records, for reconciliation ----------------------------------------------------------

    async def list_records(self, start: datetime, end: datetime) -> list[ProcessorRecord]:
        """Every authorization and refund the simulator made in [start, end), read page by page from
        `GET /v1/records` (whole seconds: the window is widened to them). Captures and cancels are not records of
        their own: they show on their authorization (amount_captured, status canceled)."""
        gte, lt = int(start.timestamp()), -int(-end.timestamp() // 1)
        records: list[ProcessorRecord] = []
        after = ""
        while True:
            path = f"/v1/records?created_gte={gte}&created_lt={lt}&limit={_RECORDS_PAGE}"
            answer = await self._call("GET", path + (f"&starting_after={quote(after, safe='')}" if after else ""))
            if isinstance(answer, ProcessorResult):
                raise RecordsUnavailable(answer.message or "the simulator did not answer")
            if answer.status_code != 200:
                raise RecordsUnavailable(f"the simulator answered HTTP {answer.status_code} to a records page")
            try:
                page = answer.json()
                data = page["data"]
                records.extend(r for item in data if (r := _record(item)) is not None)
            except (ValueError, KeyError, TypeError) as exc:
                raise RecordsUnavailable(f"an unreadable records page ({type(exc).__name__})") from None
            if not page.get("has_more") or not data:
                return records
            after = str(data[-1]["id"])

    # -- inbound notifications ----------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        return _notification(self.verify_notification(headers, body))

    def verify_notification(
        self, headers: Mapping[str, str], body: bytes, *, tolerance_seconds: int = 300
    ) -> dict[str, Any]:
        """The event of a notification whose Simulator-Signature is valid and recent, else InvalidSignature."""
        header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
        if not header:
            raise InvalidSignature("missing Simulator-Signature header")
        timestamp: int | None = None
        candidates: list[str] = []
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            # ASCII digits only ("²".isdigit() is true and int() refuses it), and few: int() refuses 4300+.
            if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
                timestamp = int(value)
            elif key == "v1":
                candidates.append(value)
        if timestamp is None or not candidates:
            raise InvalidSignature("malformed Simulator-Signature header")
        if abs(time.time() - timestamp) > tolerance_seconds:
            raise InvalidSignature("notification timestamp outside the tolerance")
        expected = hmac.new(self._notify_secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates):
            raise InvalidSignature("signature mismatch")
        try:
            event = json.loads(body)
        except ValueError:
            raise InvalidSignature("body is not JSON") from None
        if not isinstance(event, dict):
            raise InvalidSignature("body is not a JSON object")
        return event


def notify_secret(settings: Settings) -> str:
    """The key of the simulator's notifications: TENDER_SIMULATOR_NOTIFY_SECRET, else the data folder's (made on
    first use), which `tender simulator` reads too."""
    configured = settings.simulator_notify_secret
    return keyfiles.notify_secret(configured.get_secret_value() if configured else None, settings.data_dir)


def from_settings(settings: Settings) -> SimulatorProcessor | None:
    """The simulator's client, on while TENDER_SIMULATOR_URL is set (processors/registry.py)."""
    if not settings.simulator_url:
        return None
    return SimulatorProcessor(
        settings.simulator_url, timeout=settings.processor_timeout_seconds, notify_secret=notify_secret(settings)
    )


def instances_from_settings(settings: Settings) -> dict[str, SimulatorProcessor]:
    """The extra simulator processors of TENDER_SIMULATOR_INSTANCES, by name: each one acquirer of its own, with
    the simulator's notify secret (its notifications arrive on /webhooks/{name})."""
    urls = settings.simulator_instance_urls
    secret = notify_secret(settings) if urls else ""
    return {
        name: SimulatorProcessor(url, timeout=settings.processor_timeout_seconds, notify_secret=secret, name=name)
        for name, url in urls.items()
    }


def _notification(event: dict[str, Any]) -> Notification:
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("reference"), str) or not isinstance(event.get("id"), str):
        raise InvalidNotification("the notification does not name an authorization reference")
    return Notification(
        event_id=event["id"],
        type=str(event.get("type", "")),
        reference=data["reference"],
        result=_authorization_result(data),
        payload=event,
    )


_RECORDS_PAGE = 500


def _charge_status(data: Mapping[str, Any]) -> ChargeStatus:
    match data.get("status"):
        case "approved":
            return ChargeStatus.SUCCEEDED if data.get("captured") else ChargeStatus.AUTHORIZED
        case "declined":
            return ChargeStatus.DECLINED
        case "action_required":
            return ChargeStatus.ACTION_REQUIRED
        case "canceled":
            return ChargeStatus.CANCELED
    return ChargeStatus.PENDING


def _record(item: Mapping[str, Any]) -> ProcessorRecord | None:
    """An authorization or a refund of `GET /v1/records` as a reconciliation record; None for a capture or a
    cancel (their effect is on the authorization). KeyError/TypeError/ValueError on a malformed item."""
    created = datetime.fromtimestamp(int(item["created"]), UTC)
    amount, currency = item["amount"], str(item["currency"])
    if not isinstance(amount, int):
        raise TypeError("amount")
    if item.get("object") == "authorization":
        return ProcessorRecord(
            kind=RecordKind.CHARGE,
            reference=str(item["reference"]),
            processor_id=str(item["id"]),
            amount=amount,
            currency=currency,
            status=_charge_status(item),
            created=created,
            amount_captured=_amount(item.get("amount_captured")) or 0,
        )
    if item.get("object") == "refund":
        return ProcessorRecord(
            kind=RecordKind.REFUND,
            reference=str(item["reference"]),
            processor_id=str(item["id"]),
            amount=amount,
            currency=currency,
            status=RefundStatus.SUCCEEDED if item.get("status") == "succeeded" else RefundStatus.FAILED,
            created=created,
            charge=item.get("authorization"),
        )
    return None


def _segment(value: str) -> str:
    """A reference as one URL path segment (references are ours, but never trust a slash)."""
    return quote(value, safe="")
