//! People in the loop (`cbtsim play`): a person types one side's turns and
//! a model plays the other, through the same engine, guards, crisis
//! protocol and store as a simulated session. A person is given to the
//! engine as a model whose conversations are that person (`PersonModel`),
//! so the runner, courses and resume work unchanged; the engine takes a
//! person's turn as typed (no prompt, guard or candidates) and marks it a
//! person's in its metadata.

use crate::model::{ChatModel, Completion, Conversation, ModelError, Request};
use crate::speaker::Speaker;
use crate::turn::Turn;
use std::sync::{Arc, Mutex};

/// What a person does when it is their turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonTurn {
    /// A turn, as typed.
    Said(String),
    /// `/end`: the session ends here, by the person's choice.
    End,
    /// The input ended or was interrupted: the session stops where it is,
    /// and can be resumed.
    Gone,
}

/// Someone typing one side of a session.
pub trait Person: Send {
    /// The person's next turn as `speaker`, after `turns`.
    fn turn(&mut self, speaker: Speaker, turns: &[Turn]) -> PersonTurn;
}

/// The commands a person can type instead of a turn.
pub const HELP: &str = "Type your turn and press Enter. Commands: /end ends the session (it is \
stored as ended by you); /help shows this. End of input (Ctrl-D) or Ctrl-C stops the session \
where it is; `cbtsim resume` continues it.";

/// What a typed line means: a turn, a command, or nothing (a blank line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Turn(String),
    End,
    Help,
    Blank,
    Unknown(String),
}

/// Reads one typed line. A turn is kept as typed, but for the line's end.
pub fn parse_line(line: &str) -> Line {
    let typed = line.trim_end_matches(['\r', '\n']);
    match typed.trim() {
        "" => Line::Blank,
        "/end" => Line::End,
        "/help" => Line::Help,
        command if command.starts_with('/') && !command.contains(' ') => {
            Line::Unknown(command.to_string())
        }
        _ => Line::Turn(typed.to_string()),
    }
}

/// A person as a chat model: each conversation is the same person.
pub struct PersonModel {
    person: Arc<Mutex<Box<dyn Person>>>,
}

impl PersonModel {
    pub fn new(person: Box<dyn Person>) -> PersonModel {
        PersonModel {
            person: Arc::new(Mutex::new(person)),
        }
    }
}

/// The model spec recorded on a person's turns.
pub const PERSON: &str = "person";

impl ChatModel for PersonModel {
    fn describe(&self) -> String {
        PERSON.into()
    }

    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        Ok(Box::new(PersonConversation(self.person.clone())))
    }
}

struct PersonConversation(Arc<Mutex<Box<dyn Person>>>);

impl Conversation for PersonConversation {
    fn stream(
        &mut self,
        _request: &Request,
        _on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        // Only a summary or a judge would ask, and play gives those a model.
        Err(ModelError::Backend(
            "a person cannot answer a model's request".into(),
        ))
    }

    fn person(&mut self) -> Option<&mut dyn Person> {
        Some(self)
    }
}

impl Person for PersonConversation {
    fn turn(&mut self, speaker: Speaker, turns: &[Turn]) -> PersonTurn {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .turn(speaker, turns)
    }
}

/// A person whose lines come from an iterator (a pipe, a script, a test):
/// one turn per line; `/help` and unknown commands are answered on
/// `notes` and the next line is read.
pub struct LinePerson<I, N> {
    lines: I,
    notes: N,
}

impl<I, N> LinePerson<I, N>
where
    I: Iterator<Item = String> + Send,
    N: FnMut(&str) + Send,
{
    pub fn new(lines: I, notes: N) -> Self {
        LinePerson { lines, notes }
    }
}

impl<I, N> Person for LinePerson<I, N>
where
    I: Iterator<Item = String> + Send,
    N: FnMut(&str) + Send,
{
    fn turn(&mut self, _speaker: Speaker, _turns: &[Turn]) -> PersonTurn {
        loop {
            let Some(line) = self.lines.next() else {
                return PersonTurn::Gone;
            };
            match parse_line(&line) {
                Line::Turn(text) => return PersonTurn::Said(text),
                Line::End => return PersonTurn::End,
                Line::Help => (self.notes)(HELP),
                Line::Blank => {}
                Line::Unknown(command) => {
                    (self.notes)(&format!("unknown command {command}; {HELP}"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_turns_commands_or_nothing() {
        assert_eq!(
            parse_line("  Hello there. \r\n"),
            Line::Turn("  Hello there. ".into())
        );
        assert_eq!(parse_line("/end"), Line::End);
        assert_eq!(parse_line(" /help "), Line::Help);
        assert_eq!(parse_line("   "), Line::Blank);
        assert_eq!(parse_line("/quit"), Line::Unknown("/quit".into()));
        // A turn that happens to start with a slash and has words is a turn.
        assert_eq!(
            parse_line("/ I mean, it was hard"),
            Line::Turn("/ I mean, it was hard".into())
        );
    }

    #[test]
    fn a_line_person_skips_blanks_answers_help_and_leaves_at_the_end() {
        let lines = ["", "/help", "Hi.", "/end"].map(String::from).into_iter();
        let mut notes = Vec::new();
        let mut person = LinePerson::new(lines, |n: &str| notes.push(n.to_string()));
        assert_eq!(
            person.turn(Speaker::Therapist, &[]),
            PersonTurn::Said("Hi.".into())
        );
        assert_eq!(person.turn(Speaker::Therapist, &[]), PersonTurn::End);
        assert_eq!(person.turn(Speaker::Therapist, &[]), PersonTurn::Gone);
        drop(person);
        assert_eq!(notes, vec![HELP.to_string()]);
    }
}
