"""A Ray worker setup hook that imports nothing but ``logging``: it runs at the start of every
worker process of the local Ray that :func:`raydistill.pipeline.cluster.init_ray` starts."""

import logging

STATE_API_POLLERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)
"""Loggers of Ray components that poll the state API, which a local Ray started without its
dashboard does not serve: Ray Train's placement-group cleaner then warns about it about once a
second (hundreds of lines in a quickstart). The cleaner exists to remove a placement group whose
Ray Train controller died; in a local Ray that ends with its driver, Ray removes them anyway."""


def quiet_without_dashboard() -> None:
    """Make the :data:`STATE_API_POLLERS` log errors only."""
    for name in STATE_API_POLLERS:
        logging.getLogger(name).setLevel(logging.ERROR)
