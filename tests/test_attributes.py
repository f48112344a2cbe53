"""The attribute vocabulary: names, negations, aliases, regions and how each picks its two sets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diat_cli.attributes import (
    ALIASES,
    ATTRIBUTES,
    CELEBA_COLUMNS,
    AgeRange,
    aliases_of,
    attribute_names,
    attribute_table,
    kebab_case,
    resolve_attribute,
)
from diat_cli.errors import ConfigError


def test_every_celeba_column_has_both_directions():
    assert len(CELEBA_COLUMNS) == 40
    assert len(ATTRIBUTES) == 80
    for column in CELEBA_COLUMNS:
        values = sorted(attribute.celeba_value for attribute in ATTRIBUTES.values() if attribute.celeba_column == column)
        assert values == [-1, 1], column
    for attribute in ATTRIBUTES.values():
        assert attribute.opposite.opposite == attribute
        assert attribute.opposite.celeba_column == attribute.celeba_column


def test_kebab_case_names_of_celeba_columns():
    assert kebab_case("5_o_Clock_Shadow") == "5-o-clock-shadow"
    assert kebab_case("Mouth_Slightly_Open") == "mouth-slightly-open"
    assert kebab_case("  Wearing Hat ") == "wearing-hat"
    assert "5-o-clock-shadow" in ATTRIBUTES
    assert "mouth-slightly-open" in ATTRIBUTES
    for column in CELEBA_COLUMNS:
        assert resolve_attribute(column).celeba_column == column
        assert resolve_attribute(column).celeba_value == 1


@pytest.mark.parametrize(
    "name, canonical, column, value",
    [
        ("eyeglasses", "eyeglasses", "Eyeglasses", 1),
        ("no-eyeglasses", "no-eyeglasses", "Eyeglasses", -1),
        ("not-eyeglasses", "no-eyeglasses", "Eyeglasses", -1),
        ("glasses", "eyeglasses", "Eyeglasses", 1),
        ("no-glasses", "no-eyeglasses", "Eyeglasses", -1),
        ("smiling", "smiling", "Smiling", 1),
        ("smile", "smiling", "Smiling", 1),
        ("not-smiling", "not-smiling", "Smiling", -1),
        ("no-smiling", "not-smiling", "Smiling", -1),
        ("young", "young", "Young", 1),
        ("old", "old", "Young", -1),
        ("not-young", "old", "Young", -1),
        ("not-old", "young", "Young", 1),
        ("male", "male", "Male", 1),
        ("female", "female", "Male", -1),
        ("not-male", "female", "Male", -1),
        ("not-female", "male", "Male", 1),
        ("mouth-open", "mouth-slightly-open", "Mouth_Slightly_Open", 1),
        ("mouth-closed", "not-mouth-slightly-open", "Mouth_Slightly_Open", -1),
        ("not-mouth-slightly-open", "not-mouth-slightly-open", "Mouth_Slightly_Open", -1),
        ("no-beard", "no-beard", "No_Beard", 1),
        ("beard", "beard", "No_Beard", -1),
        ("not-wearing-hat", "not-wearing-hat", "Wearing_Hat", -1),
        ("no-hat", "not-wearing-hat", "Wearing_Hat", -1),
        ("Eyeglasses", "eyeglasses", "Eyeglasses", 1),
        ("No_Eyeglasses", "no-eyeglasses", "Eyeglasses", -1),
        ("5_o_Clock_Shadow", "5-o-clock-shadow", "5_o_Clock_Shadow", 1),
    ],
)
def test_names_negations_and_aliases(name, canonical, column, value):
    attribute = resolve_attribute(name)
    assert (attribute.name, attribute.celeba_column, attribute.celeba_value) == (canonical, column, value)


def test_both_prefixes_negate_every_attribute():
    for attribute in ATTRIBUTES.values():
        for prefix in ("no-", "not-"):
            assert resolve_attribute(prefix + attribute.name) == attribute.opposite, prefix + attribute.name


def test_aliases_point_at_known_attributes():
    assert all(target in ATTRIBUTES for target in ALIASES.values())
    assert not set(ALIASES) & set(ATTRIBUTES)
    assert "no-glasses" in aliases_of("no-eyeglasses", readable_only=True)
    assert "not-no-eyeglasses" not in aliases_of("eyeglasses", readable_only=True)
    assert len(attribute_names(include_aliases=True)) == len(ATTRIBUTES) + len(ALIASES)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ConfigError) as caught:
        resolve_attribute("eyeglass")
    message = str(caught.value)
    assert "unknown attribute 'eyeglass'" in message
    assert "eyeglasses" in message
    with pytest.raises(ConfigError, match="mouth-slightly-open"):
        resolve_attribute("mouth-slightly-opn")
    with pytest.raises(ConfigError, match="unknown attribute"):
        resolve_attribute("zzzz")


def test_regions_and_kinds():
    assert resolve_attribute("eyeglasses").region == "eyes"
    assert resolve_attribute("no-glasses").region == "eyes"
    assert resolve_attribute("smile").region == "mouth"
    assert resolve_attribute("mouth-closed").region == "mouth"
    for name in ("old", "young", "female", "male", "black-hair", "bald", "no-beard"):
        assert resolve_attribute(name).region is None
        assert resolve_attribute(name).kind == "global"
    assert resolve_attribute("eyeglasses").kind == "local"


def test_celeba_side():
    no_glasses = resolve_attribute("no-eyeglasses")
    assert no_glasses.celeba_side(1) == "source"
    assert no_glasses.celeba_side(-1) == "reference"
    assert resolve_attribute("eyeglasses").celeba_side(1) == "reference"
    with pytest.raises(ValueError):
        no_glasses.celeba_side(0)


def test_utkface_age_and_gender_rules():
    old, young, female, male = (resolve_attribute(name) for name in ("old", "young", "female", "male"))
    assert old.utkface_side(50, 0) == "reference"
    assert old.utkface_side(80, 1) == "reference"
    assert old.utkface_side(18, 1) == "source"
    assert old.utkface_side(30, 1) == "source"
    assert old.utkface_side(40, 0) is None  # between the groups: in neither set
    assert old.utkface_side(10, 0) is None
    assert young.utkface_side(25, 0) == "reference"
    assert young.utkface_side(60, 0) == "source"
    assert female.utkface_side(30, 1) == "reference"
    assert female.utkface_side(30, 0) == "source"
    assert male.utkface_side(30, 0) == "reference"
    assert female.utkface_side(5, 1) is None  # children are left out of gender sets
    assert female.utkface_side(5, 1, adult_ages=AgeRange()) == "reference"
    # Adjustable thresholds.
    assert old.utkface_side(55, 0, old_ages=AgeRange(60)) is None
    assert old.utkface_side(35, 0, young_ages=AgeRange(20, 40)) == "source"
    with pytest.raises(ConfigError, match="overlap"):
        old.utkface_side(35, 0, old_ages=AgeRange(30), young_ages=AgeRange(18, 35))
    with pytest.raises(ConfigError, match="no UTKFace labels"):
        resolve_attribute("eyeglasses").utkface_side(30, 0)


def test_age_range():
    assert AgeRange(18, 30).contains(18) and AgeRange(18, 30).contains(30)
    assert not AgeRange(18, 30).contains(31)
    assert AgeRange(50).describe() == "age >= 50"
    assert AgeRange(18, 30).describe() == "age 18-30"
    assert AgeRange(50).overlaps(AgeRange(40, 50))
    assert not AgeRange(50).overlaps(AgeRange(18, 30))
    with pytest.raises(ConfigError):
        AgeRange(30, 18)


def test_attribute_table():
    rows = attribute_table()
    assert len(rows) == 80
    by_name = {row.name: row for row in rows}
    row = by_name["no-eyeglasses"]
    assert (row.source, row.reference, row.kind) == ("Eyeglasses = 1", "Eyeglasses = -1", "local")
    assert "no-glasses" in row.aliases
    old = by_name["old"]
    assert "Young = -1" in old.reference and "age >= 50" in old.reference
    assert "age 18-30" in old.source
    assert old.kind == "global"
    assert "not-young" in old.aliases
    assert "age >= 60" in {row.name: row for row in attribute_table(old_ages=AgeRange(60))}["old"].reference


def test_core_modules_do_not_import_the_terminal_libraries():
    code = "import sys, diat_cli.attributes, diat_cli.data; assert not {'typer', 'rich'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
