"""The interactive app: request handling and payloads (pipeline.generation.interactive), the Streamlit script under
``streamlit.testing.v1.AppTest``, and the real page in headless Chromium (pipeline.tools.browser).

These use the committed trained generator and judge (models/), as a user of a fresh clone would."""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.core.params import load_params
from pipeline.core.utils import PipelineError, sha256_file
from pipeline.generation.formats import decode_png, export_schema
from pipeline.generation.inference import InferenceGenerator
from pipeline.generation.interactive import (
    GENERATOR_ENV,
    JUDGE_ENV,
    MAX_SEED,
    Request,
    ServedModels,
    captions,
    generate_batch,
    grid_html,
    parquet_bytes,
    query_of,
    request_from_query,
    served_models,
    zip_of_pngs,
)
from pipeline.training.checkpoints import load_classifier, load_generator
from tests.conftest import REPO, run_module

streamlit_testing = pytest.importorskip("streamlit.testing.v1", reason="the app extra (streamlit) is not installed")
AppTest = streamlit_testing.AppTest
APP = str(REPO / "pipeline" / "app.py")
#: The export's latent scale (generate.latent_scale), which the app starts from.
SCALE = load_params(REPO / "params.yaml").generate.latent_scale


@pytest.fixture(scope="module")
def models():
    generator, _ = load_generator(REPO / "models" / "generator.pt")
    # As the app loads it: the inference path in pipeline.generate's default precision.
    return InferenceGenerator(generator, "auto"), load_classifier(REPO / "models" / "judge.pt")


# --- pipeline.generation.interactive


@pytest.mark.parametrize("kwargs, fragment", [
    ({"count": 0}, "number of images must be in 1..100"),
    ({"count": 101}, "number of images must be in 1..100"),
    ({"seed": -1}, "seed must be an integer in 0..2147483647"),
    ({"seed": MAX_SEED + 1}, "seed must be"),
    ({"digits": (10,)}, "digits must be distinct integers in 0-9"),
    ({"digits": (3, 3)}, "digits must be distinct"),
    ({"digits": ()}, "digits must be"),
    ({"min_confidence": 1.0}, "minimum judge confidence must be in [0, 0.999]"),
    ({"min_confidence": -0.1}, "minimum judge confidence"),
    ({"latent_scale": 0.0}, "latent scale must be in (0, 2.0], got 0.0"),
    ({"latent_scale": 2.5}, "latent scale must be in (0, 2.0]"),
])
def test_request_out_of_range_is_a_one_line_error(kwargs, fragment):
    with pytest.raises(PipelineError) as error:
        Request(**{"digits": (1,), "count": 10, "seed": 0, **kwargs})
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_query_parameters_round_trip_and_reject_bad_values():
    request = Request((7,), 20, 3, 0.9, 1.15)
    assert request_from_query(query_of(request)) == request
    assert request_from_query(query_of(Request((7,), 20, 3)), latent_scale=1.1).latent_scale == 1.0  # the URL wins
    assert request_from_query({}) == Request(tuple(range(10)), 50, 0, 0.0, 1.0)
    assert request_from_query({}, latent_scale=1.1).latent_scale == 1.1
    assert request_from_query({"digit": "all", "count": "100"}).digits == tuple(range(10))
    with pytest.raises(PipelineError, match="seed='x' is not an integer"):
        request_from_query({"seed": "x"})
    with pytest.raises(PipelineError, match="number of images must be in 1..100"):
        request_from_query({"count": "500"})


def test_same_seed_same_images_new_seed_different(models):
    generator, judge = models
    first = generate_batch(generator, judge, Request(tuple(range(10)), 30, 5))
    again = generate_batch(generator, judge, Request(tuple(range(10)), 30, 5))
    other = generate_batch(generator, judge, Request(tuple(range(10)), 30, 6))
    assert first.images.dtype == np.uint8 and first.images.shape == (30, 28, 28)
    assert np.array_equal(first.images, again.images)
    assert (first.images != other.images).any(axis=(1, 2)).all()  # every image changes with the seed
    assert first.labels.tolist() == [i % 10 for i in range(30)] and first.indices.tolist() == [i // 10 for i in range(30)]
    # The trained generator draws what it is asked for: the judge agrees on (nearly) all of them.
    assert (first.judge_label == first.labels).mean() >= 0.9
    assert ((first.judge_confidence > 0) & (first.judge_confidence <= 1)).all()


def test_images_are_the_first_rows_of_an_export_with_the_same_seed(models, tmp_path):
    result = run_module("pipeline.generate", "--per-class", "3", "--seed", "41", "--out", str(tmp_path / "export"))
    assert result.returncode == 0, result.stderr
    table = pq.read_table(tmp_path / "export" / "part-00000.parquet")
    exported = np.stack([decode_png(row["bytes"]) for row in table.column("image").to_pylist()])
    batch = generate_batch(*models, Request(tuple(range(10)), 30, 41, latent_scale=SCALE))
    assert np.array_equal(batch.images, exported)
    assert batch.labels.tolist() == table.column("label").to_pylist()
    assert batch.indices.tolist() == table.column("index").to_pylist()


def test_min_confidence_keeps_only_confident_images_and_needs_a_judge(models):
    generator, judge = models
    batch = generate_batch(generator, judge, Request((2,), 40, 0, 0.999))
    assert len(batch.images) == 40
    assert (batch.judge_label == 2).all() and (batch.judge_confidence >= 0.999).all()
    with pytest.raises(PipelineError, match="needs the judge"):
        generate_batch(generator, None, Request((2,), 4, 0, 0.5))
    unjudged = generate_batch(generator, None, Request((2,), 4, 0))
    assert unjudged.judge_label is None and captions(unjudged) == ["asked 2"] * 4


def test_zip_and_parquet_payloads_hold_the_shown_images(models):
    batch = generate_batch(*models, Request(tuple(range(10)), 12, 9))
    payload = zip_of_pngs(batch)
    assert payload == zip_of_pngs(batch)  # deterministic bytes
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = archive.namelist()
        assert names[:3] == ["0/000000.png", "1/000000.png", "2/000000.png"] and names[10] == "0/000001.png"
        assert np.array_equal(np.stack([decode_png(archive.read(n)) for n in names]), batch.images)
    table = pq.read_table(io.BytesIO(parquet_bytes(batch)))
    assert table.schema.equals(export_schema(curated=False), check_metadata=True)
    assert np.array_equal(np.stack([decode_png(r["bytes"]) for r in table.column("image").to_pylist()]), batch.images)
    assert table.column("seed").to_pylist() == [9] * 12
    curated = generate_batch(*models, Request((4,), 5, 1, 0.5))
    table = pq.read_table(io.BytesIO(parquet_bytes(curated)))
    assert table.schema.equals(export_schema(curated=True), check_metadata=True)
    assert table.column("judge_label").to_pylist() == [4] * 5


def test_grid_html_has_one_inline_png_per_image_with_its_caption(models):
    batch = generate_batch(*models, Request(tuple(range(10)), 20, 2))
    page = grid_html(batch)
    assert page.count("<img ") == 20 and page.count("data:image/png;base64,") == 20
    for caption in captions(batch):
        assert caption in page


def test_served_models_come_from_the_command_line_then_the_environment(monkeypatch):
    monkeypatch.delenv(GENERATOR_ENV, raising=False)
    monkeypatch.delenv(JUDGE_ENV, raising=False)
    assert served_models([]) == ServedModels("models/generator.pt", "models/judge.pt")
    monkeypatch.setenv(GENERATOR_ENV, "/srv/g.pt")
    monkeypatch.setenv(JUDGE_ENV, "/srv/j.pt")
    assert served_models([]) == ServedModels("/srv/g.pt", "/srv/j.pt")
    assert served_models(["--generator", "a.pt", "--judge", "b.pt"]) == ServedModels("a.pt", "b.pt")
    for argv, fragment in [(["--checkpoint", "a.pt"], "No such option '--checkpoint'"),
                           (["--generator"], "--generator"), (["extra"], "extra argument")]:
        with pytest.raises(PipelineError) as error:
            served_models(argv)
        assert fragment in str(error.value) and "\n" not in str(error.value)


# --- the Streamlit script (AppTest)


@pytest.fixture
def app(monkeypatch):
    """A fresh AppTest session of pipeline/app.py, run from the project root with an empty model cache, started
    as ``streamlit run pipeline/app.py`` with no script arguments and no model environment variables."""
    import streamlit as st

    monkeypatch.chdir(REPO)
    monkeypatch.setattr("sys.argv", [APP])
    monkeypatch.delenv(GENERATOR_ENV, raising=False)
    monkeypatch.delenv(JUDGE_ENV, raising=False)
    st.cache_resource.clear()
    return AppTest.from_file(APP, default_timeout=120)


@pytest.fixture
def media(monkeypatch):
    """The bytes behind each media URL the app registers (download buttons), keyed by file id."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stored = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        stored[file_id] = path_or_data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return stored


def _summary(at) -> str:
    return next(m.value for m in at.markdown if "Seed used" in m.value)


def _shown_images(at) -> list[np.ndarray]:
    import base64

    sources = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", at.html[0].value)
    return [decode_png(base64.b64decode(s)) for s in sources]


def _page_elements(node) -> list:
    children = getattr(node, "children", None) or {}
    out = []
    for child in (children.values() if isinstance(children, dict) else children):
        out += [child, *_page_elements(child)]
    return out


def test_page_shows_only_the_title_and_the_controls(app):
    """Nothing stray on the page (a bare expression in the script would be written by Streamlit's magic)."""
    at = app.run()
    kinds = [e.type for e in _page_elements(at.main)]
    assert [k for k in kinds if k not in ("flex_container", "column")] == [
        "title", "selectbox", "number_input", "checkbox", "number_input", "slider", "number_input", "button"]


def test_visitors_cannot_choose_the_models_and_the_page_names_them(app):
    """No text box for a path anywhere; the sidebar names the served files with their sha256 prefixes."""
    at = app.run()
    assert len(at.text_input) == 0 and len(at.sidebar.text_input) == 0
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert sha256_file(REPO / "models" / "generator.pt")[:12] in sidebar and "models/generator.pt" in sidebar
    assert sha256_file(REPO / "models" / "judge.pt")[:12] in sidebar and "models/judge.pt" in sidebar


def test_operator_serves_other_models_from_the_command_line(app, monkeypatch, tmp_path):
    other = tmp_path / "other-generator.pt"
    shutil.copy(REPO / "models" / "generator.pt", other)
    monkeypatch.setattr("sys.argv", [APP, "--generator", str(other), "--judge", "models/referee.pt"])
    at = app.run()
    assert not at.exception and not at.error
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert str(other) in sidebar and sha256_file(REPO / "models" / "referee.pt")[:12] in sidebar
    monkeypatch.setattr("sys.argv", [APP, "--checkpoint", "x.pt"])
    bad = AppTest.from_file(APP, default_timeout=120).run()
    assert not bad.exception and "No such option '--checkpoint'" in bad.error[0].value and len(bad.button) == 0


def test_widgets_generate_and_downloads(app, media, models):
    at = app.run()
    assert not at.exception and not at.error
    assert at.selectbox[0].label == "Digit" and at.selectbox[0].options[0] == "all ten"
    assert [w.label for w in at.number_input][:2] == ["How many images", "Seed"]
    assert at.number_input[2].label.startswith("Latent scale") and at.number_input[2].value == SCALE
    assert (at.number_input[0].min, at.number_input[0].max) == (1, 100)
    assert at.checkbox[0].label == "Random seed" and at.slider[0].max == 0.999
    assert len(at.html) == 0  # nothing generated yet

    at.selectbox[0].set_value(7)
    at.number_input[0].set_value(16)
    at.number_input[1].set_value(123)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "Seed used: 123" in _summary(at) and "16 images of digit 7" in _summary(at)
    shown = _shown_images(at)
    expected = generate_batch(*models, Request((7,), 16, 123, latent_scale=SCALE))
    assert np.array_equal(np.stack(shown), expected.images)
    assert [m.value for m in at.main.markdown] == [_summary(at)]  # the summary line and nothing else
    for caption in captions(expected):
        assert caption in at.html[0].value
    assert dict(at.query_params) == {"digit": "7", "count": "16", "seed": "123", "latent_scale": repr(SCALE)}

    payloads = {button.label: media[button.proto.url.rsplit("/", 1)[1].split(".")[0]] for button in at.download_button}
    assert payloads["Download PNGs (ZIP)"] == zip_of_pngs(expected)
    table = pq.read_table(io.BytesIO(payloads["Download Parquet"]))
    assert table.num_rows == 16 and table.column("label").to_pylist() == [7] * 16
    assert np.array_equal(np.stack([decode_png(r["bytes"]) for r in table.column("image").to_pylist()]), expected.images)

    at.button[0].click().run()  # same seed again: the same images
    assert np.array_equal(np.stack(_shown_images(at)), expected.images)

    at.number_input[2].set_value(0.5)  # a narrower latent: other images, named in the summary and the URL
    at.button[0].click().run()
    narrow = generate_batch(*models, Request((7,), 16, 123, latent_scale=0.5))
    assert np.array_equal(np.stack(_shown_images(at)), narrow.images)
    assert not np.array_equal(narrow.images, expected.images)
    assert "latent scale 0.5" in _summary(at) and at.query_params["latent_scale"] == "0.5"


def test_random_seed_is_shown_and_differs(app):
    at = app.run()
    at.checkbox[0].check().run()
    at.button[0].click().run()
    first = int(re.search(r"Seed used: (\d+)", _summary(at)).group(1))
    images = _shown_images(at)
    at.button[0].click().run()
    second = int(re.search(r"Seed used: (\d+)", _summary(at)).group(1))
    assert first != second  # two draws from 2^31 seeds
    assert any((a != b).any() for a, b in zip(images, _shown_images(at)))


def test_minimum_confidence_from_the_page(app):
    at = app.run()
    at.selectbox[0].set_value(2)
    at.slider[0].set_value(0.99)
    at.number_input[0].set_value(30)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "judge confidence ≥ 0.990" in _summary(at)
    assert len(_shown_images(at)) == 30 and at.html[0].value.count("judge 2 · ") == 30


def test_generator_is_loaded_once_per_server_process(app, monkeypatch, tmp_path):
    """Once per server process and per version of the file: a retrained generator (new mtime) loads anew."""
    import pipeline.training.checkpoints

    calls = []
    original = pipeline.training.checkpoints.load_generator
    monkeypatch.setattr(pipeline.training.checkpoints, "load_generator", lambda *a, **k: calls.append(a) or original(*a, **k))
    at = app.run()
    at.button[0].click().run()
    at.button[0].click().run()
    AppTest.from_file(APP, default_timeout=120).run().button[0].click().run()  # a second browser session
    assert len(calls) == 1
    retrained = tmp_path / "generator.pt"  # a new file, then the same file rewritten: each loads once
    shutil.copy(REPO / "models" / "generator.pt", retrained)
    monkeypatch.setenv(GENERATOR_ENV, str(retrained))  # the operator restarts the app on another file
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.button[0].click().run()
    assert len(calls) == 2
    os.utime(retrained, ns=(retrained.stat().st_atime_ns, retrained.stat().st_mtime_ns + 10**9))
    at.button[0].click().run()
    assert len(calls) == 3 and not at.exception


def test_missing_generator_and_bad_query_give_a_message_not_a_traceback(app, monkeypatch, tmp_path):
    monkeypatch.setenv(GENERATOR_ENV, str(tmp_path / "nope.pt"))
    at = app.run()
    assert not at.exception
    assert len(at.error) == 1 and "No trained generator found at" in at.error[0].value
    assert len(at.button) == 0  # nothing to press without a generator

    monkeypatch.setenv(GENERATOR_ENV, "models/judge.pt")
    wrong_kind = AppTest.from_file(APP, default_timeout=120).run()
    assert not wrong_kind.exception and "not a generator checkpoint" in wrong_kind.error[0].value

    monkeypatch.delenv(GENERATOR_ENV)
    bad = AppTest.from_file(APP, default_timeout=120)
    bad.query_params.update({"count": "500"})
    bad.run()
    assert not bad.exception
    assert "number of images must be in 1..100, got 500" in bad.error[0].value
    assert bad.number_input[0].value == 50  # started from the defaults


def test_invalid_params_file_gives_a_message_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.argv", [APP])
    monkeypatch.chdir(tmp_path)  # the app reads params.yaml (the export's latent scale) from where it runs
    (tmp_path / "params.yaml").write_text("generate: [unclosed")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert len(at.error) == 1 and "not valid YAML" in at.error[0].value
    assert len(at.button) == 0


def test_without_a_judge_the_page_says_so(app, monkeypatch, tmp_path):
    monkeypatch.setenv(JUDGE_ENV, str(tmp_path / "no-judge.pt"))
    at = app.run()
    assert "No judge found" in at.warning[0].value and at.slider[0].disabled
    at.number_input[0].set_value(10)
    at.button[0].click().run()
    assert not at.exception and at.html[0].value.count("asked ") == 10


# --- the real page in headless Chromium


def test_page_in_headless_chromium(tmp_path):
    """Serve the app on localhost, click Generate in headless Chromium, check that the images rendered."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium: .ci/run installs Debian's chromium and chromium-driver")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    pytest.importorskip("selenium")
    from pipeline.tools.browser import check_app

    result = check_app(REPO, tmp_path / "app.png", count=20, seed=4)
    assert result["images_rendered"] == 20 and result["seeds"] == [4]
    assert (tmp_path / "app.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
