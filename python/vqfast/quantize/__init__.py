"""Quantizers with taming-compatible state_dict names and return values, on the vqfast.ops fast paths."""
from vqfast.quantize._implicit import rotate_to
from vqfast.quantize.ema import EMAVectorQuantizer, EmbeddingEMA
from vqfast.quantize.fsq import FSQ, ResidualFSQ
from vqfast.quantize.ibq import IBQ
from vqfast.quantize.kmeans import kmeans
from vqfast.quantize.lfq import BSQ, LFQ
from vqfast.quantize.rvq import ResidualVQ
from vqfast.quantize.simvq import SimVQ
from vqfast.quantize.vq import VectorQuantizer

__all__ = ["VectorQuantizer", "EMAVectorQuantizer", "EmbeddingEMA", "FSQ", "ResidualFSQ", "LFQ", "BSQ",
           "ResidualVQ", "SimVQ", "IBQ", "rotate_to", "kmeans"]
