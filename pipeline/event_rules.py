"""The rules of S3 event intake: which writes become jobs, for whom, with what options.

A TOML file of ``[[rule]]`` tables, checked whole at start (``EventRules.load``) so a bad file
stops ``clipline events`` (and the webhook) with the rule named, never at the first event it
would have matched. Every field is held to ``pipeline.fields``, the same limits as the API's
and the manifests': a bucket name, a key prefix, a tenant id, a priority from -100 to 100, a
model name, the output options, and where the cut-outs go (``[rule.output]``: ``bucket`` and
``key_template``, as the API's ``output``; see ``pipeline.output_keys``). A rule whose cut-outs
could land where a rule watches is refused: each cut-out would be cut out again, for ever.
Pure: no I/O beyond reading the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import fields
from pipeline.errors import (
    InvalidDestination,
    InvalidField,
    InvalidOptions,
    InvalidSettings,
    ModelNotServed,
)
from pipeline.models import DEFAULT_MODEL, check_served
from pipeline.options import OutputOptions
from pipeline.output_keys import Destination, tenant_area

RULE_FIELDS = frozenset({"bucket", "prefix", "tenant", "priority", "model", "options",
                         "output"})
OUTPUT_FIELDS = frozenset({"bucket", "key_template"})


# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    bucket: str
    prefix: str
    tenant: str
    priority: int = 0
    model: str = DEFAULT_MODEL
    options: Mapping[str, Any] = field(default_factory=dict)  # normalised (OutputOptions)
    output: Destination | None = None  # None: the service's bucket, the default key

    @property
    def name(self) -> str:
        return f"{self.bucket}/{self.prefix}"


@dataclass(frozen=True, slots=True)
class EventRules:
    """Which writes become jobs, for whom, with what options. A TOML file of ``[[rule]]``
    tables: ``bucket``, ``prefix`` (default: the whole bucket), ``tenant``, ``priority``
    (default 0), ``model`` (default: the settings' model; one of the served models, when
    ``served`` is given), ``[rule.options]`` and ``[rule.output]`` (``bucket``,
    ``key_template``)."""

    rules: tuple[Rule, ...]

    @classmethod
    def load(cls, path: Path, *, model: str = DEFAULT_MODEL,
             served: tuple[str, ...] | None = None,
             output_prefix: str = "cutouts") -> EventRules:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidSettings(f"events rules file {path}: {exc.strerror or exc}") from exc
        return cls.parse(text, source=str(path), model=model, served=served,
                         output_prefix=output_prefix)

    @classmethod
    def parse(cls, text: str, *, source: str = "rules", model: str = DEFAULT_MODEL,
              served: tuple[str, ...] | None = None,
              output_prefix: str = "cutouts") -> EventRules:
        """Every rule checked, options included, so a bad file stops ``clipline events`` at
        start with the rule named, not at the first event it would have matched. With
        ``served`` (the settings' served models), a rule's model must be one of them."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidSettings(f"{source}: not valid TOML: {exc}") from exc
        if set(doc) - {"rule"}:
            raise InvalidSettings(f"{source}: unknown table(s) {sorted(set(doc) - {'rule'})}; "
                                  "write rules as [[rule]]")
        items = doc.get("rule")
        if not isinstance(items, list) or not items:
            raise InvalidSettings(f"{source}: no [[rule]] tables")
        rules = tuple(_rule(item, f"{source}: rule {n}", model, served)
                      for n, item in enumerate(items, start=1))
        names = [r.name for r in rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidSettings(f"{source}: more than one rule for {', '.join(twice)}")
        _refuse_loops(rules, source, output_prefix)
        return cls(rules)

    def match(self, bucket: str, key: str) -> Rule | None:
        """The rule of ``bucket`` whose prefix is the longest that ``key`` starts with."""
        best: Rule | None = None
        for rule in self.rules:
            if rule.bucket == bucket and key.startswith(rule.prefix) and (
                    best is None or len(rule.prefix) > len(best.prefix)):
                best = rule
        return best

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(r.tenant for r in self.rules)


def _rule(item: Any, where: str, model: str, served: tuple[str, ...] | None) -> Rule:
    if not isinstance(item, dict):
        raise InvalidSettings(f"{where}: expected a table")
    bucket, prefix = item.get("bucket"), item.get("prefix", "")
    if isinstance(bucket, str) and isinstance(prefix, str):
        where = f"{where} ({fields.escaped(bucket, 80)}/{fields.escaped(prefix, 80)})"
    unknown = ", ".join(sorted(map(fields.shown, set(item) - RULE_FIELDS)))
    if unknown:
        raise InvalidSettings(f"{where}: unknown field(s) [{unknown}]; "
                              f"known: {sorted(RULE_FIELDS)}")
    try:
        rule = Rule(
            bucket=fields.BUCKET.check(bucket), prefix=fields.PREFIX.check(prefix),
            tenant=fields.TENANT.check(item.get("tenant")),
            priority=fields.PRIORITY.check(item.get("priority", 0)),
            model=fields.MODEL.check(item.get("model", model)), options=_options(item, where),
            output=_output(item, where))
    except InvalidField as exc:
        raise InvalidSettings(f"{where}: {exc.field!r}: {exc.problem}") from exc
    if served is not None:
        try:
            check_served(rule.model, served)
        except ModelNotServed as exc:
            raise InvalidSettings(f"{where}: {exc.message} (CLIPLINE_SERVED_MODELS)") from exc
    return rule


def _options(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    options = item.get("options", {})
    if not isinstance(options, dict):
        raise InvalidSettings(f"{where}: 'options' must be a table")
    try:
        # Normalised here, so an event's job folds with an API submission of the same request.
        return OutputOptions.parse(options).normalised()
    except InvalidOptions as exc:
        raise InvalidSettings(f"{where}: options: {exc.message}") from exc


def _output(item: Mapping[str, Any], where: str) -> Destination | None:
    output = item.get("output")
    if output is None:
        return None
    if not isinstance(output, dict):
        raise InvalidSettings(f"{where}: 'output' must be a table")
    unknown = ", ".join(sorted(map(fields.shown, set(output) - OUTPUT_FIELDS)))
    if unknown:
        raise InvalidSettings(f"{where}: output: unknown field(s) [{unknown}]; "
                              f"known: {sorted(OUTPUT_FIELDS)}")
    bucket, template = output.get("bucket"), output.get("key_template")
    for name, value in (("bucket", bucket), ("key_template", template)):
        if value is not None and not isinstance(value, str):
            raise InvalidSettings(f"{where}: output: {name!r} must be a string")
    try:
        return Destination.of(bucket, template)
    except InvalidDestination as exc:
        raise InvalidSettings(f"{where}: output: {exc}") from exc


def _refuse_loops(rules: tuple[Rule, ...], source: str, output_prefix: str) -> None:
    """Refuse a rule whose cut-outs could land in a bucket and prefix that a rule watches.
    Cut-outs in the service's own bucket need no check: ``route`` never takes what lies under
    the output prefix as a source, and the tenant may write nowhere else there."""
    for rule in rules:
        if rule.output is None or rule.output.bucket is None:
            continue
        area = tenant_area(output_prefix, rule.tenant)
        template = rule.output.template
        start = (area + "/" if template is None
                 else template.fixed_prefix({"prefix": area, "tenant": rule.tenant}))
        for other in rules:
            if other.bucket == rule.output.bucket and (
                    start.startswith(other.prefix) or other.prefix.startswith(start)):
                raise InvalidSettings(
                    f"{source}: rule {rule.name}: its cut-outs (s3://{rule.output.bucket}/"
                    f"{fields.escaped(start, 200)}…) could land where rule {other.name} "
                    "watches, and be cut out again for ever; give the output a prefix that no "
                    "rule watches")
