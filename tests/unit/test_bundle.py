"""Bundle: the holder encoding's categorical codes equal the encoder's own (slow, obvious) transform."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from nba.errors import ModelError
from nba.model._bundle import HolderEncoding
from nba.model._propensity import CategoryEncoder


def test_string_columns_are_encoded_like_the_encoder_does_it_row_by_row() -> None:
    regions = ["north", None, "atlantis", "west", "east", "", "North"]
    table = pa.table(
        {
            "region": pa.chunked_array([regions[:3], regions[3:]]),
            "decade": pa.array([1980, 1990, None, 1980, 2000, 1970, 1990]),
            "spend": pa.array([1.5, None, 3.0, 0.0, 2.0, -1.0, 7.0]),
        }
    )
    encoders = {
        "region": CategoryEncoder.fit("region", ["north", "south", "east", "west", ""]),
        "decade": CategoryEncoder.fit("decade", [1980, 1990]),
    }
    encoding = HolderEncoding(("spend", "region", "decade"), ("region", "decade"), encoders)
    X = encoding.encode(table)
    expected = np.column_stack(
        [
            [np.nan if v is None else v for v in table.column("spend").to_pylist()],
            encoders["region"].transform(regions),
            encoders["decade"].transform(table.column("decade").to_pylist()),
        ]
    )
    np.testing.assert_array_equal(X, expected)
    assert np.isnan(X[2, 1]) and np.isnan(X[6, 1])  # unseen ("atlantis", case differs): missing


def test_a_missing_column_is_named() -> None:
    encoding = HolderEncoding(("spend", "region"), (), {})
    with pytest.raises(ModelError, match=r"lacks columns the model needs: \['region'\]"):
        encoding.encode(pa.table({"spend": [1.0]}))
