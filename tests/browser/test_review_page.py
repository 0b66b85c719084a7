"""The review page (``/ui``) in a real browser: Debian's chromium driven by Playwright, against a
real ``clipline api`` (uvicorn on loopback) with PostgreSQL, Redis and moto's S3.

A person logs in with a key, sees the night's batch, sorts its cut-outs by uncertainty, filters
by status, redrives a dead letter and watches it go queued, then succeeded; opens a job's
detail. The jobs are worked here, by the function the Celery task calls (``process_job``, with
the fake segmenter), so the test waits for no worker process. Screenshots of the page and of a
job's detail are kept in ``tests/browser/artifacts/`` (ignored by git) for people to look at.

Chromium comes from Debian (``scripts/services.sh`` installs it when /usr/bin/chromium is
missing): Playwright's own browser downloads cannot reach their server from these machines.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Page, expect, sync_playwright

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.adapters.segmenters.fake import FakeSegmenters
from pipeline.errors import ClipError
from pipeline.jobs import JobStatus
from pipeline.process import process_job
from tests.distkit import Cluster, cluster, serve
from tests.modelkit import TEST_MODEL

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
LABEL = "photos 2026-11-30"
WAIT_MS = 15_000

# A red product on white; a pale haze beside it that the fake model marks half-way (about 0.8 of
# full scale), so the wider the haze, the more uncertain the cut-out.
HAZE_WIDTHS = {"crisp.png": 0, "hazy.png": 50, "hazier.png": 120}


def product(haze: int) -> bytes:
    img = Image.new("RGB", (320, 240), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle((40, 50, 140, 190), fill=(200, 30, 40))
    if haze:
        draw.rectangle((160, 50, 160 + haze, 190), fill=(255, 200, 200))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


class Night:
    """A deployment with one tenant, its key and a batch of four images, one of them missing."""

    def __init__(self, c: Cluster, url: str) -> None:
        self.c, self.url = c, url
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allowed_sources=["photos/"])
        _, self.key = tenants.create_key("acme")
        for name, haze in HAZE_WIDTHS.items():
            c.put_image(f"catalog/{name}", product(haze))
        items = [{"bucket": "photos", "key": f"catalog/{name}"}
                 for name in [*HAZE_WIDTHS, "missing.png"]]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {self.key}"}) as api:
            made = api.post("/v1/batches", json={"label": LABEL, "items": items})
        assert made.status_code == 202, made.text
        self.batch = uuid.UUID(made.json()["id"])

    def work(self) -> None:
        """Do what a worker does for every queued job of the batch: success, or a dead letter."""
        segmenters = FakeSegmenters.serving(TEST_MODEL)
        queued = self.c.ledger.page_jobs(tenant="acme", batch_id=self.batch,
                                         status=JobStatus.QUEUED, limit=100).items
        for job in queued:
            claim = self.c.ledger.claim(job.id, worker="browser-test")
            assert claim is not None
            try:
                result = process_job(claim.job, self.c.s3, segmenters,
                                     output_bucket=self.c.output_bucket)
            except ClipError as exc:
                self.c.ledger.fail(job.id, claim.token, exc)
            else:
                self.c.ledger.complete(job.id, claim.token, result)

    def status(self, name: str) -> JobStatus:
        jobs = self.c.ledger.page_jobs(tenant="acme", batch_id=self.batch, limit=100).items
        found: JobStatus = next(j.status for j in jobs if j.key == f"catalog/{name}")
        return found


@pytest.fixture
def night(tmp_path: Path, s3_endpoint: str) -> Iterator[Night]:
    with cluster(tmp_path, s3_endpoint, redis_db=6, SEGMENTER="fake") as c, \
            serve(api_app(c.settings)) as url:
        made = Night(c, url)
        made.work()
        yield made


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make services` installs Debian's chromium"
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    yield opened
    context.close()
    # A refused call the page expects (the wrong key's 401) is logged by chromium too.
    unexpected = [e for e in errors if "401" not in e]
    assert not unexpected, unexpected


def tile_names(page: Page) -> list[str]:
    names: list[str] = page.locator("#grid .tile .name").all_inner_texts()
    return names


def uncertainties(page: Page) -> list[float]:
    values = page.locator("#grid .tile").evaluate_all(
        "tiles => tiles.map(t => t.dataset.uncertainty)")
    return [float(v) for v in values if v]


def loaded(page: Page, selector: str) -> None:
    """Every image under ``selector`` has been fetched and decoded."""
    page.wait_for_function(
        "s => { const imgs = [...document.querySelectorAll(s)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=selector, timeout=WAIT_MS)


def test_a_wrong_key_is_refused_on_the_login_form(night: Night, page: Page) -> None:
    page.goto(f"{night.url}/ui/")
    page.get_by_label("API key", exact=True).fill("clp_not_a_key")
    page.get_by_role("button", name="Open").click()
    expect(page.locator("#login-error")).to_have_text("The API key is not valid")
    expect(page.locator("#review")).to_be_hidden()


def test_review_a_batch_sort_by_uncertainty_and_redrive_a_dead_letter(
        night: Night, page: Page) -> None:
    page.goto(f"{night.url}/ui")
    page.get_by_label("API key", exact=True).fill(night.key)
    page.get_by_role("button", name="Open").click()

    # The batch, with its progress: every job has finished, one of them dead.
    row = page.locator(f"tr[data-batch='{night.batch}']")
    expect(row).to_contain_text(LABEL)
    expect(row).to_contain_text("4 of 4")
    expect(row.locator("td").nth(4)).to_have_text("1")  # dead
    expect(page.locator("#grid .tile")).to_have_count(4)
    loaded(page, "#grid .tile[data-status='succeeded'] img")

    # Most uncertain first (the default), then least: the dead job, with no cut-out, is last.
    assert tile_names(page) == ["hazier.png", "hazy.png", "crisp.png", "missing.png"]
    assert uncertainties(page) == sorted(uncertainties(page), reverse=True)
    assert len(set(uncertainties(page))) == 3
    page.get_by_label("Sort").select_option("uncertainty-asc")
    assert tile_names(page) == ["crisp.png", "hazy.png", "hazier.png", "missing.png"]
    page.get_by_label("Sort").select_option("uncertainty-desc")

    # Filtered by status.
    page.get_by_label("Status").select_option("dead")
    expect(page.locator("#grid .tile")).to_have_count(1)
    expect(page.locator("#grid .tile .name")).to_have_text("missing.png")
    page.get_by_label("Status").select_option("")
    expect(page.locator("#grid .tile")).to_have_count(4)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "review-page.png", full_page=True)

    # The dead letter, by reason; the missing image arrives; redriven, it is queued again...
    group = page.locator("#dead-groups .group[data-reason='object_missing']")
    expect(group).to_contain_text("missing.png")
    expect(group).to_contain_text("does not exist")
    night.c.put_image("catalog/missing.png", product(20))
    group.get_by_role("button", name="Redrive").click()
    missing = page.locator("#grid .tile", has_text="missing.png")
    expect(missing.locator(".status")).to_have_text("queued")
    expect(page.locator("#dead-none")).to_be_visible()
    assert night.status("missing.png") is JobStatus.QUEUED

    # ...and once a worker has done it, the page shows it succeeded, with its thumbnail.
    night.work()
    expect(missing.locator(".status")).to_have_text("succeeded")
    expect(row).to_contain_text("4 of 4")
    expect(row.locator("td").nth(4)).to_have_text("0")
    loaded(page, "#grid .tile[data-status='succeeded'] img")
    expect(page.locator("#grid .tile[data-status='succeeded']")).to_have_count(4)

    # One job's detail: source, cut-out and mask, and what the worker recorded.
    page.locator("#grid .tile", has_text="hazier.png").get_by_role("button").click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(detail.locator("#detail-title")).to_have_text("hazier.png")
    expect(detail).to_contain_text("Uncertainty")
    expect(detail).to_contain_text("s3://photos/catalog/hazier.png")
    loaded(page, "#detail .figures img")
    page.screenshot(path=ARTIFACTS / "job-detail.png")
    page.get_by_role("button", name="Close").click()
    expect(detail).to_be_hidden()
