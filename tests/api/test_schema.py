"""The OpenAPI schema, fuzzed by schemathesis: whatever the input, never a 500, and every answer fits the schema."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from api.main import create_app, start_up
from api.routes.suggestions import answer
from api.schemas import SuggestionOut, SuggestionsOut
from nba.decision import PUBLIC_FIELD_NAMES, SuggestionBase
from nba.feedback import CallDecision, ShownSuggestion
from tests.deployment import Deployment

# schemathesis and hypothesis are imported by the two tests that fuzz, not by this module: every xdist
# worker collects it, and only the worker that runs them pays for the import (~0.2 s of CPU; its pytest
# plugin, which the suite does not use, is off: `-p no:schemathesis` in pyproject.toml).
if TYPE_CHECKING:
    import schemathesis


@pytest.fixture(scope="module")
def api_schema(
    sample_deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> schemathesis.BaseSchema:
    import schemathesis

    var = tmp_path_factory.mktemp("schema-var")
    app = create_app(sample_deployment.settings(var), start_background=False)
    start_up(app.state.services)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_input_gives_a_500_and_answers_fit_the_schema(api_schema: schemathesis.BaseSchema) -> None:
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=checks)

        fuzz()


def test_every_operation_documents_its_errors_and_bounds_its_inputs(
    api_schema: schemathesis.BaseSchema,
) -> None:
    spec = api_schema.raw_schema
    operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) >= 8
    for path, method, op in operations:
        if path.startswith("/v1/"):
            assert op.get("security"), f"{method} {path} has no API key scheme"
            if op.get("parameters") or op.get("requestBody"):
                assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorOut"
                }, (method, path)
        for parameter in op.get("parameters", []):
            schema_of = parameter["schema"]
            if "anyOf" in schema_of:
                schema_of = next(s for s in schema_of["anyOf"] if s.get("type") != "null")
            bounded = {"maxLength", "enum", "maximum", "$ref"} & set(schema_of)
            assert bounded, f"{method} {path}: parameter {parameter['name']} is unbounded"


def test_a_suggestion_out_is_the_suggestion_record_but_its_logging_probability() -> None:
    # In the contract's words: the engine's `priority` is the answer's `score`.
    record = [PUBLIC_FIELD_NAMES.get(field.name, field.name) for field in dataclasses.fields(SuggestionBase)]
    assert list(SuggestionOut.model_fields) == [
        "suggestion_id",
        *(name for name in record if name != "logging_prob"),
        "outcome",
    ]


def test_the_routes_body_is_what_the_response_schema_writes() -> None:
    # The route writes its body with orjson from the record (faster than pydantic): byte for byte the
    # JSON that SuggestionsOut itself would give, outcomes and the call's state included.
    shown = [
        ShownSuggestion(
            suggestion_id=f"s_{rank}",
            rank=rank,
            benefit_id=benefit_id,
            benefit_name="4x points at restaurants",
            talking_point="Spends about $3,100 a year dining out — “4x” here.",
            reasons=reasons,
            value_usd=93.0 / rank,
            priority=0.1 + 0.2,
            p_adopt=0.31,
            logging_prob=0.9,
            pair_features=b"",
        )
        for rank, benefit_id, reasons in ((1, "dining_4x", ("dines out", "new")), (2, "lounge", ()))
    ]
    call = CallDecision(
        call_id="c_1",
        cardholder_id="C0000001",
        call_reason="travel_notice",
        model_version="v1",
        profile_as_of="2026-08-01",
        served_at=datetime(2026, 8, 15, tzinfo=UTC),
        note=None,
        holder_features=b"",
        suggestions=tuple(shown),
    )
    body = answer(call, {"s_2": "declined"}, True)
    assert body == SuggestionsOut.model_validate_json(body).model_dump_json().encode()
    assert [s["outcome"] for s in SuggestionsOut.model_validate_json(body).model_dump()["suggestions"]] == [
        None,
        "declined",
    ]
    assert b'"logging_prob"' not in body
