-- Latest 1-minute bar of each symbol on {{day}} (default: the newest day in the lake).
-- Runs unchanged on Athena and on `tickflow query`.
SELECT symbol, window_start, open, high, low, close, volume, vwap, trade_count
FROM (
  SELECT symbol, window_start, open, high, low, close, volume, vwap, trade_count,
         row_number() OVER (PARTITION BY symbol ORDER BY window_start DESC) AS rn
  FROM bars_1m
  WHERE dt = '{{day}}' AND coalesce(is_final, true)
) AS ranked
WHERE rn = 1
ORDER BY symbol
