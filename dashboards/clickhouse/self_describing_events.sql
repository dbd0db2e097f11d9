-- Self-describing (unstructured) events by schema, last 7 days.
SELECT
    event_vendor,
    event_name,
    event_version,
    count() AS events
FROM plowline.events FINAL
WHERE event = 'unstruct' AND collector_tstamp >= now() - INTERVAL 7 DAY
GROUP BY event_vendor, event_name, event_version
ORDER BY events DESC
