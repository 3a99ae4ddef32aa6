"""What the residual quantizers (``ResidualFSQ``, ``ResidualVQ``) share: the stage-indexed return value and
per-stage codebook health. A mixin placed before ``QuantizerBase`` in their bases."""
from __future__ import annotations

import torch


class ResidualOutputs:
    """Needs ``num_quantizers``, ``layers``, ``sane_index_shape``, ``layout``, ``_last_metrics`` (stage 0's health)
    and ``QuantizerBase._unflatten``."""

    def _residual_return(self, out: torch.Tensor, z: torch.Tensor, loss: torch.Tensor, idx: torch.Tensor):
        """taming's ``(z_q, loss, (perplexity, None, indices))``; idx (N, Q) → (B, *S, Q) with sane_index_shape."""
        if self.sane_index_shape:
            lead = (z.shape[0], *z.shape[2:]) if self.layout == "channels_first" else z.shape[:-1]
            idx = idx.view(*lead, self.num_quantizers)
        return self._unflatten(out, z), loss, (self._last_metrics["perplexity"], None, idx)

    def codebook_metrics(self) -> dict[str, torch.Tensor]:
        """Stage-0 health under the plain names; every stage under ``stage<i>/<name>``."""
        out = dict(self._last_metrics)
        for i, layer in enumerate(self.layers):
            out.update({f"stage{i}/{k}": v for k, v in layer.codebook_metrics().items()})
        return out
