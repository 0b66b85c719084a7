"""Manifests and S3 URLs into job specs: what is accepted, and how a bad line is refused."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidManifest
from pipeline.intake import manifest_specs, parse_s3_url, prefix_specs
from pipeline.jobs import JobSpec

DEFAULTS = {"options": {"format": "png"}, "priority": 0, "model": "u2netp"}


def test_s3_urls_with_and_without_a_version() -> None:
    assert parse_s3_url("s3://photos/a/b.jpg") == ("photos", "a/b.jpg", None)
    assert parse_s3_url(" s3://photos/x.png?versionId=v3 ") == ("photos", "x.png", "v3")
    assert parse_s3_url("s3://photos/sku#12 red.jpg") == ("photos", "sku#12 red.jpg", None)


@pytest.mark.parametrize("bad", ["photos/a.jpg", "s3://photos", "s3://photos/", "s3:///a.jpg",
                                 "https://photos/a.jpg", "s3://photos/folder/"])
def test_what_is_not_an_object_url_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an S3 object URL"):
        parse_s3_url(bad)


def test_a_manifest_mixes_urls_json_comments_and_blank_lines() -> None:
    lines = [
        "# tonight's shoes", "", "s3://photos/red.jpg",
        '{"bucket": "photos", "key": "tote.png", "options": {"crop": true}, "priority": 7,'
        ' "idempotency_key": "sku-1"}',
    ]
    specs = list(manifest_specs(lines, DEFAULTS))
    assert specs == [
        JobSpec(bucket="photos", key="red.jpg", options={"format": "png"}, model="u2netp"),
        JobSpec(bucket="photos", key="tote.png", options={"format": "png", "crop": True},
                priority=7, idempotency_key="sku-1", model="u2netp"),
    ]


@pytest.mark.parametrize(("line", "message"), [
    ("photos/red.jpg", "not an S3 object URL"),
    ("{not json", "line 2"),
    ('["a", "list"]', "must be an object"),
    ('{"bucket": "photos"}', "'key' must be a non-empty string"),
    ('{"bucket": "photos", "key": "a.jpg", "colour": "red"}', "unknown field"),
    ('{"bucket": "photos", "key": "a.jpg", "priority": "high"}', "'priority' must be an integer"),
    ('{"bucket": "photos", "key": "a.jpg", "options": {"format": "gif"}}', "format"),
])
def test_a_bad_line_names_its_number_and_stops_the_manifest(line: str, message: str) -> None:
    specs = manifest_specs(["s3://photos/ok.jpg", line, "s3://photos/after.jpg"], DEFAULTS)
    assert next(specs).key == "ok.jpg"
    with pytest.raises(InvalidManifest, match="line 2") as refused:
        next(specs)
    assert message in str(refused.value)


def test_a_prefix_keeps_images_only() -> None:
    keys = ["shoes/", "shoes/a.JPG", "shoes/notes.txt", "shoes/b.webp", "shoes/.DS_Store"]
    assert [s.key for s in prefix_specs("photos", keys, DEFAULTS)] == ["shoes/a.JPG",
                                                                       "shoes/b.webp"]



def test_a_csv_manifest_names_its_columns_in_a_header() -> None:
    from pipeline.intake import specs_of

    lines = ["bucket,key,version,priority,format,crop",
             "photos,a.jpg,,,,",
             'photos,"b, c.jpg",v2,9,webp,true']
    specs = list(specs_of("tonight.CSV", lines, DEFAULTS))
    assert specs[0] == JobSpec(bucket="photos", key="a.jpg", options={"format": "png"},
                               model="u2netp")
    assert (specs[1].key, specs[1].version, specs[1].priority) == ("b, c.jpg", "v2", 9)
    assert specs[1].options == {"format": "webp", "crop": "true"}


@pytest.mark.parametrize(("lines", "message"), [
    (["bucket,name", "photos,a.jpg"], "line 1: a CSV manifest's header needs bucket and key"),
    (["bucket,key,colour", "photos,a.jpg,red"], "unknown column(s) ['colour']"),
    (["bucket,key,priority", "photos,a.jpg,1", "photos,b.jpg,high"], "line 3"),
    (["bucket,key", "photos,a.jpg,extra"], "line 2: more cells"),
    (["bucket,key,format", "photos,a.jpg,gif"], "line 2: format"),
])
def test_a_bad_csv_manifest_is_refused_with_its_line(lines: list[str], message: str) -> None:
    from pipeline.intake import csv_specs

    with pytest.raises(InvalidManifest) as refused:
        list(csv_specs(lines, DEFAULTS))
    assert message in str(refused.value)
