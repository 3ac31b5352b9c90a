"""The app as a person uses it: serve ``pipeline/app.py`` on localhost, open it in headless Chromium, press
Generate, wait until every image has rendered, screenshot the page, and time it.

``python -m pipeline.tools.browser`` writes ``reports/figures/app.png`` and ``reports/metrics/app.json`` (time
from the click until all images are decoded in the page, over ``--repeats`` presses with new seeds; the
app's own generate + judge time). Needs Debian's ``chromium`` and ``chromium-driver`` packages and the
``app`` and ``dev`` extras (streamlit, selenium). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator
from urllib.parse import urlencode

import click

from pipeline.core.cli import run, user_errors
from pipeline.core.utils import PipelineError, atomic_path, write_json

#: CSS selector of the rendered digits (:func:`pipeline.generation.interactive.grid_html`).
IMAGE_SELECTOR = "#digits img"


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(root: str | Path = ".", timeout: float = 120.0) -> Iterator[str]:
    """Run ``streamlit run pipeline/app.py`` from ``root`` on a free localhost port; yield its URL.

    Raises:
        PipelineError: the server exited or did not answer its health check within ``timeout`` seconds.
    """
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "pipeline/app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    server = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise PipelineError(f"streamlit exited with code {server.returncode}: "
                                    f"{' '.join(server.stdout.read().split())[-300:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            if time.monotonic() > deadline:
                raise PipelineError(f"streamlit did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def chromium(width: int = 1400, height: int = 2000):
    """A headless Chromium driven by Selenium (Debian's ``chromium`` + ``chromium-driver``).

    Raises:
        PipelineError: Chromium, its driver or selenium is not installed.
    """
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        raise PipelineError("headless Chromium not found: install Debian's chromium and chromium-driver packages "
                            "(apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise PipelineError("selenium is not installed: pip install -e '.[dev]'") from None
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def rendered_images(driver) -> int:
    """How many of the page's digit images have finished loading (``complete`` and ``naturalWidth > 0``)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete && i.naturalWidth > 0).length",
        IMAGE_SELECTOR)


#: In the page: click Generate, then check every animation frame until ``count`` digit images that
#: differ from the ones before have loaded; resolves to the milliseconds from the click (performance.now).
_PRESS_AND_TIME = """
const [selector, count, done] = arguments;
const sources = () => [...document.querySelectorAll(selector)].map(i => i.src).join();
const before = sources();
const button = [...document.querySelectorAll("button")].find(b => b.innerText.trim() === "Generate");
const start = performance.now();
button.click();
(function check() {
  const images = [...document.querySelectorAll(selector)];
  if (images.length === count && images.every(i => i.complete && i.naturalWidth > 0) && sources() !== before)
    done(performance.now() - start);
  else requestAnimationFrame(check);
})();
"""


def press_generate(driver, count: int, timeout: float = 60.0) -> float:
    """Click Generate and wait until ``count`` new images have rendered; return seconds from the click,
    timed inside the page (no WebDriver round trips in the measured interval).

    Raises:
        PipelineError: the Generate button did not appear, or the images did not all render within
            ``timeout`` seconds.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(
            expected_conditions.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Generate']]")))
        driver.set_script_timeout(timeout)
        return driver.execute_async_script(_PRESS_AND_TIME, IMAGE_SELECTOR, count) / 1000
    except Exception as error:  # noqa: BLE001 - selenium's TimeoutException and friends; say what the page shows
        raise PipelineError(f"{rendered_images(driver)} of {count} images rendered within {timeout:.0f} s "
                            f"({type(error).__name__})") from None


def page_summary(driver) -> dict:
    """The seed and the app's own generate + judge milliseconds, read from the page's summary line."""
    text = driver.find_element("tag name", "body").text
    seed = re.search(r"Seed used: (\d+)", text)
    millis = re.search(r"generated and judged in (\d+) ms", text)
    return {"seed": int(seed.group(1)) if seed else None, "app_ms": int(millis.group(1)) if millis else None}


def check_app(root: str | Path, screenshot: str | Path, count: int = 100, seed: int = 0, repeats: int = 1) -> dict:
    """Serve the app from ``root``, open ``?count=..&seed=..`` in headless Chromium, press Generate
    ``repeats`` times (seed, seed + 1, ...), and screenshot the page after the first press.

    Returns:
        ``{"count", "seeds", "click_to_render_seconds": [...], "app_ms": [...], "images_rendered"}``.
    Raises:
        PipelineError: no Chromium, the server did not start, or the images did not render.
    """
    driver = chromium()
    try:
        with serve_app(root) as url:
            result = {"count": count, "seeds": [], "click_to_render_seconds": [], "app_ms": []}
            for i in range(repeats):
                driver.get(f"{url}/?{urlencode({'count': count, 'seed': seed + i})}")
                result["click_to_render_seconds"].append(round(press_generate(driver, count), 3))
                summary = page_summary(driver)
                result["seeds"].append(summary["seed"])
                result["app_ms"].append(summary["app_ms"])
                if i == 0:
                    result["images_rendered"] = rendered_images(driver)
                    with atomic_path(screenshot) as tmp:
                        if not driver.get_screenshot_as_file(str(tmp)):
                            raise PipelineError(f"Chromium could not write the screenshot {screenshot}")
            return result
    finally:
        driver.quit()


@click.command(help=__doc__)
@click.option("--screenshot", default="reports/figures/app.png", show_default=True, help="PNG of the page.")
@click.option("--metrics", default="reports/metrics/app.json", show_default=True, help="Timings JSON.")
@click.option("--count", type=click.IntRange(1, 100), default=100, show_default=True, help="Images per press.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Presses of Generate to time (a new seed and a fresh page each).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the first press.")
def main(screenshot, metrics, count, repeats, seed) -> None:
    with user_errors():
        result = check_app(".", screenshot, count, seed, repeats)
        times = result["click_to_render_seconds"]
        result.update({"median_click_to_render_seconds": statistics.median(times), "max_click_to_render_seconds": max(times),
                       "screenshot": str(screenshot)})
        write_json(metrics, result)
        click.echo(f"{count} images: click to render median {statistics.median(times):.3f} s, max {max(times):.3f} s "
                   f"over {repeats} presses; app generate + judge {statistics.median(result['app_ms'])} ms; "
                   f"screenshot {screenshot}")


if __name__ == "__main__":
    run(main)
