//! Line charts as SVG (plotters' SVG backend, no font files needed): the bench's latency
//! against offered load and memory against sockets.

use std::path::Path;

use plotters::prelude::*;

/// One line of a chart: a server and a percentile, say.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Index into the palette; one per server, so a server keeps its colour across charts.
    pub color: usize,
}

pub fn chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
    log_y: bool,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let pts = || lines.iter().flat_map(|l| l.points.iter().copied());
    let x_max = pts().map(|p| p.0).fold(0.0, f64::max) * 1.05;
    let y_max = pts().map(|p| p.1).fold(0.0, f64::max) * 1.2;
    let y_min = pts().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64);
    // The two y axes are different types, hence a macro rather than a function.
    macro_rules! plot_on {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .draw()
                .map_err(|e| err(&e))?;
            for l in lines {
                let color = Palette99::pick(l.color).to_rgba();
                let style = color.stroke_width(2);
                let series = if l.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(l.points.clone(), 6, 4, style))
                        .map_err(|e| err(&e))?
                } else {
                    chart
                        .draw_series(LineSeries::new(l.points.clone(), style))
                        .map_err(|e| err(&e))?
                };
                series.label(l.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
                chart
                    .draw_series(l.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(&e))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    if log_y {
        let lo = (y_min * 0.8).max(1e-3);
        plot_on!(builder
            .build_cartesian_2d(0f64..x_max, (lo..y_max.max(lo * 10.0)).log_scale())
            .map_err(|e| err(&e))?);
    } else {
        plot_on!(builder
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| err(&e))?);
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
