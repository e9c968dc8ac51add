"""A chat's settlement: the capture of its charge (or the release of its hold) and its node
owner's share, each under an idempotency key derived from the chat's id, so a retried call
never moves credits twice.

When credits does not answer a capture or a grant even retried, the settlement is kept in
serving's storage and the settlement job asks again, under the same keys, until credits
answers: a capture that had gone through is answered as it was, one that had not is made (or,
past the hold's expiry, refused: the hold went back to the wallet). docs/operations.md,
"Chats whose settlement failed", tells what an operator sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from enum import Enum

from services.core.clock import Clock
from services.core.errors import R3mesError
from services.core.uow import UnitOfWork
from services.serving import metrics
from services.serving.domain import (
    CreditsUnavailable,
    ServingNode,
    Settlement,
    Usage,
    charge_of,
    node_share,
)
from services.serving.repository import ServingRepositories
from services.serving.usecases.chat import Chat, Credits

logger = logging.getLogger(__name__)

SETTLE_ATTEMPTS = 3
SETTLEMENT_JOB = "settlements"
SETTLEMENT_INTERVAL_SECONDS = 10.0
SETTLEMENT_BATCH = 100
# A settlement still failing a day on is given up (logged, counted): credits keeps idempotency
# keys a week at least, so until then a step asked again is answered as it was, never repeated.
SETTLEMENT_GIVE_UP = timedelta(days=1)
CONFIRM, GRANT, ROLLBACK = "confirm", "grant", "rollback"


class Outcome(Enum):
    """How a call to credits ended, retries included."""

    DONE = "done"
    UNAVAILABLE = "unavailable"  # not answered: ask again later, under the same key
    REFUSED = "refused"  # answered no (logged): asking again would not change it


class Settlements:
    def __init__(
        self,
        uow: UnitOfWork[ServingRepositories],
        clock: Clock,
        credits: Credits,
        node_share_percent: int,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._credits = credits
        self._node_share_percent = node_share_percent
        # Settlements run to the end even when their chat's task is cancelled (client gone).
        self._settling: set[asyncio.Task[int]] = set()

    def settle_later(self, chat: Chat, node: ServingNode | None, usage: Usage) -> None:
        """Settle in a task of its own: the chat's task is being cancelled (client gone)."""
        task = asyncio.ensure_future(self.settle(chat, node, usage))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def settle(self, chat: Chat, node: ServingNode | None, usage: Usage) -> int:
        """Capture the charge (or release the hold) and credit the node's owner its share;
        returns the chat's charge (0 when credits refused the capture). A capture or grant that
        credits does not answer even retried is left to the settlement job; a release that
        fails leaves the hold to expire back to the wallet. Never charges the wallet more."""
        charge = charge_of(chat.started.price, usage, chat.started.reserved)
        chat_id, reservation = chat.started.chat_id, chat.reservation_id
        metrics.TOKENS_SERVED.inc(chat.received_pieces)
        if reservation is None:
            return 0
        if charge == 0:
            released = await self._retried(
                ROLLBACK,
                chat_id,
                lambda: self._credits.rollback(reservation, f"{chat_id}.rollback"),
            )
            if released is Outcome.UNAVAILABLE:
                metrics.SETTLEMENT_FAILURES.labels(ROLLBACK).inc()
                logger.error(
                    "chat settlement failed: the hold expires back to the wallet",
                    extra={"step": ROLLBACK, "chat_id": chat_id, "reservation_id": reservation},
                )
            return 0
        share = node_share(charge, self._node_share_percent) if node else 0
        owner = node.wallet_address if node is not None and share > 0 else None
        settlement = Settlement(chat_id, reservation, charge, usage, owner, share, self._clock())
        outcome, step = await self._settled(settlement, SETTLE_ATTEMPTS)
        if outcome is Outcome.UNAVAILABLE:
            metrics.SETTLEMENT_FAILURES.labels(step).inc()
            await self._defer(replace(settlement, confirmed=step == GRANT), step)
        if outcome is Outcome.REFUSED and step == CONFIRM:
            return 0
        return charge

    async def _settled(self, settlement: Settlement, attempts: int) -> tuple[Outcome, str]:
        """The capture (unless done before), then the owner's share: DONE, or how the step it
        stopped at ended, and that step."""
        s = settlement
        if not s.confirmed:
            captured = await self._retried(
                CONFIRM,
                s.chat_id,
                lambda: self._credits.confirm(s.reservation_id, s.charge, f"{s.chat_id}.confirm"),
                attempts,
            )
            if captured is not Outcome.DONE:
                return captured, CONFIRM
            metrics.TOKENS_CHARGED.labels("prompt").inc(s.usage.prompt_tokens)
            metrics.TOKENS_CHARGED.labels("completion").inc(s.usage.completion_tokens)
            metrics.MICRO_CREDITS_CHARGED.inc(s.charge)
        owner = s.owner_wallet
        if owner is None:
            return Outcome.DONE, GRANT
        granted = await self._retried(
            GRANT,
            s.chat_id,
            lambda: self._credits.grant(
                owner, s.share, f"{s.chat_id}.share", f"served {s.chat_id}"
            ),
            attempts,
        )
        return granted, GRANT

    async def _defer(self, settlement: Settlement, step: str) -> None:
        """Keep the settlement for the job; should serving's storage fail too, the log line
        holds everything an operator needs to settle it by hand."""
        details = {
            "step": step,
            "chat_id": settlement.chat_id,
            "reservation_id": settlement.reservation_id,
            "charge": settlement.charge,
            "owner_wallet": settlement.owner_wallet,
            "share": settlement.share,
        }
        try:
            await self._uow.run(lambda r: r.settlements.add(settlement))
        except R3mesError:
            logger.exception("chat settlement failed and could not be kept", extra=details)
            return
        logger.error("chat settlement failed: left to the settlement job", extra=details)

    async def _retried(
        self,
        step: str,
        chat_id: str,
        call: Callable[[], Awaitable[None]],
        attempts: int = SETTLE_ATTEMPTS,
    ) -> Outcome:
        """How `call` ended within `attempts` (the same idempotency key each time, so an
        attempt whose answer was lost is not applied twice)."""
        for attempt in range(1, attempts + 1):
            try:
                await call()
                return Outcome.DONE
            except CreditsUnavailable:
                if attempt == attempts:
                    return Outcome.UNAVAILABLE
                await asyncio.sleep(0.05 * attempt)
            except R3mesError as refused:
                logger.error(
                    "chat settlement refused",
                    extra={"step": step, "chat_id": chat_id, "reason": refused.reason},
                )
                return Outcome.REFUSED
        raise AssertionError("unreachable: the last attempt returns")

    async def settle_deferred(self) -> int:
        """The settlement job: ask credits again, once each, for the oldest settlements left
        over; how many it ended. Raises while some still cannot be settled, so the job shows
        as failing in health and metrics until credits answers."""
        pending = await self._uow.run(
            lambda r: r.settlements.oldest(SETTLEMENT_BATCH), read_only=True
        )
        ended = [await self._settle_deferred(settlement) for settlement in pending]
        left = await self._uow.run(lambda r: r.settlements.count(), read_only=True)
        metrics.SETTLEMENTS_PENDING.set(left)
        if not all(ended):
            raise CreditsUnavailable()
        return len(ended)

    async def _settle_deferred(self, settlement: Settlement) -> bool:
        """One settlement asked again; whether it ended (else it waits for the next run)."""
        chat_id = settlement.chat_id
        outcome, step = await self._settled(settlement, attempts=1)
        if outcome is Outcome.UNAVAILABLE:
            if self._clock() - settlement.create_time < SETTLEMENT_GIVE_UP:
                if step == GRANT and not settlement.confirmed:
                    await self._uow.run(lambda r: r.settlements.mark_confirmed(chat_id))
                return False
            logger.error("chat settlement abandoned", extra={"step": step, "chat_id": chat_id})
        ended = {Outcome.DONE: "settled", Outcome.REFUSED: "refused"}
        metrics.DEFERRED_SETTLED.labels(ended.get(outcome, "abandoned")).inc()
        await self._uow.run(lambda r: r.settlements.remove(chat_id))
        return True

    async def drain(self) -> None:
        """Wait for settlements still running (the server is stopping)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
