//! `--plot FILE.svg`: the per-second series as an SVG, rates on top and latency percentiles
//! below, drawn with plotters' SVG backend (text is left to the viewer's fonts).

use std::path::Path;

use plotters::prelude::*;

use super::report::{Percentiles, Second};
use crate::error::CliError;

const SIZE: (u32, u32) = (1000, 720);

/// Draws and writes the file.
pub fn draw(path: &Path, title: &str, seconds: &[Second]) -> Result<(), CliError> {
    draw_charts(path, title, seconds).map_err(|reason| CliError::Plot { path: path.to_owned(), reason })
}

fn draw_charts(path: &Path, title: &str, seconds: &[Second]) -> Result<(), String> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
    let end = seconds.last().map_or(1.0, |s| s.at).max(1.0);

    let rate_max = seconds.iter().map(|s| s.sent.max(s.received).max(s.confirmed)).fold(1.0, f64::max) * 1.1;
    let rate = |value: fn(&Second) -> f64| seconds.iter().map(|s| (s.at, value(s))).collect();
    let rates = vec![
        ("sent", BLUE, rate(|s| s.sent)),
        ("confirmed", GREEN, rate(|s| s.confirmed)),
        ("received", RED, rate(|s| s.received)),
    ];
    chart(&top, "Throughput", "msg/s", end, rate_max, rates)?;

    let latency_max = seconds.iter().filter_map(|s| s.latency).map(|p| p.p99 as f64).fold(1.0, f64::max) * 1.1;
    // Seconds without deliveries have no latency, and no point.
    let percentile = |value: fn(&Percentiles) -> u64| {
        seconds.iter().filter_map(|s| s.latency.map(|p| (s.at, value(&p) as f64))).collect()
    };
    let latencies = vec![
        ("p50", BLUE, percentile(|p| p.p50)),
        ("p95", MAGENTA, percentile(|p| p.p95)),
        ("p99", RED, percentile(|p| p.p99)),
    ];
    chart(&bottom, "Latency", "µs", end, latency_max, latencies)?;
    root.present().map_err(|e| e.to_string())
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    x_max: f64,
    y_max: f64,
    series: Vec<Series>,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(unit)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, colour, points) in series {
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}
