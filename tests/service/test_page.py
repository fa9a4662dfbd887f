"""The web page in real headless Chromium: pick a recording, see and hear similar songs,
look up a user's recommendations."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_a_recording_and_see_and_hear_similar_songs(
    browser: Any, server: Any, audio_assets: Path, registry: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 90)
    browser.get(f"{server.url}/")
    wait.until(ready.text_to_be_present_in_element((By.ID, "model"), registry.version_id))

    browser.find_element(By.ID, "file").send_keys(str(audio_assets / "vibe_ace.mp3"))
    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys("6")
    browser.find_element(By.ID, "similar-button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "similar-status"), "songs by cosine"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#similar-results tbody tr.result")
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
