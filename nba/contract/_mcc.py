"""MCC map: mcc_map.csv ranges (shipped, then a data directory's overrides) → each code's spend category."""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from nba.errors import CatalogError, Problem, SchemaError, ValidationError, check_param
from nba.vocab import CATEGORY_INDEX, SPEND_CATEGORIES

# The shipped map, and a data directory's patch of it, go by one file name.
MCC_MAP_FILE: Final = "mcc_map.csv"
MCC_COLUMNS: Final = ("mcc_from", "mcc_to", "category")
N_CODES: Final = 10_000
MAX_CODE: Final = N_CODES - 1
DEFAULT_CATEGORY: Final = "other"
_CODE_RULE: Final = f"an int in [0, {MAX_CODE}]"
# A ValidationError keeps this many problems for its message and callers; `total` counts them all.
_MAX_PROBLEMS: Final = 100
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")

MccRange = tuple[int, int, str]


@dataclass(frozen=True, eq=False)
class MccMap:
    """The spend category of every merchant category code 0..9999.

    `category_index[mcc]` is the position of the code's category in `SPEND_CATEGORIES`; the array is
    a read-only int8 copy of what was passed in.
    """

    category_index: npt.NDArray[np.int8]

    def __post_init__(self) -> None:
        given = np.asarray(self.category_index)
        if given.shape != (N_CODES,) or given.dtype.kind not in "iu":
            raise CatalogError(
                f"`category_index` must be an integer array of {N_CODES} codes, "
                f"got dtype {given.dtype} and shape {given.shape}"
            )
        if given.min() < 0 or given.max() >= len(SPEND_CATEGORIES):
            bad = int(given[(given < 0) | (given >= len(SPEND_CATEGORIES))][0])
            raise CatalogError(
                f"`category_index` must hold ints in [0, {len(SPEND_CATEGORIES) - 1}], got {bad}"
            )
        frozen = given.astype(np.int8, copy=True)
        frozen.flags.writeable = False
        object.__setattr__(self, "category_index", frozen)

    @classmethod
    def from_ranges(cls, ranges: Iterable[MccRange]) -> MccMap:
        """Builds a map where each (mcc_from, mcc_to, category) range sets its codes, later ranges winning.

        Codes no range covers map to `other`. Ranges must be valid (as `read_mcc_ranges` returns them).
        """
        index = np.full(N_CODES, CATEGORY_INDEX[DEFAULT_CATEGORY], dtype=np.int8)
        return cls(_apply_ranges(index, ranges))

    def category_of(self, mcc: int) -> str:
        """Returns the spend category of one code; raises SchemaError if `mcc` is not an int in [0, 9999].

        >>> load_mcc_map().category_of(5812)
        'dining'
        """
        is_int = isinstance(mcc, int | np.integer) and not isinstance(mcc, bool)
        check_param("mcc", mcc, is_int and 0 <= mcc <= MAX_CODE, _CODE_RULE, SchemaError)
        return SPEND_CATEGORIES[int(self.category_index[int(mcc)])]

    def categories_of(self, mccs: npt.ArrayLike) -> npt.NDArray[np.int8]:
        """Returns the category index (into `SPEND_CATEGORIES`) of each code, vectorised.

        Raises SchemaError if `mccs` is not an integer array or holds a code outside [0, 9999].
        """
        codes = np.asarray(mccs)
        if codes.size == 0:
            return np.empty(codes.shape, dtype=np.int8)
        if codes.dtype.kind not in "iu":
            raise SchemaError(f"`mccs` must be an integer array, got dtype {codes.dtype}")
        outside = (codes < 0) | (codes > MAX_CODE)
        if outside.any():
            count = int(outside.sum())
            more = f" (and {count - 1} more outside the range)" if count > 1 else ""
            raise SchemaError(f"`mccs` must hold ints in [0, {MAX_CODE}], got {codes[outside][0]}{more}")
        result: npt.NDArray[np.int8] = self.category_index[codes]
        return result

    def codes_in(self, category: str) -> npt.NDArray[np.int16]:
        """Returns every code mapped to `category`, ascending; raises SchemaError for an unknown category."""
        if category not in CATEGORY_INDEX:
            raise SchemaError(
                f"`category` must be one of the {len(SPEND_CATEGORIES)} spend categories, got {category!r}"
            )
        return np.flatnonzero(self.category_index == CATEGORY_INDEX[category]).astype(np.int16)

    def to_ranges(self) -> list[MccRange]:
        """Returns the map as sorted (mcc_from, mcc_to, category) runs covering 0..9999, `other` included."""
        starts = np.concatenate(([0], np.flatnonzero(np.diff(self.category_index)) + 1))
        ends = np.concatenate((starts[1:] - 1, [MAX_CODE]))
        return [
            (int(start), int(end), SPEND_CATEGORIES[int(self.category_index[start])])
            for start, end in zip(starts, ends, strict=True)
        ]

    def to_arrow(self) -> pa.Table:
        """Returns one row per code, columns `mcc` (int16) and `category` (string), for joins in DuckDB."""
        names = np.array(SPEND_CATEGORIES, dtype=object)[self.category_index]
        return pa.table(
            {
                "mcc": pa.array(np.arange(N_CODES, dtype=np.int16), type=pa.int16()),
                "category": pa.array(names, type=pa.string()),
            }
        )


def read_mcc_ranges(path: Path) -> list[MccRange]:
    """Reads and validates an `mcc_map.csv` (columns mcc_from, mcc_to, category; extra columns ignored).

    Returns the ranges sorted by `mcc_from`; a file with only its header holds none. Raises CatalogError
    when the file cannot be read, ValidationError listing every problem (missing column, a code that is
    not an integer in [0, 9999], mcc_from > mcc_to, an unknown category, overlapping ranges) otherwise.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CatalogError(f"{path}: MCC map file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the MCC map ({exc})") from None
    file = path.name
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = [name.strip() for name in rows[0]] if rows else []
    missing = [name for name in MCC_COLUMNS if name not in header]
    if missing:
        found = ", ".join(name for name in header if name) or "none"
        message = f"missing column (columns found: {found})"
        raise ValidationError([Problem(file, message, column=name) for name in missing], len(missing))

    positions = {name: header.index(name) for name in MCC_COLUMNS}
    problems: list[Problem] = []
    parsed: list[tuple[int, MccRange]] = []
    for row, fields in enumerate(rows[1:], start=1):
        if not any(field.strip() for field in fields):
            continue
        if len(fields) > len(header):
            message = f"has {len(fields)} values but the header names {len(header)} columns"
            problems.append(Problem(file, message, row=row, line=row + 1))
            continue
        values = {name: (fields[i].strip() if i < len(fields) else "") for name, i in positions.items()}
        row_problems: list[tuple[str, str]] = []  # (column, message)
        codes: dict[str, int] = {}
        for name in ("mcc_from", "mcc_to"):
            code = _parse_code(values[name])
            if isinstance(code, str):
                row_problems.append((name, code))
            else:
                codes[name] = code
        category = values["category"]
        if category not in CATEGORY_INDEX:
            row_problems.append(("category", _unknown_category(category)))
        if len(codes) == 2 and codes["mcc_from"] > codes["mcc_to"]:
            row_problems.append(("mcc_from", f"`mcc_from` is greater than `mcc_to` ({codes['mcc_to']})"))
        problems.extend(
            Problem(file, message, row=row, column=column, value=values[column], line=row + 1)
            for column, message in row_problems
        )
        if not row_problems:
            parsed.append((row, (codes["mcc_from"], codes["mcc_to"], category)))

    problems.extend(_overlaps(file, parsed))
    if problems:
        problems.sort(key=lambda p: p.row or 0)
        raise ValidationError(problems[:_MAX_PROBLEMS], len(problems))
    return sorted(mcc_range for _, mcc_range in parsed)


def load_mcc_map(override: Path | None = None) -> MccMap:
    """Returns the shipped MCC map, patched by `override` (a data directory's `mcc_map.csv`) if given.

    The override's ranges replace the shipped categories of the codes they cover. Every code 0..9999
    maps to exactly one category, `other` where no range covers it. Raises CatalogError or
    ValidationError (see `read_mcc_ranges`) for a bad shipped or override file.
    """
    with as_file(files("nba.contract") / "data" / MCC_MAP_FILE) as shipped:
        ranges = read_mcc_ranges(shipped)
    if override is not None:
        ranges = ranges + read_mcc_ranges(override)
    return MccMap.from_ranges(ranges)


def _apply_ranges(index: npt.NDArray[np.int8], ranges: Iterable[MccRange]) -> npt.NDArray[np.int8]:
    for mcc_from, mcc_to, category in ranges:
        index[mcc_from : mcc_to + 1] = CATEGORY_INDEX[category]
    return index


def _parse_code(text: str) -> int | str:
    """Returns the code, or the message saying what is wrong with it."""
    if not text:
        return f"missing value; expected an integer MCC in [0, {MAX_CODE}]"
    if not _INTEGER.fullmatch(text):
        return f"not an integer; expected an MCC in [0, {MAX_CODE}]"
    code = int(text)
    if not 0 <= code <= MAX_CODE:
        return f"outside [0, {MAX_CODE}]: an MCC has at most four digits"
    return code


def _unknown_category(category: str) -> str:
    if not category:
        return f"missing value; expected one of the {len(SPEND_CATEGORIES)} spend categories"
    close = difflib.get_close_matches(category.lower(), SPEND_CATEGORIES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" ({', '.join(SPEND_CATEGORIES[:3])}, ..., other)"
    return f"not one of the {len(SPEND_CATEGORIES)} spend categories{hint}"


def _overlaps(file: str, parsed: list[tuple[int, MccRange]]) -> list[Problem]:
    """Returns one problem per range that overlaps an earlier-starting one, naming both rows."""
    problems: list[Problem] = []
    reach: tuple[int, MccRange] | None = None  # the range reaching furthest so far, with its row
    for row, mcc_range in sorted(parsed, key=lambda item: (item[1][0], item[0])):
        if reach is not None and mcc_range[0] <= reach[1][1]:
            other_row, other = reach
            # Reported on the later row of the two, naming the earlier one.
            at, named = max(row, other_row), min(row, other_row)
            mine, shown = (mcc_range, other) if at == row else (other, mcc_range)
            problems.append(
                Problem(
                    file,
                    f"range {mine[0]}–{mine[1]} overlaps row {named} ({shown[0]}–{shown[1]} {shown[2]})",
                    row=at,
                    column="mcc_from",
                    value=str(mine[0]),
                    line=at + 1,
                )
            )
        if reach is None or mcc_range[1] > reach[1][1]:
            reach = (row, mcc_range)
    return problems
