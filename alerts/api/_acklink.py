"""``/ack/<token>``: the one-time acknowledge link every notification carries.

Outside ``/api`` (the person notified has no API key: the signed token is the permission).
``GET`` shows the alert (type, severity, site and bed, when it opened, its status) and an
Acknowledge button; it never acknowledges, so a mail scanner or a link preview that fetches the
link changes nothing. ``POST`` (the button, or a client such as an SMS bridge) spends the link
and acknowledges the alert as ``oncall:<recipient>`` with a note naming the step and channel;
a second use answers 410 with who used it and when. A link is bound to the call it was sent
for (:mod:`alerts.acklinks`): once a new call reopened the alert after an acknowledgement, a
link sent before it answers 410 ("a newer call came after this link was sent") and is not
spent. An expired link is 410, one that is not ours 404, an alert already acknowledged or
resolved 409 with who answered it (the link is spent all the same). Every use is in the key
store's audit log (``ACK_LINK`` by ``oncall:<recipient>``, with the alert, the step, the
channel, the result and the client address) and in the link log (:mod:`alerts.acklinks`).

A link that is not ours (made up, altered, malformed) or expired, and a ``POST`` of a spent
link, is a failed authentication (:class:`~alerts.api._auth.FailedAuth`): counted in
``homecare_api_auth_failures_total`` (``link_invalid``, ``link_expired``, ``link_used``) and
limited per client address on the same budget as wrong API keys; past it, such a request answers
429 with ``Retry-After``, unaudited. An intact, unexpired link is still served from a limited
address: its 128-bit signature cannot be guessed, and an acknowledgement must not wait for a
careless client behind the same address. Refused ``POST`` s (failures, a link of an earlier
call, a family contact's) are audited too (a link that is not ours by ``oncall:unknown`` on
``/ack``, never with the token), at most :data:`AUDIT_REFUSALS_PER_MINUTE` rows a minute over all
clients; the next row written says how many were left out. Before, every made-up link wrote a
row: a flood at 1,000 requests a second grew ``keys.sqlite3`` by about 1 MB a second, kept 13
months. Answers are small HTML pages, or JSON when the client asks for it
(``Accept: application/json``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import zoneinfo
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from alerts.acklinks import AckLinks, Claim, call_started
from alerts.api._auth import FailedAuth
from alerts.api._context import ApiContext
from alerts.api._limits import LogBudget, client_address
from alerts.errors import AlertNotFound, InvalidTransition, NewerCall, StoreUnavailable
from alerts.model import Alert, AlertStatus

PAGE_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
               "frame-ancestors 'none'; base-uri 'none'")
"""The pages post their one form to themselves, and load nothing else."""
ACTOR_PREFIX = "oncall:"
NEWER_CALL = "a newer call came after this link was sent"
FAMILY_CONTACT = "family_contact"
"""Recipient ids of a resident's family contacts (``family_contact-1``): never responders."""
AUDIT_REFUSALS_PER_MINUTE: Final = 10
"""Audit rows a minute at most for refused ``POST`` s, over all clients: about 14,400 rows
(2 MB) a day under a flood, however many addresses it comes from; uses are always written."""


def answered_by(alert: Alert) -> str | None:
    """Who answered ``alert`` as its status says: who resolved a resolved one, who
    acknowledged an acknowledged one."""
    if alert.status is AlertStatus.RESOLVED:
        return alert.resolved_by
    if alert.status is AlertStatus.ACKNOWLEDGED:
        return alert.acknowledged_by
    return None


def router(ctx: ApiContext, failures: FailedAuth) -> APIRouter:
    api = APIRouter(prefix="/ack", include_in_schema=False)
    refusals = LogBudget(per_minute=AUDIT_REFUSALS_PER_MINUTE, clock=lambda: ctx.clock() / 1000)

    def links() -> AckLinks | None:
        return ctx.acklinks

    async def current(alert_id: str) -> Alert | None:
        engine = ctx.engine
        return None if engine is None else await asyncio.to_thread(engine.get, alert_id)

    def when(ms: int, site: str) -> str:
        name = ctx.registry.timezone(site, ctx.timezone)
        zone = zoneinfo.ZoneInfo(name) if name else None
        moment = dt.datetime.fromtimestamp(ms / 1000, tz=zone) if zone is not None \
            else dt.datetime.fromtimestamp(ms / 1000).astimezone()
        return moment.strftime("%Y-%m-%d %H:%M:%S %Z")

    def answer(request: Request, status: int, title: str, text: str, *,
               alert: Alert | None = None, form: str | None = None,
               extra: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> Response:
        if "application/json" in request.headers.get("accept", "") \
                and "text/html" not in request.headers.get("accept", ""):
            body: dict[str, Any] = {"result": title, "detail": text, **(extra or {})}
            if alert is not None:
                body["alert"] = {"id": alert.id, "status": alert.status.value,
                                 "acknowledged_by": alert.acknowledged_by}
            return JSONResponse(body, status_code=status,
                                headers={"Cache-Control": "no-store", **(headers or {})})
        parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(text)}</p>"]
        if alert is not None:
            where = f"{alert.site}/{alert.bed}" if alert.bed else alert.site
            rows = [("Alert", f"{alert.severity.value} {alert.type.value.replace('_', ' ')}"),
                    ("Where", where), ("Summary", alert.summary or "-"),
                    ("Opened", when(alert.opened_at, alert.site)),
                    ("Status", alert.status.value
                     + (f" by {by}" if (by := answered_by(alert)) else ""))]
            parts.append("<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                          for k, v in rows) + "</dl>")
        if form is not None:
            parts.append('<form method="post"><button type="submit">'
                         f"{html.escape(form)}</button></form>")
        page = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{html.escape(title)}</title></head><body>{''.join(parts)}"
                "</body></html>")
        return HTMLResponse(page, status_code=status, headers={
            "Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-store",
            **(headers or {})})

    def check(request: Request, token: str) -> Claim | Response:
        """The link's claim; else the refusal, counted as a failed authentication (429 once
        the address has used up its budget)."""
        held = links()
        claim = held.read(token, now_ms=ctx.clock()) if held is not None else "invalid"
        if isinstance(claim, Claim):
            return claim
        client = client_address(request.scope)
        retry_after = failures.retry_after_s(client)
        if retry_after is not None:
            failures.refused()
            return answer(request, 429, "Too many attempts",
                          "Too many links that do not work came from this address: try again "
                          f"in {retry_after} s.", headers={"Retry-After": str(retry_after)})
        failures.failed(client, f"link_{claim}", "/ack")  # never the token
        if held is None:
            return answer(request, 404, "Not found", "This gateway sends no acknowledge links.")
        if claim == "invalid":
            return answer(request, 404, "Not a valid link",
                          "This acknowledge link is not one of this gateway's.")
        return answer(request, 410, "Link expired",
                      "This acknowledge link has expired: acknowledge in the console.")

    async def stale(claim: Claim) -> bool:
        """Whether a newer call of the alert came after ``claim``'s link was sent."""
        engine = ctx.engine
        if engine is None:
            return False
        history = await asyncio.to_thread(engine.store.history, claim.alert_id)
        return claim.stale(call_started(history))

    def stale_answer(request: Request, alert: Alert | None) -> Response:
        return answer(request, 410, "Link of an earlier call",
                      f"Not acknowledged: {NEWER_CALL}. The alert needs acknowledgement again:"
                      " use the link of the newest notification, or the console.", alert=alert,
                      extra={"reason": NEWER_CALL})

    def spent_answer(request: Request, used: Any, alert: Alert | None) -> Response:
        return answer(request, 410, "Link already used",
                      f"This link was used at {when(used.used_at, alert.site if alert else '')}"
                      f" by {ACTOR_PREFIX}{used.recipient} ({used.result}); it works once.",
                      alert=alert, extra={"used_at": used.used_at,
                                          "used_by": f"{ACTOR_PREFIX}{used.recipient}"})

    @api.get("/{token}")
    async def show(request: Request, token: str) -> Response:
        claim = check(request, token)
        if not isinstance(claim, Claim):
            return claim
        held = links()
        assert held is not None
        alert = await current(claim.alert_id)
        used = await asyncio.to_thread(held.used, claim.key)
        if used is not None:
            return spent_answer(request, used, alert)
        if alert is None:
            return answer(request, 404, "No such alert", "The alert of this link is gone.")
        if await stale(claim):
            return stale_answer(request, alert)
        who = f"{ACTOR_PREFIX}{claim.recipient}"
        if claim.recipient.startswith(FAMILY_CONTACT):
            return answer(request, 200, "For your information",
                          "The station's staff have been called about this alert.", alert=alert)
        if alert.status is not AlertStatus.OPEN:
            return answer(request, 200, f"Already {alert.status.value}",
                          "Nothing to do: someone has answered this alert.", alert=alert)
        return answer(request, 200, "Acknowledge this alert?",
                      f"Sent to {claim.recipient} (step {claim.step}, {claim.channel}). "
                      f"Acknowledging records it as {who}; the link works once.",
                      alert=alert, form=f"Acknowledge as {claim.recipient}")

    @api.post("/{token}")
    async def acknowledge(request: Request, token: str) -> Response:
        client = client_address(request.scope)
        claim = check(request, token)
        if not isinstance(claim, Claim):
            if claim.status_code != 429:  # past the budget: counted, not audited row by row
                await refused(token, claim.status_code, client)
            return claim
        held = links()
        assert held is not None
        actor = f"{ACTOR_PREFIX}{claim.recipient}"
        if claim.recipient.startswith(FAMILY_CONTACT):
            # Sent before family notifications lost their link: a relative is not a responder,
            # and their acknowledgement stopped the staff's chain (a verifier).
            await audit(actor, claim, 403, f"refused: a family contact's link; from {client}",
                        refusal=True)
            return answer(request, 403, "Not a responder's link",
                          "This notification went to a relative: it does not acknowledge the "
                          "alert. The station's staff are still being called.",
                          alert=await current(claim.alert_id))
        if await stale(claim):
            await audit(actor, claim, 410, f"refused: {NEWER_CALL}; from {client}", refusal=True)
            return stale_answer(request, await current(claim.alert_id))
        used = await asyncio.to_thread(lambda: held.use(claim, client=client,
                                                        result="pending", now_ms=ctx.clock()))
        alert = await current(claim.alert_id)
        if used is not None:
            failures.failed(client, "link_used", "/ack")
            await audit(actor, claim, 410, f"used again from {client}", refusal=True)
            return spent_answer(request, used, alert)
        status, title, text = 200, "Acknowledged", ""
        try:
            if ctx.engine is None:
                raise AlertNotFound(claim.alert_id)
            alert = await asyncio.to_thread(
                ctx.engine.acknowledge, claim.alert_id, actor=actor,
                note=f"through the acknowledge link of step {claim.step} ({claim.channel})",
                now_ms=ctx.clock(), sent_for=claim.seq if claim.seq is not None else 0)
            text = f"The alert is acknowledged by {actor}. Escalation has stopped."
            result = "acknowledged"
        except NewerCall:
            await asyncio.to_thread(held.settle, claim, f"refused: {NEWER_CALL}")
            await audit(actor, claim, 410, f"refused: {NEWER_CALL}; from {client}")
            return stale_answer(request, await current(claim.alert_id))
        except InvalidTransition:
            alert = await current(claim.alert_id)
            state = alert.status.value if alert is not None else "resolved"
            by = answered_by(alert) if alert is not None else None
            status, title = 409, f"Already {state}"
            text = f"Nothing to do: the alert was already {state}" + (f" by {by}." if by else ".")
            result = f"already {state}" + (f" by {by}" if by else "")
        except AlertNotFound:
            status, title, text, result = 404, "No such alert", "The alert is gone.", "no alert"
        except StoreUnavailable:
            status, title, result = 503, "Not recorded yet", "store unavailable"
            text = ("The gateway's alert store is failing: the acknowledgement is held and "
                    "written once it works; check the console.")
        await asyncio.to_thread(held.settle, claim, result)
        await audit(actor, claim, status, f"{result} from {client}")
        return answer(request, status, title, text, alert=alert,
                      extra={"acknowledged_by": actor} if status == 200 else None)

    def within_budget(detail: str) -> str | None:
        """``detail`` for a refusal's audit row, saying how many were left out before it; or
        ``None`` when this minute's :data:`AUDIT_REFUSALS_PER_MINUTE` rows are written."""
        allowed, left_out = refusals.allow()
        if not allowed:
            return None
        return detail + (f" ({left_out} refused before this one not recorded: over "
                         f"{AUDIT_REFUSALS_PER_MINUTE} a minute)" if left_out else "")

    async def refused(token: str, status: int, client: str) -> None:
        """Audit a POST of a link refused before use (not ours, altered, malformed, expired),
        never with the token."""
        held = links()
        claim = held.inspect(token) if held is not None else None
        if claim is not None:  # ours and intact: expired
            await audit(f"{ACTOR_PREFIX}{claim.recipient}", claim, status,
                        f"refused: expired; from {client}", refusal=True)
            return
        detail = within_budget(f"refused: not a valid link ({len(token)} characters); "
                               f"from {client}")
        if detail is not None:
            await asyncio.to_thread(ctx.keys.audit, actor=f"{ACTOR_PREFIX}unknown",
                                    action="ACK_LINK", target="/ack", status=status,
                                    detail=detail)

    async def audit(actor: str, claim: Claim, status: int, detail: str, *,
                    refusal: bool = False) -> None:
        """One audit row; a ``refusal``'s only within the budget (:func:`within_budget`)."""
        text = f"step {claim.step} {claim.channel}: {detail}"
        if refusal:
            budgeted = within_budget(text)
            if budgeted is None:
                return
            text = budgeted
        await asyncio.to_thread(
            ctx.keys.audit, actor=actor, action="ACK_LINK", target=f"/alerts/{claim.alert_id}",
            status=status, detail=text)

    return api
