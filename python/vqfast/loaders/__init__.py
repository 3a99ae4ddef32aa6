"""Pure-Python reference implementations of the Rust loaders in ``vqfast.io`` (the project's op rule applied to
loaders): the same epoch plans, samples, frames, state and skip rule, with no dependency on the extension.
``vqfast.io`` builds on them (argument checks, plans); the parity tests in tests/io hold them equal."""
from vqfast.loaders.clips import PyVideoClipLoader, frames_to_model_input
from vqfast.loaders.latents import TorchLatentShardLoader

__all__ = ["PyVideoClipLoader", "TorchLatentShardLoader", "frames_to_model_input"]
