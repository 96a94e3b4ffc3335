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

/// A person at the other end of a connection (the web app's play page):
/// the engine waits at the seat for their turn, and the page hands it over
/// and waits for the engine to come back (the model's answer stored) or
/// for the session to end.
#[derive(Default)]
pub struct Seat {
    state: Mutex<SeatState>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct SeatState {
    /// How many times the engine has asked for a turn.
    asked: u64,
    /// The engine waits for a turn now.
    waiting: bool,
    /// The turn handed over, not yet taken.
    given: Option<PersonTurn>,
    /// The session (its run) is over: nobody will ask again.
    closed: bool,
}

/// Where a seat stands, as a page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatStatus {
    /// The person's turn is awaited.
    YourTurn,
    /// The model (or the engine) is at work.
    Busy,
    /// Over: the session ended or stopped.
    Closed,
}

/// Why a seat did not take a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    #[error("it is not your turn: the model is still answering")]
    NotYourTurn,
    #[error("the session is over")]
    Closed,
}

impl Seat {
    pub fn new() -> Arc<Seat> {
        Arc::new(Seat::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeatState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> SeatStatus {
        let state = self.lock();
        match (state.closed, state.waiting && state.given.is_none()) {
            (true, _) => SeatStatus::Closed,
            (false, true) => SeatStatus::YourTurn,
            (false, false) => SeatStatus::Busy,
        }
    }

    /// Hands over the person's turn, and waits (up to `timeout`) until the
    /// engine asks again or the session is over.
    pub fn give(
        &self,
        turn: PersonTurn,
        timeout: std::time::Duration,
    ) -> Result<SeatStatus, SeatError> {
        let mut state = self.lock();
        if state.closed {
            return Err(SeatError::Closed);
        }
        if !state.waiting || state.given.is_some() {
            return Err(SeatError::NotYourTurn);
        }
        state.given = Some(turn);
        let asked = state.asked;
        self.changed.notify_all();
        drop(state);
        Ok(self.wait(|s| s.closed || (s.waiting && s.asked > asked), timeout))
    }

    /// Waits (up to `timeout`) until the person's turn is awaited or the
    /// session is over.
    pub fn wait_for_turn(&self, timeout: std::time::Duration) -> SeatStatus {
        self.wait(|s| s.closed || (s.waiting && s.given.is_none()), timeout)
    }

    fn wait(&self, done: impl Fn(&SeatState) -> bool, timeout: std::time::Duration) -> SeatStatus {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !done(s))
            .unwrap_or_else(|e| e.into_inner());
        drop(state);
        self.status()
    }

    /// Says that nobody will ask again (the run is over, however it ended).
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The engine's side: waits for the person's turn; one not given within
    /// `patience` is taken as the person gone (the session stops, to be
    /// resumed).
    pub fn person(self: &Arc<Seat>, patience: std::time::Duration) -> SeatedPerson {
        SeatedPerson {
            seat: self.clone(),
            patience,
        }
    }
}

/// The person at a [`Seat`], as the engine sees them.
pub struct SeatedPerson {
    seat: Arc<Seat>,
    patience: std::time::Duration,
}

impl Person for SeatedPerson {
    fn turn(&mut self, _speaker: Speaker, _turns: &[Turn]) -> PersonTurn {
        let seat = &self.seat;
        let mut state = seat.lock();
        state.asked += 1;
        state.waiting = true;
        seat.changed.notify_all();
        let (mut state, _) = seat
            .changed
            .wait_timeout_while(state, self.patience, |s| s.given.is_none() && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        state.waiting = false;
        let turn = state.given.take().unwrap_or(PersonTurn::Gone);
        seat.changed.notify_all();
        turn
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

    #[test]
    fn a_seat_hands_turns_to_the_engine_and_waits_for_its_answer() {
        use std::time::Duration;
        let seat = Seat::new();
        assert_eq!(seat.status(), SeatStatus::Busy);
        assert_eq!(
            seat.give(PersonTurn::End, Duration::ZERO),
            Err(SeatError::NotYourTurn)
        );
        let engine = {
            let mut person = seat.person(Duration::from_secs(30));
            let seat = seat.clone();
            std::thread::spawn(move || {
                let first = person.turn(Speaker::Therapist, &[]);
                let second = person.turn(Speaker::Therapist, &[]);
                seat.close();
                (first, second)
            })
        };
        let long = Duration::from_secs(30);
        assert_eq!(seat.wait_for_turn(long), SeatStatus::YourTurn);
        // Given: the engine takes it and asks again.
        assert_eq!(
            seat.give(PersonTurn::Said("Hello.".into()), long),
            Ok(SeatStatus::YourTurn)
        );
        assert_eq!(seat.give(PersonTurn::End, long), Ok(SeatStatus::Closed));
        assert_eq!(
            engine.join().unwrap(),
            (PersonTurn::Said("Hello.".into()), PersonTurn::End)
        );
        assert_eq!(seat.give(PersonTurn::End, long), Err(SeatError::Closed));
    }

    #[test]
    fn a_person_who_does_not_come_back_is_gone() {
        let seat = Seat::new();
        let mut person = seat.person(std::time::Duration::from_millis(20));
        assert_eq!(person.turn(Speaker::Patient, &[]), PersonTurn::Gone);
        assert_eq!(seat.status(), SeatStatus::Busy);
    }
}
