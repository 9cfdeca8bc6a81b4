"""``python -m inter1_pipeline`` runs the CLI (exiting with its code, like the script)."""

import sys

from inter1_pipeline.cli import main

sys.exit(main())
