"""The VQ hot paths (nearest_code, ema_update_, channel_stats; plus the quantiser's fused
straight-through/loss and codebook-health steps). Each op = Triton kernel (vqfast.kernels) + pure-PyTorch reference
(`vqfast.ops.reference`, same signature) behind one dispatch rule (`backend=` / $VQFAST_BACKEND)."""
from vqfast.ops import reference
from vqfast.ops._dispatch import BACKENDS, resolve_backend, triton_available
from vqfast.ops.channel_stats import channel_stats
from vqfast.ops.codebook_health import codebook_health_
from vqfast.ops.ema_update import ema_update_
from vqfast.ops.nearest_code import PRECISIONS, nearest_code, nearest_code_tolerance
from vqfast.ops.vq_straight_through import vq_straight_through

__all__ = ["nearest_code", "nearest_code_tolerance", "ema_update_", "channel_stats", "reference",
           "vq_straight_through", "codebook_health_",
           "resolve_backend", "triton_available", "BACKENDS", "PRECISIONS"]
