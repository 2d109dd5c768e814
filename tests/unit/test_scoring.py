"""Scoring: the scorer is chosen by name, once, and a name that is not one is refused, naming the field."""

from __future__ import annotations

import pytest

from nba.decision import EngineConfig
from nba.decision._scoring import SCORERS, make_scorer


def test_the_scorers_are_named_and_tree_walk_is_the_default() -> None:
    assert SCORERS == ("tree_walk", "booster")
    assert EngineConfig().scorer == "tree_walk"
    assert EngineConfig(scorer="booster").scorer == "booster"


def test_an_unknown_scorer_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"`scorer` must be one of tree_walk, booster, got 'fast'"):
        EngineConfig(scorer="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`scorer` must be one of tree_walk, booster, got 'fast'"):
        make_scorer("fast", bundle=None)  # type: ignore[arg-type]
