"""Manifests and S3 URLs into job specs: what is accepted, and how a bad line is refused."""

from __future__ import annotations

import io
import re

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


# -- S3 URLs are read as S3 reads keys: literally, one trailing ?versionId= ----------------------


@pytest.mark.parametrize(("url", "parsed"), [
    ("s3://photos/faq?.jpg", ("photos", "faq?.jpg", None)),
    ("s3://photos/catalog/item#12.jpg?versionId=3HL4kqtJ",
     ("photos", "catalog/item#12.jpg", "3HL4kqtJ")),
    ("s3://photos/a%20b.jpg", ("photos", "a%20b.jpg", None)),
    ("s3://photos/a+b.jpg", ("photos", "a+b.jpg", None)),
    ("s3://photos/summer sale/red shoe.jpg", ("photos", "summer sale/red shoe.jpg", None)),
    ("s3://photos/café/日本 🙂.png?versionId=v.1_x-Y",
     ("photos", "café/日本 🙂.png", "v.1_x-Y")),
    ("s3://photos/what?versionId=no?.jpg", ("photos", "what?versionId=no?.jpg", None)),
    ("s3://photos/a?b#c%d+e.jpg?versionId=null", ("photos", "a?b#c%d+e.jpg", "null")),
    ("s3://photos/?.jpg", ("photos", "?.jpg", None)),
    ("  s3://photos/x.jpg\t", ("photos", "x.jpg", None)),  # ASCII space around: not the key's
    ("s3://photos/x.jpg\u00a0", ("photos", "x.jpg\u00a0", None)),  # a no-break space is
    ("s3://photos/x\u2028.jpg", ("photos", "x\u2028.jpg", None)),
])
def test_an_s3_url_keeps_every_character_of_its_key(url: str,
                                                    parsed: tuple[str, str, str | None]) -> None:
    assert parse_s3_url(url) == parsed


@pytest.mark.parametrize(("url", "message"), [
    ("s3://photos/a.jpg?versionId=", "empty versionId"),
    ("s3://Photos/a.jpg", "bucket"),
    ("s3://photos/a\x00.jpg", "key: contains the control character U+0000"),
    ("s3://photos/a.jpg?versionId=v\x01", "version: contains the control character U+0001"),
    ("s3://photos/" + "k" * 1025, "key: is 1025 bytes"),
])
def test_an_s3_url_the_ledger_cannot_hold_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_s3_url(url)


# -- manifest lines hold their fields to the ledger's limits ------------------------------------


@pytest.mark.parametrize(("line", "message"), [
    ("s3://photos/a\x07.jpg", "line 2: key: contains the control character U+0007"),
    ('{"bucket": "photos", "key": "a\\u0000.jpg"}', "line 2: key: contains the control"),
    ('{"bucket": "photos", "key": "a.jpg", "version": {"v": 1}}',
     "line 2: version: must be a string, got dict"),
    ('{"bucket": "photos", "key": "a.jpg", "priority": 40000}',
     "line 2: priority: must be between -100 and 100, got 40000"),
    ('{"bucket": "photos", "key": "a.jpg", "idempotency_key": "' + "k" * 300 + '"}',
     "line 2: idempotency_key: is 300 characters long, over the limit of 255"),
    ('{"bucket": "photos", "key": "a.jpg", "model": "' + "m" * 80 + '"}',
     "line 2: model: is 80 characters long, over the limit of 64"),
    ('{"bucket": "photos", "key": "a.jpg", "options": ["crop"]}',
     "line 2: 'options' must be an object"),
    ('{"bucket": "photos", "key": "a.jpg", "\\u0000": 1}', "line 2: unknown field(s) ['\\x00']"),
    ("[" * 5000 + "]" * 5000, "line 2: the JSON is nested too deep"),
])
def test_a_manifest_field_the_ledger_cannot_hold_stops_the_manifest(line: str,
                                                                  message: str) -> None:
    specs = manifest_specs(["s3://photos/ok.jpg", line], DEFAULTS)
    assert next(specs).key == "ok.jpg"
    with pytest.raises(InvalidManifest) as refused:
        next(specs)
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\x00" not in str(refused.value) and "\x07" not in str(refused.value)


@pytest.mark.parametrize(("lines", "message"), [
    (["bucket,key", "photos,ok.jpg", "photos,a\x1b[2J.jpg"], "line 3: key: contains"),
    (["bucket,key,priority", "photos,a.jpg,40000"], "line 2: priority: must be between"),
    (["bucket,key,idempotency_key", "photos,a.jpg," + "k" * 256], "line 2: idempotency_key"),
])
def test_a_csv_field_the_ledger_cannot_hold_stops_the_manifest(lines: list[str],
                                                               message: str) -> None:
    from pipeline.intake import csv_specs

    with pytest.raises(InvalidManifest) as refused:
        list(csv_specs(lines, DEFAULTS))
    assert str(refused.value).startswith(message), str(refused.value)


def test_an_unbalanced_csv_quote_is_refused_not_glued_to_the_next_lines() -> None:
    from pipeline.intake import manifest_lines, specs_of

    data = b'bucket,key\r\nphotos,"tonight/q1.jpg\r\nphotos,tonight/q2.jpg\r\n'
    with pytest.raises(InvalidManifest, match=r"lines 2-3: key: contains the control character"):
        list(specs_of("m.csv", manifest_lines(io.BytesIO(data)), DEFAULTS))


def test_manifest_bytes_become_lines_without_their_ends_and_bom() -> None:
    from pipeline.intake import manifest_lines

    data = b"\xef\xbb\xbfs3://photos/a.jpg\r\ns3://photos/b\xe2\x80\xa8c.jpg\n\ns3://photos/d.jpg"
    assert list(manifest_lines(io.BytesIO(data))) == [
        "s3://photos/a.jpg", "s3://photos/b\u2028c.jpg", "", "s3://photos/d.jpg"]


def test_a_manifest_line_that_is_not_utf8_is_refused_by_its_number() -> None:
    from pipeline.intake import manifest_lines

    lines = manifest_lines(io.BytesIO(b"s3://photos/a.jpg\ns3://photos/caf\xe9.jpg\n"))
    assert next(lines) == "s3://photos/a.jpg"
    with pytest.raises(InvalidManifest, match="line 2: not UTF-8 text"):
        next(lines)


def test_a_csv_manifest_with_a_bom_names_its_columns() -> None:
    from pipeline.intake import manifest_lines, specs_of

    data = "\ufeffbucket,key\r\nphotos,a.jpg\r\n".encode()
    specs = list(specs_of("m.csv", manifest_lines(io.BytesIO(data)), DEFAULTS))
    assert [(s.bucket, s.key) for s in specs] == [("photos", "a.jpg")]


# -- the three formats read the same text the same way -------------------------------------------

SAME_JOBS = [("photos", "a.jpg"), ("photos", "b c.jpg"), ("photos", "d.jpg ")]
FORMATS = {
    "urls": ("m.txt", "s3://photos/a.jpg{ws}{eol}{blank}s3://photos/b c.jpg{eol}"
             '{{"bucket": "photos", "key": "d.jpg "}}{ws}{eol}'),
    "json": ("m.jsonl", '{{"bucket": "photos", "key": "a.jpg"}}{ws}{eol}{blank}'
             '{{"bucket": "photos", "key": "b c.jpg"}}{eol}'
             '{{"bucket": "photos", "key": "d.jpg "}}{ws}{eol}'),
    "csv": ("m.csv", 'bucket,key{ws}{eol}photos,a.jpg{ws}{eol}{blank}photos,b c.jpg{eol}'
            'photos,"d.jpg "{ws}{eol}'),
}


@pytest.mark.parametrize("bom", ["", "\ufeff"], ids=["no-bom", "bom"])
@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("ws", ["", "  \t"], ids=["bare", "trailing-space"])
@pytest.mark.parametrize("blank", ["", "\n", "   \n"], ids=["no-blank", "blank", "spaces"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_bom_line_ends_blank_lines_and_trailing_space_alike(
        fmt: str, bom: str, eol: str, ws: str, blank: str) -> None:
    from pipeline.intake import manifest_lines, specs_of

    name, template = FORMATS[fmt]
    text = bom + template.format(ws=ws, eol=eol, blank=blank.replace("\n", eol))
    specs = list(specs_of(name, manifest_lines(io.BytesIO(text.encode())), DEFAULTS))
    assert [(s.bucket, s.key) for s in specs] == SAME_JOBS
