"""`python -m tfqa …` runs the command-line interface."""

from tfqa.apps.cli import main

raise SystemExit(main())
