"""Family-agnostic configuration: sources (files, ``cpu_overrides``, ``--set``) → raw dict → typed dataclass."""
from vqfast.train.config.schema import bounded, build, problems
from vqfast.train.config.sections import (
                                          EvalSection,
                                          ImageDataSection,
                                          OptimSection,
                                          PerceptualSection,
                                          RunConfig,
                                          ScaledLRSection,
                                          TamingPerceptualSection,
                                          TrainSection,
)
from vqfast.train.config.sources import shipped_configs, to_yaml

__all__ = ["bounded", "build", "problems", "EvalSection", "ImageDataSection", "OptimSection", "PerceptualSection",
           "RunConfig", "ScaledLRSection", "TamingPerceptualSection", "TrainSection", "shipped_configs", "to_yaml"]
