"""Catalog: the shipped catalog is complete, and every malformed catalog gets a message naming the place."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from nba.contract._catalog import DEFAULT_CATALOG_PATH, PLACEHOLDER_KINDS, load_catalog, parse_catalog
from nba.errors import CatalogError, ValidationError
from nba.vocab import BENEFIT_KINDS


def _raw() -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    assert isinstance(raw, dict)
    return raw


def test_default_catalog_describes_products_and_benefits_of_every_kind() -> None:
    catalog = load_catalog()
    assert len(catalog.products) >= 4
    assert len(catalog.benefits) >= 20
    assert {b.kind for b in catalog.benefits} == set(BENEFIT_KINDS)
    for benefit in catalog.benefits:
        assert benefit.spend_categories, benefit.id
        assert benefit.talking_point
    on_some_card = {b for p in catalog.products for b in p.benefits}
    assert on_some_card == set(catalog.benefit_by_id), "every benefit is on at least one card"


def test_default_catalog_has_no_brand_names() -> None:
    text = DEFAULT_CATALOG_PATH.read_text().lower()
    for brand in (
        "visa",
        "mastercard",
        "amex",
        "american express",
        "chase",
        "citi",
        "netflix",
        "uber",
        "priority pass",
    ):
        assert not re.search(rf"\b{brand}\b", text), brand


def test_benefits_of_follows_product_order() -> None:
    catalog = load_catalog()
    gold = catalog.product_by_id["gold"]
    assert [b.id for b in catalog.benefits_of("gold")] == list(gold.benefits)


def _with(path: str, value: Any) -> dict[str, Any]:
    """The default catalog with one field replaced; `path` like 'benefits.0.earn_rate'."""
    raw = copy.deepcopy(_raw())
    node: Any = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    elif value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


_DELETE = object()

BAD_CATALOGS = [
    (
        "products.0.benefits",
        ["dining_4x", "teleport_9x"],
        r"product 'everyday' names unknown benefit 'teleport_9x'",
    ),
    (
        "benefits.0.talking_point",
        "Earn {bonus_points} points",
        r"benefits\[0\] \(dining_4x\)\.talking_point.*unknown placeholder \{bonus_points\}",
    ),
    (
        "benefits.0.talking_point",
        "Credit of {annual_credit_usd}",
        r"uses \{annual_credit_usd\}, which a earn_rate benefit cannot fill",
    ),
    ("benefits.0.talking_point", "You spend {spend_90d_usd:.2f}", r"formats \{spend_90d_usd\} itself"),
    ("benefits.0.talking_point", "Broken {brace", r"not a valid template"),
    ("benefits.0.earn_rate", _DELETE, r"dining_4x\).*a earn_rate benefit needs `earn_rate`"),
    (
        "benefits.0.earn_rate",
        -2,
        r"benefits\[0\] \(dining_4x\)\.earn_rate: '-2': Input should be greater than 0",
    ),
    (
        "benefits.0.kind",
        "lottery",
        r"\.kind: 'lottery': Input should be 'earn_rate', 'statement_credit', 'perk' or 'protection'",
    ),
    (
        "benefits.0.spend_categories",
        ["dining", "yachts"],
        r"field benefits\[0\] \(dining_4x\)\.spend_categories\[1\]: 'yachts'",
    ),
    (
        "benefits.0.unsuitable_call_reasons",
        ["weather"],
        r"unsuitable_call_reasons\[0\]: 'weather': Input should be 'general'",
    ),
    (
        "benefits.0.id",
        "Dining 4X!",
        r"benefits\[0\] \(Dining 4X!\)\.id: 'Dining 4X!': String should match pattern",
    ),
    ("benefits.1.id", "dining_4x", r"benefit id 'dining_4x' is defined twice"),
    (
        "benefits.0.annual_credit_usd",
        50,
        r"`annual_credit_usd` is only for statement_credit benefits, not earn_rate",
    ),
    (
        "benefits.0.colour",
        "red",
        r"benefits\[0\] \(dining_4x\)\.colour: 'red': Extra inputs are not permitted",
    ),
    ("point_value_usd", 0, r"point_value_usd: '0': Input should be greater than 0"),
    (
        "products.1.base_earn_rate",
        4,
        r"benefit 'dining_4x' earns 4x, not more than product 'gold'.s base rate 4x",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    BAD_CATALOGS,
    ids=[f"{p}={'(deleted)' if v is _DELETE else v}" for p, v, _ in BAD_CATALOGS],
)
def test_bad_catalog_is_reported_with_its_place(path: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        parse_catalog(_with(path, value))
    assert str(info.value).startswith("catalog.yaml")


def test_every_problem_is_reported_not_only_the_first() -> None:
    raw = _with("benefits.0.earn_rate", -2)
    raw["benefits"][1]["kind"] = "lottery"
    with pytest.raises(ValidationError) as info:
        parse_catalog(raw)
    assert info.value.total >= 2
    assert "(and" in str(info.value)


def test_sensitive_reason_cannot_be_both_suitable_and_unsuitable() -> None:
    raw = _with("benefits.0.suitable_call_reasons", ["dispute"])
    with pytest.raises(ValidationError, match=r"both suitable and unsuitable: \['dispute'\]"):
        parse_catalog(raw)


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalog file not found"):
        load_catalog(tmp_path / "nope.yaml")
    broken = tmp_path / "catalog.yaml"
    broken.write_text("products: [unclosed\n")
    with pytest.raises(CatalogError, match=r"catalog.yaml, line \d+: not valid YAML"):
        load_catalog(broken)
    broken.write_text("- just a list\n")
    with pytest.raises(ValidationError, match="must be a mapping"):
        load_catalog(broken)


def test_fingerprint_ignores_wording_but_not_rates() -> None:
    base = parse_catalog(_raw()).model_fingerprint()
    reworded = parse_catalog(
        _with("benefits.0.talking_point", "Dining earns {earn_rate}x on your {product_name}.")
    )
    assert reworded.model_fingerprint() == base
    rerated = parse_catalog(_with("benefits.0.earn_rate", 5))
    assert rerated.model_fingerprint() != base


def test_placeholders_listed_in_the_design_are_known() -> None:
    assert set(PLACEHOLDER_KINDS) == {
        "benefit_name",
        "product_name",
        "earn_rate",
        "annual_credit_usd",
        "nominal_value_usd",
        "spend_90d_usd",
        "spend_365d_usd",
        "est_annual_spend_usd",
        "est_annual_value_usd",
        "top_category",
        "top_category_spend_90d_usd",
    }
