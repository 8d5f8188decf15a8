"""Using a trained model: the Python API (api: `Mimir`), generation over prompt files
(prompts, jobs.generate), exported folders (export, jobs.export), and what a checkpoint needs
beside its weights (sources). No Ray, no DeepSpeed: serving/ puts this behind Ray Serve."""

from generation.api import Generation, GenerationConfig, Mimir, open_model

__all__ = ["Generation", "GenerationConfig", "Mimir", "open_model"]
