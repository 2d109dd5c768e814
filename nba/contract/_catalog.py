"""Catalog: catalog.yaml (products, benefits, talking-point templates) → a validated, typed Catalog."""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from nba.errors import CatalogError, Problem, ValidationError
from nba.vocab import BENEFIT_KINDS, BenefitKind, CallReason, SpendCategory

CATALOG_FILE: Final = "catalog.yaml"
DEFAULT_CATALOG_PATH: Final = Path(__file__).resolve().parents[2] / "data_samples" / CATALOG_FILE

# Fields the engine fills in a talking point, and which benefit kinds can fill each one.
_ALL_KINDS: Final = frozenset(BENEFIT_KINDS)
PLACEHOLDER_KINDS: Final[dict[str, frozenset[str]]] = {
    "benefit_name": _ALL_KINDS,
    "product_name": _ALL_KINDS,
    "earn_rate": frozenset({"earn_rate"}),
    "annual_credit_usd": frozenset({"statement_credit"}),
    "nominal_value_usd": frozenset({"perk", "protection"}),
    "spend_90d_usd": _ALL_KINDS,
    "spend_365d_usd": _ALL_KINDS,
    "est_annual_spend_usd": _ALL_KINDS,
    "est_annual_value_usd": _ALL_KINDS,
    "top_category": _ALL_KINDS,
    "top_category_spend_90d_usd": _ALL_KINDS,
}
# Placeholders about spend in the benefit's own categories need the benefit to name some.
_CATEGORY_PLACEHOLDERS: Final = frozenset({"spend_90d_usd", "spend_365d_usd", "est_annual_spend_usd"})

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)]

# PyYAML's safe loader in C (libyaml, in PyYAML's wheels) when it is there: the same documents and
# errors, ~10x faster than the pure-Python one (the catalog is read at every service start and reload).
SAFE_YAML_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Benefit(_Frozen):
    """One benefit a card includes, with what it is worth and how an agent talks about it."""

    id: Identifier
    name: Text
    kind: BenefitKind
    spend_categories: tuple[SpendCategory, ...] = ()
    earn_rate: Annotated[float, Field(gt=0, le=100)] | None = None
    annual_credit_usd: Annotated[float, Field(gt=0, le=100_000)] | None = None
    nominal_value_usd: Annotated[float, Field(ge=0, le=100_000)] | None = None
    requires_enrollment: bool = False
    unsuitable_call_reasons: tuple[CallReason, ...] = ()
    # Sensitive calls (fraud, bereavement, hardship) pitch nothing unless listed here.
    suitable_call_reasons: tuple[CallReason, ...] = ()
    lever: Annotated[float, Field(gt=0, le=100)] = 1.0
    talking_point: Annotated[str, StringConstraints(min_length=1, max_length=600)]

    @model_validator(mode="after")
    def _check_kind_fields(self) -> Benefit:
        needed = {"earn_rate": "earn_rate", "statement_credit": "annual_credit_usd"}
        needed.update(perk="nominal_value_usd", protection="nominal_value_usd")
        for kind_field in ("earn_rate", "annual_credit_usd", "nominal_value_usd"):
            value = getattr(self, kind_field)
            if needed[self.kind] == kind_field and value is None:
                raise ValueError(f"a {self.kind} benefit needs `{kind_field}`")
            if needed[self.kind] != kind_field and value is not None:
                raise ValueError(
                    f"`{kind_field}` is only for {_kinds_of(kind_field)} benefits, not {self.kind}"
                )
        if self.kind == "earn_rate" and not self.spend_categories:
            raise ValueError("an earn_rate benefit needs at least one of `spend_categories`")
        both = set(self.unsuitable_call_reasons) & set(self.suitable_call_reasons)
        if both:
            raise ValueError(f"call reasons both suitable and unsuitable: {sorted(both)}")
        return self

    @field_validator("talking_point")
    @classmethod
    def _check_template(cls, template: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself is wrong; that error says enough
            return template
        problems = template_problems(template, kind, bool(info.data.get("spend_categories")))
        if problems:
            raise ValueError("; ".join(problems))
        return template

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The placeholders the talking point uses, in order of first use."""
        return tuple(dict.fromkeys(_fields_of(self.talking_point)))


def _kinds_of(kind_field: str) -> str:
    return {"earn_rate": "earn_rate", "annual_credit_usd": "statement_credit"}.get(
        kind_field, "perk and protection"
    )


def _fields_of(template: str) -> Iterable[str]:
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            yield field


def template_problems(template: str, kind: str, has_categories: bool) -> list[str]:
    """What is wrong with a talking-point template for a benefit of `kind`; empty when it is fine."""
    problems: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"]
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDER_KINDS:
            known = ", ".join("{" + name + "}" for name in PLACEHOLDER_KINDS)
            problems.append(f"uses unknown placeholder {{{field}}}; known: {known}")
        elif kind not in PLACEHOLDER_KINDS[field]:
            problems.append(f"uses {{{field}}}, which a {kind} benefit cannot fill")
        elif field in _CATEGORY_PLACEHOLDERS and not has_categories:
            problems.append(f"uses {{{field}}} but the benefit has no spend_categories")
        if spec or conversion:
            problems.append(f"formats {{{field}}} itself; the engine formats numbers, write {{{field}}}")
    return problems


class Product(_Frozen):
    """A card product and the benefits it includes."""

    id: Identifier
    name: Text
    annual_fee_usd: Annotated[float, Field(ge=0, le=100_000)]
    base_earn_rate: Annotated[float, Field(ge=0, le=100)]
    benefits: tuple[Identifier, ...]


class Catalog(_Frozen):
    """The whole benefit catalog: what each card includes and how it is talked about."""

    point_value_usd: Annotated[float, Field(gt=0, le=100)]
    products: tuple[Product, ...] = Field(min_length=1)
    benefits: tuple[Benefit, ...] = Field(min_length=1)

    @cached_property
    def benefit_by_id(self) -> dict[str, Benefit]:
        return {benefit.id: benefit for benefit in self.benefits}

    @cached_property
    def product_by_id(self) -> dict[str, Product]:
        return {product.id: product for product in self.products}

    def benefits_of(self, product_id: str) -> tuple[Benefit, ...]:
        """The benefits a product includes, in catalog order of the product."""
        product = self.product_by_id[product_id]
        return tuple(self.benefit_by_id[benefit_id] for benefit_id in product.benefits)

    def model_fingerprint(self) -> str:
        """SHA-256 of the fields a trained model depends on (ids, kinds, categories, rates, credits).

        Wording, names and levers can change without retraining; anything in here cannot.
        """
        relevant = {
            "point_value_usd": self.point_value_usd,
            "products": [
                {"id": p.id, "base_earn_rate": p.base_earn_rate, "benefits": sorted(p.benefits)}
                for p in sorted(self.products, key=lambda p: p.id)
            ],
            "benefits": [
                b.model_dump(
                    include={
                        "id",
                        "kind",
                        "spend_categories",
                        "earn_rate",
                        "annual_credit_usd",
                        "nominal_value_usd",
                        "requires_enrollment",
                    }
                )
                for b in sorted(self.benefits, key=lambda b: b.id)
            ],
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _check_references(catalog: Catalog) -> list[str]:
    problems: list[str] = []
    for kind, ids in (
        ("product", [p.id for p in catalog.products]),
        ("benefit", [b.id for b in catalog.benefits]),
    ):
        seen: set[str] = set()
        for item_id in ids:
            if item_id in seen:
                problems.append(f"{kind} id {item_id!r} is defined twice")
            seen.add(item_id)
    for product in catalog.products:
        for benefit_id in product.benefits:
            if benefit_id not in catalog.benefit_by_id:
                problems.append(f"product {product.id!r} names unknown benefit {benefit_id!r}")
        if len(set(product.benefits)) != len(product.benefits):
            problems.append(f"product {product.id!r} lists a benefit twice")
    for benefit in catalog.benefits:
        if benefit.kind != "earn_rate" or benefit.earn_rate is None:
            continue
        for product in catalog.products:
            if benefit.id in product.benefits and benefit.earn_rate <= product.base_earn_rate:
                problems.append(
                    f"benefit {benefit.id!r} earns {benefit.earn_rate:g}x, not more than product "
                    f"{product.id!r}'s base rate {product.base_earn_rate:g}x"
                )
    return problems


def _loc_text(loc: tuple[int | str, ...], raw: Any) -> str:
    """Turns pydantic's location ('benefits', 3, 'earn_rate') into 'benefits[3] (dining_4x).earn_rate'."""
    text = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                text += f" ({node['id']})"
        else:
            text += f".{part}" if text else part
            node = node.get(part) if isinstance(node, dict) else None
    return text


def parse_catalog(raw: Any, source: str = CATALOG_FILE) -> Catalog:
    """Validates a catalog given as parsed YAML; raises ValidationError listing every problem."""
    if not isinstance(raw, dict):
        raise ValidationError(
            [Problem(source, "must be a mapping with point_value_usd, products, benefits")], 1
        )
    try:
        catalog = Catalog.model_validate(raw)
    except PydanticValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            value = error.get("input")
            shown = None if isinstance(value, dict | list) else str(value)
            message = error["msg"].removeprefix("Value error, ")
            problems.append(
                Problem(source, message, column=_loc_text(loc, raw), value=shown, column_label="field")
            )
        raise ValidationError(problems, len(problems)) from None
    reference_problems = [Problem(source, message) for message in _check_references(catalog)]
    if reference_problems:
        raise ValidationError(reference_problems, len(reference_problems))
    return catalog


def load_catalog(path: Path | None = None) -> Catalog:
    """Reads and validates a catalog file (the shipped default when `path` is None).

    Raises CatalogError when the file is missing or not YAML, ValidationError listing every problem otherwise.
    """
    path = path or DEFAULT_CATALOG_PATH
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_YAML_LOADER)
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalog file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise CatalogError(f"{path.name}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_catalog(raw, path.name)


def catalog_for(data_dir: Path) -> Path:
    """The catalog a data directory uses: its own catalog.yaml, else the shipped default."""
    own = data_dir / CATALOG_FILE
    return own if own.exists() else DEFAULT_CATALOG_PATH
