"""The memory page in a real browser: headless Chromium (Selenium) over a raremem server whose
memory a short real Omniglot run filled. Skipped where chromium and chromedriver are missing
(``make browser-test`` installs Debian's and runs this)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("flask")
pytest.importorskip("selenium")
pytest.importorskip("torch")

from raremem.models.omniglot.data import Omniglot  # noqa: E402
from raremem.models.paths import data_dir, results_dir  # noqa: E402
from reports.ui_screenshots import browser_paths, headless, page_server, train_omniglot  # noqa: E402
from tests.conftest import running_server  # noqa: E402

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(browser_paths() is None, reason="no chromium + chromedriver installed")]


def test_page_in_headless_chromium(tmp_path):
    from selenium.webdriver.common.by import By

    try:
        Omniglot.load(data_dir("omniglot"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Omniglot data in {data_dir('omniglot')}: {exc}")
    with running_server(tmp_path / "data") as (address, _):
        ck = train_omniglot(address, tmp_path / "run", steps=6)
        t0 = time.perf_counter()
        with page_server(address, [f"omniglot:checkpoint={ck}"]) as url, headless() as d:
            d.get(url + "/")
            link = d.find_element(By.LINK_TEXT, "omniglot/replica-0")
            filled = int(d.find_element(By.CSS_SELECTOR, 'tr[data-name="omniglot/replica-0"] [data-field="filled"]')
                         .text.replace(",", ""))
            assert filled > 0
            link.click()
            bars = d.find_elements(By.CSS_SELECTOR, "#age-histogram svg rect.bar")
            assert bars and sum(int(b.get_attribute("data-count")) for b in bars) == filled
            drawings = d.find_elements(By.CSS_SELECTOR, "#slots img.drawing")
            assert drawings and all(img.get_property("naturalWidth") == 84 for img in drawings)
            d.find_element(By.CSS_SELECTOR, '#slots tr[data-slot="0"] a').click()
            rows = d.find_elements(By.CSS_SELECTOR, "#neighbours tbody tr[data-slot]")
            assert rows and rows[0].get_attribute("data-slot") == "0"
            assert d.find_elements(By.CSS_SELECTOR, "#neighbours img.drawing")
            d.back()
            time.sleep(2.5)   # one live refresh of the charts: the section is redrawn in place
            assert d.find_elements(By.CSS_SELECTOR, "#charts #age-histogram svg")
            out = results_dir() / "ui-browser-test.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            d.save_screenshot(str(out))
        seconds = time.perf_counter() - t0
    print(f"browser checks took {seconds:.1f} s (after a 6-step Omniglot run); screenshot {out}")
