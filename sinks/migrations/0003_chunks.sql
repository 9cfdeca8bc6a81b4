-- One row per chunk record on the chunk topic (metadata only, not the media bytes), and the
-- end-to-end latency of each chunk. Written by `inter1-pipeline sink` from VideoChunk
-- records; a split chunk has one row per part.
CREATE TABLE IF NOT EXISTS chunks
(
    session_id String,
    seq Int64 COMMENT 'chunk sequence number within the session',
    part_index UInt32 COMMENT 'part of a chunk split over several records (0 when whole)',
    part_count UInt32,
    media_start_s Float64 COMMENT 'session media time of the chunk start',
    media_duration_s Float64,
    byte_size UInt64 COMMENT 'bytes of this record''s payload',
    keyframe_start Bool,
    produced_at DateTime64(6, 'UTC') COMMENT 'when the producer published the record (its clock)',
    source_partition UInt32 COMMENT 'Kafka partition of the chunk topic',
    source_offset UInt64 COMMENT 'Kafka offset',
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the sink inserted the row'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(produced_at)
ORDER BY (session_id, seq, part_index)
SETTINGS non_replicated_deduplication_window = 1000;

-- End-to-end latency of each chunk: from its publication (produced_at of its last part) to
-- the moment the first analysis event the session worker received after sending it became
-- queryable (events.ingested_at of the earliest inserted row with chunk_seq >= seq; session
-- lifecycle envelopes excluded). NULL while no such event is loaded.
CREATE VIEW IF NOT EXISTS chunk_latency AS
SELECT
    c.session_id AS session_id,
    c.seq AS seq,
    c.chunk_start_s AS media_start_s,
    c.chunk_end_s AS media_end_s,
    c.published_at AS produced_at,
    if(e.session_id != '', toNullable(e.first_queryable_at), NULL) AS first_event_queryable_at,
    if(e.session_id != '', toNullable(e.chunk_seq), NULL) AS first_event_chunk_seq,
    if(
        e.session_id != '',
        toNullable(dateDiff('microsecond', c.published_at, e.first_queryable_at) / 1e6),
        NULL
    ) AS latency_s
FROM
(
    SELECT
        session_id,
        seq,
        any(media_start_s) AS chunk_start_s,
        any(media_start_s + media_duration_s) AS chunk_end_s,
        max(produced_at) AS published_at
    FROM chunks FINAL
    GROUP BY session_id, seq
) AS c
ASOF LEFT JOIN
(
    SELECT session_id, assumeNotNull(chunk_seq) AS chunk_seq, min(ingested_at) AS first_queryable_at
    FROM events
    WHERE chunk_seq IS NOT NULL AND NOT startsWith(event_type, 'session.')
    GROUP BY session_id, chunk_seq
) AS e ON c.session_id = e.session_id AND e.chunk_seq >= c.seq;

-- Fix of 0002's session_summary_live: a session whose engagement timeline was never
-- "engaged" had engaged_share NULL (sumIf over no rows of a Nullable column), which the
-- sink could not insert into session_summaries.engaged_share (Float64): it stopped.
CREATE OR REPLACE VIEW session_summary_live AS
SELECT
    ids.session_id AS session_id,
    if(st.session_id != '', st.tenant, ev.tenant) AS tenant,
    if(st.session_id != '', st.app, ev.app) AS app,
    st.labels AS labels,
    if(st.session_id != '', toNullable(st.started_at), NULL) AS started_at,
    if(en.session_id != '', toNullable(en.ended_at), NULL) AS ended_at,
    en.reason AS end_reason,
    en.media_seconds AS media_seconds,
    ev.events AS events,
    si.signals AS signals,
    si.signal_types AS signal_types,
    si.open_signals AS open_signals,
    ifNull(if(eg.total_s > 0, round(ifNull(eg.engaged_s, 0) / eg.total_s, 6), 0), 0) AS engaged_share,
    if(qo.session_id != '', toNullable(qo.quality_index), NULL) AS quality_index,
    round(us.analysed_s, 3) AS analysed_s,
    round(us.degraded_s, 3) AS degraded_s,
    round(us.dropped_s, 3) AS dropped_s,
    round(us.reanalysed_s, 3) AS reanalysed_s,
    round(us.analysed_s + us.degraded_s, 3) AS billable_s,
    cu.cues AS cues,
    ev.events + us.records + cu.cues AS version
FROM
(
    SELECT session_id FROM events
    UNION DISTINCT SELECT session_id FROM sessions_started
    UNION DISTINCT SELECT session_id FROM sessions_ended
    UNION DISTINCT SELECT session_id FROM usage
) AS ids
LEFT JOIN (SELECT * FROM sessions_started FINAL) AS st ON ids.session_id = st.session_id
LEFT JOIN (SELECT * FROM sessions_ended FINAL) AS en ON ids.session_id = en.session_id
LEFT JOIN
(
    SELECT session_id, count() AS events, any(tenant) AS tenant, any(app) AS app
    FROM events FINAL GROUP BY session_id
) AS ev ON ids.session_id = ev.session_id
LEFT JOIN
(
    SELECT session_id, count() AS signals, uniqExact(signal_type) AS signal_types,
        countIf(state != 'closed') AS open_signals
    FROM signal_intervals GROUP BY session_id
) AS si ON ids.session_id = si.session_id
LEFT JOIN
(
    SELECT session_id, sumIf(duration_s, state = 'engaged') AS engaged_s, sum(duration_s) AS total_s
    FROM engagement_timeline WHERE end_s IS NOT NULL GROUP BY session_id
) AS eg ON ids.session_id = eg.session_id
LEFT JOIN
(
    SELECT session_id, argMax(quality_index, (incarnation, event_seq)) AS quality_index
    FROM quality_overall FINAL GROUP BY session_id
) AS qo ON ids.session_id = qo.session_id
LEFT JOIN
(
    SELECT session_id, count() AS records, sum(analysed_s) AS analysed_s, sum(degraded_s) AS degraded_s,
        sum(dropped_s) AS dropped_s, sum(reanalysed_s) AS reanalysed_s
    FROM usage FINAL GROUP BY session_id
) AS us ON ids.session_id = us.session_id
LEFT JOIN (SELECT session_id, count() AS cues FROM cues FINAL GROUP BY session_id) AS cu
    ON ids.session_id = cu.session_id;
