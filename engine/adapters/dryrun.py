"""The dry-run broker: records what riskc would have sent and sends nothing.

Reads (``state``) go to the wrapped broker when there is one, so a dry-run day against a live
account still reconciles the book from the real account. Because nothing is sent, nothing can be
verified: the daemon records each call as ``confirmed`` with ``{"dry_run": true}`` instead of
running the verify-and-retry executor.
"""

from __future__ import annotations

import logging
from typing import Any

from riskc.engine.adapters.port import BrokerCall, BrokerPort, BrokerState

log = logging.getLogger("riskc.broker.dry_run")


class DryRunBroker:
    name = "dry-run"
    verifies = False

    def __init__(self, reads_from: BrokerPort | None = None) -> None:
        self.reads_from = reads_from
        self.would_have_sent: list[BrokerCall] = []

    async def send(self, call: BrokerCall) -> dict[str, Any] | None:
        self.would_have_sent.append(call)
        log.info("dry-run: would %s (%s)", call.describe(), call.rule)
        return {"dry_run": True}

    async def state(self, account_id: int) -> BrokerState:
        if self.reads_from is None:
            return BrokerState()
        return await self.reads_from.state(account_id)
