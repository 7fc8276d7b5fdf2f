"""`python -m tfqa …` runs the command-line interface."""

from tfqa.cli import main

raise SystemExit(main())
