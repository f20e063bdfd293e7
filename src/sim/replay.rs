//! Replay of historical daily bars (the `indexProcessed.csv` layout that Kafka stock-market
//! tutorials replay: Index, Date, Open, High, Low, Close, Adj Close, Volume, CloseUSD) as ticks.
//!
//! Each row becomes four trades on its date, in the session's local time:
//! open at the session open, then the low and the high (low first on an up day, high first on a
//! down day, the path a daily bar most plausibly took) at one and two thirds of the session, and
//! the close one second before the session close. Prices are converted to USD with the row's
//! `CloseUSD / Close` rate and rounded to cents; the day's volume is split evenly over the four
//! trades (the remainder on the close), at least one share each because a trade has a size.
//! `Adj Close` is not used. Rows are delivered in date order (file order within a date), so
//! that event time moves forward as it would in a live feed.

use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;

use super::{Session, SimError, at_least, positive};
use crate::codec::Tick;

/// One row of the CSV.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplayRow {
    /// Index symbol, e.g. `HSI`, `NYA`, `N225`.
    #[serde(rename = "Index")]
    pub index: String,
    /// Trading date, `YYYY-MM-DD`.
    #[serde(rename = "Date")]
    pub date: NaiveDate,
    /// Open in local currency.
    #[serde(rename = "Open")]
    pub open: f64,
    /// High in local currency.
    #[serde(rename = "High")]
    pub high: f64,
    /// Low in local currency.
    #[serde(rename = "Low")]
    pub low: f64,
    /// Close in local currency.
    #[serde(rename = "Close")]
    pub close: f64,
    /// Adjusted close (unused).
    #[serde(rename = "Adj Close")]
    pub adj_close: f64,
    /// Day's volume.
    #[serde(rename = "Volume")]
    pub volume: f64,
    /// Close converted to USD.
    #[serde(rename = "CloseUSD")]
    pub close_usd: f64,
}

/// Reads the CSV at `path` and turns it into ticks in delivery order.
pub fn replay_ticks(path: &Path, session: &Session) -> Result<Vec<Tick>, SimError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
        file: file.clone(),
        source,
    })?;
    let rows = parse_rows(&file, &text)?;
    Ok(rows_to_ticks(rows, session))
}

fn parse_rows(file: &str, text: &str) -> Result<Vec<(u64, ReplayRow)>, SimError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for row in reader.deserialize::<ReplayRow>() {
        let row = row.map_err(|e| SimError::csv(file, &e))?;
        let line = rows.len() as u64 + 2;
        if [row.open, row.high, row.low, row.close, row.close_usd]
            .iter()
            .any(|p| !positive(*p))
            || !at_least(row.volume, 0.0)
        {
            return Err(SimError::Csv {
                file: file.into(),
                line,
                message: "prices must be positive numbers and volume not negative".into(),
            });
        }
        rows.push((line, row));
    }
    rows.sort_by_key(|(line, r)| (r.date, *line));
    Ok(rows)
}

fn rows_to_ticks(rows: Vec<(u64, ReplayRow)>, session: &Session) -> Vec<Tick> {
    let mut out = Vec::with_capacity(rows.len() * 4);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    for (line, row) in rows {
        let day = row.date.signed_duration_since(epoch).num_days();
        let (open_t, close_t) = session.day_bounds(day);
        let third = (close_t - open_t) / 3;
        let usd = row.close_usd / row.close;
        let (second, third_price) = if row.close >= row.open {
            (row.low, row.high)
        } else {
            (row.high, row.low)
        };
        let legs = [
            (open_t, row.open),
            (open_t + third, second),
            (open_t + 2 * third, third_price),
            (close_t - 1_000_000, row.close),
        ];
        let volume = row.volume.round() as i64;
        for (k, (t, price)) in legs.into_iter().enumerate() {
            let size = if k == 3 {
                volume - 3 * (volume / 4)
            } else {
                volume / 4
            };
            out.push(Tick {
                symbol: row.index.clone(),
                venue: "INDX".into(),
                price: ((price * usd) * 100.0).round().max(1.0) / 100.0,
                size: size.max(1),
                event_time: t,
                trade_id: (line * 4 + k as u64) as i64,
                side: "U".into(),
                conditions: vec!["@".into()],
                currency: "USD".into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;

    const HEADER: &str = "Index,Date,Open,High,Low,Close,Adj Close,Volume,CloseUSD\n";

    #[test]
    fn rows_become_four_ticks_in_date_order() {
        let text = format!(
            "{HEADER}NYA,1965-12-31,528.69,528.69,528.69,528.69,528.69,0,528.69\n\
             HSI,1986-12-31,2568.3,2570,2560,2565,2565,1000,330.0\n\
             NYA,1966-01-03,527.21,527.21,527.21,527.21,527.21,0,527.21\n"
        );
        let session = Session::from_config(&SimConfig::default()).unwrap();
        let rows = parse_rows("i.csv", &text).unwrap();
        let ticks = rows_to_ticks(rows, &session);
        assert_eq!(ticks.len(), 12);
        assert!(ticks.windows(2).all(|w| w[0].event_time <= w[1].event_time));
        let hsi: Vec<&Tick> = ticks.iter().filter(|t| t.symbol == "HSI").collect();
        // Down day: open, high, low, close; prices in USD at CloseUSD / Close.
        let rate = 330.0 / 2565.0;
        let prices: Vec<f64> = hsi.iter().map(|t| t.price).collect();
        let want: Vec<f64> = [2568.3, 2570.0, 2560.0, 2565.0]
            .iter()
            .map(|p| (p * rate * 100.0_f64).round() / 100.0)
            .collect();
        assert_eq!(prices, want);
        assert_eq!(hsi.iter().map(|t| t.size).sum::<i64>(), 1000);
        // 1986-12-31 09:30 New York = 14:30 UTC.
        assert_eq!(hsi[0].event_time, 536_423_400_000_000);
        assert!(ticks.iter().all(|t| t.size >= 1));
    }

    #[test]
    fn unreadable_row_names_its_line() {
        let text = format!(
            "{HEADER}NYA,1965-12-31,528.69,528.69,528.69,528.69,528.69,0,528.69\n\
             NYA,1966-01-03,abc,527.21,527.21,527.21,527.21,0,527.21\n"
        );
        let msg = parse_rows("i.csv", &text).unwrap_err().to_string();
        assert!(msg.starts_with("i.csv:3: column 3"), "{msg}");
        let text = format!("{HEADER}NYA,1965-12-31,-1,528.69,528.69,528.69,528.69,0,528.69\n");
        let msg = parse_rows("i.csv", &text).unwrap_err().to_string();
        assert!(msg.starts_with("i.csv:2: prices must be positive"), "{msg}");
    }
}
