//! Workers: processes, on any machines, that drain the queued batches of
//! one store together (`cbtsim worker`). Each leases a course at a time per
//! slot (`store::queue` has the leases and the fence on writes), runs it
//! with the runner, and keeps its leases renewed meanwhile.

use crate::model::spec::Models;
use crate::plan::RunPlan;
use crate::runner::{
    CourseOutcome, CourseStatus, RoleModels, RunError, RunObserver, Runner, load_plan, lock,
};
use crate::store::{Lease, Store};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A lease lasts this long unless renewed (`--lease-seconds`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The leases one process holds, and who it is to the store.
pub struct Leasing {
    /// This worker's name in the store: its host and process id.
    pub owner: String,
    pub duration: Duration,
    held: Mutex<Vec<Lease>>,
}

impl Leasing {
    pub fn new(owner: String, duration: Duration) -> Leasing {
        Leasing {
            owner,
            duration,
            held: Mutex::new(Vec::new()),
        }
    }

    /// Named by this machine's host name and this process's id.
    pub fn for_this_process(duration: Duration) -> Leasing {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Leasing::new(format!("{host}:{}", std::process::id()), duration)
    }

    pub(crate) fn hold(&self, lease: Lease) {
        let mut held = self.held();
        if !held.contains(&lease) {
            held.push(lease);
        }
    }

    pub(crate) fn release(&self, lease: Lease) {
        self.held().retain(|l| *l != lease);
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<Lease>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews every lease held, three times per lease period, until `done`.
    /// A lease found lost is let go (its course's next write fails); a
    /// renewal that fails (the store unreachable a moment) is tried again
    /// at the next round, while the lease may still be running.
    pub fn keep_renewed(&self, store: &Mutex<Store>, done: &AtomicBool) {
        let period = self.duration / 3;
        let mut last = Instant::now();
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50).min(period));
            if last.elapsed() < period {
                continue;
            }
            last = Instant::now();
            let held = self.held().clone();
            for lease in held {
                if let Ok(false) = lock(store).renew_lease(lease, self.duration) {
                    self.release(lease);
                }
            }
        }
    }
}

pub struct WorkerSettings {
    /// Courses run at once.
    pub concurrency: usize,
    /// Stop when no queued batch has a course left to do; otherwise wait
    /// for more work until interrupted.
    pub until_idle: bool,
    /// Runs every agent role of the plans it runs on this model spec
    /// instead of the plan's (the crisis detector's model layer stays).
    pub model: Option<String>,
    /// How long to wait before asking the queue again when it is empty.
    pub poll: Duration,
    /// Works only this queued batch's courses, leaving any other alone
    /// (`bench batch --workers` times its own batch, not the user's).
    pub only_run: Option<i64>,
}

/// What a worker did, course by course, in the order they ended.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerOutcome {
    pub worker: String,
    pub courses: Vec<WorkedCourse>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkedCourse {
    pub run: i64,
    #[serde(flatten)]
    pub outcome: CourseOutcome,
}

impl WorkerOutcome {
    pub fn count(&self, wanted: fn(&CourseStatus) -> bool) -> usize {
        self.courses
            .iter()
            .filter(|c| wanted(&c.outcome.status))
            .count()
    }
}

/// What a worker shares between its slots.
pub struct Worker<'a> {
    pub store: &'a Mutex<Store>,
    pub models: &'a Mutex<Models>,
    pub leasing: &'a Leasing,
    pub settings: &'a WorkerSettings,
    /// Set by Ctrl-C: no course is leased after it, and the courses running
    /// stop after the turn in progress (their leases are given up).
    pub interrupted: &'a AtomicBool,
    pub observer: &'a dyn RunObserver,
    pub clock: &'a (dyn Fn() -> Duration + Sync),
}

impl Worker<'_> {
    /// Leases and runs queued courses, `concurrency` at once, until
    /// interrupted (or, with `until_idle`, until none is left). An error of
    /// the store itself stops the worker; a course that fails is recorded
    /// with its error and the worker goes on.
    pub fn work(&self) -> Result<WorkerOutcome, RunError> {
        let plans: Mutex<HashMap<i64, Arc<(RunPlan, RoleModels)>>> = Mutex::new(HashMap::new());
        let worked = Mutex::new(Vec::new());
        let slots_done = AtomicBool::new(false);
        let slots = self.settings.concurrency.max(1);
        let errors = std::thread::scope(|scope| {
            scope.spawn(|| self.leasing.keep_renewed(self.store, &slots_done));
            let threads: Vec<_> = (0..slots)
                .map(|_| scope.spawn(|| self.slot(&plans, &worked)))
                .collect();
            let errors: Vec<RunError> = threads
                .into_iter()
                .filter_map(|t| t.join().expect("a worker slot does not panic").err())
                .collect();
            slots_done.store(true, Ordering::SeqCst);
            errors
        });
        if let Some(error) = errors.into_iter().next() {
            return Err(error);
        }
        Ok(WorkerOutcome {
            worker: self.leasing.owner.clone(),
            courses: worked.into_inner().unwrap_or_else(|e| e.into_inner()),
        })
    }

    fn slot(
        &self,
        plans: &Mutex<HashMap<i64, Arc<(RunPlan, RoleModels)>>>,
        worked: &Mutex<Vec<WorkedCourse>>,
    ) -> Result<(), RunError> {
        let leasing = self.leasing;
        while !self.interrupted.load(Ordering::SeqCst) {
            let only = self.settings.only_run;
            let next = lock(self.store).lease_next_of(&leasing.owner, leasing.duration, only)?;
            let Some(leased) = next else {
                if self.settings.until_idle && lock(self.store).queued_work_of(only)? == 0 {
                    return Ok(());
                }
                self.wait(self.settings.poll);
                continue;
            };
            let lease = leased.lease;
            // Renewed from now: opening a run's models can take longer
            // than a lease.
            leasing.hold(lease);
            let prepared = self.prepare(plans, leased.run).and_then(|plan| {
                let course = lock(self.store).course(lease.course)?;
                Ok((plan, course))
            });
            let (plan, course) = match prepared {
                Ok(prepared) => prepared,
                // This worker cannot open the run's models (a model file
                // missing here, a server it cannot reach): the course is
                // left to workers that can, and this one stops.
                // So does a store that failed.
                Err(e @ (RunError::Model { .. } | RunError::Store(_))) => {
                    self.give_up(lease);
                    return Err(e);
                }
                Err(e) => {
                    // The run itself cannot be run (its plan, a persona):
                    // recorded with the course, as a run would.
                    let recorded = lock(self.store).set_course_error(
                        Some(lease),
                        lease.course,
                        Some(&e.to_string()),
                    );
                    self.give_up(lease);
                    recorded?;
                    continue;
                }
            };
            let (plan, models) = (&plan.0, &plan.1);
            let runner = Runner {
                store: self.store,
                models,
                interrupted: self.interrupted,
                observer: self.observer,
                clock: self.clock,
                leasing,
            };
            let outcome = runner.course(leased.run, plan, &course, lease);
            if let CourseStatus::BackendFailure(error) = &outcome.status {
                // Recorded before the lease is given up, so that it is not
                // leased again at once, over and over: it counts as failed,
                // and `cbtsim resume` continues it.
                let error = format!("stopped by a backend failure: {error}");
                let _ = lock(self.store).set_course_error(Some(lease), lease.course, Some(&error));
            }
            self.give_up(lease);
            worked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(WorkedCourse {
                    run: leased.run,
                    outcome,
                });
        }
        Ok(())
    }

    /// A run's plan (with this worker's model, if it names one) and its
    /// models, opened once per run.
    fn prepare(
        &self,
        plans: &Mutex<HashMap<i64, Arc<(RunPlan, RoleModels)>>>,
        run: i64,
    ) -> Result<Arc<(RunPlan, RoleModels)>, RunError> {
        let mut plans = plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prepared) = plans.get(&run) {
            return Ok(prepared.clone());
        }
        let mut plan = load_plan(&mut lock(self.store), run)?;
        if let Some(model) = &self.settings.model {
            plan.models.therapist = model.clone();
            plan.models.patient = model.clone();
            plan.models.summarizer = model.clone();
        }
        let models = RoleModels::open(
            &plan,
            &mut self.models.lock().unwrap_or_else(|e| e.into_inner()),
        )?;
        let prepared = Arc::new((plan, models));
        plans.insert(run, prepared.clone());
        Ok(prepared)
    }

    /// Gives a lease up (best effort: if the store cannot be reached, the
    /// lease runs out on its own).
    fn give_up(&self, lease: Lease) {
        self.leasing.release(lease);
        let _ = lock(self.store).release_lease(lease);
    }

    /// Sleeps, waking early for Ctrl-C.
    fn wait(&self, time: Duration) {
        let until = Instant::now() + time;
        while Instant::now() < until && !self.interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
