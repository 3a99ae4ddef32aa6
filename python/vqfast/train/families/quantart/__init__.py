"""The QuantArt family: stage 1 (BaseVQGAN per domain) and stage 2 (style transfer with SGA blocks)."""
from vqfast.train.families.base import Family
from vqfast.train.families.quantart.config import Stage1Config, Stage2Config
from vqfast.train.families.quantart.task import QuantArtStage1Task, QuantArtStage2Task

STAGE1 = Family("quantart_stage1", Stage1Config, QuantArtStage1Task, {"quantartstage1": "quantart_stage1"})
STAGE2 = Family("quantart_stage2", Stage2Config, QuantArtStage2Task, {"quantartstage2": "quantart_stage2"})

__all__ = ["STAGE1", "STAGE2"]
