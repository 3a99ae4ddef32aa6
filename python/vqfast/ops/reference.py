"""Pure-PyTorch references of every op, with the same signatures as `vqfast.ops`.

They are the spec (each docstring names the original it reproduces), the CPU path, and the
baseline the benchmarks compare against.
"""
from vqfast.ops.channel_stats import channel_stats_reference as channel_stats
from vqfast.ops.codebook_health import codebook_health_reference_ as codebook_health_
from vqfast.ops.ema_update import ema_update_reference_ as ema_update_
from vqfast.ops.nearest_code import nearest_code_reference as nearest_code
from vqfast.ops.vq_straight_through import vq_straight_through_reference as vq_straight_through

__all__ = ["nearest_code", "ema_update_", "channel_stats", "vq_straight_through", "codebook_health_"]
