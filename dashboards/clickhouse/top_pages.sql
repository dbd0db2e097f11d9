-- The 20 most viewed pages of the last 7 days, with their visitors.
SELECT
    page_urlhost,
    page_urlpath,
    any(page_title) AS title,
    count() AS page_views,
    uniq(domain_userid) AS visitors
FROM plowline.events FINAL
WHERE event = 'page_view' AND collector_tstamp >= now() - INTERVAL 7 DAY
GROUP BY page_urlhost, page_urlpath
ORDER BY page_views DESC
LIMIT 20
