"""Process runtime shared by every component: settings, structured logs, errors, Kafka clients.

Nothing here knows about video, Inter-1 or ClickHouse; those live with their concepts.
"""
