-- Events per hour and event type over the last 7 days (distinct events: FINAL collapses
-- re-deliveries of the same event_id).
SELECT
    toStartOfHour(collector_tstamp) AS hour,
    event,
    count() AS events
FROM plowline.events FINAL
WHERE collector_tstamp >= now() - INTERVAL 7 DAY
GROUP BY hour, event
ORDER BY hour, events DESC
