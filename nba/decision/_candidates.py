"""Candidates: a cardholder's product, usage and the call's reason → the benefits that may be suggested."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from nba.contract._catalog import Catalog
from nba.vocab import CALL_REASONS, SENSITIVE_CALL_REASONS

BoolArray = npt.NDArray[np.bool_]


def suitability_matrix(catalog: Catalog) -> BoolArray:
    """(benefits × call reasons): may this benefit be brought up on a call for this reason?

    Not when the catalog lists the reason in `unsuitable_call_reasons`; on sensitive calls (fraud,
    bereavement, hardship) only when the catalog lists it in `suitable_call_reasons`.
    """
    matrix = np.ones((len(catalog.benefits), len(CALL_REASONS)), dtype=bool)
    for i, benefit in enumerate(catalog.benefits):
        for j, reason in enumerate(CALL_REASONS):
            if reason in benefit.unsuitable_call_reasons or (
                reason in SENSITIVE_CALL_REASONS and reason not in benefit.suitable_call_reasons
            ):
                matrix[i, j] = False
    return matrix
