"""``python -m inter1_pipeline`` runs the CLI."""

from inter1_pipeline.cli import main

main()
