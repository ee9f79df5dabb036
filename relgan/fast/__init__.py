"""Fast backends: everything that exists only for speed, apart from the reference models.

The C++ CPU kernels and their build (``build.py``, ``csrc/``), oneDNN products with packed weights
(``onednn.py``), the one-backward replay of sampled steps (``replay.py``), the padded output layer and its
cross-entropy, the vocabulary projection table and bit dropout (``generator.py``, ``discriminator.py``),
and CUDA graphs (``cuda_graphs.py``). ``relgan/models`` never imports this package; :func:`apply` replaces
reference methods on module instances where a fast path is verified for the code and on the machine
(``backend.py``), and says which in one log line.
"""

from relgan.fast.backend import BACKENDS, BackendError, BackendReport, apply, fast_paths, remove

__all__ = ["BACKENDS", "BackendError", "BackendReport", "apply", "fast_paths", "remove"]
