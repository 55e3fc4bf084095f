//! `timeline.html` of one run: a page a person looks at instead of reading `history.jsonl`.
//!
//! Self-contained (inline SVG, CSS and a few lines of script; opens from disk with no network):
//! one lane per node and per client process, every operation a bar from its invocation to its
//! completion coloured ok / fail / info, each fault a shaded band from the step that made it to
//! the step that undid it, node starts, readiness and exits and the log lines the scenario
//! waited for ("Reconnected to PD", leader changes) as markers, each step's verdict in a row of
//! its own (a failed step's window is outlined across every lane). Hover shows the details. Below
//! it, latency over time and throughput over time (drawn with plotters), with the same bands.
//!
//! A pure function of the run's verdicts and its history, so it is unit-tested on hand-built
//! histories and can be drawn again from saved evidence.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use plotters::prelude::*;

use super::ScenarioRun;
use crate::history::{
    Event, EventKind, FaultKind, Landmark, NodeEvent, OpRecord, Outcome as OpOutcome,
};
use crate::verdict::Outcome;

pub const TIMELINE_FILE: &str = "timeline.html";

/// Width of the lanes' drawing area and of the label column, in px.
const PLOT_W: f64 = 1200.0;
const LABEL_W: f64 = 230.0;
const LANE_H: f64 = 16.0;
const AXIS_H: f64 = 22.0;

/// A fault's time on the page: from the fault to what undid it (or the end of the run).
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub start_ms: f64,
    pub end_ms: f64,
    /// `kill`, `partition`, ... (the CSS class of its shade).
    pub kind: &'static str,
    pub label: String,
}

/// The fault that a fault of kind `undo` ends, and whether `kind` is one that lasts.
fn undone_by(kind: FaultKind) -> Option<&'static [FaultKind]> {
    Some(match kind {
        FaultKind::Kill | FaultKind::Term => &[FaultKind::Start, FaultKind::Restart],
        FaultKind::Stop => &[FaultKind::Cont],
        FaultKind::Block => &[FaultKind::Unblock],
        FaultKind::Partition => &[FaultKind::Heal],
        FaultKind::LinkFault => &[FaultKind::LinkPass],
        _ => return None,
    })
}

/// The faults of a history as bands: each lasting fault from its record to the first record
/// that undid it on the same node (a heal or link pass without a node ends them all), a restart
/// as a short band of its own.
pub fn fault_bands(events: &[Event], end_ms: f64) -> Vec<Band> {
    let mut open: Vec<(Band, FaultKind, String)> = Vec::new();
    let mut done = Vec::new();
    for e in events {
        let EventKind::Fault(f) = &e.kind else {
            continue;
        };
        let label = format!("{} {}: {}", f.kind.as_str(), f.node_name, f.detail);
        // What this record undoes.
        let mut still_open = Vec::new();
        for (mut band, kind, node) in open.drain(..) {
            let ends = undone_by(kind).is_some_and(|u| u.contains(&f.kind))
                && (node == f.node_name
                    || f.node_name.is_empty()
                    || matches!(f.kind, FaultKind::Heal | FaultKind::LinkPass));
            if ends {
                band.end_ms = e.t_ms;
                band.label
                    .push_str(&format!(" (until {})", f.kind.as_str()));
                done.push(band);
            } else {
                still_open.push((band, kind, node));
            }
        }
        open = still_open;
        let band = Band {
            start_ms: e.t_ms,
            end_ms: e.t_ms,
            kind: f.kind.as_str(),
            label,
        };
        if undone_by(f.kind).is_some() {
            open.push((band, f.kind, f.node_name.clone()));
        } else if f.kind.injects() {
            done.push(band);
        }
    }
    for (mut band, _, _) in open {
        band.end_ms = end_ms;
        band.label.push_str(" (never undone)");
        done.push(band);
    }
    done.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    done
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn op_class(o: &OpRecord) -> &'static str {
    match o.outcome {
        OpOutcome::Ok => "ok",
        OpOutcome::Fail => "fail",
        OpOutcome::Info => "info",
    }
}

fn op_details(o: &OpRecord) -> String {
    let mut d = format!(
        "#{} {} {} {:?} by {}: {} after {:.0} ms ({} attempt(s)); {:.0}..{:.0} ms",
        o.id,
        o.op.as_str(),
        o.key,
        o.value.as_deref().unwrap_or(""),
        o.client,
        op_class(o),
        o.end_ms - o.start_ms,
        o.attempts,
        o.start_ms,
        o.end_ms
    );
    if let Some(e) = &o.error {
        d.push_str(&format!("; {e}"));
    }
    d
}

/// The lanes, top to bottom: nodes (by name), then clients in order of their first operation.
fn lanes(events: &[Event], ops: &[&OpRecord]) -> Vec<String> {
    let mut nodes: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Node(n) => Some(n.node_name.clone()),
            _ => None,
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    let mut clients: Vec<String> = Vec::new();
    for o in ops {
        if !clients.contains(&o.client) {
            clients.push(o.client.clone());
        }
    }
    nodes.into_iter().chain(clients).collect()
}

/// A tick spacing in ms that gives 5-15 ticks over `span_ms`.
fn tick_ms(span_ms: f64) -> f64 {
    [
        100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 30_000.0, 60_000.0,
    ]
    .into_iter()
    .find(|t| span_ms / t <= 15.0)
    .unwrap_or(300_000.0)
}

/// The lanes' SVG.
fn lanes_svg(
    run: &ScenarioRun,
    events: &[Event],
    ops: &[&OpRecord],
    bands: &[Band],
    end_ms: f64,
) -> String {
    let lanes = lanes(events, ops);
    let lane_of: BTreeMap<&str, usize> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let x = |t: f64| LABEL_W + (t.max(0.0) / end_ms.max(1.0)) * PLOT_W;
    // Row 0: the steps; then one row per lane.
    let y = |row: usize| AXIS_H + row as f64 * LANE_H;
    let height = y(lanes.len() + 1) + 4.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="lanes" xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        LABEL_W + PLOT_W + 10.0
    );
    // Time axis.
    let tick = tick_ms(end_ms);
    let mut t = 0.0;
    while t <= end_ms {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{height}" stroke="#e4e4e4"/><text x="{0:.1}" y="{2}" text-anchor="middle" fill="#555">{3} s</text>"##,
            x(t),
            AXIS_H - 6.0,
            AXIS_H - 10.0,
            t / 1000.0
        );
        t += tick;
    }
    // Fault bands across every lane.
    for b in bands {
        let w = (x(b.end_ms) - x(b.start_ms)).max(2.0);
        let _ = write!(
            s,
            r#"<rect class="band {}" x="{:.1}" y="{}" width="{w:.1}" height="{}" data-d="{}"><title>{}</title></rect>"#,
            b.kind,
            x(b.start_ms),
            AXIS_H,
            height - AXIS_H,
            esc(&b.label),
            esc(&b.label)
        );
    }
    // Lane labels and separators.
    let _ = write!(
        s,
        r##"<text x="4" y="{}" font-weight="bold">steps</text>"##,
        y(0) + 12.0
    );
    for (i, lane) in lanes.iter().enumerate() {
        let _ = write!(
            s,
            r##"<text class="lane" x="4" y="{}">{}</text><line x1="{LABEL_W}" x2="{}" y1="{3}" y2="{3}" stroke="#f0f0f0"/>"##,
            y(i + 1) + 12.0,
            esc(lane),
            LABEL_W + PLOT_W,
            y(i + 1) + LANE_H
        );
    }
    // Steps, with a failed step's window outlined over every lane.
    for step in &run.steps {
        let class = step.verdict.outcome.as_str();
        let w = (x(step.end_ms) - x(step.start_ms)).max(2.0);
        let d = format!(
            "step {}: {} — {}: {}",
            step.index, step.description, class, step.verdict.message
        );
        let _ = write!(
            s,
            r#"<rect class="step {class}" x="{:.1}" y="{}" width="{w:.1}" height="{}" data-d="{}"><title>{}</title></rect>"#,
            x(step.start_ms),
            y(0) + 2.0,
            LANE_H - 4.0,
            esc(&d),
            esc(&d)
        );
        if matches!(step.verdict.outcome, Outcome::Fail | Outcome::Error) {
            let _ = write!(
                s,
                r#"<rect class="failed-window" x="{:.1}" y="{}" width="{w:.1}" height="{}"/>"#,
                x(step.start_ms),
                AXIS_H,
                height - AXIS_H
            );
        }
    }
    // Nodes: up from each start to its exit, markers for starts, readiness and exits.
    let mut up_since: BTreeMap<&str, f64> = BTreeMap::new();
    for e in events {
        let EventKind::Node(n) = &e.kind else {
            continue;
        };
        let Some(row) = lane_of.get(n.node_name.as_str()).map(|i| i + 1) else {
            continue;
        };
        let (mark, class, d) = match &n.event {
            NodeEvent::Started { pid } => {
                up_since.insert(&n.node_name, e.t_ms);
                ("▲", "start", format!("{} started (pid {pid})", n.node_name))
            }
            NodeEvent::Ready { after_ms } => (
                "●",
                "ready",
                format!("{} ready after {after_ms:.0} ms", n.node_name),
            ),
            NodeEvent::Exited {
                status, expected, ..
            } => {
                if let Some(since) = up_since.remove(n.node_name.as_str()) {
                    up_bar(&mut s, x(since), x(e.t_ms), y(row));
                }
                let class = if *expected { "exit" } else { "crash" };
                ("✕", class, format!("{} exited: {status}", n.node_name))
            }
            NodeEvent::Stopped => ("❚❚", "exit", format!("{} stopped", n.node_name)),
            NodeEvent::Continued => ("▶", "start", format!("{} continued", n.node_name)),
        };
        marker(&mut s, x(e.t_ms), y(row), mark, class, &d);
    }
    for (node, since) in up_since {
        if let Some(row) = lane_of.get(node).map(|i| i + 1) {
            up_bar(&mut s, x(since), x(end_ms), y(row));
        }
    }
    // The log lines the scenario waited for, on their node's lane.
    for e in events {
        if let EventKind::LogMatch(m) = &e.kind
            && let Some(row) = lane_of.get(m.node_name.as_str()).map(|i| i + 1)
        {
            let at = m.logged_ms.unwrap_or(m.seen_ms);
            marker(&mut s, x(at), y(row), "◆", "log", &m.line);
        }
    }
    // Leader changes and PD reconnections, where the node logged them.
    for e in events {
        if let EventKind::Landmark(l) = &e.kind
            && let Some(row) = lane_of.get(l.node_name.as_str()).map(|i| i + 1)
        {
            let (mark, class) = match l.landmark {
                Landmark::LeaderChanged => ("♛", "leader"),
                Landmark::ReconnectedToPd => ("⟲", "pd"),
            };
            let d = format!("{}: {}", l.node_name, l.line);
            marker(&mut s, x(l.logged_ms), y(row), mark, class, &d);
        }
    }
    // The operations a failed check points at (a linearizability violation's window): their
    // span outlined across every lane, and each of them outlined.
    let pointed: BTreeMap<u64, usize> = run
        .steps
        .iter()
        .filter(|step| matches!(step.verdict.outcome, Outcome::Fail | Outcome::Error))
        .flat_map(|step| step.verdict.ops.iter().map(|id| (*id, step.index)))
        .collect();
    let window: Vec<&&OpRecord> = ops.iter().filter(|o| pointed.contains_key(&o.id)).collect();
    if let (Some(from), Some(to)) = (
        window.iter().map(|o| o.start_ms).reduce(f64::min),
        window.iter().map(|o| o.end_ms).reduce(f64::max),
    ) {
        let ids: Vec<String> = window.iter().map(|o| format!("#{}", o.id)).collect();
        let steps: BTreeSet<usize> = pointed.values().copied().collect();
        let d = format!(
            "step {}: these operations cannot be linearized together: {}",
            steps
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            ids.join(", ")
        );
        let _ = write!(
            s,
            r#"<rect class="violation-window" x="{:.1}" y="{}" width="{:.1}" height="{}" data-d="{}"><title>{}</title></rect>"#,
            x(from),
            AXIS_H,
            (x(to) - x(from)).max(2.0),
            height - AXIS_H,
            esc(&d),
            esc(&d)
        );
    }
    // Operations.
    for o in ops {
        let Some(row) = lane_of.get(o.client.as_str()).map(|i| i + 1) else {
            continue;
        };
        let w = (x(o.end_ms) - x(o.start_ms)).max(1.0);
        let d = op_details(o);
        let _ = write!(
            s,
            r#"<rect class="op {}{}" x="{:.1}" y="{}" width="{w:.1}" height="{}" data-d="{}"><title>{}</title></rect>"#,
            op_class(o),
            if pointed.contains_key(&o.id) {
                " violation"
            } else {
                ""
            },
            x(o.start_ms),
            y(row) + 3.0,
            LANE_H - 6.0,
            esc(&d),
            esc(&d)
        );
    }
    s.push_str("</svg>");
    s
}

fn up_bar(s: &mut String, from: f64, to: f64, y: f64) {
    let _ = write!(
        s,
        r#"<rect class="up" x="{from:.1}" y="{}" width="{:.1}" height="4"/>"#,
        y + 6.0,
        (to - from).max(1.0)
    );
}

fn marker(s: &mut String, x: f64, y: f64, mark: &str, class: &str, details: &str) {
    let _ = write!(
        s,
        r#"<text class="mark {class}" x="{x:.1}" y="{}" text-anchor="middle" data-d="{}">{mark}<title>{}</title></text>"#,
        y + 12.0,
        esc(details),
        esc(details)
    );
}

/// Colours of the outcomes in the plots (the page's CSS uses the same).
const OK: RGBColor = RGBColor(46, 160, 67);
const FAIL: RGBColor = RGBColor(215, 58, 73);
const INFO: RGBColor = RGBColor(227, 160, 8);

fn colour(o: &OpRecord) -> RGBColor {
    match o.outcome {
        OpOutcome::Ok => OK,
        OpOutcome::Fail => FAIL,
        OpOutcome::Info => INFO,
    }
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;
type DrawResult =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

/// One plot over the run's time (x: s since it began, y: 0..`max_y`) with the fault bands
/// shaded under what `draw` puts on it, as an SVG string.
fn chart(
    caption: &str,
    y_desc: &str,
    (end_s, max_y): (f64, f64),
    bands: &[Band],
    draw: impl FnOnce(&mut Chart<'_, '_>) -> DrawResult,
) -> Result<String, String> {
    let e = |e: &dyn std::fmt::Display| format!("drawing the plot \"{caption}\": {e}");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1430, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end_s, 0.0..max_y)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("s since the run began")
            .y_desc(y_desc)
            .light_line_style(RGBColor(245, 245, 245))
            .draw()
            .map_err(|x| e(&x))?;
        chart
            .draw_series(bands.iter().map(|b| {
                let end = (b.end_ms / 1000.0).max(b.start_ms / 1000.0 + 0.02);
                Rectangle::new(
                    [(b.start_ms / 1000.0, 0.0), (end, max_y)],
                    band_colour(b.kind).filled(),
                )
            }))
            .map_err(|x| e(&x))?;
        draw(&mut chart).map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

/// A band's shade in the plots (the page's CSS shades the lanes alike).
fn band_colour(kind: &str) -> RGBAColor {
    match kind {
        "kill" | "term" => RGBAColor(215, 58, 73, 0.12),
        "partition" | "block" => RGBAColor(9, 105, 218, 0.12),
        "link_fault" => RGBAColor(191, 135, 0, 0.12),
        _ => RGBAColor(130, 80, 223, 0.12),
    }
}

/// Latency over time (one point per operation, at its invocation) and completions per second
/// by outcome, with the fault bands, as two SVG charts.
fn plots_svg(ops: &[&OpRecord], bands: &[Band], end_ms: f64) -> Result<String, String> {
    let end_s = (end_ms / 1000.0).max(1.0);
    let max_latency = ops
        .iter()
        .map(|o| o.end_ms - o.start_ms)
        .fold(10.0, f64::max)
        * 1.05;
    let mut per_second: BTreeMap<(u64, u8), u32> = BTreeMap::new();
    for o in ops {
        let class = match o.outcome {
            OpOutcome::Ok => 0,
            OpOutcome::Fail => 1,
            OpOutcome::Info => 2,
        };
        *per_second
            .entry(((o.end_ms / 1000.0) as u64, class))
            .or_default() += 1;
    }
    let max_rate = per_second.values().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let latency = chart(
        "latency of every operation (ms), at its invocation",
        "ms",
        (end_s, max_latency),
        bands,
        |chart| {
            chart.draw_series(ops.iter().map(|o| {
                Circle::new(
                    (o.start_ms / 1000.0, o.end_ms - o.start_ms),
                    2,
                    colour(o).filled(),
                )
            }))?;
            Ok(())
        },
    )?;
    let throughput = chart(
        "operations completed per second: ok (green), fail (red), info (amber)",
        "ops/s",
        (end_s, max_rate),
        bands,
        |chart| {
            for (class, colour) in [(0u8, OK), (1, FAIL), (2, INFO)] {
                let seconds = end_s.ceil() as u64;
                let series = (0..=seconds).map(|sec| {
                    let n = per_second.get(&(sec, class)).copied().unwrap_or(0);
                    (sec as f64 + 0.5, f64::from(n))
                });
                chart.draw_series(LineSeries::new(series, colour.stroke_width(2)))?;
            }
            Ok(())
        },
    )?;
    Ok(format!(
        r#"<div id="latency">{latency}</div><div id="throughput">{throughput}</div>"#
    ))
}

const STYLE: &str = r#"
body { font-family: sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; } .meta { color: #555; margin-bottom: 10px; }
table.cells { border-collapse: collapse; margin: 8px 0 12px; }
table.cells td, table.cells th { border: 1px solid #ddd; padding: 3px 8px; font-size: 13px; vertical-align: top; }
.passed { color: #2ea043; } .failed, .errored { color: #d73a49; font-weight: bold; } .skipped, .not_run, .observed { color: #777; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.sw { display: inline-block; width: 12px; height: 10px; margin-right: 4px; vertical-align: middle; }
rect.op.ok, .sw.ok { fill: #2ea043; background: #2ea043; }
rect.op.fail, .sw.fail { fill: #d73a49; background: #d73a49; }
rect.op.info, .sw.info { fill: #e3a008; background: #e3a008; }
rect.band { fill: #8250df; opacity: 0.12; } rect.band.kill, rect.band.term { fill: #d73a49; }
rect.band.partition, rect.band.block { fill: #0969da; } rect.band.link_fault { fill: #bf8700; }
.sw.band { background: #8250df; opacity: 0.35; }
rect.step.passed { fill: #2ea043; } rect.step.failed, rect.step.errored { fill: #d73a49; }
rect.step.observed, rect.step.skipped, rect.step.not_run { fill: #999; }
rect.failed-window { fill: none; stroke: #d73a49; stroke-width: 2; stroke-dasharray: 4 3; }
rect.violation-window { fill: #d73a49; opacity: 0.10; stroke: #d73a49; stroke-width: 1; }
rect.op.violation { stroke: #000; stroke-width: 2; }
rect.up { fill: #c8c8c8; } text.mark { font-size: 11px; cursor: default; }
text.mark.start, text.mark.ready { fill: #2ea043; } text.mark.exit { fill: #666; }
text.mark.crash { fill: #d73a49; font-weight: bold; } text.mark.log { fill: #0969da; }
text.mark.leader { fill: #8250df; } text.mark.pd { fill: #bf8700; font-weight: bold; }
#detail { position: sticky; top: 0; background: #fffbe6; border: 1px solid #e3c35a; padding: 4px 8px;
  font-size: 12px; min-height: 16px; white-space: pre-wrap; z-index: 2; }
.scroll { overflow-x: auto; }
"#;

/// Shows the details of whatever the pointer is over in the sticky box (the SVG `<title>`s give
/// the same as tooltips where scripts are off).
/// Once drawn, the page counts what the browser rendered into `<body data-rendered>`, so a
/// headless browser's DOM shows the page really drew its lanes, operations and bands.
const SCRIPT: &str = r#"
document.addEventListener('mouseover', function (ev) {
  var el = ev.target.closest('[data-d]');
  if (el) { document.getElementById('detail').textContent = el.getAttribute('data-d'); }
});
window.addEventListener('load', function () {
  function drawn(sel) {
    return Array.prototype.filter.call(document.querySelectorAll(sel), function (e) {
      var b = e.getBBox(); return b.width > 0 && b.height > 0;
    }).length;
  }
  document.body.setAttribute('data-rendered', 'lanes=' + drawn('#lanes text.lane') +
    ' ops=' + drawn('#lanes rect.op') + ' bands=' + drawn('#lanes rect.band') +
    ' leaders=' + drawn('#lanes text.mark.leader') + ' pd=' + drawn('#lanes text.mark.pd') +
    ' violations=' + drawn('#lanes rect.op.violation') +
    ' plots=' + document.querySelectorAll('#latency svg, #throughput svg').length);
});
"#;

/// The page.
pub fn render(run: &ScenarioRun, events: &[Event]) -> String {
    let end_ms = events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Op(o) => o.end_ms.max(e.t_ms),
            _ => e.t_ms,
        })
        .chain(run.steps.iter().map(|s| s.end_ms))
        .fold(1.0, f64::max);
    let bands = fault_bands(events, end_ms);
    let ops: Vec<&OpRecord> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Op(o) => Some(o),
            _ => None,
        })
        .collect();
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{} — timeline</title><style>{STYLE}</style></head><body>"#,
        esc(&run.scenario_id)
    );
    let _ = write!(
        html,
        r#"<h1>{} — {}</h1><div class="meta">run {} · replay it alone with <code>--seed {} --run {}</code> · {} · {:.1} s · every time is ms since the run began</div>"#,
        esc(&run.scenario_id),
        esc(&run.title),
        run.run,
        run.base_seed,
        run.run,
        esc(&run.network),
        run.duration_ms / 1000.0
    );
    if let Some(at) = &run.interrupted {
        let _ = write!(
            html,
            r#"<div class="meta"><b class="failed">interrupted:</b> {} (the steps from there on did not run)</div>"#,
            esc(at)
        );
    }
    html.push_str(r#"<table class="cells"><tr><th>cell</th><th>verdict</th><th>why</th></tr>"#);
    for c in &run.cells {
        let _ = write!(
            html,
            r#"<tr><td>{}</td><td class="{1}">{1}</td><td>{2}</td></tr>"#,
            esc(&c.cell.to_string()),
            c.verdict.outcome.as_str(),
            esc(&c.verdict.message)
        );
    }
    html.push_str("</table>");
    html.push_str(
        r#"<div class="legend"><span><i class="sw ok"></i>ok</span><span><i class="sw fail"></i>fail (not applied)</span><span><i class="sw info"></i>info (outcome unknown)</span><span><i class="sw band"></i>fault, until undone</span><span>▲ start ● ready ✕ exit (red: nobody asked) ◆ awaited log line ♛ leader changed (as the node saw it) ⟲ reconnected to PD</span><span>dashed red: a failed step's window; red with outlined operations: the operations a failed check names (e.g. what cannot be linearized)</span></div>"#,
    );
    html.push_str(r#"<div id="detail">hover over anything for its details</div>"#);
    let _ = write!(
        html,
        r#"<div class="scroll">{}</div>"#,
        lanes_svg(run, events, &ops, &bands, end_ms)
    );
    match plots_svg(&ops, &bands, end_ms) {
        Ok(plots) => html.push_str(&plots),
        Err(e) => {
            let _ = write!(html, "<p>{}</p>", esc(&e));
        }
    }
    let _ = write!(html, "<script>{SCRIPT}</script></body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{fault, put};
    use crate::history::{FaultRecord, NodeRecord, Service};
    use crate::report::StepReport;
    use crate::verdict::Verdict;

    fn run() -> ScenarioRun {
        let step = |index: usize, start_ms: f64, verdict: Verdict| StepReport {
            index,
            kind: "check".into(),
            description: format!("step {index}"),
            is_fault: false,
            start_ms,
            end_ms: start_ms + 100.0,
            verdict,
            cells: vec![],
        };
        ScenarioRun {
            scenario_id: "s1-x".into(),
            title: "A <title>".into(),
            run: 1,
            seed: 7,
            base_seed: 3,
            evidence_dir: "/tmp/x".into(),
            network: "private network namespace".into(),
            started_unix_s: 0.0,
            duration_ms: 5000.0,
            setup_error: None,
            steps: vec![
                step(1, 0.0, Verdict::pass("leader")),
                step(2, 3000.0, Verdict::fail("key \"k\" cannot be linearized")),
            ],
            cells: vec![],
            teardown: vec![],
            interrupted: None,
        }
    }

    fn node(t: f64, name: &str, event: NodeEvent) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::Node(NodeRecord {
                node_name: name.into(),
                event,
            }),
        }
    }

    fn heal(t: f64) -> Event {
        Event {
            t_ms: t,
            kind: EventKind::Fault(FaultRecord {
                kind: FaultKind::Start,
                service: Service::ChainFire,
                node: 1,
                node_name: "chainfire-1".into(),
                target: "node 1".into(),
                detail: "started".into(),
                rules: vec![],
            }),
        }
    }

    fn history() -> Vec<Event> {
        vec![
            node(0.5, "chainfire-1", NodeEvent::Started { pid: 1 }),
            node(100.0, "chainfire-1", NodeEvent::Ready { after_ms: 99.0 }),
            fault(1000.0),
            node(
                1001.0,
                "chainfire-1",
                NodeEvent::Exited {
                    status: "killed by signal 9".into(),
                    expected: true,
                    log_tail: vec![],
                },
            ),
            put(1, "k", "v1", 200.0, 220.0, true),
            put(2, "k", "v2", 1100.0, 2100.0, false),
            heal(2500.0),
        ]
    }

    #[test]
    fn leader_changes_and_pd_reconnections_are_markers_on_their_nodes_lane() {
        use crate::history::LandmarkRecord;
        let mut events = history();
        for (landmark, line, at) in [
            (
                Landmark::LeaderChanged,
                "leader changed: 1 -> 2 (term 3)",
                1500.0,
            ),
            (Landmark::ReconnectedToPd, "Reconnected to PD", 2600.0),
        ] {
            events.push(Event {
                t_ms: 4900.0,
                kind: EventKind::Landmark(LandmarkRecord {
                    node_name: "chainfire-1".into(),
                    landmark,
                    line: line.into(),
                    logged_ms: at,
                }),
            });
        }
        let html = render(&run(), &events);
        let leader = html
            .split(r#"<text class="mark leader" x=""#)
            .nth(1)
            .expect("a leader marker");
        // Placed where the node logged it (1500 ms), not where the record was made (4900 ms).
        let x: f64 = leader.split('"').next().unwrap().parse().unwrap();
        let expected = html
            .split(r#"<text class="mark pd" x=""#)
            .nth(1)
            .expect("a PD marker")
            .split('"')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap();
        assert!(
            x < expected,
            "the leader change (1500 ms) before the PD reconnection (2600 ms)"
        );
        assert!(
            leader.contains("leader changed: 1 -&gt; 2 (term 3)"),
            "{leader}"
        );
        assert!(!html.contains("interrupted:"));
        let mut stopped = run();
        stopped.interrupted = Some("SIGINT at +3.0 s, during step 2 (check)".into());
        assert!(render(&stopped, &events).contains("interrupted:</b> SIGINT at +3.0 s"));
    }

    #[test]
    fn the_operations_a_failed_check_names_are_outlined_with_their_window() {
        let plain = render(&run(), &history());
        assert!(!plain.contains(r#"class="violation-window""#));
        let mut failed = run();
        failed.steps[1].verdict = failed.steps[1].verdict.clone().with_ops(vec![2]);
        let html = render(&failed, &history());
        assert_eq!(
            html.matches(r#"class="violation-window""#).count(),
            1,
            "{html}"
        );
        assert_eq!(
            html.matches(r#"<rect class="op info violation""#).count(),
            1
        );
        assert_eq!(
            html.matches(r#"<rect class="op ok""#).count(),
            1,
            "#1 is not named"
        );
        assert!(html.contains("step 2: these operations cannot be linearized together: #2"));
        // Named by a step that passed, nothing is highlighted.
        let mut passed = run();
        passed.steps[0].verdict = passed.steps[0].verdict.clone().with_ops(vec![2]);
        assert!(!render(&passed, &history()).contains(r#"class="violation-window""#));
    }

    #[test]
    fn a_fault_lasts_until_the_step_that_undid_it() {
        let bands = fault_bands(&history(), 5000.0);
        assert_eq!(bands.len(), 1, "{bands:?}");
        assert_eq!((bands[0].start_ms, bands[0].end_ms), (1000.0, 2500.0));
        assert_eq!(bands[0].kind, "kill");
        // Never undone: until the end of the run, and it says so.
        let open = fault_bands(&history()[..6], 5000.0);
        assert_eq!(open[0].end_ms, 5000.0);
        assert!(open[0].label.contains("never undone"), "{open:?}");
    }

    #[test]
    fn the_page_draws_lanes_operations_bands_markers_and_the_failed_step() {
        let html = render(&run(), &history());
        // A lane per node and per client.
        assert_eq!(html.matches(r#"<text class="lane""#).count(), 2, "{html}");
        assert!(html.contains(">chainfire-1</text>") && html.contains(">c1</text>"));
        // Both operations, coloured by outcome, with their details.
        assert_eq!(html.matches(r#"<rect class="op ok""#).count(), 1);
        assert_eq!(html.matches(r#"<rect class="op info""#).count(), 1);
        assert!(html.contains("#2 put k"), "{html}");
        // The kill as a band, the node's start, readiness and exit as markers.
        assert_eq!(html.matches(r#"<rect class="band kill""#).count(), 1);
        assert!(html.contains(r#"class="mark start""#) && html.contains(r#"class="mark exit""#));
        // The failed step outlined; the title escaped; the two plots.
        assert_eq!(html.matches(r#"class="failed-window""#).count(), 1);
        assert!(html.contains("A &lt;title&gt;") && !html.contains("A <title>"));
        assert!(html.contains(r#"<div id="latency"><svg"#), "{html}");
        assert!(html.contains(r#"<div id="throughput"><svg"#));
        // Self-contained: nothing fetched from anywhere.
        assert!(!html.contains("http://") || !html.contains("src=\"http"));
        assert!(!html.contains("<script src") && !html.contains("<link"));
    }
}
