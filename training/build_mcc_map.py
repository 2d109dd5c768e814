"""MCC map build: iso18245's code lists and ranges → nba/contract/data/mcc_map.csv (code ranges → spend category)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path
from typing import Final

import iso18245

from nba.vocab import SpendCategory

MCC_MAP_PATH: Final = Path(__file__).resolve().parents[1] / "nba" / "contract" / "data" / "mcc_map.csv"
N_CODES: Final = 10_000
DEFAULT_CATEGORY: Final[SpendCategory] = "other"


@dataclass(frozen=True)
class Rule:
    """Listed codes in [first, last] whose description matches `pattern` (lower case) go to `category`."""

    first: int
    last: int
    pattern: str
    category: SpendCategory

    def matches(self, code: int, description: str) -> bool:
        return self.first <= code <= self.last and re.search(self.pattern, description) is not None


# The card schemes' private block 3000–3999 holds one code per airline, car rental company and hotel
# chain; iso18245's private_ranges.csv names each sub-range, and the whole sub-range is mapped.
PRIVATE_RANGE_RULES: Final[tuple[tuple[str, SpendCategory], ...]] = (
    (r"^airlines?$", "air_travel"),
    (r"^car rentals?$", "car_rental"),
    (r"^lodging$", "lodging"),
)

# Outside 3000–3999 only the codes that iso18245 lists are mapped. The first rule that matches a
# code's description wins; the bounds follow the ISO 18245 ranges (iso18245_ranges.csv) so that a
# keyword only counts where it means what we think it means. A rule with an empty pattern is the
# default for its range.
RULES: Final[tuple[Rule, ...]] = (
    # Health first: its words also occur in wholesale (5047, 5122), transport (4119 ambulances) and
    # personal services (7280 private hospitals). "(non-medical)" testing laboratories are not health.
    Rule(0, 9999, r"(?<!non-)medical|doctor|dentist|osteopath|chiropract|optometr|optician", "health"),
    Rule(0, 9999, r"podiatr|hospital|nursing|drug|pharmac|hearing aid|orthop|ambulance", "health"),
    # Agricultural services and contracted services (0700–2999): building trades are home improvement.
    Rule(700, 999, r"landscaping|horticultur", "home_improvement"),
    Rule(1500, 2999, r"contractor", "home_improvement"),
    # Transportation (4000–4799).
    Rule(4000, 4799, r"airline|air carrier|airport", "air_travel"),
    Rule(4000, 4799, r"travel agenc|tour operator", "travel_agency"),
    Rule(4000, 4799, r"boat rental|scenic spot", "entertainment"),
    Rule(4000, 4799, r"commuter|passenger|taxi|limousine|bus line|toll|transportation services", "transit"),
    # Utilities (4800–4999): pay television sits with streaming, where its spend now goes.
    Rule(4800, 4999, r"pay television", "streaming_digital"),
    Rule(4800, 4999, r"telecom|telephone|telegraph|computer network|utilities", "telecom_utilities"),
    # Wholesale trade (5000–5199) is business-to-business and stays `other`, except building supplies.
    Rule(5000, 5299, r"home supply|lumber|building material|construction material", "home_improvement"),
    Rule(5000, 5299, r"hardware|paint|plumbing|lawn and garden", "home_improvement"),
    # Retail outlets (5200–5599).
    Rule(5400, 5499, r"", "groceries"),
    Rule(5500, 5599, r"service station|fuel dispenser", "gas"),
    # Buying a vehicle (cars, boats, motor homes, mobile homes) is not everyday retail spend.
    Rule(5200, 5599, r"dealer", "other"),
    # Miscellaneous outlets (5700–5999).
    Rule(5700, 5799, r"furniture|home furnishing|floor covering|drapery|fireplace", "home_improvement"),
    Rule(5700, 5799, r"household appliance", "home_improvement"),
    Rule(5700, 5799, r"wholesaler", "other"),
    Rule(5800, 5814, r"caterer|eating|restaurant|drinking place|fast food", "dining"),
    Rule(5815, 5818, r"digital goods", "streaming_digital"),
    Rule(5900, 5999, r"fuel dealer", "gas"),
    Rule(5900, 5999, r"swimming pool", "home_improvement"),
    # Direct marketing (5960–5969) is card-not-present selling: catalogue, mail order, phone and
    # subscription merchants are online retail; its travel and insurance codes are not.
    Rule(5960, 5969, r"travel", "travel_agency"),
    Rule(5960, 5969, r"insurance", "other"),
    Rule(5960, 5969, r"catalog|mail order|telemarketing merchant|continuity", "online_retail"),
    Rule(5960, 5969, r"direct marketers", "online_retail"),
    # Everything else sold in a shop, including wholesale clubs (5300), which card programmes leave out of
    # groceries, and liquor shops (5921).
    Rule(5200, 5999, r"", "general_retail"),
    # Service providers (6000–7299): finance, insurance, real estate and personal services stay `other`.
    Rule(7000, 7099, r"lodging|hotel|timeshare|camp-site|campsite|trailer park", "lodging"),
    Rule(7000, 7099, r"recreational camp", "entertainment"),
    # Business services (7300–7529) hold the car rental and parking codes.
    Rule(7500, 7529, r"rental", "car_rental"),
    Rule(7500, 7529, r"parking", "transit"),
    # Amusement and entertainment (7800–7999); gambling is quasi-cash, not entertainment spend.
    Rule(7800, 7999, r"lotter|casino|gambling|betting|racing", "other"),
    Rule(7800, 7999, r"", "entertainment"),
    # Professional services (8000–8999): besides health, only gardening is a spend category.
    Rule(8000, 8999, r"gardening", "home_improvement"),
)

# Codes whose descriptions do not say what cardholders buy there, decided one by one.
EXPLICIT_CATEGORIES: Final[dict[int, SpendCategory]] = {
    # "Railroads" is freight in Visa's list, but passenger rail operators charge under it too.
    4011: "transit",
    # Cruises are sold as package trips; there is no cruise category.
    4411: "travel_agency",
    # Visa's code for (mostly online) marketplaces; the description does not say so.
    5262: "online_retail",
    # Electric vehicle charging is fuel for the car.
    5552: "gas",
    # Truck stops sell fuel; iso18245 1.4.1 garbles the description to "Truck StopIteration".
    7511: "gas",
}


def read_private_ranges() -> list[tuple[int, int, SpendCategory]]:
    """Returns iso18245's private-use sub-ranges (airlines, car rental, lodging) with their categories.

    Raises RuntimeError when the package names a sub-range no rule knows, so an upstream change fails here.
    """
    text = (files("iso18245") / "data" / "private_ranges.csv").read_text(encoding="utf-8")
    ranges: list[tuple[int, int, SpendCategory]] = []
    for row in list(csv.reader(text.splitlines()))[1:]:
        first, last, description = int(row[0]), int(row[1]), row[2].strip().lower()
        category = next((cat for pat, cat in PRIVATE_RANGE_RULES if re.search(pat, description)), None)
        if category is None:
            raise RuntimeError(f"iso18245 private range {first}–{last} {row[2]!r} matches no rule")
        ranges.append((first, last, category))
    return ranges


def describe_mcc(mcc: iso18245.MCC) -> str:
    """Returns a code's description: the ISO one, else the first of Visa, Mastercard, Amex, Stripe, USDA."""
    candidates = (
        mcc.iso_description,
        mcc.visa_description,
        mcc.mastercard_description,
        mcc.amex_description,
        mcc.stripe_description,
        mcc.usda_description,
    )
    return next((text.strip() for text in candidates if text.strip()), "")


def assign_category(code: int, description: str) -> SpendCategory:
    """Returns the spend category of a listed code (outside 3000–3999) from its description.

    >>> assign_category(5812, "Eating places and restaurants")
    'dining'
    """
    if code in EXPLICIT_CATEGORIES:
        return EXPLICIT_CATEGORIES[code]
    lowered = description.lower()
    return next((rule.category for rule in RULES if rule.matches(code, lowered)), DEFAULT_CATEGORY)


def list_mcc_descriptions() -> dict[int, str]:
    """Returns every code iso18245 lists (official, Visa, Mastercard, Amex, Stripe, USDA) → description."""
    return {int(mcc.mcc): describe_mcc(mcc) for mcc in iso18245.get_all_mccs()}


def build_mcc_categories() -> list[SpendCategory]:
    """Returns the category of each code 0..9999 (`other` where iso18245 neither lists nor ranges it)."""
    categories: list[SpendCategory] = [DEFAULT_CATEGORY] * N_CODES
    private = read_private_ranges()
    for first, last, category in private:
        categories[first : last + 1] = [category] * (last - first + 1)
    listed = list_mcc_descriptions()
    unlisted = sorted(set(EXPLICIT_CATEGORIES) - set(listed))
    if unlisted:
        raise RuntimeError(f"EXPLICIT_CATEGORIES names codes iso18245 does not list: {unlisted}")
    for code, description in listed.items():
        # Listed codes inside a private range (one per airline, hotel chain...) follow their range.
        if not any(first <= code <= last for first, last, _ in private):
            categories[code] = assign_category(code, description)
    return categories


def compact_ranges(categories: Sequence[str]) -> list[tuple[int, int, str]]:
    """Merges runs of consecutive codes with the same category into (first, last, category), in order."""
    ranges: list[tuple[int, int, str]] = []
    for code, category in enumerate(categories):
        if ranges and ranges[-1][2] == category and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code, category)
        else:
            ranges.append((code, code, category))
    return ranges


def build_mcc_ranges() -> list[tuple[int, int, str]]:
    """Returns the shipped MCC map: sorted, non-overlapping (mcc_from, mcc_to, category), `other` left out.

    >>> (5811, 5814, "dining") in build_mcc_ranges()
    True
    """
    return [r for r in compact_ranges(build_mcc_categories()) if r[2] != DEFAULT_CATEGORY]


def write_mcc_map(ranges: Iterable[tuple[int, int, str]], path: Path) -> None:
    """Writes ranges as `mcc_from,mcc_to,category` CSV with a header line."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["mcc_from", "mcc_to", "category"])
        writer.writerows(ranges)


def main() -> None:
    """Regenerates nba/contract/data/mcc_map.csv from the installed iso18245 package."""
    ranges = build_mcc_ranges()
    MCC_MAP_PATH.parent.mkdir(parents=True, exist_ok=True)
    write_mcc_map(ranges, MCC_MAP_PATH)
    source = f"ISO 18245:{iso18245.ISO_VERSION_YEAR} via iso18245 {version('iso18245')}"
    print(f"wrote {len(ranges)} ranges to {MCC_MAP_PATH} ({source})")


if __name__ == "__main__":
    main()
