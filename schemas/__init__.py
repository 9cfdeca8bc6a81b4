"""Avro schemas (``avsc/``), the framed Avro codec, the schema-registry client and the
compatibility rules. See ``schemas/README.md`` for the records and the codec API."""
