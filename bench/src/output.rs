//! Where a run writes: raw data (`data/*.csv`), charts (`charts/*.png`)
//! and the report's sections; and the statistics the sections quote.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The output folder of a run.
#[derive(Debug, Clone)]
pub struct Out {
    dir: PathBuf,
}

impl Out {
    /// Creates `dir/data` and `dir/charts`.
    pub fn new(dir: &Path) -> anyhow::Result<Out> {
        for sub in ["data", "charts"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        Ok(Out {
            dir: dir.to_path_buf(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `data/<name>.csv`; returns its path relative to the folder.
    pub fn csv(&self, name: &str, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<String> {
        let mut text = header.join(",");
        text.push('\n');
        for row in rows {
            text.push_str(&row.join(","));
            text.push('\n');
        }
        let relative = format!("data/{name}.csv");
        std::fs::write(self.dir.join(&relative), text)
            .with_context(|| format!("cannot write {relative}"))?;
        Ok(relative)
    }

    /// The path of `charts/<name>.png`, and that path relative to the folder.
    pub fn chart(&self, name: &str) -> (PathBuf, String) {
        let relative = format!("charts/{name}.png");
        (self.dir.join(&relative), relative)
    }
}

/// One section of the report.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// Its heading.
    pub title: String,
    /// Its markdown body.
    pub body: String,
}

impl Section {
    /// An empty section titled `title`.
    pub fn new(title: impl Into<String>) -> Section {
        Section {
            title: title.into(),
            body: String::new(),
        }
    }

    /// Appends a paragraph.
    pub fn text(&mut self, text: &str) {
        self.body.push_str(text.trim_end());
        self.body.push_str("\n\n");
    }

    /// Appends a table.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.body, "| {} |", header.join(" | "));
        let _ = writeln!(
            self.body,
            "|{}",
            header.iter().map(|_| "---|").collect::<String>()
        );
        for row in rows {
            let _ = writeln!(self.body, "| {} |", row.join(" | "));
        }
        self.body.push('\n');
    }

    /// Appends an image and the raw data's link.
    pub fn figure(&mut self, chart: &str, caption: &str, data: &str) {
        let _ = writeln!(self.body, "![{caption}]({chart})\n");
        let _ = writeln!(self.body, "Raw data: [`{data}`]({data}).\n");
    }
}

/// One line of the report's summary table.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured.
    pub what: String,
    /// Our figure.
    pub ours: String,
    /// The thesis's, if it published one.
    pub thesis: String,
    /// The physical limit of the emulated link.
    pub limit: String,
}

/// The `p`-th percentile (0–100) of `values`, nearest rank; NaN if empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The mean of `values`; NaN if empty.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// A least-squares line `y = a + b·x` through `points`.
pub fn linear_fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}

/// Milliseconds with a precision that suits their size.
pub fn ms(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms.is_nan() {
        "–".into()
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Bytes in B, kB or MB (decimal).
pub fn size(bytes: f64) -> String {
    if bytes >= 1e6 {
        format!("{:.1} MB", bytes / 1e6)
    } else if bytes >= 1e3 {
        format!("{:.0} kB", bytes / 1e3)
    } else {
        format!("{bytes:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 90.0), 5.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(mean(&v), 3.0);
        let (a, b) = linear_fit(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]);
        assert!((a - 1.0).abs() < 1e-9 && (b - 2.0).abs() < 1e-9);
        assert_eq!(ms(0.0123), "12.3 ms");
        assert_eq!(size(1_500_000.0), "1.5 MB");
    }
}
