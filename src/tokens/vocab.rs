//! The BPE vocabularies, loaded on first use without holding up the
//! executor.
//!
//! Loading a vocabulary takes ~150 ms of CPU and tens of MiB, once per
//! process. The proxy loads `o200k_base` at start-up when it knows it will
//! count (budgets, tpm limits); otherwise the first count loads it — often
//! from a tokio worker (a cut stream billed from its text, say). There the
//! load runs under [`tokio::task::block_in_place`], so the worker's other
//! tasks move to another thread instead of waiting ~150 ms behind it.
//!
//! Every caller that arrives while the load runs must wait for it too. Each
//! `block_in_place` hands its worker to a new thread, so a burst of waiters
//! (cut streams right after start) once spawned a thread per waiter: 173
//! threads and +45 MiB after 200 streams. At most [`MAX_HANDOFFS`] callers
//! wait that way; the others block where they are, which holds up their
//! worker only until the one load ends.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tiktoken_rs::CoreBPE;

static O200K_LOADED: AtomicBool = AtomicBool::new(false);
static CL100K_LOADED: AtomicBool = AtomicBool::new(false);
/// Callers waiting for a first load under `block_in_place` right now.
static HANDOFFS: AtomicUsize = AtomicUsize::new(0);

/// The most callers that wait for a first load on a thread of their own.
const MAX_HANDOFFS: usize = 4;

/// `o200k_base` (current OpenAI models; the estimate for every other provider).
pub(super) fn o200k() -> &'static CoreBPE {
    first_load(&O200K_LOADED, &HANDOFFS, tiktoken_rs::o200k_base_singleton)
}

/// `cl100k_base` (GPT-4, GPT-3.5).
pub(super) fn cl100k() -> &'static CoreBPE {
    first_load(
        &CL100K_LOADED,
        &HANDOFFS,
        tiktoken_rs::cl100k_base_singleton,
    )
}

/// Gives a hand-off slot back, also if `get` panics.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `get`; until it has returned once, off the executor when called on a
/// worker of a multi-threaded tokio runtime and fewer than [`MAX_HANDOFFS`]
/// callers already wait that way. (`block_in_place` would panic on a
/// current-thread runtime, where there is no other thread to move to.)
fn first_load<T>(loaded: &AtomicBool, handoffs: &AtomicUsize, get: impl FnOnce() -> T) -> T {
    if loaded.load(Ordering::Acquire) {
        return get();
    }
    let on_worker_pool = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let value = if on_worker_pool && handoffs.fetch_add(1, Ordering::AcqRel) < MAX_HANDOFFS {
        let _slot = Slot(handoffs);
        tokio::task::block_in_place(get)
    } else {
        if on_worker_pool {
            // Over the bound: the slot taken above goes back at once.
            drop(Slot(handoffs));
        }
        get()
    };
    loaded.store(true, Ordering::Release);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A load that can only finish if another task runs meanwhile, on a
    /// runtime with a single worker: it finishes only if the worker was
    /// handed to other tasks while the load blocked.
    #[test]
    fn a_first_load_does_not_hold_up_the_worker() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let loaded = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let got = rt.block_on(async {
            let flag = loaded.clone();
            let loader = tokio::spawn(async move {
                first_load(&flag, &AtomicUsize::new(0), move || {
                    rx.recv_timeout(Duration::from_secs(5)).unwrap_or(0)
                })
            });
            let other = tokio::spawn(async move { tx.send(7).unwrap() });
            let got = loader.await.unwrap();
            other.await.unwrap();
            got
        });
        assert_eq!(
            got, 7,
            "the other task could not run while the load blocked"
        );
        assert!(loaded.load(Ordering::Acquire));
        // Once loaded, later calls run in place.
        assert_eq!(
            rt.block_on(async { first_load(&loaded, &AtomicUsize::new(0), || 8) }),
            8
        );
    }

    /// Many callers arriving during a first load: at most `MAX_HANDOFFS`
    /// of them get a thread of their own. Each waits until all 20 have
    /// arrived or a second has passed: without the bound all 20 arrive at
    /// once (every `block_in_place` frees the worker for the next), with it
    /// the sixth blocks the only worker and the wait ends by time.
    #[test]
    fn a_burst_of_first_loads_adds_a_bounded_number_of_threads() {
        use std::sync::{Condvar, Mutex};
        const CALLERS: usize = 20;
        let started = Arc::new(AtomicUsize::new(0));
        let counted = started.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
        let loaded = Arc::new(AtomicBool::new(false));
        let handoffs = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
        let most_waiting = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(AtomicBool::new(false));
        let workers_then = started.load(Ordering::SeqCst);
        rt.block_on(async {
            let tasks: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let (loaded, handoffs) = (loaded.clone(), handoffs.clone());
                    let (arrived, most) = (arrived.clone(), most_waiting.clone());
                    let released = released.clone();
                    tokio::spawn(async move {
                        first_load(&loaded, &handoffs, move || {
                            if released.load(Ordering::SeqCst) {
                                return;
                            }
                            let (lock, cv) = &*arrived;
                            let mut n = lock.lock().unwrap();
                            *n += 1;
                            most.fetch_max(*n, Ordering::SeqCst);
                            cv.notify_all();
                            let _ = cv
                                .wait_timeout_while(n, Duration::from_secs(1), |n| *n < CALLERS)
                                .unwrap();
                            released.store(true, Ordering::SeqCst);
                        })
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        let extra_threads = started.load(Ordering::SeqCst) - workers_then;
        // One more than the hand-offs: the runtime starts one thread of its
        // own here even when no caller may hand off (measured with a bound
        // of 0). Without the bound: 21.
        assert!(
            extra_threads <= MAX_HANDOFFS + 1,
            "{extra_threads} threads started for waiting callers"
        );
        assert!(most_waiting.load(Ordering::SeqCst) <= MAX_HANDOFFS + 1);
        assert_eq!(handoffs.load(Ordering::SeqCst), 0, "every slot given back");
        assert!(loaded.load(Ordering::Acquire));
    }

    /// A first load from every kind of thread a count may run on: no
    /// runtime, a current-thread runtime (no `block_in_place` there), a
    /// multi-threaded runtime's worker, its `block_on` thread and its
    /// blocking pool.
    #[test]
    fn first_loads_work_on_any_kind_of_thread() {
        let fresh = || Arc::new(AtomicBool::new(false));
        assert_eq!(first_load(&fresh(), &AtomicUsize::new(0), || 1), 1);
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let flag = fresh();
        assert_eq!(
            current.block_on(async { first_load(&flag, &AtomicUsize::new(0), || 2) }),
            2
        );
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let flag = fresh();
        let on_worker = multi.block_on(async move {
            tokio::spawn(async move { first_load(&flag, &AtomicUsize::new(0), || 3) }).await
        });
        assert_eq!(on_worker.unwrap(), 3);
        let flag = fresh();
        assert_eq!(
            multi.block_on(async { first_load(&flag, &AtomicUsize::new(0), || 4) }),
            4
        );
        let flag = fresh();
        let on_blocking = multi.block_on(async move {
            tokio::task::spawn_blocking(move || first_load(&flag, &AtomicUsize::new(0), || 5)).await
        });
        assert_eq!(on_blocking.unwrap(), 5);
        // And a real count.
        let n = multi.block_on(async {
            tokio::spawn(async { crate::tokens::count_text("gpt-4o", "Hello there") }).await
        });
        assert_eq!(n.unwrap(), 2);
    }
}
