"""The Ray shell: one module per stage, and :mod:`run` that chains them. Only this package and
``jobs/`` import ray."""
