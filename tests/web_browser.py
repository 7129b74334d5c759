"""Helpers for driving `strata web` in Debian's headless Chromium (tests/test_web.py and
bench/web.py): the browser, the app as a separate `strata web` process, screenshots.

    driver = chromium()                      # raises BrowserMissing with the reason
    with WebProcess("127.0.0.1:50051") as web:
        driver.get(web.url("/"))
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("STRATA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STRATA_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install -y chromium chromium-driver (tests/run.sh does this)"
#: Set to a folder (e.g. docs/web) to also write each page's screenshot there.
SCREENSHOT_DIR_ENV = "STRATA_WEB_SCREENSHOTS"


class BrowserMissing(Exception):
    pass


def chromium(width: int = 1400, height: int = 950) -> Any:
    """A headless Chromium through Selenium, software WebGL included."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            raise BrowserMissing(f"{path} is missing: {INSTALL_HINT}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise BrowserMissing(f"selenium is not installed ({exc}): pip install -e '.[dev]'") from exc
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu-sandbox",
        f"--window-size={width},{height}",
        # No GPU on CI machines: WebGL through SwiftShader, as Chromium allows it headless.
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as exc:  # selenium's own errors say what failed (version, crash)
        raise BrowserMissing(f"Chromium would not start: {exc}") from exc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebProcess:
    """`python -m service.cli web` on a free localhost port, until stop()."""

    def __init__(
        self, server: str, *args: str, log_dir: Path | None = None, https_ca: Path | None = None
    ):
        self.https_ca = https_ca  # the app serves TLS (--listen-cert) signed by this CA
        self.port = free_port()
        self.server = server
        self.args = args
        self.log_path = (log_dir or Path("/tmp")) / f"strata-web-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.https_ca else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self, wait_healthy: bool = True, timeout: float = 60.0) -> WebProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        command = [
            sys.executable,
            "-m",
            "service.cli",
            "web",
            "--server",
            self.server,
            "--listen",
            f"127.0.0.1:{self.port}",
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"strata web exited:\n{self.log()}")
            status = self.health()
            if status == 200 or (status == 503 and not wait_healthy):
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"strata web not ready after {timeout}s:\n{self.log()}")

    def health(self) -> int | None:
        try:
            import ssl

            context = (
                ssl.create_default_context(cafile=str(self.https_ca)) if self.https_ca else None
            )
            with urllib.request.urlopen(
                self.url("/healthz"), timeout=5, context=context
            ) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)

    def __enter__(self) -> WebProcess:
        return self if self.process is not None else self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def screenshot(driver: Any, name: str, folder: Path) -> Path:
    """Save the page as `folder/name.png`, and under $STRATA_WEB_SCREENSHOTS when set."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    extra = os.environ.get(SCREENSHOT_DIR_ENV)
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / f"{name}.png")
    return path


def browser_errors(driver: Any) -> list[str]:
    """Console errors of the page (uncaught exceptions, failed module loads)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry.get("level") == "SEVERE" and "favicon" not in entry["message"]
    ]
