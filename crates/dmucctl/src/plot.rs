//! `dmucctl plot > boot.svg`: the analysis (`analyze`) as a Gantt chart, one self-contained SVG
//! (no script, no external style or font) that a browser shows as is. One bar per component,
//! in config order: waiting for its dependencies (from the window's start to its launch),
//! starting (launch to up), up; later launches and failures are marked on the bar; the
//! critical chain's bars are outlined and its names bold.

use std::fmt::Write as _;

use dmuc_proto::State;

use crate::analyze::{Analysis, Comp, secs};

const LABEL: f64 = 220.0;
const ROW: f64 = 24.0;
const TOP: f64 = 56.0;
const WIDTH: f64 = 1000.0;

/// Characters that would end an attribute or start markup, escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart's end: the last thing that happened, plus a margin for the "up" bars.
fn span(a: &Analysis) -> u64 {
    let last = a
        .components
        .iter()
        .flat_map(|c| c.moves.iter().map(|(t, _)| *t))
        .max()
        .unwrap_or(0);
    (last + last / 10).max(1000)
}

/// A tick every 1, 2 or 5 × 10^k µs (from 1 ms), about ten over the span.
fn tick(span: u64) -> u64 {
    (3..12)
        .flat_map(|k| [1, 2, 5].map(|m| m * 10u64.pow(k)))
        .find(|step| span / step <= 10)
        .unwrap_or(100_000_000_000)
}

/// The SVG document.
pub fn svg(a: &Analysis) -> String {
    let end = span(a);
    let plot = WIDTH - LABEL - 20.0;
    let x = |us: u64| LABEL + us as f64 / end as f64 * plot;
    let height = TOP + ROW * a.components.len() as f64 + 40.0;
    let critical = |c: &Comp| a.chain.iter().any(|k| k.name == c.name);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><title>dmuc: the graph's start</title>"##
    );
    let title = match (&a.target, a.chain.first()) {
        (Some(t), Some(c)) => format!(
            "{} up at {} (events after #{}); critical chain: {}",
            esc(t),
            c.up_us.map_or("?".into(), secs),
            a.since_seq,
            a.chain
                .iter()
                .map(|c| esc(&c.name))
                .collect::<Vec<_>>()
                .join(" \u{2190} ")
        ),
        _ => format!("nothing came up (events after #{})", a.since_seq),
    };
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{title}</text>"#
    );
    let _ = writeln!(
        s,
        concat!(
            r##"<g font-size="11"><rect x="10" y="30" width="12" height="10" fill="#d9d9d9"/><text x="26" y="39">waiting for dependencies</text>"##,
            r##"<rect x="190" y="30" width="12" height="10" fill="#f0ad4e"/><text x="206" y="39">starting</text>"##,
            r##"<rect x="270" y="30" width="12" height="10" fill="#5cb85c"/><text x="286" y="39">up</text>"##,
            r##"<rect x="320" y="30" width="3" height="10" fill="#d9534f"/><text x="328" y="39">exit / failure</text>"##,
            r##"<rect x="430" y="30" width="3" height="10" fill="#337ab7"/><text x="438" y="39">launched again</text></g>"##
        )
    );
    // The time axis.
    let step = tick(end);
    let bottom = TOP + ROW * a.components.len() as f64;
    let mut t = 0;
    while t <= end {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{bottom}" stroke="#eeeeee"/><text x="{0:.1}" y="{1:.1}" font-size="10" text-anchor="middle">{2}</text>"##,
            x(t),
            bottom + 14.0,
            secs(t)
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text class="window" x="10" y="{:.1}" font-size="11">{}</text>"#,
        bottom + 32.0,
        esc(&crate::analyze::window_note(a))
    );
    for (i, c) in a.components.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let class = if critical(c) { "bar critical" } else { "bar" };
        let weight = if critical(c) { "bold" } else { "normal" };
        let _ = writeln!(
            s,
            r#"<g class="{class}" data-component="{name}"><text x="10" y="{ty:.1}" font-weight="{weight}">{name}</text>"#,
            name = esc(&c.name),
            ty = y + 16.0
        );
        let (bar_y, bar_h) = (y + 4.0, ROW - 8.0);
        let segment = |s: &mut String, from: u64, to: u64, fill: &str, what: &str| {
            let w = (x(to) - x(from)).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect class="{what}" x="{:.1}" y="{bar_y:.1}" width="{w:.1}" height="{bar_h:.1}" fill="{fill}"><title>{}: {what} {} to {}</title></rect>"#,
                x(from),
                esc(&c.name),
                secs(from),
                secs(to)
            );
        };
        match (c.launched_us, c.up_us) {
            (Some(l), Some(u)) => {
                segment(&mut s, 0, l, "#d9d9d9", "waiting");
                segment(&mut s, l, u, "#f0ad4e", "starting");
                segment(&mut s, u, end, "#5cb85c", "up");
            }
            _ => {
                // Never up: waiting until its first launch, then starting to the end.
                let first = c
                    .moves
                    .iter()
                    .find(|(_, st)| *st == State::Starting)
                    .map(|(t, _)| *t);
                match first {
                    Some(l) => {
                        segment(&mut s, 0, l, "#d9d9d9", "waiting");
                        segment(&mut s, l, end, "#f0ad4e", "starting");
                    }
                    None => segment(&mut s, 0, end, "#d9d9d9", "waiting"),
                }
            }
        }
        if critical(c)
            && let (Some(l), Some(u)) = (c.launched_us, c.up_us)
        {
            let _ = writeln!(
                s,
                r##"<rect class="chain" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#000000" stroke-width="2"/>"##,
                x(l),
                bar_y - 1.0,
                (x(u) - x(l)).max(1.0),
                bar_h + 2.0
            );
        }
        // Marks: a failure or exit (backoff, failed, exited) on the bar's upper half, a launch
        // after the first on its lower half: an exit and the relaunch right after it, at the
        // same place on the axis, both show.
        let mut launched = 0;
        let half = (ROW - 4.0) / 2.0;
        for (t, st) in &c.moves {
            let color = match st {
                State::Backoff | State::Failed | State::Exited => {
                    Some(("#d9534f", "failure", y + 2.0))
                }
                State::Starting => {
                    launched += 1;
                    (launched > 1).then_some(("#337ab7", "relaunch", y + 2.0 + half))
                }
                _ => None,
            };
            if let Some((fill, what, top)) = color {
                let _ = writeln!(
                    s,
                    r#"<rect class="{what}" x="{:.1}" y="{top:.1}" width="3" height="{half:.1}" fill="{fill}"><title>{}: {} at {}</title></rect>"#,
                    x(*t) - 1.0,
                    esc(&c.name),
                    st.name(),
                    secs(*t)
                );
            }
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests;
