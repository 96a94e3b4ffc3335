//! Transcripts from files, stored as finished sessions of an "import" run.

use super::db::params;
use super::{Store, StoreError, now};
use crate::termination::TerminationReason;
use crate::transcript::Transcript;

impl Store {
    /// Stores a transcript read from a file as a finished session of an
    /// "import" run; returns its id.
    pub fn import(&mut self, transcript: &Transcript, source: &str) -> Result<i64, StoreError> {
        let run = self.start_run("import", &serde_json::json!({ "file": source }))?;
        let id = self.transaction(|tx| {
            let id = tx.insert(
                "INSERT INTO sessions (run_id, session_number, started_at, finished_at, termination_reason, termination_details, termination_speaker, summary)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                params![
                    run,
                    transcript.session_number,
                    now(),
                    transcript.termination.as_ref().map(|t| t.display_name().to_string()),
                    transcript.termination.as_ref().map(TerminationReason::details),
                    match &transcript.termination {
                        Some(TerminationReason::NaturalEnd { speaker: Some(s), .. }) => Some(s.as_str()),
                        _ => None,
                    },
                    transcript.summary.as_ref().map(|s| serde_json::to_string(s).expect("a summary serialises")),
                ],
            )?;
            for (position, turn) in transcript.turns.iter().enumerate() {
                tx.execute(
                    "INSERT INTO turns (session_id, position, speaker, text, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        id,
                        position,
                        turn.speaker.as_str(),
                        turn.text,
                        serde_json::to_string(&turn.meta).expect("metadata serialises")
                    ],
                )?;
            }
            Ok(id)
        })?;
        self.finish_run(run)?;
        Ok(id)
    }
}
