"""Attacker's checklist, the operator's commands: an update changes only what it names.

Hole 2 of issue 18: ``clipline tenants create acme --name "Acme EU"`` (to rename it) wrote no
rules, and acme could read every bucket again (``test_hole_2_*``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.security.conftest import World, job


def snapshot(world: World) -> dict[str, Any]:
    """Every field of acme a command could change."""
    shown = world.cli("tenants", "show", "acme")
    assert shown.exit_code == 0, shown.output
    tenant = json.loads(shown.output)
    return {"name": tenant["name"], "allowed_sources": tenant["allowed_sources"],
            "allow_any": tenant.get("allow_any"), "keys": tenant["keys"],
            "secret": world.cli("tenants", "secret", "acme").output}


def test_hole_2_a_rename_does_not_open_a_tenant(world: World) -> None:
    assert world.cli("tenants", "create", "acme", "--allow", "photos/").exit_code == 0
    client = world.client(world.tenants.create_key("acme")[1])
    renamed = world.cli("tenants", "create", "acme", "--name", "Acme EU")
    assert renamed.exit_code == 0, renamed.output
    assert "photos/" in renamed.output
    answer = client.post("/v1/jobs", json=job("2026/salaries.jpg", "payroll"))
    assert answer.status_code == 403, answer.text
    assert snapshot(world)["allowed_sources"] == ["photos/"]
    assert snapshot(world)["name"] == "Acme EU"


@pytest.mark.parametrize(("args", "changed"), [
    (["tenants", "create", "acme"], {}),
    (["tenants", "create", "acme", "--name", "Acme EU"], {"name": "Acme EU"}),
    (["tenants", "create", "acme", "--allow", "photos/shoes/", "--allow", "s3://cdn"],
     {"allowed_sources": ["photos/shoes/", "cdn/"]}),
    (["tenants", "create", "acme", "--clear-allow"], {"allowed_sources": []}),
    (["tenants", "create", "acme", "--allow-any"], {"allow_any": True}),
    (["tenants", "create", "acme", "--no-allow-any"], {}),
    (["tenants", "show", "acme"], {}),
    (["tenants", "secret", "acme"], {}),
])
def test_each_command_changes_only_what_it_names(world: World, args: list[str],
                                                 changed: dict[str, Any]) -> None:
    assert world.cli("tenants", "create", "acme", "--name", "Acme",
                     "--allow", "photos/").exit_code == 0
    world.tenants.create_key("acme", "laptop")
    before = snapshot(world)
    done = world.cli(*args)
    assert done.exit_code == 0, done.output
    assert snapshot(world) == {**before, **changed}


def test_keys_are_issued_and_revoked_without_touching_the_rest(world: World) -> None:
    assert world.cli("tenants", "create", "acme", "--allow", "photos/").exit_code == 0
    before = snapshot(world)
    issued = world.cli("tenants", "key", "acme", "--label", "ci")
    key_id = issued.output.split()[2]
    after_key = snapshot(world)
    assert [k["label"] for k in after_key["keys"]] == ["ci"]
    assert {**after_key, "keys": []} == before
    assert world.cli("tenants", "revoke", key_id).exit_code == 0
    after_revoke = snapshot(world)
    assert after_revoke["keys"][0]["revoked_at"] is not None
    assert {**after_revoke, "keys": []} == before


def test_allow_any_then_allow_narrows_the_tenant_again(world: World) -> None:
    assert world.cli("tenants", "create", "acme", "--allow-any").exit_code == 0
    assert world.cli("tenants", "create", "acme", "--allow", "photos/").exit_code == 0
    assert snapshot(world)["allow_any"] is False
    client = world.client(world.tenants.create_key("acme")[1])
    assert client.post("/v1/jobs", json=job("x.jpg", "payroll")).status_code == 403


@pytest.mark.parametrize("args", [
    ["--allow", "photos/", "--clear-allow"],
    ["--allow-any", "--allow", "photos/"],
    ["--allow-any", "--clear-allow"],
])
def test_contradictory_options_change_nothing(world: World, args: list[str]) -> None:
    assert world.cli("tenants", "create", "acme", "--allow", "photos/").exit_code == 0
    before = snapshot(world)
    assert world.cli("tenants", "create", "acme", *args).exit_code != 0
    assert snapshot(world) == before


def test_output_rules_are_set_shown_kept_by_a_rename_and_cleared(world: World) -> None:
    made = world.cli("tenants", "create", "acme", "--allow", "photos/",
                     "--allow-output", "s3://catalog/cutouts")
    assert made.exit_code == 0, made.output
    assert "outputs: its own area of the service's bucket, catalog/cutouts" in made.output
    assert world.cli("tenants", "create", "acme", "--name", "Acme EU").exit_code == 0
    shown = json.loads(world.cli("tenants", "show", "acme").output)
    assert shown["allowed_outputs"] == ["catalog/cutouts"]
    assert world.cli("tenants", "create", "acme", "--clear-allow-output").exit_code == 0
    assert json.loads(world.cli("tenants", "show", "acme").output)["allowed_outputs"] == []
    both = world.cli("tenants", "create", "acme", "--allow-output", "c/", "--clear-allow-output")
    assert both.exit_code != 0
