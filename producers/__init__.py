"""Video ingest: sources read with PyAV, keyframe-aligned fMP4 chunks, published to Kafka.

See ``producers/README.md``; the command is ``inter1-pipeline produce``.
"""
