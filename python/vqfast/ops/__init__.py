"""The three VQ hot paths. Each op = Triton kernel (vqfast.kernels) + pure-PyTorch reference
(`vqfast.ops.reference`, same signature) behind one dispatch rule (`backend=` / $VQFAST_BACKEND)."""
from vqfast.ops import reference
from vqfast.ops._dispatch import BACKENDS, resolve_backend, triton_available
from vqfast.ops.channel_stats import channel_stats
from vqfast.ops.ema_update import ema_update_
from vqfast.ops.nearest_code import PRECISIONS, nearest_code, nearest_code_tolerance

__all__ = ["nearest_code", "nearest_code_tolerance", "ema_update_", "channel_stats", "reference",
           "resolve_backend", "triton_available", "BACKENDS", "PRECISIONS"]
