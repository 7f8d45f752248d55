"""Source renderers: how the page shows the training example that wrote a slot.

A slot stores provenance as an integer ``source`` (an Omniglot drawing's index, a synthetic
example's index, a training sentence's line) and its ``value`` (a label, a symbol, a token id).
What those integers mean belongs to the model that wrote them, so the renderers live with the
models (``raremem.models.*.render``) and are found here through the ``raremem.renderers``
entry-point group: the entry point's name is the first part of the memory names it knows
(``omniglot`` for ``omniglot/replica-0``), its object a factory ``make(**options) -> Renderer``.
This package imports no model code; a memory whose prefix no plugin claims shows bare numbers.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Callable, Protocol

import numpy as np

GROUP = "raremem.renderers"
log = logging.getLogger(__name__)


@dataclass
class Rendered:
    """One source as the page shows it: text lines made of (text, highlighted) runs, and/or a
    PNG image; ``caption`` says what it is ("drawing 17 of character 402")."""

    lines: list[list[tuple[str, bool]]] = field(default_factory=list)
    png: bytes | None = None
    caption: str = ""


class Renderer(Protocol):
    def render(self, memory: str, source: int, value: int) -> Rendered:
        """The example behind a slot of ``memory`` whose provenance is (source, value).
        Raises ``LookupError`` for a source it does not hold."""

    # Optional: ``embed(memory, data: bytes) -> np.ndarray`` (d,) unit query for an uploaded
    # example (Omniglot: a drawing), raising ``ValueError`` for data it cannot read.


def prefix(memory: str) -> str:
    return memory.split("/", 1)[0]


class Renderers:
    """The installed renderers, each built on first use with its options (``--render``)."""

    def __init__(self, options: dict[str, dict[str, str]] | None = None,
                 factories: dict[str, Callable[..., Renderer]] | None = None):
        self.options = options or {}
        if factories is None:
            factories = {ep.name: ep for ep in entry_points(group=GROUP)}
        self._factories = factories
        self._built: dict[str, Renderer | None] = {}
        self.errors: dict[str, str] = {}   # prefix -> why its renderer could not be built
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, memory: str) -> Renderer | None:
        name = prefix(memory)
        with self._lock:
            if name not in self._built:
                self._built[name] = self._build(name)
            return self._built[name]

    def _build(self, name: str) -> Renderer | None:
        factory = self._factories.get(name)
        if factory is None:
            return None
        try:
            make = factory.load() if hasattr(factory, "load") else factory
            return make(**self.options.get(name, {}))
        except Exception as exc:  # noqa: BLE001 - a broken plugin costs its pictures, not the page
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            log.warning("renderer %r unavailable: %s", name, self.errors[name])
            return None

    def render(self, memory: str, source: int, value: int) -> Rendered | None:
        """The rendered source, or None where there is no renderer or it does not know it."""
        r = self.get(memory)
        if r is None or source < 0:
            return None
        try:
            return r.render(memory, int(source), int(value))
        except LookupError:
            return None

    def can_embed(self, memory: str) -> bool:
        return hasattr(self.get(memory), "embed")

    def embed(self, memory: str, data: bytes) -> np.ndarray:
        r = self.get(memory)
        if not hasattr(r, "embed"):
            raise ValueError(f"no renderer of {prefix(memory)!r} memories embeds uploads")
        return np.asarray(r.embed(memory, data), dtype=np.float32)


def parse_options(items: list[str]) -> dict[str, dict[str, str]]:
    """``["omniglot:checkpoint=run/ck.pt", "synthetic:preset=short"]`` -> nested dict."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not (sep and eq and name and key):
            raise ValueError(f"--render takes NAME:KEY=VALUE, not {item!r}")
        out.setdefault(name, {})[key.replace("-", "_")] = value
    return out
