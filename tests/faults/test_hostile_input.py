"""Hostile input against a real `nba serve` process: path tricks, huge and malformed ids, bodies, headers and
request lines, duplicate keys, loose types. Never a 5xx, a traceback or an internal detail in an answer;
never a cardholder id or an API key in the log. The suggestions fast path and the route agree on all of it."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.errors import ErrorCode
from api.main import create_app
from tests.deployment import Deployment
from tests.serving import (
    ADMIN,
    AGENT,
    KEYS,
    serve_process,
    some_cardholders,
)

pytestmark = pytest.mark.slow  # a served process (`nba serve`) per module

READ_DEADLINE_S = 1.0


@dataclass(frozen=True)
class Live:
    host: str
    port: int
    log: Path
    cardholder_id: str
    var: Path

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def live(sample_deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    var = tmp_path_factory.mktemp("hostile")
    with serve_process(sample_deployment, var, read_deadline_s=READ_DEADLINE_S) as base:
        port = int(base.rsplit(":", 1)[1])
        yield Live("127.0.0.1", port, var / "serve.log", some_cardholders(sample_deployment)[0], var)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


def send_raw(live: Live, request: bytes, timeout_s: float = 10.0) -> Answer:
    """`request` as bytes on a new connection; the one answer read until it is complete or the server closes."""
    started = time.monotonic()
    with socket.create_connection((live.host, live.port), timeout=timeout_s) as sock:
        # The server may refuse before reading all of it; its answer is still there to read.
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            if sep and length and len(body) >= int(length.group(1)):
                break
    seconds = time.monotonic() - started
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), data[:300]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Answer(int(lines[0].split()[1]), headers, body, seconds)


def request_bytes(
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    key: str | None = AGENT,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test"] + ([f"X-API-Key: {key}"] if key else [])
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None and not any(
        k.lower() in ("content-length", "transfer-encoding") for k in headers or {}
    ):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def json_post(path: str, body: bytes, **headers: str) -> bytes:
    return request_bytes("POST", path, {"Content-Type": "application/json", **headers}, body)


def assert_clean(answer: Answer, live: Live) -> None:
    """No 5xx, no traceback, no internal detail; errors in the service's JSON format."""
    assert answer.status < 500, answer
    text = answer.body.decode("utf-8", "replace")
    for internal in ("Traceback", 'File "', str(live.var), "sqlite", "://", "site-packages", "Error:"):
        assert internal not in text, (internal, text[:500])
    if answer.status >= 400:
        assert answer.headers.get("content-type") == "application/json", answer
        body = json.loads(answer.body)
        assert set(body) == {"code", "detail", "request_id"} and body["code"] in set(ErrorCode), body


CH = "{ch}"  # replaced by a real cardholder id
SUGGESTIONS = f"/v1/cardholders/{CH}/suggestions"
# (name, request, expected status)
CORPUS: list[tuple[str, bytes, int]] = [
    # path tricks
    ("dot-dot", request_bytes("GET", "/v1/cardholders/../model/suggestions"), 404),
    ("encoded dot-dot", request_bytes("GET", "/v1/cardholders/%2e%2e/suggestions"), 404),
    ("encoded slash", request_bytes("GET", "/v1/cardholders/a%2fb/suggestions"), 404),
    ("NUL in id", request_bytes("GET", "/v1/cardholders/%00/suggestions"), 422),
    ("double slash", request_bytes("GET", "//v1/model"), 404),
    ("assets escape", request_bytes("GET", "/agent/assets/../../../../etc/passwd"), 404),
    ("encoded assets escape", request_bytes("GET", "/agent/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd"), 404),
    ("non-ASCII path", request_bytes("GET", "/v1/cardholders/%C3%A9/suggestions"), 422),
    ("raw non-ASCII path", b"GET /v1/cardholders/\xc3\xa9/suggestions HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    # huge and malformed ids
    ("65-character id", request_bytes("GET", SUGGESTIONS.replace(CH, "x" * 65)), 422),
    ("20 KB id", request_bytes("GET", SUGGESTIONS.replace(CH, "x" * 20_000)), 422),
    ("100 KB id", request_bytes("GET", SUGGESTIONS.replace(CH, "x" * 100_000)), 431),
    ("script id", request_bytes("GET", SUGGESTIONS.replace(CH, "%3Cscript%3E")), 422),
    ("unknown id", request_bytes("GET", SUGGESTIONS.replace(CH, "nobody-at-all")), 404),
    ("huge call id", request_bytes("GET", SUGGESTIONS + "?call_id=" + "c" * 5000), 422),
    ("bad X-Call-Id", request_bytes("GET", SUGGESTIONS, {"X-Call-Id": "a b;c"}), 422),
    ("bad outcome id", json_post("/v1/suggestions/s%20x/outcome", b'{"outcome": "accepted"}'), 422),
    # loose types in the query
    ("limit 3.0", request_bytes("GET", SUGGESTIONS + "?limit=3.0"), 422),
    ("limit with spaces", request_bytes("GET", SUGGESTIONS + "?limit=%203%20"), 422),
    ("limit 1e1", request_bytes("GET", SUGGESTIONS + "?limit=1e1"), 422),
    ("limit true", request_bytes("GET", SUGGESTIONS + "?limit=true"), 422),
    ("limit +3", request_bytes("GET", SUGGESTIONS + "?limit=+3"), 422),
    ("limit huge", request_bytes("GET", SUGGESTIONS + "?limit=99999999999999999999999"), 422),
    ("limit twice", request_bytes("GET", SUGGESTIONS + "?limit=1&limit=2"), 422),
    ("limit 3", request_bytes("GET", SUGGESTIONS + "?limit=3"), 200),
    ("reason NUL", request_bytes("GET", SUGGESTIONS + "?call_reason=%00"), 422),
    # loose types and duplicate keys in bodies
    *[
        (f"NPS {raw.decode()}", json_post("/v1/calls/c_none/nps", b'{"score": ' + raw + b"}"), 422)
        for raw in (b"true", b'"9"', b"1e1", b"-0.0", b"9.0", b"[9]", b"null", b"NaN", b"1e400")
    ],
    ("NPS 9 (valid, unknown call)", json_post("/v1/calls/c_none/nps", b'{"score": 9}'), 404),
    ("duplicate key", json_post("/v1/calls/c_none/nps", b'{"score": 9, "score": 3}'), 422),
    (
        "nested duplicate key",
        json_post("/v1/suggestions/s_x/outcome", b'{"outcome": "accepted", "x": {"a": 1, "a": 2}}'),
        422,
    ),
    ("outcome 1", json_post("/v1/suggestions/s_x/outcome", b'{"outcome": 1}'), 422),
    (
        "agent id number",
        json_post("/v1/suggestions/s_x/outcome", b'{"outcome": "accepted", "agent_id": 7}'),
        422,
    ),
    ("deep nesting", json_post("/v1/calls/c_none/nps", b"[" * 5000 + b"]" * 5000), 422),
    ("invalid UTF-8", json_post("/v1/calls/c_none/nps", b'{"score": "\xff\xfe"}'), 422),
    ("not an object", json_post("/v1/calls/c_none/nps", b'"score"'), 422),
    ("empty body", json_post("/v1/calls/c_none/nps", b""), 422),
    (
        "form body",
        request_bytes("POST", "/v1/calls/c_none/nps", {"Content-Type": "text/plain"}, b"score=9"),
        415,
    ),
    ("17 KB body", json_post("/v1/calls/c_none/nps", b'{"score": 9, "x": "' + b"a" * 17_000 + b'"}'), 413),
    (
        "chunked 20 KB body",
        json_post(
            "/v1/calls/c_none/nps",
            b"".join(b"%x\r\n%s\r\n" % (1000, b"a" * 1000) for _ in range(20)) + b"0\r\n\r\n",
            **{"Transfer-Encoding": "chunked"},
        ),
        413,
    ),
    ("negative length", json_post("/v1/calls/c_none/nps", b"{}", **{"Content-Length": "-1"}), 400),
    ("length not a number", json_post("/v1/calls/c_none/nps", b"{}", **{"Content-Length": "ten"}), 400),
    ("huge length", json_post("/v1/calls/c_none/nps", b"{}", **{"Content-Length": "9" * 30}), 400),
    # headers and request lines
    ("1 MB header", request_bytes("GET", "/healthz", {"X-Junk": "j" * 1_000_000}), 431),
    ("5,000 headers", request_bytes("GET", "/healthz", {f"X-H{i}": "v" * 10 for i in range(5000)}), 431),
    ("huge API key", request_bytes("GET", SUGGESTIONS, {"X-API-Key": "k" * 20_000}, key=None), 401),
    ("bad request id", request_bytes("GET", "/healthz", {"X-Request-Id": "<script>" * 10}), 200),
    ("header without a colon", b"GET /healthz HTTP/1.1\r\nHost: t\r\nnonsense\r\n\r\n", 400),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),
    ("bad version", b"GET /healthz HTTP/7.3\r\nHost: t\r\n\r\n", 400),
    ("bad method", b"G\x00T /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("unknown method", request_bytes("BREW", "/healthz"), 400),
]


@pytest.mark.parametrize(("name", "request_", "status"), CORPUS, ids=[c[0] for c in CORPUS])
def test_hostile_input_gets_a_clean_answer(live: Live, name: str, request_: bytes, status: int) -> None:
    answer = send_raw(live, request_.replace(CH.encode(), live.cardholder_id.encode()))
    assert answer.status == status, (name, answer)
    assert_clean(answer, live)


def test_a_body_that_never_arrives_is_cut_off_at_the_read_deadline(live: Live) -> None:
    promised = json_post("/v1/calls/c_none/nps", b'{"score": 9}', **{"Content-Length": "100"})
    answer = send_raw(live, promised)
    assert answer.status == 408 and answer.headers["connection"] == "close"
    assert READ_DEADLINE_S <= answer.seconds < READ_DEADLINE_S + 5
    assert_clean(answer, live)


def test_a_head_that_never_ends_is_cut_off_at_the_read_deadline(live: Live) -> None:
    answer = send_raw(live, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    assert answer.status == 408 and READ_DEADLINE_S <= answer.seconds < READ_DEADLINE_S + 5
    assert_clean(answer, live)


def test_the_service_still_answers_and_its_log_holds_no_ids_keys_or_tracebacks(live: Live) -> None:
    # After the corpus (module order: this runs last): still serving, and the log is clean.
    ok = httpx.get(
        f"{live.base}/v1/cardholders/{live.cardholder_id}/suggestions", headers={"X-API-Key": AGENT}
    )
    assert ok.status_code == 200
    assert httpx.get(f"{live.base}/v1/model", headers={"X-API-Key": ADMIN}).status_code == 200
    log = live.log.read_text()
    assert '"message": "request"' in log  # the requests were logged
    for secret in (live.cardholder_id, AGENT, ADMIN, "Traceback"):
        assert secret not in log, secret


# The fast path and the route: the same answers for the same queries.
QUERIES = [
    "",
    "limit=2",
    "limit=10&call_reason=travel_notice",
    "limit=3.0",
    "limit=%203%20",
    "limit=1e1",
    "limit=true",
    "limit=0",
    "limit=11",
    "limit=1&limit=2",
    "call_reason=chat",
    "call_reason=fraud",
    "call_id=desk-1",
    "call_id=a%20b",
    "call_id=" + "c" * 65,
    "page=2",
    "limit=",
]


def test_the_fast_path_and_the_route_answer_the_corpus_alike(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    answers: dict[bool, list[tuple[int, Any]]] = {}
    cardholder = some_cardholders(sample_deployment)[0]
    for fast in (True, False):
        settings = sample_deployment.settings(tmp_path / str(fast), api_keys=KEYS)
        with TestClient(create_app(settings, start_background=False, fast_path=fast)) as client:
            client.headers["X-API-Key"] = AGENT
            answers[fast] = []
            for query in QUERIES:
                for path in (
                    f"/v1/cardholders/{cardholder}/suggestions",
                    "/v1/cardholders/x%20y/suggestions",
                ):
                    response = client.get(f"{path}?{query}")
                    body = response.json()
                    if response.status_code == 200:  # ids are new on every call; the rest is the same
                        body["call_id"] = body["call_id"] if "call_id=" in query else None
                        for s in body["suggestions"]:
                            s["suggestion_id"] = None
                    else:
                        body.pop("request_id")
                    answers[fast].append((response.status_code, body))
    assert answers[True] == answers[False]
    assert {status for status, _ in answers[True]} == {200, 422}
