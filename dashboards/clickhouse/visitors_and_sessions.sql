-- The headline numbers of the last 24 hours: events, page views, unique visitors, sessions.
SELECT
    count() AS events,
    countIf(event = 'page_view') AS page_views,
    uniq(domain_userid) AS unique_visitors,
    uniq(domain_sessionid) AS sessions,
    round(countIf(event = 'page_view') / greatest(uniq(domain_sessionid), 1), 2) AS pages_per_session
FROM plowline.events FINAL
WHERE collector_tstamp >= now() - INTERVAL 1 DAY
