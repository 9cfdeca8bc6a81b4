-- Analytics schema written by `inter1-pipeline sink`. Every table is a ReplacingMergeTree
-- keyed on the logical identity of its rows (event_id, usage_id, cue_id, session_id), with
-- non_replicated_deduplication_window so a retried insert with the same
-- insert_deduplication_token (topic:partition:first-last) is dropped. Read through FINAL
-- (every view below does) to see each logical row once.
CREATE TABLE IF NOT EXISTS events
(
    event_id String COMMENT 'deterministic id of the logical event',
    session_id String COMMENT 'video session id',
    api_version LowCardinality(String) COMMENT 'v1 (Inter-1) or v2 (Inter-2)',
    event_type LowCardinality(String) COMMENT 'protocol type string, e.g. signal.detected',
    ts DateTime64(6, 'UTC') COMMENT 'server timestamp of the event',
    correlation_id String COMMENT 'server correlation id',
    incarnation UInt32 COMMENT 'Inter-1 connection number within the session',
    event_seq UInt64 COMMENT 'position of the event within its connection',
    media_offset_s Float64 COMMENT 'session media time at which the connection began',
    chunk_seq Nullable(Int64) COMMENT 'last chunk sent before the event',
    received_at DateTime64(6, 'UTC') COMMENT 'when the session worker received it',
    tenant LowCardinality(String) COMMENT 'tenant (empty: none)',
    app LowCardinality(String) COMMENT 'application (empty: none)',
    payload_json String COMMENT 'the payload as JSON (protocol field names)',
    source_topic LowCardinality(String) COMMENT 'Kafka topic read from',
    source_partition UInt32 COMMENT 'Kafka partition',
    source_offset UInt64 COMMENT 'Kafka offset',
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the sink inserted the row'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (session_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS signal_events
(
    event_id String,
    session_id String,
    incarnation UInt32,
    event_seq UInt64,
    event_type LowCardinality(String) COMMENT 'signal.detected, signal.updated or signal.ended',
    signal_type LowCardinality(String),
    probability LowCardinality(String) COMMENT 'low, medium, high (empty: not sent; ended events)',
    rationale String,
    media_s Float64 COMMENT 'session media time: media_offset_s + start (detected/updated) or end',
    ts DateTime64(6, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (session_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS engagement_events
(
    event_id String,
    session_id String,
    incarnation UInt32,
    event_seq UInt64,
    state LowCardinality(String) COMMENT 'engaged, neutral, disengaged (unknown states pass through)',
    start_s Float64 COMMENT 'session media time the state was entered',
    ts DateTime64(6, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (session_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS quality_overall
(
    event_id String,
    session_id String,
    incarnation UInt32,
    event_seq UInt64,
    quality_index Float64,
    clarity Float64,
    authority Float64,
    energy Float64,
    rapport Float64,
    learning Float64,
    ts DateTime64(6, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (session_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS quality_timeline
(
    event_id String,
    session_id String,
    incarnation UInt32,
    event_seq UInt64,
    idx UInt32 COMMENT 'position of the entry in the event timeline',
    start_s Float64 COMMENT 'session media time of the slice start',
    end_s Float64 COMMENT 'session media time of the slice end',
    quality_index Float64,
    clarity Float64,
    authority Float64,
    energy Float64,
    rapport Float64,
    learning Float64,
    ts DateTime64(6, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (session_id, event_id, idx)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS coverage
(
    event_id String,
    session_id String,
    incarnation UInt32,
    kind LowCardinality(String) COMMENT 'dropped (not analysed, not billed) or degraded (billed)',
    reason LowCardinality(String) COMMENT 'degraded reason (video_gap...); empty for dropped',
    idx UInt32,
    start_s Float64 COMMENT 'session media time',
    end_s Float64 COMMENT 'session media time',
    seconds Float64,
    ts DateTime64(6, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (session_id, event_id, kind, idx)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS sessions_started
(
    session_id String,
    source_url String COMMENT 'credentials masked',
    source_kind LowCardinality(String),
    live Bool,
    container LowCardinality(String),
    video_codec LowCardinality(String),
    audio_codec LowCardinality(String),
    width UInt32,
    height UInt32,
    frame_rate Float64,
    transcoded Bool,
    tenant LowCardinality(String),
    app LowCardinality(String),
    labels Map(String, String),
    producer_id String,
    started_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY session_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS sessions_ended
(
    session_id String,
    reason LowCardinality(String) COMMENT 'completed, stopped, error...',
    error String,
    chunks UInt64,
    media_seconds Float64,
    bytes UInt64,
    ended_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY session_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS usage
(
    usage_id String,
    session_id String,
    api_version LowCardinality(String),
    media_start_s Float64,
    media_end_s Float64,
    analysed_s Float64,
    degraded_s Float64,
    dropped_s Float64,
    reanalysed_s Float64,
    reason LowCardinality(String),
    source LowCardinality(String),
    incarnation UInt32,
    correlation_id String,
    tenant LowCardinality(String),
    app LowCardinality(String),
    recorded_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (session_id, usage_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS cues
(
    cue_id String,
    session_id String,
    rule LowCardinality(String),
    kind LowCardinality(String),
    severity LowCardinality(String),
    message String,
    media_start_s Float64,
    media_end_s Float64,
    evidence_event_ids Array(String),
    trigger_event_id String,
    event_timestamp DateTime64(6, 'UTC'),
    tenant LowCardinality(String),
    app LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_timestamp)
ORDER BY (session_id, cue_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS sink_batches
(
    topic LowCardinality(String),
    partition UInt32,
    first_offset UInt64,
    last_offset UInt64,
    records UInt32,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, first_offset)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS session_summaries
(
    session_id String,
    tenant LowCardinality(String),
    app LowCardinality(String),
    labels Map(String, String),
    started_at Nullable(DateTime64(6, 'UTC')),
    ended_at Nullable(DateTime64(6, 'UTC')),
    end_reason LowCardinality(String),
    media_seconds Float64,
    events UInt64,
    signals UInt64 COMMENT 'signal intervals opened',
    signal_types UInt64 COMMENT 'distinct signal types seen',
    open_signals UInt64 COMMENT 'intervals without signal.ended (closed at session end)',
    engaged_share Float64 COMMENT 'share of the engagement timeline spent engaged (0-1)',
    quality_index Nullable(Float64) COMMENT 'last overall quality index',
    analysed_s Float64,
    degraded_s Float64,
    dropped_s Float64,
    reanalysed_s Float64,
    billable_s Float64 COMMENT 'analysed + degraded',
    cues UInt64,
    version UInt64 COMMENT 'events + usage records + cues counted: a later summary has more',
    summarised_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY session_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS reconcile_discrepancies
(
    run_id String,
    checked_at DateTime64(3, 'UTC'),
    session_id String,
    day Nullable(Date),
    tenant LowCardinality(String),
    expected_s Float64 COMMENT 'analysed + degraded seconds from usage',
    vendor_s Float64 COMMENT 'seconds the vendor billed',
    difference_s Float64 COMMENT 'vendor - expected',
    cause LowCardinality(String) COMMENT 're-analysis, shed at worker, stream skip, session failed, missing from vendor, unknown to pipeline, unexplained',
    detail String
)
ENGINE = MergeTree
ORDER BY (run_id, session_id);

CREATE VIEW IF NOT EXISTS sessions AS
SELECT
    if(s.session_id != '', s.session_id, e.session_id) AS session_id,
    s.source_url AS source_url,
    s.source_kind AS source_kind,
    s.live AS live,
    s.video_codec AS video_codec,
    s.width AS width,
    s.height AS height,
    s.tenant AS tenant,
    s.app AS app,
    s.labels AS labels,
    s.producer_id AS producer_id,
    if(s.session_id != '', toNullable(s.started_at), NULL) AS started_at,
    if(e.session_id != '', toNullable(e.ended_at), NULL) AS ended_at,
    e.reason AS end_reason,
    e.error AS end_error,
    e.chunks AS chunks,
    e.media_seconds AS media_seconds,
    e.bytes AS bytes
FROM (SELECT * FROM sessions_started FINAL) AS s
FULL OUTER JOIN (SELECT * FROM sessions_ended FINAL) AS e ON s.session_id = e.session_id;

CREATE VIEW IF NOT EXISTS signal_intervals AS
SELECT
    o.session_id AS session_id,
    o.tenant AS tenant,
    o.app AS app,
    o.incarnation AS incarnation,
    o.signal_type AS signal_type,
    o.start_s AS start_s,
    multiIf(c.event_id != '', toNullable(c.media_s), x.session_id != '', toNullable(x.media_seconds), NULL) AS end_s,
    multiIf(c.event_id != '', 'closed', x.session_id != '', 'closed_at_session_end', 'open') AS state,
    o.first_probability AS first_probability,
    o.peak_probability AS peak_probability,
    o.updates AS updates,
    o.opened_by AS opened_by,
    c.event_id AS closed_by
FROM
(
    SELECT
        session_id,
        any(tenant) AS tenant,
        any(app) AS app,
        incarnation,
        signal_type,
        media_s AS start_s,
        argMin(event_id, event_seq) AS opened_by,
        argMin(probability, event_seq) AS first_probability,
        ['', 'low', 'medium', 'high'][1 + max(indexOf(['low', 'medium', 'high'], probability))] AS peak_probability,
        countIf(event_type = 'signal.updated') AS updates
    FROM signal_events FINAL
    WHERE event_type IN ('signal.detected', 'signal.updated')
    GROUP BY session_id, incarnation, signal_type, start_s
) AS o
ASOF LEFT JOIN
(
    SELECT session_id, incarnation, signal_type, media_s, event_id
    FROM signal_events FINAL
    WHERE event_type = 'signal.ended'
) AS c ON o.session_id = c.session_id AND o.incarnation = c.incarnation
    AND o.signal_type = c.signal_type AND o.start_s <= c.media_s
LEFT JOIN (SELECT session_id, media_seconds FROM sessions_ended FINAL) AS x ON o.session_id = x.session_id;

CREATE VIEW IF NOT EXISTS engagement_timeline AS
SELECT
    t.session_id AS session_id,
    t.tenant AS tenant,
    t.app AS app,
    t.state AS state,
    t.start_s AS start_s,
    multiIf(t.has_next = 1, toNullable(t.next_start_s), x.session_id != '', toNullable(x.media_seconds), NULL) AS end_s,
    end_s - t.start_s AS duration_s,
    t.event_id AS event_id
FROM
(
    SELECT
        session_id, tenant, app, state, start_s, event_id,
        count() OVER w1 AS has_next,
        any(start_s) OVER w1 AS next_start_s
    FROM (SELECT * FROM engagement_events FINAL)
    WINDOW w1 AS (PARTITION BY session_id ORDER BY start_s, incarnation, event_seq ROWS BETWEEN 1 FOLLOWING AND 1 FOLLOWING)
) AS t
LEFT JOIN (SELECT session_id, media_seconds FROM sessions_ended FINAL) AS x ON t.session_id = x.session_id;

CREATE VIEW IF NOT EXISTS quality_timeline_latest AS
SELECT
    session_id,
    any(tenant) AS tenant,
    any(app) AS app,
    start_s,
    end_s,
    argMax(quality_index, (incarnation, event_seq)) AS quality_index,
    argMax(clarity, (incarnation, event_seq)) AS clarity,
    argMax(authority, (incarnation, event_seq)) AS authority,
    argMax(energy, (incarnation, event_seq)) AS energy,
    argMax(rapport, (incarnation, event_seq)) AS rapport,
    argMax(learning, (incarnation, event_seq)) AS learning
FROM quality_timeline FINAL
GROUP BY session_id, start_s, end_s;

CREATE VIEW IF NOT EXISTS billing_daily AS
SELECT
    toDate(recorded_at) AS day,
    tenant,
    app,
    uniqExact(session_id) AS sessions,
    round(sum(a), 3) AS analysed_s,
    round(sum(g), 3) AS degraded_s,
    round(sum(a + g), 3) AS billable_s,
    round(sum(d), 3) AS dropped_s,
    round(sum(r), 3) AS reanalysed_s
FROM
(
    SELECT session_id, tenant, app, recorded_at, analysed_s AS a, degraded_s AS g,
        dropped_s AS d, reanalysed_s AS r
    FROM usage FINAL
)
GROUP BY day, tenant, app;

CREATE VIEW IF NOT EXISTS session_summary_live AS
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
    if(eg.total_s > 0, round(eg.engaged_s / eg.total_s, 6), 0) AS engaged_share,
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
