"""Allowlist rules end on a segment boundary: ``photos/shoes`` (as typed, no trailing slash)
covers ``photos/shoes/…`` and never ``photos/shoes-private/…``, for sources and for outputs.

Found by a newcomer: ``--allow-output catalog/cutouts`` let a job write
``catalog/cutouts-evil/…``, and ``--allow photos/tonight`` read ``photos/tonight-private/…``.
"""

from __future__ import annotations

import pytest

from pipeline.output_keys import output_allowed
from pipeline.tenants import Tenant, covers, normalise_rule, source_allowed


@pytest.mark.parametrize(("typed", "path", "covered"), [
    ("photos/shoes", "photos/shoes/a.jpg", True),
    ("photos/shoes", "photos/shoes", True),  # the exact object
    ("photos/shoes", "photos/shoes-private/a.jpg", False),
    ("photos/shoes", "photos/shoesx", False),
    ("photos/shoes/", "photos/shoes/deep/a.jpg", True),
    ("photos/shoes/", "photos/shoes-private/a.jpg", False),
    ("s3://photos", "photos/anything.jpg", True),
    ("photos", "photos-private/a.jpg", False),
])
def test_a_rule_covers_its_folder_only(typed: str, path: str, covered: bool) -> None:
    assert covers(normalise_rule(typed), path) is covered


def test_a_source_rule_without_a_slash_does_not_reach_a_sibling() -> None:
    acme = Tenant("acme", "Acme", allowed_sources=(normalise_rule("photos/tonight"),))
    assert source_allowed(acme, "photos", "tonight/sku1.jpg")
    assert not source_allowed(acme, "photos", "tonight-private/sku1.jpg")


def test_an_output_rule_without_a_slash_does_not_reach_a_sibling() -> None:
    acme = Tenant("acme", "Acme", allowed_outputs=(normalise_rule("catalog/cutouts"),))
    area = "cutouts/acme"
    assert output_allowed(acme, "catalog", "cutouts/mug.png", area)
    assert not output_allowed(acme, "catalog", "cutouts-evil/mug.png", area)
    assert not output_allowed(acme, "catalog", "cutoutsmug.png", area)
