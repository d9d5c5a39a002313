"""The pages in a real browser (Debian's Chromium driven by Playwright), against a real daphne
process, the real channel layer and a real worker. Screenshots land in test-artifacts/."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import Page, expect, sync_playwright

from apps.jobs.models import Job
from apps.uploads.models import Batch
from tests.conftest import DATA
from tests.servers import ROOT, Server, process_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: `apt-get install chromium` (.ci/run does it).")
    return path


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the tests
    # make between browser steps are plain sync code (as Playwright's own guide says to allow).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_FLAGS
            )
            yield browser
            browser.close()
    finally:  # also when Chromium fails to start: later tests start processes with this env
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker, tmp_path_factory):
    media = tmp_path_factory.mktemp("pages-media")
    with django_db_blocker.unblock():
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": process_database_url(),
                "MEDIA_ROOT": str(media),
                "STREAM_POLL_SECONDS": "1",
            }
        )
    server = Server(env, tmp_path_factory.mktemp("pages-log") / "server.log")
    yield server, media
    server.stop()


@pytest.fixture
def media_root(settings, site):
    settings.MEDIA_ROOT = site[1]
    return site[1]


def new_page(browser, size=DESKTOP) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport=size, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page, problems


def shot(page: Page, name: str, **kwargs) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path


def sign_in(page: Page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def unlabeled_controls(page: Page) -> list[str]:
    """Form controls a screen reader could not name."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                      && !el.getAttribute('aria-labelledby') && !(el.textContent || '').trim()
                      && !el.value)
        .map(el => el.outerHTML.slice(0, 80))""")


def test_upload_watch_view_and_download(browser, site, django_user_model, start_worker):
    server, _ = site
    django_user_model.objects.create_user("alice", password="a-long-password-1")
    page, problems = new_page(browser)
    sign_in(page, server.url, "alice", "a-long-password-1")

    page.goto(f"{server.url}/upload/")
    expect(page.locator("#generator")).to_have_value("relief")
    page.locator("#file-input").set_input_files([DATA / "chelsea.png", DATA / "coffee.png"])
    expect(page.locator(".file-card")).to_have_count(2)
    page.get_by_role("button", name="Low").click()
    expect(page.locator("#param-face_limit")).to_have_value("5000")
    assert unlabeled_controls(page) == []
    shot(page, "upload-desktop", full_page=True)
    page.get_by_role("button", name="Make 3D models").click()
    page.wait_for_url("**/batches/**")
    batch = Batch.objects.get(owner__username="alice")
    assert [job.params["face_limit"] for job in Job.objects.filter(batch=batch)] == [5000, 5000]

    start_worker()  # the bars move live from here on
    expect(page.locator('.job-row[data-status="completed"]')).to_have_count(2, timeout=60_000)
    expect(page.locator("#overall")).to_have_attribute("value", "100")
    expect(page.locator("#batch-status")).to_contain_text("2 ready")
    shot(page, "batch-desktop", full_page=True)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download all (zip)").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download_info.value.path()).read_bytes()))
    assert sorted(archive.namelist()) == ["chelsea.glb", "coffee.glb"]
    assert archive.read("chelsea.glb")[:4] == b"glTF"

    page.locator(".job-row").first.get_by_role("link", name="View model").click()
    page.wait_for_url("**/jobs/**")
    viewer_element = page.locator("model-viewer")
    # Polled from here: the page's CSP (rightly) forbids the eval a string predicate needs.
    for _ in range(120):
        if viewer_element.evaluate("element => element.loaded"):
            break
        page.wait_for_timeout(500)
    assert viewer_element.evaluate("element => element.loaded"), "the model did not load"

    page.wait_for_timeout(1500)  # let the first frames render
    viewer = shot(page.locator("model-viewer"), "viewer")  # type: ignore[arg-type]
    assert_not_blank(viewer)
    expect(page.get_by_text("Faces")).to_be_visible()
    shot(page, "job-desktop", full_page=True)

    page.goto(f"{server.url}/history/")
    expect(page.locator(".history-card")).to_have_count(1)
    expect(page.locator(".history-card img")).to_have_count(2)
    shot(page, "history-desktop", full_page=True)
    csp = [p for p in problems if "Content Security Policy" in p]
    assert csp == [] and problems == [], problems


def assert_not_blank(path: Path) -> None:
    image = Image.open(path).convert("RGB")
    stat = ImageStat.Stat(image)
    assert max(stat.stddev) > 12, f"viewer looks blank: stddev {stat.stddev}"
    colors = image.quantize(64).getcolors()
    assert colors is not None and len(colors) > 20


def test_bad_files_and_refusals_are_explained(browser, site, django_user_model, tmp_path, broker):
    server, _ = site
    django_user_model.objects.create_user("carol", password="a-long-password-3")
    page, _ = new_page(browser, PHONE)
    sign_in(page, server.url, "carol", "a-long-password-3")
    page.goto(f"{server.url}/upload/")
    renamed = tmp_path / "holiday.png"
    renamed.write_text("this is not a picture at all\n" * 40)
    page.locator("#file-input").set_input_files([renamed])
    expect(page.locator(".file-card.invalid")).to_contain_text("cannot read this image")
    expect(page.get_by_role("button", name="Make 3D models")).to_be_disabled()
    shot(page, "upload-phone-error", full_page=True)
    page.get_by_role("button", name="Remove holiday.png").click()
    # The browser lets this through; the server refuses it and the page says why.
    page.locator("#file-input").set_input_files([DATA / "rocket.jpg"])
    page.locator("#param-face_limit").fill("999999")
    page.get_by_role("button", name="Make 3D models").click()
    expect(page.get_by_role("alert")).to_contain_text("face_limit: must be at most 200000")
    assert Batch.objects.count() == 0


def test_someone_elses_batch_is_not_found(browser, site, django_user_model, alice):
    server, _ = site
    from apps.jobs.services import batch_submit
    from apps.uploads.services import IncomingFile

    with open(DATA / "chelsea.png", "rb") as stream:
        batch, jobs = batch_submit(owner=alice, files=[IncomingFile("chelsea.png", stream)])
    django_user_model.objects.create_user("dave", password="a-long-password-4")
    page, _ = new_page(browser)
    sign_in(page, server.url, "dave", "a-long-password-4")
    for path in (
        f"/batches/{batch.id}/",
        f"/jobs/{jobs[0].id}/",
        f"/images/{jobs[0].source_image_id}/",
    ):
        response = page.goto(f"{server.url}{path}")
        assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_api_keys_are_shown_once_and_can_be_revoked(browser, site, django_user_model):
    server, _ = site
    django_user_model.objects.create_user("erin", password="a-long-password-5")
    page, _ = new_page(browser, PHONE)
    sign_in(page, server.url, "erin", "a-long-password-5")
    page.goto(f"{server.url}/account/keys/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("New API key").input_value()
    assert secret.startswith("i2m_")
    shot(page, "keys-phone", full_page=True)
    page.reload()  # the browser posts the form again
    assert secret not in page.content()
    expect(page.get_by_text("already created")).to_be_visible()
    expect(page.get_by_role("button", name="Revoke laptop")).to_have_count(1)
    page.get_by_role("button", name="Revoke laptop").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked the key laptop")


def test_pages_read_well_on_a_phone(browser, site, django_user_model, media_root, start_worker):
    server, _ = site
    django_user_model.objects.create_user("fay", password="a-long-password-6")
    page, _ = new_page(browser, PHONE)
    sign_in(page, server.url, "fay", "a-long-password-6")
    page.goto(f"{server.url}/upload/")
    page.locator("#file-input").set_input_files([DATA / "horse.png"])
    page.get_by_role("button", name="Make 3D models").click()
    page.wait_for_url("**/batches/**")
    start_worker()
    expect(page.locator('.job-row[data-status="completed"]')).to_have_count(1, timeout=60_000)
    for name in ("batch-phone", "home-phone"):
        if name == "home-phone":
            page.goto(f"{server.url}/")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name} scrolls sideways ({width}px)"
        shot(page, name, full_page=True)
