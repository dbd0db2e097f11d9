-- Browsers, operating systems and device types of the last 7 days' visitors.
SELECT
    br_family,
    os_family,
    dvce_type,
    uniq(domain_userid) AS visitors,
    count() AS events
FROM plowline.events FINAL
WHERE collector_tstamp >= now() - INTERVAL 7 DAY
GROUP BY br_family, os_family, dvce_type
ORDER BY visitors DESC
LIMIT 30
