"""Error codes: `api.errors.ErrorCode` → the table of codes in docs/service.md, which must list exactly them."""

from __future__ import annotations

import re
from pathlib import Path

from api.errors import ANSWER_OF, CODE_OF_STATUS, ErrorCode, code_of_status

SERVICE_DOC = Path(__file__).resolve().parents[2] / "docs" / "service.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| ([0-9, ]+) \| .+ \|$")


def documented_codes() -> dict[str, set[int]]:
    """The docs' table of error codes: code → the statuses it is given with."""
    text = SERVICE_DOC.read_text()
    table = text.split("### Error codes", 1)[1]
    rows = {}
    for line in table.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = {int(status) for status in match.group(2).split(",")}
    return rows


def test_the_docs_list_every_error_code_and_no_other() -> None:
    assert set(documented_codes()) == {code.value for code in ErrorCode}


def test_each_code_is_given_with_the_status_the_docs_say() -> None:
    documented = documented_codes()
    given = [(status, code) for _, status, code in ANSWER_OF] + [
        (status, code) for status, code in CODE_OF_STATUS.items()
    ]
    given += [(status, code_of_status(status)) for status in (400, 431, 500)]  # the HTTP layer's own
    for status, code in given:
        assert status in documented[code.value], (code, status)
