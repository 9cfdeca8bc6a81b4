-- Landing table: every Avro record read from a pipeline topic, decoded, once per Kafka
-- coordinate. Retried inserts are dropped by the dedup window plus a stable
-- insert_deduplication_token (topic:partition:first-last offset); a re-read after a crash
-- with other batch boundaries collapses on the ReplacingMergeTree key.
CREATE TABLE IF NOT EXISTS record_log
(
    topic LowCardinality(String) COMMENT 'Kafka topic the record was read from',
    partition UInt32 COMMENT 'Kafka partition',
    offset UInt64 COMMENT 'Kafka offset',
    record_key String COMMENT 'Kafka record key (session id for chunk, event and usage topics)',
    record_name LowCardinality(String) COMMENT 'Avro record name, e.g. VideoChunk',
    writer_version UInt16 COMMENT 'schema version the producer wrote with',
    datum_json String COMMENT 'the decoded record as JSON in the current schema shape (bytes fields as base64 length only)',
    produced_at DateTime64(3, 'UTC') COMMENT 'Kafka record timestamp',
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the sink inserted the row'
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(produced_at)
ORDER BY (topic, partition, offset)
SETTINGS non_replicated_deduplication_window = 1000;
