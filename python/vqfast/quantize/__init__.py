"""Quantizers with taming-compatible state_dict names and return values, on the vqfast.ops fast paths."""
from vqfast.quantize.ema import EMAVectorQuantizer, EmbeddingEMA
from vqfast.quantize.vq import VectorQuantizer

__all__ = ["VectorQuantizer", "EMAVectorQuantizer", "EmbeddingEMA"]
