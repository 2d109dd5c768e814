"""Errors: the one form of a parameter error (`check_param`) names the parameter, the rule and the value."""

from __future__ import annotations

import numpy as np
import pytest

from nba.errors import DataError, check_param


@pytest.mark.parametrize(
    ("value", "rule", "error", "message"),
    [
        (0, "an int in [1, 10]", ValueError, r"^`top_k` must be an int in \[1, 10\], got 0$"),
        ("3", "an int in [1, 10]", ValueError, r"^`top_k` must be an int in \[1, 10\], got '3'$"),
        (np.int64(11), "an int in [1, 10]", ValueError, r"^`top_k` must be an int in \[1, 10\], got 11$"),
        (np.float32(0.5), "a float in [1, 3]", DataError, r"^`top_k` must be a float in \[1, 3\], got 0.5$"),
        (True, "a positive integer", DataError, r"^`top_k` must be a positive integer, got True$"),
    ],
)
def test_a_bad_parameter_is_named_with_its_rule_and_value(
    value: object, rule: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_param("top_k", value, False, rule, error)


def test_a_good_parameter_passes() -> None:
    check_param("top_k", 3, True, "an int in [1, 10]")
