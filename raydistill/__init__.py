"""raydistill: video dataset distillation with diffusion models, as a Ray pipeline."""

from raydistill.logs import setup_console

__version__ = "0.1.0"

# The pipeline's messages (stage headers, summaries, progress, warnings) reach the console of
# any process that imports the package, Ray workers included (raydistill/logs.py).
setup_console()
