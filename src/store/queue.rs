//! The work queue: a batch queued with `--detach` is drained by any number
//! of `cbtsim worker` processes, on any machines, that share the store.
//!
//! The unit of work is a course (its sessions run in order). A worker
//! leases a course: the lease names the worker, lasts until a moment on the
//! database's own clock (machines' clocks disagree; the server's is one),
//! and is renewed while the worker works. A worker that dies stops renewing,
//! and once the lease has run out another worker leases the course and
//! continues it from its last stored turn.
//!
//! Every lease bumps the course's `lease_token`. Each write of a leased
//! course (a turn, a session's start and end, a summary, the course's end)
//! checks, in the same transaction, that the token is still the one it was
//! leased with, so a worker that lost its lease (paused, or cut off from
//! the database, past its lease) and wakes up writes nothing: its writes
//! fail with `LeaseLost`. On PostgreSQL the check locks the course row
//! `FOR SHARE`, which a new lease (an UPDATE of the row) waits for; on
//! SQLite every write transaction is exclusive.

use super::db::{Conn, DbError, params};
use super::{Store, StoreError};
use serde::Serialize;
use std::time::Duration;

/// A course leased by this process, with the token its writes are fenced by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub course: i64,
    pub token: i64,
}

/// A course's lease as `lease_next` hands it out: with its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leased {
    pub run: i64,
    pub lease: Lease,
}

/// Where the courses of one queued batch stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchStatus {
    pub run: i64,
    pub started_at: String,
    /// Not finished, not failed, and no live lease on them.
    pub queued: u64,
    /// Leased and the lease not run out: by which worker, how many each.
    pub running: Vec<WorkerCount>,
    pub finished: u64,
    /// Failed, with their error recorded (`cbtsim resume` tries them again).
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerCount {
    pub worker: String,
    pub courses: u64,
}

/// Milliseconds since the epoch on the database's clock (the moment of the
/// statement, not of its transaction).
fn db_now(postgres: bool) -> &'static str {
    if postgres {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    } else {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// What a fenced transaction can end with besides its result.
enum Fenced {
    Db(DbError),
    Lost,
}

impl From<DbError> for Fenced {
    fn from(e: DbError) -> Self {
        Fenced::Db(e)
    }
}

impl Store {
    /// Marks a run as queued work: workers lease its courses.
    pub fn queue_run(&self, run: i64) -> Result<(), StoreError> {
        self.execute("UPDATE runs SET queued = 1 WHERE id = ?1", params![run])?;
        Ok(())
    }

    pub fn is_queued(&self, run: i64) -> Result<bool, StoreError> {
        Ok(self
            .row("SELECT queued FROM runs WHERE id = ?1", params![run], |r| {
                r.get::<i64>(0)
            })?
            .is_some_and(|q| q != 0))
    }

    /// Leases one course of a run for `owner`. With `force` the course is
    /// leased even while another holds it (a run's own process, which holds
    /// the run's claim, taking back a course from an earlier process of
    /// the same run that was killed); without, only when its lease is free
    /// or has run out. None: another worker holds it.
    pub fn lease_course(
        &self,
        course: i64,
        owner: &str,
        duration: Duration,
        force: bool,
    ) -> Result<Option<Lease>, StoreError> {
        let now = db_now(self.postgres.is_some());
        let free = match force {
            true => String::new(),
            false => format!("AND (lease_until IS NULL OR lease_until < {now})"),
        };
        let token = self.row(
            &format!(
                "UPDATE courses SET lease_owner = ?1, lease_token = lease_token + 1, lease_until = {now} + ?2
                 WHERE id = ?3 {free} RETURNING lease_token",
            ),
            params![owner, millis(duration), course],
            |r| r.get::<i64>(0),
        )?;
        Ok(token.map(|token| Lease { course, token }))
    }

    /// Leases the next course of any queued run that needs work: not
    /// finished, not failed, its lease free or run out. Oldest run first.
    pub fn lease_next(
        &self,
        owner: &str,
        duration: Duration,
    ) -> Result<Option<Leased>, StoreError> {
        self.lease_next_of(owner, duration, None)
    }

    /// `lease_next`, among the courses of the queued run `only` when given.
    pub fn lease_next_of(
        &self,
        owner: &str,
        duration: Duration,
        only: Option<i64>,
    ) -> Result<Option<Leased>, StoreError> {
        let postgres = self.postgres.is_some();
        let of_run = of_run(only);
        let now = db_now(postgres);
        // Workers asking at once each get a different course: PostgreSQL
        // skips the rows another transaction has locked; SQLite writes one
        // transaction at a time.
        let skip_locked = match postgres {
            true => "FOR UPDATE OF c SKIP LOCKED",
            false => "",
        };
        let leased = self.transaction_exclusive(|tx| {
            let next = tx
                .query_row(
                    &format!(
                        "SELECT c.id, c.run_id FROM courses c JOIN runs r ON r.id = c.run_id
                         WHERE r.queued = 1 AND r.finished_at IS NULL
                           AND c.finished_at IS NULL AND c.error IS NULL
                           AND (c.lease_until IS NULL OR c.lease_until < {now}) {of_run}
                         ORDER BY c.run_id, c.unit_index, c.id LIMIT 1 {skip_locked}"
                    ),
                    params![],
                )?
                .map(|r| Ok::<_, DbError>((r.get::<i64>(0)?, r.get::<i64>(1)?)))
                .transpose()?;
            let Some((course, run)) = next else {
                return Ok(None);
            };
            let token = tx
                .query_row(
                    &format!(
                        "UPDATE courses SET lease_owner = ?1, lease_token = lease_token + 1, lease_until = {now} + ?2
                         WHERE id = ?3 RETURNING lease_token"
                    ),
                    params![owner, millis(duration), course],
                )?
                .expect("the course row was just selected")
                .get::<i64>(0)?;
            Ok(Some(Leased {
                run,
                lease: Lease { course, token },
            }))
        })?;
        Ok(leased)
    }

    /// Extends a lease by `duration` from now. False: the lease was lost
    /// (it ran out and another worker took the course) or given up (a
    /// renewal that raced the release must not take the course back).
    pub fn renew_lease(&self, lease: Lease, duration: Duration) -> Result<bool, StoreError> {
        let now = db_now(self.postgres.is_some());
        let renewed = self.execute(
            &format!(
                "UPDATE courses SET lease_until = {now} + ?1
                 WHERE id = ?2 AND lease_token = ?3 AND lease_until IS NOT NULL"
            ),
            params![millis(duration), lease.course, lease.token],
        )?;
        Ok(renewed == 1)
    }

    /// Whether a lease is still this process's (no one has leased the
    /// course since).
    pub fn holds(&self, lease: Lease) -> Result<bool, StoreError> {
        Ok(self
            .row(
                "SELECT lease_token FROM courses WHERE id = ?1",
                params![lease.course],
                |r| r.get::<i64>(0),
            )?
            .is_some_and(|token| token == lease.token))
    }

    /// Gives a lease up, so the course can be leased at once.
    pub fn release_lease(&self, lease: Lease) -> Result<(), StoreError> {
        self.execute(
            "UPDATE courses SET lease_owner = NULL, lease_until = NULL WHERE id = ?1 AND lease_token = ?2",
            params![lease.course, lease.token],
        )?;
        Ok(())
    }

    /// How many courses of queued runs are still to be done (queued or
    /// running, not failed): a worker with `--until-idle` stops at 0.
    pub fn queued_work(&self) -> Result<u64, StoreError> {
        self.queued_work_of(None)
    }

    /// `queued_work`, of the queued run `only` when given.
    pub fn queued_work_of(&self, only: Option<i64>) -> Result<u64, StoreError> {
        Ok(self
            .row(
                &format!(
                    "SELECT COUNT(*) FROM courses c JOIN runs r ON r.id = c.run_id
                     WHERE r.queued = 1 AND r.finished_at IS NULL AND c.finished_at IS NULL AND c.error IS NULL {}",
                    of_run(only)
                ),
                params![],
                |r| r.get::<i64>(0),
            )?
            .unwrap_or(0) as u64)
    }

    /// Each queued batch's courses by where they stand, oldest batch first.
    pub fn batch_statuses(&self) -> Result<Vec<BatchStatus>, StoreError> {
        let clock = self.db_clock()?;
        let rows = self.rows(
            "SELECT r.id, r.started_at, c.finished_at IS NOT NULL, c.error IS NOT NULL,
                    CASE WHEN c.lease_until >= ?1 THEN c.lease_owner END
             FROM runs r JOIN courses c ON c.run_id = r.id
             WHERE r.queued = 1 ORDER BY r.id, c.id",
            params![clock],
            |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<String>(1)?,
                    r.get::<bool>(2)?,
                    r.get::<bool>(3)?,
                    r.get::<Option<String>>(4)?,
                ))
            },
        )?;
        let mut statuses: Vec<BatchStatus> = Vec::new();
        for (run, started_at, finished, failed, owner) in rows {
            if statuses.last().is_none_or(|s| s.run != run) {
                statuses.push(BatchStatus {
                    run,
                    started_at,
                    queued: 0,
                    running: Vec::new(),
                    finished: 0,
                    failed: 0,
                });
            }
            let status = statuses.last_mut().expect("pushed above");
            match (finished, failed, owner) {
                (true, _, _) => status.finished += 1,
                (false, true, _) => status.failed += 1,
                (false, false, Some(worker)) => {
                    match status.running.iter_mut().find(|w| w.worker == worker) {
                        Some(count) => count.courses += 1,
                        None => status.running.push(WorkerCount { worker, courses: 1 }),
                    }
                }
                (false, false, None) => status.queued += 1,
            }
        }
        for status in &mut statuses {
            status.running.sort_by(|a, b| a.worker.cmp(&b.worker));
        }
        Ok(statuses)
    }

    /// The database's clock, in milliseconds since the epoch.
    fn db_clock(&self) -> Result<i64, StoreError> {
        let now = db_now(self.postgres.is_some());
        Ok(self
            .row(&format!("SELECT {now}"), params![], |r| r.get::<i64>(0))?
            .expect("a SELECT of a value has a row"))
    }

    /// Runs `work` in one transaction; with a lease, only while the lease
    /// is still held (checked first, in the same transaction), else nothing
    /// is written and the error is `LeaseLost`.
    pub(super) fn fenced<T>(
        &self,
        fence: Option<Lease>,
        work: impl FnOnce(&mut Conn) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let lock = match self.postgres.is_some() {
            true => " FOR SHARE",
            false => "",
        };
        let done = self.db().transaction(fence.is_some(), |tx| {
            if let Some(lease) = fence {
                let token: Option<i64> = tx
                    .query_row(
                        &format!("SELECT lease_token FROM courses WHERE id = ?1{lock}"),
                        params![lease.course],
                    )?
                    .map(|r| r.get(0))
                    .transpose()?;
                if token != Some(lease.token) {
                    return Err(Fenced::Lost);
                }
            }
            Ok(work(tx)?)
        });
        done.map_err(|e| match (e, fence) {
            (Fenced::Lost, Some(lease)) => StoreError::LeaseLost {
                path: self.path.clone(),
                course: lease.course,
            },
            (Fenced::Lost, None) => unreachable!("only a lease can be lost"),
            (Fenced::Db(e), _) => self.sql(e),
        })
    }

    fn transaction_exclusive<T>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        self.db().transaction(true, work).map_err(|e| self.sql(e))
    }
}

/// The condition that keeps to one run's courses (`c`), when one is given.
/// An id, not text: written into the statement, which then reads the same
/// on SQLite and PostgreSQL with no parameter to type.
fn of_run(only: Option<i64>) -> String {
    only.map(|run| format!("AND c.run_id = {run}"))
        .unwrap_or_default()
}
