"""``python -m gmmlib.collapse``: the same as the ``gmm-collapse`` command."""

from gmmlib.collapse.cli import main

raise SystemExit(main())
