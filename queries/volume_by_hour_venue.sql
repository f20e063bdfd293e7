-- Shares and trades by hour (UTC) and venue on {{day}}. Reads only that day's partitions.
-- Runs unchanged on Athena and on `tickflow query`.
SELECT hour, venue, sum(size) AS volume, count(*) AS trades
FROM ticks
WHERE dt = '{{day}}'
GROUP BY hour, venue
ORDER BY hour, venue
