//! Several OpenAI-compatible endpoints serving one model, used as one
//! (the spec `http://a/v1#m,http://b/v1#m`): each request goes to the
//! endpoint with the fewest requests outstanding, each endpoint keeps its
//! own concurrency cap (its own `HttpModel`), and an endpoint whose
//! request fails in a way that may pass (unreachable, timed out, rate
//! limited, a server error) is skipped for a while, the request going to
//! the next one.

use super::{ChatModel, Completion, Conversation, ModelError, Request};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a failed endpoint is left alone by default.
pub const SKIP_FAILED_FOR: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct PoolModel {
    inner: Arc<Pool>,
}

struct Pool {
    endpoints: Vec<Endpoint>,
    skip_for: Duration,
    /// Outstanding requests and skip times, together: a pick reads both.
    state: Mutex<Vec<EndpointState>>,
}

struct Endpoint {
    model: Arc<dyn ChatModel>,
}

#[derive(Default, Clone, Copy)]
struct EndpointState {
    outstanding: u32,
    skipped_until: Option<Instant>,
}

impl PoolModel {
    /// A pool of `endpoints` (at least one).
    pub fn new(endpoints: Vec<Arc<dyn ChatModel>>, skip_for: Duration) -> PoolModel {
        assert!(!endpoints.is_empty(), "a pool has an endpoint");
        let state = vec![EndpointState::default(); endpoints.len()];
        PoolModel {
            inner: Arc::new(Pool {
                endpoints: endpoints
                    .into_iter()
                    .map(|model| Endpoint { model })
                    .collect(),
                skip_for,
                state: Mutex::new(state),
            }),
        }
    }
}

impl Pool {
    /// The endpoint for the next request, not one of `tried`: among those
    /// not skipped, the one with the fewest outstanding requests (the first
    /// on a tie); when all are skipped, the one whose skip ends first.
    /// Counts the request as outstanding there.
    fn pick(&self, tried: &[usize], now: Instant) -> Option<usize> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let candidates = (0..state.len()).filter(|i| !tried.contains(i));
        let chosen = candidates
            .clone()
            .filter(|&i| state[i].skipped_until.is_none_or(|t| t <= now))
            .min_by_key(|&i| state[i].outstanding)
            .or_else(|| candidates.min_by_key(|&i| state[i].skipped_until))?;
        state[chosen].outstanding += 1;
        Some(chosen)
    }

    fn done(&self, endpoint: usize, failed: bool, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let entry = &mut state[endpoint];
        entry.outstanding -= 1;
        entry.skipped_until = failed.then_some(now + self.skip_for);
    }
}

impl ChatModel for PoolModel {
    fn describe(&self) -> String {
        let specs: Vec<String> = self
            .inner
            .endpoints
            .iter()
            .map(|e| e.model.describe())
            .collect();
        specs.join(",")
    }

    fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
        let conversations = self
            .inner
            .endpoints
            .iter()
            .map(|e| e.model.conversation())
            .collect::<Result<_, _>>()?;
        Ok(Box::new(PoolConversation {
            pool: self.inner.clone(),
            conversations,
        }))
    }

    fn chat(&self) -> bool {
        self.inner.endpoints[0].model.chat()
    }

    /// Usable when one endpoint is: the others are skipped while down.
    fn check(&self) -> Result<(), ModelError> {
        let mut failures = Vec::new();
        for endpoint in &self.inner.endpoints {
            match endpoint.model.check() {
                Ok(()) => return Ok(()),
                Err(e) => failures.push((endpoint.model.describe(), e)),
            }
        }
        // Every endpoint failed: the first one's error, naming them all.
        let mut failures = failures.into_iter();
        let (name, first) = failures.next().expect("a pool has an endpoint");
        let others: Vec<String> = failures.map(|(n, e)| format!("{n}: {e}")).collect();
        Err(named(first, &name, &others))
    }
}

/// `error`, from the endpoint `name`, with what the pool's other
/// endpoints said before it (`others`, each already named).
fn named(error: ModelError, name: &str, others: &[String]) -> ModelError {
    if others.is_empty() {
        error.noted(&format!("at {name}"))
    } else {
        error.noted(&format!(
            "at {name}; the pool's other endpoints failed too: {}",
            others.join("; ")
        ))
    }
}

/// A request outstanding at an endpoint; given up when dropped.
struct Held<'a> {
    pool: &'a Pool,
    endpoint: usize,
    failed: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.pool.done(self.endpoint, self.failed, Instant::now());
    }
}

struct PoolConversation {
    pool: Arc<Pool>,
    /// One per endpoint.
    conversations: Vec<Box<dyn Conversation>>,
}

impl Conversation for PoolConversation {
    fn stream(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let mut tried = Vec::new();
        // Each endpoint that failed before, named: a request that fails
        // everywhere says where, not only what the last endpoint said.
        let mut failures: Vec<String> = Vec::new();
        loop {
            let endpoint = self
                .pool
                .pick(&tried, Instant::now())
                .expect("the loop ends before every endpoint is tried");
            // Counted as failed until it returns: an endpoint whose stream
            // panics is given up (and skipped), not left outstanding.
            let mut held = Held {
                pool: &self.pool,
                endpoint,
                failed: true,
            };
            let mut streamed = false;
            let result = self.conversations[endpoint].stream(request, &mut |delta| {
                streamed = true;
                on_delta(delta)
            });
            let failed = result.as_ref().is_err_and(ModelError::is_retryable);
            held.failed = failed;
            drop(held);
            tried.push(endpoint);
            // Named only on failure: a request that succeeds pays nothing.
            let name = || self.pool.endpoints[endpoint].model.describe();
            match result {
                // Once text has been shown, another endpoint's reply would
                // follow it: the error is the caller's to handle.
                Err(e) if failed && !streamed && tried.len() < self.conversations.len() => {
                    failures.push(format!("{}: {e}", name()));
                }
                Err(e) => return Err(named(e, &name(), &failures)),
                done => return done,
            }
        }
    }

    fn forget(&mut self) {
        for conversation in &mut self.conversations {
            conversation.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::scripted::ScriptedModel;

    fn pool(n: usize) -> PoolModel {
        let endpoints = (0..n)
            .map(|_| Arc::new(ScriptedModel::new(Vec::<String>::new())) as Arc<dyn ChatModel>)
            .collect();
        PoolModel::new(endpoints, Duration::from_secs(30))
    }

    #[test]
    fn requests_go_to_the_endpoint_with_the_fewest_outstanding() {
        let pool = pool(3);
        let now = Instant::now();
        let picks: Vec<usize> = (0..4).map(|_| pool.inner.pick(&[], now).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0], "spread out, the first on a tie");
        pool.inner.done(1, false, now);
        assert_eq!(pool.inner.pick(&[], now), Some(1), "1 has the fewest now");
        assert_eq!(pool.inner.pick(&[1, 2], now), Some(0), "never one tried");
    }

    #[test]
    fn a_failed_endpoint_is_skipped_for_a_while() {
        let pool = pool(2);
        let now = Instant::now();
        assert_eq!(pool.inner.pick(&[], now), Some(0));
        pool.inner.done(0, true, now);
        // 0 is idle but skipped: 1 gets every request, however busy.
        for _ in 0..3 {
            assert_eq!(pool.inner.pick(&[], now), Some(1));
        }
        // With only skipped endpoints left, the request still goes out.
        assert_eq!(pool.inner.pick(&[1], now), Some(0));
        let later = now + Duration::from_secs(31);
        pool.inner.done(0, true, now);
        assert_eq!(pool.inner.pick(&[], later), Some(0), "the skip is over");
    }

    /// An endpoint whose stream panics.
    struct Panics;
    struct PanicsConversation;
    impl ChatModel for Panics {
        fn describe(&self) -> String {
            "panics".into()
        }
        fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
            Ok(Box::new(PanicsConversation))
        }
    }
    impl Conversation for PanicsConversation {
        fn stream(
            &mut self,
            _request: &Request,
            _on_delta: &mut dyn FnMut(&str),
        ) -> Result<Completion, ModelError> {
            panic!("a bug in an endpoint")
        }
    }

    /// An endpoint whose every request fails with `error`.
    struct Fails(&'static str, ModelError);
    impl ChatModel for Fails {
        fn describe(&self) -> String {
            self.0.into()
        }
        fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
            Ok(Box::new(FailsConversation(self.1.clone())))
        }
    }
    struct FailsConversation(ModelError);
    impl Conversation for FailsConversation {
        fn stream(
            &mut self,
            _request: &Request,
            _on_delta: &mut dyn FnMut(&str),
        ) -> Result<Completion, ModelError> {
            Err(self.0.clone())
        }
    }

    /// The error of one request to a pool of `endpoints`, all failing.
    fn failed_everywhere(endpoints: Vec<Arc<dyn ChatModel>>) -> ModelError {
        PoolModel::new(endpoints, Duration::from_secs(30))
            .conversation()
            .unwrap()
            .stream(&Request::text("Hello"), &mut |_| {})
            .unwrap_err()
    }

    #[test]
    fn a_request_that_fails_everywhere_names_every_endpoint_and_what_it_said() {
        let limited = ModelError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            message: "slow down".into(),
        };
        let error = failed_everywhere(vec![
            Arc::new(Fails(
                "http://a/v1#m",
                ModelError::Unreachable("connection refused".into()),
            )),
            Arc::new(Fails("http://b/v1#m", limited)),
        ]);
        // The last endpoint's error, kind and delay kept (the caller's
        // retry reads them), with the other's failure named beside it.
        assert!(error.is_retryable());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
        let message = error.to_string();
        for part in [
            "slow down",
            "at http://b/v1#m",
            "http://a/v1#m: cannot reach the model server: connection refused",
        ] {
            assert!(message.contains(part), "{message}");
        }

        // Checked before a run: the same, the first endpoint's error.
        struct Down(&'static str);
        impl ChatModel for Down {
            fn describe(&self) -> String {
                self.0.into()
            }
            fn conversation(&self) -> Result<Box<dyn Conversation>, ModelError> {
                unreachable!("checked only")
            }
            fn check(&self) -> Result<(), ModelError> {
                Err(ModelError::Unreachable(format!("{} refused", self.0)))
            }
        }
        let down = PoolModel::new(
            vec![Arc::new(Down("a")), Arc::new(Down("b"))],
            Duration::from_secs(30),
        );
        let error = down.check().unwrap_err();
        assert!(matches!(error, ModelError::Unreachable(_)));
        assert_eq!(
            error.to_string(),
            "cannot reach the model server: a refused (at a; the pool's other endpoints \
             failed too: b: cannot reach the model server: b refused)"
        );

        // A refusal is not tried elsewhere, and says where it came from.
        let refused = ModelError::Refused {
            status: 400,
            message: "bad request".into(),
        };
        let error = failed_everywhere(vec![Arc::new(Fails("http://c/v1#m", refused))]);
        assert!(matches!(error, ModelError::Refused { status: 400, .. }));
        assert!(
            error.to_string().contains("bad request (at http://c/v1#m)"),
            "{error}"
        );
    }

    #[test]
    fn an_endpoint_that_panics_is_given_up_not_left_outstanding() {
        let scripted = Arc::new(ScriptedModel::new(Vec::<String>::new())) as Arc<dyn ChatModel>;
        let pool = PoolModel::new(vec![Arc::new(Panics), scripted], Duration::from_secs(30));
        let mut conversation = pool.conversation().unwrap();
        let request = Request::text("Hello");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conversation.stream(&request, &mut |_| {})
        }));
        assert!(panicked.is_err());
        let state = pool.inner.state.lock().unwrap()[0];
        assert_eq!(state.outstanding, 0);
        assert!(state.skipped_until.is_some(), "skipped for a while");
        // The next request goes to the other endpoint.
        assert!(conversation.stream(&request, &mut |_| {}).is_ok());
    }
}
