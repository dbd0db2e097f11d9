-- Bad rows per type and day over the last 7 days (distinct bad rows: FINAL collapses
-- re-deliveries of the same document), from the loaders reading tracker-bad.
SELECT
    toDate(failure_tstamp) AS day,
    type,
    count() AS bad_rows
FROM plowline.bad_rows FINAL
WHERE failure_tstamp >= now() - INTERVAL 7 DAY
GROUP BY day, type
ORDER BY day, bad_rows DESC
