//! A small SVG line-plot writer (axes, ticks, legend), enough for latency
//! CDFs and sweeps.

use std::fmt::Write;

/// One line.
#[derive(Debug, Clone)]
pub struct PlotSeries {
    /// Legend text.
    pub label: String,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
}

/// A line plot.
#[derive(Debug, Clone)]
pub struct LinePlot {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis (values must be > 0).
    pub log_x: bool,
    /// Lines.
    pub series: Vec<PlotSeries>,
}

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let s = if n < 1.5 {
        1.0
    } else if n < 3.0 {
        2.0
    } else if n < 7.0 {
        5.0
    } else {
        10.0
    };
    s * mag
}

fn label(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

impl LinePlot {
    /// Renders the plot as an SVG document.
    pub fn render(&self) -> String {
        let (w, h) = (760.0, 480.0);
        let (ml, mr, mt, mb) = (70.0, 210.0, 40.0, 55.0);
        let pw = w - ml - mr;
        let ph = h - mt - mb;
        let pts = self.series.iter().flat_map(|s| s.points.iter());
        let tx = |x: f64| if self.log_x { x.max(1e-9).log10() } else { x };
        let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
        for &(x, y) in pts {
            x0 = x0.min(tx(x));
            x1 = x1.max(tx(x));
            y1 = y1.max(y);
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        // Decade ticks need whole decades; narrower log ranges get
        // power-of-two ticks and keep their own bounds.
        let decades = self.log_x && x1 - x0 > 2.5;
        if decades {
            x0 = x0.floor();
            x1 = x1.ceil();
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let ystep = nice_step(if y1 > 0.0 { y1 } else { 1.0 });
        let y1 = ((y1 / ystep).ceil() * ystep).max(ystep);
        let sx = |x: f64| ml + (tx(x) - x0) / (x1 - x0) * pw;
        let sy = |y: f64| mt + ph - y / y1 * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            ml + pw / 2.0,
            esc(&self.title)
        );
        // Grid and ticks.
        let mut y = 0.0;
        while y <= y1 + 1e-9 {
            let py = sy(y);
            let _ = writeln!(
                s,
                r##"<line x1="{ml}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                ml + pw,
                ml - 6.0,
                py + 4.0,
                label(y)
            );
            y += ystep;
        }
        if self.log_x && !decades {
            let mut e = (x0 / 2f64.log10()).ceil() as i32;
            while e as f64 * 2f64.log10() <= x1 + 1e-9 {
                let v = 2f64.powi(e);
                let px = sx(v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{px:.1}" y1="{mt}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    mt + ph,
                    mt + ph + 18.0,
                    label(v)
                );
                e += 1;
            }
        } else if self.log_x {
            let mut e = x0 as i32;
            while e as f64 <= x1 {
                let px = ml + (e as f64 - x0) / (x1 - x0) * pw;
                let _ = writeln!(
                    s,
                    r##"<line x1="{px:.1}" y1="{mt}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    mt + ph,
                    mt + ph + 18.0,
                    label(10f64.powi(e))
                );
                e += 1;
            }
        } else {
            let step = nice_step(x1 - x0);
            let mut x = (x0 / step).ceil() * step;
            while x <= x1 + 1e-9 {
                let px = sx(x);
                let _ = writeln!(
                    s,
                    r##"<line x1="{px:.1}" y1="{mt}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    mt + ph,
                    mt + ph + 18.0,
                    label(x)
                );
                x += step;
            }
        }
        let _ = writeln!(
            s,
            r#"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            ml + pw / 2.0,
            h - 12.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            mt + ph / 2.0,
            esc(&self.y_label)
        );
        for (i, ser) in self.series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let dash = if i >= COLORS.len() || ser.label.ends_with(" max") {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let path: Vec<String> = ser
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            if !path.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{c}" stroke-width="1.8"{dash} points="{}"/>"#,
                    path.join(" ")
                );
            }
            let ly = mt + 10.0 + i as f64 * 18.0;
            let lx = ml + pw + 12.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                esc(&ser.label)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_well_formed_svg() {
        let p = LinePlot {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: true,
            series: vec![PlotSeries {
                label: "s".into(),
                points: vec![(0.1, 0.0), (10.0, 0.5), (100.0, 1.0)],
            }],
        };
        let s = p.render();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a &lt; b"));
        assert!(s.contains("<polyline"));
        assert_eq!(s.matches("<polyline").count(), 1);
    }
}
