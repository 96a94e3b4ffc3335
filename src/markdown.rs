//! A transcript as Markdown, for reading and sharing.

use crate::summary::SummarySection;
use crate::transcript::Transcript;
use std::fmt::Write as _;

pub fn render(transcript: &Transcript) -> String {
    let mut out = format!("# Session {}\n", transcript.session_number);
    for turn in &transcript.turns {
        let _ = write!(out, "\n**{}:** {}\n", turn.speaker.label(), turn.text);
    }
    if let Some(reason) = &transcript.termination {
        let _ = write!(
            out,
            "\n## Termination\n\n- **Reason:** {}\n- **Details:** {}\n",
            reason.display_name(),
            reason.details().replace('\\', "\\\\")
        );
    }
    if let Some(summary) = &transcript.summary {
        out.push_str("\n## Session summary\n");
        if summary.extracted {
            out.push_str("\n*Extracted from the transcript: the summarizer gave none usable.*\n");
        }
        for section in SummarySection::ALL {
            let _ = write!(out, "\n### {}\n\n", section.heading());
            let items = summary.items(section);
            if items.is_empty() {
                out.push_str("(none)\n");
            }
            for (i, item) in items.iter().enumerate() {
                if section.is_numbered() {
                    let _ = writeln!(out, "{}. {item}", i + 1);
                } else {
                    let _ = writeln!(out, "- {item}");
                }
            }
        }
    }
    out
}
