"""Tests for nba.contract._mcc: the shipped MCC map against its iso18245 source, overrides and file validation."""

from __future__ import annotations

import csv
from importlib.resources import files
from itertools import pairwise
from pathlib import Path

import duckdb
import iso18245
import numpy as np
import pyarrow as pa
import pytest

import nba.contract._mcc
from nba.contract._mcc import MccMap, load_mcc_map, read_mcc_ranges
from nba.errors import CatalogError, SchemaError, ValidationError
from nba.vocab import CATEGORY_INDEX, SPEND_CATEGORIES
from training.build_mcc_map import build_mcc_ranges, write_mcc_map

SHIPPED_PATH = Path(nba.contract._mcc.__file__).with_name("data") / "mcc_map.csv"
HEADER = "mcc_from,mcc_to,category\n"


@pytest.fixture(scope="module")
def shipped() -> MccMap:
    return load_mcc_map()


@pytest.fixture(scope="module")
def built_ranges() -> list[tuple[int, int, str]]:
    return build_mcc_ranges()


def naive_category(ranges: list[tuple[int, int, str]], code: int) -> str:
    """The category of one code by walking every range; `other` when none covers it."""
    covering = [category for first, last, category in ranges if first <= code <= last]
    assert len(covering) <= 1, f"code {code} is in {len(covering)} ranges"
    return covering[0] if covering else "other"


def write_map(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "mcc_map.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


# --- the shipped map and its source ------------------------------------------------------------------


def test_shipped_file_is_what_the_build_produces_now(
    built_ranges: list[tuple[int, int, str]], tmp_path: Path
) -> None:
    assert read_mcc_ranges(SHIPPED_PATH) == built_ranges
    regenerated = tmp_path / "mcc_map.csv"
    write_mcc_map(built_ranges, regenerated)
    assert SHIPPED_PATH.read_bytes() == regenerated.read_bytes()


def test_shipped_ranges_are_compact_sorted_and_leave_out_other(
    built_ranges: list[tuple[int, int, str]],
) -> None:
    assert built_ranges == sorted(built_ranges)
    for (_, last, category), (first, _, next_category) in pairwise(built_ranges):
        assert last < first, "ranges overlap"
        assert not (last + 1 == first and category == next_category), "adjacent ranges not merged"
    assert all(category != "other" for _, _, category in built_ranges)
    assert {category for _, _, category in built_ranges} == set(SPEND_CATEGORIES) - {"other"}


def test_shipped_file_is_in_package_data() -> None:
    text = (files("nba.contract") / "data" / "mcc_map.csv").read_text(encoding="utf-8")
    assert text.startswith(HEADER)
    assert text == SHIPPED_PATH.read_text(encoding="utf-8")


def test_every_code_maps_to_exactly_one_category(shipped: MccMap) -> None:
    ranges = read_mcc_ranges(SHIPPED_PATH)
    expected = [naive_category(ranges, code) for code in range(10_000)]
    assert [shipped.category_of(code) for code in range(10_000)] == expected
    assert shipped.category_index.shape == (10_000,)
    assert shipped.category_index.dtype == np.int8
    sizes = [len(shipped.codes_in(category)) for category in SPEND_CATEGORIES]
    assert sum(sizes) == 10_000
    assert np.array_equal(
        np.sort(np.concatenate([shipped.codes_in(c) for c in SPEND_CATEGORIES])), np.arange(10_000)
    )


def iso18245_private_ranges() -> list[tuple[int, int]]:
    text = (files("iso18245") / "data" / "private_ranges.csv").read_text(encoding="utf-8")
    return [(int(row[0]), int(row[1])) for row in list(csv.reader(text.splitlines()))[1:]]


def test_every_mapped_code_exists_in_iso18245(shipped: MccMap) -> None:
    listed = {int(mcc.mcc) for mcc in iso18245.get_all_mccs()}
    private = iso18245_private_ranges()
    assert private == [(3000, 3350), (3351, 3500), (3501, 3999)]
    mapped = np.flatnonzero(shipped.category_index != CATEGORY_INDEX["other"])
    unknown = [int(c) for c in mapped if int(c) not in listed and not any(a <= c <= b for a, b in private)]
    assert unknown == []
    assert len(mapped) > 1000  # the private block alone holds 1,000 codes


KNOWN_CODES = [
    *[(code, "dining") for code in (5811, 5812, 5813, 5814)],
    *[(code, "groceries") for code in (5411, 5422, 5441, 5451, 5462, 5499)],
    *[(code, "air_travel") for code in (3000, 3001, 3175, 3350, 4511)],
    *[(code, "lodging") for code in (3501, 3750, 3999, 7011)],
    *[(code, "car_rental") for code in (3351, 3400, 3500, 7512, 7513, 7519)],
    *[(code, "transit") for code in (4111, 4112, 4121, 4131, 4784, 4789, 7523)],
    *[(code, "travel_agency") for code in (4722, 4723)],
    *[(code, "gas") for code in (5541, 5542, 5983)],
    *[(code, "streaming_digital") for code in (5815, 5816, 5817, 5818, 4899)],
    *[(code, "general_retail") for code in (5311, 5331, 5399, 5651, 5691, 5699, 5732, 5941, 5945, 5999)],
    *[(code, "online_retail") for code in (5964, 5965, 5966, 5967, 5969)],
    *[(code, "entertainment") for code in (7832, 7922, 7929, 7941, 7991, 7996, 7997, 7999)],
    *[(code, "telecom_utilities") for code in (4812, 4814, 4816, 4821, 4900)],
    *[(code, "health") for code in (5912, 5975, 5976, 8011, 8021, 8031, 8041, 8042, 8043, 8049)],
    *[(code, "health") for code in (8050, 8062, 8071, 8099)],
    *[(code, "home_improvement") for code in (780, 1520, 1711, 1731, 1740, 1750, 1761, 1771)],
    *[(code, "home_improvement") for code in (5200, 5211, 5231, 5251, 5261, 5712, 5713, 5714, 5719)],
    *[(code, "other") for code in (0, 6011, 6051, 7995, 8734, 9311, 9402, 9999, 4829, 5511)],
]


@pytest.mark.parametrize(("mcc", "category"), KNOWN_CODES)
def test_well_known_codes(shipped: MccMap, mcc: int, category: str) -> None:
    assert shipped.category_of(mcc) == category


# --- MccMap ------------------------------------------------------------------------------------------


def test_categories_of_matches_category_of(shipped: MccMap) -> None:
    codes = np.array([5812, 3001, 0, 9999, 5411, 5812], dtype=np.int64)
    got = shipped.categories_of(codes)
    assert got.dtype == np.int8
    assert [SPEND_CATEGORIES[i] for i in got] == [shipped.category_of(int(c)) for c in codes]
    assert shipped.categories_of(np.array([], dtype=np.int16)).shape == (0,)


@pytest.mark.parametrize(
    ("mccs", "match"),
    [
        (np.array([5812, 12000, -3]), r"`mccs` must hold ints in \[0, 9999\], got 12000 \(and 1 more"),
        (np.array([5812.0]), r"`mccs` must be an integer array, got dtype float64"),
    ],
)
def test_categories_of_rejects_bad_codes(shipped: MccMap, mccs: np.ndarray, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        shipped.categories_of(mccs)


@pytest.mark.parametrize(
    ("mcc", "shown"), [(12000, "12000"), (10_000, "10000"), (-1, "-1"), ("5812", "'5812'"), (True, "True")]
)
def test_category_of_rejects_codes_outside_the_range(shipped: MccMap, mcc: object, shown: str) -> None:
    with pytest.raises(SchemaError, match=rf"^`mcc` must be an int in \[0, 9999\], got {shown}$"):
        shipped.category_of(mcc)  # type: ignore[arg-type]


def test_to_ranges_covers_every_code_and_round_trips(shipped: MccMap) -> None:
    ranges = shipped.to_ranges()
    assert ranges[0][0] == 0 and ranges[-1][1] == 9999
    for (_, last, category), (first, _, next_category) in pairwise(ranges):
        assert first == last + 1 and category != next_category
    assert [r for r in ranges if r[2] != "other"] == read_mcc_ranges(SHIPPED_PATH)
    assert np.array_equal(MccMap.from_ranges(ranges).category_index, shipped.category_index)


def test_to_arrow_joins_transactions_in_duckdb(shipped: MccMap) -> None:
    table = shipped.to_arrow()
    assert table.schema == pa.schema([("mcc", pa.int16()), ("category", pa.string())])
    assert table.num_rows == 10_000
    assert table.column("mcc").to_pylist() == list(range(10_000))
    transactions = pa.table({"mcc": [5812, 5812, 5411, 3001], "amount": [10.0, 5.0, 20.0, 300.0]})
    con = duckdb.connect()
    con.register("mcc_map", table)
    con.register("transactions", transactions)
    rows = con.execute(
        "SELECT category, SUM(amount) FROM transactions JOIN mcc_map USING (mcc) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    con.close()
    assert rows == [("air_travel", 300.0), ("dining", 15.0), ("groceries", 20.0)]


def test_codes_in(shipped: MccMap) -> None:
    assert shipped.codes_in("dining").tolist() == [5811, 5812, 5813, 5814]
    assert shipped.codes_in("air_travel").tolist() == [*range(3000, 3351), 4511, 4582]
    with pytest.raises(SchemaError, match=r"`category` must be one of the 16 spend categories, got 'food'"):
        shipped.codes_in("food")


def test_map_is_read_only(shipped: MccMap) -> None:
    with pytest.raises(ValueError, match="read-only"):
        shipped.category_index[5812] = 0


def test_map_rejects_a_bad_index() -> None:
    with pytest.raises(CatalogError, match=r"got 16"):
        MccMap(np.full(10_000, 16, dtype=np.int8))
    with pytest.raises(CatalogError, match=r"shape \(10,\)"):
        MccMap(np.zeros(10, dtype=np.int8))


# --- overrides ---------------------------------------------------------------------------------------


def test_override_replaces_the_codes_it_covers(shipped: MccMap, tmp_path: Path) -> None:
    path = write_map(tmp_path, "5812,5812,groceries\n9000,9005,dining\n3100,3100,other\n")
    patched = load_mcc_map(path)
    assert patched.category_of(5812) == "groceries"
    assert patched.category_of(5811) == "dining"
    assert [patched.category_of(c) for c in range(8999, 9007)] == ["other", *["dining"] * 6, "other"]
    assert patched.category_of(3100) == "other"
    changed = np.flatnonzero(patched.category_index != shipped.category_index).tolist()
    assert changed == [3100, 5812, *range(9000, 9006)]


def test_header_only_override_changes_nothing(shipped: MccMap, tmp_path: Path) -> None:
    path = write_map(tmp_path, "")
    assert read_mcc_ranges(path) == []
    assert np.array_equal(load_mcc_map(path).category_index, shipped.category_index)


def test_override_with_extra_columns_blank_lines_and_padding(tmp_path: Path) -> None:
    path = write_map(
        tmp_path, "0742, 0743 ,groceries,wine\n\n5000,5001,gas,\n", header="mcc_from,mcc_to,category,note\n"
    )
    assert read_mcc_ranges(path) == [(742, 743, "groceries"), (5000, 5001, "gas")]


def test_missing_override_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"mcc_map\.csv: MCC map file not found"):
        load_mcc_map(tmp_path / "mcc_map.csv")


# --- validation --------------------------------------------------------------------------------------

WHERE = r"^mcc_map\.csv, row {row} \(line {line}\), column {column}: {value}: "

BAD_FILES = [
    pytest.param(
        "mcc_from,mcc_to,cat\n5812,5812,dining\n",
        r"^mcc_map\.csv, column category: missing column \(columns found: mcc_from, mcc_to, cat\)$",
        id="missing-column",
    ),
    pytest.param(
        "", r"^mcc_map\.csv, column mcc_from: missing column \(columns found: none\)", id="empty-file"
    ),
    pytest.param(
        HEADER + "58x2,5812,dining\n",
        WHERE.format(row=1, line=2, column="mcc_from", value="'58x2'") + r"not an integer",
        id="not-an-integer",
    ),
    pytest.param(
        HEADER + "5812,5812.0,dining\n",
        WHERE.format(row=1, line=2, column="mcc_to", value=r"'5812\.0'") + r"not an integer",
        id="decimal",
    ),
    pytest.param(
        HEADER + ",5812,dining\n",
        WHERE.format(row=1, line=2, column="mcc_from", value="''") + r"missing value",
        id="empty-code",
    ),
    pytest.param(
        HEADER + "5812,5812,dining\n5800,12000,dining\n",
        WHERE.format(row=2, line=3, column="mcc_to", value="'12000'") + r"outside \[0, 9999\]",
        id="code-too-big",
    ),
    pytest.param(
        HEADER + "-1,5,dining\n",
        WHERE.format(row=1, line=2, column="mcc_from", value="'-1'") + r"outside \[0, 9999\]",
        id="negative-code",
    ),
    pytest.param(
        HEADER + "5900,5800,dining\n",
        WHERE.format(row=1, line=2, column="mcc_from", value="'5900'")
        + r"`mcc_from` is greater than `mcc_to` \(5800\)$",
        id="from-after-to",
    ),
    pytest.param(
        HEADER + "5812,5812,restaurants\n",
        WHERE.format(row=1, line=2, column="category", value="'restaurants'")
        + r"not one of the 16 spend categories",
        id="unknown-category",
    ),
    pytest.param(
        HEADER + "5812,5812,Dining\n",
        WHERE.format(row=1, line=2, column="category", value="'Dining'")
        + r"not one of the 16 spend categories; did you mean 'dining'\?$",
        id="category-typo",
    ),
    pytest.param(
        HEADER + "5812,5812,\n",
        WHERE.format(row=1, line=2, column="category", value="''") + r"missing value",
        id="empty-category",
    ),
    pytest.param(
        HEADER + "5800,5815,dining\n5900,5999,general_retail\n5813,5820,groceries\n",
        WHERE.format(row=3, line=4, column="mcc_from", value="'5813'")
        + r"range 5813–5820 overlaps row 1 \(5800–5815 dining\)$",
        id="overlap",
    ),
    pytest.param(
        HEADER + "5813,5820,groceries\n5800,5815,dining\n",
        WHERE.format(row=2, line=3, column="mcc_from", value="'5800'")
        + r"range 5800–5815 overlaps row 1 \(5813–5820 groceries\)$",
        id="overlap-later-row-starts-first",
    ),
    pytest.param(
        HEADER + "5812,5812,dining\n5812,5812,dining\n",
        WHERE.format(row=2, line=3, column="mcc_from", value="'5812'")
        + r"range 5812–5812 overlaps row 1 \(5812–5812 dining\)$",
        id="duplicate-row",
    ),
    pytest.param(
        HEADER + "5812,5812,dining,extra\n",
        r"^mcc_map\.csv, row 1 \(line 2\): has 4 values but the header names 3 columns$",
        id="too-many-values",
    ),
    pytest.param(
        HEADER + "5812,5812,dining\n\n58x,5813,dining\n",
        WHERE.format(row=3, line=4, column="mcc_from", value="'58x'") + r"not an integer",
        id="blank-line-still-counts",
    ),
]


@pytest.mark.parametrize(("content", "match"), BAD_FILES)
def test_bad_file_is_rejected_with_where_and_what(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "mcc_map.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValidationError, match=match):
        read_mcc_ranges(path)
    with pytest.raises(ValidationError, match=match):
        load_mcc_map(path)


def test_every_problem_is_collected(tmp_path: Path) -> None:
    body = "x,5,dining\n5,3,dining\n7,8,food\n100,200,gas\n150,160,gas\n300,300,gas\n"
    path = write_map(tmp_path, body)
    with pytest.raises(ValidationError) as caught:
        read_mcc_ranges(path)
    problems = caught.value.problems
    assert caught.value.total == len(problems) == 4
    assert [(p.row, p.line, p.column, p.value) for p in problems] == [
        (1, 2, "mcc_from", "x"),
        (2, 3, "mcc_from", "5"),
        (3, 4, "category", "food"),
        (5, 6, "mcc_from", "150"),
    ]
    assert {p.file for p in problems} == {"mcc_map.csv"}
    assert str(caught.value).endswith("(and 3 more problems)")


def test_problems_kept_are_capped_but_all_counted(tmp_path: Path) -> None:
    path = write_map(tmp_path, "x,1,dining\n" * 250)
    with pytest.raises(ValidationError) as caught:
        read_mcc_ranges(path)
    assert caught.value.total == 250
    assert len(caught.value.problems) == 100
