-- Visitors by country and city with a representative position (for a map), last 7 days.
SELECT
    geo_country,
    geo_city,
    avg(geo_latitude) AS latitude,
    avg(geo_longitude) AS longitude,
    uniq(domain_userid) AS visitors
FROM plowline.events FINAL
WHERE geo_country IS NOT NULL AND collector_tstamp >= now() - INTERVAL 7 DAY
GROUP BY geo_country, geo_city
ORDER BY visitors DESC
LIMIT 50
