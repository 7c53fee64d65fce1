"""Route what native libraries (the TFLite runtime, FFmpeg inside OpenCV) write straight to file descriptor 2
through `logging`, so that nothing appears outside the log format."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def stderr_to_log(logger: logging.Logger, prefix: str, level: int = logging.WARNING) -> Iterator[None]:
    """Capture fd 2 while the block runs, then log each captured line as `<prefix>: <line>`: lines that
    start with `INFO:` at DEBUG, any other line at `level`. Not for long blocks: other threads' stderr
    output is captured (and logged) too meanwhile."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a detached process): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip():
                    logger.log(logging.DEBUG if line.startswith("INFO:") else level, "%s: %s", prefix, line)
