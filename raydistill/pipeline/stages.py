"""The stages of a run, in order, and what follows from their records: which stages a stage
needs, and whether one has anything left to do.

To add a stage: write ``pipeline/<stage>.py`` ending in a :class:`~raydistill.pipeline.stage.Stage`
record, put it in :data:`STAGES` and its name in ``config.STAGE_NAMES`` (with its config
section).
"""

from __future__ import annotations

from raydistill.config import ADDITIVE_STAGES, STAGE_NAMES, ConfigError, RunConfig, to_dict
from raydistill.pipeline import (decode, embed, evaluate, finetune, generate, ingest, latents,
                                 report, select)
from raydistill.pipeline.stage import Stage
from raydistill.runs import RunDir

STAGES: tuple[Stage, ...] = (ingest.STAGE, decode.STAGE, latents.STAGE, finetune.STAGE,
                             generate.STAGE, embed.STAGE, select.STAGE, evaluate.STAGE,
                             report.STAGE)
assert tuple(stage.name for stage in STAGES) == STAGE_NAMES


def named(names: list[str] | tuple[str, ...]) -> list[Stage]:
    """The stages called ``names``, in the order given; ConfigError naming ``stages`` for an
    unknown one."""
    by_name = {stage.name: stage for stage in STAGES}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConfigError(f"stages: unknown stage {unknown[0]!r}; known: "
                          f"{', '.join(STAGE_NAMES)}")
    return [by_name[name] for name in names]


def requirements(name: str, config: RunConfig) -> list[str]:
    """The stages that must have finished before stage ``name`` can run, in stage order: what
    its record says it needs (by default the stage before it), and what those need in turn."""
    (stage,) = named([name])
    position = STAGE_NAMES.index(name)
    if stage.needs is not None:
        direct = tuple(stage.needs(config))
    else:
        direct = STAGE_NAMES[position - 1:position]
    needed = set(direct).union(*(requirements(need, config) for need in direct))
    return sorted(needed, key=STAGE_NAMES.index)


def completion_settings(stage: Stage, config: RunConfig) -> dict:
    """The settings ``stage``'s completion marker records: its record's ``settings``, else its
    config section."""
    if stage.settings is not None:
        return stage.settings(config)
    return to_dict(getattr(config, stage.name))


def is_finished(run: RunDir, config: RunConfig, stage: Stage) -> bool:
    """Whether ``stage`` has nothing left to do: finished, and, for an additive stage
    (``config.ADDITIVE_STAGES``: it adds outputs for new settings), finished with the settings
    asked for now. A redrawn stage (the report) is never finished."""
    if stage.redrawn:
        return False
    if stage.name in ADDITIVE_STAGES:
        return run.is_done_with(stage.name, completion_settings(stage, config))
    return run.is_done(stage.name)
