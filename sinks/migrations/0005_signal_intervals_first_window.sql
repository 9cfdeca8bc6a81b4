-- A connection's first published window, as signal_intervals (0004) decides whether a
-- later connection continues an interval, is the earliest window its events are placed in:
-- signal.detected (start), signal.ended (end), engagement.updated (start) and the last
-- timeline entry of conversation_quality.updated (start). 0004 also took signal.updated,
-- whose time is the signal's start, not its window: after a failover whose new connection
-- analyses again from before the watermark, an update of a signal active since 0 s made
-- that connection's first window 0 s, so the update of any signal detected later by the
-- old connection (start 6 s > 0 s) cut its interval (closed_at_reconnect, end 0 s before
-- its start) and opened a second one. The same window events now give the same intervals
-- however many connections carried them. The rest of the view is unchanged.
CREATE OR REPLACE VIEW signal_intervals AS
SELECT
    i.session_id AS session_id,
    i.tenant AS tenant,
    i.app AS app,
    i.opened_in AS incarnation,
    i.signal_type AS signal_type,
    i.start_s AS start_s,
    multiIf(i.closed_by != '', toNullable(i.close_s), i.next_cut_s IS NOT NULL, i.next_cut_s, x.session_id != '', toNullable(x.media_seconds), NULL) AS end_s,
    multiIf(i.closed_by != '', 'closed', i.next_cut_s IS NOT NULL, 'closed_at_reconnect', x.session_id != '', 'closed_at_session_end', 'open') AS state,
    i.first_probability AS first_probability,
    i.peak_probability AS peak_probability,
    i.updates AS updates,
    i.opened_by AS opened_by,
    i.closed_by AS closed_by,
    i.connections AS connections
FROM
(
    SELECT
        *,
        any(cut_s) OVER (PARTITION BY session_id, signal_type ORDER BY interval_no ROWS BETWEEN 1 FOLLOWING AND 1 FOLLOWING) AS next_cut_s
    FROM
    (
        SELECT
            session_id,
            signal_type,
            interval_no,
            any(tenant) AS tenant,
            any(app) AS app,
            minIf(incarnation, opener) AS opened_in,
            minIf(media_s, opener) AS start_s,
            argMinIf(event_id, (media_s, incarnation, event_seq), opener) AS opened_by,
            argMinIf(probability, (media_s, incarnation, event_seq), opener) AS first_probability,
            ['', 'low', 'medium', 'high'][1 + maxIf(indexOf(['low', 'medium', 'high'], probability), opener)] AS peak_probability,
            countIf(event_type = 'signal.updated') AS updates,
            minIf(media_s, NOT opener) AS close_s,
            argMinIf(event_id, (media_s, incarnation, event_seq), NOT opener) AS closed_by,
            uniqExact(incarnation) AS connections,
            anyIf(toNullable(first_window_s), cut) AS cut_s,
            countIf(opener) AS openers
        FROM
        (
            SELECT
                *,
                sum(toUInt64(opens)) OVER (PARTITION BY session_id, signal_type ORDER BY media_s, opener, incarnation, event_seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS interval_no
            FROM
            (
                SELECT
                    e.*,
                    w.first_window_s AS first_window_s,
                    e.opener AND e.prev_opener = 1 AND e.prev_incarnation < e.incarnation
                        AND e.media_s > w.first_window_s AS cut,
                    e.opener AND (e.prev_opener != 1 OR cut) AS opens
                FROM
                (
                    SELECT
                        session_id, tenant, app, incarnation, event_seq, event_id, event_type,
                        signal_type, probability, media_s,
                        event_type != 'signal.ended' AS opener,
                        lagInFrame(toInt8(opener), 1, toInt8(-1)) OVER w1 AS prev_opener,
                        lagInFrame(incarnation, 1, incarnation) OVER w1 AS prev_incarnation
                    FROM signal_events FINAL
                    WINDOW w1 AS (PARTITION BY session_id, signal_type ORDER BY media_s, opener, incarnation, event_seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
                ) AS e
                LEFT JOIN
                (
                    SELECT session_id, incarnation, min(t) AS first_window_s
                    FROM
                    (
                        SELECT session_id, incarnation, media_s AS t FROM signal_events FINAL
                        WHERE event_type != 'signal.updated'
                        UNION ALL
                        SELECT session_id, incarnation, start_s AS t FROM engagement_events FINAL
                        UNION ALL
                        SELECT session_id, incarnation, argMax(start_s, idx) AS t
                        FROM quality_timeline FINAL
                        GROUP BY session_id, incarnation, event_id
                    )
                    GROUP BY session_id, incarnation
                ) AS w ON e.session_id = w.session_id AND e.incarnation = w.incarnation
            )
        )
        GROUP BY session_id, signal_type, interval_no
        HAVING openers > 0
    )
) AS i
LEFT JOIN (SELECT session_id, media_seconds FROM sessions_ended FINAL) AS x ON i.session_id = x.session_id;
