//! Agreement between raters of the CTRS, the judge model among them: for
//! every pair of raters, over the (session, item) scores both gave, the
//! quadratic weighted kappa, ICC(2,1) and Spearman's rho, overall and per
//! item. A figure that is undefined for the data (a rater who gives the
//! same score everywhere has no rank correlation) is `None`, never a
//! made-up number.

use super::ctrs::ITEMS;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One rater's score of one item of one session.
#[derive(Debug, Clone, PartialEq)]
pub struct Rating {
    pub session: i64,
    pub item: String,
    pub rater: String,
    pub score: u32,
}

/// The header a ratings file starts with.
pub const CSV_HEADER: &str = "session_id,item,rater,score";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingsError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
}

/// Reads ratings from a CSV file with the header `session_id,item,rater,score`
/// (items by their CTRS keys, scores 0 to 6; fields may be in double quotes
/// but hold no commas; a rater scores each item of a session once). Every
/// problem names the file and line.
pub fn read_csv(path: &Path) -> Result<Vec<Rating>, RatingsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RatingsError::Read {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let invalid = |line: usize, message: String| RatingsError::Invalid {
        path: shown.clone(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    match lines.next() {
        Some((_, header))
            if header.trim_start_matches('\u{feff}').replace('"', "") == CSV_HEADER => {}
        _ => return Err(invalid(1, format!("the first line must be {CSV_HEADER}"))),
    }
    let mut ratings = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (line, row) in lines.filter(|(_, l)| !l.is_empty()) {
        let fields: Vec<&str> = row.split(',').map(|f| f.trim().trim_matches('"')).collect();
        let [session, item, rater, score] = fields[..] else {
            return Err(invalid(
                line,
                format!("expected 4 fields, found {}", fields.len()),
            ));
        };
        let session = session
            .parse()
            .map_err(|_| invalid(line, format!("session_id {session:?} is not a number")))?;
        if !ITEMS.iter().any(|i| i.key == item) {
            return Err(invalid(line, format!("{item:?} is not a CTRS item key")));
        }
        if rater.is_empty() {
            return Err(invalid(line, "the rater is empty".into()));
        }
        let score = score.parse().ok().filter(|s| *s <= 6).ok_or_else(|| {
            invalid(
                line,
                format!("score {score:?} is not a whole number 0 to 6"),
            )
        })?;
        if let Some(first) = seen.insert((session, item.to_string(), rater.to_string()), line) {
            return Err(invalid(
                line,
                format!("{rater} already scored {item} of session {session} on line {first}"),
            ));
        }
        ratings.push(Rating {
            session,
            item: item.to_string(),
            rater: rater.to_string(),
            score,
        });
    }
    Ok(ratings)
}

/// Agreement between two raters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairAgreement {
    pub a: String,
    pub b: String,
    #[serde(flatten)]
    pub overall: Figures,
    pub per_item: Vec<ItemAgreement>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemAgreement {
    pub item: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Paired ratings: (session, item) scored by both.
    pub n: usize,
    pub quadratic_weighted_kappa: Option<f64>,
    pub icc2_1: Option<f64>,
    pub spearman: Option<f64>,
}

impl Figures {
    pub fn of(pairs: &[(f64, f64)]) -> Figures {
        Figures {
            n: pairs.len(),
            quadratic_weighted_kappa: quadratic_weighted_kappa(pairs, 0, 6),
            icc2_1: icc2_1(pairs),
            spearman: spearman(pairs),
        }
    }
}

/// Every pair of raters (in name order) with at least one paired rating.
/// A rater who scored the same (session, item) twice counts the last.
pub fn agreement(ratings: &[Rating]) -> Vec<PairAgreement> {
    let mut by_rater: BTreeMap<&str, BTreeMap<(i64, &str), u32>> = BTreeMap::new();
    for r in ratings {
        by_rater
            .entry(&r.rater)
            .or_default()
            .insert((r.session, &r.item), r.score);
    }
    let raters: Vec<&str> = by_rater.keys().copied().collect();
    let mut pairs = Vec::new();
    for (i, a) in raters.iter().enumerate() {
        for b in &raters[i + 1..] {
            let (ra, rb) = (&by_rater[a], &by_rater[b]);
            let paired: Vec<(&str, f64, f64)> = ra
                .iter()
                .filter_map(|(key, &sa)| rb.get(key).map(|&sb| (key.1, sa.into(), sb.into())))
                .collect();
            if paired.is_empty() {
                continue;
            }
            let items: BTreeSet<&str> = paired.iter().map(|p| p.0).collect();
            let per_item = ITEMS
                .iter()
                .filter(|i| items.contains(i.key))
                .map(|i| ItemAgreement {
                    item: i.key.to_string(),
                    figures: Figures::of(&scores(&paired, Some(i.key))),
                })
                .collect();
            pairs.push(PairAgreement {
                a: a.to_string(),
                b: b.to_string(),
                overall: Figures::of(&scores(&paired, None)),
                per_item,
            });
        }
    }
    pairs
}

fn scores(paired: &[(&str, f64, f64)], item: Option<&str>) -> Vec<(f64, f64)> {
    paired
        .iter()
        .filter(|p| item.is_none_or(|i| i == p.0))
        .map(|p| (p.1, p.2))
        .collect()
}

/// Cohen's kappa with quadratic weights, for scores from `low` to `high`:
/// 1 − Σ w·observed / Σ w·expected, with w = (i − j)² / (high − low)² and
/// the expected counts from the two raters' marginal distributions. `None`
/// when no disagreement is expected by chance (both raters constant).
pub fn quadratic_weighted_kappa(pairs: &[(f64, f64)], low: u32, high: u32) -> Option<f64> {
    let k = (high - low + 1) as usize;
    let n = pairs.len() as f64;
    if pairs.is_empty() || k < 2 {
        return None;
    }
    let index = |x: f64| (x as u32).clamp(low, high) as usize - low as usize;
    let mut observed = vec![vec![0.0; k]; k];
    let (mut hist_a, mut hist_b) = (vec![0.0; k], vec![0.0; k]);
    for &(a, b) in pairs {
        observed[index(a)][index(b)] += 1.0;
        hist_a[index(a)] += 1.0;
        hist_b[index(b)] += 1.0;
    }
    let (mut disagreement, mut chance) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = ((i as f64 - j as f64) / (k as f64 - 1.0)).powi(2);
            disagreement += w * observed[i][j];
            chance += w * hist_a[i] * hist_b[j] / n;
        }
    }
    (chance > 0.0).then(|| 1.0 - disagreement / chance)
}

/// ICC(2,1): two-way random effects, absolute agreement, a single rater
/// (Shrout and Fleiss), with the (session, item) pairs as subjects and the
/// two raters as judges. `None` with fewer than 2 subjects or no variance.
pub fn icc2_1(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    let k = 2.0;
    if pairs.len() < 2 {
        return None;
    }
    let grand = pairs.iter().map(|(a, b)| a + b).sum::<f64>() / (n * k);
    let row_means = pairs.iter().map(|(a, b)| (a + b) / k);
    let col_a = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let col_b = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let ss_rows = k * row_means.map(|m| (m - grand).powi(2)).sum::<f64>();
    let ss_cols = n * ((col_a - grand).powi(2) + (col_b - grand).powi(2));
    let ss_total = pairs
        .iter()
        .map(|(a, b)| (a - grand).powi(2) + (b - grand).powi(2))
        .sum::<f64>();
    let ss_error = ss_total - ss_rows - ss_cols;
    let ms_rows = ss_rows / (n - 1.0);
    let ms_cols = ss_cols / (k - 1.0);
    let ms_error = ss_error / ((n - 1.0) * (k - 1.0));
    let denominator = ms_rows + (k - 1.0) * ms_error + k * (ms_cols - ms_error) / n;
    (denominator > 0.0).then(|| (ms_rows - ms_error) / denominator)
}

/// Spearman's rho: Pearson's correlation of the ranks (ties get their
/// average rank). `None` when a rater's scores do not vary.
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    let a = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let b = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    pearson(&a, &b)
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        // Positions start..=end, ranked from 1: their average.
        let rank = (start + end) as f64 / 2.0 + 1.0;
        for &i in &order[start..=end] {
            ranks[i] = rank;
        }
        start = end + 1;
    }
    ranks
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    if a.len() < 2 {
        return None;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}
