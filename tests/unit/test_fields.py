"""The one table of field limits (``pipeline.fields``): what each kind of text and number is
refused for, and that the refusal names the field without echoing raw control characters."""

from __future__ import annotations

import pytest

from pipeline import fields
from pipeline.errors import InvalidField, UsageError

CONTROLS = ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]


@pytest.mark.parametrize("char", CONTROLS)
@pytest.mark.parametrize("spec", [fields.KEY, fields.VERSION, fields.IDEMPOTENCY_KEY,
                                  fields.LABEL, fields.NAME, fields.REASON, fields.PREFIX])
def test_a_control_character_is_refused_naming_field_and_position(
        spec: fields.TextField, char: str) -> None:
    with pytest.raises(InvalidField) as refused:
        spec.check(f"ab{char}c")
    assert refused.value.field == spec.name
    assert f"U+{ord(char):04X} at character 2" in refused.value.problem
    assert char not in str(refused.value)


def test_an_unpaired_surrogate_is_refused() -> None:
    # What Python makes of a file name that is not UTF-8 (os.fsdecode: surrogateescape).
    with pytest.raises(InvalidField, match="not valid UTF-8 text"):
        fields.KEY.check("caf\udce9.jpg")


def test_the_refusal_is_a_usage_error_and_a_value_error() -> None:
    with pytest.raises(InvalidField) as refused:
        fields.KEY.check("a\x00")
    assert isinstance(refused.value, UsageError) and isinstance(refused.value, ValueError)
    assert refused.value.reason == "invalid_field"


@pytest.mark.parametrize("key", [
    "a b/c d.jpg", "faq?.jpg", "item#12.jpg", "100%.jpg", "a+b.jpg", "café/日本.png",
    "emoji 🙂.webp", "line\u2028sep.jpg", "  spaced  ", "k" * 1024, "é" * 512,
])
def test_keys_s3_allows_are_kept(key: str) -> None:
    assert fields.KEY.check(key) == key


def test_an_s3_key_is_measured_in_utf8_bytes() -> None:
    with pytest.raises(InvalidField, match="1025 bytes of UTF-8, over the limit of 1024"):
        fields.KEY.check("k" * 1023 + "é")
    assert fields.KEY.check("k" * 1022 + "é")


@pytest.mark.parametrize(("spec", "limit"), [(fields.IDEMPOTENCY_KEY, 255), (fields.MODEL, 64),
                                             (fields.TENANT, 64), (fields.LABEL, 200),
                                             (fields.REASON, 64), (fields.VERSION, 1024)])
def test_text_is_kept_up_to_its_column_and_refused_past_it(spec: fields.TextField,
                                                           limit: int) -> None:
    assert spec.check("a" * limit)
    with pytest.raises(InvalidField, match=f"{limit + 1} characters long, over the limit"):
        spec.check("a" * (limit + 1))


@pytest.mark.parametrize("bucket", ["ab", "Photos", "my_bucket", "-photos", "photos-", "a/b",
                                    "b" * 64, ""])
def test_what_is_not_a_bucket_name_is_refused(bucket: str) -> None:
    with pytest.raises(InvalidField, match="bucket"):
        fields.BUCKET.check(bucket)


@pytest.mark.parametrize("bucket", ["abc", "photos", "my.photos-2026", "b" * 63])
def test_bucket_names_are_kept(bucket: str) -> None:
    assert fields.BUCKET.check(bucket) == bucket


@pytest.mark.parametrize("tenant", ["acme\n", "Acme", "-acme", "a" * 65, "ac me", ""])
def test_what_is_not_a_tenant_id_is_refused(tenant: str) -> None:
    with pytest.raises(InvalidField):
        fields.TENANT.check(tenant)


@pytest.mark.parametrize("value", [40000, -101, 101, True, "5", 2.0, None])
def test_a_priority_is_an_integer_from_minus_100_to_100(value: object) -> None:
    with pytest.raises(InvalidField, match="priority"):
        fields.PRIORITY.check(value)
    assert fields.PRIORITY.check(-100) == -100 and fields.PRIORITY.check(100) == 100


def test_a_client_idempotency_key_cannot_pose_as_a_derived_one() -> None:
    with pytest.raises(InvalidField, match="must not start with 'h:'"):
        fields.IDEMPOTENCY_KEY.check("h:AbCdEf")
    assert fields.IDEMPOTENCY_KEY.check("sku-h:1") == "sku-h:1"


def test_non_strings_are_refused_by_type() -> None:
    with pytest.raises(InvalidField, match="must be a string, got dict"):
        fields.VERSION.check({"v": 1})


def test_escaped_text_is_safe_to_store_and_print() -> None:
    assert fields.escaped("a\x00b\udce9é\n") == "a\\x00b\\udce9é\\x0a"
    assert fields.escaped("x" * 20, limit=5) == "xxxxx…"
    assert fields.shown("caf\udce9.jpg") == "'caf\\udce9.jpg'"
