-- The ten symbols that moved most on {{day}}: first 1-minute open to last 1-minute close,
-- in percent. Runs unchanged on Athena and on `tickflow query`.
WITH day_bars AS (
  SELECT symbol, open, close,
         row_number() OVER (PARTITION BY symbol ORDER BY window_start) AS from_first,
         row_number() OVER (PARTITION BY symbol ORDER BY window_start DESC) AS from_last
  FROM bars_1m
  WHERE dt = '{{day}}' AND coalesce(is_final, true)
), ends AS (
  SELECT symbol,
         max(CASE WHEN from_first = 1 THEN open END) AS first_open,
         max(CASE WHEN from_last = 1 THEN close END) AS last_close
  FROM day_bars
  GROUP BY symbol
)
SELECT symbol, first_open, last_close,
       round(100 * (last_close / first_open - 1), 3) AS change_pct
FROM ends
ORDER BY abs(last_close / first_open - 1) DESC, symbol
LIMIT 10
