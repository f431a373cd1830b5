"""A module reaches another module's facade by its class, typed, through the platform."""

from dataclasses import fields

import pytest

from townhall.platform.modules import Platform


class Directory:
    pass


class Payments:
    pass


def platform_with(**facades: object) -> Platform:
    # Only `facades` is read by Platform.facade; the shared adapters stay unset here.
    unset = {field.name: None for field in fields(Platform) if field.name != "facades"}
    return Platform(**unset, facades=dict(facades))


def test_a_facade_is_found_by_its_class():
    directory = Directory()
    platform = platform_with(identity=directory, other=object())
    assert platform.facade(Directory) is directory


def test_a_missing_facade_names_the_class_and_says_to_require_its_module():
    platform = platform_with(identity=Directory())
    with pytest.raises(LookupError, match=r"Payments.*requires"):
        platform.facade(Payments)
