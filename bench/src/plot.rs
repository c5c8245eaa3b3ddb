//! Plots of the overhead and consolidation reports: drawn as SVG with
//! plotters, rasterized to PNG with resvg (system fonts, DejaVu Sans).

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

/// Colors of the series, in order (native, vessel, vessel-vm, runc, crun, ...).
const PALETTE: [RGBColor; 7] = [
    RGBColor(90, 90, 90),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One series of grouped bars: per category, `(median, min, max)` or none.
#[derive(Debug, Clone)]
pub struct BarSeries {
    /// Legend text.
    pub name: String,
    /// One entry per category.
    pub values: Vec<Option<(f64, f64, f64)>>,
}

/// Grouped bars with min-max whiskers.
#[derive(Debug, Clone)]
pub struct Bars {
    /// Caption.
    pub title: String,
    /// Y axis description.
    pub y_desc: String,
    /// Group names along x.
    pub categories: Vec<String>,
    /// The bars of each group, one per series.
    pub series: Vec<BarSeries>,
    /// A horizontal reference line (1.0 = native).
    pub reference: Option<f64>,
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct LineSeries {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
}

/// A line chart with x on a log2 scale (instances: 1, 2, 4, ... 32).
#[derive(Debug, Clone)]
pub struct Lines {
    /// Caption.
    pub title: String,
    /// X axis description.
    pub x_desc: String,
    /// Y axis description.
    pub y_desc: String,
    /// The lines.
    pub series: Vec<LineSeries>,
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e:?}")
}

/// The grouped bar chart as an SVG document.
pub fn bars_svg(b: &Bars) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let top = b
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten().map(|v| v.2.max(v.0)))
            .fold(b.reference.unwrap_or(0.0), f64::max);
        let ymax = (top * 1.15).max(0.1);
        let n = b.categories.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(&b.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n as f64, 0.0..ymax)
            .map_err(err)?;
        let cats = b.categories.clone();
        let fmt = move |x: &f64| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 1e-6 {
                cats.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&fmt)
            .y_desc(b.y_desc.as_str())
            .draw()
            .map_err(err)?;
        let k = b.series.len().max(1) as f64;
        let width = 0.8 / k;
        for (si, s) in b.series.iter().enumerate() {
            let color = PALETTE[si % PALETTE.len()];
            let x0 = |ci: usize| ci as f64 + 0.1 + si as f64 * width;
            chart
                .draw_series(s.values.iter().enumerate().filter_map(|(ci, v)| {
                    v.map(|(m, _, _)| {
                        Rectangle::new([(x0(ci), 0.0), (x0(ci) + width * 0.9, m)], color.filled())
                    })
                }))
                .map_err(err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart
                .draw_series(s.values.iter().enumerate().filter_map(|(ci, v)| {
                    v.map(|(_, lo, hi)| {
                        let x = x0(ci) + width * 0.45;
                        PathElement::new(vec![(x, lo), (x, hi)], BLACK.stroke_width(1))
                    })
                }))
                .map_err(err)?;
        }
        if let Some(r) = b.reference {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, r), (n as f64, r)],
                    BLACK.stroke_width(1),
                )))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Line charts side by side as one SVG document.
pub fn lines_svg(panels: &[Lines]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (600 * panels.len().max(1) as u32, 480))
            .into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        for (area, p) in root
            .split_evenly((1, panels.len().max(1)))
            .iter()
            .zip(panels)
        {
            let pts = p.series.iter().flat_map(|s| s.points.iter());
            let xmax = pts.clone().map(|q| q.0).fold(1.0, f64::max);
            let ymax = pts.map(|q| q.1).fold(0.0, f64::max) * 1.15;
            let lx = xmax.log2().max(1.0);
            let mut chart = ChartBuilder::on(area)
                .caption(&p.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d(-0.2..lx + 0.2, 0.0..ymax.max(1e-9))
                .map_err(err)?;
            let fmt = |x: &f64| {
                let r = x.round();
                if (x - r).abs() < 1e-6 && r >= 0.0 {
                    format!("{}", 2f64.powf(r))
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .x_labels(lx as usize * 2 + 3)
                .x_label_formatter(&fmt)
                .x_desc(p.x_desc.as_str())
                .y_desc(p.y_desc.as_str())
                .draw()
                .map_err(err)?;
            for (si, s) in p.series.iter().enumerate() {
                let color = PALETTE[si % PALETTE.len()];
                let xy: Vec<(f64, f64)> = s.points.iter().map(|(x, y)| (x.log2(), *y)).collect();
                chart
                    .draw_series(plotters::series::LineSeries::new(
                        xy.clone(),
                        color.stroke_width(2),
                    ))
                    .map_err(err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(xy.into_iter().map(|q| Circle::new(q, 3, color.filled())))
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Writes `<base>.svg` and `<base>.png` (rendered from the SVG).
pub fn write_svg_png(svg: &str, base: &Path) -> Result<()> {
    if let Some(d) = base.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let svg_path = base.with_extension("svg");
    std::fs::write(&svg_path, svg).with_context(|| format!("writing {}", svg_path.display()))?;
    let png_path = base.with_extension("png");
    std::fs::write(&png_path, svg_to_png(svg)?)
        .with_context(|| format!("writing {}", png_path.display()))
}

/// Rasterizes an SVG document to PNG bytes at its own size.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_system_fonts();
    db.set_sans_serif_family("DejaVu Sans");
    let opt = resvg::usvg::Options {
        fontdb: Arc::new(db),
        ..Default::default()
    };
    let tree = resvg::usvg::Tree::from_str(svg, &opt).context("parsing the plot's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow!("empty plot size {size:?}"))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding the plot as PNG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_lines_render_to_svg_and_png() {
        let b = Bars {
            title: "t".into(),
            y_desc: "relative to native".into(),
            categories: vec!["a".into(), "b".into()],
            series: vec![
                BarSeries {
                    name: "native".into(),
                    values: vec![Some((1.0, 1.0, 1.0)), Some((1.0, 0.9, 1.1))],
                },
                BarSeries {
                    name: "vessel".into(),
                    values: vec![Some((0.98, 0.95, 1.0)), None],
                },
            ],
            reference: Some(1.0),
        };
        let svg = bars_svg(&b).unwrap();
        assert!(svg.contains("<svg") && svg.contains("vessel"), "{svg}");
        let l = Lines {
            title: "agg".into(),
            x_desc: "instances".into(),
            y_desc: "events/s".into(),
            series: vec![LineSeries {
                name: "native".into(),
                points: vec![(1.0, 10.0), (2.0, 19.0), (4.0, 20.0)],
            }],
        };
        let svg2 = lines_svg(&[l.clone(), l]).unwrap();
        let d = tempfile::tempdir().unwrap();
        write_svg_png(&svg, &d.path().join("bars")).unwrap();
        write_svg_png(&svg2, &d.path().join("lines")).unwrap();
        let png = std::fs::read(d.path().join("bars.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(d.path().join("lines.svg").exists());
    }
}
