"""Where a job's cut-out goes: an output bucket and a key template over the source key. Pure.

Without a destination a cut-out goes to the service's output bucket at
``<CLIPLINE_OUTPUT_PREFIX>/<tenant>/<job id>.<ext>`` (``pipeline.process.output_key``). A job or
a batch may instead name a ``Destination``: an output bucket (absent: the service's), a key
template (absent: the default key above), or both. The template is resolved once, when the job
is submitted, and the resolved key is stored with the job: the same job always writes the same
key, so a retry overwrites its own object.

Template grammar: literal text and placeholders in braces; ``{{`` and ``}}`` are literal
braces. Placeholders (anything else is refused, as are format specs like ``{key:>9}``)::

    {prefix}     the tenant's own area of the service's bucket: <output prefix>/<tenant>
    {tenant}     the tenant id
    {bucket}     the source bucket
    {key}        the whole source key            2026-11-30/shoes/SKU1.jpg
    {key_dir}    its folder (no slash at the end) 2026-11-30/shoes
    {key_name}   its last segment                SKU1.jpg
    {key_stem}   the last segment less its suffix SKU1
    {key_ext}    the source's suffix, no dot      jpg
    {ext}        the output's extension, no dot   png (webp, jpg: the job's format)
    {model}      the job's model                  u2netp

``{prefix}/{key_dir}/{key_stem}.{ext}`` mirrors the source tree. A placeholder that resolves
empty (the folder of a key at the bucket's root) and is a whole segment takes the slash that
follows it along, so
``SKU1.jpg`` becomes ``<prefix>/SKU1.png``, not ``<prefix>//SKU1.png``. Keys are copied
literally: spaces, ``%``, ``+`` and any Unicode stay as they are (nothing is percent-decoded or
normalised; S3 compares keys byte for byte).

Refused, at submit time (``InvalidDestination``): an unknown placeholder, an unbalanced brace,
a resolved key that is empty, starts with ``/``, has an empty segment (``a//b``, a trailing
``/``), a ``.`` or ``..`` segment, a control character, or more than 1,024 bytes; a
``{key_name}`` or ``{key_stem}`` of a key that ends with ``/``; an output that would overwrite
its own source.

Allowlist (``output_allowed``): the tenant's own area of the service's bucket (``{prefix}/…``)
is always allowed; anything else, another bucket included, must be under one of the tenant's
``allowed_outputs`` rules (``bucket/prefix``, like sources; ``clipline tenants create ID
--allow-output bucket/prefix``). ``allow_any`` is about reading sources and never extends to
writing. Refused: ``OutputNotAllowed``.

Collisions (``Placer``): within one submission (a batch, a manifest, ``clipline submit``), two
different jobs that resolve to the same output object are refused, the whole submission with
them (``DestinationCollision``, naming both lines); nothing is silently renamed, because a
downstream system reading ``{key_stem}.png`` could not know which source a disambiguated name
came from. Typical cause: ``SKU1.jpg`` and ``SKU1.png`` under one folder with ``{key_stem}.{ext}``
(use ``{key_name}.{ext}`` then). Lines that are the same job (they fold) are no collision. Jobs
of different submissions are not compared: a later job for the same key (a new version of the
photo, say) replaces the earlier cut-out, which is what mirroring wants. With the ``layers``
option the mask beside the output (``<stem>.mask.png``) takes part in the check too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from pipeline import fields
from pipeline.errors import (
    DestinationCollision,
    InvalidDestination,
    InvalidField,
    OutputNotAllowed,
)
from pipeline.jobs import JobSpec
from pipeline.options import OutputOptions
from pipeline.process import layers_mask_key
from pipeline.tenants import Tenant, UploadArea, covers

PLACEHOLDERS = ("prefix", "tenant", "bucket", "key", "key_dir", "key_name", "key_stem",
                "key_ext", "ext", "model")
MAX_TEMPLATE_BYTES = 1024
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """A parsed key template: ``parts`` alternate literal text and placeholder names
    (``(text, False)`` / ``(name, True)``)."""

    text: str
    parts: tuple[tuple[str, bool], ...]

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """The template ``text``, checked: known placeholders, balanced braces, and a key that
        could be valid (it is resolved once with ``x`` for every placeholder and checked).
        Raises ``InvalidDestination``."""
        problem = fields.text_problem(text, fields.TextField("key_template",
                                                             max_bytes=MAX_TEMPLATE_BYTES))
        if problem:
            raise InvalidDestination(f"key_template {problem}")
        parts: list[tuple[str, bool]] = []
        literal: list[str] = []
        last = 0
        for found in _TOKEN.finditer(text):
            literal.append(text[last:found.start()])
            last, token = found.end(), found.group()
            if token in ("{{", "}}"):
                literal.append(token[0])
                continue
            if found.group(1) is None:
                raise InvalidDestination(f"key_template {fields.shown(text)}: an unbalanced "
                                         f"{token!r} at character {found.start()}; write "
                                         f"{token * 2!r} for a literal brace")
            name = found.group(1)
            if name not in PLACEHOLDERS:
                raise InvalidDestination(
                    f"key_template {fields.shown(text)}: unknown placeholder "
                    f"{{{fields.escaped(name, 40)}}}; known: "
                    + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
            parts += [("".join(literal), False), (name, True)]
            literal = []
        literal.append(text[last:])
        parts.append(("".join(literal), False))
        made = cls(text, tuple((t, p) for t, p in parts if p or t))
        made.render(dict.fromkeys(PLACEHOLDERS, "x"), where="")
        return made

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t for t, placeholder in self.parts if placeholder)

    def fixed_prefix(self, known: Mapping[str, str]) -> str:
        """What every key this template makes starts with, given the placeholders ``known``
        for all of its keys (``prefix`` and ``tenant`` under one rule): the text up to the
        first placeholder that varies."""
        out = []
        for text, placeholder in self.parts:
            if placeholder and text not in known:
                break
            out.append(known[text] if placeholder else text)
        return "".join(out)

    def render(self, values: Mapping[str, str], *, where: str) -> str:
        """The key for ``values`` (one per placeholder), checked by ``check_key``. A placeholder
        that is empty and a whole segment (``/{key_dir}/``, or at the start) takes the ``/``
        after it along. ``where`` names the source in a refusal."""
        out: list[str] = []
        drop_slash = False
        for text, placeholder in self.parts:
            if placeholder:
                value = values[text]
                so_far = "".join(out)
                starts_segment = so_far == "" or so_far.endswith("/")
                out.append(value)
                drop_slash = value == "" and starts_segment
            else:
                out.append(text[1:] if drop_slash and text.startswith("/") else text)
                drop_slash = False
        return check_key("".join(out), where=where or f"template {fields.shown(self.text)}")


def check_key(key: str, *, where: str) -> str:
    """``key`` if it is a usable output key; else ``InvalidDestination`` saying why."""
    problem = fields.text_problem(key, fields.KEY)
    if problem is None:
        segments = key.split("/")
        if key.startswith("/"):
            problem = "starts with '/'"
        elif "" in segments:
            problem = "has an empty segment ('//' or a '/' at the end)"
        elif "." in segments or ".." in segments:
            problem = "has a '.' or '..' segment"
    if problem:
        raise InvalidDestination(f"the output key {fields.shown(key, 120)} of {where} {problem}")
    return key


def source_values(bucket: str, key: str) -> dict[str, str]:
    """The placeholders that come from the source: bucket, key, key_dir, key_name, key_stem,
    key_ext. A dot that starts the name is not a suffix (``.env`` has the stem ``.env``)."""
    folder, _, name = key.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    return {"bucket": bucket, "key": key, "key_dir": folder, "key_name": name,
            "key_stem": stem, "key_ext": suffix}


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a submission's cut-outs go: ``bucket`` (None: the service's output bucket) and
    ``template`` (None: the default key, ``<prefix>/<job id>.<ext>``)."""

    bucket: str | None = None
    template: KeyTemplate | None = None

    @classmethod
    def of(cls, bucket: str | None, key_template: str | None) -> Destination | None:
        """The destination a request names, checked; None when it names neither part."""
        if bucket is None and key_template is None:
            return None
        if bucket is not None:
            try:
                fields.BUCKET.check(bucket)
            except InvalidField as exc:
                raise InvalidDestination(f"output bucket: {exc.problem}") from exc
        return cls(bucket, None if key_template is None else KeyTemplate.parse(key_template))

    def describe(self) -> dict[str, str | None]:
        return {"bucket": self.bucket,
                "key_template": None if self.template is None else self.template.text}


def tenant_area(output_prefix: str, tenant_id: str) -> str:
    """``{prefix}``: the tenant's own area of the service's bucket (no slash at the end)."""
    base = output_prefix.strip("/")
    return f"{base}/{tenant_id}" if base else tenant_id


# Where the API keeps the small previews of the review page, in the output bucket
# (``pipeline.api.previews``): previews/<tenant>/<job id>/...
PREVIEWS_PREFIX = "previews"


def service_areas(output_bucket: str | None,
                  uploads: UploadArea | None) -> tuple[tuple[str, str], ...]:
    """(bucket, key prefix) of what the service writes besides cut-outs: the previews, and the
    images uploaded to it. ``pipeline.events`` never takes them for sources."""
    areas = [(output_bucket, PREVIEWS_PREFIX + "/")] if output_bucket else []
    if uploads is not None:
        areas.append((uploads.bucket, uploads.prefix + "/"))
    return tuple(areas)


def output_allowed(tenant: Tenant, bucket: str | None, key: str, area: str) -> bool:
    """Whether ``tenant`` may have cut-outs written at ``bucket/key`` (``key`` may be the
    prefix every key will start with). ``bucket`` None is the service's bucket, where the
    tenant's ``area`` is its own; a named bucket needs an ``allowed_outputs`` rule."""
    if bucket is None and key.startswith(area + "/"):
        return True
    path = f"{bucket}/{key}" if bucket is not None else None
    return path is not None and any(covers(r, path) for r in tenant.allowed_outputs)


class Placer:
    """Resolves one submission's destination for each of its specs, checks the tenant's output
    allowlist (unless ``tenant`` is None: the operator's own ``clipline submit``) and refuses
    collisions between the submission's jobs (see the module docstring)."""

    def __init__(self, destination: Destination, tenant_id: str, *, tenant: Tenant | None,
                 output_prefix: str = "cutouts", own_bucket: str | None = None) -> None:
        self.destination = destination
        self.tenant_id, self.tenant = tenant_id, tenant
        self.area = tenant_area(output_prefix, tenant_id)
        self.own_bucket = own_bucket
        self._seen: dict[bytes, tuple[bytes, int]] = {}
        self._count = 0
        self._options: tuple[Mapping[str, object] | None, str, bool] = (None, "", False)

    def place(self, spec: JobSpec) -> JobSpec:
        """``spec`` with its output bucket and resolved key; raises ``InvalidDestination``,
        ``OutputNotAllowed`` or ``DestinationCollision``."""
        self._count += 1
        where = f"s3://{spec.bucket}/{fields.shown(spec.key, 200)[1:-1]}"
        bucket, template = self.destination.bucket, self.destination.template
        key = None
        extension, layers = self._parsed(spec)
        if template is not None:
            values = {**source_values(spec.bucket, spec.key), "prefix": self.area,
                      "tenant": self.tenant_id, "ext": extension, "model": spec.model}
            if not values["key_name"] and template.names & {"key_name", "key_stem"}:
                raise InvalidDestination(f"{where} ends with '/': it has no file name for "
                                         "{key_name} or {key_stem}")
            key = template.render(values, where=where)
            if (bucket or self.own_bucket) == spec.bucket and key == spec.key:
                raise InvalidDestination(f"the output of {where} would overwrite the source")
        checked = key if key is not None else self.area + "/"
        if self.tenant is not None and not output_allowed(self.tenant, bucket, checked,
                                                          self.area):
            shown = f"s3://{bucket}/{checked}" if bucket else f"{checked} (the service's bucket)"
            raise OutputNotAllowed(f"the output {fields.escaped(shown, 300)} of {where} is "
                                   "outside the tenant's allowed outputs")
        placed = replace(spec, output_bucket=bucket, output_key=key)
        if key is not None:
            self._claim(placed, [key, layers_mask_key(key)] if layers else [key])
        return placed

    def _parsed(self, spec: JobSpec) -> tuple[str, bool]:
        """(the output's extension without its dot, whether ``layers`` is on): parsed once per
        options object, as a manifest shares one mapping between its lines."""
        last, extension, layers = self._options
        if spec.options is not last:
            options = OutputOptions.parse(spec.options)
            extension, layers = options.extension.removeprefix("."), options.layers
            self._options = (spec.options, extension, layers)
        return extension, layers

    def place_all(self, specs: Iterable[JobSpec]) -> Iterator[JobSpec]:
        """``place`` each spec, lazily (a manifest of millions stays a stream)."""
        for spec in specs:
            yield self.place(spec)

    def _claim(self, placed: JobSpec, keys: list[str]) -> None:
        job = _digest(placed.dedupe_key())
        for taken in keys:
            slot = _digest(f"{placed.output_bucket}\n{taken}")
            first = self._seen.setdefault(slot, (job, self._count))
            if first[0] != job:
                raise DestinationCollision(
                    f"items {first[1]} and {self._count} are different jobs that would both "
                    f"write {fields.shown(taken, 200)}; make the key template tell them apart "
                    "(e.g. {key_name} instead of {key_stem})")


def _digest(text: str) -> bytes:
    # 16 bytes: bounded memory per line of a large manifest, and no accidental match.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
