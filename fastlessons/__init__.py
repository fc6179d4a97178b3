"""Course companion for fast.ai's Practical Deep Learning lessons 1-3: robust image search and download, offline datasets, CPU-fast training, safe cleaning, pickle-free export, gradient descent and bias.

Lessons as modules: `images` (search, download, verify, resize), `datasets` (datasets from searches, the embedded digits), `training` (DataBlock, CPU-fast training, interpretation), `cleaning` (the cleaner, applied safely with undo), `inference` (export, pickle-free loading, predict), `gradient` (fitting a quadratic), `bias` (sources of harm, feedback loops) and `cli` (console commands). `from fastlessons.all import *` brings them all in.

Modules:

- `fastlessons.all`: The course companion for fast.ai's *Practical Deep Learning* lessons 1–3: the lessons' code, made robust, fast on a CPU and runnable offline."""

__version__ = "0.0.1"
