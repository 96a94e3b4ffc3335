//! Why a session ended: a typed reason, rendered as the reference's
//! `Reason:` and `Details:` lines and read back from them.

use crate::speaker::Speaker;
use regex::Regex;
use std::sync::LazyLock;

/// Why a session ended. Each variant renders as a display name (the `Reason:`
/// line) and a details line; [`TerminationReason::from_parts`] reads them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationReason {
    /// An end phrase matched in the closing part of a turn.
    NaturalEnd {
        /// The regex that matched, as written in the configuration.
        phrase: String,
        /// Who said it. The text format does not spell it out: it is the
        /// speaker of the last turn, and unknown when there are no turns.
        speaker: Option<Speaker>,
    },
    /// The turn limit was reached.
    MaxTurns { limit: u32 },
    /// The simulated patient left before the therapist closed the session.
    PatientEnded { reason: String },
    /// The crisis detector found imminent risk; the session stopped after
    /// the therapist's safety turn.
    SafetyEscalation { turn: u32, category: String },
    /// A token or time budget ran out.
    BudgetExhausted { budget: Budget },
    /// A turn repeated an earlier one.
    ConversationLoop { turn: u32, earlier_turn: u32 },
    /// The model backend failed after its retries.
    BackendFailure { error: String },
    /// The user stopped the run (Ctrl-C).
    Interrupted { after_turns: u32 },
    /// The person playing one side (`cbtsim play`) ended the session.
    UserEnded { role: Speaker },
    /// A reason written by another tool that cbtsim does not know, kept verbatim.
    Other { reason: String, details: String },
}

/// The budget that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Tokens { used: u64, limit: u64 },
    Seconds { used: u64, limit: u64 },
}

pub const NATURAL_END: &str = "Natural Session End";
pub const MAX_TURNS: &str = "Max Turns Reached";
pub const PATIENT_ENDED: &str = "Patient Ended Session";
pub const SAFETY_ESCALATION: &str = "Safety Escalation";
pub const BUDGET_EXHAUSTED: &str = "Budget Exhausted";
pub const CONVERSATION_LOOP: &str = "Conversation Loop";
pub const BACKEND_FAILURE: &str = "Backend Failure";
pub const INTERRUPTED: &str = "Interrupted";
pub const USER_ENDED: &str = "User Ended Session";

impl TerminationReason {
    /// The `Reason:` line, e.g. "Natural Session End".
    pub fn display_name(&self) -> &str {
        match self {
            TerminationReason::NaturalEnd { .. } => NATURAL_END,
            TerminationReason::MaxTurns { .. } => MAX_TURNS,
            TerminationReason::PatientEnded { .. } => PATIENT_ENDED,
            TerminationReason::SafetyEscalation { .. } => SAFETY_ESCALATION,
            TerminationReason::BudgetExhausted { .. } => BUDGET_EXHAUSTED,
            TerminationReason::ConversationLoop { .. } => CONVERSATION_LOOP,
            TerminationReason::BackendFailure { .. } => BACKEND_FAILURE,
            TerminationReason::Interrupted { .. } => INTERRUPTED,
            TerminationReason::UserEnded { .. } => USER_ENDED,
            TerminationReason::Other { reason, .. } => reason,
        }
    }

    /// A stable machine name for the kind of ending, e.g. "natural_end".
    pub fn kind(&self) -> &'static str {
        match self {
            TerminationReason::NaturalEnd { .. } => "natural_end",
            TerminationReason::MaxTurns { .. } => "max_turns",
            TerminationReason::PatientEnded { .. } => "patient_ended",
            TerminationReason::SafetyEscalation { .. } => "safety_escalation",
            TerminationReason::BudgetExhausted { .. } => "budget_exhausted",
            TerminationReason::ConversationLoop { .. } => "conversation_loop",
            TerminationReason::BackendFailure { .. } => "backend_failure",
            TerminationReason::Interrupted { .. } => "interrupted",
            TerminationReason::UserEnded { .. } => "user_ended",
            TerminationReason::Other { .. } => "other",
        }
    }

    /// The `Details:` line, e.g. "Detected end phrase: '\btake care\b'".
    /// Always a single line: free text is flattened.
    pub fn details(&self) -> String {
        match self {
            TerminationReason::NaturalEnd { phrase, .. } => {
                format!("Detected end phrase: '{}'", one_line(phrase))
            }
            TerminationReason::MaxTurns { limit } => {
                format!("Reached the maximum of {limit} turns")
            }
            TerminationReason::PatientEnded { reason } => {
                format!("The patient ended the session: {}", one_line(reason))
            }
            TerminationReason::SafetyEscalation { turn, category } => format!(
                "Imminent risk ({}) detected at turn {turn}; crisis resources given, human follow-up needed",
                one_line(category)
            ),
            TerminationReason::BudgetExhausted {
                budget: Budget::Tokens { used, limit },
            } => format!("Token budget exhausted: {used} of {limit} tokens used"),
            TerminationReason::BudgetExhausted {
                budget: Budget::Seconds { used, limit },
            } => format!("Time budget exhausted: {used} of {limit} seconds used"),
            TerminationReason::ConversationLoop { turn, earlier_turn } => {
                format!("Turn {turn} repeats turn {earlier_turn}")
            }
            TerminationReason::BackendFailure { error } => {
                format!("The model backend failed: {}", one_line(error))
            }
            TerminationReason::Interrupted { after_turns } => {
                format!("Interrupted by the user after {after_turns} turns")
            }
            TerminationReason::UserEnded { role } => {
                format!("The person playing the {} ended the session", role.as_str())
            }
            // Kept as written (only line breaks flattened) so imported files round-trip.
            TerminationReason::Other { details, .. } => details.replace(['\r', '\n'], " "),
        }
    }

    /// Reads a reason back from its `Reason:` and `Details:` lines. Text that
    /// does not have a known name and canonical details is kept as
    /// [`TerminationReason::Other`], so nothing an imported file says is lost.
    pub fn from_parts(reason: &str, details: &str, last_speaker: Option<Speaker>) -> Self {
        typed_from_parts(reason, details, last_speaker).unwrap_or_else(|| {
            TerminationReason::Other {
                reason: reason.to_string(),
                details: details.to_string(),
            }
        })
    }
}

fn typed_from_parts(
    reason: &str,
    details: &str,
    last_speaker: Option<Speaker>,
) -> Option<TerminationReason> {
    let caps = |re: &Regex| re.captures(details);
    let num = |c: &regex::Captures, i: usize| c[i].parse::<u32>().ok();
    let big = |c: &regex::Captures, i: usize| c[i].parse::<u64>().ok();
    let parsed = match reason {
        NATURAL_END => caps(&NATURAL_END_RE).map(|c| TerminationReason::NaturalEnd {
            phrase: c[1].to_string(),
            speaker: last_speaker,
        }),
        MAX_TURNS => caps(&MAX_TURNS_RE)
            .and_then(|c| Some(TerminationReason::MaxTurns { limit: num(&c, 1)? })),
        PATIENT_ENDED => caps(&PATIENT_ENDED_RE).map(|c| TerminationReason::PatientEnded {
            reason: c[1].to_string(),
        }),
        SAFETY_ESCALATION => caps(&SAFETY_RE).and_then(|c| {
            Some(TerminationReason::SafetyEscalation {
                category: c[1].to_string(),
                turn: num(&c, 2)?,
            })
        }),
        BUDGET_EXHAUSTED => caps(&BUDGET_RE).and_then(|c| {
            let (used, limit) = (big(&c, 2)?, big(&c, 3)?);
            let budget = match &c[1] {
                "Token" => Budget::Tokens { used, limit },
                _ => Budget::Seconds { used, limit },
            };
            Some(TerminationReason::BudgetExhausted { budget })
        }),
        CONVERSATION_LOOP => caps(&LOOP_RE).and_then(|c| {
            Some(TerminationReason::ConversationLoop {
                turn: num(&c, 1)?,
                earlier_turn: num(&c, 2)?,
            })
        }),
        BACKEND_FAILURE => caps(&BACKEND_RE).map(|c| TerminationReason::BackendFailure {
            error: c[1].to_string(),
        }),
        USER_ENDED => caps(&USER_ENDED_RE).map(|c| TerminationReason::UserEnded {
            role: match &c[1] {
                "therapist" => Speaker::Therapist,
                _ => Speaker::Patient,
            },
        }),
        INTERRUPTED => caps(&INTERRUPTED_RE).and_then(|c| {
            Some(TerminationReason::Interrupted {
                after_turns: num(&c, 1)?,
            })
        }),
        _ => None,
    }?;
    // Only accept the typed reading when it renders back to the same text;
    // anything else is kept verbatim as `Other`.
    (parsed.details() == details).then_some(parsed)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("termination details patterns are valid")
}

static NATURAL_END_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^Detected end phrase: '(.*)'$"));
static MAX_TURNS_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^Reached the maximum of (\d+) turns$"));
static PATIENT_ENDED_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^The patient ended the session: (.*)$"));
static SAFETY_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^Imminent risk \((.*)\) detected at turn (\d+); crisis resources given, human follow-up needed$",
    )
});
static BUDGET_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(Token|Time) budget exhausted: (\d+) of (\d+) (?:tokens|seconds) used$")
});
static LOOP_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^Turn (\d+) repeats turn (\d+)$"));
static BACKEND_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^The model backend failed: (.*)$"));
static USER_ENDED_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^The person playing the (therapist|patient) ended the session$"));
static INTERRUPTED_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^Interrupted by the user after (\d+) turns$"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typed_reason_reads_back_from_its_own_lines() {
        let reasons = [
            TerminationReason::NaturalEnd {
                phrase: r"\btake care\b".into(),
                speaker: Some(Speaker::Therapist),
            },
            TerminationReason::MaxTurns { limit: 20 },
            TerminationReason::PatientEnded {
                reason: "said they had to leave".into(),
            },
            TerminationReason::SafetyEscalation {
                turn: 7,
                category: "suicidal intent".into(),
            },
            TerminationReason::BudgetExhausted {
                budget: Budget::Tokens {
                    used: 4100,
                    limit: 4000,
                },
            },
            TerminationReason::BudgetExhausted {
                budget: Budget::Seconds {
                    used: 61,
                    limit: 60,
                },
            },
            TerminationReason::ConversationLoop {
                turn: 9,
                earlier_turn: 5,
            },
            TerminationReason::BackendFailure {
                error: "connection refused".into(),
            },
            TerminationReason::Interrupted { after_turns: 4 },
            TerminationReason::UserEnded {
                role: Speaker::Patient,
            },
            TerminationReason::UserEnded {
                role: Speaker::Therapist,
            },
        ];
        for reason in reasons {
            let back = TerminationReason::from_parts(
                reason.display_name(),
                &reason.details(),
                Some(Speaker::Therapist),
            );
            assert_eq!(back, reason);
        }
    }

    #[test]
    fn the_reference_details_line_is_reproduced_exactly() {
        let reason = TerminationReason::NaturalEnd {
            phrase: r"\btake care\b".into(),
            speaker: None,
        };
        assert_eq!(reason.display_name(), "Natural Session End");
        assert_eq!(reason.details(), r"Detected end phrase: '\btake care\b'");
    }

    #[test]
    fn unknown_wording_is_kept_verbatim() {
        let back = TerminationReason::from_parts("Max Turns Reached", "hit 20", None);
        assert_eq!(
            back,
            TerminationReason::Other {
                reason: "Max Turns Reached".into(),
                details: "hit 20".into()
            }
        );
        assert_eq!(back.display_name(), "Max Turns Reached");
        assert_eq!(back.details(), "hit 20");
    }
}
