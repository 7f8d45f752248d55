"""The memory page over HTTP (Flask's test client) against a real raremem server on port 0,
its memories filled through the client; the renderers found through their entry points."""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import pytest

flask = pytest.importorskip("flask")
torch = pytest.importorskip("torch")
PIL = pytest.importorskip("PIL.Image")

from raremem.client import MemoryClient  # noqa: E402
from raremem.client.ui.app import create_app  # noqa: E402
from raremem.client.ui.renderers import Renderers, parse_options  # noqa: E402
from raremem.models.omniglot.data import DRAWINGS, Omniglot  # noqa: E402
from raremem.models.omniglot.model import OmniglotModel, OmniglotModelConfig  # noqa: E402
from raremem.models.omniglot.render import to_png  # noqa: E402
from raremem.models.paths import data_dir  # noqa: E402
from tests.conftest import running_server  # noqa: E402

MEM = "omniglot/replica-0"
SLOTS = 256
TOKEN = "page-admin-secret"


@pytest.fixture(scope="module")
def omniglot():
    try:
        return Omniglot.load(data_dir("omniglot"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Omniglot data: {exc}")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint as the trainer writes one (config + weights), of an untrained model: the
    page must embed with exactly these weights, trained or not."""
    torch.manual_seed(0)
    cfg = OmniglotModelConfig(rep_dim=32)
    model = OmniglotModel(cfg, backend=None).eval()
    path = tmp_path_factory.mktemp("ck") / "checkpoint.pt"
    torch.save({"config": dataclasses.asdict(cfg), "model": model.state_dict()}, path)
    return path, model


@pytest.fixture
def filled(tmp_path, omniglot, checkpoint):
    """A server holding MEM: 200 training drawings written with their model queries, labels
    and sources, through the client, then a few lookups."""
    _, model = checkpoint
    rng = np.random.default_rng(0)
    sources = rng.choice(len(omniglot.train) * DRAWINGS, size=200, replace=False)
    images = omniglot.train.reshape(-1, 28, 28)[sources]
    with torch.no_grad():
        keys = model.queries(torch.from_numpy(images)).numpy()
    labels = sources // DRAWINGS % 50
    with running_server(tmp_path / "data") as (address, service):
        with MemoryClient(address) as c:
            c.create_memory(MEM, 32, SLOTS, choose_k=16)
            c.write(MEM, keys, labels, sources=sources)
            c.lookup(MEM, keys[:10])
            yield address, c, sources, labels


def page(address, *, token=None, admin_token=TOKEN, checkpoint=None):
    opts = [f"omniglot:checkpoint={checkpoint}"] if checkpoint else []
    client = MemoryClient(address, token=token, retry_seconds=0)
    app = create_app(client, Renderers(parse_options(opts)), admin_token=admin_token)
    app.testing = True
    return app.test_client(), client


def state(c: MemoryClient) -> str:
    return c.stats(MEM, with_hash=True).state_hash


def test_every_view_answers_with_the_memory_s_numbers(filled):
    address, c, sources, labels = filled
    http, _ = page(address)
    s = c.stats(MEM)

    r = http.get("/")
    assert r.status_code == 200
    row = re.search(rf'<tr data-name="{MEM}">(.*?)</tr>', r.text, re.S).group(1)
    assert "200</span> / 256" in row and f'data-field="lookups">{s.lookups}<' in row
    assert f'data-field="fresh_writes">{s.fresh_writes}<' in row

    api = http.get("/api/memories").get_json()
    assert api[0]["name"] == MEM and api[0]["filled"] == 200 and api[0]["size"] == SLOTS

    r = http.get(f"/memory/{MEM}?per=20")
    assert r.status_code == 200
    ages = re.search(r'<div id="age-histogram">(.*?)</div>', r.text, re.S).group(1)
    assert sum(int(x) for x in re.findall(r'data-count="(\d+)"', ages)) == 200   # every filled slot
    values = re.search(r'<div id="value-counts">(.*?)</div>', r.text, re.S).group(1)
    top = c.stats(MEM, top_values=20)
    assert [int(x) for x in re.findall(r'data-count="(\d+)"', values)] == top.top_value_counts.tolist()
    rows = re.findall(r'<tr data-slot="(\d+)">(.*?)</tr>', r.text, re.S)
    assert [int(x) for x, _ in rows] == list(range(20))
    assert all("data:image/png;base64," in body for _, body in rows)   # Omniglot drawings rendered
    assert "page 1 of 13" in r.text

    detail = http.get(f"/api/memory/{MEM}").get_json()
    assert detail["filled"] == 200 and sum(detail["age_counts"]) == 200 and len(detail["history"]) >= 1
    assert http.get(f"/memory/{MEM}/charts").status_code == 200


def test_nearest_of_a_slot_starts_with_itself(filled):
    address, c, sources, labels = filled
    http, _ = page(address)
    r = http.get(f"/memory/{MEM}/slot/7?k=5")
    assert r.status_code == 200
    rows = re.findall(r'<tr data-slot="(\d+)">\s*<td>(\d+)</td>.*?<td>(-?\d+)</td>\s*<td>([-\d.]+)</td>',
                      r.text, re.S)
    assert len(rows) == 5 and int(rows[0][0]) == 7 and float(rows[0][3]) == pytest.approx(1.0, abs=1e-4)
    # independent of the page: the same lookup through the client
    key = c.read_slots(MEM, ids=np.array([7]))["keys"]
    ref = c.lookup(MEM, key, k=5, return_neighbors=True).neighbors
    assert [int(x[0]) for x in rows] == ref.ids[0].tolist()
    assert f'id="answer">{labels[7]}<' in r.text


def test_upload_a_drawing_finds_the_slot_it_wrote(filled, omniglot, checkpoint):
    address, c, sources, labels = filled
    http, _ = page(address, checkpoint=checkpoint[0])
    src = int(sources[42])
    png = to_png(omniglot.train.reshape(-1, 28, 28)[src])
    r = http.post(f"/memory/{MEM}/nearest?k=3", data={"drawing": (io.BytesIO(png), "drawing.png")},
                  content_type="multipart/form-data")
    assert r.status_code == 200, r.text
    first = re.search(r'<tr data-slot="(\d+)">', r.text).group(1)
    assert int(first) == 42   # slot 42 holds this drawing's key


def test_omniglot_renderer_returns_the_drawing_of_a_source(omniglot):
    r = Renderers().get(MEM)
    for source in (0, 19, 20 * 1028 + 3, len(omniglot.train) * DRAWINGS - 1):
        png = r.render(MEM, source, 0).png
        shown = np.asarray(PIL.open(io.BytesIO(png)).convert("L"), np.float32)[::3, ::3]   # 3x enlarged
        c, d = divmod(source, DRAWINGS)
        assert np.abs((1 - shown / 255) - omniglot.train[c, d]).max() <= 1 / 255 + 1e-6
    # a class named .../rot090 is its character turned by 90 degrees: sources say so too
    names = omniglot.classes["train"]
    turned = names.index("Angelic/character02/rot090")
    plain = r.image(MEM, names.index("Angelic/character02/rot000") * DRAWINGS + 2)
    assert np.array_equal(r.image(MEM, turned * DRAWINGS + 2), np.rot90(plain))
    assert "Angelic/character02/rot090" in r.render(MEM, turned * DRAWINGS + 2, 0).caption
    assert np.array_equal(r.image(MEM + "-val", 7), omniglot.val[0, 7])   # -val memories: validation classes
    with pytest.raises(LookupError):
        r.render(MEM, len(omniglot.train) * DRAWINGS, 0)


def test_synthetic_renderer_marks_the_digit_run():
    from raremem.models.neural_gpu.task import decode, make_splits

    train, _, f = make_splits(0, preset="short")
    r = Renderers(parse_options(["synthetic:preset=short"])).get("synthetic/ngpu")
    out = r.render("synthetic/ngpu", 11, 4)
    start = int(train.starts[11])
    inp, outp = ("".join(t for t, _ in line[1:]) for line in out.lines)
    assert inp == decode(train.inputs[11]) and outp == decode(train.targets[11])
    assert [t for t, hot in out.lines[0] if hot] == [decode(train.inputs[11])[start:start + 7]]
    assert f"f(n) = {int(f[train.numbers[11]])}" in out.caption


def test_translation_renderer_highlights_the_token(tmp_path):
    from raremem.models.translation import data, subwords

    try:
        pairs = data.load("train")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    sw = subwords.train(pairs.source[:3000] + pairs.target[:3000], tmp_path / "spm.model", vocab_size=600)
    r = Renderers(parse_options([f"translation:spm={tmp_path / 'spm.model'}"])).get("translation/gnmt")
    ids = sw.encode([pairs.target[5]])[0]
    out = r.render("translation/gnmt", 5, ids[2])
    assert out.lines[0][1][0] == pairs.source[5]
    assert "".join(t for t, _ in out.lines[1][1:]).strip() == pairs.target[5]
    hot = [t for t, h in out.lines[1] if h]
    assert hot and all(t.strip() == sw.sp.id_to_piece(ids[2]).replace("\u2581", "") for t in hot)


def test_bad_input_gets_a_clear_page_and_changes_nothing(filled, checkpoint):
    address, c, *_ = filled
    before, snapped = state(c), c.stats(MEM).last_snapshot_unix
    http, _ = page(address, checkpoint=checkpoint[0])
    cases = [
        ("/memory/no/such", 404, "no/such"),
        ("/memory/no/such/slot/0", 404, "no/such"),
        (f"/memory/{MEM}/slot/256", 404, "outside omniglot/replica-0&#39;s 256 slots"),
        (f"/memory/{MEM}/slot/-1", 404, "outside"),
        (f"/memory/{MEM}/slot/230", 404, "is empty"),
        (f"/memory/{MEM}?page=99", 400, "page must be in [0, 5]"),
        (f"/memory/{MEM}?per=abc", 400, "per must be a whole number"),
        (f"/memory/{MEM}/slot/3?k=0", 400, "k must be in [1, 100]"),
    ]
    for url, status, text in cases:
        r = http.get(url)
        assert r.status_code == status and text in r.text and 'class="error"' in r.text, url
    r = http.post(f"/memory/{MEM}/nearest", data={"drawing": (io.BytesIO(b"not a picture"), "notes.txt")},
                  content_type="multipart/form-data")
    assert r.status_code == 400 and "not an image" in r.text
    r = http.post(f"/memory/{MEM}/nearest", data={}, content_type="multipart/form-data")
    assert r.status_code == 400 and "choose a drawing" in r.text
    no_model, _ = page(address)
    r = no_model.post(f"/memory/{MEM}/nearest", data={"drawing": (io.BytesIO(b"x"), "a.png")},
                      content_type="multipart/form-data")
    assert r.status_code == 400 and "omniglot:checkpoint=PATH" in r.text
    # a snapshot needs the admin token; a wrong one writes nothing
    r = http.post("/snapshot", data={"name": MEM, "token": "guess"})
    assert r.status_code == 403 and "wrong admin token" in r.text
    assert state(c) == before and c.stats(MEM).last_snapshot_unix == snapped
    r = http.post("/snapshot", data={"name": MEM, "token": TOKEN})
    assert r.status_code == 200 and "wrote omniglot/replica-0.npz" in r.text
    assert c.stats(MEM).last_snapshot_unix > snapped
    http, _ = page(address, admin_token="")
    assert http.post("/snapshot", data={"name": MEM, "token": ""}).status_code == 403
    assert state(c) == before


def test_a_server_with_a_token(tmp_path):
    with running_server(tmp_path / "d", token="s3cret") as (address, _):
        with MemoryClient(address, token="s3cret") as c:
            c.create_memory("synthetic/x", 8, 16)
        http, _ = page(address, token="wrong")
        r = http.get("/")
        assert r.status_code == 403 and "refused this page&#39;s token" in r.text
        http, _ = page(address, token="s3cret")
        assert http.get("/").status_code == 200 and "synthetic/x" in http.get("/").text


def test_no_server_is_a_clear_503():
    http, _ = page("127.0.0.1:1")
    r = http.get("/")
    assert r.status_code == 503 and "cannot reach the raremem server at 127.0.0.1:1" in r.text
