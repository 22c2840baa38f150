"""``python -m smoothstab``: the ``smoothstab`` command.

``python -m`` puts the working directory first on ``sys.path``; the ``smoothstab`` console script
does not. It is taken off here (the package is imported by then), so that both look up the
modules of a config's ``python:`` model names by one rule
(:mod:`~smoothstab.experiments.models.external`): a module in the working directory is imported
only after the config's folder, and said in one line, never silently first.
"""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from smoothstab.experiments.cli import main  # noqa: E402

raise SystemExit(main())
