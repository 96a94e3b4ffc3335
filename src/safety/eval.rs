//! Measuring a detector on labelled utterances: a TSV file of
//! `label<TAB>text<TAB>category` lines (label `risk` or `safe`; for a safe
//! line the category is the one whose words it borrows). Lines starting
//! with `#` and blank lines are comments.

use super::learned::Learned;
use super::semantic;
use super::svm::Svm;
use super::{Category, Detection, Layer, Layers, Semantic, judge_with_vector};
use crate::model::encoder::EncoderError;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub risk: bool,
    pub text: String,
    pub category: Category,
    /// Where it is: the file's line number (from 1).
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelledError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Reads a labelled file, naming the first bad line.
pub fn read_labelled(path: &Path) -> Result<Vec<Labelled>, LabelledError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabelledError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_labelled(&text).map_err(|(line, message)| LabelledError::Line {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Parses labelled lines; an error is (line number, what is wrong).
pub fn parse_labelled(text: &str) -> Result<Vec<Labelled>, (usize, String)> {
    let mut set = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [label, text, category] = fields[..] else {
            return Err((
                number,
                format!(
                    "expected 3 tab-separated fields (label, text, category), found {}",
                    fields.len()
                ),
            ));
        };
        let risk = match label {
            "risk" => true,
            "safe" => false,
            other => return Err((number, format!("label {other:?} is not risk or safe"))),
        };
        // Ordinary talk that borrows no category's words is `none`.
        let category = Category::from_name(category.trim())
            .filter(|c| *c != Category::None || !risk)
            .ok_or_else(|| {
                (
                    number,
                    format!(
                        "unknown category {category:?} (one of: {})",
                        Category::NAMES[1..].join(", ")
                    ),
                )
            })?;
        if text.trim().is_empty() {
            return Err((number, "the text is empty".into()));
        }
        set.push(Labelled {
            risk,
            text: text.to_string(),
            category,
            line: number,
        });
    }
    Ok(set)
}

/// How a detector did on a labelled set.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub utterances: usize,
    pub risk: usize,
    pub safe: usize,
    /// Risk utterances flagged, of all risk utterances.
    pub recall: f64,
    /// Safe utterances flagged, of all safe ones.
    pub false_positive_rate: f64,
    /// Flagged risk utterances whose category the detector named right.
    pub category_agreement: f64,
    pub per_category: Vec<CategoryScore>,
    /// Missed risks and false alarms, in file order.
    pub misses: Vec<Miss>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryScore {
    pub category: Category,
    pub risk: usize,
    pub flagged: usize,
    pub recall: f64,
    /// Safe utterances that borrow this category's words, and how many of
    /// them were flagged.
    pub safe: usize,
    pub false_alarms: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub line: usize,
    /// `missed` (a risk not flagged) or `false_alarm` (a safe one flagged).
    pub kind: &'static str,
    pub category: Category,
    /// What the detector said (`none` for a miss).
    pub detected: Category,
    pub text: String,
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Runs `detect` on every utterance and scores it.
pub fn evaluate(set: &[Labelled], mut detect: impl FnMut(&Labelled) -> Detection) -> Evaluation {
    let mut misses = Vec::new();
    // Ordinary talk (`none`) is counted too, and left out of the table.
    let mut per_category: Vec<CategoryScore> = Category::ALL
        .iter()
        .map(|&category| CategoryScore {
            category,
            risk: 0,
            flagged: 0,
            recall: 0.0,
            safe: 0,
            false_alarms: 0,
        })
        .collect();
    let (mut flagged_risk, mut false_alarms, mut agreed) = (0, 0, 0);
    for item in set {
        let d = detect(item);
        let score = per_category
            .iter_mut()
            .find(|s| s.category == item.category)
            .expect("every category has a score");
        if item.risk {
            score.risk += 1;
            if d.flagged {
                score.flagged += 1;
                flagged_risk += 1;
                agreed += usize::from(d.category == item.category);
            }
        } else {
            score.safe += 1;
            if d.flagged {
                score.false_alarms += 1;
                false_alarms += 1;
            }
        }
        if item.risk != d.flagged {
            misses.push(Miss {
                line: item.line,
                kind: if item.risk { "missed" } else { "false_alarm" },
                category: item.category,
                detected: d.category,
                text: item.text.clone(),
            });
        }
    }
    per_category.retain(|s| s.category != Category::None && s.risk + s.safe > 0);
    for s in &mut per_category {
        s.recall = ratio(s.flagged, s.risk);
    }
    let risk = set.iter().filter(|l| l.risk).count();
    Evaluation {
        utterances: set.len(),
        risk,
        safe: set.len() - risk,
        recall: ratio(flagged_risk, risk),
        false_positive_rate: ratio(false_alarms, set.len() - risk),
        category_agreement: ratio(agreed, flagged_risk),
        per_category,
        misses,
    }
}

/// The sentence vectors of a set's utterances when `layer` reads them and
/// the encoder is there (cached, so a set is encoded once per machine).
fn vectors_for(
    set: &[Labelled],
    layer: Layer,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Vec<Vec<f32>>>, EncoderError> {
    if !matches!(layer, Layer::Semantic | Layer::Offline) {
        return Ok(None);
    }
    let Some(semantic) = super::built_in().semantic.as_ref() else {
        return Ok(None);
    };
    let inputs = semantic::inputs(set);
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    semantic::vectors_cached(&semantic.encoder, &inputs, progress).map(Some)
}

/// Scores a layer of trained `layers` on a set, encoding the set at once
/// when the layer reads sentence vectors.
pub fn evaluate_layer(
    set: &[Labelled],
    layer: Layer,
    layers: &Layers,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Evaluation, EncoderError> {
    let vectors = vectors_for(set, layer, progress)?;
    let mut index = 0;
    Ok(evaluate(set, |l| {
        let vector = vectors.as_ref().map(|v| v[index].as_slice());
        index += 1;
        judge_with_vector(&l.text, layer, layers, vector)
    }))
}

/// Scores a layer on data it was not trained on, from one labelled set:
/// the set is cut into `folds` parts, and each part is judged by learned
/// layers trained on the others. What the learned layers would do on new
/// data like this set, without a separate test split.
pub fn cross_validate(
    set: &[Labelled],
    folds: usize,
    layer: Layer,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Evaluation, EncoderError> {
    let folds = folds.max(2);
    let vectors = vectors_for(set, layer, progress)?;
    let encoder = super::built_in().semantic.as_ref().map(|s| &s.encoder);
    let trained: Vec<Layers> = (0..folds)
        .map(|f| {
            let rest = |i: &usize| i % folds != f;
            let lines: Vec<Labelled> = (0..set.len())
                .filter(rest)
                .map(|i| set[i].clone())
                .collect();
            let semantic = vectors.as_ref().zip(encoder).map(|(vectors, encoder)| {
                let rest_vectors: Vec<Vec<f32>> = (0..set.len())
                    .filter(rest)
                    .map(|i| vectors[i].clone())
                    .collect();
                let risk: Vec<bool> = lines.iter().map(|l| l.risk).collect();
                Semantic {
                    encoder: encoder.clone(),
                    head: Svm::train(&rest_vectors, &risk),
                }
            });
            Layers {
                learned: Learned::train(&lines),
                semantic,
            }
        })
        .collect();
    let mut index = 0;
    Ok(evaluate(set, |l| {
        let vector = vectors.as_ref().map(|v| v[index].as_slice());
        let fold = &trained[index % folds];
        index += 1;
        judge_with_vector(&l.text, layer, fold, vector)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::RiskLevel;

    fn verdict(flagged: bool, category: Category) -> Detection {
        Detection {
            flagged,
            category,
            level: if flagged {
                RiskLevel::High
            } else {
                RiskLevel::None
            },
            matches: Vec::new(),
        }
    }

    #[test]
    fn scores_recall_false_alarms_and_categories() {
        let set = parse_labelled(
            "# comment\nrisk\tI have the rope\tacquiring_means\nrisk\tbye all\tsaying_goodbye\n\
             safe\tthe rope swing\tacquiring_means\nsafe\tbye, see you\tsaying_goodbye\n",
        )
        .unwrap();
        let e = evaluate(&set, |l| {
            verdict(l.text.contains("rope"), Category::AcquiringMeans)
        });
        assert_eq!((e.risk, e.safe), (2, 2));
        assert_eq!(e.recall, 0.5);
        assert_eq!(e.false_positive_rate, 0.5);
        assert_eq!(e.category_agreement, 1.0);
        let recalls: Vec<_> = e
            .per_category
            .iter()
            .map(|s| (s.category, s.recall))
            .collect();
        assert_eq!(
            recalls,
            [
                (Category::SayingGoodbye, 0.0),
                (Category::AcquiringMeans, 1.0)
            ]
        );
        let kinds: Vec<_> = e.misses.iter().map(|m| (m.line, m.kind)).collect();
        assert_eq!(kinds, [(3, "missed"), (4, "false_alarm")]);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(parse_labelled("risk\tno category").unwrap_err().0, 1);
        let (line, message) = parse_labelled("\nmaybe\ttext\tburden").unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("maybe"), "{message}");
        assert!(
            parse_labelled("risk\ttext\tdespair")
                .unwrap_err()
                .1
                .contains("despair")
        );
    }
}
