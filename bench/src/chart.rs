//! Draws the report's PNG charts with plotters: x–y charts ([`Chart`]) and
//! grouped bar charts ([`BarChart`]), 1000×600 pixels, text in DejaVu Sans.
//!
//! Plotters' `ab_glyph` text renderer has no built-in font, so the first chart
//! drawn reads `/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf` (Debian's
//! `fonts-dejavu-core`) and registers it as `sans-serif`.

use std::fmt::Display;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::{AsRangedCoord, KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::prelude::*;
use plotters::style::register_font;

/// Where the chart font is read from.
const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Size of every chart, in pixels.
const SIZE: (u32, u32) = (1000, 600);
/// Approximate size of the plotting area, in pixels (for placing the legend).
const PLOT: (f64, f64) = (890.0, 480.0);
/// Series colours, cycled.
const COLORS: [u32; 8] = [
    0x1f77b4, 0xd62728, 0x2ca02c, 0xff7f0e, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf,
];

/// The bitmap drawing area every chart is drawn on.
type Root<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A solid line through the points.
    Line,
    /// Only the points, as dots.
    Points,
    /// A solid line with a dot on each point.
    LineAndPoints,
    /// A dashed line through the points.
    Dashed,
}

/// One labelled series of an x–y chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// The label shown in the legend.
    pub label: String,
    /// The (x, y) points, drawn in this order.
    pub points: Vec<(f64, f64)>,
    /// How the series is drawn.
    pub style: Style,
}

impl Series {
    /// A series named `label`.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, style: Style) -> Series {
        Series {
            label: label.into(),
            points,
            style,
        }
    }
}

/// An x–y chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The caption above the chart.
    pub title: String,
    /// The x axis description.
    pub x_label: String,
    /// The y axis description.
    pub y_label: String,
    /// Whether the x axis is logarithmic (points with x ≤ 0 are then left out).
    pub x_log: bool,
    /// Whether the y axis is logarithmic (points with y ≤ 0 are then left out).
    pub y_log: bool,
    /// The series, each with its own colour and legend entry.
    pub series: Vec<Series>,
    /// Vertical marker lines with a label, e.g. (3.0, "offload").
    pub markers: Vec<(f64, String)>,
}

impl Chart {
    /// A chart with linear axes, no series and no markers.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Chart {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_log: false,
            y_log: false,
            series: Vec::new(),
            markers: Vec::new(),
        }
    }

    /// Draws it to `path` (PNG, 1000×600).
    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let ok = |p: &(f64, f64)| axis_ok(p.0, self.x_log) && axis_ok(p.1, self.y_log);
        let pts = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().copied().filter(ok))
        };
        let mx = self.markers.iter().map(|m| m.0);
        let x = axis_range(pts().map(|p| p.0).chain(mx), self.x_log, false);
        let y = axis_range(pts().map(|p| p.1), self.y_log, true);
        render(path, &self.title, |root| match (self.x_log, self.y_log) {
            (false, false) => self.draw(root, x.clone(), y.clone(), &x, &y),
            (true, false) => self.draw(root, log_axis(&x), y.clone(), &x, &y),
            (false, true) => self.draw(root, x.clone(), log_axis(&y), &x, &y),
            (true, true) => self.draw(root, log_axis(&x), log_axis(&y), &x, &y),
        })
    }

    /// Draws the chart on `root` with the axis specs `xs`, `ys` covering `x`, `y`.
    fn draw<XS, YS>(&self, root: &Root<'_>, xs: XS, ys: YS, x: &Range<f64>, y: &Range<f64>) -> Drawn
    where
        XS: AsRangedCoord<Value = f64>,
        YS: AsRangedCoord<Value = f64>,
        XS::CoordDescType: ValueFormatter<f64>,
        YS::CoordDescType: ValueFormatter<f64>,
    {
        let descs = [self.x_label.as_str(), self.y_label.as_str()];
        let mut chart = build(root, &self.title, xs, ys, descs, &|v| fmt_num(*v))?;
        // Where the data lies, normalised to 0..1, to keep the legend off it.
        let norm = |(px, py): (f64, f64)| (norm(px, x, self.x_log), norm(py, y, self.y_log));
        let mut taken = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let color = color(i);
            let (line, dot) = (color.stroke_width(2), color.filled());
            let ok = |p: &(f64, f64)| axis_ok(p.0, self.x_log) && axis_ok(p.1, self.y_log);
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(ok).collect();
            taken.extend(pts.iter().map(|&p| norm(p)));
            for w in pts.windows(2).filter(|_| s.style != Style::Points) {
                let (a, b) = (norm(w[0]), norm(w[1]));
                taken.extend((1..20).map(|k| lerp(a, b, f64::from(k) / 20.0)));
            }
            let dots = || pts.iter().map(|&p| Circle::new(p, 4, dot));
            let anno = match s.style {
                Style::Dashed => chart.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, line)),
                Style::Points => chart.draw_series(dots()),
                _ => chart.draw_series(LineSeries::new(pts.clone(), line)),
            };
            let anno = anno.map_err(plot_err)?.label(s.label.as_str());
            let (half, r) = match s.style {
                Style::Points => (0, 4),
                Style::LineAndPoints => (10, 4),
                Style::Line | Style::Dashed => (10, 0),
            };
            anno.legend(move |p| {
                let mark = PathElement::new([(10 - half, 0), (10 + half, 0)], line);
                EmptyElement::at(p) + mark + Circle::new((10, 0), r, dot)
            });
            if s.style == Style::LineAndPoints {
                chart.draw_series(dots()).map_err(plot_err)?;
            }
        }
        for (mx, label) in self.markers.iter().filter(|m| axis_ok(m.0, self.x_log)) {
            let ends = [(*mx, y.start), (*mx, y.end)];
            let dashes = DashedLineSeries::new(ends, 6, 4, BLACK.stroke_width(1));
            chart.draw_series(dashes).map_err(plot_err)?;
            let text = Text::new(label.clone(), (4, 4), ("sans-serif", 14));
            chart
                .draw_series([EmptyElement::at(ends[1]) + text])
                .map_err(plot_err)?;
            let mx = norm(ends[0]).0;
            taken.extend((0..=20).map(|k| (mx, f64::from(k) / 20.0)));
        }
        let labels: Vec<&str> = self.series.iter().map(|s| s.label.as_str()).collect();
        draw_legend(&mut chart, &labels, &taken)
    }
}

/// Grouped bars: one group per category, one bar per series in each group.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// The caption above the chart.
    pub title: String,
    /// The y axis description.
    pub y_label: String,
    /// Whether the y axis is logarithmic (values ≤ 0 are then not drawn).
    pub y_log: bool,
    /// The category names along the x axis.
    pub categories: Vec<String>,
    /// The series: a label and one value per category, in the order of `categories`.
    pub series: Vec<(String, Vec<f64>)>,
}

impl BarChart {
    /// Draws it to `path` (PNG, 1000×600).
    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let values = self.series.iter().flat_map(|s| s.1.iter().copied());
        let y = axis_range(values, self.y_log, true);
        render(path, &self.title, |root| match self.y_log {
            true => self.draw(root, log_axis(&y), &y),
            false => self.draw(root, y.clone(), &y),
        })
    }

    /// Draws the chart on `root` with the y axis spec `ys` covering `y`.
    fn draw<YS>(&self, root: &Root<'_>, ys: YS, y: &Range<f64>) -> Drawn
    where
        YS: AsRangedCoord<Value = f64>,
        YS::CoordDescType: ValueFormatter<f64>,
    {
        let cats = Categories(self.categories.clone());
        let names = |v: &f64| cats.format_ext(v);
        let descs = ["", self.y_label.as_str()];
        let mut chart = build(root, &self.title, cats.clone(), ys, descs, &names)?;
        let n = self.categories.len().max(1) as f64;
        let width = 0.8 / self.series.len().max(1) as f64;
        let mut taken = Vec::new();
        for (i, (label, values)) in self.series.iter().enumerate() {
            let color = color(i);
            let mut bars = Vec::new();
            let shown = values
                .iter()
                .enumerate()
                .filter(|v| axis_ok(*v.1, self.y_log));
            for (c, &v) in shown {
                let x0 = c as f64 + 0.1 + width * i as f64;
                let corners = [(x0, y.start), (x0 + width * 0.95, v)];
                bars.push(Rectangle::new(corners, color.filled()));
                let top = norm(v, y, self.y_log);
                for bx in [x0, x0 + width / 2.0, x0 + width].map(|bx| bx / n) {
                    taken.extend((0..=50).map(|j| (bx, top * f64::from(j) / 50.0)));
                }
            }
            let anno = chart.draw_series(bars).map_err(plot_err)?;
            let mark = move |(x, y): (i32, i32)| [(x, y - 5), (x + 16, y + 5)];
            anno.label(label.as_str())
                .legend(move |p| Rectangle::new(mark(p), color.filled()));
        }
        let labels: Vec<&str> = self.series.iter().map(|s| s.0.as_str()).collect();
        draw_legend(&mut chart, &labels, &taken)
    }
}

/// The x axis of a bar chart: category `i` spans `i..i + 1` and is labelled at its centre.
#[derive(Clone)]
struct Categories(Vec<String>);

impl Ranged for Categories {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let n = self.0.len().max(1) as f64;
        limit.0 + (value / n * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0.len()).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> Range<f64> {
        0.0..self.0.len().max(1) as f64
    }
}

impl ValueFormatter<f64> for Categories {
    fn format(value: &f64) -> String {
        fmt_num(*value)
    }

    fn format_ext(&self, value: &f64) -> String {
        let i = value.floor().max(0.0) as usize;
        self.0.get(i).cloned().unwrap_or_default()
    }
}

/// A chart on a bitmap with the x and y axes `X`, `Y`.
type Plot<'a, 'b, X, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>;

/// What drawing on a chart returns.
type Drawn = anyhow::Result<()>;

/// Draws with `draw` on a fresh white 1000×600 bitmap and saves it as the PNG `path`.
fn render(path: &Path, title: &str, draw: impl FnOnce(&Root<'_>) -> Drawn) -> Drawn {
    ensure_font()?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)
        .map_err(plot_err)
        .and_then(|()| draw(&root))
        .and_then(|()| root.present().map_err(plot_err))
        .with_context(|| format!("drawing chart {title:?} to {}", path.display()))
}

/// The chart titled `title` on `root` with the axes `xs`, `ys` and their mesh drawn:
/// axis descriptions `descs` (x, y), x labels from `x_fmt` (no vertical grid lines
/// without an x description, as on bar charts).
fn build<'a, 'b, XS, YS>(
    root: &'a Root<'b>,
    title: &str,
    xs: XS,
    ys: YS,
    descs: [&str; 2],
    x_fmt: &dyn Fn(&f64) -> String,
) -> anyhow::Result<Plot<'a, 'b, XS::CoordDescType, YS::CoordDescType>>
where
    XS: AsRangedCoord<Value = f64>,
    YS: AsRangedCoord<Value = f64>,
    XS::CoordDescType: ValueFormatter<f64>,
    YS::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(xs, ys)
        .map_err(plot_err)?;
    let mut mesh = chart.configure_mesh();
    if descs[0].is_empty() {
        mesh.disable_x_mesh();
    }
    mesh.x_desc(descs[0])
        .y_desc(descs[1])
        .x_label_formatter(x_fmt)
        .y_label_formatter(&|v| fmt_num(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

/// Draws the legend box with `labels` in the first corner (of upper right, upper left,
/// lower right, lower left) holding none of the normalised points `taken`.
fn draw_legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
    labels: &[&str],
    taken: &[(f64, f64)],
) -> anyhow::Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
    let w = (longest * 8.0 + 70.0) / PLOT.0;
    let h = (labels.len() as f64 * 18.0 + 30.0) / PLOT.1;
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
        (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let inside =
        |x0: f64, y0: f64, (x, y): (f64, f64)| x >= x0 && x <= x0 + w && y >= y0 && y <= y0 + h;
    let free = |c: &(_, f64, f64)| !taken.iter().any(|&p| inside(c.1, c.2, p));
    let corner = corners.into_iter().find(free);
    let position = corner.map_or(SeriesLabelPosition::UpperRight, |c| c.0);
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_err)
}

/// The colour of the `i`th series.
fn color(i: usize) -> RGBColor {
    let [_, r, g, b] = COLORS[i % COLORS.len()].to_be_bytes();
    RGBColor(r, g, b)
}

/// Turns a plotters error into an anyhow one.
fn plot_err(e: impl Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// Whether `v` can be placed on an axis (a log one when `log`).
fn axis_ok(v: f64, log: bool) -> bool {
    v.is_finite() && (!log || v > 0.0)
}

/// Where `v` lies on the axis covering `r`, 0 at its start and 1 at its end.
fn norm(v: f64, r: &Range<f64>, log: bool) -> f64 {
    if log {
        (v / r.start).ln() / (r.end / r.start).ln()
    } else {
        (v - r.start) / (r.end - r.start)
    }
}

/// The point a fraction `t` of the way from `a` to `b`.
fn lerp(a: (f64, f64), b: (f64, f64), t: f64) -> (f64, f64) {
    (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
}

/// The axis range covering `values` with a small margin. Non-finite values (and, on log
/// axes, non-positive ones) are ignored; a linear `zero_based` axis starts at 0 when
/// every value is ≥ 0. The range always has some width.
fn axis_range(values: impl Iterator<Item = f64>, log: bool, zero_based: bool) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|&v| axis_ok(v, log)) {
        (lo, hi) = (lo.min(v), hi.max(v));
    }
    if lo > hi {
        return if log { 1.0..10.0 } else { 0.0..1.0 };
    }
    if log {
        let f = if lo == hi { 2.0 } else { (hi / lo).powf(0.05) };
        return lo / f..hi * f;
    }
    if zero_based && lo >= 0.0 {
        return 0.0..if hi > 0.0 { hi * 1.05 } else { 1.0 };
    }
    let w = match (lo < hi, lo == 0.0) {
        (true, _) => 0.0,
        (false, true) => 1.0,
        (false, false) => lo.abs() / 10.0,
    };
    let pad = (hi - lo + 2.0 * w) * 0.05 + w;
    lo - pad..hi + pad
}

/// A log axis over `r`, labelled at 1-2-5 steps (or powers of ten on wide ranges) and
/// with light grid lines at every 1..9 step of each decade.
fn log_axis(r: &Range<f64>) -> WithKeyPoints<LogCoord<f64>> {
    let steps = |mult: &[f64]| -> Vec<f64> {
        let (d0, d1) = (r.start.log10().floor() as i32, r.end.log10().ceil() as i32);
        let all = (d0..=d1).flat_map(|d| mult.iter().map(move |m| m * 10f64.powi(d)));
        all.filter(|v| r.contains(v)).collect()
    };
    let mut bold = steps(&[1.0, 2.0, 5.0]);
    if bold.len() < 3 {
        bold = steps(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    } else if bold.len() > 12 {
        bold = steps(&[1.0]);
        let every = bold.len().div_ceil(12);
        bold = bold.into_iter().step_by(every).collect();
    }
    let light = steps(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let light = if light.len() > 200 { Vec::new() } else { light };
    let axis = r.clone().log_scale().with_key_points(bold);
    axis.with_light_points(light)
}

/// A short axis label for `v`: no trailing zeros, exponent notation for extremes.
fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if !(1e-3..1e6).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Registers DejaVu Sans as `sans-serif`, reading the font file the first time only
/// (a failure is remembered too).
fn ensure_font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = load_font(Path::new(FONT_PATH)).map_err(|e| format!("{e:#}"))?;
        register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT_PATH} is not a usable TrueType font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Reads the font file at `path`, leaked: plotters keeps fonts for the whole process.
fn load_font(path: &Path) -> anyhow::Result<&'static [u8]> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the chart font {}: install Debian's fonts-dejavu-core (scripts/ensure-deps does it)",
            path.display()
        )
    })?;
    Ok(Box::leak(bytes.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saves with `save` to a fresh temporary file and checks a real PNG came out.
    fn check(name: &str, save: impl FnOnce(&Path) -> anyhow::Result<()>) {
        let file = format!("edge-bench-chart-{}-{name}.png", std::process::id());
        let path = std::env::temp_dir().join(file);
        save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: no PNG");
        assert!(bytes.len() > 5000, "{name}: {} bytes", bytes.len());
    }

    fn owned(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn linear_chart_with_marker() {
        let mut c = Chart::new("Latency", "clients", "ms");
        let sq = (1..=10).map(|i| (f64::from(i), f64::from(i * i)));
        c.series
            .push(Series::new("cloud", sq.collect(), Style::LineAndPoints));
        let lin = (1..=10).map(|i| (f64::from(i), f64::from(3 * i)));
        c.series
            .push(Series::new("edge", lin.collect(), Style::Dashed));
        c.markers.push((3.0, "offload".into()));
        check("linear", |p| c.save_png(p));
    }

    #[test]
    fn log_log_chart() {
        let mut c = Chart::new("Throughput", "payload (B)", "req/s");
        (c.x_log, c.y_log) = (true, true);
        let pts = vec![
            (0.0, 5.0),
            (10.0, 1e3),
            (1e3, 300.0),
            (1e5, 2.0),
            (1e6, -1.0),
        ];
        c.series.push(Series::new("a", pts, Style::Line));
        c.series
            .push(Series::new("b", vec![(50.0, 50.0)], Style::Points));
        c.markers.push((1e4, "limit".into()));
        check("loglog", |p| c.save_png(p));
    }

    #[test]
    fn bar_chart() {
        let b = BarChart {
            title: "Cold starts".into(),
            y_label: "ms".into(),
            y_log: false,
            categories: owned(&["python", "rust"]),
            series: vec![
                ("cloud".into(), vec![120.0, 40.0]),
                ("edge".into(), vec![80.0, 25.0]),
            ],
        };
        check("bars", |p| b.save_png(p));
        let b = BarChart { y_log: true, ..b };
        check("bars-log", |p| b.save_png(p));
    }

    #[test]
    fn empty_and_flat_series() {
        let mut c = Chart::new("Nothing yet", "x", "y");
        c.series.push(Series::new("empty", Vec::new(), Style::Line));
        check("empty", |p| c.save_png(p));
        let flat = vec![(2.0, 7.0), (2.0, 7.0)];
        c.series.push(Series::new("flat", flat, Style::Points));
        check("flat", |p| c.save_png(p));
    }

    #[test]
    fn errors_name_the_file() {
        let bad = Path::new("/nonexistent-dir/chart.png");
        let err = Chart::new("t", "x", "y").save_png(bad).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent-dir/chart.png"),
            "{err:#}"
        );
        let font = Path::new("/nonexistent/DejaVuSans.ttf");
        let msg = format!("{:#}", load_font(font).unwrap_err());
        assert!(msg.contains("fonts-dejavu-core"), "{msg}");
        assert!(msg.contains("/nonexistent/DejaVuSans.ttf"), "{msg}");
    }

    #[test]
    fn ranges_have_width() {
        let range = |v: [f64; 2], log, zero| axis_range(v.into_iter(), log, zero);
        assert_eq!(range([5.0, 5.0], false, true), 0.0..5.0 * 1.05);
        assert_eq!(axis_range(std::iter::empty(), false, true), 0.0..1.0);
        for v in [[-1.0, 3.0], [-2.0, -2.0], [0.0, 0.0]] {
            let r = range(v, false, false);
            assert!(r.start < v[0] && r.end > v[1], "{r:?}");
        }
        let r = axis_range([0.0, -2.0, 100.0].into_iter(), true, false);
        assert!(r.start > 10.0 && r.start < 100.0 && r.end > 100.0, "{r:?}");
    }
}
