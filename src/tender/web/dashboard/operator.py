"""The operator's pages: merchants (create, fee plan, routing, view as the merchant), dead letters (retry),
processors' health (pause, resume), the ledger check and the reconciliation runs.

Operators only: a merchant's user gets the 404 page on every one of them (`OperatorDep`, and every POST checks
its form's viewer), as if they did not exist. Every action is a confirmation page (GET, or a review POST for
the rules forms) whose form POSTs with the CSRF token and, where the admin API takes one, a fresh
Idempotency-Key, run through the admin API's services (services/dashboard_operator.py). Fee plans and routing
rules are edited as the admin API's JSON body (`{"rules": [...]}`) in a text box, reviewed as a table before
they are saved; an error names the field as the API does (`rules[0].percent`).
"""

from __future__ import annotations

import hmac
import json
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from tender.domain.errors import DomainError
from tender.errors import NotFound, TenderError
from tender.http.deps import ContainerDep
from tender.services import dashboard_operator as ops
from tender.services.dashboard_users import Viewer
from tender.web.dashboard.auth import CsrfRefused, FormDep, PageNotFound, PostedForm, ViewerDep, redirect
from tender.web.dashboard.layout import confirmation_key, render
from tender.web.dashboard.payments import error_of, status_of

router = APIRouter(prefix="/operator")
Text = Annotated[str | None, Query()]  # lengths are checked by the service (an HTML page, not a 422)
MAX_RULES_FORM_BYTES = ops.MAX_RULES_TEXT * 4  # urlencoded, a character may take up to 12 bytes; enough room


async def operator_viewer(viewer: ViewerDep) -> Viewer:
    if not viewer.operator:
        raise PageNotFound  # a merchant's user: these pages do not exist for them
    return viewer


OperatorDep = Annotated[Viewer, Depends(operator_viewer)]


def _operator(form: PostedForm) -> Viewer:
    if not form.viewer.operator:
        raise PageNotFound
    return form.viewer


def _key(form: PostedForm) -> str:
    return form.get("idempotency_key").strip()


def _failed(exc: Exception) -> tuple[dict[str, Any], int]:
    return error_of(exc), status_of(exc)


def _confirm(
    request: Request, viewer: Viewer, *, title: str, what: str, action: str, button: str, back: str,
    key: str | None = None, error: dict[str, Any] | None = None, status_code: int = 200, reason: bool = False,
    reason_value: str = "",
) -> HTMLResponse:  # fmt: skip
    return render(
        request, "dashboard/operator_confirm.html", viewer, status_code=status_code, title=title, what=what,
        action=action, button=button, back=back, idempotency_key=key or str(uuid.uuid4()), error=error,
        reason=reason, reason_value=reason_value, max_reason=ops.MAX_REASON_LENGTH,
    )  # fmt: skip


# -- merchants ---------------------------------------------------------------------------------------------


@router.get("/merchants", response_class=HTMLResponse)
async def merchants(
    request: Request, viewer: OperatorDep, container: ContainerDep, starting_after: Text = None
) -> HTMLResponse:
    try:
        page = await ops.list_merchants(container.db, starting_after=starting_after)
    except TenderError as exc:
        return render(request, "dashboard/operator_merchants.html", viewer, status_code=exc.status_code,
                      title="Merchants", merchants=[], error=error_of(exc), next_url=None)  # fmt: skip
    rows = page.rows
    next_url = f"/dashboard/operator/merchants?starting_after={rows[-1].id}" if page.has_more and rows else None
    return render(
        request, "dashboard/operator_merchants.html", viewer, title="Merchants", merchants=rows, next_url=next_url,
        first_url="/dashboard/operator/merchants" if starting_after else None, error=None,
    )  # fmt: skip


def _new_merchant_page(
    request: Request, viewer: Viewer, *, name: str = "", key: str | None = None, error: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    return render(
        request, "dashboard/operator_merchant_new.html", viewer, status_code=status_code, title="New merchant",
        name=name, idempotency_key=key or str(uuid.uuid4()), error=error, max_name=ops.MAX_NAME_LENGTH,
    )  # fmt: skip


@router.get("/merchants/new", response_class=HTMLResponse)
async def new_merchant(request: Request, viewer: OperatorDep) -> HTMLResponse:
    return _new_merchant_page(request, viewer)


@router.post("/merchants/new")
async def create_merchant(request: Request, form: FormDep, container: ContainerDep) -> Response:
    viewer = _operator(form)
    name, key = form.get("name").strip(), _key(form)
    try:
        result = await ops.create_merchant(container.db, container.vault, name, key=key)
    except (TenderError, DomainError) as exc:
        error, status = _failed(exc)
        return _new_merchant_page(request, viewer, name=name, key=key, error=error, status_code=status)
    body = result.body
    return render(
        request, "dashboard/operator_keys.html", viewer, title="Merchant created", replayed=result.replayed,
        merchant_id=body.get("id", ""), merchant_name=body.get("name", ""),
        secrets=[("Secret key", str(body.get("secret_key", ""))),
                 ("Publishable key", str(body.get("publishable_key", "")))],
    )  # fmt: skip


_DONE = {
    "fee-plan": "Fee plan saved: captures from now on use it.",
    "routing": "Routing rules saved: payments accepted from now on follow them.",
}


async def _merchant_view(container: Any, merchant_id: str) -> ops.MerchantView:
    try:
        return await ops.merchant_view(container.db, merchant_id, default_processor=container.default_processor)
    except NotFound:
        raise PageNotFound from None


@router.get("/merchants/{merchant_id}", response_class=HTMLResponse)
async def merchant(
    request: Request, merchant_id: str, viewer: OperatorDep, container: ContainerDep, done: Text = None
) -> HTMLResponse:
    view = await _merchant_view(container, merchant_id)
    return render(
        request, "dashboard/operator_merchant.html", viewer, title=f"Merchant {view.merchant.name}", view=view,
        notice=_DONE.get(done or ""),
    )  # fmt: skip


# -- fee plan and routing: edit the JSON, review it as a table, save ------------------------------------------

_KINDS = {"fee-plan": "fee plan", "routing": "routing rules"}


async def _rules_form(request: Request, viewer: OperatorDep) -> PostedForm:
    """A rules form: larger than auth.read_form's fields allow (a plan of 50 rules), CSRF checked the same way."""
    raw = (await request.body())[:MAX_RULES_FORM_BYTES]
    parsed = parse_qs(raw.decode(errors="replace"), keep_blank_values=True)
    fields = {k[:100]: v[0] for k, v in parsed.items()}
    if not hmac.compare_digest(fields.get("csrf_token", "").encode(), viewer.csrf_token.encode()):
        raise CsrfRefused
    return PostedForm(viewer, fields)


RulesFormDep = Annotated[PostedForm, Depends(_rules_form)]


def _kind(kind: str) -> str:
    if kind not in _KINDS:
        raise PageNotFound
    return kind


def _current_text(view: ops.MerchantView, kind: str) -> str:
    rules = view.fee_plan.plan.as_list() if kind == "fee-plan" else view.routing["rules"]
    return json.dumps({"rules": rules}, indent=2, default=str)


def _edit_page(
    request: Request, viewer: Viewer, view: ops.MerchantView, kind: str, text: str, processors_on: Any, *,
    error: dict[str, Any] | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    return render(
        request, "dashboard/operator_rules_edit.html", viewer, status_code=status_code,
        title=f"Edit the {_KINDS[kind]} of {view.merchant.name}", view=view, kind=kind, text=text, error=error,
        max_text=ops.MAX_RULES_TEXT, processors_on=sorted(processors_on),
    )  # fmt: skip


@router.get("/merchants/{merchant_id}/{kind}", response_class=HTMLResponse)
async def edit_rules(
    request: Request, merchant_id: str, kind: str, viewer: OperatorDep, container: ContainerDep
) -> HTMLResponse:
    view = await _merchant_view(container, merchant_id)
    return _edit_page(request, viewer, view, _kind(kind), _current_text(view, kind), container.processors)


@router.post("/merchants/{merchant_id}/{kind}/review", response_class=HTMLResponse)
async def review_rules(
    request: Request, merchant_id: str, kind: str, viewer: OperatorDep, form: RulesFormDep, container: ContainerDep
) -> HTMLResponse:
    kind = _kind(kind)
    view = await _merchant_view(container, merchant_id)
    text = form.get("rules")
    try:
        if kind == "fee-plan":
            rules: list[dict[str, Any]] = [r.as_dict() for r in ops.parse_fee_plan(text).plan().rules]
        else:
            rules = ops.parse_routing(text, on=container.processors.keys()).to_json()
    except (TenderError, DomainError) as exc:
        return _edit_page(
            request, viewer, view, kind, text, container.processors, error=error_of(exc), status_code=status_of(exc)
        )
    return render(
        request, "dashboard/operator_rules_confirm.html", viewer, title=f"Save the {_KINDS[kind]}?", view=view,
        kind=kind, text=text, rules=rules, default=view.routing["default"],
    )  # fmt: skip


@router.post("/merchants/{merchant_id}/{kind}/edit", response_class=HTMLResponse)
async def edit_again(
    request: Request, merchant_id: str, kind: str, viewer: OperatorDep, form: RulesFormDep, container: ContainerDep
) -> HTMLResponse:
    """Back from the review to the box, with the text reviewed (not the rules saved before)."""
    kind = _kind(kind)
    view = await _merchant_view(container, merchant_id)
    return _edit_page(request, viewer, view, kind, form.get("rules"), container.processors)


@router.post("/merchants/{merchant_id}/{kind}")
async def save_rules(
    request: Request, merchant_id: str, kind: str, viewer: OperatorDep, form: RulesFormDep, container: ContainerDep
) -> Response:
    kind = _kind(kind)
    view = await _merchant_view(container, merchant_id)
    text = form.get("rules")
    try:
        if kind == "fee-plan":
            await ops.set_fee_plan(container.db, merchant_id, text)
        else:
            on = container.processors.keys()
            await ops.set_routing(container.db, merchant_id, text, on=on, default=[container.default_processor])
    except NotFound:
        raise PageNotFound from None
    except (TenderError, DomainError) as exc:
        return _edit_page(
            request, viewer, view, kind, text, container.processors, error=error_of(exc), status_code=status_of(exc)
        )
    return redirect(f"/dashboard/operator/merchants/{merchant_id}?done={kind}")


# -- dead letters --------------------------------------------------------------------------------------------


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request, viewer: OperatorDep, container: ContainerDep, status: Text = None, starting_after: Text = None
) -> HTMLResponse:
    try:
        wanted = ops.parse_status(status)
        page = await ops.list_dead_letters(container.db, status=wanted, starting_after=starting_after)
    except TenderError as exc:
        return render(
            request, "dashboard/operator_dead_letters.html", viewer, status_code=exc.status_code,
            title="Dead letters", letters=[], status="", statuses=ops.DEAD_LETTER_STATUSES, error=error_of(exc),
        )  # fmt: skip
    rows = page.rows
    query = {"status": wanted.value} if wanted else {}
    next_url = (
        "/dashboard/operator/dead-letters?" + urlencode({**query, "starting_after": rows[-1].id})
        if page.has_more and rows
        else None
    )
    return render(
        request, "dashboard/operator_dead_letters.html", viewer, title="Dead letters", letters=rows,
        status=wanted.value if wanted else "", statuses=ops.DEAD_LETTER_STATUSES, next_url=next_url, error=None,
        first_url=("/dashboard/operator/dead-letters?" + urlencode(query)) if starting_after else None,
    )  # fmt: skip


async def _dead_letter(container: Any, dead_letter_id: str) -> Any:
    try:
        return await ops.dead_letter(container.db, dead_letter_id)
    except NotFound:
        raise PageNotFound from None


@router.get("/dead-letters/{dead_letter_id}", response_class=HTMLResponse)
async def dead_letter(
    request: Request, dead_letter_id: str, viewer: OperatorDep, container: ContainerDep, done: Text = None
) -> HTMLResponse:
    letter = await _dead_letter(container, dead_letter_id)
    notice = "Retry queued: the work is due again now, with a fresh set of tries." if done == "retry" else None
    return render(request, "dashboard/operator_dead_letter.html", viewer, title=f"Dead letter {letter.id}",
                  letter=letter, notice=notice)  # fmt: skip


def _retry_what(letter: Any) -> str:
    at = f" at {letter.processor}" if letter.processor else ""
    return (
        f"Give the {letter.kind} {letter.object_id} ({letter.operation}{at}) a fresh set of tries, due now. "
        "Retry only once the cause is fixed, or it ends here again."
    )


@router.get("/dead-letters/{dead_letter_id}/retry", response_class=HTMLResponse)
async def retry_confirm(
    request: Request, dead_letter_id: str, viewer: OperatorDep, container: ContainerDep, k: Text = None
) -> HTMLResponse:
    letter = await _dead_letter(container, dead_letter_id)
    return _confirm(
        request, viewer, title="Retry a dead letter", what=_retry_what(letter), button="Retry",
        action=f"/dashboard/operator/dead-letters/{letter.id}/retry",
        back=f"/dashboard/operator/dead-letters/{letter.id}", key=confirmation_key(f"retry-{letter.id}", k),
    )  # fmt: skip


@router.post("/dead-letters/{dead_letter_id}/retry")
async def retry(request: Request, dead_letter_id: str, form: FormDep, container: ContainerDep) -> Response:
    viewer = _operator(form)
    letter = await _dead_letter(container, dead_letter_id)
    key = _key(form)
    try:
        await ops.retry_dead_letter(container.db, container.vault, letter.id, key=key)
    except (TenderError, DomainError) as exc:
        error, status = _failed(exc)
        return _confirm(
            request, viewer, title="Retry a dead letter", what=_retry_what(letter), button="Retry",
            action=f"/dashboard/operator/dead-letters/{letter.id}/retry",
            back=f"/dashboard/operator/dead-letters/{letter.id}", key=key, error=error, status_code=status,
        )  # fmt: skip
    return redirect(f"/dashboard/operator/dead-letters/{letter.id}?done=retry")


# -- processors ----------------------------------------------------------------------------------------------


@router.get("/processors", response_class=HTMLResponse)
async def processors(request: Request, viewer: OperatorDep, container: ContainerDep, done: Text = None) -> HTMLResponse:
    view = await ops.processors_view(container.db, container.settings.circuit_policy, list(container.processors))
    notice = {"pause": "Processor paused.", "resume": "Processor resumed."}.get(done or "")
    return render(request, "dashboard/operator_processors.html", viewer, title="Processors", view=view,
                  notice=notice)  # fmt: skip


_PAUSE_WHAT = {
    "pause": "Pause {name}: new payments go to the next processor of their route, or wait until it is resumed. "
    "Captures, cancels, refunds and look-ups of payments already there go on.",
    "resume": "Resume {name}: new payments may go to it again.",
}


def _action(action: str, name: str, container: Any) -> str:
    if action not in _PAUSE_WHAT or name not in container.processors:
        raise PageNotFound
    return action


@router.get("/processors/{name}/{action}", response_class=HTMLResponse)
async def pause_confirm(
    request: Request, name: str, action: str, viewer: OperatorDep, container: ContainerDep
) -> HTMLResponse:
    _action(action, name, container)
    return _confirm(
        request, viewer, title=f"{action.capitalize()} a processor", what=_PAUSE_WHAT[action].format(name=name),
        action=f"/dashboard/operator/processors/{name}/{action}", button=action.capitalize(),
        back="/dashboard/operator/processors", reason=action == "pause",
    )  # fmt: skip


@router.post("/processors/{name}/{action}")
async def pause(request: Request, name: str, action: str, form: FormDep, container: ContainerDep) -> Response:
    viewer = _operator(form)
    _action(action, name, container)
    key, reason = _key(form), form.get("reason").strip() or None
    try:
        await ops.set_paused(
            container.db, container.vault, container.settings.circuit_policy, container.processors.keys(), name,
            paused=action == "pause", reason=reason, key=key,
        )  # fmt: skip
    except (TenderError, DomainError) as exc:
        error, status = _failed(exc)
        return _confirm(
            request, viewer, title=f"{action.capitalize()} a processor", what=_PAUSE_WHAT[action].format(name=name),
            action=f"/dashboard/operator/processors/{name}/{action}", button=action.capitalize(),
            back="/dashboard/operator/processors", reason=action == "pause", reason_value=reason or "", key=key,
            error=error, status_code=status,
        )  # fmt: skip
    return redirect(f"/dashboard/operator/processors?done={action}")


# -- ledger and reconciliation ---------------------------------------------------------------------------


@router.get("/ledger", response_class=HTMLResponse)
async def ledger(request: Request, viewer: OperatorDep, container: ContainerDep) -> HTMLResponse:
    check = await ops.verify_ledger(container.db)
    return render(request, "dashboard/operator_ledger.html", viewer, title="Ledger check", check=check)


@router.get("/reconciliations", response_class=HTMLResponse)
async def reconciliations(
    request: Request, viewer: OperatorDep, container: ContainerDep, processor: Text = None,
    starting_after: Text = None,
) -> HTMLResponse:  # fmt: skip
    processor = processor or None
    try:
        runs, has_more = await ops.list_reconciliations(
            container.db, processor=processor, starting_after=starting_after
        )
    except TenderError as exc:
        return render(request, "dashboard/operator_reconciliations.html", viewer, status_code=exc.status_code,
                      title="Reconciliation", runs=[], processor="", processors=list(container.processors),
                      error=error_of(exc))  # fmt: skip
    query = {"processor": processor} if processor else {}
    next_url = (
        "/dashboard/operator/reconciliations?" + urlencode({**query, "starting_after": runs[-1]["id"]})
        if has_more and runs
        else None
    )
    return render(
        request, "dashboard/operator_reconciliations.html", viewer, title="Reconciliation", runs=runs,
        processor=processor or "", processors=list(container.processors), next_url=next_url, error=None,
        first_url=("/dashboard/operator/reconciliations?" + urlencode(query)) if starting_after else None,
    )  # fmt: skip


def _run_page(
    request: Request, viewer: Viewer, container: Any, *, processor: str = "", day: str = "", key: str | None = None,
    error: dict[str, Any] | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    yesterday = (datetime.now(container.settings.business_tz) - timedelta(days=1)).date().isoformat()
    return render(
        request, "dashboard/operator_reconcile.html", viewer, status_code=status_code, title="Run a reconciliation",
        processors=list(container.processors), processor=processor, day=day or yesterday,
        idempotency_key=key or str(uuid.uuid4()), error=error, tz=str(container.settings.business_tz),
    )  # fmt: skip


@router.get("/reconciliations/run", response_class=HTMLResponse)
async def run_form(request: Request, viewer: OperatorDep, container: ContainerDep) -> HTMLResponse:
    return _run_page(request, viewer, container)


@router.post("/reconciliations/run")
async def run_now(request: Request, form: FormDep, container: ContainerDep) -> Response:
    viewer = _operator(form)
    processor, day, key = form.get("processor"), form.get("date"), _key(form)
    try:
        result = await ops.run_reconciliation(
            container.db, container.vault, container.processors, processor, day, container.settings.business_tz,
            key=key,
        )  # fmt: skip
    except (TenderError, DomainError) as exc:
        error, status = _failed(exc)
        return _run_page(request, viewer, container, processor=processor, day=day, key=key, error=error,
                         status_code=status)  # fmt: skip
    return redirect(f"/dashboard/operator/reconciliations/{result.body['id']}")


@router.get("/reconciliations/{run_id}", response_class=HTMLResponse)
async def reconciliation(request: Request, run_id: str, viewer: OperatorDep, container: ContainerDep) -> HTMLResponse:
    try:
        run = await ops.reconciliation_run(container.db, run_id)
    except NotFound:
        raise PageNotFound from None
    return render(request, "dashboard/operator_reconciliation.html", viewer, title=f"Reconciliation {run['id']}",
                  run=run)  # fmt: skip
