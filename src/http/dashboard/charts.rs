//! Chart geometry for the dashboard's server-side SVG: numbers only (positions, lengths,
//! hover titles). The templates draw the `<svg>` elements from these with Tera's
//! autoescaping, so no markup is ever built from data in Rust and nothing needs `| safe`.
//! Colours are CSS classes (`c0`…`c7`, `ok`, `fail`), so dark and light themes follow the
//! stylesheet.

use std::collections::BTreeMap;

use bkvy_actors::dashboard::report::{Point, WaitView};
use serde::Serialize;

/// Named slices shown before the rest is grouped as "other".
const MAX_SLICES: usize = 7;
/// Donut radius (the stroke is centred on it).
const RADIUS: f64 = 60.0;

/// A donut: one circle per slice, drawn with a dash of the slice's length.
#[derive(Debug, Clone, Serialize)]
pub struct Donut {
    pub total: u64,
    pub circumference: f64,
    pub slices: Vec<Slice>,
}

/// One donut slice and its legend entry.
#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    pub name: String,
    pub count: u64,
    pub percent: String,
    pub class: String,
    /// Dash length along the circle.
    pub dash: f64,
    /// Rest of the circle.
    pub gap: f64,
    /// Negative offset where the slice starts.
    pub offset: f64,
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn pct(n: u64, total: u64) -> String {
    if total == 0 {
        "0".into()
    } else {
        format!("{:.1}", n as f64 * 100.0 / total as f64)
    }
}

/// The donut of a count map: largest first, the tail grouped as "other".
pub fn donut(counts: &BTreeMap<String, u64>) -> Donut {
    let mut items: Vec<(&String, u64)> = counts.iter().map(|(k, v)| (k, *v)).collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total: u64 = items.iter().map(|i| i.1).sum();
    let mut named: Vec<(String, u64)> = items
        .iter()
        .take(MAX_SLICES)
        .map(|(k, v)| ((*k).clone(), *v))
        .collect();
    let rest: u64 = items.iter().skip(MAX_SLICES).map(|i| i.1).sum();
    if rest > 0 {
        named.push(("other".into(), rest));
    }
    let c = 2.0 * std::f64::consts::PI * RADIUS;
    let mut at = 0.0;
    let slices = named
        .into_iter()
        .enumerate()
        .map(|(i, (name, count))| {
            let len = if total == 0 {
                0.0
            } else {
                c * count as f64 / total as f64
            };
            let s = Slice {
                percent: pct(count, total),
                class: format!("c{}", i % 8),
                dash: r2(len),
                gap: r2(c - len),
                offset: r2(-at),
                name,
                count,
            };
            at += len;
            s
        })
        .collect();
    Donut {
        total,
        circumference: r2(c),
        slices,
    }
}

/// Requests over time: one stacked column (successful below, failed above) per point.
#[derive(Debug, Clone, Serialize)]
pub struct Columns {
    pub width: f64,
    pub height: f64,
    pub plot_left: f64,
    pub plot_bottom: f64,
    pub max: u64,
    pub columns: Vec<Column>,
    pub labels: Vec<AxisLabel>,
}

/// One column.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub x: f64,
    pub w: f64,
    pub ok_y: f64,
    pub ok_h: f64,
    pub fail_y: f64,
    pub fail_h: f64,
    /// Bucket start, ISO UTC (the page shows it in local time).
    pub at: String,
    pub success: u64,
    pub failed: u64,
    pub cost: f64,
}

/// A time label under the axis.
#[derive(Debug, Clone, Serialize)]
pub struct AxisLabel {
    pub x: f64,
    pub text: String,
    pub at: String,
}

/// The time-series chart of a report.
pub fn columns(points: &[Point]) -> Columns {
    let (width, height, left, top, bottom) = (1200.0, 220.0, 44.0, 10.0, 196.0);
    let plot_h = bottom - top;
    let max = points.iter().map(|p| p.total).max().unwrap_or(0).max(1);
    let slot = (width - left - 6.0) / points.len().max(1) as f64;
    let w = (slot * 0.8).max(1.0);
    let scale = |n: u64| n as f64 / max as f64 * plot_h;
    let columns = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let x = left + i as f64 * slot + (slot - w) / 2.0;
            let ok_h = scale(p.success);
            let fail_h = scale(p.failed);
            Column {
                x: r2(x),
                w: r2(w),
                ok_y: r2(bottom - ok_h),
                ok_h: r2(ok_h),
                fail_y: r2(bottom - ok_h - fail_h),
                fail_h: r2(fail_h),
                at: p.timestamp.clone(),
                success: p.success,
                failed: p.failed,
                cost: p.cost,
            }
        })
        .collect();
    let every = points.len().div_euclid(6).max(1);
    let labels = points
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .filter(|(i, _)| left + *i as f64 * slot < width - 110.0)
        .map(|(i, p)| AxisLabel {
            x: r2(left + i as f64 * slot),
            text: format!("{} UTC", p.hour),
            at: p.timestamp.clone(),
        })
        .collect();
    Columns {
        width,
        height,
        plot_left: left,
        plot_bottom: bottom,
        max,
        columns,
        labels,
    }
}

/// Horizontal bars (one row per name), optionally split into successful and failed.
#[derive(Debug, Clone, Serialize)]
pub struct Rows {
    pub height: f64,
    pub rows: Vec<Row>,
}

/// One bar.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub label: String,
    pub y: f64,
    pub ok_w: f64,
    pub fail_w: f64,
    pub total: u64,
    pub success: u64,
    pub failed: u64,
}

const ROW_H: f64 = 26.0;
const BAR_W: f64 = 300.0;

fn rows(items: Vec<(String, u64, u64)>) -> Rows {
    let max = items.iter().map(|i| i.1 + i.2).max().unwrap_or(0).max(1);
    let rows = items
        .into_iter()
        .enumerate()
        .map(|(i, (label, ok, fail))| Row {
            label,
            y: i as f64 * ROW_H,
            ok_w: r2(ok as f64 / max as f64 * BAR_W),
            fail_w: r2(fail as f64 / max as f64 * BAR_W),
            total: ok + fail,
            success: ok,
            failed: fail,
        })
        .collect::<Vec<_>>();
    Rows {
        height: (rows.len() as f64 * ROW_H).max(ROW_H),
        rows,
    }
}

/// Bars of a count map, largest first (at most 12).
pub fn count_rows(counts: &BTreeMap<String, u64>) -> Rows {
    let mut items: Vec<(String, u64, u64)> =
        counts.iter().map(|(k, v)| (k.clone(), *v, 0)).collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    items.truncate(12);
    rows(items)
}

/// Wait-budget buckets, successful and failed.
pub fn wait_rows(wait: &[WaitView]) -> Rows {
    rows(
        wait.iter()
            .map(|w| (w.bucket.to_owned(), w.success, w.failed))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn donut_slices_cover_the_circle_and_group_the_tail() {
        let counts: BTreeMap<String, u64> =
            (0..10).map(|i| (format!("n{i}"), 10 - i as u64)).collect();
        let d = donut(&counts);
        assert_eq!(d.total, 55);
        assert_eq!(d.slices.len(), MAX_SLICES + 1);
        assert_eq!(d.slices[0].name, "n0");
        assert_eq!(d.slices.last().map(|s| s.count), Some(6));
        let sum: f64 = d.slices.iter().map(|s| s.dash).sum();
        assert!((sum - d.circumference).abs() < 0.1, "{sum}");
        assert_eq!(donut(&BTreeMap::new()).slices.len(), 0);
    }

    #[test]
    fn columns_scale_to_the_largest_point() {
        let p = |s, f| Point {
            hour: "2026-01-01 00:00".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            success: s,
            failed: f,
            total: s + f,
            cost: 0.0,
        };
        let c = columns(&[p(2, 2), p(0, 0), p(1, 0)]);
        assert_eq!(c.max, 4);
        assert_eq!(c.columns[0].ok_h + c.columns[0].fail_h, 186.0);
        assert_eq!(c.columns[1].ok_h, 0.0);
        assert!(c.columns[2].x > c.columns[0].x);
    }
}
