"""The app in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`, installed by
`.ci/app-setup.sh`) driven by Selenium against the app served on 127.0.0.1 with a tiny model.

Nothing is downloaded: Selenium gets the driver's path (so Selenium Manager never runs) and Chromium runs with its
background networking off. Set HOUR_LLAVA_APP_SCREENSHOT=path to also save the chat's screenshot there.
"""

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from app_helpers import ScriptedAnswer, bad_uploads, colour_video, tiny_chat


pytest.importorskip("gradio", reason="the app needs the [app] extra")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs the [app] extra")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from hour_llava.app.ui import launch_app  # noqa: E402


CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1500",
)
ANSWERS = ("a red square at the start", "the blue ball came first")
MAX_UPLOAD_BYTES = 2**20
WAIT_SECONDS = 120  # two shared CPU cores: the first page load and the first encode can be slow


def require_browser() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    message = "Debian's chromium and chromium-driver are not installed (bash .ci/app-setup.sh)."
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served_app():
    """The app on 127.0.0.1 with a tiny model whose answers are scripted (the page must show exactly them)."""
    require_browser()
    chat = tiny_chat(max_new_tokens=48, max_video_bytes=MAX_UPLOAD_BYTES)
    chat.generate_kwargs = {"do_sample": False, "logits_processor": [ScriptedAnswer(chat.processor.tokenizer, *ANSWERS)]}
    port = free_port()
    app = launch_app(chat, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", chat
    app.close()


@pytest.fixture(scope="module")
def browser():
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="hour-llava-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------------
# Page helpers
# ----------------------------------------------------------------------------------------------------------------------
def wait_for(driver, condition, what: str, timeout: float = WAIT_SECONDS):
    try:
        wait = WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=[StaleElementReferenceException])
        return wait.until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"Timed out waiting for {what}; the page says:\n{driver.find_element(By.TAG_NAME, 'body').text}")


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}')?.innerText ?? '';")


def texts_of(driver, selector: str) -> list[str]:
    """innerText of every element matching `selector`, read in one go (the page re-renders while it streams)."""
    return driver.execute_script(f"return [...document.querySelectorAll(\"{selector}\")].map(e => e.innerText);")


def open_app(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#video input[type=file]"), "the upload area")


def upload(driver, path: Path) -> None:
    """Clear the current video, if any, and upload `path` through the video component's file input."""
    for button in driver.find_elements(By.CSS_SELECTOR, "#video button[aria-label='Clear']"):
        driver.execute_script("arguments[0].click();", button)  # an error overlay may cover it
    file_input = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#video input[type=file]"), "upload")
    file_input[0].send_keys(str(path))


def ask(driver, question: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, "#question textarea")
    box.clear()
    box.send_keys(question)
    driver.find_element(By.ID, "ask").click()


def timing_rows(driver) -> list[str]:
    return texts_of(driver, "#timings tbody tr")


def bot_messages(driver) -> list[str]:
    return [text.strip() for text in texts_of(driver, "#chat .message.bot")]


def plot_source(driver) -> str | None:
    """The attention plot's image source once the browser has decoded it (natural width > 0)."""
    return driver.execute_script(
        "const img = document.querySelector('#attention-plot img');"
        "return img && img.complete && img.naturalWidth > 0 ? img.src : null;"
    )


def toast_with(driver, words: str) -> str:
    """The text of a toast (Gradio's warnings and errors) that contains `words`, once it shows."""

    def matching(d):
        texts = d.execute_script(
            "return [...document.querySelectorAll(\"[data-testid='toast-text']\")].map(e => e.textContent);"
        )
        return next((text.strip() for text in texts if words in text), None)

    return wait_for(driver, matching, f"a toast saying {words!r}")


def close_toasts(driver) -> None:
    for button in driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-close']"):
        driver.execute_script("arguments[0].click();", button)
    wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-testid='toast-text']"), "toasts to close")


def requested_urls(driver) -> set[str]:
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


# ----------------------------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------------------------
def test_chat_about_an_uploaded_video(served_app, browser, tmp_path):
    url, chat = served_app
    video = colour_video(tmp_path / "colours.mp4", num_frames=24)
    open_app(browser, url)
    upload(browser, video)
    wait_for(browser, lambda d: "colours.mp4 is ready" in text_of(d, "video-status"), "the video to be checked")

    ask(browser, "What did you see first?")
    wait_for(browser, lambda d: len(timing_rows(d)) == 1 and plot_source(d), "the first answer's timings and plot")
    first_plot = plot_source(browser)
    ask(browser, "Which ball came first?")
    wait_for(browser, lambda d: len(timing_rows(d)) == 2, "the second answer's timings")
    wait_for(browser, lambda d: plot_source(d) not in (None, first_plot), "the second answer's plot")

    assert bot_messages(browser) == list(ANSWERS)
    first, second = timing_rows(browser)
    assert "decoded + encoded 24 frames" in first and "from the cache" in second
    assert "MemAug looked most at" in text_of(browser, "video-status")
    assert chat.pipeline.video_cache.misses == 1
    plot_size = browser.execute_script(
        "const img = document.querySelector('#attention-plot img'); return [img.naturalWidth, img.naturalHeight];"
    )
    assert plot_size[0] >= 800 and plot_size[1] >= 300  # the rendered timeline, not a placeholder icon

    screenshot = tmp_path / "app.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("HOUR_LLAVA_APP_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["HOUR_LLAVA_APP_SCREENSHOT"])

    outside = {u for u in requested_urls(browser) if u.startswith(("http:", "https:", "ws:", "wss:"))}
    outside = {u for u in outside if not u.split("//", 1)[1].startswith("127.0.0.1")}
    assert not outside, f"the page requested outside 127.0.0.1: {sorted(outside)}"


def test_bad_uploads_show_a_message_and_the_app_keeps_serving(served_app, browser, tmp_path):
    url, _ = served_app
    good = colour_video(tmp_path / "good.mp4", num_frames=20)
    open_app(browser, url)
    bad = bad_uploads(tmp_path / "bad", good)
    for kind in ("text", "audio named .mp4", "truncated", "empty"):  # a video's file name: the server checks them
        upload(browser, bad[kind])
        wait_for(browser, lambda d: "⚠️" in text_of(d, "video-status") and bad[kind].name in text_of(d, "video-status"),
                 f"the message about the {kind} upload")
        status = text_of(browser, "video-status")
        assert "not a video this app can read" in status or "is empty" in status, kind

    close_toasts(browser)  # the player's own "Video not playable" about the files above
    upload(browser, bad["audio"])  # an audio file name: the page refuses it before uploading
    assert "video/* allowed" in toast_with(browser, "Invalid file type: speech.m4a")

    huge = tmp_path / "huge.mp4"
    huge.write_bytes(good.read_bytes() + bytes(2 * MAX_UPLOAD_BYTES))
    upload(browser, huge)
    assert "huge.mp4" in toast_with(browser, "exceed the maximum allowed size of 1.0 Mb")
    close_toasts(browser)

    upload(browser, good)
    wait_for(browser, lambda d: "good.mp4 is ready" in text_of(d, "video-status"), "the good video after bad ones")
    ask(browser, "And now?")
    wait_for(browser, lambda d: len(timing_rows(d)) == 1 and plot_source(d), "an answer after bad uploads")
    assert len(bot_messages(browser)) == 1 and bot_messages(browser)[0] in ANSWERS
