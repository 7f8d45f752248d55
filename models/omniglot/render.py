"""How the memory page (``raremem-admin ui``) shows an Omniglot slot: the drawing that wrote it.

A slot's source is the drawing's index in the part of the class split its memory reads,
``class * 20 + drawing`` (episodes.py): the training classes for ``omniglot/replica-*`` and
``omniglot/shared``, the validation classes for the ``-val`` memories. The split is the run's
(``split=vinyals``, the default, or ``split=lake``).
With ``checkpoint=PATH`` the page can also embed an uploaded drawing with that trained model
and show the slots it would retrieve. Found by the page through the ``raremem.renderers``
entry point ``omniglot``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from raremem.client.ui.renderers import Rendered
from raremem.models.omniglot.data import DRAWINGS, SIZE, Omniglot
from raremem.models.paths import data_dir

SCALE = 3   # 28 px drawings shown at 84 px


def to_png(image: np.ndarray) -> bytes:
    """(28, 28) ink in [0, 1] -> PNG, dark ink on white paper, enlarged ``SCALE`` times."""
    pixels = np.clip(255.0 * (1.0 - image), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, mode="L").resize((SIZE * SCALE, SIZE * SCALE), Image.NEAREST)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def from_upload(data: bytes) -> np.ndarray:
    """An uploaded drawing (any image PIL reads) -> (28, 28) ink in [0, 1], as data.py reads the
    data set: grey, resized bilinearly, white paper = 0."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            small = img.convert("L").resize((SIZE, SIZE), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"the upload is not an image this page can read ({exc})") from exc
    return 1.0 - np.asarray(small, np.float32) / 255.0


class OmniglotRenderer:
    def __init__(self, data: str = "", checkpoint: str = "", split: str = "vinyals"):
        self.data = Omniglot.load(Path(data) if data else data_dir("omniglot"), split)
        self.checkpoint = checkpoint
        self._model = None

    def part(self, memory: str) -> np.ndarray:
        return self.data.val if memory.endswith("-val") else self.data.train   # (C, 20, 28, 28)

    def image(self, memory: str, source: int) -> np.ndarray:
        chars = self.part(memory)
        c, d = divmod(source, DRAWINGS)
        if not 0 <= c < len(chars):
            raise LookupError(f"source {source} is not a drawing of this split ({len(chars) * DRAWINGS})")
        return chars[c, d]

    def render(self, memory: str, source: int, value: int) -> Rendered:
        image = self.image(memory, source)
        c, d = divmod(source, DRAWINGS)
        name = self.data.classes["val" if memory.endswith("-val") else "train"][c]
        return Rendered(png=to_png(image), caption=f"drawing {d} of {name} (class {c}), label {value}")

    def embed(self, memory: str, data: bytes) -> np.ndarray:
        """The unit memory query of an uploaded drawing under ``checkpoint`` (d,)."""
        if not self.checkpoint:
            raise ValueError("start the page with --render omniglot:checkpoint=PATH to embed drawings")
        image = from_upload(data)
        import torch  # noqa: PLC0415 - only the upload path needs the model

        from raremem.models.omniglot.model import load_model  # noqa: PLC0415

        if self._model is None:
            self._model = load_model(Path(self.checkpoint)).eval()
        with torch.no_grad():
            return self._model.queries(torch.from_numpy(image)[None])[0].numpy()


def make(**options) -> OmniglotRenderer:
    return OmniglotRenderer(**options)
