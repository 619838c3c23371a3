"""``python -m ganforge.cli``: the same as ``ganforge``."""

from ganforge.cli import main

raise SystemExit(main())
