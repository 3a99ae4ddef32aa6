"""vqfast: fast, complete training of vector-quantized models.

Triton kernels own the VQ hot paths (``vqfast.ops``), a Rust extension owns data loading
(``vqfast.io``), and every fast path has a pure-PyTorch reference with the same signature.
"""
import logging as _logging

__version__ = "0.1.0"

_logging.getLogger("vqfast").addHandler(_logging.NullHandler())
