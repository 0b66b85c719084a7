"""Output destinations: key templates, the output allowlist, collisions (pipeline.output_keys)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import DestinationCollision, InvalidDestination, OutputNotAllowed
from pipeline.jobs import JobSpec
from pipeline.models import DEFAULT_MODEL
from pipeline.output_keys import (
    Destination,
    KeyTemplate,
    Placer,
    output_allowed,
    source_values,
)
from pipeline.tenants import Tenant

MIRROR = "{prefix}/{key_dir}/{key_stem}.{ext}"
ACME = Tenant("acme", "Acme", ("photos/",), allowed_outputs=("catalog/cutouts/",))


def placer(template: str | None = MIRROR, bucket: str | None = None,
           tenant: Tenant | None = ACME, **kw: Any) -> Placer:
    destination = Destination.of(bucket, template)
    assert destination is not None
    return Placer(destination, "acme", tenant=tenant, output_prefix="cutouts",
                  own_bucket="clipline-out", **kw)


def spec(key: str, bucket: str = "photos", **options: Any) -> JobSpec:
    return JobSpec(bucket=bucket, key=key, options=options)


def key_of(key: str, template: str = MIRROR, **options: Any) -> str | None:
    return placer(template).place(spec(key, **options)).output_key


# -- templates ---------------------------------------------------------------------------------


def test_the_mirror_template_keeps_the_source_tree() -> None:
    assert key_of("2026-11-30/shoes/SKU1.jpg") == "cutouts/acme/2026-11-30/shoes/SKU1.png"
    assert key_of("2026-11-30/shoes/SKU1.jpg", format="webp") == (
        "cutouts/acme/2026-11-30/shoes/SKU1.webp")


def test_an_empty_key_dir_takes_its_slash_along() -> None:
    assert key_of("SKU1.jpg") == "cutouts/acme/SKU1.png"


def test_an_empty_placeholder_inside_a_segment_keeps_the_slash() -> None:
    assert key_of("SKU1.jpg", "{prefix}/x{key_dir}/{key_stem}.{ext}") == (
        "cutouts/acme/x/SKU1.png")
    assert key_of("SKU1.jpg", "{prefix}/{key_dir}/{key_dir}/{key_stem}.{ext}") == (
        "cutouts/acme/SKU1.png")
    assert key_of("a/SKU1.jpg", "{prefix}/x{key_dir}/{key_stem}.{ext}") == (
        "cutouts/acme/xa/SKU1.png")


def test_every_placeholder() -> None:
    template = "{tenant}/{bucket}/{key}/{key_dir}/{key_name}/{key_stem}/{key_ext}/{ext}/{model}"
    found = placer(template, tenant=None).place(spec("a/b/c.tar.gz")).output_key
    assert found == "acme/photos/a/b/c.tar.gz/a/b/c.tar.gz/c.tar/gz/png/" + DEFAULT_MODEL


def test_source_values_of_odd_names() -> None:
    assert source_values("b", ".env")["key_stem"] == ".env"
    assert source_values("b", ".env")["key_ext"] == ""
    assert source_values("b", "noext")["key_stem"] == "noext"
    assert source_values("b", "dir/x.")["key_stem"] == "x"


@pytest.mark.parametrize("key", [
    "shoes/red shoe.jpg", "100%/cotton%20shirt.jpg", "a+b/c+d.jpg", "été/chaussure rouge.jpg",
    "日本/靴.jpg", "emoji/👟.jpg", "q?versionId=x/#frag.jpg",
])
def test_odd_and_unicode_keys_are_copied_literally(key: str) -> None:
    folder, _, name = key.rpartition("/")
    assert key_of(key) == f"cutouts/acme/{folder}/{name.rpartition('.')[0]}.png"


def test_literal_braces() -> None:
    assert key_of("a/b.jpg", "{prefix}/{{x}}/{key_stem}.{ext}") == "cutouts/acme/{x}/b.png"


def test_a_very_long_key_is_refused_by_its_length_not_truncated() -> None:
    long_key = "d/" + "é" * 505 + ".jpg"  # 1,016 bytes: a valid source, too long an output
    with pytest.raises(InvalidDestination, match="over the limit of 1024"):
        key_of(long_key)
    shorter = placer("{key_stem}.{ext}", tenant=None).place(spec(long_key)).output_key
    assert shorter == "é" * 505 + ".png"  # 1,014 bytes: kept whole


@pytest.mark.parametrize("template, problem", [
    ("{prefix}/{nope}.png", "unknown placeholder"),
    ("{prefix}/{key:>9}", "unknown placeholder"),
    ("{prefix}/{key!r}", "unknown placeholder"),
    ("{prefix}/{key", "unbalanced"),
    ("{prefix}/key}", "unbalanced"),
    ("../{key}", "'..' segment"),
    ("{prefix}/../{key}", "'..' segment"),
    ("{prefix}/./{key}", "'.' or '..'"),
    ("{prefix}//{key}", "empty segment"),
    ("/{key}", "starts with '/'"),
    ("{prefix}/{key_dir}/", "empty segment"),
    ("{prefix}/\x07{key}", "control character"),
    ("", "must not be empty"),
])
def test_bad_templates_are_refused_when_parsed(template: str, problem: str) -> None:
    with pytest.raises(InvalidDestination, match=problem):
        KeyTemplate.parse(template)


@pytest.mark.parametrize("key, problem", [
    ("a//b.jpg", "empty segment"),
    ("a/../b.jpg", "'.' or '..'"),
    ("/a.jpg", "empty segment"),
])
def test_keys_that_would_make_a_bad_output_are_refused(key: str, problem: str) -> None:
    with pytest.raises(InvalidDestination, match=problem):
        key_of(key, "{prefix}/{key}.{ext}")


def test_a_source_key_with_a_trailing_slash_has_no_file_name() -> None:
    with pytest.raises(InvalidDestination, match="ends with '/'"):
        key_of("shoes/", MIRROR)


def test_an_output_that_would_overwrite_its_source_is_refused() -> None:
    place = placer("{key}", bucket="catalog", tenant=Tenant(
        "acme", "A", ("catalog/",), allowed_outputs=("catalog/",)))
    with pytest.raises(InvalidDestination, match="overwrite the source"):
        place.place(spec("shoes/a.png", bucket="catalog"))


def test_a_bad_bucket_is_refused() -> None:
    with pytest.raises(InvalidDestination, match="output bucket"):
        Destination.of("Not_A_Bucket", None)
    assert Destination.of(None, None) is None


# -- determinism and identity -------------------------------------------------------------------


def test_the_same_job_always_gets_the_same_key_and_the_destination_is_part_of_its_identity() -> (
        None):
    first = placer().place(spec("a/b.jpg"))
    again = placer().place(spec("a/b.jpg"))
    assert (first.output_key, first.dedupe_key()) == (again.output_key, again.dedupe_key())
    plain = spec("a/b.jpg")
    assert plain.dedupe_key() != first.dedupe_key()
    elsewhere = placer("{prefix}/other/{key_name}").place(spec("a/b.jpg"))
    assert elsewhere.dedupe_key() != first.dedupe_key()
    assert first.request()["output"] == {"bucket": None, "key": "cutouts/acme/a/b.png"}
    assert plain.request()["output"] is None


def test_a_spec_without_destination_keeps_its_old_identity() -> None:
    plain = spec("a/b.jpg")
    assert plain.identity() == f'["photos","a/b.jpg",null,{{}},"{DEFAULT_MODEL}"]'


# -- the allowlist ---------------------------------------------------------------------------


def test_the_tenants_own_area_is_always_allowed_and_no_other_tenants() -> None:
    assert output_allowed(ACME, None, "cutouts/acme/x.png", "cutouts/acme")
    assert not output_allowed(ACME, None, "cutouts/globex/x.png", "cutouts/acme")
    assert not output_allowed(ACME, None, "cutouts/acme-evil/x.png", "cutouts/acme")
    with pytest.raises(OutputNotAllowed, match="outside the tenant's allowed outputs"):
        placer("cutouts/globex/{key}").place(spec("a.jpg"))


def test_another_bucket_needs_an_output_rule() -> None:
    ok = placer("{key_dir}/{key_stem}.{ext}", bucket="catalog")
    with pytest.raises(OutputNotAllowed):
        ok.place(spec("a/b.jpg"))  # catalog/a/b.png: not under catalog/cutouts/
    assert placer("cutouts/{key}", bucket="catalog").place(spec("a.jpg")).output_key == (
        "cutouts/a.jpg")
    with pytest.raises(OutputNotAllowed):
        placer("cutouts/{key}", bucket="elsewhere").place(spec("a.jpg"))


def test_allow_any_is_for_sources_never_outputs() -> None:
    anything = Tenant("acme", "A", allow_any=True)
    with pytest.raises(OutputNotAllowed):
        placer("cutouts/{key}", bucket="catalog", tenant=anything).place(spec("a.jpg"))


def test_a_bucket_without_template_is_checked_on_the_default_keys_prefix() -> None:
    allowed = Tenant("acme", "A", allowed_outputs=("catalog/cutouts/acme/",))
    placed = placer(None, bucket="catalog", tenant=allowed).place(spec("a.jpg"))
    assert (placed.output_bucket, placed.output_key) == ("catalog", None)
    narrow = Tenant("acme", "A", allowed_outputs=("catalog/other/",))
    with pytest.raises(OutputNotAllowed, match="catalog/cutouts/acme/"):
        placer(None, bucket="catalog", tenant=narrow).place(spec("a.jpg"))


def test_the_operators_own_submit_checks_no_allowlist() -> None:
    placed = placer("x/{key}", bucket="anywhere", tenant=None).place(spec("a.jpg"))
    assert (placed.output_bucket, placed.output_key) == ("anywhere", "x/a.jpg")


# -- collisions -------------------------------------------------------------------------------


def test_two_jobs_writing_one_key_refuse_the_submission() -> None:
    place = placer()
    place.place(spec("shoes/SKU1.jpg"))
    with pytest.raises(DestinationCollision, match="items 1 and 2"):
        place.place(spec("shoes/SKU1.png"))


def test_key_name_tells_them_apart() -> None:
    place = placer("{prefix}/{key_dir}/{key_name}.{ext}")
    keys = [place.place(spec(k)).output_key for k in ("shoes/SKU1.jpg", "shoes/SKU1.png")]
    assert keys == ["cutouts/acme/shoes/SKU1.jpg.png", "cutouts/acme/shoes/SKU1.png.png"]


def test_the_same_job_twice_is_no_collision() -> None:
    place = placer()
    list(place.place_all([spec("a.jpg"), spec("a.jpg")]))


def test_a_new_version_is_another_job_and_collides_within_one_submission() -> None:
    place = placer()
    place.place(JobSpec(bucket="photos", key="a.jpg", version="1"))
    with pytest.raises(DestinationCollision):
        place.place(JobSpec(bucket="photos", key="a.jpg", version="2"))


def test_separate_submissions_are_not_compared() -> None:
    placer().place(JobSpec(bucket="photos", key="a.jpg", version="1"))
    placer().place(JobSpec(bucket="photos", key="a.jpg", version="2"))


def test_the_layers_mask_takes_part_in_the_check() -> None:
    place = placer("{prefix}/{key_stem}.{ext}")
    place.place(spec("a.jpg", layers=True))  # writes a.png and a.mask.png
    with pytest.raises(DestinationCollision, match=r"a\.mask\.png"):
        place.place(spec("a.mask.jpg"))


def test_placing_is_lazy_and_stops_at_the_collision() -> None:
    seen = []

    def specs() -> Any:
        for key in ("a.jpg", "a.png", "never.jpg"):
            seen.append(key)
            yield spec(key)

    with pytest.raises(DestinationCollision):
        list(placer().place_all(specs()))
    assert seen == ["a.jpg", "a.png"]
