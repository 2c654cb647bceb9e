"""``python -m greybox`` runs the command-line interface."""

from greybox.cli import main

raise SystemExit(main())
