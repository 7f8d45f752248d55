"""Screenshots of the memory page (``raremem-admin ui``) over memories that real training runs
filled: a short Omniglot run and a short translation run against one raremem server, then
headless Chromium (Debian's ``chromium`` and ``chromium-driver``; ``make browser-test``
installs them) photographs the views. The browser test (tests/client/test_browser.py) drives
the same helpers.

    python -m reports.ui_screenshots [--omniglot-steps 40] [--translation-steps 60] [--out results]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def browser_paths() -> tuple[str, str] | None:
    """(browser, chromedriver) if both are installed, else None."""
    browser = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def headless(width: int = 1280, height: int = 1100):
    """A headless Chromium under Selenium (its own profile; no network needed)."""
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    found = browser_paths()
    if not found:
        raise RuntimeError("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(found[1]), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def page_server(address: str, render: list[str] = ()):
    """The page over the server at ``address``, on a free loopback port; yields its URL."""
    from raremem.client import MemoryClient  # noqa: PLC0415
    from raremem.client.ui.app import PageServer, create_app  # noqa: PLC0415
    from raremem.client.ui.renderers import Renderers, parse_options  # noqa: PLC0415

    client = MemoryClient(address, retry_seconds=0)
    server = PageServer(create_app(client, Renderers(parse_options(list(render)))), "127.0.0.1", 0, sample_every=1.0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.close()
        client.close()


def train_omniglot(address: str, out: Path, steps: int) -> Path:
    """A short real Omniglot run against ``address``; returns its checkpoint."""
    from raremem.models.omniglot.train import main  # noqa: PLC0415

    main(["--server", address, "--out", str(out), "--steps", str(steps), "--eval-every", "0", "--threads", "1",
          "--checkpoint-every", str(steps)])
    return out / "checkpoint.pt"


def train_translation(address: str, out: Path, steps: int, spm: Path) -> None:
    from raremem.models.translation.train import main  # noqa: PLC0415

    main(["--server", address, "--out", str(out), "--steps", str(steps), "--val-every", "0", "--threads", "1",
          "--spm", str(spm), "--checkpoint-every", str(steps)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--omniglot-steps", type=int, default=40)
    p.add_argument("--translation-steps", type=int, default=60)
    p.add_argument("--spm", type=Path, default=Path("runs/translation/spm-8000.model"))
    p.add_argument("--out", type=Path, default=Path("results"))
    a = p.parse_args(argv)
    from raremem.server.spawn import spawn_server  # noqa: PLC0415

    proc, address, _ = spawn_server("--metrics-port", "-1", "--threads", "1")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ck = train_omniglot(address, Path(tmp) / "omniglot", a.omniglot_steps)
            train_translation(address, Path(tmp) / "translation", a.translation_steps, a.spm)
            print(f"trained both in {time.perf_counter() - t0:.0f} s", flush=True)
            render = [f"omniglot:checkpoint={ck}", f"translation:spm={a.spm}"]
            with page_server(address, render) as url, headless() as d:
                a.out.mkdir(parents=True, exist_ok=True)
                for name, path in (("index", "/"), ("omniglot", "/memory/omniglot/replica-0?per=12"),
                                   ("omniglot-nearest", "/memory/omniglot/replica-0/slot/3?k=8"),
                                   ("translation", "/memory/translation/gnmt?per=12")):
                    d.get(url + path)
                    time.sleep(2.5)   # one live refresh
                    d.save_screenshot(str(a.out / f"ui-{name}.png"))
                    print(f"wrote {a.out / f'ui-{name}.png'}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
