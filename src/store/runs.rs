//! Runs, their plans, and their courses (the units of work a run is made
//! of: one per persona and repeat, a single run's too).

use super::db::params;
use super::{Lease, Store, StoreError, now};
use crate::persona::Persona;
use crate::plan::RunPlan;

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
/// same time (which could store a session twice). An advisory lock,
/// released when the process ends, however it ends: on a file beside a
/// SQLite store, or PostgreSQL's on a connection of the claim's own.
pub struct RunClaim {
    file: Option<(std::fs::File, std::path::PathBuf)>,
    /// The connection holding the server's lock on this run. Dropping the
    /// claim unlocks it before closing the connection: a closed socket alone
    /// releases the lock only once the server has noticed, a moment later,
    /// and a claim given up must be free at once. A process that dies
    /// releases it that way, too.
    server_lock: Option<(super::db::Conn, i64)>,
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        if let Some((mut conn, run)) = self.server_lock.take() {
            // An error here means the connection is gone, and with it the lock.
            let _ = conn.query_row(
                "SELECT pg_advisory_unlock(?1, ?2)",
                params![RUN_LOCK_CLASS, run],
            );
        }
    }
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
        self.insert(
            "INSERT INTO runs (command, settings, plan, started_at) VALUES (?1, '{}', ?2, ?3) RETURNING id",
            params![plan.kind.as_str(), plan.to_json(), now()],
        )
    }

    /// Records a run of a kind that has no plan (an import).
    pub fn start_run(
        &self,
        command: &str,
        settings: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        self.insert(
            "INSERT INTO runs (command, settings, started_at) VALUES (?1, ?2, ?3) RETURNING id",
            params![command, settings.to_string(), now()],
        )
    }

    /// Snapshots the personas (`personas[i]` is the plan's i-th) and adds
    /// one course per persona and repeat, all in one transaction.
    pub fn add_courses(
        &mut self,
        run: i64,
        plan: &RunPlan,
        personas: &[Persona],
    ) -> Result<(), StoreError> {
        self.transaction(|tx| {
            let mut rows = Vec::new();
            for persona in personas {
                let snapshot = serde_json::to_string(persona).expect("a persona serialises");
                rows.push(tx.insert(
                    "INSERT INTO personas (persona_id, snapshot) VALUES (?1, ?2) RETURNING id",
                    params![persona.id, snapshot],
                )?);
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
                )?;
            }
            Ok(())
        })
    }

    pub fn run_plan(&self, run: i64) -> Result<StoredPlan, StoreError> {
        let (plan, settings, started_at, command): (Option<String>, String, String, String) = self
            .row(
                "SELECT plan, settings, started_at, command FROM runs WHERE id = ?1",
                params![run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?
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
        self.transaction(|tx| {
            tx.execute(
                "UPDATE runs SET plan = ?1 WHERE id = ?2",
                params![plan.to_json(), run],
            )?;
            let course: Option<i64> = tx
                .query_row("SELECT id FROM courses WHERE run_id = ?1", params![run])?
                .map(|r| r.get(0))
                .transpose()?;
            let persona: Option<i64> = tx
                .query_row(
                    "SELECT persona FROM sessions WHERE run_id = ?1 ORDER BY id LIMIT 1",
                    params![run],
                )?
                .map(|r| r.get(0))
                .transpose()?;
            match (course, persona) {
                (Some(course), _) => {
                    tx.execute(
                        "UPDATE courses SET first_session = ?1, seed = ?2 WHERE id = ?3",
                        params![plan.first_session, plan.course_seed(0), course],
                    )?;
                }
                (None, Some(persona)) => {
                    let course = tx.insert(
                        "INSERT INTO courses (run_id, persona, sessions_planned, started_at, first_session, seed)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                        params![run, persona, plan.sessions, now(), plan.first_session, plan.course_seed(0)],
                    )?;
                    tx.execute(
                        "UPDATE sessions SET course_id = ?1 WHERE run_id = ?2",
                        params![course, run],
                    )?;
                }
                // Nothing was stored but the run: its course is made when it runs.
                (None, None) => {}
            }
            Ok(())
        })
    }

    /// A run's courses in grid order.
    pub fn courses(&self, run: i64) -> Result<Vec<StoredCourse>, StoreError> {
        self.courses_where("c.run_id = ?1", run)
    }

    /// One course, by its id.
    pub fn course(&self, id: i64) -> Result<StoredCourse, StoreError> {
        self.courses_where("c.id = ?1", id)?
            .pop()
            .ok_or_else(|| StoreError::NoSuchCourse {
                path: self.path.clone(),
                id,
            })
    }

    fn courses_where(&self, condition: &str, value: i64) -> Result<Vec<StoredCourse>, StoreError> {
        let rows = self.rows(
            &format!(
                "SELECT c.id, c.unit_index, c.persona, p.snapshot, c.repeat_index, c.sessions_planned,
                    c.first_session, c.seed, c.finished_at IS NOT NULL, c.error
             FROM courses c JOIN personas p ON p.id = c.persona
             WHERE {condition} ORDER BY c.unit_index, c.id"
            ),
            params![value],
            |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<u32>(1)?,
                    r.get::<i64>(2)?,
                    r.get::<String>(3)?,
                    r.get::<u32>(4)?,
                    r.get::<u32>(5)?,
                    r.get::<u32>(6)?,
                    r.get::<u32>(7)?,
                    r.get::<bool>(8)?,
                    r.get::<Option<String>>(9)?,
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

    /// Marks a course finished and gives up its lease; the last course of
    /// a queued batch to finish marks the batch finished, in the same
    /// transaction (a worker killed in between would leave it unfinished
    /// for good: no one else would look at it again).
    pub fn finish_course(&self, fence: Option<Lease>, course: i64) -> Result<(), StoreError> {
        let lock_run = match self.postgres.is_some() {
            // Two workers finishing a batch's last two courses at once each
            // see the other's unfinished: the run's row takes them in turn,
            // and the second's check (a statement of its own, so a fresh
            // snapshot) sees the first's.
            true => " FOR UPDATE OF r",
            false => "",
        };
        self.fenced(fence, |tx| {
            let now = now();
            tx.execute(
                "UPDATE courses SET finished_at = ?1, error = NULL, lease_owner = NULL, lease_until = NULL WHERE id = ?2",
                params![now, course],
            )?;
            let run: i64 = tx
                .query_row(
                    &format!(
                        "SELECT r.id FROM runs r JOIN courses c ON c.run_id = r.id WHERE c.id = ?1{lock_run}"
                    ),
                    params![course],
                )?
                .map(|r| r.get(0))
                .transpose()?
                .expect("a course has a run");
            tx.execute(
                "UPDATE runs SET finished_at = ?1 WHERE id = ?2 AND queued = 1 AND finished_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM courses c WHERE c.run_id = ?2 AND c.finished_at IS NULL)",
                params![now, run],
            )
        })?;
        Ok(())
    }

    /// Records why a course failed (None clears it as it runs again).
    pub fn set_course_error(
        &self,
        fence: Option<Lease>,
        course: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.fenced(fence, |tx| {
            tx.execute(
                "UPDATE courses SET error = ?1 WHERE id = ?2",
                params![error, course],
            )
        })?;
        Ok(())
    }

    pub fn finish_run(&self, run: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE runs SET finished_at = ?1 WHERE id = ?2",
            params![now(), run],
        )?;
        Ok(())
    }

    /// Claims a run for this process until the claim is dropped, or says
    /// that another process has it.
    pub fn claim_run(&self, run: i64) -> Result<RunClaim, StoreError> {
        if self.path == std::path::Path::new(":memory:") {
            return Ok(RunClaim {
                file: None,
                server_lock: None,
            });
        }
        if let Some(target) = &self.postgres {
            return self.claim_run_on_server(target, run);
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
                server_lock: None,
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

    /// PostgreSQL's session-level advisory lock on the run, held by a
    /// connection of the claim's own: the server releases it when that
    /// connection closes, also when the process is killed.
    fn claim_run_on_server(
        &self,
        target: &super::postgres::Target,
        run: i64,
    ) -> Result<RunClaim, StoreError> {
        let mut conn = super::db::Conn::postgres(target.connect()?);
        let locked: bool = conn
            .query_row(
                "SELECT pg_try_advisory_lock(?1, ?2)",
                params![RUN_LOCK_CLASS, run],
            )
            .and_then(|r| r.expect("a SELECT of a function has a row").get::<bool>(0))
            .map_err(|e| self.sql(e))?;
        if !locked {
            return Err(StoreError::Busy {
                path: self.path.clone(),
                run,
            });
        }
        Ok(RunClaim {
            file: None,
            server_lock: Some((conn, run)),
        })
    }

    /// Runs that never finished, oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<i64>, StoreError> {
        self.rows(
            "SELECT id FROM runs WHERE finished_at IS NULL AND command IN ('run', 'course', 'batch') ORDER BY id",
            params![],
            |r| r.get(0),
        )
    }
}

/// The first key of PostgreSQL's two-key advisory locks that claim runs:
/// cbtsim's own, so a run id never collides with another program's lock.
const RUN_LOCK_CLASS: i64 = 0x6362_7473;

#[cfg(test)]
mod lock_tests {
    #[test]
    fn the_lock_class_fits_postgres_int4_key() {
        assert!(i32::try_from(super::RUN_LOCK_CLASS).is_ok());
    }
}
