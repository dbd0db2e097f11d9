-- Structured events (trackStructEvent) by category and action, last 7 days.
SELECT
    se_category,
    se_action,
    count() AS events,
    uniq(domain_userid) AS visitors,
    sum(se_value) AS total_value
FROM plowline.events FINAL
WHERE event = 'struct' AND collector_tstamp >= now() - INTERVAL 7 DAY
GROUP BY se_category, se_action
ORDER BY events DESC
LIMIT 30
