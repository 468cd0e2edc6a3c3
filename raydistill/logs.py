"""The project's logging: every module logs to ``logging.getLogger(__name__)``, under the
``raydistill`` logger, which the commands and jobs (:func:`setup_console`, called by
``run_command``, ``dry_run`` and ``run_stages``) send to the console and to the run's log file.
Imported as a library, the package configures nothing: its warnings reach stderr through
Python's last-resort handler until the host application configures logging.

On the console a record is its message alone (INFO on stdout, WARNING and above on stderr), so a
command prints what it always printed. The run's log file, ``RUN/logs/{UTC start}-{pid}.log``,
holds the same records with their time, level and module; a run on object storage keeps it on
local disk and uploads it as each stage finishes and at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from raydistill.runs import RunDir

ROOT = "raydistill"
LOGS_FOLDER = "logs"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConsoleHandler(logging.Handler):
    """Messages only: INFO and below to ``sys.stdout``, WARNING and above to ``sys.stderr``,
    each looked up as the record is written (a redirected stream gets it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging must never take a run down
            self.handleError(record)


def setup_console(level: int = logging.INFO) -> logging.Logger:
    """Send the ``raydistill`` logger's records of ``level`` and above to the console, once per
    process (drivers and Ray workers alike); returns that logger."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(handler, ConsoleHandler) for handler in logger.handlers):
        console = ConsoleHandler()
        console.setLevel(level)
        logger.addHandler(console)
        logger.setLevel(logging.DEBUG)  # the run's log file also keeps DEBUG records
        logger.propagate = False  # a host application's root handlers would print it twice
    return logger


class RunLogFile:
    """The ``raydistill`` records of one command, copied into ``RUN/logs/`` while it runs
    (:meth:`open` … :meth:`close`); :meth:`sync` uploads the file of a run on object storage."""

    def __init__(self, run: RunDir):
        self.run = run
        started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.relpath = f"{LOGS_FOLDER}/{started}-{os.getpid()}.log"
        if run.on_local_disk:
            self.local_path = run.path(self.relpath)
            os.makedirs(os.path.dirname(self.local_path), exist_ok=True)
        else:
            handle, self.local_path = tempfile.mkstemp(prefix="raydistill-", suffix=".log")
            os.close(handle)
        self.handler = logging.FileHandler(self.local_path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter(FILE_FORMAT))

    def open(self) -> None:
        """Start copying records into the file."""
        logging.getLogger(ROOT).addHandler(self.handler)

    def sync(self) -> bool:
        """Upload the file so far (a run on object storage; nothing to do on local disk).
        Returns whether it is where it belongs: a failed upload only warns, it never fails
        the stage that has just finished."""
        self.handler.flush()
        if self.run.on_local_disk:
            return True
        try:
            with open(self.local_path, "rb") as handle:
                self.run.write_bytes(self.relpath, handle.read())
        except Exception as error:  # storage trouble: the next sync tries again
            logging.getLogger(__name__).warning(
                f"logs: could not upload {self.run.uri(self.relpath)} ({type(error).__name__}: "
                f"{error}); it is kept at {self.local_path}")
            return False
        return True

    def close(self) -> None:
        """Stop copying, upload the file (object storage) and close it; a local copy that
        could not be uploaded is kept (its path was logged)."""
        logging.getLogger(ROOT).removeHandler(self.handler)
        uploaded = self.sync()
        self.handler.close()
        if uploaded and not self.run.on_local_disk:
            os.remove(self.local_path)


@contextlib.contextmanager
def run_log_file(run: RunDir) -> Iterator[RunLogFile]:
    """``with run_log_file(run) as log_file:`` copies the block's records into the run's log
    file (:class:`RunLogFile`)."""
    log_file = RunLogFile(run)
    log_file.open()
    try:
        yield log_file
    finally:
        log_file.close()


def error_line(prog: str, error: BaseException) -> str:
    """``{prog}: error: {message}`` on one line, whatever newlines the message holds."""
    return f"{prog}: error: {' '.join(str(error).split())}"


def time_left(done: int, total: int, started: float) -> str:
    """``, about 1 min 05 s left``: the rest of ``total`` items at the pace the first ``done``
    took since ``started`` (``time.time()``); empty before the first item and after the last."""
    if done <= 0 or done >= total:
        return ""
    minutes, seconds = divmod(round((time.time() - started) / done * (total - done)), 60)
    return f", about {minutes} min {seconds:02d} s left" if minutes else \
        f", about {seconds} s left"
