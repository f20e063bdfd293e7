-- How far each symbol's last trade on {{day}} is from the day's VWAP, in basis points,
-- largest first. Runs unchanged on Athena and on `tickflow query`.
WITH day_ticks AS (
  SELECT symbol, price, size, event_time, trade_id
  FROM ticks
  WHERE dt = '{{day}}'
), latest AS (
  SELECT symbol, price AS last_price
  FROM (
    SELECT symbol, price,
           row_number() OVER (PARTITION BY symbol ORDER BY event_time DESC, trade_id DESC) AS rn
    FROM day_ticks
  ) AS ranked
  WHERE rn = 1
), day_vwap AS (
  SELECT symbol, sum(price * size) / sum(size) AS vwap, sum(size) AS volume
  FROM day_ticks
  GROUP BY symbol
)
SELECT v.symbol, l.last_price, v.vwap, v.volume,
       round(10000 * (l.last_price / v.vwap - 1), 2) AS deviation_bps
FROM day_vwap AS v
JOIN latest AS l ON l.symbol = v.symbol
ORDER BY abs(l.last_price / v.vwap - 1) DESC, v.symbol
