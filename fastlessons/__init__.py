"""Course companion for fast.ai's Practical Deep Learning lessons 1-3: robust image search and download, offline datasets, CPU-fast training, safe cleaning, pickle-free export, gradient descent and bias.

Lessons in `nbs/lessons`; library modules: `core` (atomic writes, free names, JSON lines, hashes), `images` (search, download, verify, resize), `datasets` (datasets from searches, the embedded digits), `training` (DataBlock, CPU-fast training, interpretation), `cleaning` (the cleaner, applied safely, with undo), `inference` (export, what is inside, pickle-free loading, predict), `onnx` (the model as ONNX), `app` (the Gradio app and the Space, no torch), `gradient` (fitting a function), `bias` (sources of harm, feedback loops), `compare` (which image models are best), `doctor` (the preflight) and `cli` (console commands). `from fastlessons.all import *` brings them all in, with fastai's."""

__version__ = "0.0.1"
