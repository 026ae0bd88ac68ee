//! The BPE vocabularies, loaded on first use without holding up the
//! executor.
//!
//! Loading a vocabulary takes ~150 ms of CPU and tens of MiB, once per
//! process. The proxy loads `o200k_base` at start-up when it knows it will
//! count (budgets, tpm limits); otherwise the first count loads it — often
//! from a tokio worker (a cut stream billed from its text, say). There the
//! load runs under [`tokio::task::block_in_place`], so the worker's other
//! tasks move to another thread instead of waiting ~150 ms behind it.

use std::sync::atomic::{AtomicBool, Ordering};
use tiktoken_rs::CoreBPE;

static O200K_LOADED: AtomicBool = AtomicBool::new(false);
static CL100K_LOADED: AtomicBool = AtomicBool::new(false);

/// `o200k_base` (current OpenAI models; the estimate for every other provider).
pub(super) fn o200k() -> &'static CoreBPE {
    first_load(&O200K_LOADED, tiktoken_rs::o200k_base_singleton)
}

/// `cl100k_base` (GPT-4, GPT-3.5).
pub(super) fn cl100k() -> &'static CoreBPE {
    first_load(&CL100K_LOADED, tiktoken_rs::cl100k_base_singleton)
}

/// Runs `get`; until it has returned once, off the executor when called on a
/// worker of a multi-threaded tokio runtime. (`block_in_place` would panic on
/// a current-thread runtime, where there is no other thread to move to.)
fn first_load<T>(loaded: &AtomicBool, get: impl FnOnce() -> T) -> T {
    if loaded.load(Ordering::Acquire) {
        return get();
    }
    let on_worker_pool = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let value = if on_worker_pool {
        tokio::task::block_in_place(get)
    } else {
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
                first_load(&flag, move || {
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
        assert_eq!(rt.block_on(async { first_load(&loaded, || 8) }), 8);
    }

    /// A first load from every kind of thread a count may run on: no
    /// runtime, a current-thread runtime (no `block_in_place` there), a
    /// multi-threaded runtime's worker, its `block_on` thread and its
    /// blocking pool.
    #[test]
    fn first_loads_work_on_any_kind_of_thread() {
        let fresh = || Arc::new(AtomicBool::new(false));
        assert_eq!(first_load(&fresh(), || 1), 1);
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let flag = fresh();
        assert_eq!(current.block_on(async { first_load(&flag, || 2) }), 2);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let flag = fresh();
        let on_worker = multi
            .block_on(async move { tokio::spawn(async move { first_load(&flag, || 3) }).await });
        assert_eq!(on_worker.unwrap(), 3);
        let flag = fresh();
        assert_eq!(multi.block_on(async { first_load(&flag, || 4) }), 4);
        let flag = fresh();
        let on_blocking = multi.block_on(async move {
            tokio::task::spawn_blocking(move || first_load(&flag, || 5)).await
        });
        assert_eq!(on_blocking.unwrap(), 5);
        // And a real count.
        let n = multi.block_on(async {
            tokio::spawn(async { crate::tokens::count_text("gpt-4o", "Hello there") }).await
        });
        assert_eq!(n.unwrap(), 2);
    }
}
