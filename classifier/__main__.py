"""``python -m classifier COMMAND``: see ``--help``."""

from classifier.cli import main

raise SystemExit(main())
