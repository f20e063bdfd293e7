-- Share of each symbol's ticks on {{day}} that arrived too late for their 1-minute window
-- (more than the grace period behind stream time): the ticks the 1-minute bars do not
-- count. Runs unchanged on Athena and on `tickflow query`.
WITH traded AS (
  SELECT symbol, count(*) AS ticks
  FROM ticks
  WHERE dt = '{{day}}'
  GROUP BY symbol
), counted AS (
  SELECT symbol, sum(trade_count) AS in_bars
  FROM bars_1m
  WHERE dt = '{{day}}' AND coalesce(is_final, true)
  GROUP BY symbol
)
SELECT t.symbol, t.ticks, t.ticks - coalesce(c.in_bars, 0) AS late_ticks,
       round(100 * CAST(t.ticks - coalesce(c.in_bars, 0) AS DOUBLE) / t.ticks, 3) AS late_pct
FROM traded AS t
LEFT JOIN counted AS c ON c.symbol = t.symbol
ORDER BY late_pct DESC, t.symbol
