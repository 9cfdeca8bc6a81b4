"""The ``inter1-pipeline`` command line: one entry point, one module per subcommand."""
