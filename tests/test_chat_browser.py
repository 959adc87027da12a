"""The web chat in a real browser: Debian's chromium, driven by Selenium through
/usr/bin/chromedriver (nothing is downloaded), against a real uvicorn on a free loopback port
serving a tiny random checkpoint. It sends a message, sees streamed text arrive, presses stop
and sees the generation end, in the page and on the server.

Set CHAT_UI_SCREENSHOT=docs/images/chat_ui.png to keep the screenshot (it always goes to the
test's temporary directory)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from chat_fixtures import write_checkpoint
from serve_fixtures import running_server

from nanogpt.engine import Engine, load_model
from nanogpt.serve import create_app

CHROMEDRIVER = Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMEDRIVER.exists(),
        reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
    ),
]


def chromium(profile: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1100,760",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    if Path("/usr/bin/chromium").exists():
        options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_the_page_streams_a_reply_and_stop_ends_the_generation(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model, tok, meta = load_model(
        str(write_checkpoint(tmp_path / "ckpt", never_stop=True, seq=8192))
    )
    app = create_app([Engine(model, tok)], meta)
    driver = chromium(tmp_path / "profile")
    wait = WebDriverWait(driver, 180, poll_frequency=0.1)
    try:
        with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as probe:
            driver.get(base + "/")
            wait.until(lambda d: "bytes tokenizer" in d.find_element(By.ID, "model-info").text)
            max_tokens = driver.find_element(By.ID, "max-tokens")
            max_tokens.clear()
            max_tokens.send_keys("4000")  # far more than it will get to before the stop
            driver.find_element(By.ID, "input").send_keys("Tell me a story")
            driver.find_element(By.ID, "send").click()

            def reply_text(d) -> str:
                return d.find_element(By.CSS_SELECTOR, ".assistant .text").text

            wait.until(lambda d: len(reply_text(d)) >= 40)  # streamed text is arriving
            assert (
                driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "generating"
            )
            assert probe.get("/health").json()["busy"] == 1
            driver.find_element(By.ID, "stop").click()
            wait.until(lambda d: d.find_element(By.ID, "status").text == "stopped")
            assert "stopped" in driver.find_element(By.CSS_SELECTOR, ".assistant").get_attribute(
                "class"
            )
            assert not driver.find_element(By.ID, "send").get_attribute("disabled")
            for _ in range(3000):  # the server saw the closed connection and freed its worker
                stats = probe.get("/health").json()
                if stats["busy"] == 0 and stats["cancelled"] == 1:
                    break
                time.sleep(0.02)
            assert stats["busy"] == 0 and stats["cancelled"] == 1, stats
            stopped_at = reply_text(driver)
            assert 40 <= len(stopped_at) < 4000

            # the conversation goes on after a stop: a short second reply runs to its end
            max_tokens.clear()
            max_tokens.send_keys("60")
            driver.find_element(By.ID, "input").send_keys("And another one, please")
            driver.find_element(By.ID, "send").click()
            wait.until(
                lambda d: d.find_element(By.ID, "status").text.startswith("done: length, 60 tokens")
            )
            replies = driver.find_elements(By.CSS_SELECTOR, ".assistant .text")
            assert len(replies) == 2 and len(replies[1].text) > 0
            # counted after the reply's last event: wait for it rather than read it once
            wait.until(lambda d: probe.get("/health").json()["served"] == 1)
            shot = tmp_path / "chat_ui.png"
            driver.save_screenshot(str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("CHAT_UI_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["CHAT_UI_SCREENSHOT"])

            # a refused request shows the server's 400, naming the field; Clear empties the page
            temperature = driver.find_element(By.ID, "temperature")
            temperature.clear()
            temperature.send_keys("5")
            driver.find_element(By.ID, "input").send_keys("too hot")
            driver.find_element(By.ID, "send").click()
            wait.until(lambda d: d.find_element(By.ID, "status").text == "request refused")
            error = driver.find_element(By.CSS_SELECTOR, ".message.error .text").text
            assert error.startswith("temperature: temperature must be between 0 and 2")
            assert len(driver.find_elements(By.CSS_SELECTOR, ".message.user")) == 2
            driver.find_element(By.ID, "clear").click()
            assert driver.find_elements(By.CSS_SELECTOR, ".message") == []
    finally:
        driver.quit()
