"""``python -m kinestream`` runs the CLI."""

from kinestream.cli import main

raise SystemExit(main())
