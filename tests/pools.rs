//! Session pools and source numbers, end to end and against the clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use telswap::clock::{Clock, ManualClock, TokioClock};
use telswap::pool::{Audience, Choice, Confidence, Held, Holder, How, NoJournal, NumberChooser, Pools, grade};
use telswap::rules::{RuleSet, load_sources};
use telswap::visitor::classify::Channel;

const MIN: Duration = Duration::from_secs(60);

fn rules(extra: &str) -> RuleSet {
    let text = format!(
        r#"hosts = ["site.test"]
upstream = "http://127.0.0.1:9"
numbers = ["+1 555-010-0000"]
{extra}
[[pool]]
name = "ads"
mode = "session"
when.channel = ["paid_search"]
numbers = ["+1 555-010-1001", "+1 555-010-1002", "+1 555-010-1003"]
idle_timeout = "30m"
match_window = "2h"
exhausted = "overflow"
overflow = "+1 555-010-1999"

[[pool]]
name = "organic"
mode = "source"
when.channel = ["organic_search"]
numbers = ["+1 555-010-2001"]
"#
    );
    load_sources(&[(PathBuf::from("site.toml"), text)]).unwrap()
}

fn paid() -> Audience<'static> {
    Audience {
        channel: Channel::PaidSearch,
        source: "google",
        medium: "cpc",
        campaign: None,
    }
}

fn number(c: &Choice) -> String {
    match c {
        Choice::Tracking { number, .. } => number.e164(),
        Choice::Original => "original".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn idle_leases_lapse_refresh_keeps_them_and_late_calls_still_match() {
    let set = rules("");
    let site = set.sites[0].clone();
    let clock = TokioClock::new();
    let pools = Pools::new(&set, clock.clone(), Arc::new(NoJournal));
    pools.spawn_maintenance(Duration::from_secs(5), || {});
    let a = Holder {
        visitor: "va",
        session: "sa",
    };
    let first = pools.choose(&site, Some(&paid()), Some(&a));
    assert_eq!(number(&first), "+15550101001");
    let t0 = clock.now_ms();

    // Page views every 20 minutes keep the lease alive well past idle_timeout.
    for _ in 0..4 {
        tokio::time::advance(20 * MIN).await;
        assert_eq!(number(&pools.choose(&site, Some(&paid()), Some(&a))), "+15550101001");
    }
    let last_view = clock.now_ms();
    assert_eq!(pools.stats(&set)[0].leased, 1);

    // 31 idle minutes later the maintenance tick has released it.
    tokio::time::advance(31 * MIN).await;
    tokio::task::yield_now().await;
    assert_eq!(pools.stats(&set)[0].leased, 0);

    // A call 10 minutes after release: late, inside the 2 h match window, to session A.
    let t = clock.now_ms();
    let Held::Session { candidates, .. } = pools.who_held(&site, &first_number(&first), t) else {
        panic!()
    };
    let (conf, best) = grade(&candidates, t);
    assert_eq!(conf, Confidence::Late);
    assert_eq!(best[0].session, "sa");
    assert_eq!(best[0].released, Some(last_view + 30 * 60_000));
    // A call while A held it is exact.
    let (conf, _) = grade(&candidates, t0 + 1);
    assert_eq!(conf, Confidence::Exact);

    // After the window: no one.
    tokio::time::advance(3 * 60 * MIN).await;
    tokio::task::yield_now().await;
    let t = clock.now_ms();
    let Held::Session { candidates, .. } = pools.who_held(&site, &first_number(&first), t) else {
        panic!()
    };
    assert_eq!(grade(&candidates, t).0, Confidence::None);
}

fn first_number(c: &Choice) -> telswap::rewrite::PhoneNumber {
    match c {
        Choice::Tracking { number, .. } => number.clone(),
        Choice::Original => panic!("no number"),
    }
}

#[test]
fn three_sessions_fill_the_pool_the_fourth_gets_overflow_and_a_released_number_rests() {
    let set = rules("");
    let site = set.sites[0].clone();
    let clock = ManualClock::new(1_000_000);
    let pools = Pools::new(&set, clock.clone(), Arc::new(NoJournal));
    let got: Vec<String> = (0..4)
        .map(|i| {
            let s = format!("s{i}");
            number(&pools.choose(
                &site,
                Some(&paid()),
                Some(&Holder {
                    visitor: &s,
                    session: &s,
                }),
            ))
        })
        .collect();
    assert_eq!(got, ["+15550101001", "+15550101002", "+15550101003", "+15550101999"]);
    let st = &pools.stats(&set)[0];
    assert_eq!((st.size, st.leased, st.peak_leased, st.exhausted), (3, 3, 3, 1));
    // Organic visitors share the source number and never touch the session pool.
    let organic = Audience {
        channel: Channel::OrganicSearch,
        source: "google",
        medium: "organic",
        campaign: None,
    };
    let c = pools.choose(
        &site,
        Some(&organic),
        Some(&Holder {
            visitor: "o",
            session: "o",
        }),
    );
    assert!(matches!(&c, Choice::Tracking { how: How::Source, .. }));
    assert_eq!(number(&c), "+15550102001");
    // Direct visitors match no pool.
    let direct = Audience {
        channel: Channel::Direct,
        source: "(direct)",
        medium: "(none)",
        campaign: None,
    };
    assert_eq!(
        pools.choose(
            &site,
            Some(&direct),
            Some(&Holder {
                visitor: "d",
                session: "d"
            })
        ),
        Choice::Original
    );
    // Without a holder (no consent) a session pool is skipped.
    assert_eq!(pools.choose(&site, Some(&paid()), None), Choice::Original);
}

#[test]
fn reuse_oldest_hands_over_and_records_both_candidates() {
    let set = rules("").sites[0].as_ref().clone();
    let mut site = set;
    site.pools[0].exhausted = telswap::rules::Exhausted::ReuseOldest;
    let set = RuleSet::from_sites(vec![site]);
    let site = set.sites[0].clone();
    let clock = ManualClock::new(0);
    let pools = Pools::new(&set, clock.clone(), Arc::new(NoJournal));
    for s in ["s1", "s2", "s3"] {
        pools.choose(&site, Some(&paid()), Some(&Holder { visitor: s, session: s }));
        clock.advance(MIN);
    }
    let c = pools.choose(
        &site,
        Some(&paid()),
        Some(&Holder {
            visitor: "s4",
            session: "s4",
        }),
    );
    assert!(matches!(
        c,
        Choice::Tracking {
            how: How::Session { shared: true, .. },
            ..
        }
    ));
    assert_eq!(number(&c), "+15550101001", "s1 was seen least recently");
    let t = clock.now_ms();
    let Held::Session { candidates, .. } = pools.who_held(&site, &first_number(&c), t) else {
        panic!()
    };
    let (conf, who) = grade(&candidates, t);
    assert_eq!(conf, Confidence::Shared);
    let sessions: Vec<&str> = who.iter().map(|r| r.session.as_str()).collect();
    assert_eq!(sessions, ["s4", "s1"]);
    assert_eq!(pools.stats(&set)[0].exhausted, 1);
}

/// Many tasks, small pools, random sessions and time steps: a number is never held by two
/// sessions at once (unless handed over), and every table stays consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_never_share_a_number() {
    for policy in ["overflow", "original"] {
        let mut site = rules("").sites[0].as_ref().clone();
        site.pools[0].exhausted = if policy == "overflow" {
            telswap::rules::Exhausted::Overflow
        } else {
            telswap::rules::Exhausted::Original
        };
        let set = RuleSet::from_sites(vec![site]);
        let site = set.sites[0].clone();
        let clock = ManualClock::new(0);
        let pools = Pools::new(&set, clock.clone(), Arc::new(NoJournal));
        let mut tasks = Vec::new();
        for task in 0..16u64 {
            let (pools, site, clock) = (pools.clone(), site.clone(), clock.clone());
            tasks.push(tokio::spawn(async move {
                let mut seed = task * 7919 + 1;
                let mut grants = Vec::new();
                for _ in 0..2000 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let s = format!("s{}", seed % 12);
                    if seed % 5 == 0 {
                        clock.advance(Duration::from_secs(seed % 400));
                    }
                    let c = pools.choose(
                        &site,
                        Some(&paid()),
                        Some(&Holder {
                            visitor: &s,
                            session: &s,
                        }),
                    );
                    if let Choice::Tracking {
                        how: How::Session { lease, shared },
                        number,
                        ..
                    } = c
                    {
                        assert!(!shared);
                        grants.push((lease, s, number.e164()));
                    }
                    if seed % 50 == 0 {
                        pools.check_invariants().unwrap();
                    }
                    if seed % 97 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                grants
            }));
        }
        let mut by_lease: HashMap<u64, (String, String)> = HashMap::new();
        for t in tasks {
            for (lease, s, n) in t.await.unwrap() {
                let prev = by_lease.insert(lease, (s.clone(), n.clone()));
                assert!(
                    prev.is_none_or(|p| p == (s, n)),
                    "lease {lease} given to two sessions or numbers"
                );
            }
        }
        pools.check_invariants().unwrap();
        let st = &pools.stats(&set)[0];
        assert!(st.peak_leased <= 3);
        assert!(st.exhausted > 0, "{policy}: the small pool should have run out");
    }
}

/// One site with one paid session pool of `numbers` (last four digits) and `settings` lines.
fn paid_pool(numbers: &[&str], settings: &str) -> RuleSet {
    let list: Vec<String> = numbers.iter().map(|n| format!("\"+1 555-010-{n}\"")).collect();
    let raw = format!(
        "hosts = [\"site.test\"]\nupstream = \"http://127.0.0.1:9\"\nnumbers = [\"+1 555-010-0000\"]\n\
         [[pool]]\nname = \"ads\"\nmode = \"session\"\nwhen.channel = [\"paid_search\"]\n\
         numbers = [{}]\n{settings}\n",
        list.join(", ")
    );
    load_sources(&[(PathBuf::from("site.toml"), raw)]).unwrap()
}

/// The number a paid visitor with session (and visitor) `s` is shown.
fn paid_number(pools: &Pools, set: &RuleSet, s: &str) -> String {
    number(&pools.choose(&set.sites[0], Some(&paid()), Some(&Holder { visitor: s, session: s })))
}

/// A reload that changes a pool's settings but not its numbers applies them at once and keeps
/// the live leases (and so each visitor's number); new numbers start a fresh table.
#[test]
fn a_reload_changes_settings_in_place_and_keeps_live_leases() {
    let with = |exhausted: &str, idle: &str| {
        paid_pool(
            &["1001", "1002"],
            &format!("idle_timeout = \"{idle}\"\nexhausted = \"{exhausted}\"\noverflow = \"+1 555-010-1999\""),
        )
    };
    let before = with("original", "30m");
    let clock = ManualClock::new(1_000_000);
    let pools = Pools::new(&before, clock.clone(), Arc::new(NoJournal));
    let choose = |set: &RuleSet, s: &str| paid_number(&pools, set, s);
    assert_eq!(choose(&before, "a"), "+15550101001");
    assert_eq!(choose(&before, "b"), "+15550101002");
    assert_eq!(choose(&before, "c"), "original", "exhausted = original");

    let after = with("overflow", "10m");
    pools.rules_changed(&after);
    assert_eq!(
        choose(&after, "d"),
        "+15550101999",
        "the new exhausted policy applies at once"
    );
    assert_eq!(choose(&after, "a"), "+15550101001", "a visitor keeps their number");
    assert_eq!(pools.stats(&after)[0].leased, 2);
    // The new idle timeout: b, not seen for 11 minutes, has lapsed (10, not 30); a, seen 6
    // minutes ago, has not.
    clock.advance(5 * MIN);
    assert_eq!(choose(&after, "a"), "+15550101001");
    clock.advance(6 * MIN);
    pools.tick();
    assert_eq!(pools.stats(&after)[0].leased, 1);
    assert_eq!(choose(&after, "e"), "+15550101002");
}

/// Numbers bought for a busy pool and added by a reload: the leases of the numbers kept stay
/// with their sessions, their history still answers a late call, a number taken out ends its
/// lease, and the new numbers are handed out first.
#[test]
fn a_reload_that_changes_the_numbers_keeps_the_leases_of_those_kept() {
    let with = |numbers: &[&str]| {
        paid_pool(
            numbers,
            "idle_timeout = \"30m\"\nmatch_window = \"2h\"\nexhausted = \"original\"",
        )
    };
    let before = with(&["1001", "1002", "1003"]);
    let clock = ManualClock::new(1_000_000);
    let pools = Pools::new(&before, clock.clone(), Arc::new(NoJournal));
    let choose = |set: &RuleSet, s: &str| paid_number(&pools, set, s);
    assert_eq!(choose(&before, "a"), "+15550101001");
    assert_eq!(choose(&before, "b"), "+15550101002");
    assert_eq!(choose(&before, "c"), "+15550101003");
    // c leaves; its number rests (released 30 minutes after its last view).
    clock.advance(31 * MIN);
    assert_eq!(choose(&before, "a"), "+15550101001");
    assert_eq!(choose(&before, "b"), "+15550101002");
    pools.tick();
    assert_eq!(pools.stats(&before)[0].leased, 2);

    // Two numbers bought (one listed first), 1002 taken out.
    let after = with(&["1004", "1001", "1003", "1005"]);
    pools.rules_changed(&after);
    pools.check_invariants().unwrap();
    assert_eq!(pools.stats(&after)[0].leased, 1, "1001's lease is kept, 1002's ended");
    assert_eq!(choose(&after, "a"), "+15550101001", "a keeps the number on its page");
    assert_eq!(choose(&after, "d"), "+15550101004", "a new number first");
    assert_eq!(choose(&after, "e"), "+15550101005");
    assert_eq!(
        choose(&after, "b"),
        "+15550101003",
        "b lost 1002 and gets the rested one"
    );
    // c's call, late, to the number it saw: its lease is still in the history.
    let site = &after.sites[0];
    let n3 = telswap::rewrite::PhoneNumber::parse("+1 555-010-1003", "US").unwrap();
    match pools.who_held(site, &n3, clock.now_ms() - 1) {
        Held::Session { candidates, .. } => {
            assert!(candidates.iter().any(|r| r.session == "c"), "{candidates:?}")
        }
        other => panic!("{other:?}"),
    }
    pools.check_invariants().unwrap();
}
