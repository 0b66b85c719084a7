"""remove.bg's fields onto Clipline's options: every field mapped, ignored or refused."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.options import Margin
from pipeline.removebg_params import (
    IGNORED_WHY,
    KNOWN,
    REFUSED_WHY,
    SOURCE_FIELDS,
    Refused,
    map_fields,
    s3_source,
)


def refused(fields: dict[str, Any]) -> Refused:
    with pytest.raises(Refused) as caught:
        map_fields(fields)
    return caught.value


def test_no_field_is_a_transparent_png_of_the_whole_image() -> None:
    mapped = map_fields({})
    assert mapped.options.normalised() == map_fields({"format": "png"}).options.normalised()
    assert (mapped.options.format, mapped.options.channels, mapped.options.bg_color) == (
        "png", "rgba", None)
    assert mapped.ignored == ()


@pytest.mark.parametrize(("fields", "fmt"), [
    ({"format": "auto"}, "png"),
    ({"format": "auto", "bg_color": "ff0000"}, "jpg"),  # no transparency left: remove.bg's jpg
    ({"format": "auto", "channels": "alpha"}, "png"),
    ({"format": "PNG"}, "png"),
    ({"format": "jpg"}, "jpg"),
    ({"format": "jpeg"}, "jpg"),
    ({"format": "webp"}, "webp"),
])
def test_format_maps(fields: dict[str, Any], fmt: str) -> None:
    assert map_fields(fields).options.format == fmt


def test_mapped_fields_reach_the_options() -> None:
    options = map_fields({"channels": "alpha", "crop": "true", "crop_margin": "10px"}).options
    assert (options.channels, options.crop, options.crop_margin) == ("alpha", True, Margin(10))
    options = map_fields({"bg_color": "#0f0", "format": "png", "crop": True,
                          "crop_margin": "5%"}).options
    assert (options.bg_color, options.crop_margin) == ((0, 255, 0), Margin(5, "%"))
    assert map_fields({"bg_color": "navy", "format": "jpg"}).options.bg_color == (0, 0, 128)


def test_json_values_that_are_not_text_are_read_as_text() -> None:
    assert map_fields({"crop": True, "crop_margin": 12}).options.crop_margin == Margin(12)
    assert map_fields({"crop": None, "size": None}).ignored == ()  # JSON null: absent


@pytest.mark.parametrize(("fields", "names"), [
    ({"size": "preview", "type": "product", "type_level": "latest"},
     ("size", "type", "type_level")),
    ({"size": "4k", "semitransparency": "false"}, ("semitransparency", "size")),
    ({"roi": "0% 0% 100% 100%", "scale": "original", "position": "original"},
     ("position", "roi", "scale")),
    ({"roi": "0 0px 100% 100%", "add_shadow": "false"}, ("add_shadow", "roi")),
])
def test_ignored_fields_are_accepted_and_named(fields: dict[str, Any],
                                               names: tuple[str, ...]) -> None:
    mapped = map_fields(fields)
    assert mapped.ignored == names
    assert mapped.options == map_fields({}).options


@pytest.mark.parametrize("name", sorted(REFUSED_WHY))
def test_fields_clipline_cannot_honour_are_refused(name: str) -> None:
    problem = refused({name: "x"})
    assert (problem.code, name in problem.title) == ("unsupported_parameter", True)


@pytest.mark.parametrize(("fields", "code"), [
    ({"format": "zip"}, "unsupported_parameter"),
    ({"add_shadow": "true"}, "unsupported_parameter"),
    ({"roi": "10% 10% 90% 90%"}, "unsupported_parameter"),
    ({"roi": "0px 0px 200px 300px"}, "unsupported_parameter"),
    ({"scale": "80%"}, "unsupported_parameter"),
    ({"position": "center"}, "unsupported_parameter"),
    ({"crop": "true", "crop_margin": "10px 20px"}, "unsupported_parameter"),
    ({"format": "gif"}, "invalid_parameter"),
    ({"size": "huge"}, "invalid_parameter"),
    ({"type": "cat"}, "invalid_parameter"),
    ({"type_level": "3"}, "invalid_parameter"),
    ({"channels": "rgb"}, "invalid_parameter"),
    ({"channels": "alpha", "format": "jpg"}, "invalid_parameter"),
    ({"bg_color": "81d4fa77"}, "invalid_parameter"),  # remove.bg's alpha hex: no alpha here
    ({"bg_color": "not-a-colour"}, "invalid_parameter"),
    ({"crop": "maybe"}, "invalid_parameter"),
    ({"crop": "true", "crop_margin": "60%"}, "invalid_parameter"),
    ({"semitransparency": "sometimes"}, "invalid_parameter"),
    ({"size": ["regular"]}, "invalid_parameter"),
    ({"sizes": "regular"}, "unknown_parameter"),
    ({"model": "u2netp"}, "unknown_parameter"),
])
def test_refusals_name_their_reason(fields: dict[str, Any], code: str) -> None:
    problem = refused(fields)
    assert problem.code == code
    assert problem.title


def test_every_known_field_has_one_treatment() -> None:
    mapped = {"format", "channels", "bg_color", "crop", "crop_margin"}
    kinds = [set(SOURCE_FIELDS), mapped, set(IGNORED_WHY), set(REFUSED_WHY)]
    assert set().union(*kinds) == KNOWN
    assert sum(len(k) for k in kinds) == len(KNOWN)


@pytest.mark.parametrize(("url", "found"), [
    ("s3://photos/shoes/red.png", ("photos", "shoes/red.png")),
    ("S3://photos/a/b c.jpg", ("photos", "a/b c.jpg")),
])
def test_s3_urls_name_a_bucket_and_key(url: str, found: tuple[str, str]) -> None:
    assert s3_source(url) == found


@pytest.mark.parametrize("url", ["https://example.com/a.png", "http://169.254.169.254/",
                                 "file:///etc/passwd", "photos/a.png", "ftp://x/y"])
def test_urls_clipline_would_have_to_fetch_are_refused(url: str) -> None:
    with pytest.raises(Refused) as caught:
        s3_source(url)
    assert caught.value.code == "unsupported_parameter"


@pytest.mark.parametrize("url", ["s3://", "s3://photos", "s3://photos/", "s3:///key"])
def test_s3_urls_without_a_key_are_not_valid(url: str) -> None:
    with pytest.raises(Refused) as caught:
        s3_source(url)
    assert caught.value.code == "invalid_parameter"
