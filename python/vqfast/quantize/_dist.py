"""The one DDP predicate the quantizers share (no imports from the rest of vqfast.quantize)."""
import torch.distributed as dist


def ddp_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
