//! Reports of stored sessions and their evaluations: a table per session,
//! a trajectory per course (CTRS total, and the patient's PHQ-9 and GAD-7
//! as each session started), and the therapist models side by side (mean
//! CTRS with a 95% confidence interval, safety outcomes). Rendered as
//! Markdown, JSON, or one self-contained HTML file with an SVG chart per
//! course (no external links, scripts or fonts).

use super::ctrs::{self, CtrsScore};
use super::outcomes::{self, PatientOutcomes};
use super::safety::{self, Outcome, SafetyScore};
use crate::speaker::Speaker;
use crate::store::{SessionScope, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The judge whose CTRS scores the report shows: the one that scored
    /// most sessions in scope (first by name on a tie). Other judges'
    /// scores are left out, so that no mean mixes judges.
    pub judge: Option<String>,
    pub sessions: Vec<SessionRow>,
    pub courses: Vec<CourseRow>,
    pub models: Vec<ModelRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    pub session_id: i64,
    pub persona: Option<String>,
    pub course: Option<i64>,
    pub session_number: u32,
    /// The model that spoke the therapist's turns (`imported` when none
    /// is recorded).
    pub therapist_model: String,
    pub turns: usize,
    pub termination: Option<String>,
    pub phq9: Option<u32>,
    pub gad7: Option<u32>,
    pub ctrs_total: Option<u32>,
    pub safety: Option<Outcome>,
    /// What the patient reported at the session's end (patient-reported
    /// outcomes), beside the store's rule-based PHQ-9 and GAD-7.
    pub reported_phq9: Option<u32>,
    pub reported_gad7: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CourseRow {
    pub course: i64,
    pub persona: Option<String>,
    /// Session numbers, in order, with what each showed.
    pub session_numbers: Vec<u32>,
    pub ctrs_totals: Vec<Option<u32>>,
    pub phq9: Vec<Option<u32>>,
    pub gad7: Vec<Option<u32>>,
    /// As the patient reported them at each session's end.
    pub reported_phq9: Vec<Option<u32>>,
    pub reported_gad7: Vec<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    pub therapist_model: String,
    pub sessions: usize,
    /// Sessions with a CTRS score (of the current rubric version).
    pub scored: usize,
    pub mean_ctrs: Option<f64>,
    /// The 95% confidence interval of the mean (t distribution); none with
    /// fewer than 2 scores.
    pub ctrs_ci95: Option<(f64, f64)>,
    /// Safety outcomes, by name, counted.
    pub safety: BTreeMap<String, usize>,
}

/// Gathers the report of the sessions in `scope`. Only scores of the
/// current rubric versions are read, so versions are never mixed, and the
/// CTRS of one judge (see [`Report::judge`]), so judges are never mixed.
pub fn gather(store: &Store, scope: SessionScope) -> Result<Report, StoreError> {
    let ids = store.session_ids(scope)?;
    let all_ctrs = store.evaluations_of::<CtrsScore>("ctrs", ctrs::RUBRIC_VERSION)?;
    let mut by_judge: BTreeMap<&str, usize> = BTreeMap::new();
    for (session, judge, _) in &all_ctrs {
        if ids.contains(session) {
            *by_judge.entry(judge).or_default() += 1;
        }
    }
    // The most sessions; on a tie, the first by name (max_by_key keeps the last).
    let judge = by_judge
        .iter()
        .rev()
        .max_by_key(|(_, count)| **count)
        .map(|(judge, _)| judge.to_string());
    let ctrs: BTreeMap<i64, CtrsScore> = all_ctrs
        .into_iter()
        .filter(|(_, j, _)| Some(j) == judge.as_ref())
        .map(|(session, _, score)| (session, score))
        .collect();
    let safety: BTreeMap<i64, SafetyScore> = store
        .evaluations_of::<SafetyScore>("safety", safety::RUBRIC_VERSION)?
        .into_iter()
        .rev()
        .map(|(session, _, score)| (session, score))
        .collect();
    let reported: BTreeMap<i64, PatientOutcomes> = store
        .evaluations_of::<PatientOutcomes>("outcomes", outcomes::VERSION)?
        .into_iter()
        .rev()
        .map(|(session, _, answers)| (session, answers))
        .collect();
    let stored: BTreeMap<i64, crate::store::StoredSession> = store
        .sessions(None)?
        .into_iter()
        .filter(|s| ids.contains(&s.id))
        .map(|s| (s.id, s))
        .collect();

    let sessions: Vec<SessionRow> = ids
        .iter()
        .filter_map(|id| stored.get(id))
        .map(|s| {
            let therapist_model = s
                .transcript
                .turns
                .iter()
                .find(|t| t.speaker == Speaker::Therapist && t.meta.model.is_some())
                .and_then(|t| t.meta.model.clone())
                .unwrap_or_else(|| "imported".into());
            SessionRow {
                session_id: s.id,
                persona: s.persona.clone(),
                course: s.course,
                session_number: s.transcript.session_number,
                therapist_model,
                turns: s.transcript.turns.len(),
                termination: s
                    .transcript
                    .termination
                    .as_ref()
                    .map(|t| t.kind().to_string()),
                phq9: s.mood.map(|m| m.phq9),
                gad7: s.mood.map(|m| m.gad7),
                ctrs_total: ctrs.get(&s.id).map(|c| c.total),
                safety: safety.get(&s.id).map(|r| r.outcome),
                reported_phq9: reported.get(&s.id).map(|a| a.phq9_end.total),
                reported_gad7: reported.get(&s.id).map(|a| a.gad7_end.total),
            }
        })
        .collect();

    let mut courses: BTreeMap<i64, CourseRow> = BTreeMap::new();
    for row in &sessions {
        let Some(course) = row.course else { continue };
        let entry = courses.entry(course).or_insert_with(|| CourseRow {
            course,
            persona: row.persona.clone(),
            session_numbers: Vec::new(),
            ctrs_totals: Vec::new(),
            phq9: Vec::new(),
            gad7: Vec::new(),
            reported_phq9: Vec::new(),
            reported_gad7: Vec::new(),
        });
        entry.session_numbers.push(row.session_number);
        entry.ctrs_totals.push(row.ctrs_total);
        entry.phq9.push(row.phq9);
        entry.gad7.push(row.gad7);
        entry.reported_phq9.push(row.reported_phq9);
        entry.reported_gad7.push(row.reported_gad7);
    }

    let mut models: BTreeMap<String, Vec<&SessionRow>> = BTreeMap::new();
    for row in &sessions {
        models
            .entry(row.therapist_model.clone())
            .or_default()
            .push(row);
    }
    let models = models
        .into_iter()
        .map(|(model, rows)| {
            let totals: Vec<f64> = rows
                .iter()
                .filter_map(|r| r.ctrs_total)
                .map(f64::from)
                .collect();
            let mut outcomes = BTreeMap::new();
            for outcome in rows.iter().filter_map(|r| r.safety) {
                *outcomes.entry(outcome.as_str().to_string()).or_insert(0) += 1;
            }
            ModelRow {
                therapist_model: model,
                sessions: rows.len(),
                scored: totals.len(),
                mean_ctrs: mean(&totals),
                ctrs_ci95: ci95(&totals),
                safety: outcomes,
            }
        })
        .collect();

    Ok(Report {
        judge,
        sessions,
        courses: courses.into_values().collect(),
        models,
    })
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The 95% confidence interval of the mean, with Student's t.
pub fn ci95(values: &[f64]) -> Option<(f64, f64)> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let m = mean(values)?;
    let variance = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_975(n - 1) * (variance / n as f64).sqrt();
    Some((m - half, m + half))
}

/// Student's t at 0.975 for `df` degrees of freedom (a table to 30, then
/// the normal value; the next rows differ by under 0.05).
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    TABLE.get(df.wrapping_sub(1)).copied().unwrap_or(1.960)
}

fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or("–".to_string(), |v| v.to_string())
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::from("# cbtsim report\n\n");
    out += "Simulated sessions, for testing and training; not a measure of real care.\n\n";
    out += &format!(
        "CTRS judge: {}\n\n",
        report.judge.as_deref().map_or("none".into(), cell)
    );
    out += "## Therapist models\n\n| therapist model | sessions | scored | mean CTRS | 95% CI | safety outcomes |\n|---|---|---|---|---|---|\n";
    for m in &report.models {
        let safety: Vec<String> = m.safety.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(&m.therapist_model),
            m.sessions,
            m.scored,
            or_dash(m.mean_ctrs.map(|v| format!("{v:.1}"))),
            or_dash(m.ctrs_ci95.map(|(a, b)| format!("{a:.1} to {b:.1}"))),
            if safety.is_empty() {
                "–".into()
            } else {
                safety.join(", ")
            }
        );
    }
    if !report.courses.is_empty() {
        out += "\n## Courses\n\nPHQ-9 and GAD-7: the store's rule-based scores as each session started; reported: the patient's own answers at each session's end.\n\n| course | persona | sessions | CTRS totals | PHQ-9 | GAD-7 | reported PHQ-9 | reported GAD-7 |\n|---|---|---|---|---|---|---|---|\n";
        for c in &report.courses {
            let list = |values: &[Option<u32>]| {
                values
                    .iter()
                    .map(|v| or_dash(*v))
                    .collect::<Vec<_>>()
                    .join(" → ")
            };
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                c.course,
                cell(c.persona.as_deref().unwrap_or("–")),
                c.session_numbers.len(),
                list(&c.ctrs_totals),
                list(&c.phq9),
                list(&c.gad7),
                list(&c.reported_phq9),
                list(&c.reported_gad7)
            );
        }
    }
    out += "\n## Sessions\n\n| session | persona | course | number | turns | ended | PHQ-9 | GAD-7 | CTRS | safety |\n|---|---|---|---|---|---|---|---|---|---|\n";
    for s in &report.sessions {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.session_id,
            cell(s.persona.as_deref().unwrap_or("–")),
            or_dash(s.course),
            s.session_number,
            s.turns,
            or_dash(s.termination.as_deref()),
            or_dash(s.phq9),
            or_dash(s.gad7),
            or_dash(s.ctrs_total),
            or_dash(s.safety)
        );
    }
    out
}

/// Text safe in a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Text safe in HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The report as one self-contained HTML file: the same tables, and an SVG
/// chart per course.
pub fn html(report: &Report) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>cbtsim report</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:0.2em 0.5em}svg{display:block;margin:1em 0}</style>\n</head>\n<body>\n<h1>cbtsim report</h1>\n<p>Simulated sessions, for testing and training; not a measure of real care.</p>\n",
    );
    out += &format!(
        "<p>CTRS judge: {}</p>\n",
        escape(report.judge.as_deref().unwrap_or("none"))
    );
    out += "<h2>Therapist models</h2>\n<table>\n<tr><th>therapist model</th><th>sessions</th><th>scored</th><th>mean CTRS</th><th>95% CI</th><th>safety outcomes</th></tr>\n";
    for m in &report.models {
        let safety: Vec<String> = m.safety.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&m.therapist_model),
            m.sessions,
            m.scored,
            or_dash(m.mean_ctrs.map(|v| format!("{v:.1}"))),
            or_dash(m.ctrs_ci95.map(|(a, b)| format!("{a:.1} to {b:.1}"))),
            escape(&safety.join(", "))
        );
    }
    out += "</table>\n";
    if !report.courses.is_empty() {
        out += "<h2>Courses</h2>\n";
        for c in &report.courses {
            out += &format!(
                "<h3>Course {} ({})</h3>\n{}",
                c.course,
                escape(c.persona.as_deref().unwrap_or("–")),
                chart(c)
            );
        }
    }
    out += "<h2>Sessions</h2>\n<table>\n<tr><th>session</th><th>persona</th><th>course</th><th>number</th><th>turns</th><th>ended</th><th>PHQ-9</th><th>GAD-7</th><th>CTRS</th><th>safety</th></tr>\n";
    for s in &report.sessions {
        out += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            s.session_id,
            escape(s.persona.as_deref().unwrap_or("–")),
            or_dash(s.course),
            s.session_number,
            s.turns,
            escape(&or_dash(s.termination.as_deref())),
            or_dash(s.phq9),
            or_dash(s.gad7),
            or_dash(s.ctrs_total),
            or_dash(s.safety)
        );
    }
    out += "</table>\n</body>\n</html>\n";
    out
}

/// A line chart of a course: CTRS total (0 to 66), PHQ-9 (0 to 27) and
/// GAD-7 (0 to 21), rule-based and as the patient reported them, each on
/// its own scale, by session.
fn chart(course: &CourseRow) -> String {
    let (width, height, pad) = (520.0, 200.0, 30.0);
    let n = course.session_numbers.len().max(2) as f64;
    let x = |i: usize| pad + i as f64 * (width - 2.0 * pad) / (n - 1.0);
    let y = |value: u32, max: f64| height - pad - f64::from(value) / max * (height - 2.0 * pad);
    let mut svg = format!(
        "<svg width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"course {}\">\n<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\n",
        course.course,
        height - pad,
        width - pad,
        height - pad
    );
    let series = [
        ("CTRS", &course.ctrs_totals, 66.0, "#1f77b4"),
        ("PHQ-9", &course.phq9, 27.0, "#d62728"),
        ("GAD-7", &course.gad7, 21.0, "#2ca02c"),
        ("PHQ-9 reported", &course.reported_phq9, 27.0, "#ff9896"),
        ("GAD-7 reported", &course.reported_gad7, 21.0, "#98df8a"),
    ];
    for (k, (name, values, max, colour)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v, *max))))
            .collect();
        if !points.is_empty() {
            svg += &format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
                points.join(" ")
            );
        }
        // A dot per value: a single session still shows.
        for point in &points {
            let (cx, cy) = point.split_once(',').expect("x,y");
            svg += &format!("<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{colour}\"/>\n");
        }
        svg += &format!(
            "<text x=\"{}\" y=\"16\" fill=\"{colour}\" font-size=\"12\">{name}</text>\n",
            pad + k as f64 * 90.0
        );
    }
    for (i, number) in course.session_numbers.iter().enumerate() {
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{number}</text>\n",
            x(i),
            height - pad + 16.0
        );
    }
    svg + "</svg>\n"
}
