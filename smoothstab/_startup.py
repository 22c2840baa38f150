"""Ctrl-C while the ``smoothstab`` command starts.

Importing the package imports torch, which takes a second or more; a Ctrl-C then would end in a
traceback. When the process is the command (``smoothstab ...``, or ``python -m smoothstab``,
whose ``sys.argv[0]`` is ``"-m"`` while the package is located), the package's first import is
this module, which answers Ctrl-C with the command's one line and exit 130 until
:func:`~smoothstab.experiments.cli.main` puts Python's own handler back. A library import
changes no handler.
"""

from __future__ import annotations

import os
import signal
import sys

MESSAGE = "interrupted; rerun the same command to resume"  # the CLI's Ctrl-C line


def interrupted_while_starting(signum: int, frame: object) -> None:
    words = sys.argv[1:2]
    command = f"smoothstab {words[0]}" if words and words[0].isalpha() else "smoothstab"
    os.write(2, f"{command}: error: {MESSAGE}\n".encode())
    os._exit(130)


if sys.argv[:1] and os.path.basename(sys.argv[0]) in ("smoothstab", "-m"):
    signal.signal(signal.SIGINT, interrupted_while_starting)
