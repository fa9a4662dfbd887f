"""The web page in real headless Chromium: pick a recording, see where it lands on the
catalogue's map and hear its nearest songs; the served model's card; the nightly runs with
the quality gate's decisions; a user's recommendations. Elements are checked, not pixels;
full-page screenshots of the last run are kept in `test-artifacts/page/` (ignored by git;
the test prints where)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "page"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.fail(
            f"headless Chromium is needed ({CHROMIUM}, {CHROMEDRIVER}):"
            " apt-get install chromium chromium-driver (the Makefile's test setup does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()


def upload(browser: Any, wait: Any, recording: Path, k: int) -> list[Any]:
    """Pick `recording`, ask for `k` similar songs, wait for the answer; its result rows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    browser.find_element(By.ID, "file").send_keys(str(recording))
    field = browser.find_element(By.ID, "k")
    field.clear()
    field.send_keys(str(k))
    browser.find_element(By.ID, "similar-button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "similar-status"), "songs by cosine"))
    return list(browser.find_elements(By.CSS_SELECTOR, "#similar-results tbody tr.result"))


def test_upload_a_recording_and_see_and_hear_similar_songs(
    browser: Any, server: Any, audio_assets: Path, registry: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 90)
    browser.get(f"{server.url}/")
    wait.until(ready.text_to_be_present_in_element((By.ID, "model"), registry.version_id))

    rows = upload(browser, wait, audio_assets / "vibe_ace.mp3", k=6)
    assert len(rows) == 6
    assert all(row.find_elements(By.TAG_NAME, "td")[1].text for row in rows)
    assert "placed by audio (" in browser.find_element(By.ID, "similar-status").text

    # With an artist the version knows, the recording is placed by its artist too.
    version_folder = registry.folder / "versions" / registry.version_id
    known = json.loads((version_folder / "artist" / "artist_ids.json").read_text())[0]
    browser.find_element(By.ID, "artist").send_keys(known)
    browser.find_element(By.ID, "similar-button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "similar-status"), "audio and artist"))
    browser.find_element(By.ID, "artist").clear()
    rows = browser.find_elements(By.CSS_SELECTOR, "#similar-results tbody tr.result")

    # Similar songs play in the browser: an <audio> loads real audio data from the API.
    # (Debian's Chromium has no AAC decoder, so an .m4a song may not; another one will.)
    played = []
    for row in rows:
        player = row.find_element(By.TAG_NAME, "audio")
        song_id = row.get_attribute("data-song-id")
        assert player.get_attribute("src").endswith(f"/v1/tracks/{song_id}/audio")
        browser.execute_script("arguments[0].preload = 'auto'; arguments[0].load();", player)
        WebDriverWait(browser, 60).until(
            lambda _, player=player: browser.execute_script(
                "return arguments[0].readyState >= 1 || arguments[0].error !== null", player
            )
        )
        if browser.execute_script("return arguments[0].error", player) is None:
            played.append(browser.execute_script("return arguments[0].duration", player))
    assert played and all(duration > 3.0 for duration in played)

    # A bad file shows the API's message, and the page keeps working.
    browser.find_element(By.ID, "file").send_keys(str(audio_assets / "robin_chirp.ogg"))
    browser.find_element(By.ID, "similar-button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "similar-status"), "audio_too_short"))
    assert "error" in browser.find_element(By.ID, "similar-status").get_attribute("class")

    user_id = json.loads(
        (registry.folder / "versions" / registry.version_id / "user_ids.json").read_text()
    )[5]
    browser.find_element(By.ID, "user").send_keys(user_id)
    browser.find_element(By.ID, "recs-button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "recs-status"), "inner product"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#recs-results tbody tr.result")) == 10


def save_full_page(browser: Any, name: str) -> None:
    """A screenshot of the whole page (the window stretched to its height, then restored)
    as `SCREENSHOTS/name`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, height)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(path))
    browser.set_window_size(1280, 900)
    print(f"page screenshot: {path}")


def test_after_an_upload_the_card_the_map_the_neighbours_and_the_runs_are_there(
    browser: Any,
    start_server: Any,
    registry: Any,
    trained_run: Path,
    audio_assets: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from catalogue import open_catalogue
    from catalogue.runs import claim_next, finish_run, request_run
    from evaluation.gate import quality_gate
    from pipeline.registry import load_version
    from tests.service.conftest import API_KEY

    server = start_server().start()  # its own catalogue: this test records runs in it
    version = load_version(registry.folder, registry.version_id)
    decision = quality_gate(trained_run, version, floor=())
    with open_catalogue(Path(server.database)) as catalogue:
        published, _ = request_run(catalogue, "cron")
        assert claim_next(catalogue) is not None
        finish_run(
            catalogue,
            published.id,
            "published",
            exit_code=0,
            message="published",
            version_id=registry.version_id,
            summary={"outcome": "published", "gate": decision.to_json()},
        )
        queued, _ = request_run(catalogue, "api")

    wait = WebDriverWait(browser, 90)
    browser.get(f"{server.url}/")
    wait.until(ready.text_to_be_present_in_element((By.ID, "model"), registry.version_id))

    # The card: the version, the report's table per kind (its columns from the report), figures.
    report = version.report
    card = browser.find_element(By.ID, "model-card")
    assert registry.version_id in card.find_element(By.ID, "card-facts").text
    tabs = [tab.text for tab in card.find_elements(By.CSS_SELECTOR, "#card-kinds button")]
    assert len(tabs) == 1 + len(report["kinds"]) and tabs[0] == "All test songs"
    tables = card.find_elements(By.CSS_SELECTOR, "#card-tables table.model-table")
    assert len(tables) == len(tabs)
    shown = tables[0]
    headers = [cell.text for cell in shown.find_elements(By.CSS_SELECTOR, "thead th")]
    assert headers[:3] == ["MODEL", f"MAP@{report['k']}", "AUC"]  # upper-cased by the style
    rows = {
        row.get_attribute("data-model"): row
        for row in shown.find_elements(By.CSS_SELECTOR, "tbody tr[data-model]")
    }
    assert set(rows) == set(report["models"])
    cnn_cells = rows["cnn"].find_elements(By.TAG_NAME, "td")
    assert cnn_cells[1].text.startswith(f"{report['models']['cnn']['map']:.4f}")
    if len(tabs) > 1:  # another kind's table is one click away
        card.find_elements(By.CSS_SELECTOR, "#card-kinds button")[1].click()
        assert tables[1].is_displayed() and not shown.is_displayed()
        card.find_elements(By.CSS_SELECTOR, "#card-kinds button")[0].click()
    WebDriverWait(browser, 30).until(
        lambda _: (
            len(images := browser.find_elements(By.CSS_SELECTOR, "#card-plots img")) == 2
            and all(
                browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images
            )
        )
    )

    # The map of the catalogue is drawn before any upload: every song of the cf space.
    song_dots = "svg#map circle.song"
    wait.until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, song_dots)) == 120)
    assert not browser.find_elements(By.CSS_SELECTOR, "svg#map g.upload")

    # Upload: the recording and its neighbours on the map, the neighbours in the table with
    # players, numbered alike.
    rows = upload(browser, wait, audio_assets / "vibe_ace.mp3", k=7)
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "svg#map g.upload"))
    assert len(rows) == 7
    assert all(row.find_element(By.TAG_NAME, "audio") for row in rows)
    marks = browser.find_elements(By.CSS_SELECTOR, "svg#map g.neighbour")
    ranks = {mark.get_attribute("data-song-id"): mark.text for mark in marks}
    assert ranks == {row.get_attribute("data-song-id"): str(n) for n, row in enumerate(rows, 1)}
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg#map line.link")) == 7
    assert len(browser.find_elements(By.CSS_SELECTOR, song_dots)) == 120
    assert (
        "your recording went through the same projection"
        in browser.find_element(By.ID, "map-caption").text
    )
    assert browser.find_element(By.ID, "tags").get_attribute("hidden")  # no tags in this answer

    # Pointing at a neighbour's row lights up its mark on the map.
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element(rows[0]).perform()
    first = browser.find_element(By.CSS_SELECTOR, "svg#map g.neighbour.active")
    assert first.get_attribute("data-song-id") == rows[0].get_attribute("data-song-id")

    # The content space has its own map, and the upload lands there too.
    browser.find_element(By.CSS_SELECTOR, "#space option[value=content]").click()
    browser.find_element(By.ID, "similar-button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "similar-status"), "content space"))
    wait.until(
        lambda _: (
            browser.find_element(By.ID, "map").get_attribute("data-space") == "content"
            and browser.find_elements(By.CSS_SELECTOR, "svg#map g.upload")
        )
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg#map g.neighbour")) == 7

    # The runs need the write key: without it the page says so; with it, the gate's decisions.
    status = browser.find_element(By.ID, "runs-status")
    assert "notice" in status.get_attribute("class") and "API keys" in status.text
    save_full_page(browser, "page-without-key.png")
    browser.find_element(By.CSS_SELECTOR, "details.key summary").click()
    browser.find_element(By.ID, "api-key").send_keys(API_KEY)
    browser.find_element(By.ID, "runs-reload").click()
    wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#runs-table tr.run"))
    runs = browser.find_elements(By.CSS_SELECTOR, "#runs-table tr.run")
    assert [run.get_attribute("data-run-id") for run in runs] == [queued.id, published.id]
    gate = runs[1].find_element(By.CSS_SELECTOR, "details.gate")
    assert gate.find_element(By.CSS_SELECTOR, ".badge").text == "passed" and decision.passed
    gate.find_element(By.TAG_NAME, "summary").click()
    assert decision.reason in gate.text
    assert registry.version_id in runs[1].text and "not yet" in runs[0].text
    save_full_page(browser, "page.png")
