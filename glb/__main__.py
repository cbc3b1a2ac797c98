"""`python -m glb` runs the command line."""

from glb.cli import main

raise SystemExit(main())
