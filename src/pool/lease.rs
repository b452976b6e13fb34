//! One session pool's leases and lease history: pure logic, time passed in.
//!
//! - A lease gives one number to one session. Each page view refreshes it; it lapses
//!   `idle_timeout` after the last one and the number goes to the back of the free list.
//! - The free list hands out the number that has rested longest: a call that comes in late for
//!   the previous holder then still finds them, instead of a new visitor who was given the
//!   number a moment after release.
//! - When no number is free, `exhausted` decides: take over the least recently seen lease
//!   (recorded as shared on both sides), show the overflow number, or the original.
//! - History keeps every lease interval (number, session, start, last seen, release, shared) until
//!   `match_window` after its release, and answers "who held this number at time t".
//!
//! Leases are keyed by lease id, never by number, so a late expiry can never free a number that
//! was leased again (REFERENCE.md §6).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::Millis;
use crate::rules::Exhausted;

pub type LeaseId = u64;

/// One lease interval, live or past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: LeaseId,
    /// Index of the number in the pool.
    pub number: usize,
    pub session: String,
    pub visitor: String,
    pub started: Millis,
    pub last_seen: Millis,
    /// `None` while live.
    pub released: Option<Millis>,
    /// The number was handed over by `reuse_oldest` (to or from this lease).
    pub shared: bool,
}

impl LeaseRecord {
    /// Whether the lease covered time `t` (held from start until release, or until now).
    pub fn held_at(&self, t: Millis) -> bool {
        self.started <= t && self.released.is_none_or(|r| t <= r)
    }
}

/// What `acquire` gave the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A number, by index; `fresh` when this call started the lease.
    Number {
        number: usize,
        lease: LeaseId,
        fresh: bool,
        shared: bool,
    },
    /// The pool is exhausted and its policy is `overflow`.
    Overflow,
    /// The pool is exhausted and its policy is `original`.
    Original,
}

/// Something that happened to a lease, for the journal (durable storage) and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    Opened(LeaseRecord),
    Refreshed {
        id: LeaseId,
        last_seen: Millis,
    },
    Released {
        id: LeaseId,
        at: Millis,
    },
    /// `from` was taken over by `to` (reuse_oldest).
    HandedOver {
        from: LeaseId,
        to: LeaseRecord,
    },
}

/// Which free number a new lease gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FreeOrder {
    /// The number that has rested longest since its release: a late call for the previous
    /// holder still finds them (confidence `late`) for as long as possible.
    #[default]
    LongestRested,
    /// A random free number, possibly one released a moment ago (the naive policy; seeded so
    /// simulations are reproducible).
    Random { seed: u64 },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub leased: usize,
    pub peak_leased: usize,
    pub exhausted: u64,
    pub handed_over: u64,
}

#[derive(Debug)]
pub struct LeaseTable {
    size: usize,
    idle_ms: Millis,
    window_ms: Millis,
    policy: Exhausted,
    order: FreeOrder,
    /// State of the random free-number pick ([`FreeOrder::Random`] only).
    rng: u64,
    /// Free numbers, longest rested first.
    free: VecDeque<usize>,
    holder: Vec<Option<LeaseId>>,
    live: HashMap<LeaseId, LeaseRecord>,
    by_session: HashMap<String, LeaseId>,
    /// Live leases by last page view: the front is the next to lapse and the oldest to reuse.
    by_seen: BTreeSet<(Millis, LeaseId)>,
    /// Past leases per number, oldest first, pruned after `match_window`.
    past: Vec<VecDeque<LeaseRecord>>,
    /// (release time, number) of every past lease in release order, so pruning looks only at
    /// what is due instead of every number's history.
    released_order: VecDeque<(Millis, usize)>,
    /// Lease ids are unique across every pool (they key durable records).
    ids: Arc<AtomicU64>,
    counters: Counters,
}

impl LeaseTable {
    pub fn new(size: usize, idle_ms: Millis, window_ms: Millis, policy: Exhausted, ids: Arc<AtomicU64>) -> LeaseTable {
        LeaseTable {
            size,
            idle_ms,
            window_ms,
            policy,
            order: FreeOrder::LongestRested,
            rng: 0,
            free: (0..size).collect(),
            holder: vec![None; size],
            live: HashMap::new(),
            by_session: HashMap::new(),
            by_seen: BTreeSet::new(),
            past: vec![VecDeque::new(); size],
            released_order: VecDeque::new(),
            ids,
            counters: Counters::default(),
        }
    }

    /// The same table handing out free numbers in `order`.
    pub fn with_free_order(mut self, order: FreeOrder) -> LeaseTable {
        self.order = order;
        if let FreeOrder::Random { seed } = order {
            self.rng = seed;
        }
        self
    }

    /// New settings for the same numbers (a rules reload): live leases and history stay, and
    /// the next tick lapses and prunes by the new times.
    pub fn reconfigure(&mut self, idle_ms: Millis, window_ms: Millis, policy: Exhausted) {
        self.idle_ms = idle_ms;
        self.window_ms = window_ms;
        self.policy = policy;
    }

    /// Takes over `old`'s leases, history and counters, for a pool whose list of numbers a
    /// reload changed: `map` gives an old number's index in this table, `None` for a number
    /// taken out (its live lease ends at `now`, a `Released` event in `events` so the journal
    /// ends it too: left open there, a restart would bring it back over the lease of whoever
    /// holds that number by then; its session gets a new number at its next page view; its
    /// history goes with it). Numbers new to the pool are handed out first (they have rested
    /// longest), then the old free ones in their order. Call on a fresh table.
    pub fn take_over(
        &mut self,
        old: &LeaseTable,
        map: impl Fn(usize) -> Option<usize>,
        now: Millis,
        events: &mut Vec<LeaseEvent>,
    ) {
        debug_assert!(self.live.is_empty() && self.released_order.is_empty());
        let mut kept = vec![false; self.size];
        for n in (0..old.size).filter_map(&map) {
            kept[n] = true;
        }
        let mut free: VecDeque<usize> = (0..self.size).filter(|&n| !kept[n]).collect();
        free.extend(old.free.iter().filter_map(|&n| map(n)));
        self.free = free;
        for rec in old.live.values() {
            match map(rec.number) {
                Some(number) => {
                    self.restore(LeaseRecord { number, ..rec.clone() });
                }
                None => events.push(LeaseEvent::Released { id: rec.id, at: now }),
            }
        }
        let mut past: Vec<LeaseRecord> = old
            .past
            .iter()
            .flatten()
            .filter_map(|r| map(r.number).map(|number| LeaseRecord { number, ..r.clone() }))
            .collect();
        past.sort_by_key(|r| r.released);
        for rec in past {
            self.remember(rec);
        }
        self.counters = Counters {
            leased: self.live.len(),
            ..old.counters
        };
        self.rng = old.rng;
    }

    /// Takes a free number per the table's [`FreeOrder`].
    fn take_free(&mut self) -> Option<usize> {
        match self.order {
            FreeOrder::LongestRested => self.free.pop_front(),
            FreeOrder::Random { .. } if self.free.is_empty() => None,
            FreeOrder::Random { .. } => {
                // splitmix64: enough to spread picks; not for secrets.
                self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.rng;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let i = (z % self.free.len() as u64) as usize;
                self.free.swap_remove_back(i)
            }
        }
    }

    pub fn counters(&self) -> Counters {
        Counters {
            leased: self.live.len(),
            ..self.counters
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The number for `session` at `now`: its live lease refreshed, a free number, or the
    /// exhaustion policy. Lapsed leases are released first. Events go to `out`.
    pub fn acquire(&mut self, session: &str, visitor: &str, now: Millis, out: &mut Vec<LeaseEvent>) -> Grant {
        self.expire(now, out);
        if let Some(&id) = self.by_session.get(session) {
            let rec = self.live.get_mut(&id).expect("indexed lease is live");
            self.by_seen.remove(&(rec.last_seen, id));
            rec.last_seen = now;
            self.by_seen.insert((now, id));
            out.push(LeaseEvent::Refreshed { id, last_seen: now });
            return Grant::Number {
                number: rec.number,
                lease: id,
                fresh: false,
                shared: rec.shared,
            };
        }
        if let Some(number) = self.take_free() {
            let rec = self.open(number, session, visitor, now, false);
            let id = rec.id;
            out.push(LeaseEvent::Opened(rec));
            return Grant::Number {
                number,
                lease: id,
                fresh: true,
                shared: false,
            };
        }
        self.counters.exhausted += 1;
        match self.policy {
            Exhausted::Overflow => Grant::Overflow,
            Exhausted::Original => Grant::Original,
            Exhausted::ReuseOldest => {
                let Some(&(_, oldest)) = self.by_seen.iter().next() else {
                    return Grant::Original;
                };
                let mut old = self.close(oldest, now);
                old.shared = true;
                let number = old.number;
                self.remember(old);
                let rec = self.open(number, session, visitor, now, true);
                let id = rec.id;
                self.counters.handed_over += 1;
                out.push(LeaseEvent::HandedOver { from: oldest, to: rec });
                Grant::Number {
                    number,
                    lease: id,
                    fresh: true,
                    shared: true,
                }
            }
        }
    }

    fn open(&mut self, number: usize, session: &str, visitor: &str, now: Millis, shared: bool) -> LeaseRecord {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let rec = LeaseRecord {
            id,
            number,
            session: session.to_string(),
            visitor: visitor.to_string(),
            started: now,
            last_seen: now,
            released: None,
            shared,
        };
        self.holder[number] = Some(id);
        self.by_session.insert(session.to_string(), id);
        self.by_seen.insert((now, id));
        self.live.insert(id, rec.clone());
        self.counters.peak_leased = self.counters.peak_leased.max(self.live.len());
        rec
    }

    fn close(&mut self, id: LeaseId, at: Millis) -> LeaseRecord {
        let mut rec = self.live.remove(&id).expect("closing a live lease");
        self.by_seen.remove(&(rec.last_seen, id));
        if self.by_session.get(&rec.session) == Some(&id) {
            self.by_session.remove(&rec.session);
        }
        if self.holder[rec.number] == Some(id) {
            self.holder[rec.number] = None;
        }
        rec.released = Some(at);
        rec
    }

    /// Releases leases idle for `idle_timeout` (their release time is when they lapsed, not when
    /// this ran) and forgets history older than `match_window`.
    pub fn expire(&mut self, now: Millis, out: &mut Vec<LeaseEvent>) {
        while let Some(&(seen, id)) = self.by_seen.iter().next() {
            let lapse = seen + self.idle_ms;
            if lapse > now {
                break;
            }
            let rec = self.close(id, lapse);
            let number = rec.number;
            self.remember(rec);
            self.free.push_back(number);
            out.push(LeaseEvent::Released { id, at: lapse });
        }
        while let Some(&(released, number)) = self.released_order.front() {
            if released + self.window_ms >= now {
                break;
            }
            self.released_order.pop_front();
            let past = &mut self.past[number];
            while past
                .front()
                .is_some_and(|r| r.released.is_some_and(|x| x + self.window_ms < now))
            {
                past.pop_front();
            }
        }
    }

    fn remember(&mut self, rec: LeaseRecord) {
        self.released_order.push_back((rec.released.unwrap_or(0), rec.number));
        self.past[rec.number].push_back(rec);
    }

    /// Every lease interval of `number` that could explain a call at `t`: held at `t`, or
    /// released before `t` but within `match_window`. Most recent first.
    pub fn candidates(&self, number: usize, t: Millis) -> Vec<LeaseRecord> {
        let mut out: Vec<LeaseRecord> = Vec::new();
        if let Some(id) = self.holder.get(number).copied().flatten()
            && let Some(rec) = self.live.get(&id)
            && rec.started <= t
        {
            out.push(rec.clone());
        }
        if let Some(past) = self.past.get(number) {
            for r in past.iter().rev() {
                let released = r.released.unwrap_or(Millis::MAX);
                if r.started <= t && t <= released.saturating_add(self.window_ms) {
                    out.push(r.clone());
                }
            }
        }
        out
    }

    /// The live lease of a session, if any.
    pub fn lease_of(&self, session: &str) -> Option<&LeaseRecord> {
        self.by_session.get(session).and_then(|id| self.live.get(id))
    }

    /// Live leases (for persistence and restart).
    pub fn live(&self) -> impl Iterator<Item = &LeaseRecord> {
        self.live.values()
    }

    /// Reinstates a live lease after a restart (its number must be free).
    pub fn restore(&mut self, rec: LeaseRecord) -> bool {
        if rec.number >= self.size || self.holder[rec.number].is_some() || rec.released.is_some() {
            return false;
        }
        self.free.retain(|&n| n != rec.number);
        self.holder[rec.number] = Some(rec.id);
        self.by_session.insert(rec.session.clone(), rec.id);
        self.by_seen.insert((rec.last_seen, rec.id));
        self.ids.fetch_max(rec.id + 1, Ordering::Relaxed);
        self.live.insert(rec.id, rec);
        self.counters.peak_leased = self.counters.peak_leased.max(self.live.len());
        true
    }

    /// Brings back, after a restart, the leases that ended within `match_window`: their history,
    /// so a late call still finds its visitor and a handover stays `shared`; and their numbers'
    /// rest, so the number released longest ago is handed out first, as before the restart (a
    /// fresh table hands them out in list order, giving the last visitor's number to the next).
    /// `ended`: released leases, in any order; a number held now keeps its place.
    pub fn rest(&mut self, mut ended: Vec<LeaseRecord>) {
        ended.retain(|r| r.number < self.size && r.released.is_some() && !self.live.contains_key(&r.id));
        ended.sort_by_key(|r| r.released);
        for rec in ended {
            let n = rec.number;
            if self.holder[n].is_none() {
                self.free.retain(|&f| f != n);
                self.free.push_back(n);
            }
            self.remember(rec);
        }
    }

    /// Checks the table's invariants (tests and debug builds): every number is either free or
    /// held by exactly one live lease, and every live lease is indexed.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = vec![0u8; self.size];
        for &n in &self.free {
            seen[n] += 1;
            if self.holder[n].is_some() {
                return Err(format!("number {n} is free and held"));
            }
        }
        for (id, rec) in &self.live {
            if self.holder[rec.number] != Some(*id) {
                return Err(format!(
                    "lease {id} holds number {} but the holder is {:?}",
                    rec.number, self.holder[rec.number]
                ));
            }
            seen[rec.number] += 1;
            if self.by_session.get(&rec.session) != Some(id) {
                return Err(format!("lease {id} is not indexed by its session"));
            }
            if !self.by_seen.contains(&(rec.last_seen, *id)) {
                return Err(format!("lease {id} is not indexed by last seen"));
            }
        }
        if let Some(n) = seen.iter().position(|&c| c != 1) {
            return Err(format!("number {n} is counted {} times", seen[n]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn table(size: usize, policy: Exhausted) -> LeaseTable {
        LeaseTable::new(size, 30 * MIN, 120 * MIN, policy, Arc::new(AtomicU64::new(1)))
    }

    fn number(g: &Grant) -> usize {
        match g {
            Grant::Number { number, .. } => *number,
            other => panic!("expected a number, got {other:?}"),
        }
    }

    /// A number a reload takes out ends its lease in the journal too: left open there, a
    /// restart brought the lease back over the one whoever got the number back later held.
    #[test]
    fn a_number_taken_out_by_a_reload_ends_its_lease_in_the_journal() {
        let mut old = table(2, Exhausted::Overflow);
        let mut ev = Vec::new();
        number(&old.acquire("s1", "v1", 0, &mut ev));
        let b = number(&old.acquire("s2", "v2", 0, &mut ev));
        let mut new = table(1, Exhausted::Overflow);
        let mut ended = Vec::new();
        // Only `b` stays, at place 0.
        new.take_over(&old, |n| (n == b).then_some(0), 5 * MIN, &mut ended);
        let a_id = old.lease_of("s1").unwrap().id;
        assert_eq!(ended, [LeaseEvent::Released { id: a_id, at: 5 * MIN }]);
        assert_eq!(new.lease_of("s2").map(|r| r.number), Some(0));
        assert!(new.lease_of("s1").is_none());
        new.check_invariants().unwrap();
    }

    #[test]
    fn a_session_keeps_its_number_while_it_keeps_browsing() {
        let mut t = table(2, Exhausted::ReuseOldest);
        let mut ev = Vec::new();
        let a = number(&t.acquire("s1", "v1", 0, &mut ev));
        for minute in 1..100 {
            assert_eq!(
                number(&t.acquire("s1", "v1", minute * 20 * MIN / 20 + minute * MIN, &mut ev)),
                a
            );
        }
        t.check_invariants().unwrap();
    }

    #[test]
    fn an_idle_lease_lapses_and_its_number_rests_longest_first() {
        let mut t = table(3, Exhausted::Original);
        let mut ev = Vec::new();
        let a = number(&t.acquire("s1", "v", 0, &mut ev));
        let b = number(&t.acquire("s2", "v", MIN, &mut ev));
        // s1 lapses at 30 min; s2 at 31 min. The third number has never been used.
        let c = number(&t.acquire("s3", "v", 40 * MIN, &mut ev));
        assert!(c != a && c != b, "the never-used number rests longest");
        let d = number(&t.acquire("s4", "v", 41 * MIN, &mut ev));
        assert_eq!(d, a, "then the one released first");
        assert!(ev.contains(&LeaseEvent::Released { id: 1, at: 30 * MIN }));
        t.check_invariants().unwrap();
    }

    #[test]
    fn exhaustion_policies() {
        let mut ev = Vec::new();
        let mut t = table(1, Exhausted::Overflow);
        t.acquire("s1", "v", 0, &mut ev);
        assert_eq!(t.acquire("s2", "v", 1, &mut ev), Grant::Overflow);
        assert_eq!(t.counters().exhausted, 1);
        let mut t = table(1, Exhausted::Original);
        t.acquire("s1", "v", 0, &mut ev);
        assert_eq!(t.acquire("s2", "v", 1, &mut ev), Grant::Original);
        let mut t = table(2, Exhausted::ReuseOldest);
        t.acquire("s1", "v1", 0, &mut ev);
        t.acquire("s2", "v2", 5, &mut ev);
        t.acquire("s1", "v1", 10, &mut ev);
        // s2 is the least recently seen: its number is handed to s3, and both sides are shared.
        let g = t.acquire("s3", "v3", 20, &mut ev);
        assert!(matches!(
            g,
            Grant::Number {
                number: 1,
                shared: true,
                ..
            }
        ));
        let c = t.candidates(1, 20);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|r| r.shared));
        assert_eq!(c[0].session, "s3");
        assert_eq!(c[1].session, "s2");
        t.check_invariants().unwrap();
    }

    #[test]
    fn history_answers_who_held_a_number_and_forgets_after_the_window() {
        let mut t = table(1, Exhausted::Original);
        let mut ev = Vec::new();
        t.acquire("s1", "v1", 0, &mut ev);
        t.acquire("s1", "v1", 10 * MIN, &mut ev);
        // Lapsed at 40 min. A call at 60 min is inside the 2 h window.
        t.expire(60 * MIN, &mut ev);
        let c = t.candidates(0, 60 * MIN);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].released, Some(40 * MIN));
        assert!(!c[0].held_at(60 * MIN));
        assert!(c[0].held_at(20 * MIN));
        assert!(t.candidates(0, 40 * MIN + 121 * MIN).is_empty());
        t.expire(200 * MIN, &mut ev);
        assert!(t.candidates(0, 60 * MIN).is_empty(), "pruned after the window");
    }

    #[test]
    fn the_naive_order_picks_random_free_numbers_reproducibly() {
        let picks = |seed: u64| {
            let mut t = table(50, Exhausted::Original).with_free_order(FreeOrder::Random { seed });
            let mut ev = Vec::new();
            let p: Vec<usize> = (0..10)
                .map(|i| number(&t.acquire(&format!("s{i}"), "v", i, &mut ev)))
                .collect();
            t.check_invariants().unwrap();
            p
        };
        assert_eq!(picks(3), picks(3));
        assert_ne!(picks(3), picks(4));
        assert_ne!(picks(3), (0..10).collect::<Vec<_>>(), "not the rested order");
    }
}
