"""The QuantArt family: stage 1 (BaseVQGAN per domain) and stage 2 (style transfer with SGA blocks), and
QuantArt's own YAML configs."""
from vqfast.train.families.base import Family
from vqfast.train.families.quantart.config import Stage1Config, Stage2Config
from vqfast.train.families.quantart.quantart_yaml import translate_if_quantart_yaml
from vqfast.train.families.quantart.task import QuantArtStage1Task, QuantArtStage2Task

# QuantArt's own YAML (stage 1 or 2) is translated once, here; the dict names its model.type
STAGE1 = Family("quantart_stage1", Stage1Config, QuantArtStage1Task, {"quantartstage1": "quantart_stage1"},
                translate=translate_if_quantart_yaml)
STAGE2 = Family("quantart_stage2", Stage2Config, QuantArtStage2Task, {"quantartstage2": "quantart_stage2"})

__all__ = ["STAGE1", "STAGE2"]
