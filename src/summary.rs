//! The structured summary written after each session.

use serde::{Deserialize, Serialize};

/// The five sections of the reference transcript's `Session Summary:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// "Main topics discussed"
    #[serde(default)]
    pub main_topics: Vec<String>,
    /// "Techniques/exercises introduced"
    #[serde(default)]
    pub techniques: Vec<String>,
    /// "Things that appeared helpful/important"
    #[serde(default)]
    pub helpful: Vec<String>,
    /// "Homework assigned" (numbered in the text form)
    #[serde(default)]
    pub homework: Vec<String>,
    /// "Insights/realizations"
    #[serde(default)]
    pub insights: Vec<String>,
    /// Built from the transcript by cbtsim because the summarizer gave no
    /// usable summary (`summarize::extract`). Not part of the text format.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extracted: bool,
}

/// A section of the summary: its heading in the text format and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummarySection {
    MainTopics,
    Techniques,
    Helpful,
    Homework,
    Insights,
}

impl SummarySection {
    /// The sections in the order the reference writes them.
    pub const ALL: [SummarySection; 5] = [
        SummarySection::MainTopics,
        SummarySection::Techniques,
        SummarySection::Helpful,
        SummarySection::Homework,
        SummarySection::Insights,
    ];

    /// The heading line, without its colon.
    pub fn heading(self) -> &'static str {
        match self {
            SummarySection::MainTopics => "Main topics discussed",
            SummarySection::Techniques => "Techniques/exercises introduced",
            SummarySection::Helpful => "Things that appeared helpful/important",
            SummarySection::Homework => "Homework assigned",
            SummarySection::Insights => "Insights/realizations",
        }
    }

    /// Homework is a numbered list; every other section uses "- " bullets.
    pub fn is_numbered(self) -> bool {
        self == SummarySection::Homework
    }

    pub fn from_heading(line: &str) -> Option<SummarySection> {
        let name = line.trim().strip_suffix(':')?.trim();
        SummarySection::ALL
            .into_iter()
            .find(|s| s.heading().eq_ignore_ascii_case(name))
    }
}

impl SessionSummary {
    pub fn items(&self, section: SummarySection) -> &Vec<String> {
        match section {
            SummarySection::MainTopics => &self.main_topics,
            SummarySection::Techniques => &self.techniques,
            SummarySection::Helpful => &self.helpful,
            SummarySection::Homework => &self.homework,
            SummarySection::Insights => &self.insights,
        }
    }

    pub fn items_mut(&mut self, section: SummarySection) -> &mut Vec<String> {
        match section {
            SummarySection::MainTopics => &mut self.main_topics,
            SummarySection::Techniques => &mut self.techniques,
            SummarySection::Helpful => &mut self.helpful,
            SummarySection::Homework => &mut self.homework,
            SummarySection::Insights => &mut self.insights,
        }
    }
}
