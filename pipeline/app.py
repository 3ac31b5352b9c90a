"""Interactive generator: ``streamlit run pipeline/app.py [-- --generator PATH --judge PATH]`` (from the project
root; ``pip install -e ".[app]"``).

The operator chooses the served models: on the command line after ``--``, or with the environment variables
``SYNTHETIC_DIGITS_GENERATOR`` / ``SYNTHETIC_DIGITS_JUDGE``; by default the committed ``models/generator.pt`` and
``models/judge.pt``. A visitor cannot change them; the sidebar names them with their sha256 prefix.

Pick a digit (or all ten), how many images (1-100), a seed (or a random one), the latent scale
(default: ``generate.latent_scale`` in params.yaml, as the export) and optionally a minimum judge
confidence, press Generate: the page shows the digits with the judge's label and confidence, the
seed used, and offers them as a ZIP of PNGs and as a Parquet file in the export format. The generator
and the judge are loaded once per server process (``st.cache_resource``) and reloaded when their files
change. The work itself is :mod:`pipeline.generation.interactive`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import streamlit as st

from pipeline.core.params import load_params
from pipeline.core.utils import PipelineError, sha256_file
from pipeline.generation.inference import InferenceGenerator
from pipeline.generation.interactive import (
    DEFAULT_COUNT,
    MAX_IMAGES,
    MAX_LATENT_SCALE,
    MAX_MIN_CONFIDENCE,
    MAX_SEED,
    Request,
    generate_batch,
    grid_html,
    parquet_bytes,
    query_of,
    random_seed,
    request_from_query,
    served_models,
    zip_of_pngs,
)
from pipeline.training.checkpoints import load_classifier, load_generator

ALL_DIGITS = "all ten"


@st.cache_resource(show_spinner="Loading the generator ...")
def load_models(checkpoint: str, judge: str, stamp: tuple):
    """``(generator, its checkpoint dict, judge or None, {"generator": sha256, "judge": sha256 or None})``,
    cached per server process; ``stamp`` (the files' mtimes, part of the cache key) makes a retrained model
    load anew."""
    trained, ckpt = load_generator(checkpoint)
    generator = InferenceGenerator(trained, "auto")  # as pipeline.generate's default: the same rows
    classifier = load_classifier(judge) if Path(judge).is_file() else None
    digests = {"generator": sha256_file(checkpoint), "judge": sha256_file(judge) if classifier else None}
    # One full-size request at load time, so the first press pays no first-call costs (allocator, kernels,
    # the Parquet writer): measured 1.07 s for the first 100 images without it, ~0.5 s for later ones.
    warm_up = generate_batch(generator, classifier, Request(tuple(range(10)), MAX_IMAGES, 0))
    # Assigned, not a bare expression: Streamlit's "magic" would write a bare tuple onto the page.
    _ = (zip_of_pngs(warm_up), parquet_bytes(warm_up), grid_html(warm_up))
    return generator, ckpt, classifier, digests


@st.cache_data(show_spinner=False)
def export_latent_scale(params_path: str, stamp: tuple) -> float:
    """``generate.latent_scale`` of ``params_path`` (1.0 without the file), read once per version of the file
    (``stamp``), not on every rerun of the script. Raises PipelineError for an invalid params file."""
    return load_params(params_path).generate.latent_scale if Path(params_path).is_file() else 1.0


def _stamp(*paths: str) -> tuple:
    return tuple(Path(p).stat().st_mtime_ns if Path(p).is_file() else None for p in paths)


st.set_page_config(page_title="Synthetic digits (cGAN)", layout="wide")
st.title("Synthetic digits from the trained cGAN")

try:  # the served models (the operator's choice) and the export's latent scale, so the app's images of seed s
    served = served_models(sys.argv[1:])  # are the export's first rows
    checkpoint, judge_path = served.generator, served.judge
    default_scale = export_latent_scale("params.yaml", _stamp("params.yaml"))
except PipelineError as error:
    st.error(str(error))
    st.stop()

if not Path(checkpoint).is_file():
    st.error(f"No trained generator found at `{checkpoint}`. Train one with `dvc repro` (or "
             "`python -m pipeline.train_cgan`) from the project root, or start the app with "
             "`streamlit run pipeline/app.py -- --generator PATH`.")
    st.stop()
try:
    generator, ckpt, judge, digests = load_models(checkpoint, judge_path, _stamp(checkpoint, judge_path))
except PipelineError as error:
    st.error(str(error))
    st.stop()
with st.sidebar:
    st.header("Served models")
    st.markdown(f"Generator `{checkpoint}` · sha256 `{digests['generator'][:12]}`, epoch {ckpt['epoch']}")
    st.markdown(f"Judge `{judge_path}` · sha256 `{digests['judge'][:12]}`" if judge is not None
                else f"Judge: none (`{judge_path}` not found)")
if judge is None:
    st.warning(f"No judge found at `{judge_path}`: images are shown without the judge's label, and the "
               "minimum confidence is off.")

# The widgets start from the URL's query parameters (a shared link reproduces a grid), read once a session.
if "initial" not in st.session_state:
    try:
        st.session_state["initial"] = request_from_query(st.query_params.to_dict(), default_scale)
    except PipelineError as error:
        st.error(f"{error}; the page starts from the defaults instead.")
        st.session_state["initial"] = Request(tuple(range(10)), DEFAULT_COUNT, 0, latent_scale=default_scale)
initial = st.session_state["initial"]

left, middle, right = st.columns(3)
options = [ALL_DIGITS, *range(10)]
digit = left.selectbox("Digit", options, index=0 if len(initial.digits) > 1 else 1 + initial.digits[0])
count = left.number_input("How many images", min_value=1, max_value=MAX_IMAGES, value=initial.count, step=1)
use_random = middle.checkbox("Random seed", value=False)
seed = middle.number_input("Seed", min_value=0, max_value=MAX_SEED, value=initial.seed, step=1, disabled=use_random)
min_confidence = right.slider("Minimum judge confidence (0 = keep every image)", 0.0, MAX_MIN_CONFIDENCE,
                              initial.min_confidence if judge is not None else 0.0, 0.001, format="%.3f",
                              disabled=judge is None)
latent_scale = right.number_input("Latent scale s, z ~ N(0, s² I) (< 1: less varied, cleaner digits)",
                                  min_value=0.05, max_value=MAX_LATENT_SCALE, value=initial.latent_scale, step=0.05)

if st.button("Generate", type="primary"):
    try:
        request = Request(digits=tuple(range(10)) if digit == ALL_DIGITS else (int(digit),), count=int(count),
                          seed=random_seed() if use_random else int(seed), min_confidence=float(min_confidence),
                          latent_scale=float(latent_scale))
        start = time.perf_counter()
        batch = generate_batch(generator, judge, request)
        st.session_state["seconds"] = time.perf_counter() - start
        st.session_state["batch"], st.session_state["epoch"] = batch, ckpt["epoch"]
        st.query_params.from_dict(query_of(request))
    except PipelineError as error:
        st.error(str(error))
        st.session_state.pop("batch", None)

batch = st.session_state.get("batch")
if batch is not None:
    request = batch.request
    what = "all ten digits" if len(request.digits) == 10 else f"digit {request.digits[0]}"
    curated = f", judge confidence ≥ {request.min_confidence:.3f}" if request.min_confidence > 0 else ""
    st.markdown(f"**Seed used: {request.seed}** · {len(batch.images)} images of {what}{curated} · "
                f"latent scale {request.latent_scale:g} · "
                f"generated and judged in {1000 * st.session_state['seconds']:.0f} ms · generator epoch "
                f"{st.session_state['epoch']}")
    name = f"synthetic-digits-seed{request.seed}"
    save_zip, save_parquet, _ = st.columns([1, 1, 4])
    save_zip.download_button("Download PNGs (ZIP)", zip_of_pngs(batch), f"{name}.zip", "application/zip",
                             on_click="ignore")
    save_parquet.download_button("Download Parquet", parquet_bytes(batch), f"{name}.parquet",
                                 "application/vnd.apache.parquet", on_click="ignore")
    st.html(grid_html(batch))
