//! Reading a persona from TOML. Every problem is reported, each with the
//! file, the line and the dotted field it concerns, e.g.
//! `personas/x.toml:12: field risk.level: expected one of none, low, high, imminent`.

use super::*;
use std::fmt;
use std::path::Path;
use toml_edit::{Item, Table};

/// One problem with a persona file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaError {
    pub file: String,
    pub line: usize,
    /// The dotted field path, or None for a problem with the file as a whole.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for PersonaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(field) = &self.field {
            write!(f, "field {field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for PersonaError {}

/// Loads a persona file; its id is the file name without `.toml`.
pub fn load_file(path: &Path) -> Result<Persona, Vec<PersonaError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![PersonaError {
            file: file.clone(),
            line: 0,
            field: None,
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_persona(&id, &file, &text)
}

/// Parses persona TOML. `file` is only used to name the source in errors.
pub fn parse_persona(id: &str, file: &str, text: &str) -> Result<Persona, Vec<PersonaError>> {
    let doc = match toml_edit::Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            return Err(vec![PersonaError {
                file: file.to_string(),
                line,
                field: None,
                message: format!("invalid TOML: {}", e.message().trim()),
            }]);
        }
    };
    let mut r = Reader {
        file,
        text,
        errors: Vec::new(),
    };
    if !is_kebab_case(id) {
        r.error(
            1,
            None,
            format!("persona id '{id}' (the file name) must be kebab-case, like alicia-rodriguez"),
        );
    }
    let root = doc.as_table();
    r.known_keys(
        Some(root),
        "",
        &[
            "identity",
            "background",
            "cognitive_model",
            "conversation",
            "risk",
            "mood",
            "life_events",
        ],
    );

    let t = r.table(root, "", "identity");
    r.known_keys(
        t,
        "identity",
        &["name", "age", "gender", "pronouns", "occupation", "culture"],
    );
    let identity = Identity {
        name: r.text(t, "identity", "name"),
        age: r.number(t, "identity", "age", 12..=110),
        gender: r.text(t, "identity", "gender"),
        pronouns: r.text(t, "identity", "pronouns"),
        occupation: r.text(t, "identity", "occupation"),
        culture: r.text(t, "identity", "culture"),
    };

    let t = r.table(root, "", "background");
    r.known_keys(t, "background", &["history", "presenting_problems"]);
    let background = Background {
        history: r.text(t, "background", "history"),
        presenting_problems: r.texts(t, "background", "presenting_problems"),
    };

    let p = "cognitive_model";
    let t = r.table(root, "", p);
    r.known_keys(
        t,
        p,
        &[
            "core_beliefs",
            "core_belief_statements",
            "intermediate_beliefs",
            "coping_strategies",
            "situation",
            "automatic_thoughts",
            "emotions",
            "behaviours",
        ],
    );
    let cognitive_model = CognitiveModel {
        core_beliefs: r.choices(
            t,
            p,
            "core_beliefs",
            CoreBelief::NAMES,
            CoreBelief::from_name,
        ),
        core_belief_statements: r.texts(t, p, "core_belief_statements"),
        intermediate_beliefs: r.texts(t, p, "intermediate_beliefs"),
        coping_strategies: r.texts(t, p, "coping_strategies"),
        situation: r.text(t, p, "situation"),
        automatic_thoughts: r.texts(t, p, "automatic_thoughts"),
        emotions: r.texts(t, p, "emotions"),
        behaviours: r.texts(t, p, "behaviours"),
    };

    let p = "conversation";
    let t = r.table(root, "", p);
    r.known_keys(t, p, &["style", "attitude", "manner"]);
    let conversation = Conversation {
        style: r.choice(
            t,
            p,
            "style",
            ConversationalStyle::ALL,
            ConversationalStyle::NAMES,
            ConversationalStyle::from_name,
        ),
        attitude: r.choice(
            t,
            p,
            "attitude",
            Attitude::ALL,
            Attitude::NAMES,
            Attitude::from_name,
        ),
        manner: r.text(t, p, "manner"),
    };

    let p = "risk";
    let t = r.table(root, "", p);
    r.known_keys(t, p, &["level", "disclosure", "details"]);
    let level = r.choice(
        t,
        p,
        "level",
        RiskLevel::ALL,
        RiskLevel::NAMES,
        RiskLevel::from_name,
    );
    let disclosure = r.choice(
        t,
        p,
        "disclosure",
        Disclosure::ALL,
        Disclosure::NAMES,
        Disclosure::from_name,
    );
    let details = match level {
        RiskLevel::None => r.optional_text(t, p, "details"),
        _ => r.text(t, p, "details"),
    };
    let risk = Risk {
        level,
        disclosure,
        details,
    };

    let p = "mood";
    let t = r.table(root, "", p);
    r.known_keys(t, p, &["phq9", "gad7"]);
    let mood = Mood {
        phq9: r.number(t, p, "phq9", 0..=27),
        gad7: r.number(t, p, "gad7", 0..=21),
    };

    let life_events = r.life_events(root);

    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    Ok(Persona {
        id: id.to_string(),
        identity,
        background,
        cognitive_model,
        conversation,
        risk,
        mood,
        life_events,
    })
}

/// Reads fields out of a TOML document, recording every problem with its
/// line. A field that is missing or wrong reads as a stand-in value (empty,
/// zero, the first choice) so that reading goes on and every problem is
/// found; any recorded problem means the persona is rejected, so stand-ins
/// never leave this module.
struct Reader<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<PersonaError>,
}

impl<'a> Reader<'a> {
    fn error(&mut self, line: usize, field: Option<String>, message: String) {
        self.errors.push(PersonaError {
            file: self.file.to_string(),
            line,
            field,
            message,
        });
    }

    fn line_of_item(&self, item: &Item) -> usize {
        item.span().map_or(1, |s| line_of(self.text, s.start))
    }

    /// The line to blame for a missing key: the table's header, or line 1.
    fn line_of_table(&self, table: Option<&Table>) -> usize {
        table
            .and_then(Table::span)
            .map_or(1, |s| line_of(self.text, s.start))
    }

    /// The value of `key` in `table`, or an error naming `prefix.key`.
    fn item<'t>(&mut self, table: Option<&'t Table>, prefix: &str, key: &str) -> Option<&'t Item> {
        let table = table?;
        let item = table.get(key);
        if item.is_none() {
            let line = self.line_of_table(Some(table));
            self.error(
                line,
                Some(path(prefix, key)),
                "missing required field".into(),
            );
        }
        item
    }

    fn table<'t>(&mut self, parent: &'t Table, prefix: &str, key: &str) -> Option<&'t Table> {
        let Some(item) = parent.get(key) else {
            self.error(1, Some(path(prefix, key)), "missing required table".into());
            return None;
        };
        let table = item.as_table();
        if table.is_none() {
            let line = self.line_of_item(item);
            self.error(line, Some(path(prefix, key)), "expected a table".into());
        }
        table
    }

    fn known_keys(&mut self, table: Option<&Table>, prefix: &str, known: &[&str]) {
        let Some(table) = table else { return };
        for (key, item) in table.iter() {
            if !known.contains(&key) {
                let line = table
                    .key(key)
                    .and_then(|k| k.span())
                    .map_or_else(|| self.line_of_item(item), |s| line_of(self.text, s.start));
                self.error(
                    line,
                    Some(path(prefix, key)),
                    format!("unknown field; expected one of {}", known.join(", ")),
                );
            }
        }
    }

    /// A required, non-empty string.
    fn text(&mut self, table: Option<&Table>, prefix: &str, key: &str) -> String {
        match self.item(table, prefix, key) {
            Some(item) => self.string_value(item, prefix, key, false),
            None => String::new(),
        }
    }

    /// A string that may be absent or empty (read as "").
    fn optional_text(&mut self, table: Option<&Table>, prefix: &str, key: &str) -> String {
        match table.and_then(|t| t.get(key)) {
            None => String::new(),
            Some(item) => self.string_value(item, prefix, key, true),
        }
    }

    fn string_value(&mut self, item: &Item, prefix: &str, key: &str, may_be_empty: bool) -> String {
        let line = self.line_of_item(item);
        match item.as_str() {
            Some(s) if may_be_empty || !s.trim().is_empty() => s.trim().to_string(),
            Some(_) => {
                self.error(line, Some(path(prefix, key)), "must not be empty".into());
                String::new()
            }
            None => {
                self.error(line, Some(path(prefix, key)), "expected a string".into());
                String::new()
            }
        }
    }

    fn number(
        &mut self,
        table: Option<&Table>,
        prefix: &str,
        key: &str,
        range: std::ops::RangeInclusive<u32>,
    ) -> u32 {
        let Some(item) = self.item(table, prefix, key) else {
            return *range.start();
        };
        let line = self.line_of_item(item);
        let value = item.as_integer().and_then(|n| u32::try_from(n).ok());
        match value {
            Some(n) if range.contains(&n) => n,
            _ => {
                self.error(
                    line,
                    Some(path(prefix, key)),
                    format!(
                        "expected a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                *range.start()
            }
        }
    }

    /// An optional whole number from -limit to limit; absent means 0.
    fn optional_change(&mut self, table: &Table, prefix: &str, key: &str, limit: i32) -> i32 {
        let Some(item) = table.get(key) else {
            return 0;
        };
        match item.as_integer().and_then(|n| i32::try_from(n).ok()) {
            Some(n) if (-limit..=limit).contains(&n) => n,
            _ => {
                let line = self.line_of_item(item);
                self.error(
                    line,
                    Some(path(prefix, key)),
                    format!("expected a whole number from -{limit} to {limit}"),
                );
                0
            }
        }
    }

    /// A required, non-empty list of non-empty strings.
    fn texts(&mut self, table: Option<&Table>, prefix: &str, key: &str) -> Vec<String> {
        let Some(item) = self.item(table, prefix, key) else {
            return Vec::new();
        };
        let line = self.line_of_item(item);
        let field = Some(path(prefix, key));
        let Some(array) = item.as_array() else {
            self.error(line, field, "expected a list of strings".into());
            return Vec::new();
        };
        let mut out = Vec::new();
        for value in array.iter() {
            let line = value.span().map_or(line, |s| line_of(self.text, s.start));
            match value.as_str().map(str::trim) {
                Some(s) if !s.is_empty() => out.push(s.to_string()),
                _ => {
                    self.error(
                        line,
                        field.clone(),
                        "every entry must be a non-empty string".into(),
                    );
                    return Vec::new();
                }
            }
        }
        if out.is_empty() {
            self.error(line, field, "must list at least one entry".into());
        }
        out
    }

    fn choice<T: Copy>(
        &mut self,
        table: Option<&Table>,
        prefix: &str,
        key: &str,
        all: &[T],
        names: &[&str],
        from_name: fn(&str) -> Option<T>,
    ) -> T {
        let Some(item) = self.item(table, prefix, key) else {
            return all[0];
        };
        let line = self.line_of_item(item);
        let value = item.as_str().and_then(from_name);
        if value.is_none() {
            self.error(
                line,
                Some(path(prefix, key)),
                format!("expected one of {}", names.join(", ")),
            );
        }
        value.unwrap_or(all[0])
    }

    fn choices<T>(
        &mut self,
        table: Option<&Table>,
        prefix: &str,
        key: &str,
        names: &[&str],
        from_name: fn(&str) -> Option<T>,
    ) -> Vec<T> {
        let words = self.texts(table, prefix, key);
        let parsed: Option<Vec<T>> = words.iter().map(|w| from_name(w)).collect();
        if parsed.is_none() {
            let line = table
                .and_then(|t| t.get(key))
                .map_or(1, |i| self.line_of_item(i));
            self.error(
                line,
                Some(path(prefix, key)),
                format!("every entry must be one of {}", names.join(", ")),
            );
        }
        parsed.unwrap_or_default()
    }

    /// `[[life_events]]` tables; absent means none.
    fn life_events(&mut self, root: &Table) -> Vec<LifeEvent> {
        let Some(item) = root.get("life_events") else {
            return Vec::new();
        };
        let Some(tables) = item.as_array_of_tables() else {
            let line = self.line_of_item(item);
            self.error(
                line,
                Some("life_events".into()),
                "expected [[life_events]] tables".into(),
            );
            return Vec::new();
        };
        let mut events = Vec::new();
        for (i, table) in tables.iter().enumerate() {
            let prefix = format!("life_events[{i}]");
            self.known_keys(
                Some(table),
                &prefix,
                &["before_session", "event", "mood_change"],
            );
            events.push(LifeEvent {
                before_session: self.number(Some(table), &prefix, "before_session", 2..=100),
                event: self.text(Some(table), &prefix, "event"),
                mood_change: self.optional_change(table, &prefix, "mood_change", 5),
            });
        }
        events
    }
}

fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn is_kebab_case(id: &str) -> bool {
    !id.is_empty()
        && id.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}
