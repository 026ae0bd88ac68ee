//! The budget ledger: reserve the worst case before a call, settle the actual
//! cost after it, exactly once.

use super::SpendHistory;
use super::clock::{Clock, SystemClock};
use super::scope::Scope;
use super::spec::{BudgetWindow, Window};
use crate::error::{Error, ErrorKind};
use crate::pricing::Usd;
use crate::provider::BoxFuture;
use crate::util::FastMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One budget a reservation is checked against: a scope's budget, or its
/// budget for one model.
#[derive(Clone, PartialEq, Eq)]
pub struct BudgetLine {
    /// Whose budget.
    pub scope: Scope,
    /// Restricted to this model group (per-model budgets).
    pub model: Option<Arc<str>>,
    /// How the line is named in errors and logs (never a key or its hash).
    pub label: Arc<str>,
    /// The hard limit (`None`: tracked for the soft limit only).
    pub max_budget: Option<Usd>,
    /// The soft limit (an alert when crossed).
    pub soft_budget: Option<Usd>,
    /// The window and its anchor (Unix seconds), if the budget resets.
    pub window: Option<(BudgetWindow, u64)>,
    /// When the budget (re)started (Unix seconds; 0: never reset). A spend
    /// reset moves it, which starts a fresh line.
    pub budget_start: u64,
}

impl BudgetLine {
    /// The storage name of the line (scope, model).
    pub fn storage_key(&self) -> String {
        use std::fmt::Write;
        let mut key = self.scope.storage_key();
        if self.budget_start != 0 {
            let _ = write!(key, "@{}", self.budget_start);
        }
        if let Some(m) = &self.model {
            key.push_str(":model:");
            key.push_str(m);
        }
        key
    }

    /// The line's identity in a [`MemoryLedger`]: what
    /// [`storage_key`](Self::storage_key) is made of, without formatting it.
    fn mem_key(&self) -> LineKey {
        LineKey {
            scope: self.scope.clone(),
            model: self.model.clone(),
            start: self.budget_start,
        }
    }

    /// The window containing `now_secs`, if the budget resets.
    pub fn window_at(&self, now_secs: u64) -> Option<Window> {
        self.window.map(|(w, anchor)| w.window_at(anchor, now_secs))
    }

    pub(crate) fn exceeded(&self, spent: Usd, reserved: Usd, amount: Usd) -> Error {
        crate::observe::metrics::budget_rejected(self.scope.kind);
        let max = self.max_budget.unwrap_or(Usd::ZERO);
        let what = match &self.model {
            Some(m) => format!("{} for model {m}", self.label),
            None => self.label.to_string(),
        };
        Error::new(
            ErrorKind::BudgetExceeded,
            format!(
                "Budget has been exceeded for {what}: spend ${:.6} + in flight ${:.6} + this request's worst case ${:.6} > max budget ${:.6}",
                spent.as_f64(),
                reserved.as_f64(),
                amount.as_f64(),
                max.as_f64()
            ),
        )
    }
}

impl fmt::Debug for BudgetLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetLine")
            .field("label", &self.label)
            .field("model", &self.model)
            .field("max_budget", &self.max_budget)
            .field("soft_budget", &self.soft_budget)
            .field("window", &self.window)
            .finish()
    }
}

/// Money held for one call until it settles. Settle it with
/// [`Ledger::settle`]; ownership makes settling twice impossible.
#[derive(Debug)]
#[must_use = "a reservation must be settled"]
pub struct Reservation {
    /// Unique id (per ledger).
    pub id: u64,
    /// The lines it holds money on.
    pub lines: Arc<[BudgetLine]>,
    /// The amount held on each line.
    pub amount: Usd,
}

/// A line's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    /// Settled spend in the current window.
    pub spent: Usd,
    /// Held by calls in flight.
    pub reserved: Usd,
    /// The current window, if the budget resets.
    pub window: Option<Window>,
}

/// A line whose soft budget a settlement crossed.
#[derive(Clone, Debug)]
pub struct SoftCrossing {
    /// The line.
    pub line: BudgetLine,
    /// Its spend after the settlement.
    pub spent: Usd,
}

/// Where budgets are kept: in memory ([`MemoryLedger`]) or shared between
/// replicas (the Redis ledger in `limits::redis`).
///
/// # Contract
///
/// - `reserve` is atomic across all lines: it holds `amount` on every line or
///   on none, and refuses (`ErrorKind::BudgetExceeded`) when for some line
///   with a hard limit `spent + reserved + amount > max_budget`.
/// - `settle` releases the reservation and adds `actual` to every line's
///   spend in its *current* window. It never blocks and never fails: work
///   that needs I/O is queued and retried in the background; [`Ledger::flush`]
///   waits for it.
pub trait Ledger: Send + Sync + 'static {
    /// Holds `amount` on every line, or refuses.
    fn reserve(
        &self,
        lines: Arc<[BudgetLine]>,
        amount: Usd,
    ) -> BoxFuture<Result<Reservation, Error>>;

    /// Settles a reservation to its actual cost.
    fn settle(&self, reservation: Reservation, actual: Usd);

    /// The state of one line.
    fn balance(&self, line: &BudgetLine) -> BoxFuture<Result<Balance, Error>>;

    /// Waits until every settlement handed over so far is recorded.
    fn flush(&self) -> BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }
}

/// See [`BudgetLine::mem_key`].
#[derive(Clone, PartialEq, Eq, Hash)]
struct LineKey {
    scope: Scope,
    model: Option<Arc<str>>,
    start: u64,
}

#[derive(Clone, Debug)]
struct LineState {
    window: Option<u64>,
    spent: i128,
    reserved: i128,
    /// The line's remaining-budget gauge, with the label it was made for
    /// (registered once, not per settlement; made again if the label
    /// changes, say a key's new alias).
    gauge: Option<(Arc<str>, metrics::Gauge)>,
}

impl LineState {
    /// Moves the line into `window` (a new window starts at zero).
    fn roll(&mut self, window: Option<Window>) {
        if let Some(w) = window
            && self.window.is_some_and(|cur| w.index > cur)
        {
            self.window = Some(w.index);
            self.spent = 0;
        }
    }
}

pub(crate) type SoftHook = Arc<dyn Fn(&SoftCrossing) + Send + Sync>;

/// An in-process ledger: one replica's budgets, exact to the picodollar.
///
/// A line's spend is read from the [`SpendHistory`] the first time the ledger
/// meets it (or meets its current window), then kept in memory.
///
/// ```
/// use std::sync::Arc;
/// use tollgate::limits::{BudgetLine, Ledger, MemoryLedger, Scope, ScopeKind};
/// use tollgate::pricing::Usd;
///
/// # tokio_test::block_on(async {
/// let ledger = MemoryLedger::new();
/// let line = BudgetLine {
///     scope: Scope::new(ScopeKind::Key, "abc"),
///     model: None,
///     label: "key sk-...abcd".into(),
///     max_budget: Some(Usd::from_f64(1.0).unwrap()),
///     soft_budget: None,
///     window: None,
///     budget_start: 0,
/// };
/// let lines: Arc<[BudgetLine]> = Arc::from(vec![line.clone()]);
/// let r = ledger.reserve(lines.clone(), Usd::from_f64(0.75).unwrap()).await.unwrap();
/// // 0.75 is held: another 0.75 does not fit.
/// assert!(ledger.reserve(lines.clone(), Usd::from_f64(0.75).unwrap()).await.is_err());
/// ledger.settle(r, Usd::from_f64(0.25).unwrap());
/// let b = ledger.balance(&line).await.unwrap();
/// assert_eq!((b.spent.as_f64(), b.reserved), (0.25, Usd::ZERO));
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryLedger {
    inner: Arc<MemInner>,
}

struct MemInner {
    lines: Mutex<FastMap<LineKey, LineState>>,
    history: Arc<dyn SpendHistory>,
    clock: Arc<dyn Clock>,
    next_id: AtomicU64,
    on_soft: Option<SoftHook>,
}

impl Default for MemoryLedger {
    fn default() -> Self {
        MemoryLedger::new()
    }
}

impl fmt::Debug for MemoryLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLedger").finish_non_exhaustive()
    }
}

impl MemoryLedger {
    /// An empty ledger on the system clock, with no history.
    pub fn new() -> Self {
        MemoryLedger::builder().build()
    }

    /// A ledger with options.
    pub fn builder() -> LedgerBuilder {
        LedgerBuilder::default()
    }

    /// The positions of the lines this ledger has not met yet.
    fn missing(&self, keys: &[LineKey]) -> Vec<usize> {
        let map = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        (0..keys.len())
            .filter(|&i| !map.contains_key(&keys[i]))
            .collect()
    }
}

/// Options of a [`MemoryLedger`] (and of the Redis ledger).
#[derive(Default)]
pub struct LedgerBuilder {
    history: Option<Arc<dyn SpendHistory>>,
    clock: Option<Arc<dyn Clock>>,
    on_soft: Option<SoftHook>,
}

impl LedgerBuilder {
    /// Where spend before this process started is read from.
    pub fn history(mut self, history: Arc<dyn SpendHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// The clock for budget windows.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Called when a settlement takes a line past its soft budget.
    pub fn on_soft_budget(mut self, f: impl Fn(&SoftCrossing) + Send + Sync + 'static) -> Self {
        self.on_soft = Some(Arc::new(f));
        self
    }

    /// An in-memory ledger.
    pub fn build(self) -> MemoryLedger {
        MemoryLedger {
            inner: Arc::new(MemInner {
                lines: Mutex::new(FastMap::default()),
                history: self.history.unwrap_or_else(|| Arc::new(super::NoHistory)),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                next_id: AtomicU64::new(1),
                on_soft: self.on_soft,
            }),
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn parts(self) -> (Arc<dyn SpendHistory>, Arc<dyn Clock>, Option<SoftHook>) {
        (
            self.history.unwrap_or_else(|| Arc::new(super::NoHistory)),
            self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            self.on_soft,
        )
    }
}

/// Reads a line's spend in `window` from history: the first time a line is
/// met. Errors are reported (a budget cannot be enforced without it).
pub(crate) async fn load_spent(
    history: &dyn SpendHistory,
    line: &BudgetLine,
    window: Option<Window>,
) -> Result<Usd, Error> {
    history
        .spent(&line.scope, line.model.as_deref(), window.map(|w| w.start))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::ServiceUnavailable,
                format!(
                    "cannot read the spend of {} to check its budget: {}",
                    line.label,
                    e.message()
                ),
            )
        })
}

impl Ledger for MemoryLedger {
    fn reserve(
        &self,
        lines: Arc<[BudgetLine]>,
        amount: Usd,
    ) -> BoxFuture<Result<Reservation, Error>> {
        let this = self.clone();
        Box::pin(async move {
            let keys: Vec<LineKey> = lines.iter().map(BudgetLine::mem_key).collect();
            // Cold lines: read their history first, outside the lock.
            for i in this.missing(&keys) {
                let window = lines[i].window_at(this.inner.clock.now_secs());
                let spent = load_spent(&*this.inner.history, &lines[i], window).await?;
                let mut map = this.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
                map.entry(keys[i].clone()).or_insert(LineState {
                    window: window.map(|w| w.index),
                    spent: spent.pico(),
                    reserved: 0,
                    gauge: None,
                });
            }
            let now = this.inner.clock.now_secs();
            let mut map = this.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
            // Check every line, then apply: all or nothing under one lock.
            for (line, key) in lines.iter().zip(&keys) {
                let Some(state) = map.get_mut(key) else {
                    return Err(Error::internal("budget line vanished"));
                };
                state.roll(line.window_at(now));
                if let Some(max) = line.max_budget
                    && state.spent + state.reserved + amount.pico() > max.pico()
                {
                    return Err(line.exceeded(
                        Usd::from_pico(state.spent),
                        Usd::from_pico(state.reserved),
                        amount,
                    ));
                }
            }
            for key in &keys {
                if let Some(state) = map.get_mut(key) {
                    state.reserved += amount.pico();
                }
            }
            Ok(Reservation {
                id: this.inner.next_id.fetch_add(1, Ordering::Relaxed),
                lines,
                amount,
            })
        })
    }

    fn settle(&self, reservation: Reservation, actual: Usd) {
        let now = self.inner.clock.now_secs();
        let mut crossings = Vec::new();
        {
            let mut map = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
            for line in reservation.lines.iter() {
                let Some(state) = map.get_mut(&line.mem_key()) else {
                    continue;
                };
                state.roll(line.window_at(now));
                state.reserved = (state.reserved - reservation.amount.pico()).max(0);
                let before = state.spent;
                state.spent += actual.pico();
                if let Some(max) = line.max_budget
                    && line.model.is_none()
                {
                    if state.gauge.as_ref().is_none_or(|(l, _)| *l != line.label) {
                        state.gauge = remaining_gauge(line).map(|g| (line.label.clone(), g));
                    }
                    if let Some((_, gauge)) = &state.gauge {
                        gauge.set(Usd::from_pico(max.pico() - state.spent).as_f64());
                    }
                }
                if let Some(soft) = line.soft_budget
                    && before <= soft.pico()
                    && state.spent > soft.pico()
                {
                    crossings.push(SoftCrossing {
                        line: line.clone(),
                        spent: Usd::from_pico(state.spent),
                    });
                }
            }
        }
        for c in &crossings {
            soft_alert(c, self.inner.on_soft.as_ref());
        }
    }

    fn balance(&self, line: &BudgetLine) -> BoxFuture<Result<Balance, Error>> {
        let now = self.inner.clock.now_secs();
        let window = line.window_at(now);
        let mut map = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        let out = match map.get_mut(&line.mem_key()) {
            Some(state) => {
                state.roll(window);
                Ok(Balance {
                    spent: Usd::from_pico(state.spent),
                    reserved: Usd::from_pico(state.reserved),
                    window,
                })
            }
            None => Ok(Balance {
                spent: Usd::ZERO,
                reserved: Usd::ZERO,
                window,
            }),
        };
        Box::pin(std::future::ready(out))
    }
}

/// The remaining-budget gauge of a key, team or user line (none for others).
fn remaining_gauge(line: &BudgetLine) -> Option<metrics::Gauge> {
    use super::ScopeKind;
    let name = match line.scope.kind {
        ScopeKind::Key => line.label.strip_prefix("key ").unwrap_or(&line.label),
        ScopeKind::Team | ScopeKind::User => &line.scope.id,
        _ => return None,
    };
    Some(crate::observe::metrics::remaining_budget_gauge(
        line.scope.kind,
        name,
    ))
}

pub(crate) fn soft_alert(c: &SoftCrossing, hook: Option<&SoftHook>) {
    crate::observe::metrics::soft_budget_alert(c.line.scope.kind);
    tracing::warn!(
        target: "tollgate::budget",
        scope = %c.line.label,
        model = c.line.model.as_deref(),
        spend_usd = c.spent.as_f64(),
        soft_budget_usd = c.line.soft_budget.map(Usd::as_f64),
        "soft budget crossed"
    );
    if let Some(h) = hook {
        h(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{ManualClock, ScopeKind};

    fn usd(d: f64) -> Usd {
        Usd::from_f64(d).unwrap()
    }

    fn line(max: f64, window: Option<(BudgetWindow, u64)>) -> BudgetLine {
        BudgetLine {
            scope: Scope::new(ScopeKind::Team, "t1"),
            model: None,
            label: "team t1".into(),
            max_budget: Some(usd(max)),
            soft_budget: None,
            window,
            budget_start: 0,
        }
    }

    struct FixedHistory(Usd);
    impl SpendHistory for FixedHistory {
        fn spent(
            &self,
            _: &Scope,
            _: Option<&str>,
            _: Option<u64>,
        ) -> BoxFuture<Result<Usd, Error>> {
            Box::pin(std::future::ready(Ok(self.0)))
        }
    }

    #[test]
    fn remaining_budget_gauges_are_made_once_per_line_and_label() {
        let gauges = crate::observe::metrics::recorded::Recorded::default();
        gauges.block_on(async {
            let ledger = MemoryLedger::new();
            let mut key = line(10.0, None);
            key.scope = Scope::new(ScopeKind::Key, "k");
            key.label = "key bot".into();
            let spend = |l: BudgetLine, amount: f64| {
                let ledger = ledger.clone();
                async move {
                    let r = ledger
                        .reserve(Arc::from(vec![l]), usd(amount))
                        .await
                        .unwrap();
                    ledger.settle(r, usd(amount));
                }
            };
            spend(key.clone(), 1.0).await;
            spend(key.clone(), 1.0).await;
            spend(line(5.0, None), 0.5).await;
            // The key's alias changed: its gauge follows the new name.
            key.label = "key renamed".into();
            spend(key, 1.0).await;
        });
        assert_eq!(
            gauges.gauge("litellm_remaining_api_key_budget_metric{api_key_alias=bot}"),
            Some((8.0, 1))
        );
        assert_eq!(
            gauges.gauge("litellm_remaining_api_key_budget_metric{api_key_alias=renamed}"),
            Some((7.0, 1))
        );
        assert_eq!(
            gauges.gauge("litellm_remaining_team_budget_metric{team=t1}"),
            Some((4.5, 1))
        );
    }

    #[tokio::test]
    async fn all_or_nothing_across_lines() {
        let ledger = MemoryLedger::new();
        let roomy = line(10.0, None);
        let mut tight = line(1.0, None);
        tight.scope = Scope::new(ScopeKind::Key, "k");
        tight.label = "key sk-...abcd".into();
        let both: Arc<[BudgetLine]> = Arc::from(vec![roomy.clone(), tight.clone()]);
        let r = ledger.reserve(both.clone(), usd(0.6)).await.unwrap();
        let err = ledger.reserve(both.clone(), usd(0.6)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BudgetExceeded);
        assert!(
            err.message().contains("key sk-...abcd"),
            "{}",
            err.message()
        );
        // The refused reservation held nothing on the roomy line.
        assert_eq!(ledger.balance(&roomy).await.unwrap().reserved, usd(0.6));
        ledger.settle(r, usd(0.5));
        let b = ledger.balance(&tight).await.unwrap();
        assert_eq!((b.spent, b.reserved), (usd(0.5), Usd::ZERO));
    }

    #[tokio::test]
    async fn history_is_read_once_and_counted() {
        let ledger = MemoryLedger::builder()
            .history(Arc::new(FixedHistory(usd(0.9))))
            .build();
        let l = line(1.0, None);
        let lines: Arc<[BudgetLine]> = Arc::from(vec![l.clone()]);
        assert!(ledger.reserve(lines.clone(), usd(0.2)).await.is_err());
        let r = ledger.reserve(lines, usd(0.1)).await.unwrap();
        ledger.settle(r, usd(0.1));
        assert_eq!(ledger.balance(&l).await.unwrap().spent, usd(1.0));
    }

    #[tokio::test]
    async fn windows_reset_exactly_on_time() {
        let clock = ManualClock::new(1_000_000);
        let ledger = MemoryLedger::builder()
            .clock(Arc::new(clock.clone()))
            .build();
        // A 30 s window anchored at t = 1000 s: windows start at 1000, 1030, …
        let l = line(1.0, Some((BudgetWindow::Seconds(30), 1000)));
        let lines: Arc<[BudgetLine]> = Arc::from(vec![l.clone()]);
        let r = ledger.reserve(lines.clone(), usd(1.0)).await.unwrap();
        ledger.settle(r, usd(1.0));
        clock.set_ms(1_029_999);
        assert!(ledger.reserve(lines.clone(), usd(0.01)).await.is_err());
        clock.set_ms(1_030_000);
        let r = ledger.reserve(lines.clone(), usd(1.0)).await.unwrap();
        assert_eq!(ledger.balance(&l).await.unwrap().spent, Usd::ZERO);
        // Settled in the next window: counted there.
        clock.set_ms(1_060_500);
        ledger.settle(r, usd(0.4));
        let b = ledger.balance(&l).await.unwrap();
        assert_eq!(
            (b.spent, b.reserved, b.window.unwrap().index),
            (usd(0.4), Usd::ZERO, 2)
        );
    }

    #[tokio::test]
    async fn soft_budget_alerts_once_when_crossed() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let ledger = MemoryLedger::builder()
            .on_soft_budget(move |c| s2.lock().unwrap().push(c.spent))
            .build();
        let mut l = line(100.0, None);
        l.soft_budget = Some(usd(1.0));
        let lines: Arc<[BudgetLine]> = Arc::from(vec![l]);
        for _ in 0..4 {
            let r = ledger.reserve(lines.clone(), usd(0.5)).await.unwrap();
            ledger.settle(r, usd(0.4));
        }
        assert_eq!(*seen.lock().unwrap(), vec![usd(1.2)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reservations_never_overspend() {
        let ledger = MemoryLedger::new();
        let l = line(1.0, None);
        let lines: Arc<[BudgetLine]> = Arc::from(vec![l.clone()]);
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (ledger, lines) = (ledger.clone(), lines.clone());
            tasks.push(tokio::spawn(async move {
                match ledger.reserve(lines, usd(0.1)).await {
                    Ok(r) => {
                        tokio::task::yield_now().await;
                        ledger.settle(r, usd(0.1));
                        true
                    }
                    Err(_) => false,
                }
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        let b = ledger.balance(&l).await.unwrap();
        assert!(ok <= 10, "{ok} reservations of $0.10 fit in $1");
        assert_eq!(b.spent, usd(0.1 * ok as f64));
        assert!(b.spent <= usd(1.0));
        assert_eq!(b.reserved, Usd::ZERO);
    }
}
