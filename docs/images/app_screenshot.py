"""Retake `docs/images/app.png`, the screenshot of `hour-llava app` in docs/app.md and the README.

It exists so the screenshot shows what a trained model does, and can be taken again the same way: it serves the app
(`launch_app`, as `hour-llava app --model DEMO_DIR/hour-llava-demo` does, with the demo's example videos) on
127.0.0.1 at a free port, opens it in Debian's headless Chromium (Selenium with /usr/bin/chromedriver, as
tests/test_app_browser.py), uploads the first held-out video whose flash question the model answered although
temporal forgetting dropped the flash frame (`seed*/result.json`), asks the flash question twice (the only question
`hour-llava demo` trains), checks the page shows the expected colour both times, one decode then a cache hit, and
MemAug's attention peaking at the flash second, and saves the page, cropped to the plot and shrunk to a palette PNG.

    python docs/images/app_screenshot.py /path/to/demo-output docs/images/app.png

Needs the `[app]` extra and Debian's chromium + chromium-driver (.ci/app-setup.sh); downloads nothing.
"""

import argparse
import io
import json
import socket
import tempfile
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hour_llava.app import VideoChat, demo_examples
from hour_llava.app.ui import launch_app


QUESTION = "What colour was the one-second flash?"
WIDTH = 1200
WAIT_SECONDS = 300
TEXTS = "return [...document.querySelectorAll('%s')].map(e => e.innerText);"


def flash_example(demo_dir: Path) -> tuple[Path, str, int, int]:
    """(video, expected colour, flash second, seed) of the first held-out flash question the model got right
    although forgetting dropped its frame (first seed of the run)."""
    result_file = sorted(demo_dir.glob("seed*/result.json"))[0]
    result = json.loads(result_file.read_text())
    records = result["records"]["hour-llava"]
    chosen = next(r for r in records if r["task"] == "needle" and r["dropped_by_forgetting"] and r["correct"])
    data = result_file.parent / "data"
    sample = next(s for s in json.loads((data / "test.json").read_text()) if s["id"] == chosen["id"])
    video = data / "videos" / sample["data_source"] / sample["video"]
    return video, chosen["answer"], sample["evidence_seconds"][0], result["seed"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium(profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={WIDTH},1100", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


def page(driver: webdriver.Chrome, script: str):
    return driver.execute_script(script)


def wait_for(driver: webdriver.Chrome, script: str, what: str):
    """Wait until the JavaScript expression `script` is truthy; return its value."""
    try:
        return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.5).until(lambda d: d.execute_script(script))
    except Exception as error:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise SystemExit(f"timed out waiting for {what}; the page says:\n{body}") from error


def ask(driver: webdriver.Chrome, question: str, answers: int) -> None:
    box = driver.find_element(By.CSS_SELECTOR, "#question textarea")
    box.clear()
    box.send_keys(question)
    driver.find_element(By.ID, "ask").click()
    wait_for(driver, f"return document.querySelectorAll('#timings tbody tr').length === {answers}"
             " && document.querySelector('#attention-plot img')?.naturalWidth > 0", f"answer {answers}")


def screenshot(demo_dir: Path, output: Path) -> None:
    video, colour, flash_second, seed = flash_example(demo_dir)
    chat = VideoChat.from_pretrained(demo_dir / "hour-llava-demo", device="cpu", max_new_tokens=16)
    port = free_port()
    app = launch_app(chat, demo_examples(demo_dir), port=port, model_name=f"hour-llava-demo (seed {seed})",
                     prevent_thread_lock=True, quiet=True)
    with tempfile.TemporaryDirectory(prefix="hour-llava-chromium-") as profile:
        driver = chromium(profile)
        try:
            driver.get(f"http://127.0.0.1:{port}/")
            wait_for(driver, "return document.querySelector('#video input[type=file]')", "the upload area")
            driver.find_element(By.CSS_SELECTOR, "#video input[type=file]").send_keys(str(video))
            wait_for(driver, f"return document.getElementById('video-status').innerText.includes('{video.name} is')",
                     "the video check")
            ask(driver, QUESTION, 1)
            ask(driver, QUESTION, 2)
            answers = [text.strip() for text in page(driver, TEXTS % "#chat .message.bot")]
            rows = page(driver, TEXTS % "#timings tbody tr")
            status = page(driver, "return document.getElementById('video-status').innerText")
            problems = [
                f"answers {answers}, expected {colour!r} twice" if answers != [colour, colour] else "",
                f"timings {rows}" if "decoded + encoded" not in rows[0] or "from the cache" not in rows[1] else "",
                f"status {status!r}, expected the peak at {flash_second} s"
                if f"looked most at {flash_second} s" not in status else "",
            ]
            if any(problems):
                raise SystemExit("the page is not what it should show: " + "; ".join(filter(None, problems)))
            # the whole page in the window (no scroll bar), then its content: from the video's left edge to the
            # rightmost box, down to the plot's bottom
            driver.set_window_size(WIDTH, page(driver, "return document.documentElement.scrollHeight") + 200)
            driver.execute_script("window.scrollTo(0, 0)")
            left, right, bottom = page(driver, "const r = ['#video', '#chat', '#timings', '#attention-plot']"
                                       ".map(s => document.querySelector(s).getBoundingClientRect());"
                                       " return [r[0].left, Math.max(...r.map(b => b.right)), r[3].bottom];")
            image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        finally:
            driver.quit()
            app.close()
    margin = 12
    image = image.crop((int(left) - margin, 0, int(right) + margin, int(bottom) + margin))
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)
    print(f"{output}: {video.name}, answered {colour!r} twice, MemAug peak at {flash_second} s; {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_dir", type=Path, help="an `hour-llava demo` output folder (holds hour-llava-demo/)")
    parser.add_argument("output", type=Path, help="where to save the PNG, e.g. docs/images/app.png")
    args = parser.parse_args()
    screenshot(args.demo_dir, args.output)


if __name__ == "__main__":
    main()
