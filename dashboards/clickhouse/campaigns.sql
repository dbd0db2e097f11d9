-- Campaign attribution (utm_* and click ids, the mkt_* fields) over the last 30 days.
SELECT
    mkt_source,
    mkt_medium,
    mkt_campaign,
    count() AS events,
    uniq(domain_userid) AS visitors,
    uniq(domain_sessionid) AS sessions
FROM plowline.events FINAL
WHERE (mkt_source IS NOT NULL OR mkt_medium IS NOT NULL OR mkt_campaign IS NOT NULL)
  AND collector_tstamp >= now() - INTERVAL 30 DAY
GROUP BY mkt_source, mkt_medium, mkt_campaign
ORDER BY visitors DESC
LIMIT 20
