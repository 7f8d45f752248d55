"""Where data and results live, from environment variables (never from this package's own
location, which is site-packages once installed).

- ``RAREMEM_DATA``: the folder holding the data sets (``omniglot/``, ``translation/``);
  default ``$XDG_DATA_HOME/raremem`` (``~/.local/share/raremem``). Every trainer's ``--data``
  flag overrides it.
- ``RAREMEM_RESULTS``: where benchmarks and reports write their tables and plots; default
  ``results`` under the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    if os.environ.get("RAREMEM_DATA"):
        return Path(os.environ["RAREMEM_DATA"])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "raremem"


def data_dir(name: str) -> Path:
    """The folder of one data set, e.g. ``data_dir("omniglot")``."""
    return data_root() / name


def results_dir() -> Path:
    return Path(os.environ.get("RAREMEM_RESULTS", "results"))
