"""``python -m smoothstab``: the ``smoothstab`` command."""

from smoothstab.cli import main

raise SystemExit(main())
