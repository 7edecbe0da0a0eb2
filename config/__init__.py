"""Stage configuration and dataset files. ``app.py`` is the only reader of the stage choice."""

from config.stages import STAGES, Features, StageConfig, features_from_context, get_stage

__all__ = ["STAGES", "Features", "StageConfig", "features_from_context", "get_stage"]
