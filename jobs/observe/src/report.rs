//! One self-contained HTML page with SVG charts: what `logferry report`
//! and every load test write.

use std::error::Error;
use std::fmt::Write as _;

use plotters::backend::SVGBackend;
use plotters::coord::Shift;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::{
    ChartBuilder, Circle, Color, DashedLineSeries, DrawingArea, EmptyElement, IntoDrawingArea,
    IntoFont, LineSeries, PathElement, RGBColor, Rectangle, SeriesLabelPosition, Text, TextStyle,
    WHITE,
};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use crate::kpi::{self, KpiResult, KpiStatus, Thresholds};

/// The charts' figure ids, in page order.
pub const CHART_IDS: [&str; 6] = [
    "chart-latency",
    "chart-throughput",
    "chart-dead-letters",
    "chart-lag",
    "chart-stages",
    "chart-cost",
];

/// A named series of (Unix seconds, value) points.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    /// Legend name (a tenant, a stream/shard).
    pub name: String,
    /// Points, in time order.
    pub points: Vec<(f64, f64)>,
}

/// End-to-end latency quantiles of the records made queryable in one time
/// bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyPoint {
    /// Start of the bucket, Unix seconds.
    pub t: f64,
    /// Median, seconds.
    pub p50_s: f64,
    /// 95th percentile, seconds.
    pub p95_s: f64,
    /// Records in the bucket.
    pub records: u64,
}

/// A stage's durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageRow {
    /// Stage name (forward, aggregate, export, load).
    pub stage: String,
    /// Median, seconds.
    pub p50_s: f64,
    /// 95th percentile, seconds.
    pub p95_s: f64,
    /// Largest, seconds.
    pub max_s: f64,
    /// Runs measured.
    pub count: u64,
}

/// A k6 threshold and whether it held.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ThresholdRow {
    /// Metric, e.g. `e2e_latency`.
    pub metric: String,
    /// Expression, e.g. `p(95)<30000`.
    pub expression: String,
    /// The measured value, as printed.
    pub value: String,
    /// True when it held.
    pub ok: bool,
}

/// A k6 trend's summary (values in `unit`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrendRow {
    /// Trend name.
    pub name: String,
    /// Unit of the values (`ms`, `records/s`).
    pub unit: String,
    /// Mean.
    pub avg: f64,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub med: f64,
    /// Largest.
    pub max: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// Everything the page shows. Empty parts are shown as "no data", never
/// left out, so every page has the same sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReportData {
    /// Page title.
    pub title: String,
    /// What it covers (range, data dir, scenario).
    pub subtitle: String,
    /// When it was written, RFC 3339.
    pub generated_at: String,
    /// Key facts, in order (label, value).
    pub summary: Vec<(String, String)>,
    /// Load test thresholds (empty outside load tests).
    pub thresholds: Vec<ThresholdRow>,
    /// Load test trends (empty outside load tests).
    pub trends: Vec<TrendRow>,
    /// The KPIs.
    pub kpis: Vec<KpiResult>,
    /// End-to-end latency over time.
    pub latency: Vec<LatencyPoint>,
    /// Records per second made queryable, per tenant.
    pub throughput: Vec<Series>,
    /// Dead letters by reason code.
    pub dead_letters: Vec<(String, u64)>,
    /// Source lag per stream/shard, ms.
    pub lag: Vec<Series>,
    /// Stage durations.
    pub stages: Vec<StageRow>,
    /// Cost per million records, USD: logferry against the alternatives
    /// (label, USD), logferry first.
    pub cost: Vec<(String, f64)>,
    /// logferry's cost per million records by item (label, USD).
    pub cost_items: Vec<(String, f64)>,
    /// The end-to-end latency target, seconds: the latency chart's green
    /// dashed line. 0.0 (unset, or any value not above zero) means
    /// [`Thresholds::default`]'s P95 target.
    pub latency_target_s: f64,
    /// The end-to-end latency critical threshold, seconds: the latency
    /// chart's red dashed line. 0.0 (unset, or any value not above zero)
    /// means [`Thresholds::default`]'s P95 critical threshold.
    pub latency_critical_s: f64,
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// Width of every chart's SVG, pixels (two charts side by side on a
/// 1280 px wide page).
const CHART_W: u32 = 600;
/// Height of every chart's SVG, pixels.
const CHART_H: u32 = 340;
/// Height of a plot's data area, roughly: the chart less the caption, the
/// x labels and the margins (used to leave room for the legend).
const PLOT_H: f64 = 240.0;

/// Text.
const INK: RGBColor = RGBColor(0x24, 0x29, 0x2f);
/// Grid lines.
const GRID: RGBColor = RGBColor(0xe4, 0xe7, 0xeb);
/// Faint grid lines.
const FAINT: RGBColor = RGBColor(0xf3, 0xf4, 0xf6);
/// Axes and legend borders.
const AXIS: RGBColor = RGBColor(0x8c, 0x95, 0x9f);
/// P50 lines and bars, logferry's cost bar.
const P50_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// P95 lines and bars.
const P95_COLOR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
/// The latency target's reference line.
const TARGET_COLOR: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
/// The latency critical threshold's reference line.
const CRITICAL_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// Dead letter bars.
const DEAD_LETTER_COLOR: RGBColor = RGBColor(0xc4, 0x4e, 0x52);
/// The alternatives' cost bars.
const ALTERNATIVE_COLOR: RGBColor = RGBColor(0x9a, 0xa4, 0xae);
/// One colour per series (tenants, shards), in turn (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The page's style sheet. Colours of the tables are deliberately not the
/// charts' colours (the screenshot test tells them apart).
const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 20px 40px; background: #f6f8fa; color: #24292f;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 2px 0; color: #57606a; }
section { margin-top: 22px; }
h2 { font-size: 18px; margin: 0 0 8px; }
table { border-collapse: collapse; background: #fff; border: 1px solid #d0d7de; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eaeef2; text-align: left; vertical-align: top; }
thead th { background: #eef1f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mono, code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
tr.ok td.mark, .status.pass { color: #1a7f37; }
tr.bad td.mark, .status.fail { color: #cf222e; }
tr.bad td { background: #ffebe9; }
td.mark { font-weight: 700; width: 1.5em; text-align: center; }
.status { font-weight: 700; text-transform: uppercase; font-size: 12px; }
.status.warn { color: #9a6700; }
.status.na { color: #6e7781; }
.empty, .note { color: #6e7781; font-style: italic; margin: 0 0 4px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; align-items: start; }
figure { margin: 0; padding: 10px; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { margin-top: 6px; color: #57606a; font-size: 13px; }
figure table { margin-top: 8px; width: 100%; font-size: 13px; }
"#;

/// The drawing area every chart is drawn on.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// What drawing a chart returns.
type Drawn = Result<(), Box<dyn Error>>;

/// Renders the report as one self-contained HTML5 page: inline CSS and
/// inline SVG charts, no script, no external resource (the only URL is the
/// SVG namespace). Every page has the same sections: a chart without data
/// says "no data"; the thresholds and trends tables appear when there are
/// any (load tests). All text from `data` is escaped.
pub fn render_html(data: &ReportData) -> String {
    let title = if data.title.trim().is_empty() {
        "logferry report"
    } else {
        data.title.as_str()
    };
    let mut h = String::with_capacity(256 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // Belt and braces: even if some text escaped escaping, the page could
    // not load or run anything.
    h.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\n",
    );
    let _ = writeln!(h, "<title>{}</title>", esc(title));
    let _ = writeln!(h, "<style>{CSS}</style>\n</head>\n<body>\n<main>");

    let _ = writeln!(h, "<header>\n<h1>{}</h1>", esc(title));
    if !data.subtitle.is_empty() {
        let _ = writeln!(h, "<p class=\"subtitle\">{}</p>", esc(&data.subtitle));
    }
    if !data.generated_at.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"generated\">Generated at <time datetime=\"{0}\">{0}</time></p>",
            esc(&data.generated_at)
        );
    }
    h.push_str("</header>\n");

    if !data.thresholds.is_empty() {
        thresholds_html(&mut h, &data.thresholds);
    }
    if !data.trends.is_empty() {
        trends_html(&mut h, &data.trends);
    }
    kpis_html(&mut h, &data.kpis);
    summary_html(&mut h, &data.summary);

    h.push_str("<section id=\"charts\">\n<h2>Charts</h2>\n<div class=\"charts\">\n");
    let t = Thresholds::default();
    let target_s = positive_or(data.latency_target_s, t.e2e_p95_target_s);
    let critical_s = positive_or(data.latency_critical_s, t.e2e_p95_critical_s);
    figure(
        &mut h,
        "chart-latency",
        &latency_svg(&data.latency, target_s, critical_s),
        &format!(
            "End-to-end latency (event time to queryable) per time bucket: P50 and P95, seconds \
             (log scale); dashed: the {} s target and the {} s critical threshold.",
            num(target_s),
            num(critical_s)
        ),
        "",
    );
    figure(
        &mut h,
        "chart-throughput",
        &throughput_svg(&data.throughput),
        "Records made queryable per second, one line per tenant.",
        "",
    );
    figure(
        &mut h,
        "chart-dead-letters",
        &dead_letters_svg(&data.dead_letters),
        "Dead letters by reason code (records).",
        "",
    );
    figure(
        &mut h,
        "chart-lag",
        &lag_svg(&data.lag),
        "Source lag (iterator age) per stream/shard, milliseconds.",
        "",
    );
    figure(
        &mut h,
        "chart-stages",
        &stages_svg(&data.stages),
        "Stage durations per run: P50 and P95, seconds.",
        "",
    );
    figure(
        &mut h,
        "chart-cost",
        &cost_svg(&data.cost),
        "Cost per million records, USD (log scale): logferry against the alternatives; \
         the table breaks logferry's cost down by item.",
        &cost_items_html(&data.cost_items),
    );
    h.push_str("</div>\n</section>\n</main>\n</body>\n</html>\n");
    h
}

// --- Tables ----------------------------------------------------------------

/// The k6 thresholds: ✓ or ✗, metric, expression, measured value.
fn thresholds_html(h: &mut String, rows: &[ThresholdRow]) {
    let failed = rows.iter().filter(|r| !r.ok).count();
    h.push_str("<section id=\"thresholds\">\n<h2>Thresholds</h2>\n");
    let _ = writeln!(
        h,
        "<p class=\"note\">{} of {} held.</p>",
        rows.len() - failed,
        rows.len()
    );
    h.push_str(
        "<table>\n<thead><tr><th></th><th>Metric</th><th>Threshold</th><th>Value</th></tr></thead>\n<tbody>\n",
    );
    for r in rows {
        let (class, mark, word) = if r.ok {
            ("ok", "✓", "held")
        } else {
            ("bad", "✗", "crossed")
        };
        let _ = writeln!(
            h,
            "<tr class=\"{class}\"><td class=\"mark\" title=\"{word}\">{mark}</td><td class=\"mono\">{}</td>\
             <td class=\"mono\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&r.metric),
            esc(&r.expression),
            esc(&r.value)
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// The k6 trends: avg, min, med, max, p(90), p(95), each with its unit.
fn trends_html(h: &mut String, rows: &[TrendRow]) {
    h.push_str("<section id=\"trends\">\n<h2>Trends</h2>\n<table>\n<thead><tr><th>Trend</th>");
    for c in ["avg", "min", "med", "max", "p(90)", "p(95)"] {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        let _ = write!(h, "<tr><td class=\"mono\">{}</td>", esc(&r.name));
        for v in [r.avg, r.min, r.med, r.max, r.p90, r.p95] {
            let _ = write!(h, "<td class=\"num\">{}</td>", esc(&with_unit(v, &r.unit)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// The KPI table: name, value, target, critical, status, basis.
fn kpis_html(h: &mut String, rows: &[KpiResult]) {
    h.push_str("<section id=\"kpis\">\n<h2>KPIs</h2>\n");
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">No KPIs were evaluated.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<table>\n<thead><tr><th>KPI</th><th>Value</th><th>Target</th><th>Critical</th>\
         <th>Status</th><th>Basis</th></tr></thead>\n<tbody>\n",
    );
    for r in rows {
        let class = match r.status {
            KpiStatus::Pass => "pass",
            KpiStatus::Warn => "warn",
            KpiStatus::Fail => "fail",
            KpiStatus::NoData => "na",
        };
        let _ = writeln!(
            h,
            "<tr id=\"kpi-{}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td><span class=\"status {class}\">{}</span></td><td>{}</td></tr>",
            esc(&r.id),
            esc(&r.name),
            esc(&kpi::display(r)),
            esc(&r.target),
            esc(&r.critical),
            r.status.as_str(),
            esc(&r.basis)
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// Key facts as a two-column table.
fn summary_html(h: &mut String, rows: &[(String, String)]) {
    h.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">Nothing to summarise.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n<tbody>\n");
    for (k, v) in rows {
        let _ = writeln!(
            h,
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// logferry's cost per million records by item, with the total.
fn cost_items_html(items: &[(String, f64)]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut h = String::from(
        "<table class=\"cost-items\">\n<thead><tr><th>logferry item</th><th>USD per million records</th></tr></thead>\n<tbody>\n",
    );
    for (label, usd) in items {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(label),
            usd_text(*usd)
        );
    }
    let total: f64 = items
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .sum();
    let _ = writeln!(
        h,
        "<tr><th scope=\"row\">Total</th><td class=\"num\"><strong>{}</strong></td></tr>",
        usd_text(total)
    );
    h.push_str("</tbody>\n</table>\n");
    h
}

/// One chart: `<figure id>`, the SVG, `extra` HTML, the caption.
fn figure(h: &mut String, id: &str, svg: &str, caption: &str, extra: &str) {
    let _ = writeln!(
        h,
        "<figure id=\"{id}\">\n{svg}\n{extra}<figcaption>{}</figcaption>\n</figure>",
        esc(caption)
    );
}

// --- Charts ----------------------------------------------------------------

/// A line of a time series chart.
struct Line {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A horizontal dashed reference line across a time series chart.
struct Reference {
    name: String,
    color: RGBColor,
    y: f64,
}

/// End-to-end latency P50 and P95 over time, with the target and critical
/// reference lines.
fn latency_svg(points: &[LatencyPoint], target_s: f64, critical_s: f64) -> String {
    const TITLE: &str = "End-to-end latency";
    let lines = [
        Line {
            name: "P50".into(),
            color: P50_COLOR,
            points: points.iter().map(|p| (p.t, p.p50_s)).collect(),
        },
        Line {
            name: "P95".into(),
            color: P95_COLOR,
            points: points.iter().map(|p| (p.t, p.p95_s)).collect(),
        },
    ];
    if !has_points(&lines) {
        return no_data_svg(TITLE);
    }
    let refs = [
        Reference {
            name: format!("target {} s", num(target_s)),
            color: TARGET_COLOR,
            y: target_s,
        },
        Reference {
            name: format!("critical {} s", num(critical_s)),
            color: CRITICAL_COLOR,
            y: critical_s,
        },
    ];
    render_svg(TITLE, |root| {
        time_chart(
            root,
            TITLE,
            "latency (s, log scale)",
            &lines,
            &refs,
            Scale::Log,
        )
    })
}

/// Records per second per tenant over time.
fn throughput_svg(series: &[Series]) -> String {
    series_svg("Throughput per tenant", "records/s", series)
}

/// Source lag per stream/shard over time.
fn lag_svg(series: &[Series]) -> String {
    series_svg("Source lag per stream/shard", "lag (ms)", series)
}

/// One line per series, coloured in turn.
fn series_svg(title: &str, y_desc: &str, series: &[Series]) -> String {
    let lines: Vec<Line> = series
        .iter()
        .enumerate()
        .map(|(i, s)| Line {
            name: clean(&s.name),
            color: PALETTE[i % PALETTE.len()],
            points: s.points.clone(),
        })
        .collect();
    if !has_points(&lines) {
        return no_data_svg(title);
    }
    render_svg(title, |root| {
        time_chart(root, title, y_desc, &lines, &[], Scale::Linear)
    })
}

/// Dead letters by reason, horizontal bars with their counts.
fn dead_letters_svg(rows: &[(String, u64)]) -> String {
    const TITLE: &str = "Dead letters by reason";
    if rows.is_empty() {
        return no_data_svg(TITLE);
    }
    render_svg(TITLE, |root| {
        let names: Vec<String> = rows.iter().map(|(r, _)| short(&clean(r), 28)).collect();
        let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
        let n = rows.len();
        let mut chart = ChartBuilder::on(root)
            .caption(TITLE, text(20))
            .margin(12)
            .margin_right(20)
            .x_label_area_size(44)
            .y_label_area_size(category_area(&names))
            .build_cartesian_2d(0.0..max * 1.2, Axis::categories(n))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(FAINT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style(font(14))
            .axis_desc_style(font(15))
            .x_labels(6)
            .x_label_formatter(&|v| axis_num(*v))
            .y_label_formatter(&|v| category_label(&names, *v))
            .x_desc("records")
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, (_, count))| {
            let y = row_y(n, i);
            Rectangle::new(
                [(0.0, y - 0.32), (*count as f64, y + 0.32)],
                DEAD_LETTER_COLOR.filled(),
            )
        }))?;
        let plot_w = plot_width(&names);
        chart.draw_series(rows.iter().enumerate().map(|(i, (_, count))| {
            let share = *count as f64 / (max * 1.2);
            EmptyElement::at((*count as f64, row_y(n, i)))
                + bar_label(count.to_string(), share, plot_w, &WHITE)
        }))?;
        Ok(())
    })
}

/// P50 and P95 bars per stage.
fn stages_svg(rows: &[StageRow]) -> String {
    const TITLE: &str = "Stage durations";
    if rows.is_empty() {
        return no_data_svg(TITLE);
    }
    render_svg(TITLE, |root| {
        let names: Vec<String> = rows.iter().map(|r| short(&clean(&r.stage), 16)).collect();
        let max = rows
            .iter()
            .flat_map(|r| [r.p50_s, r.p95_s])
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max);
        let max = if max > 0.0 { max } else { 1.0 };
        let n = rows.len();
        let x_range = Axis::categories(n);
        let mut chart = ChartBuilder::on(root)
            .caption(TITLE, text(20))
            .margin(12)
            .margin_right(20)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, 0.0..max / (legend_room(2) - 0.1))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(FAINT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style(font(14))
            .axis_desc_style(font(15))
            .y_labels(6)
            .x_label_formatter(&|v| {
                let i = v.round();
                if i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| axis_num(*v))
            .y_desc("seconds")
            .draw()?;
        for (quantile, color, from, to) in [
            ("P50", P50_COLOR, -0.36, -0.02),
            ("P95", P95_COLOR, 0.02, 0.36),
        ] {
            chart
                .draw_series(rows.iter().enumerate().map(|(i, r)| {
                    let v = if quantile == "P50" { r.p50_s } else { r.p95_s };
                    let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
                    Rectangle::new([(i as f64 + from, 0.0), (i as f64 + to, v)], color.filled())
                }))?
                .label(quantile)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
            chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
                let v = if quantile == "P50" { r.p50_s } else { r.p95_s };
                let at = if v.is_finite() { v.max(0.0) } else { 0.0 };
                EmptyElement::at((i as f64 + (from + to) / 2.0, at))
                    + Text::new(
                        num(v),
                        (0, -3),
                        text(12).pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )
            }))?;
        }
        legend(&mut chart)?;
        Ok(())
    })
}

/// Cost per million records, horizontal bars on a log scale, each with its
/// value (and, for the alternatives, how many times logferry's it is).
fn cost_svg(rows: &[(String, f64)]) -> String {
    const TITLE: &str = "Cost per million records";
    let positive: Vec<f64> = rows
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    if positive.is_empty() {
        return no_data_svg(TITLE);
    }
    render_svg(TITLE, |root| {
        let names: Vec<String> = rows.iter().map(|(r, _)| short(&clean(r), 28)).collect();
        let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
        let max = positive.iter().copied().fold(0.0_f64, f64::max);
        // Whole decades, a third of a decade below the cheapest, room for
        // the value labels right of the dearest.
        let lo_exp = (min / 3.0).log10().floor() as i32;
        let hi_exp = ((max * 8.0).log10().ceil() as i32).max(lo_exp + 1);
        let (lo, hi) = (10f64.powi(lo_exp), 10f64.powi(hi_exp));
        let ours = rows.first().map(|(_, v)| *v).filter(|v| *v > 0.0);
        let n = rows.len();
        let mut chart = ChartBuilder::on(root)
            .caption(TITLE, text(20))
            .margin(12)
            .margin_right(20)
            .x_label_area_size(44)
            .y_label_area_size(category_area(&names))
            .build_cartesian_2d(Axis::log_decades(lo_exp, hi_exp), Axis::categories(n))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(FAINT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style(font(14))
            .axis_desc_style(font(15))
            .x_label_formatter(&|v| usd_axis(*v))
            .y_label_formatter(&|v| category_label(&names, *v))
            .x_desc("USD per million records (log scale)")
            .draw()?;
        let clamp = |v: f64| if v.is_finite() { v.clamp(lo, hi) } else { lo };
        chart.draw_series(rows.iter().enumerate().map(|(i, (_, usd))| {
            let y = row_y(n, i);
            let color = if i == 0 { P50_COLOR } else { ALTERNATIVE_COLOR };
            Rectangle::new([(lo, y - 0.32), (clamp(*usd), y + 0.32)], color.filled())
        }))?;
        let plot_w = plot_width(&names);
        chart.draw_series(rows.iter().enumerate().map(|(i, (_, usd))| {
            let mut label = usd_text(*usd);
            if let Some(ours) = ours.filter(|_| i > 0 && usd.is_finite()) {
                let _ = write!(label, "  ({}× logferry)", times(*usd / ours));
            }
            let at = clamp(*usd);
            let share = (at.log10() - f64::from(lo_exp)) / f64::from(hi_exp - lo_exp);
            EmptyElement::at((at, row_y(n, i))) + bar_label(label, share, plot_w, &INK)
        }))?;
        Ok(())
    })
}

/// How a time chart's y axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// Linear, from zero (or the lowest negative value).
    Linear,
    /// Logarithmic, labelled on the decades (see [`log_y_axis`]).
    Log,
}

/// Lines over clock time (UTC), with dashed horizontal references and a
/// legend, the y axis on `scale`.
fn time_chart(
    root: &Area<'_>,
    title: &str,
    y_desc: &str,
    lines: &[Line],
    refs: &[Reference],
    scale: Scale,
) -> Drawn {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let all = || lines.iter().flat_map(|l| l.points.iter().filter(finite));
    let (mut x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    if x1 - x0 < 1.0 {
        (x0, x1) = (x0 - 30.0, x1 + 30.0);
    }
    let x = Axis::linear(x0, x1, time_ticks(x0, x1, 6));
    let room = legend_room(lines.len() + refs.len());
    let chart = TimeChart {
        title,
        y_desc,
        lines,
        refs,
        x0,
        x1,
    };
    match scale {
        Scale::Linear => {
            let y_max = all()
                .map(|p| p.1)
                .chain(refs.iter().map(|r| r.y))
                .fold(0.0_f64, f64::max);
            let y_min = all().map(|p| p.1).fold(0.0_f64, f64::min);
            let y_max = if y_max > 0.0 { y_max } else { 1.0 };
            let y = RangedCoordf64::from(y_min * 1.05..y_max / room);
            chart.draw(root, x, y, |v| v)
        }
        Scale::Log => {
            let y = log_y_axis(
                all().map(|p| p.1),
                refs.iter().map(|r| r.y).filter(|y| y.is_finite()),
                room,
            );
            let floor = y.range().start;
            // Zero and negative values sit on the axis minimum.
            chart.draw(root, x, y, move |v| v.max(floor))
        }
    }
}

/// What [`time_chart`] draws, whatever its y axis.
struct TimeChart<'a> {
    title: &'a str,
    y_desc: &'a str,
    lines: &'a [Line],
    refs: &'a [Reference],
    /// The x range, Unix seconds.
    x0: f64,
    x1: f64,
}

impl TimeChart<'_> {
    /// Draws it on `root` with the y axis `y`, every y value passed
    /// through `clamp` first (finite values only).
    fn draw<Y>(&self, root: &Area<'_>, x: Axis, y: Y, clamp: impl Fn(f64) -> f64) -> Drawn
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let (x0, x1) = (self.x0, self.x1);
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, text(20))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .light_line_style(FAINT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style(font(14))
            .axis_desc_style(font(15))
            .y_labels(6)
            .x_label_formatter(&|t| clock(*t))
            .y_label_formatter(&|v| axis_num(*v))
            .x_desc("time (UTC)")
            .y_desc(self.y_desc)
            .draw()?;
        for r in self.refs {
            let color = r.color;
            let ry = clamp(r.y);
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, ry), (x1, ry)],
                    8,
                    5,
                    color.stroke_width(2),
                ))?
                .label(r.name.as_str())
                .legend(move |(x, y)| {
                    DashedPathElement::new([(x, y), (x + 22, y)], 6, 3, color.stroke_width(2))
                });
        }
        for l in self.lines {
            let color = l.color;
            let points: Vec<(f64, f64)> = l
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|&(t, v)| (t, clamp(v)))
                .collect();
            if let [only] = points.as_slice() {
                chart.draw_series([Circle::new(*only, 3, color.filled())])?;
            }
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(l.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 22, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)
    }
}

/// The lowest decade a log time chart goes down to: 10^-2 (0.01 s).
const LOG_FLOOR_EXP: i32 = -2;

/// A logarithmic y axis for `values` and the reference lines `refs`:
/// from the decade at or below the smallest positive one (not below
/// 10^[`LOG_FLOOR_EXP`]; that floor when no value is positive) up to the
/// next decade above the largest, or higher when the legend needs it: the
/// largest then reaches only `room` of the height, as on a linear chart.
fn log_y_axis(
    values: impl Iterator<Item = f64>,
    refs: impl Iterator<Item = f64>,
    room: f64,
) -> Axis {
    let values: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    let refs: Vec<f64> = refs.filter(|v| v.is_finite()).collect();
    let positive = |v: &&f64| **v > 0.0;
    let lo_exp = if values.iter().any(|v| *v > 0.0) {
        let min = values
            .iter()
            .chain(&refs)
            .filter(positive)
            .fold(f64::INFINITY, |a, b| a.min(*b));
        (min.log10().floor() as i32).max(LOG_FLOOR_EXP)
    } else {
        LOG_FLOOR_EXP
    };
    let lo = f64::from(lo_exp);
    let max = values
        .iter()
        .chain(&refs)
        .filter(positive)
        .fold(0.0_f64, |a, b| a.max(*b));
    let top = if max > 0.0 { max.log10().max(lo) } else { lo };
    let hi = (top.floor() + 1.0).max(lo + (top - lo) / room);
    Axis::log(lo_exp, hi)
}

/// Draws the chart's legend in its upper right corner.
fn legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut plotters::chart::ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .margin(6)
        .legend_area_size(28)
        .background_style(WHITE.mix(0.9))
        .border_style(AXIS)
        .label_font(text(14))
        .draw()?;
    Ok(())
}

/// An SVG chart that says "no data", so every page has every chart.
fn no_data_svg(title: &str) -> String {
    render_svg(title, |root| {
        let area = root.titled(title, text(20))?;
        let (w, h) = area.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        area.draw(&Rectangle::new(
            [(12, 4), (w - 12, h - 12)],
            GRID.stroke_width(1),
        ))?;
        area.draw(&Text::new(
            "no data",
            (w / 2, h / 2),
            TextStyle::from(("sans-serif", 22).into_font())
                .color(&AXIS)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        Ok(())
    })
}

/// Runs `draw` on a fresh white SVG drawing area and returns the SVG,
/// labelled for assistive technology; a drawing error gives an SVG that
/// says so.
fn render_svg(label: &str, draw: impl FnOnce(&Area<'_>) -> Drawn) -> String {
    let mut buf = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut buf, (CHART_W, CHART_H)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(Box::<dyn Error>::from)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(Box::<dyn Error>::from))
    };
    match drawn {
        Ok(()) => buf.replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(label)),
            1,
        ),
        Err(e) => format!(
            "<svg role=\"img\" width=\"{CHART_W}\" height=\"{CHART_H}\" viewBox=\"0 0 {CHART_W} {CHART_H}\" \
             xmlns=\"http://www.w3.org/2000/svg\"><text x=\"20\" y=\"40\" font-family=\"sans-serif\" \
             font-size=\"14\">{}: chart could not be drawn: {}</text></svg>",
            esc(label),
            esc(&e.to_string())
        ),
    }
}

// --- Chart helpers ---------------------------------------------------------

/// A sans-serif font of plotters' `size` (its SVG backend writes
/// `font-size` = size / 1.24 px; the browser picks the sans-serif face, no
/// font file is read).
fn font(size: u32) -> plotters::style::FontDesc<'static> {
    ("sans-serif", size).into_font()
}

/// Text of `size` in the ink colour.
fn text(size: u32) -> TextStyle<'static> {
    TextStyle::from(font(size)).color(&INK)
}

/// The value label at the end of a horizontal bar reaching `share` of a
/// plot `plot_w` pixels wide: right of the bar in ink when it fits there,
/// else inside the bar's end in `inside`.
fn bar_label(
    label: String,
    share: f64,
    plot_w: f64,
    inside: &'static RGBColor,
) -> Text<'static, (i32, i32), String> {
    // About 6.5 px a character at this size.
    let needed = label.chars().count() as f64 * 6.5 + 10.0;
    if (1.0 - share) * plot_w >= needed || share * plot_w < needed {
        Text::new(
            label,
            (5, 0),
            text(13).pos(Pos::new(HPos::Left, VPos::Center)),
        )
    } else {
        let style = TextStyle::from(font(13))
            .color(inside)
            .pos(Pos::new(HPos::Right, VPos::Center));
        Text::new(label, (-6, 0), style)
    }
}

/// The width of a horizontal bar chart's plot, pixels, with these category
/// names (the chart less its margins and label area).
fn plot_width(names: &[String]) -> f64 {
    f64::from(CHART_W) - 12.0 - 20.0 - f64::from(category_area(names))
}

/// `v` when it is above zero (and finite), else `fallback`.
fn positive_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        fallback
    }
}

/// True when some line has a finite point.
fn has_points(lines: &[Line]) -> bool {
    lines
        .iter()
        .flat_map(|l| &l.points)
        .any(|p| p.0.is_finite() && p.1.is_finite())
}

/// How much of a plot's height the data may use so that a legend of
/// `entries` rows in the upper right corner stays clear of it.
fn legend_room(entries: usize) -> f64 {
    let legend_px = 16.0 * entries as f64 + 22.0;
    (1.0 - legend_px / PLOT_H).clamp(0.4, 0.9)
}

/// An f64 axis with chosen ticks: plotters' own `with_key_points` loses the
/// value formatting that `configure_mesh` needs.
#[derive(Debug, Clone)]
struct Axis {
    lo: f64,
    hi: f64,
    /// Map log10 of values (then `lo` and `hi` are exponents).
    log: bool,
    /// Labelled ticks (bold grid lines).
    ticks: Vec<f64>,
    /// Unlabelled ticks (faint grid lines).
    minor: Vec<f64>,
}

impl Axis {
    /// `lo..hi` with ticks at `ticks`.
    fn linear(lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        Axis {
            lo,
            hi,
            log: false,
            ticks,
            minor: Vec::new(),
        }
    }

    /// `n` categories at 0, 1, …, each in a unit wide band.
    fn categories(n: usize) -> Self {
        Axis::linear(-0.5, n as f64 - 0.5, (0..n).map(|i| i as f64).collect())
    }

    /// Logarithmic from 10^`lo_exp` to 10^`hi_exp`, ticks on the decades,
    /// faint lines on 2..9 × each decade.
    fn log_decades(lo_exp: i32, hi_exp: i32) -> Self {
        Axis::log(lo_exp, f64::from(hi_exp))
    }

    /// Logarithmic from 10^`lo_exp` to 10^`hi` (`hi` need not be whole),
    /// ticks on the decades, faint lines on 2..9 × each decade, all within
    /// the range.
    fn log(lo_exp: i32, hi: f64) -> Self {
        let decade = |e: i32| 10f64.powi(e);
        let top = 10f64.powf(hi) * (1.0 + 1e-9);
        let last = hi.floor() as i32;
        Axis {
            lo: f64::from(lo_exp),
            hi,
            log: true,
            ticks: (lo_exp..=last).map(decade).collect(),
            minor: (lo_exp..=last)
                .flat_map(|e| (2..10).map(move |k| f64::from(k) * decade(e)))
                .filter(|v| *v <= top)
                .collect(),
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let v = if self.log {
            value.max(f64::MIN_POSITIVE).log10()
        } else {
            *value
        };
        let share = if self.hi > self.lo {
            (v - self.lo) / (self.hi - self.lo)
        } else {
            0.5
        };
        let px = f64::from(limit.0) + share.clamp(-1.0, 2.0) * f64::from(limit.1 - limit.0);
        px.round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        if self.log {
            10f64.powf(self.lo)..10f64.powf(self.hi)
        } else {
            self.lo..self.hi
        }
    }
}

/// The y of the `i`th of `n` categories (the first at the top).
fn row_y(n: usize, i: usize) -> f64 {
    (n - 1 - i) as f64
}

/// The name of the category at `y`.
fn category_label(names: &[String], y: f64) -> String {
    let n = names.len() as f64;
    let i = n - 1.0 - y.round();
    if i >= 0.0 && i < n {
        names[i as usize].clone()
    } else {
        String::new()
    }
}

/// Width of the label area for these category names, pixels.
fn category_area(names: &[String]) -> u32 {
    let chars = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    (chars as u32 * 7 + 18).clamp(60, 220)
}

/// Round steps for a time axis, seconds.
const TIME_STEPS: [f64; 22] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0,
    3600.0, 7200.0, 10800.0, 14400.0, 21600.0, 43200.0, 86400.0, 172800.0,
];

/// At most `max` ticks on round clock times between `lo` and `hi` (Unix
/// seconds).
fn time_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let span = hi - lo;
    let max = max.max(2) as f64;
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / s <= max)
        .unwrap_or_else(|| (span / max / 86400.0).ceil() * 86400.0);
    let mut ticks = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + 1e-6 {
        ticks.push(t);
        t += step;
    }
    ticks
}

/// Unix seconds as a UTC clock time, `HH:MM:SS`.
fn clock(t: f64) -> String {
    if !t.is_finite() {
        return String::new();
    }
    let s = t.rem_euclid(86400.0).round() as u64 % 86400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// An axis tick value: `12`, `0.25`, `12k`, `1.5M`.
fn axis_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6, 2))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3, 1))
    } else {
        trim(v, 3)
    }
}

/// A log axis tick in USD: `$0.01`, `$1`, `$1k`.
fn usd_axis(v: f64) -> String {
    if v >= 1000.0 {
        format!("${}k", trim(v / 1000.0, 3))
    } else {
        format!("${}", trim(v, 4))
    }
}

/// A USD amount as printed on bars and in tables.
fn usd_text(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("${v:.0}")
    } else if v.abs() >= 1.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

/// A ratio as "137" or "4.2".
fn times(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        trim(r, 1)
    }
}

/// A value with about three significant digits, trailing zeros trimmed.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    let decimals = if a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    trim(v, decimals)
}

/// `v` and its unit.
fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        num(v)
    } else {
        format!("{} {unit}", num(v))
    }
}

/// `v` with `decimals` decimals, trailing zeros (and point) trimmed.
fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s }
}

/// At most `max` characters, with an ellipsis when cut.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// User text without control characters (which HTML and XML reject); the
/// SVG backend escapes the rest.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Escapes text for HTML element content and quoted attribute values, and
/// drops control characters.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Headless Chromium for the tests: a screenshot of a page and its DOM
/// after parsing. Finds the browser in `$LOGFERRY_CHROMIUM` (which
/// `scripts/tools.sh` writes into `target/tools.env`), else `chromium` on
/// `PATH`; without either every call fails, saying to run the script.
#[doc(hidden)]
pub mod browser {
    use std::fs::{self, File};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// How long Chromium may take for one page.
    pub const TIMEOUT: Duration = Duration::from_secs(60);
    /// The window (and so the screenshot) size.
    pub const WINDOW: (u32, u32) = (1280, 3000);

    /// The Chromium binary: `$LOGFERRY_CHROMIUM`, else `chromium` on `PATH`.
    pub fn chromium() -> Result<PathBuf, String> {
        if let Some(bin) = std::env::var_os("LOGFERRY_CHROMIUM").filter(|v| !v.is_empty()) {
            let bin = PathBuf::from(bin);
            return if bin.is_file() {
                Ok(bin)
            } else {
                Err(format!(
                    "LOGFERRY_CHROMIUM={} is not a file: run `bash scripts/tools.sh` \
                     and `source target/tools.env`",
                    bin.display()
                ))
            };
        }
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                "Chromium not found: LOGFERRY_CHROMIUM is unset and there is no `chromium` on \
                 PATH; run `bash scripts/tools.sh` (installs it and writes target/tools.env), \
                 then `source target/tools.env`"
                    .to_string()
            })
    }

    /// Takes a screenshot of the page at `html_path` (a file), window
    /// [`WINDOW`], into `png_path`.
    pub fn screenshot(html_path: &Path, png_path: &Path) -> Result<(), String> {
        let png = absolute(png_path)?;
        let _ = fs::remove_file(&png);
        run(&[format!("--screenshot={}", png.display())], html_path)?;
        match fs::metadata(&png) {
            Ok(m) if m.len() > 0 => Ok(()),
            _ => Err(format!("chromium wrote no screenshot at {}", png.display())),
        }
    }

    /// The page's DOM after parsing, as Chromium serialises it
    /// (`--dump-dom`).
    pub fn dump_dom(html_path: &Path) -> Result<String, String> {
        run(&["--dump-dom".to_string()], html_path)
    }

    /// Runs headless Chromium on the page with `extra` flags, in a fresh
    /// profile, killed after [`TIMEOUT`]; returns its standard output.
    fn run(extra: &[String], html_path: &Path) -> Result<String, String> {
        let bin = chromium()?;
        let page = absolute(html_path)?;
        if !page.is_file() {
            return Err(format!("no page at {}", page.display()));
        }
        let scratch = Scratch::new()?;
        let profile = scratch.path().join("profile");
        let out_path = scratch.path().join("stdout");
        let err_path = scratch.path().join("stderr");
        let file = |p: &Path| File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
            .args(extra)
            .arg(file_url(&page))
            .stdin(Stdio::null())
            .stdout(file(&out_path)?)
            .stderr(file(&err_path)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "chromium did not finish within {} s; stderr:\n{}",
                        TIMEOUT.as_secs(),
                        tail(&err_path)
                    ));
                }
                Err(e) => return Err(format!("waiting for chromium: {e}")),
            }
        };
        if !status.success() {
            return Err(format!(
                "chromium failed ({status}); stderr:\n{}",
                tail(&err_path)
            ));
        }
        fs::read_to_string(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))
    }

    /// A `file://` URL, percent-encoding all but unreserved characters and
    /// `/`.
    fn file_url(path: &Path) -> String {
        let mut url = String::from("file://");
        for b in path.to_string_lossy().bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                    url.push(b as char)
                }
                _ => url.push_str(&format!("%{b:02X}")),
            }
        }
        url
    }

    fn absolute(p: &Path) -> Result<PathBuf, String> {
        std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// The last lines of a log file.
    fn tail(p: &Path) -> String {
        let s = fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A fresh directory under the system's temporary directory, removed
    /// on drop.
    #[derive(Debug)]
    pub struct Scratch(PathBuf);

    impl Scratch {
        /// Creates it.
        pub fn new() -> Result<Self, String> {
            static N: AtomicU64 = AtomicU64::new(0);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "logferry-chromium-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok(Scratch(dir))
        }

        /// Where it is.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::histo::Histo;
    use crate::kpi::{KpiInputs, evaluate};

    /// 2025-06-01T12:00:00Z.
    const T0: f64 = 1_748_779_200.0;
    /// A tenant name that is HTML.
    const NASTY: &str = "<b>&x";

    /// Ten minutes of a three-tenant load test: about a second end to end,
    /// a P95 burst to some 17 s.
    fn sample() -> ReportData {
        let t = |i: usize| T0 + 10.0 * i as f64;
        let wave = |i: usize, period: f64| (i as f64 / period).sin();
        let latency = (0..60)
            .map(|i| LatencyPoint {
                t: t(i),
                p50_s: 0.9 + 0.3 * wave(i, 6.0),
                p95_s: 2.4 + 0.8 * wave(i, 9.0) + if (38..44).contains(&i) { 14.0 } else { 0.0 },
                records: 36_000,
            })
            .collect();
        let series = |name: &str, base: f64, amp: f64, period: f64| Series {
            name: name.into(),
            points: (0..60)
                .map(|i| (t(i), base + amp * wave(i, period)))
                .collect(),
        };
        let mut e2e = Histo::new();
        for i in 0..1000 {
            e2e.record(5_000.0 + 30.0 * i as f64);
        }
        let kpis = evaluate(
            &KpiInputs {
                e2e,
                put_records: Some((2_159_100, 2_160_000)),
                stream_lag_ms: Some(1_840.0),
                transfer: Some((98, 100)),
                loads: None,
                cost_per_million_usd: Some(0.42),
            },
            &Thresholds::default(),
        );
        ReportData {
            title: "logferry load test: steady-3-tenants".into(),
            subtitle: format!("2025-06-01 12:00:00 to 12:10:00 UTC, tenants acme, globex, {NASTY}"),
            generated_at: "2025-06-01T12:10:05Z".into(),
            summary: vec![
                ("Scenario".into(), "steady-3-tenants".into()),
                ("Records".into(), "2,160,000".into()),
                ("Tenants".into(), format!("acme, globex, {NASTY}")),
                ("Duration".into(), "10m0s".into()),
            ],
            thresholds: vec![
                ThresholdRow {
                    metric: "e2e_latency".into(),
                    expression: "p(95)<30000".into(),
                    value: "p(95)=27.4s".into(),
                    ok: true,
                },
                ThresholdRow {
                    metric: "forwarder_success".into(),
                    expression: "rate>0.999".into(),
                    value: "rate=99.96%".into(),
                    ok: true,
                },
                ThresholdRow {
                    metric: "dead_letters".into(),
                    expression: "count<100".into(),
                    value: "count=481".into(),
                    ok: false,
                },
            ],
            trends: vec![
                TrendRow {
                    name: "e2e_latency".into(),
                    unit: "ms".into(),
                    avg: 11_234.6,
                    min: 2_010.0,
                    med: 9_870.0,
                    max: 44_120.0,
                    p90: 21_400.0,
                    p95: 27_400.0,
                },
                TrendRow {
                    name: "throughput".into(),
                    unit: "records/s".into(),
                    avg: 3_600.0,
                    min: 2_950.0,
                    med: 3_610.0,
                    max: 4_210.0,
                    p90: 4_020.0,
                    p95: 4_110.0,
                },
            ],
            kpis,
            latency,
            throughput: vec![
                series("acme", 1_900.0, 250.0, 7.0),
                series("globex", 1_200.0, 180.0, 5.0),
                series(NASTY, 450.0, 90.0, 4.0),
            ],
            dead_letters: vec![
                ("schema_mismatch".into(), 412),
                ("payload_too_large".into(), 57),
                ("unknown_tenant".into(), 9),
                (format!("{NASTY}: decode"), 3),
            ],
            lag: vec![
                series("acme/shardId-000000000000", 620.0, 380.0, 8.0),
                series("acme/shardId-000000000001", 410.0, 250.0, 6.0),
                series("globex/shardId-000000000000", 300.0, 120.0, 5.0),
            ],
            stages: vec![
                StageRow {
                    stage: "forward".into(),
                    p50_s: 0.8,
                    p95_s: 2.1,
                    max_s: 3.9,
                    count: 1_440,
                },
                StageRow {
                    stage: "aggregate".into(),
                    p50_s: 4.2,
                    p95_s: 9.8,
                    max_s: 15.2,
                    count: 120,
                },
                StageRow {
                    stage: "export".into(),
                    p50_s: 6.5,
                    p95_s: 14.0,
                    max_s: 22.0,
                    count: 120,
                },
                StageRow {
                    stage: "load".into(),
                    p50_s: 12.0,
                    p95_s: 26.5,
                    max_s: 41.0,
                    count: 60,
                },
            ],
            cost: vec![
                ("logferry".into(), 0.42),
                ("Kinesis Firehose to BigQuery".into(), 18.5),
                ("BigQuery streaming inserts".into(), 61.0),
                ("CloudWatch Logs ingestion".into(), 540.0),
            ],
            cost_items: vec![
                ("Kinesis shard-hours".into(), 0.14),
                ("Lambda".into(), 0.09),
                ("S3 and egress".into(), 0.12),
                ("BigQuery load and storage".into(), 0.07),
            ],
            // Unset: the default 30 s target and 60 s critical threshold.
            latency_target_s: 0.0,
            latency_critical_s: 0.0,
        }
    }

    /// The `<figure id=…>` element of the page.
    fn figure_of<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page
            .find(&format!("<figure id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no figure {id}"));
        let len = page[start..].find("</figure>").expect("figure not closed");
        &page[start..start + len]
    }

    /// The content of every SVG `<text>` in `html`, trimmed.
    fn texts(html: &str) -> Vec<&str> {
        html.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim())
            })
            .collect()
    }

    /// How many SVG `<text>` elements say "no data".
    fn no_data(html: &str) -> usize {
        texts(html).iter().filter(|t| **t == "no data").count()
    }

    #[test]
    fn sample_page_has_every_section_escaped_and_no_external_urls() {
        let page = render_html(&sample());
        assert!(page.starts_with("<!DOCTYPE html>"));
        for id in CHART_IDS {
            let fig = figure_of(&page, id);
            assert_eq!(fig.matches("<svg").count(), 1, "{id} has one svg");
            assert!(fig.contains("<figcaption>"), "{id} has a caption");
            assert_eq!(no_data(fig), 0, "{id} has data");
            assert!(texts(fig).len() >= 8, "{id} has labels");
        }
        assert_eq!(page.matches("<svg").count(), 6);
        assert!(!page.contains("could not be drawn"));
        // Sections in order.
        let at = |s: &str| page.find(s).unwrap_or_else(|| panic!("no {s}"));
        let order = [
            "<h1>",
            "id=\"thresholds\"",
            "id=\"trends\"",
            "id=\"kpis\"",
            "id=\"summary\"",
            "id=\"chart-latency\"",
            "id=\"chart-throughput\"",
            "id=\"chart-dead-letters\"",
            "id=\"chart-lag\"",
            "id=\"chart-stages\"",
            "id=\"chart-cost\"",
        ];
        for w in order.windows(2) {
            assert!(at(w[0]) < at(w[1]), "{} before {}", w[0], w[1]);
        }
        // Thresholds, k6 style.
        assert!(page.contains("<tr class=\"ok\"><td class=\"mark\" title=\"held\">✓</td><td class=\"mono\">e2e_latency</td>"));
        assert!(page.contains("<tr class=\"bad\"><td class=\"mark\" title=\"crossed\">✗</td><td class=\"mono\">dead_letters</td>"));
        assert!(page.contains("<td class=\"mono\">p(95)&lt;30000</td>"));
        // Trends with units.
        assert!(page.contains("<td class=\"num\">11235 ms</td>"), "avg");
        assert!(page.contains("<td class=\"num\">27400 ms</td>"), "p(95)");
        assert!(
            page.contains("<td class=\"num\">4110 records/s</td>"),
            "p(95)"
        );
        // Every KPI, valued and coloured.
        for k in &sample().kpis {
            let row = format!(
                "<tr id=\"kpi-{}\"><td>{}</td><td class=\"num\">{}</td>",
                k.id,
                esc(&k.name),
                esc(&kpi::display(k))
            );
            assert!(page.contains(&row), "{row}");
        }
        assert!(page.contains("<span class=\"status pass\">pass</span>"));
        assert!(page.contains("<span class=\"status warn\">warn</span>"));
        assert!(page.contains("<span class=\"status fail\">fail</span>"));
        assert!(page.contains("<span class=\"status na\">n/a</span>"));
        assert!(page.contains("<th scope=\"row\">Scenario</th><td>steady-3-tenants</td>"));
        // The charts' text: clock times, legends, values.
        let has = |id: &str, want: &[&str]| {
            let t = texts(figure_of(&page, id));
            for w in want {
                assert!(t.contains(w), "{id} has {w:?}: {t:?}");
            }
        };
        has(
            "chart-latency",
            &[
                "End-to-end latency",
                "12:00:00",
                "12:02:00",
                "12:08:00",
                "P50",
                "P95",
                "target 30 s",
                "critical 60 s",
                "latency (s, log scale)",
                "time (UTC)",
                "0.1",
                "1",
                "10",
                "100",
            ],
        );
        has(
            "chart-throughput",
            &["acme", "globex", "&lt;b&gt;&amp;x", "records/s", "12:04:00"],
        );
        has(
            "chart-dead-letters",
            &["schema_mismatch", "412", "3", "records"],
        );
        has("chart-lag", &["acme/shardId-000000000000", "lag (ms)"]);
        has(
            "chart-stages",
            &["forward", "load", "P50", "P95", "26.5", "seconds"],
        );
        has(
            "chart-cost",
            &[
                "logferry",
                "$0.4200",
                "$61.00  (145× logferry)",
                "$0.1",
                "$1k",
            ],
        );
        let cost = figure_of(&page, "chart-cost");
        assert!(cost.contains("<td>Kinesis shard-hours</td><td class=\"num\">$0.1400</td>"));
        assert!(
            cost.contains("<td class=\"num\"><strong>$0.4200</strong></td>"),
            "total"
        );
        // User text is escaped everywhere: legends, bars, tables, subtitle.
        assert!(!page.contains(NASTY), "raw user text");
        assert!(!page.contains("<b>"), "user text made an element");
        // Subtitle, summary, throughput legend, dead letter reason.
        assert_eq!(page.matches("&lt;b&gt;&amp;x").count(), 4);
        // No URL but the SVG namespace.
        assert_eq!(page.matches("https://").count(), 0);
        assert_eq!(
            page.matches("http://").count(),
            page.matches("http://www.w3.org/2000/svg\"").count()
        );
        assert!(!page.contains("<script"));
    }

    /// An SVG `<text>`: its content and its anchor (x, y).
    fn placed_texts(svg: &str) -> Vec<(&str, i32, i32)> {
        let attr = |tag: &str, name: &str| -> Option<i32> {
            let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            tag[at..at + tag[at..].find('"')?].parse().ok()
        };
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let end = t.find('>')?;
                let body = &t[end + 1..];
                let body = body[..body.find("</text>")?].trim();
                Some((body, attr(&t[..end], "x")?, attr(&t[..end], "y")?))
            })
            .collect()
    }

    /// The y of the text `label` (the y axis' tick labels are anchored on
    /// their tick).
    fn label_y(svg: &str, label: &str) -> i32 {
        let found: Vec<i32> = placed_texts(svg)
            .into_iter()
            .filter(|t| t.0 == label)
            .map(|t| t.2)
            .collect();
        assert_eq!(found.len(), 1, "one {label:?} in {:?}", texts(svg));
        found[0]
    }

    /// The points of every SVG polyline stroked in `c`.
    fn polylines(svg: &str, c: RGBColor) -> Vec<Vec<(i32, i32)>> {
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        svg.split("<polyline")
            .skip(1)
            .filter_map(|p| {
                let tag = &p[..p.find("/>")?];
                if !tag.contains(&stroke) {
                    return None;
                }
                let at = tag.find("points=\"")? + 8;
                let pts = &tag[at..at + tag[at..].find('"')?];
                Some(
                    pts.split_whitespace()
                        .filter_map(|xy| {
                            let (x, y) = xy.split_once(',')?;
                            Some((x.parse().ok()?, y.parse().ok()?))
                        })
                        .collect(),
                )
            })
            .collect()
    }

    /// The data line in `c`: its longest polyline (the legend's sample is
    /// two points).
    fn data_line(svg: &str, c: RGBColor) -> Vec<(i32, i32)> {
        polylines(svg, c)
            .into_iter()
            .max_by_key(Vec::len)
            .unwrap_or_else(|| panic!("no polyline in {c:?}"))
    }

    /// The y of the dashed reference line in `c`: the y most of its
    /// dashes are at (the legend's sample has a few).
    fn reference_y(svg: &str, c: RGBColor) -> i32 {
        let mut ys: Vec<i32> = polylines(svg, c)
            .iter()
            .filter(|p| p.len() == 2 && p[0].1 == p[1].1)
            .map(|p| p[0].1)
            .collect();
        assert!(ys.len() >= 20, "dashes of {c:?}: {ys:?}");
        ys.sort_unstable();
        let mut best = (0, 0);
        for y in &ys {
            let n = ys.iter().filter(|v| *v == y).count();
            if n > best.1 {
                best = (*y, n);
            }
        }
        best.0
    }

    /// About a second end to end, P95 up to 2.5 s.
    fn one_second_latency() -> Vec<LatencyPoint> {
        (0..30)
            .map(|i| LatencyPoint {
                t: T0 + 10.0 * i as f64,
                p50_s: if i % 2 == 0 { 0.8 } else { 1.2 },
                p95_s: 1.5 + (i % 3) as f64 * 0.5,
                records: 100,
            })
            .collect()
    }

    #[test]
    fn latency_chart_is_log_scaled_and_one_second_data_reads() {
        let page = render_html(&ReportData {
            latency: one_second_latency(),
            throughput: vec![Series {
                name: "acme".into(),
                points: vec![(T0, 10.0), (T0 + 60.0, 20.0)],
            }],
            ..ReportData::default()
        });
        let svg = figure_of(&page, "chart-latency");
        let t = texts(svg);
        for want in [
            "0.1",
            "1",
            "10",
            "100",
            "target 30 s",
            "critical 60 s",
            "latency (s, log scale)",
        ] {
            assert!(t.contains(&want), "{want:?} in {t:?}");
        }
        assert!(!t.contains(&"0"), "no zero on a log axis: {t:?}");
        // Decades are evenly spaced, upwards.
        let (y01, y1, y10, y100) = (
            label_y(svg, "0.1"),
            label_y(svg, "1"),
            label_y(svg, "10"),
            label_y(svg, "100"),
        );
        let decade = y01 - y1;
        assert!(decade >= 30, "a decade is {decade} px");
        assert!((y1 - y10 - decade).abs() <= 1 && (y10 - y100 - decade).abs() <= 1);
        // The 0.8..1.2 s P50 line is spread out, between the 0.1 and 10 s
        // ticks; on a linear 0..94 s axis it was some 2 px tall.
        let p50 = data_line(svg, P50_COLOR);
        assert_eq!(p50.len(), 30);
        let (top, bottom) = p50
            .iter()
            .fold((i32::MAX, i32::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        assert!(bottom - top >= decade / 6, "P50 spans {top}..{bottom}");
        assert!(top > y10 && bottom < y01, "P50 spans {top}..{bottom}");
        let y_of = |v: f64| f64::from(y1) - v.log10() * f64::from(decade);
        assert!((f64::from(top) - y_of(1.2)).abs() <= 2.0);
        assert!((f64::from(bottom) - y_of(0.8)).abs() <= 2.0);
        let p95 = data_line(svg, P95_COLOR);
        let p95_top = p95.iter().map(|p| p.1).min().unwrap_or(0);
        assert!((f64::from(p95_top) - y_of(2.5)).abs() <= 2.0);
        // The reference lines, where 30 s and 60 s are, below the legend.
        let target = reference_y(svg, TARGET_COLOR);
        let critical = reference_y(svg, CRITICAL_COLOR);
        assert!(
            (f64::from(target) - y_of(30.0)).abs() <= 2.0,
            "target at {target}"
        );
        assert!(
            (f64::from(critical) - y_of(60.0)).abs() <= 2.0,
            "critical at {critical}"
        );
        let legend_bottom = ["P50", "P95", "target 30 s", "critical 60 s"]
            .iter()
            .map(|l| label_y(svg, l))
            .max()
            .unwrap_or(0);
        assert!(
            critical > legend_bottom + 8,
            "critical line {critical} under the legend"
        );
        // Other time charts stay linear, from zero.
        assert!(texts(figure_of(&page, "chart-throughput")).contains(&"0"));
    }

    #[test]
    fn latency_reference_lines_follow_the_report_data() {
        let page = render_html(&ReportData {
            latency: one_second_latency(),
            latency_target_s: 5.0,
            latency_critical_s: 10.0,
            ..ReportData::default()
        });
        let svg = figure_of(&page, "chart-latency");
        let t = texts(svg);
        assert!(
            t.contains(&"target 5 s") && t.contains(&"critical 10 s"),
            "{t:?}"
        );
        assert!(!page.contains("30 s") && !page.contains("60 s"));
        assert!(svg.contains("the 5 s target and the 10 s critical threshold"));
        let (y1, y10) = (label_y(svg, "1"), label_y(svg, "10"));
        let y_of = |v: f64| f64::from(y1) - v.log10() * f64::from(y1 - y10);
        assert!((f64::from(reference_y(svg, TARGET_COLOR)) - y_of(5.0)).abs() <= 2.0);
        assert!((f64::from(reference_y(svg, CRITICAL_COLOR)) - y_of(10.0)).abs() <= 2.0);
        // Unset (zero) or meaningless values mean the defaults.
        for (target, critical) in [(0.0, 0.0), (-1.0, f64::NAN)] {
            let page = render_html(&ReportData {
                latency: one_second_latency(),
                latency_target_s: target,
                latency_critical_s: critical,
                ..ReportData::default()
            });
            let t = texts(figure_of(&page, "chart-latency"));
            assert!(
                t.contains(&"target 30 s") && t.contains(&"critical 60 s"),
                "{t:?}"
            );
        }
    }

    #[test]
    fn zero_and_negative_latencies_sit_on_the_log_axis_minimum() {
        let latency = (0..10)
            .map(|i| LatencyPoint {
                t: T0 + 10.0 * i as f64,
                p50_s: [0.0, -1.0, f64::NAN][i % 3],
                p95_s: if i == 4 { f64::NEG_INFINITY } else { 0.0 },
                records: 1,
            })
            .collect();
        let page = render_html(&ReportData {
            latency,
            ..ReportData::default()
        });
        assert!(!page.contains("could not be drawn"), "{page}");
        let svg = figure_of(&page, "chart-latency");
        let t = texts(svg);
        assert!(t.contains(&"0.01") && t.contains(&"100"), "{t:?}");
        let floor = label_y(svg, "0.01");
        for c in [P50_COLOR, P95_COLOR] {
            let line = data_line(svg, c);
            assert!(line.len() >= 6, "{line:?}");
            assert!(
                line.iter().all(|p| p.1 == floor),
                "{c:?} on the floor {floor}: {line:?}"
            );
        }
    }

    #[test]
    fn log_y_axis_spans_whole_decades_with_room_for_the_legend() {
        let axis = |values: &[f64], refs: &[f64], room: f64| {
            log_y_axis(values.iter().copied(), refs.iter().copied(), room)
        };
        // About a second, the 30 s and 60 s lines, a four-entry legend.
        let room = legend_room(4);
        let a = axis(&[0.8, 2.5, f64::NAN], &[30.0, 60.0], room);
        assert_eq!(a.ticks, [0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(a.lo, -1.0);
        let share = (60f64.log10() - a.lo) / (a.hi - a.lo);
        assert!((share - room).abs() < 1e-9, "critical line at {share}");
        assert!(a.minor.contains(&0.2) && a.minor.iter().all(|m| m.log10() <= a.hi));
        // A decade above the largest when the legend allows.
        let a = axis(&[5.0, 12.0], &[], 0.9);
        assert_eq!((a.lo, a.hi), (0.0, 2.0));
        assert_eq!(a.ticks, [1.0, 10.0, 100.0]);
        // Not below 0.01 s; no positive value: from 0.01 s.
        assert_eq!(axis(&[0.0004, 0.3], &[30.0], room).lo, -2.0);
        assert_eq!(axis(&[0.0, -3.0], &[30.0], room).lo, -2.0);
        assert_eq!(axis(&[], &[], room).ticks, [0.01, 0.1]);
        // A reference below the data lowers the axis.
        assert_eq!(axis(&[8.0, 9.0], &[0.5], room).lo, -1.0);
    }

    #[test]
    fn empty_report_renders_six_no_data_charts() {
        let page = render_html(&ReportData::default());
        assert!(page.contains("<h1>logferry report</h1>"));
        for id in CHART_IDS {
            let fig = figure_of(&page, id);
            assert_eq!(fig.matches("<svg").count(), 1, "{id} has an svg");
            assert_eq!(no_data(fig), 1, "{id} says no data");
        }
        assert_eq!(page.matches("<svg").count(), 6);
        assert_eq!(no_data(&page), 6);
        assert!(
            !page.contains("id=\"thresholds\""),
            "no thresholds outside load tests"
        );
        assert!(!page.contains("id=\"trends\""));
        assert!(page.contains("id=\"kpis\"") && page.contains("id=\"summary\""));
        assert!(!page.contains("could not be drawn"));
    }

    #[test]
    fn odd_data_still_draws() {
        // One point, equal values, NaN, zero and negative costs.
        let mut d = ReportData {
            latency: vec![LatencyPoint {
                t: T0,
                p50_s: 1.0,
                p95_s: 1.0,
                records: 1,
            }],
            throughput: vec![Series {
                name: "a\u{7}b".into(),
                points: vec![(T0, f64::NAN), (T0 + 1.0, 5.0)],
            }],
            dead_letters: vec![("x".into(), 0)],
            stages: vec![StageRow {
                stage: "forward".into(),
                ..StageRow::default()
            }],
            cost: vec![("logferry".into(), 0.0), ("other".into(), 3.0)],
            ..ReportData::default()
        };
        let page = render_html(&d);
        assert!(!page.contains("could not be drawn"), "{page}");
        assert!(!page.contains('\u{7}'));
        assert_eq!(no_data(&page), 1, "only the lag chart");
        d.cost = vec![("logferry".into(), f64::NAN)];
        assert_eq!(no_data(figure_of(&render_html(&d), "chart-cost")), 1);
    }

    #[test]
    fn clock_times_and_ticks() {
        assert_eq!(clock(T0), "12:00:00");
        assert_eq!(clock(T0 + 3_599.0), "12:59:59");
        assert_eq!(clock(T0 + 43_200.0), "00:00:00");
        assert_eq!(
            time_ticks(T0 + 3.0, T0 + 590.0, 6),
            (1..=4).map(|m| T0 + 120.0 * m as f64).collect::<Vec<_>>()
        );
        assert_eq!(
            time_ticks(T0, T0 + 30.0, 6),
            (0..=6).map(|i| T0 + 5.0 * i as f64).collect::<Vec<_>>()
        );
        assert_eq!(axis_num(12_000.0), "12k");
        assert_eq!(axis_num(0.25), "0.25");
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    /// A decoded screenshot.
    struct Shot {
        w: usize,
        h: usize,
        rgb: Vec<[u8; 3]>,
    }

    impl Shot {
        fn read(path: &Path) -> Shot {
            let file = std::fs::File::open(path).expect("open screenshot");
            let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
            decoder.set_transformations(png::Transformations::normalize_to_color8());
            let mut reader = decoder.read_info().expect("png header");
            let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
            let info = reader.next_frame(&mut buf).expect("png frame");
            let channels = info.color_type.samples();
            assert!(
                channels >= 3,
                "colour screenshot, got {:?}",
                info.color_type
            );
            let rgb = buf[..info.buffer_size()]
                .chunks_exact(channels)
                .map(|p| [p[0], p[1], p[2]])
                .collect();
            Shot {
                w: info.width as usize,
                h: info.height as usize,
                rgb,
            }
        }

        /// Rows (top, bottom) where pixels of `c` (±6 per channel) are, and
        /// how many.
        fn find(&self, c: RGBColor) -> (usize, usize, usize) {
            let near = |p: &[u8; 3]| {
                p.iter()
                    .zip([c.0, c.1, c.2])
                    .all(|(a, b)| a.abs_diff(b) <= 6)
            };
            let (mut top, mut bottom, mut n) = (usize::MAX, 0, 0);
            for (i, p) in self.rgb.iter().enumerate() {
                if near(p) {
                    n += 1;
                    top = top.min(i / self.w);
                    bottom = bottom.max(i / self.w);
                }
            }
            (top, bottom, n)
        }
    }

    /// Renders the sample page in headless Chromium: the DOM has the six
    /// charts, and the screenshot shows them (their colours, a lot of
    /// detail). With `LOGFERRY_REPORT_SAMPLE=/some/prefix` the page and the
    /// screenshot are also kept as `/some/prefix.html` and `.png`.
    #[test]
    fn chromium_renders_the_sample_page() {
        let dir = browser::Scratch::new().unwrap_or_else(|e| panic!("{e}"));
        let html = dir.path().join("report.html");
        let png_path = dir.path().join("report.png");
        std::fs::write(&html, render_html(&sample())).expect("write page");

        let dom = browser::dump_dom(&html).unwrap_or_else(|e| panic!("{e}"));
        for id in CHART_IDS {
            assert!(
                dom.contains(&format!("<figure id=\"{id}\">")),
                "DOM has {id}"
            );
        }
        assert_eq!(dom.matches("<svg").count(), 6, "DOM has six svg");
        assert!(dom.contains("<text"), "DOM has SVG text");
        assert!(!dom.contains("<b>"), "user text made an element");

        browser::screenshot(&html, &png_path).unwrap_or_else(|e| panic!("{e}"));
        if let Some(prefix) = std::env::var_os("LOGFERRY_REPORT_SAMPLE") {
            let prefix = std::path::PathBuf::from(prefix);
            std::fs::copy(&html, prefix.with_extension("html")).expect("keep page");
            std::fs::copy(&png_path, prefix.with_extension("png")).expect("keep screenshot");
        }
        let shot = Shot::read(&png_path);
        assert_eq!(
            (shot.w, shot.h),
            (browser::WINDOW.0 as usize, browser::WINDOW.1 as usize)
        );

        // Every chart colour is on screen, and the charts span three rows.
        let mut top = usize::MAX;
        let mut bottom = 0;
        for (name, c, least) in [
            ("P50 line", P50_COLOR, 400),
            ("P95 line", P95_COLOR, 400),
            ("target line", TARGET_COLOR, 200),
            ("critical line", CRITICAL_COLOR, 200),
            ("dead letter bars", DEAD_LETTER_COLOR, 2_000),
            ("alternatives' cost bars", ALTERNATIVE_COLOR, 2_000),
        ] {
            let (t, b, n) = shot.find(c);
            assert!(n >= least, "{name}: {n} pixels of {c:?}, want {least}");
            if n > 0 {
                top = top.min(t);
                bottom = bottom.max(b);
            }
        }
        assert!(
            bottom > top + 3 * CHART_H as usize / 2,
            "charts span {top}..{bottom}"
        );

        // The chart area is detailed: many colours (anti-aliased text and
        // lines), a fair share of ink.
        let area = &shot.rgb[top * shot.w..(bottom + 1) * shot.w];
        let mut colours: Vec<[u8; 3]> = area.to_vec();
        colours.sort_unstable();
        colours.dedup();
        let inked = area.iter().filter(|p| p.iter().any(|c| *c < 235)).count();
        assert!(
            colours.len() >= 200,
            "{} distinct colours in the charts",
            colours.len()
        );
        assert!(
            inked * 100 >= area.len() * 4,
            "{inked} of {} pixels inked",
            area.len()
        );
    }
}
