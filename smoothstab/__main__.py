"""``python -m smoothstab``: the ``smoothstab`` command."""

from smoothstab.experiments.cli import main

raise SystemExit(main())
