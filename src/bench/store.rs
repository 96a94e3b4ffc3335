//! `bench store`: what the store costs a session, per turn: each turn is
//! written in a transaction of its own the moment it is spoken, fenced by
//! its course's lease (the check is in the transaction), and the lease is
//! renewed while the course runs, so a store that is slow to commit slows
//! every session. Measured on the store named (a SQLite file or a
//! PostgreSQL database), side by side with SQLite in memory, the floor.

use crate::model::spec::Config;
use crate::plan::PlanKind;
use crate::speaker::Speaker;
use crate::store::{Store, StoreError};
use crate::turn::Turn;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct StoreBench {
    /// The store measured (a URL without its password), then the floor.
    pub stores: Vec<StoreFigures>,
    pub turns: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreFigures {
    pub store: String,
    /// Writing one turn (its own transaction, fenced by the lease), mean
    /// and 95th percentile.
    pub turn_ms_mean: f64,
    pub turn_ms_p95: f64,
    /// Renewing the course's lease, mean. A worker renews three times per
    /// lease period, not per turn: a turn plus a renewal is the most a
    /// turn can cost.
    pub renew_ms_mean: f64,
    /// Reading the session back whole (`show`), once.
    pub read_ms: f64,
}

/// Writes `turns` turns of a ~400-character text (a long session turn)
/// into a new session of each store, one at a time, each followed by a
/// renewal of the lease, then reads it back. The session is left in the
/// named store, as a finished one-session batch: name a scratch store.
pub fn bench_store(store: &mut Store, turns: u32) -> Result<StoreBench, StoreError> {
    let mut floor = Store::in_memory()?;
    Ok(StoreBench {
        stores: vec![measure(store, turns)?, measure(&mut floor, turns)?],
        turns,
    })
}

fn measure(store: &mut Store, turns: u32) -> Result<StoreFigures, StoreError> {
    let plan = super::one_model_plan(
        PlanKind::Batch,
        vec!["alicia-rodriguez".into()],
        &crate::model::spec::ModelSpec::Local(None),
        &Config::default(),
    );
    let persona = crate::persona::resolve("alicia-rodriguez").expect("a library persona");
    let run = store.create_run(&plan)?;
    store.add_courses(run, &plan, std::slice::from_ref(&persona))?;
    let course = store.courses(run)?[0].clone();
    let minute = Duration::from_secs(60);
    let lease = store
        .lease_course(course.id, "bench", minute, true)?
        .expect("a forced lease is granted");
    let state = crate::course::patient_state(&course.persona, 1, &[], course.seed);
    let session = store.start_session(
        Some(lease),
        run,
        Some(course.id),
        course.persona_row,
        1,
        &state,
    )?;
    let text = "I keep going over what my manager said in the meeting, and I tell myself \
                that everyone saw me fail. "
        .repeat(4);
    let mut times = Vec::with_capacity(turns as usize);
    let mut renewals = 0.0;
    for position in 0..turns as usize {
        let speaker = if position % 2 == 0 {
            Speaker::Patient
        } else {
            Speaker::Therapist
        };
        let turn = Turn::new(speaker, text.clone());
        let started = Instant::now();
        store.add_turn(Some(lease), session, position, &turn)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        store.renew_lease(lease, minute)?;
        renewals += started.elapsed().as_secs_f64() * 1000.0;
    }
    store.finish_course(Some(lease), course.id)?;
    store.finish_run(run)?;
    let started = Instant::now();
    let read = store.transcript(session)?;
    let read_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(read.turns.len(), turns as usize, "every turn reads back");
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    times.sort_by(f64::total_cmp);
    let p95 = times
        .get((times.len() * 95 / 100).min(times.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    Ok(StoreFigures {
        store: store.path().display().to_string(),
        turn_ms_mean: mean,
        turn_ms_p95: p95,
        renew_ms_mean: renewals / f64::from(turns.max(1)),
        read_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_turn_is_written_and_measured() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("bench.db")).unwrap();
        let bench = bench_store(&mut store, 20).unwrap();
        assert_eq!(bench.stores.len(), 2);
        assert!(bench.stores[0].store.ends_with("bench.db"));
        assert_eq!(bench.stores[1].store, ":memory:");
        for figures in &bench.stores {
            assert!(figures.turn_ms_mean > 0.0 && figures.turn_ms_p95 > 0.0);
        }
        let stored = store.sessions(None).unwrap();
        assert_eq!(stored[0].transcript.turns.len(), 20);
        for figures in &bench.stores {
            assert!(figures.renew_ms_mean > 0.0);
        }
    }
}
