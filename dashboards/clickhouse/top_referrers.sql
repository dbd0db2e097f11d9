-- Where visitors come from: referer medium and source (search, social, email, unknown, ...),
-- internal navigation left out, over the last 7 days.
SELECT
    refr_medium,
    refr_source,
    count() AS page_views,
    uniq(domain_userid) AS visitors
FROM plowline.events FINAL
WHERE event = 'page_view'
  AND refr_medium IS NOT NULL
  AND refr_medium != 'internal'
  AND collector_tstamp >= now() - INTERVAL 7 DAY
GROUP BY refr_medium, refr_source
ORDER BY page_views DESC
LIMIT 20
