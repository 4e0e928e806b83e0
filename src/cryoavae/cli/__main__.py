"""``python -m cryoavae.cli``: the ``cryoavae`` command without its installed entry point."""

from cryoavae.cli import main

raise SystemExit(main())
