//! The human-readable report: sections of lines with intervals and paired differences.

use super::*;

pub(super) fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

pub(super) fn with_ci(x: f64, ci: (f64, f64)) -> String {
    format!("{} [{}, {}]", pct(x), pct(ci.0), pct(ci.1))
}

pub(super) fn diff(d: &Option<Difference>, top5: bool) -> String {
    match d {
        None => String::new(),
        Some(d) => {
            let (v, ci) = if top5 {
                (d.top5, d.top5_ci)
            } else {
                (d.top1, d.top1_ci)
            };
            format!(
                "{:+.1} [{:+.1}, {:+.1}]",
                100.0 * v,
                100.0 * ci.0,
                100.0 * ci.1
            )
        }
    }
}

pub(super) fn section(
    out: &mut dyn Write,
    title: &str,
    lines: &[Line],
    with_x: Option<&'static str>,
) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{title}")?;
    let differences = lines.iter().any(|l| l.vs_topk.is_some());
    let mut cols = vec![("setting", Align::Left)];
    if let Some(x) = with_x {
        cols.push((x, Align::Right));
    }
    cols.extend([
        ("method", Align::Left),
        ("queries", Align::Right),
        ("top-1 % [95% CI]", Align::Right),
        ("top-5 % [95% CI]", Align::Right),
        ("P@5 %", Align::Right),
    ]);
    if differences {
        cols.extend([
            ("top-1 vs top-k", Align::Right),
            ("top-1 vs full", Align::Right),
            ("top-5 vs top-k", Align::Right),
            ("top-5 vs full", Align::Right),
        ]);
    }
    let mut table = Table::new(&cols);
    for l in lines {
        let mut cells = vec![l.setting.clone()];
        if with_x.is_some() {
            cells.push(l.x.map_or(String::new(), |x| format!("{x}")));
        }
        cells.extend([
            l.method.clone(),
            l.summary.queries.to_string(),
            with_ci(l.summary.top1, l.summary.top1_ci),
            with_ci(l.summary.top5, l.summary.top5_ci),
            pct(l.summary.precision5),
        ]);
        if differences {
            cells.extend([
                diff(&l.vs_topk, false),
                diff(&l.vs_full, false),
                diff(&l.vs_topk, true),
                diff(&l.vs_full, true),
            ]);
        }
        table.row(cells);
    }
    table.write(out)
}

pub(super) fn print_report(r: &Report) -> Result<()> {
    let mut out = io::stdout().lock();
    outln!(
        "{}: {} probes, k = {}; {} query models ({} logit queries; {} left out: concept not in \
         the gallery), {} gallery models ({} logits); {} constant logits left out",
        r.index,
        r.probes,
        r.k,
        r.query_models,
        r.logit_queries,
        r.unanswerable_queries,
        r.gallery_models,
        r.gallery_entries,
        r.constant_logits
    )?;
    for c in &r.chance {
        outln!(
            "chance, {}: top-1 {}%, top-5 {}% ({} queries, gallery of {})",
            c.setting,
            pct(c.top1),
            pct(c.top5),
            c.queries,
            c.gallery
        )?;
    }
    section(&mut out, "Table 1 analogue", &r.table, None)?;
    section(&mut out, "Ablations", &r.ablations, None)?;
    section(&mut out, "k sweep", &r.k_sweep, Some("k"))?;
    section(
        &mut out,
        "Accuracy against the number of probes",
        &r.probe_curve,
        Some("probes"),
    )?;
    section(
        &mut out,
        "Discrepancy variants (differences in points, paired bootstrap over query models)",
        &r.variants,
        None,
    )?;
    section(
        &mut out,
        "Collaborative probing",
        &r.collab,
        Some("fraction"),
    )?;
    Ok(())
}
