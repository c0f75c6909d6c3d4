"""Stop the worker, loudly, when a Faust table cannot be restored from its changelog.

Why: Faust's changelog recovery catches every error per record and logs "Error in recovery" as a
warning, leaving a table partly restored (a worker then counts from wrong totals). There is no hook
for it, only that log record of the `faust.tables.recovery` logger, so a log filter turns it into an
immediate, non-zero exit: a supervisor sees it and nothing is computed from a half-restored table.
The logger name and message prefix are declared in `private.PRIVATE_NAMES` and checked by a test.
"""
from __future__ import annotations

import logging
import os
import sys

RECOVERY_ERROR_EXIT = 70
RECOVERY_LOGGER = "faust.tables.recovery"
RECOVERY_ERROR_PREFIX = "Error in recovery"


class _StopOnRecoveryError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(RECOVERY_ERROR_PREFIX):
            print(f"milestones: table recovery failed, stopping the worker: {record.getMessage()}",
                  file=sys.stderr, flush=True)
            logging.shutdown()
            os._exit(RECOVERY_ERROR_EXIT)
        return True


def install() -> None:
    """Stop the process at Faust's first "Error in recovery" (before the worker starts)."""
    logging.getLogger(RECOVERY_LOGGER).addFilter(_StopOnRecoveryError())
