"""ClickHouse side of the pipeline: the client factory, DDL migrations and queries."""
