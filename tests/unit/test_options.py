"""Output options: every parse error names its field; equivalent spellings normalise alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.errors import InvalidOptions
from pipeline.options import Margin, OutputOptions


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(InvalidOptions) as info:
        OutputOptions.parse(raw)
    assert info.value.reason == "invalid_options"
    return info.value.message


def test_defaults() -> None:
    options = OutputOptions.parse({})
    assert options.normalised() == {
        "format": "png",
        "channels": "rgba",
        "bg_color": None,
        "crop": False,
        "crop_margin": "0px",
        "max_side": None,
        "subject": "all",
        "strict_empty": False,
    }
    assert options == OutputOptions.parse(None) == OutputOptions()
    assert (options.content_type, options.extension, options.output_mode) == (
        "image/png",
        ".png",
        "RGBA",
    )


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"),
    [
        ("webp", "image/webp", ".webp"),
        ("jpg", "image/jpeg", ".jpg"),
        ("JPEG", "image/jpeg", ".jpg"),
    ],
)
def test_content_type_and_extension(fmt: str, content_type: str, extension: str) -> None:
    options = OutputOptions.parse({"format": fmt})
    assert (options.content_type, options.extension) == (content_type, extension)


def test_bad_format_is_named() -> None:
    assert _error({"format": "gif"}).startswith("format: 'gif'")


def test_format_not_a_string_is_named() -> None:
    assert _error({"format": 3}).startswith("format: expected a string")


def test_unknown_option_is_named() -> None:
    assert _error({"size": "full", "crop": True}) == "unknown option(s): 'size'"


def test_bad_channels_is_named() -> None:
    assert _error({"channels": "rgb"}).startswith("channels: 'rgb'")


def test_alpha_channels_need_png() -> None:
    assert _error({"channels": "alpha", "format": "webp"}).startswith("channels:")
    assert _error({"channels": "alpha", "format": "jpg"}).startswith("channels:")


def test_alpha_channels_refuse_bg_color() -> None:
    assert _error({"channels": "alpha", "bg_color": "fff"}).startswith("bg_color:")


def test_jpg_without_bg_color_flattens_over_white() -> None:
    implicit = OutputOptions.parse({"format": "jpg"})
    assert implicit.bg_color == (255, 255, 255)
    assert implicit.output_mode == "RGB"
    assert (
        implicit.normalised()
        == OutputOptions.parse({"format": "jpeg", "bg_color": "white"}).normalised()
    )


@pytest.mark.parametrize("colour", ["#12345", "12345g", "ffff", "#ffffff80", "rgb(1,2,3)", "bleu"])
def test_bad_colour_is_named(colour: str) -> None:
    assert _error({"bg_color": colour}).startswith(f"bg_color: {colour!r}")


def test_colour_not_a_string_is_named() -> None:
    assert _error({"bg_color": 0xFFFFFF}).startswith("bg_color: expected a string")


@pytest.mark.parametrize("spelling", ["fff", "FFF", "#fff", "ffffff", "#FFFFFF", " White "])
def test_colour_spellings_normalise_alike(spelling: str) -> None:
    assert OutputOptions.parse({"bg_color": spelling}).normalised()["bg_color"] == "ffffff"


def test_colour_hex_digits_are_read_in_order() -> None:
    assert OutputOptions.parse({"bg_color": "#1a2B3c"}).bg_color == (0x1A, 0x2B, 0x3C)
    assert OutputOptions.parse({"bg_color": "grey"}).bg_color == (128, 128, 128)


@pytest.mark.parametrize("margin", ["-5px", "-1", -3, "5 em", "px", "10pt", "1.5px", True, 2.5])
def test_bad_margin_is_named(margin: object) -> None:
    assert _error({"crop": True, "crop_margin": margin}).startswith("crop_margin:")


def test_margin_percent_over_fifty_is_refused() -> None:
    assert "over 50%" in _error({"crop": True, "crop_margin": "50.5%"})
    assert OutputOptions.parse({"crop": True, "crop_margin": "50%"}).crop_margin == Margin(50, "%")


def test_margin_pixels_over_the_cap_is_refused() -> None:
    assert "over 10000px" in _error({"crop": True, "crop_margin": "10001px"})


@pytest.mark.parametrize(
    ("spellings", "canonical"),
    [
        (["10px", "10", 10, " 10 PX ", "10.0px"], "10px"),
        (["5%", "5.0%", "5.00 %"], "5%"),
        (["2.5%"], "2.5%"),
        (["0", "0px", "0%", 0, None], "0px"),
    ],
)
def test_margin_spellings_normalise_alike(spellings: list[object], canonical: str) -> None:
    for spelling in spellings:
        options = OutputOptions.parse({"crop": True, "crop_margin": spelling})
        assert options.normalised()["crop_margin"] == canonical


def test_margin_without_crop_has_no_effect() -> None:
    options = OutputOptions.parse({"crop_margin": "20%"})
    assert options.crop_margin == Margin(0)
    assert options.normalised() == OutputOptions().normalised()


def test_margin_pixels_of_a_subject_side() -> None:
    assert Margin(12).pixels(1000) == 12
    assert Margin(10, "%").pixels(205) == 20  # 20.5 rounds to even
    assert Margin(10, "%").pixels(215) == 22


@pytest.mark.parametrize("value", ["true", "1", "yes", "ON", True])
def test_boolean_spellings_true(value: object) -> None:
    assert OutputOptions.parse({"crop": value, "strict_empty": value}).crop is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off", False])
def test_boolean_spellings_false(value: object) -> None:
    assert OutputOptions.parse({"crop": value}).crop is False


@pytest.mark.parametrize("field", ["crop", "strict_empty"])
def test_bad_boolean_is_named(field: str) -> None:
    assert _error({field: "maybe"}).startswith(f"{field}: 'maybe'")
    assert _error({field: 2}).startswith(f"{field}: 2")


@pytest.mark.parametrize("value", [0, -1, 100_001, "-5", "1e3", 10.5, True])
def test_bad_max_side_is_named(value: object) -> None:
    assert _error({"max_side": value}).startswith("max_side:")


def test_max_side_spellings() -> None:
    assert OutputOptions.parse({"max_side": "1024"}).max_side == 1024
    assert OutputOptions.parse({"max_side": 1024}).normalised()["max_side"] == 1024


def test_bad_subject_policy_is_named() -> None:
    assert _error({"subject": "largest"}).startswith("subject: 'largest'")


def test_edges_accepts_keep_and_clean_in_any_case() -> None:
    assert OutputOptions.parse({"edges": " Clean "}).edges == "clean"
    assert OutputOptions.parse({"edges": "clean"}).normalised()["edges"] == "clean"
    assert OutputOptions.parse({"edges": "keep"}) == OutputOptions()


def test_a_later_option_at_its_default_keeps_earlier_jobs_keys() -> None:
    # Jobs recorded before `edges` existed hash to the same options hash (hence output key,
    # idempotency key and embedded run id) as the same request today: these hashes were
    # computed from the code before `edges` was added.
    from pipeline.process import options_hash

    assert options_hash(OutputOptions(), "u2netp") == "5cd30ccdde640711"
    assert options_hash(OutputOptions.parse({"subject": "main", "format": "webp"}),
                        "u2netp") == "2e357ec263300034"
    assert OutputOptions.parse(OutputOptions().normalised()) == OutputOptions()
    clean = OutputOptions.parse({"edges": "clean"})
    assert OutputOptions.parse(clean.normalised()) == clean


@pytest.mark.parametrize("value", ["decontaminate", "", 1, True])
def test_bad_edges_value_is_named(value: object) -> None:
    assert _error({"edges": value}).startswith("edges:")


def test_clean_edges_with_the_alpha_channel_alone_normalise_to_keep() -> None:
    # There is no colour to clean in a grey mask: one job, whichever was asked.
    options = OutputOptions.parse({"channels": "alpha", "edges": "clean"})
    assert options.edges == "keep"
    assert options == OutputOptions.parse({"channels": "alpha"})


def test_equivalent_requests_normalise_to_the_same_json() -> None:
    one = OutputOptions.parse(
        {
            "format": "JPEG",
            "bg_color": "#FFF",
            "crop": "true",
            "crop_margin": "10",
            "max_side": "800",
        }
    )
    two = OutputOptions.parse(
        {"format": "jpg", "bg_color": "white", "crop": True, "crop_margin": "10px", "max_side": 800}
    )
    assert json.dumps(one.normalised(), sort_keys=True) == json.dumps(
        two.normalised(), sort_keys=True
    )


def test_different_requests_normalise_differently() -> None:
    assert (
        OutputOptions.parse({"format": "webp"}).normalised()
        != OutputOptions.parse({"format": "png"}).normalised()
    )


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"format": "jpg"},
        {"channels": "alpha", "crop": True, "crop_margin": "2.5%", "subject": "main"},
        {"format": "webp", "bg_color": "navy", "max_side": 64, "strict_empty": True},
        {"edges": "clean", "bg_color": "fff"},
    ],
)
def test_normalised_form_parses_back_to_the_same_options(raw: dict[str, Any]) -> None:
    options = OutputOptions.parse(raw)
    assert OutputOptions.parse(options.normalised()) == options
