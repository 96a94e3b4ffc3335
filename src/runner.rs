//! The runner: executes a stored `RunPlan` against a store, whatever its
//! shape (one session, a course, a grid of courses), and continues one
//! that stopped (Ctrl-C, a kill, a failed backend) where it stopped.
//!
//! A run is a set of courses (rows in the store, made from the plan when
//! the run is created). Each course runs its sessions in order; up to
//! `plan.concurrency` courses run at once, each on its own thread. A session
//! found in the store is read back if it ended, continued from its last
//! turn if it stopped short, and run if it is not there, so running a plan
//! again after any stop finishes it with nothing lost and nothing run
//! twice. A course that fails is recorded with its error and the others go
//! on.
//!
//! The runner does no I/O of its own beyond the store and the models; what
//! happens is reported to a `RunObserver` (the binary's progress display).

use crate::course::{self, PatientState, Remembered};
use crate::model::spec::{AgentRole, ModelSpec, Models};
use crate::model::{ChatModel, ModelError};
use crate::persona::{self, Persona, PersonaLookupError};
use crate::plan::{PlanError, RunPlan, from_legacy_argv};
use crate::safety::model::ModelLayer;
use crate::session::{
    self, Agent, CarryOver, RoleUsage, SafetyEvent, SessionConfig, SessionError, SessionRecord,
    SessionSink, SessionUsage,
};
use crate::store::{Lease, SessionState, Store, StoreError, StoredCourse, StoredPlan, TokenTotal};
use crate::summarize::SummaryError;
use crate::termination::TerminationReason;
use crate::transcript::Transcript;
use crate::turn::Turn;
use crate::worker::Leasing;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Persona(#[from] PersonaLookupError),
    #[error("the {} model ({spec}): {cause}", roles.join(" and "))]
    Model {
        spec: String,
        roles: Vec<&'static str>,
        /// In the message rather than `source()`, so a chain of
        /// errors printed whole says it once.
        cause: ModelError,
    },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("run {run} is an {command}: it ran no sessions, so there is nothing to resume")]
    NotResumable { run: i64, command: String },
}

/// The models of a run, opened once and shared by all its courses (for
/// the embedded backend: the weights are loaded once).
pub struct RoleModels {
    pub therapist: Arc<dyn ChatModel>,
    pub patient: Arc<dyn ChatModel>,
    /// None when the plan writes no summaries.
    pub summarizer: Option<Arc<dyn ChatModel>>,
    /// The crisis detector's model layer, when the plan names one.
    pub safety: Option<Arc<dyn ChatModel>>,
}

/// Checks every model a plan names (see `Models::check`), each once.
pub fn check_models(plan: &RunPlan, models: &mut Models) -> Result<(), RunError> {
    for (spec, roles) in plan.models.distinct() {
        let roles: Vec<_> = roles
            .into_iter()
            .filter(|r| plan.summaries || *r != AgentRole::Summarizer)
            .collect();
        if roles.is_empty() {
            continue;
        }
        let error = |cause| RunError::Model {
            spec: spec.clone(),
            roles: roles.iter().map(|r| r.as_str()).collect(),
            cause,
        };
        let parsed: ModelSpec = spec.parse().map_err(|e: crate::model::spec::SpecError| {
            error(ModelError::Backend(e.to_string()))
        })?;
        models.check(&parsed).map_err(error)?;
    }
    Ok(())
}

impl RoleModels {
    /// Checks, then opens, each role's model.
    pub fn open(plan: &RunPlan, models: &mut Models) -> Result<RoleModels, RunError> {
        // The rules' patterns compile while the weights load, not on the
        // first turns.
        let warm_up = std::thread::spawn(session::warm_up);
        check_models(plan, models)?;
        let mut open = |role: AgentRole| -> Result<Arc<dyn ChatModel>, RunError> {
            let spec = plan.models.spec(role)?;
            models.open(&spec).map_err(|cause| RunError::Model {
                spec: spec.to_string(),
                roles: vec![role.as_str()],
                cause,
            })
        };
        let opened = RoleModels {
            therapist: open(AgentRole::Therapist)?,
            patient: open(AgentRole::Patient)?,
            summarizer: match plan.summaries {
                true => Some(open(AgentRole::Summarizer)?),
                false => None,
            },
            safety: match plan.models.safety {
                Some(_) => Some(open(AgentRole::Safety)?),
                None => None,
            },
        };
        let _ = warm_up.join();
        Ok(opened)
    }
}

/// Each of the plan's personas, read now.
fn resolve_personas(plan: &RunPlan) -> Result<Vec<Persona>, RunError> {
    Ok(plan
        .personas
        .iter()
        .map(|spec| persona::resolve(spec))
        .collect::<Result<_, _>>()?)
}

/// Stores a new plan as a run with its courses (the personas are read and
/// snapshotted now); returns the run's id.
pub fn create(store: &mut Store, plan: &RunPlan) -> Result<i64, RunError> {
    plan.validate()?;
    let personas = resolve_personas(plan)?;
    let run = store.create_run(plan)?;
    store.add_courses(run, plan, &personas)?;
    Ok(run)
}

/// The plan of a stored run. A run stored before plans existed gets one
/// from its command line, kept from then on.
pub fn load_plan(store: &mut Store, run: i64) -> Result<RunPlan, RunError> {
    match store.run_plan(run)? {
        StoredPlan::Plan(plan) => Ok(*plan),
        StoredPlan::Legacy { argv, started_at } => {
            let plan = from_legacy_argv(&argv, &started_at)?;
            store.adopt_legacy_run(run, &plan)?;
            Ok(plan)
        }
        StoredPlan::NotSessions { command } => Err(RunError::NotResumable { run, command }),
    }
}

/// A course as the observer and the outcome name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CourseInfo {
    /// Its id in the store.
    pub id: i64,
    /// Its place in the grid, from 0.
    pub index: u32,
    pub persona: String,
    pub repeat: u32,
    pub sessions: u32,
    pub first_session: u32,
}

/// Told what a run does as it happens; called from the courses' threads.
pub trait RunObserver: Sync {
    fn course_started(&self, _course: &CourseInfo) {}
    /// A session starts, or continues after `continued_after` stored turns.
    fn session_started(&self, _course: &CourseInfo, _number: u32, _continued_after: usize) {}
    /// What each side is told of the earlier sessions of the course (a
    /// person playing a side is shown theirs), just after `session_started`.
    fn carry_over(&self, _course: &CourseInfo, _number: u32, _notes: &CarryOver) {}
    /// A turn was spoken and stored; `position` counts from 0.
    fn turn(&self, _course: &CourseInfo, _number: u32, _position: usize, _turn: &Turn) {}
    fn safety_event(&self, _course: &CourseInfo, _number: u32, _event: &SafetyEvent) {}
    fn summarizing(&self, _course: &CourseInfo, _number: u32) {}
    fn session_finished(&self, _course: &CourseInfo, _session: &SessionResult) {}
    fn course_finished(&self, _course: &CourseInfo, _status: &CourseStatus) {}
}

/// An observer that ignores everything.
pub struct Unobserved;
impl RunObserver for Unobserved {}

/// One session as a run leaves it (its JSON is `run --json`'s).
#[derive(Debug, Clone, Serialize)]
pub struct SessionResult {
    /// Its id in the store.
    #[serde(skip)]
    pub id: i64,
    #[serde(flatten)]
    pub transcript: Transcript,
    pub persona: String,
    pub seed: u32,
    pub safety_events: Vec<SafetyEvent>,
    pub usage: SessionUsage,
    pub usage_by_role: Vec<RoleUsage>,
    pub carry_over: CarryOver,
    /// The mood the session started with and how much homework was done.
    #[serde(flatten)]
    pub state: PatientState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_error: Option<String>,
    /// Whether it was read back from the store (it had ended before this run).
    #[serde(skip)]
    pub read_back: bool,
}

/// How a course came out of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "error", rename_all = "snake_case")]
pub enum CourseStatus {
    Finished,
    /// Ctrl-C: the course stopped after the turn in progress.
    Interrupted,
    /// A backend failed mid-session; resume continues it.
    BackendFailure(String),
    /// Something else stopped it (the store, the models); recorded with
    /// the course, and resume tries it again.
    Failed(String),
    /// Ctrl-C came before it started.
    NotStarted,
    /// Another worker holds its lease (a queued batch's workers): it is
    /// theirs to run.
    Elsewhere,
    /// This process's lease ran out (it was paused, or cut off from the
    /// store) and another worker took the course over; nothing more of it
    /// was written here.
    TakenOver,
}

#[derive(Debug, Clone, Serialize)]
pub struct CourseOutcome {
    pub course: CourseInfo,
    pub status: CourseStatus,
    pub sessions: Vec<SessionResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run: i64,
    pub courses: Vec<CourseOutcome>,
    /// Whether every course finished (and so the run did).
    pub finished: bool,
    /// Tokens per role and model over the whole run, as stored.
    pub tokens: Vec<TokenTotal>,
}

impl RunOutcome {
    pub fn count(&self, wanted: fn(&CourseStatus) -> bool) -> usize {
        self.courses.iter().filter(|c| wanted(&c.status)).count()
    }
}

/// Executes runs against one store.
pub struct Runner<'a> {
    pub store: &'a Mutex<Store>,
    pub models: &'a RoleModels,
    /// Set by Ctrl-C: sessions stop after the turn in progress, and no
    /// course starts.
    pub interrupted: &'a AtomicBool,
    pub observer: &'a dyn RunObserver,
    /// The time since some fixed moment; each session's clock counts from
    /// its start. Injected so that tests control time.
    pub clock: &'a (dyn Fn() -> Duration + Sync),
    /// The leases this process holds on courses (see `store::queue`).
    pub leasing: &'a Leasing,
}

pub(crate) fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A course thread that panicked leaves the connection usable.
    store.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runner<'_> {
    /// Runs (or continues) every unfinished course of `run`, at most
    /// `plan.concurrency` at once, and marks the run finished when all are.
    pub fn execute(&self, run: i64, plan: &RunPlan) -> Result<RunOutcome, RunError> {
        // No other process runs this run meanwhile.
        let claim = lock(self.store).claim_run(run)?;
        let mut courses = lock(self.store).courses(run)?;
        if courses.is_empty() {
            // The run was stored before its courses (a kill in between, or
            // a run from before plans that stored nothing else).
            let personas = resolve_personas(plan)?;
            let mut store = lock(self.store);
            store.add_courses(run, plan, &personas)?;
            courses = store.courses(run)?;
        }
        // A queued batch's courses may be leased by its workers, and stay
        // theirs; any other run is this process's alone (it holds the
        // run's claim), so a lease left by an earlier process of it that
        // was killed is taken back at once.
        let force = !lock(self.store).is_queued(run)?;
        let total = courses.len();
        let queue = Mutex::new(courses.into_iter().enumerate().collect::<VecDeque<_>>());
        let done: Mutex<Vec<(usize, CourseOutcome)>> = Mutex::new(Vec::new());
        let workers = (plan.concurrency as usize).clamp(1, total.max(1));
        let courses_done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| self.leasing.keep_renewed(self.store, &courses_done));
            let threads: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        loop {
                            if self.interrupted.load(Ordering::SeqCst) {
                                break;
                            }
                            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                            let Some((i, course)) = next else { break };
                            let outcome = self.leased_course(run, plan, &course, force);
                            done.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((i, outcome));
                        }
                    })
                })
                .collect();
            for thread in threads {
                let _ = thread.join();
            }
            courses_done.store(true, Ordering::SeqCst);
        });
        let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
        for (i, course) in queue.into_inner().unwrap_or_else(|e| e.into_inner()) {
            done.push((
                i,
                CourseOutcome {
                    course: info(&course),
                    status: CourseStatus::NotStarted,
                    sessions: Vec::new(),
                },
            ));
        }
        done.sort_by_key(|(i, _)| *i);
        let courses: Vec<CourseOutcome> = done.into_iter().map(|(_, c)| c).collect();
        let finished = courses.iter().all(|c| c.status == CourseStatus::Finished);
        let store = lock(self.store);
        if finished {
            store.finish_run(run)?;
            claim.release_finished();
        }
        Ok(RunOutcome {
            run,
            courses,
            finished,
            tokens: store.token_totals(Some(run))?,
        })
    }

    /// Leases a course of `run`, runs it, and gives the lease up.
    fn leased_course(
        &self,
        run: i64,
        plan: &RunPlan,
        course: &StoredCourse,
        force: bool,
    ) -> CourseOutcome {
        let leased = lock(self.store).lease_course(
            course.id,
            &self.leasing.owner,
            self.leasing.duration,
            force,
        );
        let status = match leased {
            Ok(Some(lease)) => {
                let outcome = self.course(run, plan, course, lease);
                self.leasing.release(lease);
                let _ = lock(self.store).release_lease(lease);
                return outcome;
            }
            Ok(None) => CourseStatus::Elsewhere,
            Err(e) => CourseStatus::Failed(e.to_string()),
        };
        CourseOutcome {
            course: info(course),
            status,
            sessions: Vec::new(),
        }
    }

    /// Runs (or continues) a course this process has leased; every write
    /// is fenced by the lease. The lease is renewed meanwhile (see
    /// `Leasing::keep_renewed`); the caller gives it up.
    pub fn course(
        &self,
        run: i64,
        plan: &RunPlan,
        course: &StoredCourse,
        lease: Lease,
    ) -> CourseOutcome {
        self.leasing.hold(lease);
        let info = info(course);
        self.observer.course_started(&info);
        let mut sessions = Vec::new();
        let fence = Some(lease);
        let status = match self.course_sessions(run, plan, course, fence, &info, &mut sessions) {
            Ok(status) => status,
            // Whatever failed, it failed because the course is another's now.
            Err(_) if !lock(self.store).holds(lease).unwrap_or(true) => CourseStatus::TakenOver,
            Err(e) => {
                let error = e.to_string();
                // Best effort: the store itself may be what failed.
                let _ = lock(self.store).set_course_error(fence, course.id, Some(&error));
                CourseStatus::Failed(error)
            }
        };
        self.observer.course_finished(&info, &status);
        CourseOutcome {
            course: info,
            status,
            sessions,
        }
    }

    fn course_sessions(
        &self,
        run: i64,
        plan: &RunPlan,
        course: &StoredCourse,
        fence: Option<Lease>,
        info: &CourseInfo,
        results: &mut Vec<SessionResult>,
    ) -> Result<CourseStatus, RunError> {
        if course.error.is_some() {
            lock(self.store).set_course_error(fence, course.id, None)?;
        }
        let stored = lock(self.store).course_sessions(course.id)?;
        let mut remembered = match plan.continues {
            Some(earlier) => self.remembered(earlier, course.first_session)?,
            None => Vec::new(),
        };
        for offset in 0..course.sessions {
            let number = course.first_session + offset;
            let found = stored.iter().find(|s| s.session_number == number);
            // A session that ended is read back; any other waits for the
            // next run once Ctrl-C has come.
            let ended = found.is_some_and(|s| !s.resumable());
            if !ended && self.interrupted.load(Ordering::SeqCst) {
                return Ok(CourseStatus::Interrupted);
            }
            let mut config = plan.session_config(number, offset, course.seed)?;
            let mut state =
                course::patient_state(&course.persona, number, &remembered, course.seed);
            // A stored session keeps the mood it started with.
            if let Some(mood) = found.and_then(|s| s.mood) {
                state.mood = mood;
            }
            config.mood = Some(state.mood);
            config.carry_over = course::carry_over(
                &course.persona,
                &config.therapist.name,
                number,
                &remembered,
                &state,
            );
            let (mut record, id) = match found {
                Some(s) if ended => (read_back(&lock(self.store), s)?, s.id),
                Some(s) => {
                    let spoken = {
                        let mut store = lock(self.store);
                        store.reopen_session(fence, s.id)?;
                        store.transcript(s.id)?.turns
                    };
                    (
                        self.session(course, fence, info, &config, s.id, spoken)?,
                        s.id,
                    )
                }
                None => {
                    let id = lock(self.store).start_session(
                        fence,
                        run,
                        Some(course.id),
                        course.persona_row,
                        number,
                        &state,
                    )?;
                    (
                        self.session(course, fence, info, &config, id, Vec::new())?,
                        id,
                    )
                }
            };
            let stopped = self.stopped_short(&record);
            let mut summary_backend_failure = None;
            let summary_error = match found {
                _ if !plan.summaries => None,
                // Read back with its summary, or with why there is none.
                Some(s) if ended && (s.has_summary || s.summary_error.is_some()) => {
                    s.summary_error.clone()
                }
                // The backend may be gone and the user may be waiting; the
                // summary is written when the session is resumed and done.
                _ if stopped => Some(NOT_WRITTEN.to_string()),
                _ => match self.summarize(fence, info, &mut record, id)? {
                    Summarized::Written => None,
                    Summarized::Failed(error) => Some(error),
                    Summarized::BackendFailure(error) => {
                        summary_backend_failure = Some(error);
                        Some(NOT_WRITTEN.to_string())
                    }
                },
            };
            let result = SessionResult {
                id,
                persona: course.persona.id.clone(),
                seed: config.seed,
                carry_over: config.carry_over,
                state,
                summary_error,
                read_back: ended,
                safety_events: record.safety_events,
                usage: record.usage,
                usage_by_role: record.usage_by_role,
                transcript: record.transcript,
            };
            self.observer.session_finished(info, &result);
            remembered.push(Remembered {
                session_number: number,
                summary: result.transcript.summary.clone(),
                disclosed_risk: !result.safety_events.is_empty(),
                mood: state.mood,
            });
            let ending = result.transcript.termination.clone();
            results.push(result);
            if let Some(error) = summary_backend_failure {
                return Ok(CourseStatus::BackendFailure(error));
            }
            if stopped {
                return Ok(match ending {
                    Some(TerminationReason::BackendFailure { error }) => {
                        CourseStatus::BackendFailure(error)
                    }
                    _ => CourseStatus::Interrupted,
                });
            }
        }
        if !course.finished {
            lock(self.store).finish_course(fence, course.id)?;
        }
        Ok(CourseStatus::Finished)
    }

    /// The ended sessions of a stored course numbered before `first`, as
    /// a course remembers its own.
    fn remembered(&self, course: i64, first: u32) -> Result<Vec<Remembered>, RunError> {
        let store = lock(self.store);
        let mut earlier = Vec::new();
        for s in store.course_sessions(course)? {
            // A session of a course always has its mood; one without
            // (imported) has nothing to carry over.
            let Some(mood) = s.mood else { continue };
            if s.session_number >= first || s.resumable() {
                continue;
            }
            earlier.push(Remembered {
                session_number: s.session_number,
                summary: store.transcript(s.id)?.summary,
                disclosed_risk: s.safety_events > 0,
                mood,
            });
        }
        earlier.sort_by_key(|r| r.session_number);
        Ok(earlier)
    }

    /// Whether a session stopped short (Ctrl-C, a failed backend): it gets
    /// no summary yet, the rest of its course waits, and the run stays
    /// unfinished for `cbtsim resume`.
    fn stopped_short(&self, record: &SessionRecord) -> bool {
        self.interrupted.load(Ordering::SeqCst)
            || matches!(
                record.transcript.termination,
                Some(
                    TerminationReason::Interrupted { .. }
                        | TerminationReason::BackendFailure { .. }
                )
            )
    }

    /// Runs one session, new or continued after `spoken`, storing each
    /// turn as it is spoken and the ending when it ends.
    fn session(
        &self,
        course: &StoredCourse,
        fence: Option<Lease>,
        info: &CourseInfo,
        config: &SessionConfig,
        id: i64,
        spoken: Vec<Turn>,
    ) -> Result<SessionRecord, RunError> {
        let mut therapist = agent(&self.models.therapist, AgentRole::Therapist)?;
        let mut patient = agent(&self.models.patient, AgentRole::Patient)?;
        let number = config.session_number;
        self.observer.session_started(info, number, spoken.len());
        self.observer.carry_over(info, number, &config.carry_over);
        let mut sink = StoreSink {
            store: self.store,
            fence,
            session: id,
            count: spoken.len(),
            observer: self.observer,
            info,
            number,
        };
        let origin = (self.clock)();
        let clock = || (self.clock)().saturating_sub(origin);
        let mut screen = match &self.models.safety {
            Some(model) => {
                Some(
                    ModelLayer::new(model.as_ref()).map_err(|cause| RunError::Model {
                        spec: model.describe(),
                        roles: vec![AgentRole::Safety.as_str()],
                        cause,
                    })?,
                )
            }
            None => None,
        };
        let record = session::resume_screened(
            &course.persona,
            &mut therapist,
            &mut patient,
            config,
            &spoken,
            self.interrupted,
            &clock,
            &mut sink,
            screen.as_mut(),
        )?;
        let reason = record
            .transcript
            .termination
            .as_ref()
            .expect("a finished session has a reason");
        lock(self.store).finish_session(
            fence,
            id,
            reason,
            &record.usage_by_role,
            &record.safety_events,
        )?;
        Ok(record)
    }

    /// Adds the summary to an ended session and stores it (or why there is
    /// none: never an empty summary) with what the summarizer used. A
    /// backend that could not be reached (or failed in a way worth retrying)
    /// stores nothing, so that resume asks again.
    fn summarize(
        &self,
        fence: Option<Lease>,
        info: &CourseInfo,
        record: &mut SessionRecord,
        id: i64,
    ) -> Result<Summarized, RunError> {
        let Some(model) = &self.models.summarizer else {
            return Ok(Summarized::Written);
        };
        if record.transcript.turns.is_empty() {
            let error = "the session has no turns to summarise";
            lock(self.store).set_summary(fence, id, Err(error), None)?;
            return Ok(Summarized::Failed(error.into()));
        }
        let mut summarizer = agent(model, AgentRole::Summarizer)?;
        self.observer
            .summarizing(info, record.transcript.session_number);
        let mut usage = SessionUsage::default();
        let written = crate::summarize::summarize(
            &mut *summarizer.conversation,
            &record.transcript,
            summarizer.chat,
            &mut usage,
        );
        record.usage += usage;
        let share = RoleUsage {
            role: AgentRole::Summarizer,
            model: summarizer.model,
            usage,
        };
        let outcome = match written {
            Ok(summary) => {
                lock(self.store).set_summary(fence, id, Ok(&summary), Some(&share))?;
                record.transcript.summary = Some(summary);
                Summarized::Written
            }
            // A server gone away or overloaded: worth asking again later.
            Err(SummaryError::Model(e)) if e.is_retryable() => {
                Summarized::BackendFailure(e.to_string())
            }
            Err(e) => {
                let error = e.to_string();
                lock(self.store).set_summary(fence, id, Err(&error), Some(&share))?;
                Summarized::Failed(error)
            }
        };
        record.usage_by_role.push(share);
        Ok(outcome)
    }
}

/// What became of a session's summary.
enum Summarized {
    Written,
    /// The summarizer could not write a valid one; stored as the reason.
    Failed(String),
    /// The summarizer's backend failed; nothing stored.
    BackendFailure(String),
}

/// Why a session that stopped short has no summary yet.
const NOT_WRITTEN: &str = "not written: the session stopped early";

fn info(course: &StoredCourse) -> CourseInfo {
    CourseInfo {
        id: course.id,
        index: course.index,
        persona: course.persona.id.clone(),
        repeat: course.repeat,
        sessions: course.sessions,
        first_session: course.first_session,
    }
}

fn agent(model: &Arc<dyn ChatModel>, role: AgentRole) -> Result<Agent, RunError> {
    let conversation = model.conversation().map_err(|cause| RunError::Model {
        spec: model.describe(),
        roles: vec![role.as_str()],
        cause,
    })?;
    Ok(Agent {
        conversation,
        model: model.describe(),
        chat: model.chat(),
    })
}

/// A session that ended before this run, as stored (its usage is counted
/// in the store, not here).
fn read_back(store: &Store, state: &SessionState) -> Result<SessionRecord, RunError> {
    Ok(SessionRecord {
        transcript: store.transcript(state.id)?,
        safety_events: store.safety_events(state.id)?,
        usage: SessionUsage::default(),
        usage_by_role: Vec::new(),
    })
}

/// Stores each turn the moment it is spoken, then tells the observer.
struct StoreSink<'a> {
    store: &'a Mutex<Store>,
    fence: Option<Lease>,
    session: i64,
    count: usize,
    observer: &'a dyn RunObserver,
    info: &'a CourseInfo,
    number: u32,
}

impl SessionSink for StoreSink<'_> {
    fn turn(&mut self, turn: &Turn) -> Result<(), String> {
        lock(self.store)
            .add_turn(self.fence, self.session, self.count, turn)
            .map_err(|e| format!("cannot store the turn: {e}"))?;
        self.observer.turn(self.info, self.number, self.count, turn);
        self.count += 1;
        Ok(())
    }

    fn safety_event(&mut self, event: &SafetyEvent) -> Result<(), String> {
        self.observer.safety_event(self.info, self.number, event);
        Ok(())
    }

    /// Stored as they change, so a session killed before its end still
    /// shows its disclosures (a few rows, rewritten only on a disclosure).
    fn safety_events(&mut self, events: &[SafetyEvent]) -> Result<(), String> {
        lock(self.store)
            .replace_safety_events(self.fence, self.session, events)
            .map_err(|e| format!("cannot store the safety events: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::default_model::FetchError;

    /// The binary prints an error with its chain of causes (`{:#}`): a
    /// cause that is in the message must not also be the error's
    /// `source()`, or it is said twice.
    #[test]
    fn an_error_with_its_cause_in_its_message_says_it_once() {
        let errors: Vec<anyhow::Error> = vec![
            RunError::Model {
                spec: "http://a/v1#m".into(),
                roles: vec!["therapist"],
                cause: ModelError::Unreachable("connection refused".into()),
            }
            .into(),
            FetchError::Io {
                path: "/a/full/disk".into(),
                cause: std::io::Error::other("connection refused"),
            }
            .into(),
        ];
        for error in errors {
            let printed = format!("{error:#}");
            assert_eq!(
                printed.matches("connection refused").count(),
                1,
                "{printed}"
            );
        }
    }
}
