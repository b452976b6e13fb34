//! Which number a visitor sees, and who held a number when it rang.
//!
//! [`NumberChooser`] is the seam between "who is this visitor" ([`crate::visitor`]) and "what does
//! the page show" ([`crate::rewrite`]). [`Pools`] implements it over the site's `[[pool]]`s, tried
//! in file order, first `when` match wins:
//! - `mode = "source"`: the pool's number, shown to every matching visitor;
//! - `mode = "session"`: a number leased to the visitor's session ([`lease::LeaseTable`]).
//!
//! [`Pools::who_held`] answers the call side's question, (number, time) → candidate sessions,
//! and [`grade`] turns candidates into a confidence. Knows nothing of HTML or HTTP.

pub mod lease;
pub mod sizing;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use lease::{Counters, FreeOrder, Grant, LeaseEvent, LeaseId, LeaseRecord, LeaseTable};

use crate::clock::{Clock, Millis};
use crate::rewrite::PhoneNumber;
use crate::rules::{Pool, PoolMode, RuleSet, Site};
use crate::store::SourceAudience;
use crate::visitor::classify::Channel;

/// What the visitor's page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The site's own number: the page passes through unchanged.
    Original,
    /// A tracking number from the named pool.
    Tracking {
        number: PhoneNumber,
        pool: String,
        how: How,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The pool's number for everyone its `when` matches.
    Source,
    /// Leased to this session.
    Session { lease: LeaseId, shared: bool },
    /// The pool was exhausted: its overflow number (calls tracked, no visitor data).
    Overflow,
}

/// The touch facts a pool's `when` looks at.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub channel: Channel,
    pub source: &'a str,
    pub medium: &'a str,
    pub campaign: Option<&'a str>,
}

/// Who would hold a session lease. `None` when nothing may be stored (no consent): only
/// source pools apply then.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub visitor: &'a str,
    pub session: &'a str,
}

/// Picks the number for one page view.
pub trait NumberChooser: Send + Sync {
    /// `audience` is the deciding touch (per the site's `attribution`); `None` means nothing is
    /// known (a crawler kept on the original number).
    fn choose(&self, site: &Site, audience: Option<&Audience<'_>>, holder: Option<&Holder<'_>>) -> Choice;

    /// Called with each newly installed rule set.
    fn rules_changed(&self, _rules: &RuleSet) {}
}

/// Receives lease events, e.g. to make them durable. Called under the pool's lock: keep it
/// cheap (queue, don't write).
pub trait LeaseJournal: Send + Sync {
    /// `numbers` are the pool's numbers, which lease records index into.
    fn record(&self, site: &str, pool: &str, numbers: &[PhoneNumber], event: &LeaseEvent);
}

/// A journal that keeps nothing.
#[derive(Debug, Default)]
pub struct NoJournal;

impl LeaseJournal for NoJournal {
    fn record(&self, _: &str, _: &str, _: &[PhoneNumber], _: &LeaseEvent) {}
}

/// The first pool whose `when` matches, in file order; `session_ok = false` skips session pools.
pub fn matching_pool<'s>(site: &'s Site, a: &Audience<'_>, session_ok: bool) -> Option<&'s Pool> {
    site.pools
        .iter()
        .filter(|p| session_ok || p.mode == PoolMode::Source)
        .find(|p| p.when.matches(a.channel, a.source, a.medium, a.campaign))
}

/// One session pool's live state.
struct SessionPool {
    numbers: Vec<PhoneNumber>,
    table: LeaseTable,
}

type Key = (String, String);

/// Every site's pools, their leases and lease history.
pub struct Pools {
    clock: Arc<dyn Clock>,
    pools: RwLock<HashMap<Key, Arc<Mutex<SessionPool>>>>,
    journal: Arc<dyn LeaseJournal>,
    ids: Arc<AtomicU64>,
    free_order: FreeOrder,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pools({} session pools)",
            self.pools.read().map(|p| p.len()).unwrap_or(0)
        )
    }
}

/// Figures for `/api/pools`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    pub site: String,
    pub name: String,
    pub mode: PoolMode,
    pub size: usize,
    pub leased: usize,
    pub peak_leased: usize,
    pub exhausted: u64,
    pub handed_over: u64,
}

/// Who held a number at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A session pool's number: the lease intervals that could explain the call.
    Session { pool: String, candidates: Vec<LeaseRecord> },
    /// A source pool's number: the visitor is not known, the pool's audience is. `shown_to`:
    /// who was shown it before the call (the pool answers none; the store knows them).
    Source { pool: String, shown_to: SourceAudience },
    /// An overflow number: tracked, no visitor data.
    Overflow { pool: String },
    /// Not a tracking number of this site.
    Unknown,
}

/// How sure an attribution is (SPEC.md `confidence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confidence {
    /// One session held the number when it rang.
    Exact,
    /// The number had been handed over by `reuse_oldest`: every candidate is kept.
    Shared,
    /// Released before the call, inside `match_window`.
    Late,
    /// A source or offline number: channel or campaign only.
    Source,
    None,
}

impl Confidence {
    pub const ALL: [Confidence; 5] = [
        Confidence::Exact,
        Confidence::Shared,
        Confidence::Late,
        Confidence::Source,
        Confidence::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Exact => "exact",
            Confidence::Shared => "shared",
            Confidence::Late => "late",
            Confidence::Source => "source",
            Confidence::None => "none",
        }
    }
}

/// Grades session candidates for a call at `t` without knowing the pool's `idle_timeout`: a
/// handover stays ambiguous for as long as its records are in the window. Prefer
/// [`grade_within`] where the pool is known.
pub fn grade(candidates: &[LeaseRecord], t: Millis) -> (Confidence, Vec<LeaseRecord>) {
    grade_within(candidates, t, Millis::MAX)
}

/// Grades session candidates for a call at `t` to a pool with `idle_ms` = `idle_timeout`;
/// returns the confidence and the candidates that support it, best first.
///
/// A handover (`reuse_oldest`) makes a call ambiguous only while the session it was taken from
/// would still have held the number had the pool not been exhausted: until that session's last
/// page view + `idle_timeout`. After that the previous holder is in the same position as any
/// session whose lease lapsed normally (a late candidate that a current holder outranks), so the
/// current holder's calls are `exact`, as they would be after a normal lapse and reuse. Without
/// this, one handover at a busy moment marked every call of the new holder `shared` for its
/// whole lease, even an hour after the previous visitor was last seen (`telswap simulate`
/// measured it: see benches/RESULTS.md "Attribution simulator").
pub fn grade_within(candidates: &[LeaseRecord], t: Millis, idle_ms: Millis) -> (Confidence, Vec<LeaseRecord>) {
    let held: Vec<&LeaseRecord> = candidates.iter().filter(|c| c.held_at(t)).collect();
    // Sessions whose lease was cut short by a handover and would still be running at `t`.
    let cut_short: Vec<&LeaseRecord> = candidates
        .iter()
        .filter(|c| c.shared && c.released.is_some_and(|r| r < t) && t <= c.last_seen.saturating_add(idle_ms))
        .collect();
    match (held.as_slice(), cut_short.is_empty()) {
        ([one], true) => return (Confidence::Exact, vec![(*one).clone()]),
        ([], true) => {}
        _ => {
            // A handover: the current holder first, then whoever had it before.
            let mut all: Vec<LeaseRecord> = held.into_iter().chain(cut_short).cloned().collect();
            all.sort_by_key(|c| std::cmp::Reverse(c.started));
            return (Confidence::Shared, all);
        }
    }
    let mut late: Vec<LeaseRecord> = candidates
        .iter()
        .filter(|c| c.released.is_some_and(|r| r < t))
        .cloned()
        .collect();
    late.sort_by_key(|c| std::cmp::Reverse(c.released));
    match late.first() {
        Some(_) => (Confidence::Late, late),
        None => (Confidence::None, Vec::new()),
    }
}

impl Pools {
    pub fn new(rules: &RuleSet, clock: Arc<dyn Clock>, journal: Arc<dyn LeaseJournal>) -> Arc<Pools> {
        Pools::with_free_order(rules, clock, journal, FreeOrder::LongestRested)
    }

    /// Pools whose session tables hand out free numbers in `order` (`telswap simulate` compares
    /// the naive random order with the default).
    pub fn with_free_order(
        rules: &RuleSet,
        clock: Arc<dyn Clock>,
        journal: Arc<dyn LeaseJournal>,
        order: FreeOrder,
    ) -> Arc<Pools> {
        let pools = Pools {
            clock,
            pools: RwLock::new(HashMap::new()),
            journal,
            ids: Arc::new(AtomicU64::new(1)),
            free_order: order,
        };
        pools.sync(rules);
        Arc::new(pools)
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Builds tables for new session pools; a pool kept by a reload keeps its leases and
    /// history, moved to the new list's places when its numbers changed.
    fn sync(&self, rules: &RuleSet) {
        let mut map = self.pools.write().expect("pools lock");
        let mut keep = HashMap::new();
        for site in &rules.sites {
            for p in site.pools.iter().filter(|p| p.mode == PoolMode::Session) {
                let key = (site.name.clone(), p.name.clone());
                let (idle_ms, window_ms) = (
                    p.idle_timeout.as_millis() as Millis,
                    p.match_window.as_millis() as Millis,
                );
                // The same numbers keep their table, leases and history, with the new settings
                // (`exhausted` included: a reload must change what an exhausted pool does).
                let old = map.remove(&key);
                let same = old.as_ref().is_some_and(|old| {
                    let mut old = old.lock().expect("pool lock");
                    let same = old.numbers == p.numbers;
                    if same {
                        old.table.reconfigure(idle_ms, window_ms, p.exhausted);
                    }
                    same
                });
                let entry = match old {
                    Some(old) if same => old,
                    old => {
                        let mut table =
                            LeaseTable::new(p.numbers.len(), idle_ms, window_ms, p.exhausted, self.ids.clone())
                                .with_free_order(self.free_order);
                        // Numbers added or taken out: the numbers kept keep their leases and
                        // history (a page showing one must not see it handed to someone else).
                        if let Some(old) = old {
                            let old = old.lock().expect("pool lock");
                            let index: HashMap<&PhoneNumber, usize> =
                                p.numbers.iter().enumerate().map(|(i, n)| (n, i)).collect();
                            let mut ended = Vec::new();
                            table.take_over(
                                &old.table,
                                |n| old.numbers.get(n).and_then(|n| index.get(n).copied()),
                                self.clock.now_ms(),
                                &mut ended,
                            );
                            self.journal_all(&site.name, &p.name, &old.numbers, &ended);
                        }
                        Arc::new(Mutex::new(SessionPool {
                            numbers: p.numbers.clone(),
                            table,
                        }))
                    }
                };
                keep.insert(key, entry);
            }
        }
        *map = keep;
    }

    fn pool(&self, site: &str, pool: &str) -> Option<Arc<Mutex<SessionPool>>> {
        self.pools
            .read()
            .expect("pools lock")
            .get(&(site.to_string(), pool.to_string()))
            .cloned()
    }

    /// Releases lapsed leases and prunes history everywhere (the maintenance tick).
    pub fn tick(&self) {
        let now = self.clock.now_ms();
        let pools: Vec<(Key, Arc<Mutex<SessionPool>>)> = self
            .pools
            .read()
            .expect("pools lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut events = Vec::new();
        for ((site, name), p) in pools {
            let mut p = p.lock().expect("pool lock");
            p.table.expire(now, &mut events);
            self.journal_all(&site, &name, &p.numbers, &events);
            events.clear();
        }
    }

    fn journal_all(&self, site: &str, pool: &str, numbers: &[PhoneNumber], events: &[LeaseEvent]) {
        for e in events {
            self.journal.record(site, pool, numbers, e);
        }
    }

    /// Runs [`Pools::tick`] every `every` (tokio time, so paused-time tests drive it).
    pub fn spawn_maintenance(self: &Arc<Self>, every: Duration, also: impl Fn() + Send + 'static) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(every);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                let Some(p) = me.upgrade() else { return };
                p.tick();
                also();
            }
        });
    }

    pub fn stats(&self, rules: &RuleSet) -> Vec<PoolStats> {
        let mut out = Vec::new();
        for site in &rules.sites {
            for p in &site.pools {
                let c = match p.mode {
                    PoolMode::Session => self
                        .pool(&site.name, &p.name)
                        .map(|sp| sp.lock().expect("pool lock").table.counters())
                        .unwrap_or_default(),
                    PoolMode::Source => Counters::default(),
                };
                out.push(PoolStats {
                    site: site.name.clone(),
                    name: p.name.clone(),
                    mode: p.mode,
                    size: p.numbers.len(),
                    leased: c.leased,
                    peak_leased: c.peak_leased,
                    exhausted: c.exhausted,
                    handed_over: c.handed_over,
                });
            }
        }
        out
    }

    /// Who held `number` of `site` at time `t`.
    pub fn who_held(&self, site: &Site, number: &PhoneNumber, t: Millis) -> Held {
        for p in &site.pools {
            if p.overflow.as_ref() == Some(number) {
                return Held::Overflow { pool: p.name.clone() };
            }
            let Some(idx) = p.numbers.iter().position(|n| n == number) else {
                continue;
            };
            return match p.mode {
                PoolMode::Source => Held::Source {
                    pool: p.name.clone(),
                    shown_to: SourceAudience::default(),
                },
                PoolMode::Session => {
                    let candidates = self
                        .pool(&site.name, &p.name)
                        .map(|sp| {
                            let mut sp = sp.lock().expect("pool lock");
                            let mut events = Vec::new();
                            sp.table.expire(self.clock.now_ms(), &mut events);
                            self.journal_all(&site.name, &p.name, &sp.numbers, &events);
                            sp.table.candidates(idx, t)
                        })
                        .unwrap_or_default();
                    Held::Session {
                        pool: p.name.clone(),
                        candidates,
                    }
                }
            };
        }
        Held::Unknown
    }

    /// The live lease a session holds in a pool, if any.
    pub fn lease_of(&self, site: &str, pool: &str, session: &str) -> Option<LeaseRecord> {
        self.pool(site, pool)
            .and_then(|p| p.lock().expect("pool lock").table.lease_of(session).cloned())
    }

    /// Reinstates a live lease after a restart.
    pub fn restore(&self, site: &str, pool: &str, rec: LeaseRecord) -> bool {
        self.pool(site, pool)
            .is_some_and(|p| p.lock().expect("pool lock").table.restore(rec))
    }

    /// See [`LeaseTable::rest`].
    pub fn rest(&self, site: &str, pool: &str, ended: Vec<LeaseRecord>) {
        if let Some(p) = self.pool(site, pool) {
            p.lock().expect("pool lock").table.rest(ended);
        }
    }

    /// New lease ids start above `n` (the highest id already stored).
    pub fn ids_above(&self, n: LeaseId) {
        self.ids.fetch_max(n + 1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Checks every table's invariants (tests).
    pub fn check_invariants(&self) -> Result<(), String> {
        for p in self.pools.read().expect("pools lock").values() {
            p.lock().expect("pool lock").table.check_invariants()?;
        }
        Ok(())
    }
}

impl NumberChooser for Pools {
    fn choose(&self, site: &Site, audience: Option<&Audience<'_>>, holder: Option<&Holder<'_>>) -> Choice {
        let Some(a) = audience else { return Choice::Original };
        let Some(p) = matching_pool(site, a, holder.is_some()) else {
            return Choice::Original;
        };
        let (PoolMode::Session, Some(h)) = (p.mode, holder) else {
            return source_choice(p);
        };
        let Some(sp) = self.pool(&site.name, &p.name) else {
            return Choice::Original;
        };
        let (grant, number) = {
            let mut sp = sp.lock().expect("pool lock");
            let mut events = Vec::new();
            let g = sp.table.acquire(h.session, h.visitor, self.clock.now_ms(), &mut events);
            self.journal_all(&site.name, &p.name, &sp.numbers, &events);
            let number = match &g {
                Grant::Number { number, .. } => sp.numbers.get(*number).cloned(),
                _ => None,
            };
            (g, number)
        };
        match (grant, number) {
            (Grant::Number { lease, shared, .. }, Some(number)) => Choice::Tracking {
                number,
                pool: p.name.clone(),
                how: How::Session { lease, shared },
            },
            (Grant::Overflow, _) => match &p.overflow {
                Some(n) => Choice::Tracking {
                    number: n.clone(),
                    pool: p.name.clone(),
                    how: How::Overflow,
                },
                None => Choice::Original,
            },
            _ => Choice::Original,
        }
    }

    fn rules_changed(&self, rules: &RuleSet) {
        self.sync(rules);
    }
}

/// A source pool's number (or the original when a session pool cannot be used).
fn source_choice(p: &Pool) -> Choice {
    match (p.mode, p.numbers.first()) {
        (PoolMode::Source, Some(n)) => Choice::Tracking {
            number: n.clone(),
            pool: p.name.clone(),
            how: How::Source,
        },
        _ => Choice::Original,
    }
}

/// The issue-2 policy, kept for callers that want no state: source pools only.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceChooser;

impl NumberChooser for SourceChooser {
    fn choose(&self, site: &Site, audience: Option<&Audience<'_>>, _: Option<&Holder<'_>>) -> Choice {
        match audience.and_then(|a| matching_pool(site, a, true)) {
            Some(p) => source_choice(p),
            None => Choice::Original,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn rec(id: LeaseId, started: Millis, last_seen: Millis, released: Option<Millis>) -> LeaseRecord {
        LeaseRecord {
            id,
            number: 0,
            session: format!("s{id}"),
            visitor: format!("v{id}"),
            started,
            last_seen,
            released,
            shared: true,
        }
    }

    #[test]
    fn a_handover_is_ambiguous_only_while_the_previous_lease_would_have_run() {
        // s1 was last seen at 10 min; at 12 min the exhausted pool handed its number to s2.
        // With a 30-minute idle_timeout s1 would have held it until 40 min.
        let c = [rec(2, 12 * MIN, 25 * MIN, None), rec(1, 0, 10 * MIN, Some(12 * MIN))];
        let (conf, who) = grade_within(&c, 20 * MIN, 30 * MIN);
        assert_eq!(conf, Confidence::Shared);
        assert_eq!(who.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1]);
        let (conf, who) = grade_within(&c, 41 * MIN, 30 * MIN);
        assert_eq!(conf, Confidence::Exact, "s1 is now like any lapsed lease");
        assert_eq!(who.len(), 1);
        assert_eq!(who[0].id, 2);
        // Without the idle_timeout nothing ends the ambiguity.
        assert_eq!(grade(&c, 41 * MIN).0, Confidence::Shared);
        // Before the handover s1 alone held it.
        assert_eq!(grade_within(&c, 11 * MIN, 30 * MIN).0, Confidence::Exact);
    }
}
