"""The OpenAPI schema, fuzzed by schemathesis: whatever the input, never a 500, and every answer fits the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app, start_up
from tests.deployment import Deployment


@pytest.fixture(scope="module")
def api_schema(
    sample_deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> schemathesis.BaseSchema:
    var = tmp_path_factory.mktemp("schema-var")
    app = create_app(sample_deployment.settings(var), start_background=False)
    start_up(app.state.services)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_no_input_gives_a_500_and_answers_fit_the_schema(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

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
