"""Run.keep_best: the best validation's weights, and the memory they had, outlive later steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from raremem.models.memory_layer import make_backend
from raremem.models.flags import TrainerFlags
from raremem.models.run import Run
from tests.conftest import running_server


@dataclass
class Flags(TrainerFlags):
    pass


def test_best_weights_and_their_memory_are_kept(tmp_path):
    with running_server(tmp_path / "data") as (address, _):
        backend = make_backend(address, "t/m", 4, 64, choose_k=4)
        cfg = Flags(out=str(tmp_path / "run"), steps=3, threads=1)
        model = torch.nn.Linear(4, 4)
        run = Run(cfg)
        run.start(model, torch.optim.SGD(model.parameters(), lr=0.1))
        scores, kept = [0.2, 0.5, 0.4], []
        for i in run.steps():
            with torch.no_grad():
                model.weight.fill_(i)
            q = np.eye(4, dtype=np.float32)[[i]]
            backend.lookup(q, np.array([i]), update=True)
            kept.append(run.keep_best(scores[i], backend))
        run.finish()
        assert kept == [True, True, False]
        best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
        assert best["step"] == 2 and float(best["model"]["weight"][0, 0]) == 1.0   # step 2's weights
        assert (tmp_path / "data" / "best" / "t" / "m.npz").is_file()               # and its memory
        restored = backend.client.restore("t/at-best", "best/t/m.npz")
        assert restored.filled == 2 and backend.client.stats("t/m").info.filled == 3
        again = Run(Flags(out=str(tmp_path / "run"), steps=3, resume=True))   # a resumed run knows the best
        assert not again.keep_best(0.45)
        backend.close()
