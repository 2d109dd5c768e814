"""The reference for bench_api: a bare async FastAPI endpoint returning a pydantic model of the same size.

Run as `python bench/bare_app.py PORT [WORKERS]`; served like the real service (uvicorn, uvloop, httptools).

With `BARE_DURABLE_DIR` set (a folder), it also does the durable work the service does for every answered
call, and nothing else: a call record of the same size (three suggestions, 210 cardholder and 21 pair
features per suggestion, new time-ordered ids), its journal line written with one `os.write` before the
answer leaves, and the record stored by a background thread every 20 ms through the service's own batch
insert (`FeedbackStore.log_decisions`) into `BARE_DURABLE_DATABASE_URL` (default: a SQLite file in the
folder). `bench_workers.py` measures it as the per-core reference that does the same durable work.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI

from api.schemas import SuggestionOut, SuggestionsOut

ANSWER = SuggestionsOut(
    call_id="c_7d1e0b5a9f3c4e21",
    cardholder_id="ch_000042",
    call_reason="general",
    model_version="20261123T101500Z-3f2a9c",
    profile_as_of="2026-10-01",
    suggestions=[
        SuggestionOut(
            suggestion_id=f"s_3f2a9c0d41e84b7{rank}",
            rank=rank,
            benefit_id="dining_4x",
            benefit_name="4x points at restaurants",
            talking_point=(
                "Cardholders who dine out like you do spend about $3,100 a year at restaurants. "
                "On your card that earns 4x points: about $93 a year."
            ),
            reasons=["spends on dining most months", "new cardholder", "has not been offered this before"],
            value_usd=93.0,
            score=0.31,
            p_adopt=0.31,
        )
        for rank in (1, 2, 3)
    ],
)

app = FastAPI()
DURABLE_DIR = os.environ.get("BARE_DURABLE_DIR")


class DurableWork:
    """What the service stores of each answered call, without deciding it: see the module's docstring. The
    record is made by the service's own `to_call_decision` from a decision of the same size, and its line by
    `decision_line`, as the suggestions route does."""

    WRITE_EVERY_S = 0.02  # api/decision_log.py's WRITE_EVERY_S

    def __init__(self, folder: Path) -> None:
        from bench_decision_log import make_decisions

        from api.routes.suggestions import to_call_decision
        from nba.decision import Decision, Suggestion
        from nba.feedback import FeedbackStore, decision_line

        self.to_call_decision, self.decision_line = to_call_decision, decision_line

        folder.mkdir(parents=True, exist_ok=True)
        url = os.environ.get("BARE_DURABLE_DATABASE_URL") or f"sqlite:///{folder / 'feedback.db'}"
        self.store = FeedbackStore(url)
        self.store.migrate()
        # The fields the engine's suggestion shares with the stored one: all but the feature row.
        shared = [field.name for field in dataclasses.fields(Suggestion) if field.name != "features"]
        self.decisions = [
            Decision(
                cardholder_id=call.cardholder_id,
                call_reason=call.call_reason,
                model_version=call.model_version,
                profile_as_of=call.profile_as_of,
                suggestions=tuple(
                    Suggestion(
                        **{name: getattr(shown, name) for name in shared},
                        features=call.holder_features + shown.pair_features,
                    )
                    for shown in call.suggestions
                ),
                candidates=len(call.suggestions),
            )
            for call in make_decisions(np.random.default_rng(os.getpid()), 64, 3, 210, 21, 0)
        ]
        self.holder_bytes = 210 * 8
        self.clock = lambda: datetime.now(UTC)  # the part of the service's `Services` to_call_decision reads
        self.fd = os.open(
            folder / f"journal-{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        self.pending: list[object] = []
        self.lock = threading.Lock()
        self.served = 0
        threading.Thread(target=self._write, name="bare-durable-writer", daemon=True).start()

    def record(self, cardholder_id: str) -> None:
        decision = self.decisions[self.served % len(self.decisions)]
        self.served += 1
        call = self.to_call_decision(None, decision, self, self.holder_bytes)  # type: ignore[arg-type]
        line = self.decision_line(call)
        if os.write(self.fd, line) != len(line):
            raise OSError("short write to the journal")
        with self.lock:
            self.pending.append(call)

    def _write(self) -> None:
        while True:
            time.sleep(self.WRITE_EVERY_S)
            with self.lock:
                batch, self.pending = self.pending, []
            if batch:
                self.store.log_decisions(batch)  # type: ignore[arg-type]


DURABLE = DurableWork(Path(DURABLE_DIR)) if DURABLE_DIR else None


@app.get("/v1/cardholders/{cardholder_id}/suggestions")
async def suggestions(cardholder_id: str, call_reason: str = "general", limit: int = 3) -> SuggestionsOut:
    if DURABLE is not None:
        DURABLE.record(cardholder_id)
    return ANSWER


if __name__ == "__main__":
    # `python bench/bare_app.py PORT [WORKERS]`: with workers, uvicorn's supervisor as `nba serve --workers`.
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run(
        "bare_app:app" if workers > 1 else app,
        app_dir=str(Path(__file__).resolve().parent),
        workers=workers,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
