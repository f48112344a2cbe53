"""The attribute vocabulary: names users type, and how each one picks source and reference faces.

DIAT trains one model per attribute direction from two unpaired sets: the *source* set (faces
without the target attribute) and the *reference* set (faces with it). An attribute here is
that direction: `no-eyeglasses` takes faces with Eyeglasses = 1 as its source and faces with
Eyeglasses = -1 as its reference.

Names are CelebA's 40 columns in kebab case (`eyeglasses`, `mouth-slightly-open`,
`5-o-clock-shadow`), their negations (`no-X` for things one has, `not-X` for states; both
prefixes are accepted for every attribute), and readable aliases (`glasses`, `smile`, `old`,
`female`, `mouth-closed`, ...). Age and gender also have UTKFace rules, read from UTKFace's
file names: `old` = age 50 or more, `young` = age 18 to 30, `female`/`male` from the gender
field (0 male, 1 female) among adults. The thresholds are arguments (AgeRange) everywhere.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

from diat_cli.errors import ConfigError

Side = Literal["source", "reference"]


@dataclass(frozen=True)
class AgeRange:
    """Ages from `minimum` to `maximum`, both inclusive; None leaves that end open."""

    minimum: int | None = None
    maximum: int | None = None

    def __post_init__(self) -> None:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ConfigError(f"age range {self.minimum}-{self.maximum} is empty (minimum above maximum)")
        for end in (self.minimum, self.maximum):
            if end is not None and end < 0:
                raise ConfigError(f"ages must be 0 or more, got {end}")

    def contains(self, age: int) -> bool:
        return (self.minimum is None or age >= self.minimum) and (self.maximum is None or age <= self.maximum)

    def overlaps(self, other: AgeRange) -> bool:
        low = max(self.minimum or 0, other.minimum or 0)
        highs = [end for end in (self.maximum, other.maximum) if end is not None]
        return not highs or low <= min(highs)

    def describe(self) -> str:
        if self.minimum is None and self.maximum is None:
            return "any age"
        if self.maximum is None:
            return f"age >= {self.minimum}"
        if self.minimum is None:
            return f"age <= {self.maximum}"
        return f"age {self.minimum}-{self.maximum}"


OLD_AGES = AgeRange(50, None)
YOUNG_AGES = AgeRange(18, 30)
# Gender sets leave out children: their gender is hard to see, and a reference set of
# toddlers would teach the network "baby" as much as "female".
ADULT_AGES = AgeRange(18, None)

UTKFACE_GROUPS = ("old", "young", "female", "male")


def utkface_group_contains(
    group: str,
    age: int,
    gender: int | None,
    *,
    old_ages: AgeRange = OLD_AGES,
    young_ages: AgeRange = YOUNG_AGES,
    adult_ages: AgeRange = ADULT_AGES,
) -> bool:
    """Whether a UTKFace face (age, gender: 0 male, 1 female) belongs to a named group."""
    if group == "old":
        return old_ages.contains(age)
    if group == "young":
        return young_ages.contains(age)
    if group == "female":
        return gender == 1 and adult_ages.contains(age)
    if group == "male":
        return gender == 0 and adult_ages.contains(age)
    raise ValueError(f"unknown UTKFace group '{group}'")


def describe_utkface_group(
    group: str, *, old_ages: AgeRange = OLD_AGES, young_ages: AgeRange = YOUNG_AGES, adult_ages: AgeRange = ADULT_AGES
) -> str:
    if group == "old":
        return old_ages.describe()
    if group == "young":
        return young_ages.describe()
    gender = {"female": "gender 1 (female)", "male": "gender 0 (male)"}[group]
    return gender if adult_ages == AgeRange() else f"{gender}, {adult_ages.describe()}"


@dataclass(frozen=True)
class UtkfaceRule:
    """The UTKFace groups that make the reference set (has the attribute) and the source set."""

    reference: str
    source: str


@dataclass(frozen=True)
class Attribute:
    """One attribute direction: the target a trained model adds to a face.

    celeba_value: the wanted value of `celeba_column` (+1: has it, -1: has not); reference
    faces have it, source faces have the other value. region: "eyes" or "mouth" for local
    attributes (the enhancement stage keeps pixels outside that region), None for global ones.
    """

    name: str
    description: str
    celeba_column: str
    celeba_value: int
    utkface: UtkfaceRule | None = None
    region: str | None = None

    @property
    def kind(self) -> str:
        """'local' (a region of the face changes) or 'global' (the whole face may change)."""
        return "global" if self.region is None else "local"

    @property
    def opposite(self) -> Attribute:
        """The reverse direction (the model that undoes this one)."""
        for attribute in ATTRIBUTES.values():
            if attribute.celeba_column == self.celeba_column and attribute.celeba_value == -self.celeba_value:
                return attribute
        raise AssertionError(f"no opposite for {self.name}")  # every column has both directions

    def celeba_side(self, value: int) -> Side:
        """Which set a face with this value (+1 / -1) of `celeba_column` belongs to."""
        if value not in (1, -1):
            raise ValueError(f"CelebA attribute values are 1 or -1, got {value}")
        return "reference" if value == self.celeba_value else "source"

    def utkface_side(
        self,
        age: int,
        gender: int | None,
        *,
        old_ages: AgeRange = OLD_AGES,
        young_ages: AgeRange = YOUNG_AGES,
        adult_ages: AgeRange = ADULT_AGES,
    ) -> Side | None:
        """Which set a UTKFace face belongs to, or None when it is in neither (e.g. age 40 for `old`)."""
        if self.utkface is None:
            raise ConfigError(f"'{self.name}' has no UTKFace labels; UTKFace labels only {', '.join(UTKFACE_GROUPS)}")
        check_age_ranges(old_ages, young_ages)
        ranges = {"old_ages": old_ages, "young_ages": young_ages, "adult_ages": adult_ages}
        if utkface_group_contains(self.utkface.reference, age, gender, **ranges):
            return "reference"
        if utkface_group_contains(self.utkface.source, age, gender, **ranges):
            return "source"
        return None


def check_age_ranges(old_ages: AgeRange, young_ages: AgeRange) -> None:
    """Refuse overlapping young and old ranges: a face would land in both sets."""
    if old_ages.overlaps(young_ages):
        raise ConfigError(
            f"the old ages ({old_ages.describe()}) and young ages ({young_ages.describe()}) overlap; "
            "a face would be in both the source and the reference set"
        )


# CelebA's 40 columns in file order: (column, has it, has it not, negation prefix, region).
# "no" for things one has, "not" for states.
_COLUMNS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("5_o_Clock_Shadow", "stubble (five o'clock shadow)", "no stubble", "no", None),
    ("Arched_Eyebrows", "arched eyebrows", "eyebrows not arched", "no", "eyes"),
    ("Attractive", "rated attractive by CelebA's annotators", "not rated attractive", "not", None),
    ("Bags_Under_Eyes", "bags under the eyes", "no bags under the eyes", "no", "eyes"),
    ("Bald", "bald", "not bald", "not", None),
    ("Bangs", "bangs (a fringe)", "no bangs", "no", None),
    ("Big_Lips", "big lips", "lips not big", "no", "mouth"),
    ("Big_Nose", "big nose", "nose not big", "no", None),
    ("Black_Hair", "black hair", "hair not black", "no", None),
    ("Blond_Hair", "blond hair", "hair not blond", "no", None),
    ("Blurry", "blurry photo", "sharp photo", "not", None),
    ("Brown_Hair", "brown hair", "hair not brown", "no", None),
    ("Bushy_Eyebrows", "bushy eyebrows", "eyebrows not bushy", "no", "eyes"),
    ("Chubby", "chubby", "not chubby", "not", None),
    ("Double_Chin", "double chin", "no double chin", "no", None),
    ("Eyeglasses", "wears eyeglasses", "no eyeglasses", "no", "eyes"),
    ("Goatee", "goatee", "no goatee", "no", None),
    ("Gray_Hair", "gray hair", "hair not gray", "no", None),
    ("Heavy_Makeup", "heavy makeup", "no heavy makeup", "no", None),
    ("High_Cheekbones", "high cheekbones", "cheekbones not high", "no", None),
    ("Male", "male", "female", "not", None),
    ("Mouth_Slightly_Open", "mouth slightly open", "mouth closed", "not", "mouth"),
    ("Mustache", "mustache", "no mustache", "no", "mouth"),
    ("Narrow_Eyes", "narrow eyes", "eyes not narrow", "no", "eyes"),
    ("No_Beard", "no beard", "beard", "", None),
    ("Oval_Face", "oval face", "face not oval", "no", None),
    ("Pale_Skin", "pale skin", "skin not pale", "no", None),
    ("Pointy_Nose", "pointy nose", "nose not pointy", "no", None),
    ("Receding_Hairline", "receding hairline", "no receding hairline", "no", None),
    ("Rosy_Cheeks", "rosy cheeks", "cheeks not rosy", "no", None),
    ("Sideburns", "sideburns", "no sideburns", "no", None),
    ("Smiling", "smiling", "not smiling", "not", "mouth"),
    ("Straight_Hair", "straight hair", "hair not straight", "no", None),
    ("Wavy_Hair", "wavy hair", "hair not wavy", "no", None),
    ("Wearing_Earrings", "wears earrings", "no earrings", "not", None),
    ("Wearing_Hat", "wears a hat", "no hat", "not", None),
    ("Wearing_Lipstick", "wears lipstick", "no lipstick", "not", "mouth"),
    ("Wearing_Necklace", "wears a necklace", "no necklace", "not", None),
    ("Wearing_Necktie", "wears a necktie", "no necktie", "not", None),
    ("Young", "young", "old", "not", None),
)

CELEBA_COLUMNS: tuple[str, ...] = tuple(column for column, *_ in _COLUMNS)

# Names that replace the generic negation (Male -> female, Young -> old, No_Beard -> beard).
_SPECIAL_NEGATIONS = {"Male": "female", "Young": "old", "No_Beard": "beard"}
_UTKFACE_RULES = {
    "male": UtkfaceRule(reference="male", source="female"),
    "female": UtkfaceRule(reference="female", source="male"),
    "young": UtkfaceRule(reference="young", source="old"),
    "old": UtkfaceRule(reference="old", source="young"),
}

# Readable names for canonical ones; each also gets `no-` / `not-` forms for the opposite.
_ALIASES = {
    "glasses": "eyeglasses",
    "spectacles": "eyeglasses",
    "smile": "smiling",
    "mouth-open": "mouth-slightly-open",
    "open-mouth": "mouth-slightly-open",
    "mouth-closed": "not-mouth-slightly-open",
    "closed-mouth": "not-mouth-slightly-open",
    "stubble": "5-o-clock-shadow",
    "five-o-clock-shadow": "5-o-clock-shadow",
    "moustache": "mustache",
    "blonde-hair": "blond-hair",
    "blond": "blond-hair",
    "blonde": "blond-hair",
    "grey-hair": "gray-hair",
    "gray": "gray-hair",
    "grey": "gray-hair",
    "makeup": "heavy-makeup",
    "earrings": "wearing-earrings",
    "hat": "wearing-hat",
    "lipstick": "wearing-lipstick",
    "necklace": "wearing-necklace",
    "necktie": "wearing-necktie",
    "tie": "wearing-necktie",
    "bearded": "beard",
    "man": "male",
    "woman": "female",
}


def kebab_case(text: str) -> str:
    """'Mouth_Slightly_Open' -> 'mouth-slightly-open'; also how typed names are normalised."""
    text = text.strip().lower().replace("'", "")
    return re.sub(r"[-_\s]+", "-", text).strip("-")


def _build_vocabulary() -> tuple[dict[str, Attribute], dict[str, str], frozenset[str]]:
    attributes: dict[str, Attribute] = {}
    for column, has, has_not, prefix, region in _COLUMNS:
        positive = kebab_case(column)
        negative = _SPECIAL_NEGATIONS.get(column, f"{prefix}-{positive}")
        for name, value, description in ((positive, 1, has), (negative, -1, has_not)):
            attributes[name] = Attribute(name, description, column, value, _UTKFACE_RULES.get(name), region)
    aliases: dict[str, str] = {}
    shown: set[str] = set()
    for alias, target in _ALIASES.items():
        assert target in attributes, target
        aliases[alias] = target
        shown.add(alias)
    # Both prefixes negate every accepted name: no-smiling, not-eyeglasses, not-old, no-glasses.
    for name, target in [*((name, name) for name in attributes), *aliases.items()]:
        opposite = _opposite_name(attributes, target)
        for prefix in ("no", "not"):
            negated = f"{prefix}-{name}"
            if negated in attributes or negated in aliases:
                continue
            aliases[negated] = opposite
            if name in _ALIASES or not name.startswith(("no-", "not-")):
                shown.add(negated)
    return attributes, aliases, frozenset(shown)


def _opposite_name(attributes: dict[str, Attribute], name: str) -> str:
    attribute = attributes[name]
    return next(
        other.name
        for other in attributes.values()
        if other.celeba_column == attribute.celeba_column and other.celeba_value == -attribute.celeba_value
    )


ATTRIBUTES, ALIASES, _SHOWN_ALIASES = _build_vocabulary()


def attribute_names(include_aliases: bool = False) -> list[str]:
    """Canonical names in CelebA column order (positive, then negative); aliases sorted after."""
    names = list(ATTRIBUTES)
    return names + sorted(ALIASES) if include_aliases else names


def aliases_of(name: str, readable_only: bool = False) -> list[str]:
    """Other accepted spellings of a canonical name, shortest first.

    readable_only drops the mechanical ones (`not-no-eyeglasses`, `not-spectacles`) that
    are accepted but would only clutter a listing.
    """
    found = (alias for alias, target in ALIASES.items() if target == name)
    if readable_only:
        found = (alias for alias in found if alias in _SHOWN_ALIASES)
    return sorted(found, key=lambda alias: (len(alias), alias))


def resolve_attribute(name: str) -> Attribute:
    """The attribute a user means by `name` (canonical, alias, negated form or CelebA column name).

    Raises ConfigError for an unknown name, listing the closest known names.
    """
    key = kebab_case(name)
    if key in ATTRIBUTES:
        return ATTRIBUTES[key]
    if key in ALIASES:
        return ATTRIBUTES[ALIASES[key]]
    known = [*ATTRIBUTES, *sorted(_SHOWN_ALIASES)]
    close = difflib.get_close_matches(key, known, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown attribute '{name}'{hint} (`diat attributes` lists them all)")


def face_region(name: str | None) -> str | None:
    """The region ("eyes", "mouth") an attribute edits; None for whole-face or unknown (custom) ones."""
    if name is None:
        return None
    try:
        return resolve_attribute(name).region
    except ConfigError:
        return None


class AttributeRow(NamedTuple):
    """One line of `diat attributes`: how the attribute picks its two training sets."""

    name: str
    source: str  # which faces make the source set (faces without the attribute)
    reference: str  # which faces make the reference set (faces with it)
    kind: str  # "local" or "global"
    aliases: tuple[str, ...]


def describe_sets(
    attribute: Attribute,
    *,
    old_ages: AgeRange = OLD_AGES,
    young_ages: AgeRange = YOUNG_AGES,
    adult_ages: AgeRange = ADULT_AGES,
) -> tuple[str, str]:
    """(source, reference) definitions in words, e.g. ('Eyeglasses = -1', 'Eyeglasses = 1')."""
    source = f"{attribute.celeba_column} = {-attribute.celeba_value}"
    reference = f"{attribute.celeba_column} = {attribute.celeba_value}"
    if attribute.utkface is not None:
        ranges = {"old_ages": old_ages, "young_ages": young_ages, "adult_ages": adult_ages}
        source += f"; UTKFace {describe_utkface_group(attribute.utkface.source, **ranges)}"
        reference += f"; UTKFace {describe_utkface_group(attribute.utkface.reference, **ranges)}"
    return source, reference


def attribute_table(
    *,
    old_ages: AgeRange = OLD_AGES,
    young_ages: AgeRange = YOUNG_AGES,
    adult_ages: AgeRange = ADULT_AGES,
) -> list[AttributeRow]:
    """Every canonical attribute with its source and reference definitions, for `diat attributes`."""
    rows = []
    for attribute in ATTRIBUTES.values():
        source, reference = describe_sets(attribute, old_ages=old_ages, young_ages=young_ages, adult_ages=adult_ages)
        rows.append(AttributeRow(attribute.name, source, reference, attribute.kind, tuple(aliases_of(attribute.name, True))))
    return rows
