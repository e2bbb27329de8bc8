"""`python -m soda_plugin.cli ...` is `soda ...`."""

from soda_plugin.cli.main import main

raise SystemExit(main())
