"""raydistill: video dataset distillation with diffusion models, as a Ray pipeline."""

__version__ = "0.1.0"
