//! Latency reports: HdrHistogram's percentile-distribution text (`.hgrm`) and a
//! percentile plot (SVG) of several histograms, as HdrHistogram's plotter draws them.
//!
//! Pure: takes histograms (values in ns), returns text.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance, as HdrHistogram's `outputPercentileDistribution`
/// uses by default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The standard percentile distribution (`Value Percentile TotalCount 1/(1-Percentile)`
/// rows and the `#[Mean …]`, `#[Max …]`, `#[Buckets …]` footer), values divided by
/// `unit_ns` (1000 prints microseconds), with three decimals.
pub fn hgrm(h: &Histogram<u64>, unit_ns: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / unit_ns;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{:>12.3} {:>2.12} {:>10} {:>14.2}",
                    value,
                    q,
                    total,
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.3} {q:>2.12} {total:>10}");
            }
        }
    }
    let scaled = |x: f64| x / unit_ns;
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (scaled(h.mean()), scaled(h.stdev()), scaled(h.max() as f64))
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
}

/// The plot's x axis ends at 1/(1-p) = 10^DECADES (99.9999%).
const DECADES: u32 = 6;
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 280.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A percentile plot: x is 1/(1-percentile) on a log scale (0%, 90%, 99%, … as
/// HdrHistogram's plotter labels it), y the latency in µs on a log scale; one line per
/// named histogram (values in ns). Empty histograms are listed in the legend as "no data".
pub fn percentile_svg(title: &str, series: &[(&str, &Histogram<u64>)]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_us = series
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(_, h)| h.max() as f64 / 1000.0)
        .fold(1.0f64, f64::max);
    let min_us = series
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(_, h)| (h.min().max(1)) as f64 / 1000.0)
        .fold(max_us, f64::min);
    let y_lo = 10f64.powf(min_us.max(0.001).log10().floor());
    let y_hi = 10f64.powf(max_us.log10().ceil()).max(y_lo * 10.0);
    let x_of = |inv: f64| LEFT + plot_w * (inv.max(1.0).log10() / DECADES as f64).min(1.0);
    let y_of = |us: f64| {
        let f = (us.max(y_lo).log10() - y_lo.log10()) / (y_hi.log10() - y_lo.log10());
        TOP + plot_h * (1.0 - f)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    for d in 0..=DECADES {
        let x = x_of(10f64.powi(d as i32));
        let label = percentile_label(d);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let mut y = y_lo;
    while y <= y_hi * 1.0001 {
        let py = y_of(y);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            fmt_us(y)
        );
        y *= 10.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile</text><text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle">Latency (µs)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (i, (name, h)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let ly = TOP + 16.0 + i as f64 * 18.0;
        let lx = LEFT + plot_w + 12.0;
        let note = if h.is_empty() { " (no data)" } else { "" };
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}{note}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            escape(name)
        );
        if h.is_empty() {
            continue;
        }
        let mut points = String::new();
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            let q = v.quantile_iterated_to();
            let inv = if q >= 1.0 {
                10f64.powi(DECADES as i32)
            } else {
                1.0 / (1.0 - q)
            };
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x_of(inv),
                y_of(v.value_iterated_to() as f64 / 1000.0)
            );
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.trim_end()
        );
    }
    s.push_str("</svg>\n");
    s
}

fn percentile_label(decade: u32) -> String {
    if decade == 0 {
        return "0%".into();
    }
    // 1/(1-p) = 10^d  =>  p = 1 - 10^-d: 90%, 99%, 99.9%, …
    let nines = "9".repeat(decade as usize);
    match decade {
        1 => "90%".into(),
        2 => "99%".into(),
        _ => format!("99.{}%", &nines[2..]),
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1.0 {
        format!("{us:.0}")
    } else {
        format!("{us}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Histogram<u64> {
        // 1..=10_000 µs, each once.
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for us in 1..=10_000u64 {
            h.record(us * 1000).unwrap();
        }
        h
    }

    #[test]
    fn hgrm_has_the_standard_shape_and_values() {
        let text = hgrm(&known(), 1000.0);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20);
        // The first row is the minimum at percentile 0; the last is the max at 1, with
        // the whole count and no 1/(1-p) column.
        assert_eq!(rows[0][1], 0.0);
        assert!((rows[0][0] - 1.0).abs() < 0.01);
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3);
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 10_000.0);
        assert!((last[0] - 10_000.0).abs() / 10_000.0 < 0.001);
        // Rows are monotonic, and each 1/(1-p) matches its percentile.
        for w in rows.windows(2) {
            assert!(w[1][0] >= w[0][0] && w[1][1] >= w[0][1] && w[1][2] >= w[0][2]);
        }
        for r in rows.iter().filter(|r| r.len() == 4) {
            assert!((r[3] - 1.0 / (1.0 - r[1])).abs() / r[3] < 0.01, "{r:?}");
            // Uniform 1..=10000: the value at percentile p is about p * 10000.
            assert!(
                (r[0] - r[1] * 10_000.0).abs() <= 10_000.0 * 0.002 + 1.0,
                "{r:?}"
            );
        }
        // The median row exists and the footer states mean, max and count.
        assert!(rows
            .iter()
            .any(|r| r[1] == 0.5 && (r[0] - 5000.0).abs() < 5.0));
        let footer = |key: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(key)).unwrap();
            let v = line.split('=').nth(1).unwrap().split(',').next().unwrap();
            v.trim().parse().unwrap()
        };
        // The histogram keeps values to 3 significant digits: within 0.1%.
        assert!((footer("#[Mean") - 5000.5).abs() / 5000.5 < 0.001, "{text}");
        assert!(
            (footer("#[Max") - 10_000.0).abs() / 10_000.0 < 0.001,
            "{text}"
        );
        assert!(text.contains("Total count    =        10000]"), "{text}");
        assert!(text.contains("#[Buckets ="));
    }

    #[test]
    fn an_empty_histogram_still_has_header_and_footer() {
        let h = Histogram::<u64>::new(2).unwrap();
        let text = hgrm(&h, 1000.0);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("Total count    =            0]"));
    }

    #[test]
    fn the_plot_has_a_line_per_stage_and_percentile_labels() {
        let h = known();
        let empty = Histogram::<u64>::new(2).unwrap();
        let svg = percentile_svg("t <1>", &[("a", &h), ("b", &empty)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        for label in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
        assert!(svg.contains("b (no data)"));
        assert!(svg.contains("t &lt;1&gt;"));
    }
}
