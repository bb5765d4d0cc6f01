"""Logging set-up shared by the stage scripts: to stderr and, when given, to the rule's log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(log_file: Path | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    if log_file is not None:
        # An error that ends the script belongs in the rule's log too, not only on stderr.
        def log_uncaught(kind, value, traceback) -> None:
            if not issubclass(kind, KeyboardInterrupt):
                logging.getLogger("sslgrid").critical(
                    "stopped by an error", exc_info=(kind, value, traceback)
                )
            else:
                sys.__excepthook__(kind, value, traceback)

        sys.excepthook = log_uncaught
