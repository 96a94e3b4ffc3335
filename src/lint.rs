//! The transcript linter: finds the defects of the reference transcript
//! (a cut-off turn, a template placeholder, a stage direction, a doubled
//! header) and the other ways a generated turn goes wrong.
//!
//! The per-turn checks are public so that the session's turn guards use the
//! very same rules on every generated reply.

use crate::text_format::{Anomaly, Parsed};
use crate::transcript::Transcript;
use regex::Regex;
use serde::Serialize;
use std::fmt;
use std::sync::LazyLock;

/// What kind of defect a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    TruncatedTurn,
    Placeholder,
    StageDirection,
    DuplicateHeader,
    RoleLeak,
    SameSpeakerTwice,
    EmptyTurn,
    TemplateToken,
    HiddenCharacter,
    DegenerateRepetition,
    RoleWordAddress,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::TruncatedTurn => "truncated_turn",
            FindingKind::Placeholder => "placeholder",
            FindingKind::StageDirection => "stage_direction",
            FindingKind::DuplicateHeader => "duplicate_header",
            FindingKind::RoleLeak => "role_leak",
            FindingKind::SameSpeakerTwice => "same_speaker_twice",
            FindingKind::EmptyTurn => "empty_turn",
            FindingKind::TemplateToken => "template_token",
            FindingKind::HiddenCharacter => "hidden_character",
            FindingKind::DegenerateRepetition => "degenerate_repetition",
            FindingKind::RoleWordAddress => "role_word_address",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One defect: its kind, the turn it is in (numbered from 1 over all
/// turns; None for file-level defects) and the text that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub turn: Option<usize>,
    pub excerpt: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(turn) = self.turn {
            write!(f, "turn {turn}: ")?;
        }
        write!(f, "{}: {:?}", self.kind, self.excerpt)
    }
}

/// Lints a transcript read from text, including what only the text shows
/// (repeated headers).
pub fn lint_parsed(parsed: &Parsed) -> Vec<Finding> {
    let mut findings = lint_transcript(&parsed.transcript);
    for anomaly in &parsed.anomalies {
        match anomaly {
            Anomaly::DuplicateHeader { header, .. } => findings.push(Finding {
                kind: FindingKind::DuplicateHeader,
                turn: None,
                excerpt: header.clone(),
            }),
        }
    }
    findings
}

/// Lints the turns of a transcript.
pub fn lint_transcript(transcript: &Transcript) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, turn) in transcript.turns.iter().enumerate() {
        let number = i + 1;
        let mut add = |kind, excerpt: String| {
            findings.push(Finding {
                kind,
                turn: Some(number),
                excerpt,
            })
        };
        if i > 0 && transcript.turns[i - 1].speaker == turn.speaker {
            add(FindingKind::SameSpeakerTwice, clip_start(&turn.text));
        }
        for (kind, excerpt) in turn_defects(&turn.text) {
            add(kind, excerpt);
        }
    }
    findings
}

/// The defects of one turn's text, each with the text that shows it.
/// An empty turn has only the one defect.
pub fn turn_defects(text: &str) -> Vec<(FindingKind, String)> {
    if text.trim().is_empty() {
        return vec![(FindingKind::EmptyTurn, String::new())];
    }
    let mut defects = Vec::new();
    // A template token is reported once, as itself, not also as a slot or
    // a turn that ends oddly.
    // Hidden characters likewise; they are never shown raw.
    let tokens = template_tokens(text);
    let hidden = hidden_characters(text);
    let stripped = without_template_tokens(&without_hidden_characters(text));
    let text = if tokens.is_empty() && hidden.is_empty() {
        text
    } else {
        stripped.trim()
    };
    if let Some(tail) = truncation(text) {
        defects.push((FindingKind::TruncatedTurn, tail));
    }
    defects.extend(
        placeholders(text)
            .into_iter()
            .map(|p| (FindingKind::Placeholder, p)),
    );
    defects.extend(
        stage_directions(text)
            .into_iter()
            .map(|s| (FindingKind::StageDirection, s)),
    );
    defects.extend(
        role_leaks(text)
            .into_iter()
            .map(|l| (FindingKind::RoleLeak, l)),
    );
    defects.extend(tokens.into_iter().map(|t| (FindingKind::TemplateToken, t)));
    defects.extend(
        hidden
            .into_iter()
            .map(|c| (FindingKind::HiddenCharacter, c)),
    );
    if let Some(run) = degenerate_repetition(text) {
        defects.push((FindingKind::DegenerateRepetition, run));
    }
    defects.extend(
        role_word_addresses(text)
            .into_iter()
            .map(|a| (FindingKind::RoleWordAddress, a)),
    );
    defects
}

/// Where a speaker addresses the other by a role word instead of a name:
/// "Thank you, patient.", "Patient, how are you?", "Hello client!".
/// ("As a patient, you ..." and "I told the patient." are not addresses.)
pub fn role_word_addresses(text: &str) -> Vec<String> {
    ROLE_WORD_ADDRESS
        .captures_iter(text)
        .filter_map(|c| role_word(&c))
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The role word of a match (each of the pattern's three forms captures it).
fn role_word<'t>(c: &regex::Captures<'t>) -> Option<regex::Match<'t>> {
    (1..=3).find_map(|i| c.get(i))
}

/// The text with each role-word address replaced by `name` for the
/// patient's role words and `therapist` for the therapist's.
pub fn with_names_for_role_words(text: &str, patient: &str, therapist: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for c in ROLE_WORD_ADDRESS.captures_iter(text) {
        let Some(word) = role_word(&c) else {
            continue;
        };
        let name = if word.as_str().to_lowercase().starts_with("counsel")
            || word.as_str().eq_ignore_ascii_case("therapist")
        {
            therapist
        } else {
            patient
        };
        out.push_str(&text[last..word.start()]);
        out.push_str(name);
        last = word.end();
    }
    out.push_str(&text[last..]);
    out
}

/// A text's words in lower case without the punctuation around them:
/// what the checks that compare words compare.
pub fn plain_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The words of a text that carry its content: plain words of four letters
/// or more that are not among the commonest, each once, in order.
pub fn content_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in plain_words(text) {
        if word.chars().count() >= 4 && !COMMON.contains(&word.as_str()) && !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

/// Words of four letters or more that say nothing about a person.
const COMMON: &[&str] = &[
    "about",
    "after",
    "again",
    "also",
    "always",
    "been",
    "before",
    "being",
    "brings",
    "could",
    "does",
    "doesn't",
    "down",
    "each",
    "even",
    "ever",
    "every",
    "feel",
    "feeling",
    "feels",
    "going",
    "from",
    "have",
    "having",
    "here",
    "into",
    "just",
    "know",
    "like",
    "made",
    "make",
    "many",
    "more",
    "most",
    "much",
    "must",
    "never",
    "only",
    "other",
    "over",
    "really",
    "said",
    "same",
    "should",
    "since",
    "some",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "therapy",
    "these",
    "they",
    "thing",
    "things",
    "think",
    "this",
    "those",
    "through",
    "time",
    "very",
    "want",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "will",
    "with",
    "would",
    "your",
    "she's",
    "he's",
    "they're",
    "i'm",
    "can't",
    "don't",
    "didn't",
    "won't",
    "it's",
    "that's",
    "i've",
    "i'd",
    "i'll",
    "isn't",
    "wasn't",
    "yeah",
    "okay",
    "maybe",
    "thank",
    "thanks",
    "right",
    "well",
    "good",
    "sure",
    "because",
    "something",
    "anything",
    "everything",
    "nothing",
    "someone",
    "actually",
    "still",
    "though",
    "although",
    "around",
    "without",
    "another",
    "couldn't",
    "wouldn't",
    "getting",
    "doing",
    "trying",
    "kind",
];

/// Chat-template tokens a model let into its text: "[INST]", "[/INST]",
/// "<<SYS>>", "<s>", "</s>", "<|im_start|>", "<|eot_id|>",
/// "<start_of_turn>user", "<end_of_turn>", "<bos>".
pub fn template_tokens(text: &str) -> Vec<String> {
    TEMPLATE_TOKEN
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The text without its chat-template tokens.
pub fn without_template_tokens(text: &str) -> String {
    TEMPLATE_TOKEN.replace_all(text, " ").into_owned()
}

/// Characters a reader cannot see or that change how the text shows:
/// terminal escape sequences, control characters (other than line breaks
/// and tabs), zero-width characters and direction overrides. Each is named
/// by its code point ("U+202E"), an escape sequence by its start ("ESC [").
pub fn hidden_characters(text: &str) -> Vec<String> {
    let mut found: Vec<String> = ESCAPE_SEQUENCE
        .find_iter(text)
        .map(|m| {
            let after = m.as_str().chars().nth(1).unwrap_or(' ');
            format!("ESC {after}")
        })
        .collect();
    let rest = ESCAPE_SEQUENCE.replace_all(text, "");
    found.extend(
        rest.chars()
            .filter(|&c| is_hidden(c))
            .map(|c| format!("U+{:04X}", c as u32)),
    );
    found
}

/// The text without hidden characters and escape sequences.
pub fn without_hidden_characters(text: &str) -> String {
    ESCAPE_SEQUENCE
        .replace_all(text, "")
        .chars()
        .filter(|&c| !is_hidden(c))
        .collect()
}

fn is_hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c,
            '\u{00AD}'                       // soft hyphen
            | '\u{200B}'                      // zero-width space (not the joiners,
            | '\u{200E}'..='\u{200F}'        // which emoji and scripts need); direction marks
            | '\u{202A}'..='\u{202E}'        // direction embeddings and overrides
            | '\u{2060}'..='\u{2064}'        // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'        // direction isolates
            | '\u{FEFF}'                      // byte-order mark
            | '\u{FFF9}'..='\u{FFFB}') // interlinear annotation
}

/// A word or a phrase said over and over, as a model stuck in a loop
/// writes it ("I feel very very very very very ..."): a word five times
/// running, a phrase of two to eight words four times running, or a long
/// turn of very few distinct words. ("No, no, no." and "I'm sorry, I'm
/// sorry, I'm sorry." are how people talk.) Returns the run.
pub fn degenerate_repetition(text: &str) -> Option<String> {
    let words = plain_words(text);
    let shown = |start: usize, len: usize| clip_start(&words[start..start + len].join(" "));
    for size in 1..=8usize {
        let needed = if size == 1 { 5 } else { 4 };
        let mut start = 0;
        while start + size * needed <= words.len() {
            let mut times = 1;
            while start + size * (times + 1) <= words.len()
                && words[start..start + size]
                    == words[start + size * times..start + size * (times + 1)]
            {
                times += 1;
            }
            if times >= needed {
                return Some(shown(start, size * times));
            }
            start += 1;
        }
    }
    let distinct: std::collections::HashSet<&String> = words.iter().collect();
    (words.len() >= 60 && distinct.len() * 4 < words.len()).then(|| shown(0, words.len()))
}

/// The end of a turn that stops mid-sentence, or None when it ends like a
/// sentence (closing quotes and asides allowed).
pub fn truncation(text: &str) -> Option<String> {
    let trimmed = text.trim_end();
    let end = trimmed.trim_end_matches(['"', '\'', '\u{201d}', '\u{2019}']);
    let last = end.chars().last()?;
    let finished = matches!(last, '.' | '!' | '?' | '\u{2026}' | ')' | ']' | '*');
    (!finished).then(|| clip_end(trimmed))
}

/// Template slots left in a reply: "[insert time and date]", "[Name]",
/// "<date>", "{client_name}", "____".
pub fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for m in PLACEHOLDER_SLOT.find_iter(text) {
        // "[text](url)" is a Markdown link, not a slot.
        if text[m.end()..].starts_with('(') {
            continue;
        }
        let inner = &m.as_str()[1..m.as_str().len() - 1];
        let inner = inner.trim_matches(['{', '}']).trim();
        // "[Smiles]" is narration, reported as a stage direction instead.
        if INLINE_ASIDE.is_match(m.as_str()) {
            continue;
        }
        if PLACEHOLDER_WORD.is_match(inner) || is_title_slot(inner) {
            found.push(m.as_str().to_string());
        }
    }
    found.extend(BLANK_SLOT.find_iter(text).map(|m| m.as_str().to_string()));
    found
}

/// Narration inside a spoken turn: a paragraph wrapped in parentheses,
/// brackets or asterisks, or an inline aside such as "*smiles*" or "(sighs)".
pub fn stage_directions(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for paragraph in text.split("\n\n").map(str::trim) {
        if WHOLE_ASIDE.is_match(paragraph) && placeholders(paragraph).is_empty() {
            found.push(paragraph.to_string());
            continue;
        }
        found.extend(
            INLINE_ASIDE
                .find_iter(paragraph)
                .map(|m| m.as_str().to_string()),
        );
    }
    found
}

/// Lines where one speaker writes a labelled line ("Therapist: ...") inside
/// a turn, including a label after a sentence on the same line.
/// Where the first role leak begins (after the sentence it follows), so a
/// guard can cut the reply there.
pub fn first_role_leak(text: &str) -> Option<usize> {
    ROLE_LABEL.find(text).map(|m| {
        let found = m.as_str();
        let label = found.trim_start_matches(['.', '!', '?']);
        m.start() + (found.len() - label.len())
    })
}

pub fn role_leaks(text: &str) -> Vec<String> {
    ROLE_LABEL
        .find_iter(text)
        .map(|m| {
            let line_end = text[m.start()..]
                .find('\n')
                .map_or(text.len(), |i| m.start() + i);
            clip_start(text[m.start()..line_end].trim())
        })
        .collect()
}

fn is_title_slot(inner: &str) -> bool {
    // "[Name]", "[Patient Name]", "<Date>": one to three capitalised words
    // (not acronyms such as "[ABC]").
    let words: Vec<&str> = inner.split_whitespace().collect();
    (1..=3).contains(&words.len())
        && words.iter().all(|w| {
            let mut chars = w.chars();
            chars.next().is_some_and(|c| c.is_ascii_uppercase())
                && chars.clone().any(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_alphabetic() || c == '\'' || c == '/')
        })
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("lint patterns are valid")
}

static TEMPLATE_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\[/?INST\]|<</?SYS>>|</?s>|<(?:bos|eos|pad|unk)>|<\|[a-z_]{2,20}\|>(?:[ \t]*(?:system|user|assistant)\b)?|<(?:start|end)_of_turn>(?:[ \t]*(?:user|model)\b)?",
    )
});

/// An escape sequence: CSI ("ESC [ ... letter"), OSC ("ESC ] ... BEL" or
/// "ESC \\", closed within the line), or ESC and one character (so an
/// unclosed OSC loses its "ESC ]" only, not the rest of the reply).
static ESCAPE_SEQUENCE: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]{0,200}(?:\x07|\x1b\\)|\x1b[@-_]?")
});

/// A role word said to someone: opening a sentence before a comma or an
/// end mark ("Patient, how ..."), closing one after a comma ("Thank you,
/// patient."), or after a greeting ("Hello client!"). "Be gentle,
/// patient, and kind" uses it as an adjective and is not matched.
static ROLE_WORD_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    const WORD: &str = "patient|client|therapist|counsel+or";
    regex(&format!(
        r"(?i)(?:^|[.!?]\s+)({WORD})\s*[,.!?]|,\s*({WORD})\s*(?:[.!?]|$)|\b(?:hi|hello|hey|thanks|thank you|welcome|dear|goodbye|bye)\s+({WORD})\b\s*(?:[.,!?;]|$)"
    ))
});

static PLACEHOLDER_SLOT: LazyLock<Regex> =
    LazyLock::new(|| regex(r"\[[^\[\]\n]{1,60}\]|<[^<>\n]{1,40}>|\{\{?[^{}\n]{1,40}\}?\}"));

static PLACEHOLDER_WORD: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(insert|name|date|time|day|location|place|address|phone|number|email|client|patient|therapist|counsel+or|your|placeholder|tbd|todo|fill|specific|hotline|link|city|xx+)\b|_",
    )
});

static BLANK_SLOT: LazyLock<Regex> = LazyLock::new(|| regex(r"_{3,}"));

const STAGE_WORDS: &str = r"smiles?|smiling|grins?|sighs?|sighing|pauses?|pausing|laughs?|laughing|chuckles?|nods?|nodding|shrugs?|frowns?|leans?|looks|glances?|cries|crying|sobs?|sobbing|tears up|hesitates?|whispers?|takes a (?:deep |long )?breath|deep breath|long pause|silence|session ends|ends the session|warmly|softly|quietly|gently|tearfully|visibly|fidgets?";

static WHOLE_ASIDE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?s)^(?:\([^()]*\)|\[[^\[\]]*\]|\*[^*\s][^*]*\*)\s*\.?$"));

static INLINE_ASIDE: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"(?i)\(\s*(?:{STAGE_WORDS})\b[^()\n]{{0,80}}\)|\[\s*(?:{STAGE_WORDS})\b[^\[\]\n]{{0,80}}\]|\*\s*(?:{STAGE_WORDS})\b[^*\n]{{0,80}}\*"
    ))
});

static ROLE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    // The roles' words wherever a line or a sentence starts; the labels a
    // model invents for someone else (`Speaker 3 (0970):`, `User:`) only
    // at a line start and capitalised, where the turn guards cut them.
    regex(
        r"(?im)(?:^[ \t]*|[.!?][ \t]+)[*_]*(?:patient|therapist|client|counsel+or)[*_]*[ \t]*:|(?-i:^[ \t]*[*_]*(?:Speaker(?:[ \t]*\d+)?|User|Assistant)(?:[ \t]*\([^)\n]{0,20}\))?[*_]*[ \t]*:)",
    )
});

fn clip_start(text: &str) -> String {
    const MAX: usize = 60;
    // An excerpt is printed: never with characters that drive a terminal.
    let text = &without_hidden_characters(text);
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

fn clip_end(text: &str) -> String {
    const MAX: usize = 60;
    let text = &without_hidden_characters(text);
    let count = text.chars().count();
    if count <= MAX {
        return text.to_string();
    }
    let start = text.char_indices().nth(count - MAX).map_or(0, |(i, _)| i);
    format!("...{}", &text[start..])
}
