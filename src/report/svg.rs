//! The report's two charts as inline SVG. Only numbers, dates and fixed labels go into
//! them (nothing a caller sent), and they scale to the page's width through `viewBox`.

use std::fmt::Write as _;

use chrono::NaiveDate;

use super::OUTCOMES;

/// The colour of each outcome, in [`OUTCOMES`] order.
pub const COLOURS: [&str; 7] = [
    "#2e7d32", "#6a1b9a", "#ef6c00", "#c62828", "#455a64", "#8d6e63", "#b0bec5",
];

/// Calls per day, stacked by outcome.
pub fn per_day(days: &[(NaiveDate, [i64; 7])]) -> String {
    let (w, h, left, bottom) = (720.0, 200.0, 34.0, 22.0);
    let max = days
        .iter()
        .map(|(_, c)| c.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = w - left;
    let plot_h = h - bottom;
    let n = days.len().max(1) as f64;
    let bar = plot_w / n;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Calls per day by outcome\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    // The scale: 0 and the largest day.
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#555\">{max}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#555\">0</text><line x1=\"{left}\" y1=\"{plot_h}\" x2=\"{w}\" y2=\"{plot_h}\" stroke=\"#999\" stroke-width=\"1\"/>",
        left - 4.0,
        11.0,
        left - 4.0,
        plot_h
    );
    for (i, (day, counts)) in days.iter().enumerate() {
        let x = left + i as f64 * bar;
        let mut y = plot_h;
        for (o, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let bh = plot_h * c as f64 / max as f64;
            y -= bh;
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{}\"><title>{} {}: {c}</title></rect>",
                (bar * 0.85).max(0.5),
                COLOURS[o],
                day.format("%Y-%m-%d"),
                OUTCOMES[o]
            );
        }
        // A date under the first bar, then about every seventh.
        let every = (days.len() / 5).max(1);
        if i % every == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.2}\" y=\"{}\" font-size=\"11\" fill=\"#555\">{}</text>",
                x,
                h - 6.0,
                day.format("%m-%d")
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A legend's colour square.
pub fn swatch(colour: &str) -> String {
    format!(
        "<svg width=\"10\" height=\"10\" aria-hidden=\"true\" xmlns=\"http://www.w3.org/2000/svg\"><rect width=\"10\" height=\"10\" fill=\"{colour}\"/></svg>"
    )
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Calls by day of week and hour, darker for more.
pub fn heat(heat: &[[i64; 24]; 7]) -> String {
    let (cell_w, cell_h, left, top) = (27.0, 20.0, 36.0, 16.0);
    let w = left + 24.0 * cell_w;
    let h = top + 7.0 * cell_h;
    let max = heat.iter().flatten().copied().max().unwrap_or(0).max(1);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"When calls come in, by day of week and hour\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for hour in (0..24).step_by(3) {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"11\" font-size=\"11\" fill=\"#555\">{hour:02}</text>",
            left + hour as f64 * cell_w
        );
    }
    for (d, row) in heat.iter().enumerate() {
        let y = top + d as f64 * cell_h;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"11\" fill=\"#555\">{}</text>",
            y + 14.0,
            DAYS[d]
        );
        for (hr, &c) in row.iter().enumerate() {
            let opacity = if c == 0 {
                0.06
            } else {
                0.15 + 0.85 * c as f64 / max as f64
            };
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#1565c0\" fill-opacity=\"{opacity:.2}\"><title>{} {hr:02}:00: {c}</title></rect>",
                left + hr as f64 * cell_w,
                cell_w - 2.0,
                cell_h - 2.0,
                DAYS[d]
            );
        }
    }
    s.push_str("</svg>");
    s
}
