//! Candlestick charts of a symbol's bars with volume bars underneath, drawn with `plotters`
//! as SVG or PNG. Text needs a TrueType font: `TICKFLOW_FONT`, else DejaVu Sans or
//! Liberation Sans where Debian and Ubuntu install them.

use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::QueryError;

/// Colour of a bar that closed above its open.
pub const UP: RGBColor = RGBColor(0x26, 0xa6, 0x9a);
/// Colour of a bar that closed at or below its open.
pub const DOWN: RGBColor = RGBColor(0xef, 0x53, 0x50);
/// Colour of the volume bars.
const VOLUME: RGBColor = RGBColor(0x78, 0x90, 0x9c);

/// Where fonts are looked for when `TICKFLOW_FONT` is unset.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// One bar of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Candle {
    /// Window start, UTC microseconds.
    pub start: i64,
    /// Open price.
    pub open: f64,
    /// High price.
    pub high: f64,
    /// Low price.
    pub low: f64,
    /// Close price.
    pub close: f64,
    /// Shares traded.
    pub volume: i64,
}

/// What the chart shows.
#[derive(Debug, Clone)]
pub struct ChartSpec<'a> {
    /// Title, e.g. `AAPL 1m bars`.
    pub title: &'a str,
    /// Window length, microseconds (sets the candle width).
    pub bar_micros: i64,
    /// Width and height in pixels.
    pub size: (u32, u32),
}

/// Draws `candles` into `path`: SVG when it ends in `.svg`, PNG when it ends in `.png`.
pub fn render(path: &Path, spec: &ChartSpec<'_>, candles: &[Candle]) -> Result<(), QueryError> {
    let err = |message: String| QueryError::Chart {
        path: path.display().to_string(),
        message,
        source: None,
    };
    let failed = |e: crate::error::BoxError| QueryError::Chart {
        path: path.display().to_string(),
        message: e.to_string(),
        source: Some(e),
    };
    if candles.is_empty() {
        return Err(err("no bars to draw".into()));
    }
    load_font().map_err(err)?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            let root = SVGBackend::new(path, spec.size).into_drawing_area();
            draw(&root, spec, candles).map_err(|e| failed(e.into()))?;
            root.present().map_err(|e| failed(e.into()))
        }
        Some("png") => {
            let root = BitMapBackend::new(path, spec.size).into_drawing_area();
            draw(&root, spec, candles).map_err(|e| failed(e.into()))?;
            root.present().map_err(|e| failed(e.into()))
        }
        _ => Err(err("the file name must end in .svg or .png".into())),
    }
}

/// Registers the font text is drawn with, once per process.
fn load_font() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let env = std::env::var("TICKFLOW_FONT").ok();
            let candidates: Vec<String> = match &env {
                Some(p) => vec![p.clone()],
                None => FONT_PATHS.iter().map(|p| p.to_string()).collect(),
            };
            let bytes = candidates
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or_else(|| {
                    format!(
                        "no TrueType font for the chart's text: set TICKFLOW_FONT to a .ttf file \
                         (looked in {})",
                        candidates.join(", ")
                    )
                })?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "the font file is not a TrueType font".to_string())
        })
        .clone()
}

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// How the time axis is labelled for a chart spanning `span` microseconds: seconds for a
/// few minutes, dates for several days.
fn time_label(span: i64) -> &'static str {
    const MINUTE: i64 = 60_000_000;
    if span <= 15 * MINUTE {
        "%H:%M:%S"
    } else if span <= 36 * 60 * MINUTE {
        "%H:%M"
    } else {
        "%m-%d %H:%M"
    }
}

/// Prices above, volume below (a quarter of the height), on one time axis.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &ChartSpec<'_>,
    candles: &[Candle],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (prices, volumes) = root.split_vertically(spec.size.1 * 3 / 4);
    let half = spec.bar_micros / 2;
    let x_range = time(candles[0].start - half)..time(candles[candles.len() - 1].start + 3 * half);
    let low = candles.iter().map(|c| c.low).fold(f64::MAX, f64::min);
    let high = candles.iter().map(|c| c.high).fold(f64::MIN, f64::max);
    let pad = ((high - low) * 0.05).max(0.01);
    let mut chart = ChartBuilder::on(&prices)
        .caption(spec.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(0)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), (low - pad)..(high + pad))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .y_desc("price")
        .draw()?;
    let plot_width = spec.size.0.saturating_sub(90);
    let width = (plot_width as f64 / (candles.len() as f64 + 1.0) * 0.7).clamp(1.0, 40.0) as u32;
    chart.draw_series(candles.iter().map(|c| {
        CandleStick::new(
            time(c.start + half),
            c.open,
            c.high,
            c.low,
            c.close,
            UP.filled(),
            DOWN.filled(),
            width,
        )
    }))?;
    let top = candles.iter().map(|c| c.volume).max().unwrap_or(1).max(1);
    let mut volume = ChartBuilder::on(&volumes)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, 0i64..top + top / 10)?;
    let span = candles[candles.len() - 1].start - candles[0].start;
    let label = time_label(span);
    volume
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_label_formatter(&|t| t.format(label).to_string())
        .y_desc("volume")
        .draw()?;
    let edge = spec.bar_micros * 7 / 20;
    volume.draw_series(candles.iter().map(|c| {
        Rectangle::new(
            [
                (time(c.start + half - edge), 0),
                (time(c.start + half + edge), c.volume),
            ],
            VOLUME.filled(),
        )
    }))?;
    Ok(())
}
