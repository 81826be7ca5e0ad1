"""A real browser for the console's tests: Debian's headless Chromium driven by Selenium through
Debian's chromium-driver. Nothing downloads a browser: both binaries must be installed
(``apt-get install chromium chromium-driver``); a missing one fails the test with that line.

The browser is started with every non-loopback request sent to a closed proxy port, so a page
that tried to fetch anything from outside (a CDN, a font) would break visibly instead of
silently reaching the network.
"""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: screenshots land here (gitignored); CI keeps them as artifacts
SHOTS = ROOT / "artifacts" / "console"
WIDTH, HEIGHT = 1280, 800

INSTALL_HINT = (
    "the console's browser tests need Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver) and selenium (pip install -r console/requirements-test.txt); "
    "nothing downloads a browser"
)


@pytest.fixture(scope="module", name="browser")
def browser_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for a test module (import ``browser_fixture`` to offer ``browser``)."""
    b = start_chrome(tmp_path_factory.mktemp("chrome"))
    yield b
    b.quit()


def css(browser: Any, selector: str) -> list[Any]:
    """The elements ``selector`` finds on the page."""
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def text(browser: Any, selector: str) -> str:
    """The text of the first element ``selector`` finds; "" when there is none."""
    found = css(browser, selector)
    return str(found[0].text) if found else ""


def start_chrome(log_dir: Path) -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if Path("/usr/lib/chromium/chromedriver").exists() else None
    )
    if not chromium or not driver:
        pytest.fail(f"{INSTALL_HINT}: {'chromium' if not chromium else 'chromedriver'} is not on PATH", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"{INSTALL_HINT}: selenium is not installed", pytrace=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's own sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WIDTH},{HEIGHT}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-pings",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        # loopback goes direct; anything else would go to a closed port and fail
        "--proxy-server=http://127.0.0.1:9",
        "--lang=en-US",
    ):
        opts.add_argument(arg)
    service = Service(executable_path=driver, log_output=str(log_dir / "chromedriver.log"))
    browser = webdriver.Chrome(options=opts, service=service)
    browser.set_page_load_timeout(20)
    # the viewport itself 1280x800 (the window size includes what a window would draw around it)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    return browser


def wait_for(browser: Any, check: Callable[[], Any], timeout: float = 20.0, what: str = "the page") -> Any:
    """Poll ``check`` (reading the DOM) until it returns something truthy; fail with ``what``
    and a screenshot when ``timeout`` passes. The state waited on is the page's, never the clock's."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (StaleElementReferenceException, WebDriverException) as exc:
            last = exc
        if time.monotonic() > deadline:
            shot(browser, "timeout-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} on {browser.current_url}"
                + (f" (last error: {last})" if last else "")
            )
        time.sleep(0.1)


def shot(browser: Any, name: str, full_page: bool = False) -> Path:
    """Save a screenshot (the 1280x800 viewport, or the whole page) as artifacts/console/NAME.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if full_page:
        metrics = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        png = browser.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": max(HEIGHT, size["height"]), "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(png["data"]))
    else:
        browser.save_screenshot(str(path))
    return path


def number(browser: Any, css: str) -> int | None:
    """The number a cell or tile shows, from its ``data-value`` (None while it shows none)."""
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, css)
    if not found:
        return None
    value = found[0].get_attribute("data-value")
    return int(float(value)) if value not in (None, "", "null") else None
