-- Page views, sessions and visitors per hour, from the page_views_hourly materialized view
-- (distinct counts, so a batch delivered twice does not count twice).
SELECT
    hour,
    uniqExactMerge(page_views) AS page_views,
    uniqExactMerge(sessions) AS sessions,
    uniqMerge(visitors) AS visitors
FROM plowline.events_page_views_hourly
WHERE day >= today() - 7
GROUP BY hour
ORDER BY hour
