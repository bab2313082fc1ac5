//! `--out FILE.svg`: msg/s against prefetch, one line per handler time, both axes
//! logarithmic; drawn with plotters' SVG backend (text is left to the viewer's fonts).

use std::path::Path;

use plotters::prelude::*;

use super::{Cell, HANDLER_MS, PREFETCH};

const SIZE: (u32, u32) = (900, 600);
const COLOURS: [RGBColor; 3] = [BLUE, MAGENTA, RED];

/// Draws the cells and writes the file.
pub fn draw(path: &Path, cells: &[Cell]) -> Result<(), String> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let rates = cells.iter().map(Cell::rate).filter(|r| r.is_finite() && *r > 0.0);
    let (low, high) = rates.fold((f64::MAX, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let low = if low > high { 1.0 } else { low / 2.0 };
    let x_max = f64::from(PREFETCH[PREFETCH.len() - 1]);
    let mut chart = ChartBuilder::on(&root)
        .caption("Acking consumer throughput by prefetch and handler time", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((0.8f64..x_max * 1.25).log_scale(), (low..high * 2.0).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("prefetch (handlers at once)")
        .y_desc("msg/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (ms, colour) in HANDLER_MS.into_iter().zip(COLOURS) {
        let points: Vec<(f64, f64)> = PREFETCH
            .iter()
            .filter_map(|&p| cells.iter().find(|c| c.prefetch == p && c.handler_ms == ms))
            .map(|c| (f64::from(c.prefetch), c.rate()))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("handler {ms} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled()))).map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
