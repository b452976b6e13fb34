//! The `telswap simulate` command line: flags, and the report as text.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use super::{Options, Outcomes, Profile, Report, Shape, simulate};
use crate::rules::{Exhausted, parse_duration};

/// Flags of `telswap simulate`. Every flag has a default, so the bare command prints a report
/// for a typical small business's paid-search traffic.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Arrivals per hour in the busiest hour (the shape scales the other hours).
    #[arg(long, default_value_t = 120.0, value_parser = per_hour)]
    pub visitors_per_hour: f64,
    /// Daily shape of the arrival rate: business (quiet nights, busy 9–17) or flat.
    #[arg(long, default_value = "business", value_parser = Shape::parse)]
    pub shape: Shape,
    /// Days of traffic to simulate.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
    /// Mean session length in minutes, arrival to leaving (lognormal).
    #[arg(long, default_value_t = 4.0, value_parser = up_to_a_day)]
    pub session_minutes: f64,
    /// Mean minutes between page views (each view refreshes the lease).
    #[arg(long, default_value_t = 1.0, value_parser = between_pages)]
    pub page_minutes: f64,
    /// Share of visitors who call.
    #[arg(long, default_value_t = 0.1, value_parser = share_above_zero)]
    pub call_rate: f64,
    /// Share of callers who call after leaving the site.
    #[arg(long, default_value_t = 0.3, value_parser = share)]
    pub call_after_leave: f64,
    /// Mean minutes from leaving to calling, for those (exponential).
    #[arg(long, default_value_t = 15.0, value_parser = up_to_a_week)]
    pub call_delay_minutes: f64,
    /// Numbers in the pool [default: Nimbata's rule for the traffic].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub pool_size: Option<u64>,
    /// The pool's idle_timeout.
    #[arg(long, default_value = "30m", value_parser = duration)]
    pub idle_timeout: Duration,
    /// The pool's match_window.
    #[arg(long, default_value = "2h", value_parser = duration)]
    pub match_window: Duration,
    /// The pool's exhausted policy: reuse_oldest, overflow or original.
    #[arg(long, default_value = "reuse_oldest", value_parser = exhausted)]
    pub exhausted: Exhausted,
    /// Accuracy (share of calls attributed to the right session) the pool search aims for.
    #[arg(long, default_value_t = 0.95, value_parser = share_above_zero)]
    pub target: f64,
    /// Seed of the simulated traffic: the same seed gives the same report.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn number(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("{s:?} is not a number"))
}

/// A number above `low` and at most `high`: the simulation holds every visit and page view in
/// memory, so a rate or a length without a bound could fill it (a billion visitors an hour
/// aborted on a 1.6 GB allocation).
fn bounded(s: &str, low: f64, high: f64) -> Result<f64, String> {
    number(s).and_then(|x| {
        if x > low && x <= high {
            Ok(x)
        } else {
            Err(format!("{s} must be above {low} and at most {high}"))
        }
    })
}

fn per_hour(s: &str) -> Result<f64, String> {
    bounded(s, 0.0, 100_000.0)
}

fn up_to_a_day(s: &str) -> Result<f64, String> {
    bounded(s, 0.0, 1440.0)
}

fn between_pages(s: &str) -> Result<f64, String> {
    bounded(s, 0.01, 1440.0)
}

fn up_to_a_week(s: &str) -> Result<f64, String> {
    number(s).and_then(|x| {
        if (0.0..=10_080.0).contains(&x) {
            Ok(x)
        } else {
            Err(format!("{s} must be from 0 to 10080"))
        }
    })
}

fn share(s: &str) -> Result<f64, String> {
    number(s).and_then(|x| {
        if (0.0..=1.0).contains(&x) {
            Ok(x)
        } else {
            Err(format!("{s} must be a share between 0 and 1 (e.g. 0.3)"))
        }
    })
}

fn share_above_zero(s: &str) -> Result<f64, String> {
    share(s).and_then(|x| {
        if x > 0.0 {
            Ok(x)
        } else {
            Err(format!("{s} must be above 0"))
        }
    })
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn exhausted(s: &str) -> Result<Exhausted, String> {
    match s {
        "reuse_oldest" => Ok(Exhausted::ReuseOldest),
        "overflow" => Ok(Exhausted::Overflow),
        "original" => Ok(Exhausted::Original),
        _ => Err(format!(
            "unknown policy {s:?}: expected reuse_oldest, overflow or original"
        )),
    }
}

impl SimulateArgs {
    pub fn options(&self) -> Options {
        Options {
            profile: Profile {
                visitors_per_hour: self.visitors_per_hour,
                shape: self.shape,
                days: self.days,
                session_minutes: self.session_minutes,
                page_minutes: self.page_minutes,
                call_rate: self.call_rate,
                call_after_leave: self.call_after_leave,
                call_delay_minutes: self.call_delay_minutes,
            },
            seed: self.seed,
            pool_size: self.pool_size.map(|n| n as usize),
            idle_timeout: self.idle_timeout,
            match_window: self.match_window,
            exhausted: self.exhausted,
            target: self.target,
        }
    }
}

/// The most page views a simulation may hold (about 100 bytes each, and each pool size tried
/// replays them all): past it, `cli` refuses with the figure rather than run for hours.
pub const MAX_VIEWS: f64 = 5_000_000.0;

impl SimulateArgs {
    /// Roughly how many page views the traffic makes (the busiest hour's rate all day: an upper
    /// bound for any daily shape).
    pub fn views(&self) -> f64 {
        self.visitors_per_hour * 24.0 * f64::from(self.days) * (self.session_minutes / self.page_minutes + 1.0)
    }
}

/// Runs `telswap simulate` and prints the report.
pub fn cli(args: &SimulateArgs) -> ExitCode {
    let views = args.views();
    if views > MAX_VIEWS {
        eprintln!(
            "telswap simulate: this traffic makes about {views:.0} page views, more than the {MAX_VIEWS:.0} one run holds; \
             lower --days, --visitors-per-hour or --session-minutes (or raise --page-minutes)"
        );
        return ExitCode::from(2);
    }
    print!("{}", render(&simulate(&args.options())));
    ExitCode::SUCCESS
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn exhausted_name(e: Exhausted) -> &'static str {
    match e {
        Exhausted::ReuseOldest => "reuse_oldest",
        Exhausted::Overflow => "overflow",
        Exhausted::Original => "original",
    }
}

fn human(d: Duration) -> String {
    let m = d.as_secs() / 60;
    match (m / 60, m % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// Picks one outcome class's count.
type Class = fn(&Outcomes) -> u64;

/// The report as the command prints it.
pub fn render(r: &Report) -> String {
    let o = &r.options;
    let p = &o.profile;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "telswap simulate: seed {}, {} days, {} shape, {} visitors/hour in the busiest hour",
        o.seed,
        p.days,
        p.shape.as_str(),
        p.visitors_per_hour
    );
    let _ = writeln!(
        s,
        "traffic: {} visitors ({:.0} a day), {} calls ({} of visitors; {} of calls after leaving, mean delay {} min)",
        r.visitors,
        r.daily_visitors,
        r.calls,
        pct(r.calls as f64 / r.visitors.max(1) as f64),
        pct(r.calls_after_leaving as f64 / r.calls.max(1) as f64),
        p.call_delay_minutes
    );
    let _ = writeln!(
        s,
        "         busiest clock hour {} visitors; peak concurrent visitors {}; mean session {:.1} min",
        r.peak_hour_visitors, r.peak_concurrent, r.mean_session_minutes
    );
    let _ = writeln!(
        s,
        "pool: {} numbers ({}), idle_timeout {}, match_window {}, exhausted {}",
        r.size,
        r.size_from,
        human(o.idle_timeout),
        human(o.match_window),
        exhausted_name(o.exhausted)
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "{:<44} {:>9} {:>9}", "calls", "ours", "naive");
    let rows: [(&str, Class); 6] = [
        ("right session, exact", |x| x.exact),
        ("right session, late (after release)", |x| x.late),
        ("shared, caller ranked first", |x| x.shared_first),
        ("shared, another session ranked first", |x| x.shared_other),
        ("wrong session", |x| x.wrong),
        ("none (overflow, original, out of window)", |x| x.none),
    ];
    for (name, f) in rows {
        let _ = writeln!(
            s,
            "{:<44} {:>9} {:>9}",
            name,
            pct(r.ours.share(f(&r.ours))),
            pct(r.naive.share(f(&r.naive)))
        );
    }
    let _ = writeln!(
        s,
        "{:<44} {:>9} {:>9}",
        "= attributed to the right session",
        pct(r.ours.accuracy()),
        pct(r.naive.accuracy())
    );
    let _ = writeln!(
        s,
        "{:<44} {:>9} {:>9}",
        "peak leases held at once", r.ours.peak_leased, r.naive.peak_leased
    );
    let _ = writeln!(
        s,
        "{:<44} {:>9} {:>9}",
        "page views finding the pool exhausted", r.ours.exhausted, r.naive.exhausted
    );
    let _ = writeln!(s);
    let found = |n: Option<usize>| n.map_or_else(|| "not reached".to_string(), |n| n.to_string());
    let _ = writeln!(
        s,
        "smallest pool reaching {} right session: ours {}, naive {}",
        pct(o.target),
        found(r.smallest_ours),
        found(r.smallest_naive)
    );
    if let Some(ratio) = r.ratio() {
        let _ = writeln!(s, "ours needs {} of the numbers the naive policy needs", pct(ratio));
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "smallest pool reaching {} by idle_timeout {:>6} {:>9}   right at Nimbata's {}",
        pct(o.target),
        "ours",
        "naive",
        r.nimbata().map_or(0, |x| x.size)
    );
    for b in &r.by_idle {
        let mark = if b.idle_timeout == o.idle_timeout {
            " (asked)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  idle_timeout {:<24} {:>9} {:>9}   {:>9}",
            format!("{}{mark}", human(b.idle_timeout)),
            found(b.ours),
            found(b.naive),
            pct(b.at_nimbata)
        );
    }
    if let Some((a, ai, n, ni)) = r.best_settings() {
        let _ = writeln!(
            s,
            "each at its best: ours {a} numbers (idle_timeout {}), naive {n} (idle_timeout {}): {}",
            human(ai),
            human(ni),
            pct(a as f64 / n as f64)
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<22} {:>8} {:>16} {:>16} {:>14}",
        "sizing rule", "numbers", "right (ours)", "right (naive)", "ceiling"
    );
    for rule in &r.rules {
        let _ = writeln!(
            s,
            "{:<22} {:>8} {:>16} {:>16} {:>14}",
            rule.rule,
            rule.label,
            pct(rule.ours),
            pct(rule.naive),
            pct(rule.ceiling)
        );
    }
    let _ = writeln!(
        s,
        "ceiling: the most any lease policy can get right at that size when a call is told apart by"
    );
    let _ = writeln!(
        s,
        "         number and time alone (N numbers among C visitors on the site: at best N/C)"
    );
    let _ = writeln!(s);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if let Some((a, ceiling)) = r.at_nimbata() {
        let _ = writeln!(
            s,
            "aim: >= 95% right session at Nimbata's size: {} ({}; no policy can exceed {} there)",
            verdict(a >= 0.95),
            pct(a),
            pct(ceiling)
        );
        if let Some((idle, best)) = r.nimbata_best() {
            let _ = writeln!(
                s,
                "     at Nimbata's size with its best idle_timeout ({}): {} ({})",
                human(idle),
                verdict(best >= 0.95),
                pct(best)
            );
        }
    }
    match r.ratio() {
        Some(ratio) => {
            let _ = writeln!(
                s,
                "aim: ours reaches {} with <= 60% of naive's numbers: {} ({})",
                pct(o.target),
                verdict(ratio <= 0.6),
                pct(ratio)
            );
        }
        None => {
            let _ = writeln!(s, "aim: ours vs naive: target not reached by both, no ratio");
        }
    }
    if let Some((a, _, n, _)) = r.best_settings() {
        let ratio = a as f64 / n as f64;
        let _ = writeln!(
            s,
            "aim, each policy at its best idle_timeout: {} ({})",
            verdict(ratio <= 0.6),
            pct(ratio)
        );
    }
    s
}
