//! Runs, their plans, and their courses (the units of work a run is made
//! of: one per persona and repeat, a single run's too).

use super::{Store, StoreError, now, sql};
use crate::persona::Persona;
use crate::plan::RunPlan;
use rusqlite::{OptionalExtension, params};

/// A run's plan as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredPlan {
    Plan(Box<RunPlan>),
    /// A run stored before plans existed: its command line and when it
    /// started (`plan::from_legacy_argv` reads it).
    Legacy {
        argv: Vec<String>,
        started_at: String,
    },
    /// A run that ran no sessions of its own (an import): nothing to resume.
    NotSessions {
        command: String,
    },
}

/// Held while a process runs a run: a second process cannot run it at the
/// same time (which could store a session twice). An advisory lock on a
/// file beside the store, released by the system when the process ends,
/// however it ends.
pub struct RunClaim {
    file: Option<(std::fs::File, std::path::PathBuf)>,
}

impl RunClaim {
    /// Gives up the claim of a run that has finished, and removes its lock
    /// file: nothing will run it again, so nothing will wait on the file.
    pub fn release_finished(mut self) {
        if let Some((file, path)) = self.file.take() {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A course of a run, as far as it got.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCourse {
    pub id: i64,
    /// Its place in the plan's grid.
    pub index: u32,
    pub persona_row: i64,
    /// The persona as it was when the run started.
    pub persona: Persona,
    pub repeat: u32,
    pub sessions: u32,
    pub first_session: u32,
    pub seed: u32,
    pub finished: bool,
    /// Why it failed the last time it ran, if it did.
    pub error: Option<String>,
}

impl Store {
    /// Records a new run and its plan; its courses come with `add_courses`.
    pub fn create_run(&self, plan: &RunPlan) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (command, settings, plan, started_at) VALUES (?1, '{}', ?2, ?3)",
                params![plan.kind.as_str(), plan.to_json(), now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records a run of a kind that has no plan (an import).
    pub fn start_run(
        &self,
        command: &str,
        settings: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (command, settings, started_at) VALUES (?1, ?2, ?3)",
                params![command, settings.to_string(), now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Snapshots the personas (`personas[i]` is the plan's i-th) and adds
    /// one course per persona and repeat, all in one transaction.
    pub fn add_courses(
        &mut self,
        run: i64,
        plan: &RunPlan,
        personas: &[Persona],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sql(&path, e))?;
        let mut rows = Vec::new();
        for persona in personas {
            let snapshot = serde_json::to_string(persona).expect("a persona serialises");
            tx.execute(
                "INSERT INTO personas (persona_id, snapshot) VALUES (?1, ?2)",
                params![persona.id, snapshot],
            )
            .map_err(|e| sql(&path, e))?;
            rows.push(tx.last_insert_rowid());
        }
        for course in plan.courses() {
            tx.execute(
                "INSERT INTO courses (run_id, persona, sessions_planned, started_at, unit_index, repeat_index, first_session, seed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    run,
                    rows[course.persona],
                    plan.sessions,
                    now(),
                    course.index,
                    course.repeat,
                    plan.first_session,
                    course.seed
                ],
            )
            .map_err(|e| sql(&path, e))?;
        }
        tx.commit().map_err(|e| sql(&path, e))
    }

    pub fn run_plan(&self, run: i64) -> Result<StoredPlan, StoreError> {
        let (plan, settings, started_at, command): (Option<String>, String, String, String) = self
            .conn
            .query_row(
                "SELECT plan, settings, started_at, command FROM runs WHERE id = ?1",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .ok_or_else(|| StoreError::NoSuchRun {
                path: self.path.clone(),
                id: run,
            })?;
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            table: "runs",
            row: run.to_string(),
            message,
        };
        if let Some(plan) = plan {
            let plan = RunPlan::from_json(&plan).map_err(|e| corrupt(e.to_string()))?;
            return Ok(StoredPlan::Plan(Box::new(plan)));
        }
        if !["run", "course"].contains(&command.as_str()) {
            return Ok(StoredPlan::NotSessions { command });
        }
        let settings: serde_json::Value =
            serde_json::from_str(&settings).map_err(|e| corrupt(format!("settings: {e}")))?;
        let argv = serde_json::from_value(settings["argv"].clone())
            .map_err(|_| corrupt("neither a plan nor the command line it was run with".into()))?;
        Ok(StoredPlan::Legacy { argv, started_at })
    }

    /// Gives a run stored before plans its plan: its course (a single
    /// run gets one, holding its sessions) takes the plan's settings.
    pub fn adopt_legacy_run(&mut self, run: i64, plan: &RunPlan) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sql(&path, e))?;
        tx.execute(
            "UPDATE runs SET plan = ?1 WHERE id = ?2",
            params![plan.to_json(), run],
        )
        .map_err(|e| sql(&path, e))?;
        let course: Option<i64> = tx
            .query_row("SELECT id FROM courses WHERE run_id = ?1", [run], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| sql(&path, e))?;
        let persona: Option<i64> = tx
            .query_row(
                "SELECT persona FROM sessions WHERE run_id = ?1 ORDER BY id LIMIT 1",
                [run],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql(&path, e))?;
        match (course, persona) {
            (Some(course), _) => {
                tx.execute(
                    "UPDATE courses SET first_session = ?1, seed = ?2 WHERE id = ?3",
                    params![plan.first_session, plan.course_seed(0), course],
                )
                .map_err(|e| sql(&path, e))?;
            }
            (None, Some(persona)) => {
                tx.execute(
                    "INSERT INTO courses (run_id, persona, sessions_planned, started_at, first_session, seed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![run, persona, plan.sessions, now(), plan.first_session, plan.course_seed(0)],
                )
                .map_err(|e| sql(&path, e))?;
                let course = tx.last_insert_rowid();
                tx.execute(
                    "UPDATE sessions SET course_id = ?1 WHERE run_id = ?2",
                    params![course, run],
                )
                .map_err(|e| sql(&path, e))?;
            }
            // Nothing was stored but the run: its course is made when it runs.
            (None, None) => {}
        }
        tx.commit().map_err(|e| sql(&path, e))
    }

    /// A run's courses in grid order.
    pub fn courses(&self, run: i64) -> Result<Vec<StoredCourse>, StoreError> {
        let rows = self.rows(
            "SELECT c.id, c.unit_index, c.persona, p.snapshot, c.repeat_index, c.sessions_planned,
                    c.first_session, c.seed, c.finished_at IS NOT NULL, c.error
             FROM courses c JOIN personas p ON p.id = c.persona
             WHERE c.run_id = ?1 ORDER BY c.unit_index, c.id",
            [run],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, u32>(5)?,
                    r.get::<_, u32>(6)?,
                    r.get::<_, u32>(7)?,
                    r.get::<_, bool>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            },
        )?;
        let mut courses = Vec::new();
        for (
            id,
            index,
            persona_row,
            snapshot,
            repeat,
            sessions,
            first_session,
            seed,
            finished,
            error,
        ) in rows
        {
            let persona = serde_json::from_str(&snapshot).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                table: "personas",
                row: persona_row.to_string(),
                message: format!("the persona snapshot: {e}"),
            })?;
            courses.push(StoredCourse {
                id,
                index,
                persona_row,
                persona,
                repeat,
                sessions,
                first_session,
                seed,
                finished,
                error,
            });
        }
        Ok(courses)
    }

    pub fn finish_course(&self, course: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE courses SET finished_at = ?1, error = NULL WHERE id = ?2",
                params![now(), course],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Records why a course failed (None clears it as it runs again).
    pub fn set_course_error(&self, course: i64, error: Option<&str>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE courses SET error = ?1 WHERE id = ?2",
                params![error, course],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub fn finish_run(&self, run: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?1 WHERE id = ?2",
                params![now(), run],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Claims a run for this process until the claim is dropped, or says
    /// that another process has it.
    pub fn claim_run(&self, run: i64) -> Result<RunClaim, StoreError> {
        if self.path == std::path::Path::new(":memory:") {
            return Ok(RunClaim { file: None });
        }
        let lock = std::path::PathBuf::from(format!("{}.run-{run}.lock", self.path.display()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| StoreError::Sql {
                path: lock.clone(),
                message: format!("cannot open the run's lock file: {e}"),
            })?;
        match file.try_lock() {
            Ok(()) => Ok(RunClaim {
                file: Some((file, lock)),
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Busy {
                path: self.path.clone(),
                run,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Sql {
                path: lock,
                message: format!("cannot lock the run's lock file: {e}"),
            }),
        }
    }

    /// Runs that never finished, oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<i64>, StoreError> {
        self.rows(
            "SELECT id FROM runs WHERE finished_at IS NULL AND command IN ('run', 'course', 'batch') ORDER BY id",
            [],
            |r| r.get(0),
        )
    }
}
