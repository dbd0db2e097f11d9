-- Mobile against desktop visitors over the last 7 days (dvce_ismobile from the user agent).
SELECT
    multiIf(dvce_ismobile = 1, 'mobile', dvce_ismobile = 0, 'desktop', 'unknown') AS device,
    uniq(domain_userid) AS visitors,
    count() AS events
FROM plowline.events FINAL
WHERE collector_tstamp >= now() - INTERVAL 7 DAY
GROUP BY device
ORDER BY visitors DESC
