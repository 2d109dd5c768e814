"""The reference for bench_api: a bare async FastAPI endpoint returning a pydantic model of the same size.

Run as `python bench/bare_app.py PORT [WORKERS]`; served like the real service (uvicorn, uvloop, httptools).
"""

from __future__ import annotations

import sys
from pathlib import Path

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


@app.get("/v1/cardholders/{cardholder_id}/suggestions")
async def suggestions(cardholder_id: str, call_reason: str = "general", limit: int = 3) -> SuggestionsOut:
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
