//! Plain-text tables: a header row, a rule, and columns padded to width.

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Number columns.
    Right,
}

/// A table built row by row and rendered with [`Table::render`].
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers; the first column is left-aligned,
    /// the others right-aligned (change with [`Table::align`]).
    pub fn new<S: AsRef<str>>(header: &[S]) -> Table {
        let header: Vec<String> = header.iter().map(|h| h.as_ref().to_string()).collect();
        let align = (0..header.len())
            .map(|i| if i == 0 { Align::Left } else { Align::Right })
            .collect();
        Table {
            header,
            align,
            rows: Vec::new(),
        }
    }

    /// Sets column `col`'s alignment.
    pub fn align(mut self, col: usize, a: Align) -> Table {
        if let Some(x) = self.align.get_mut(col) {
            *x = a;
        }
        self
    }

    /// Appends a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, ending in a newline.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header[c])
                    .chain(self.rows.iter().map(|r| &r[c]))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(c, s)| match self.align[c] {
                    Align::Left => format!("{s:<w$}", w = widths[c]),
                    Align::Right => format!("{s:>w$}", w = widths[c]),
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rule.join("  "));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// `v` with `digits` decimals, or `-` when absent.
pub fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_aligned_columns() {
        let mut t = Table::new(&["name", "ms"]);
        t.row(vec!["vessel".into(), "1.5".into()]);
        t.row(vec!["runc".into(), "12.25".into()]);
        assert_eq!(
            t.render(),
            "name       ms\n------  -----\nvessel    1.5\nrunc    12.25\n"
        );
    }

    #[test]
    fn pads_short_rows_and_left_aligns_on_request() {
        let mut t = Table::new(&["a", "b", "c"]).align(2, Align::Left);
        t.row(vec!["x".into()]);
        t.row(vec!["y".into(), "22".into(), "zz".into()]);
        assert_eq!(t.render(), "a   b  c\n-  --  --\nx\ny  22  zz\n");
    }

    #[test]
    fn numbers() {
        assert_eq!(num(Some(1.23456), 2), "1.23");
        assert_eq!(num(None, 2), "-");
        assert_eq!(num(Some(f64::NAN), 1), "-");
    }
}
