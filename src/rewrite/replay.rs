//! Replays: the byte-level engine's rewrite of a page, kept to answer the next response whose
//! bytes are the same without reading them again.
//!
//! Why: most pages a DNI proxy serves (ad landing pages, a CMS's cached pages) come from the
//! origin byte for byte the same on every request; visitors differ only in the number written
//! into them. The engine's output is a function of the page's bytes, the site's rules and the
//! number, whatever the chunking (`tests/chunking.rs`, `tests/engines.rs` hold it to that), so for
//! a response whose bytes equal a recorded one the output is the recorded output. Comparing a
//! 19 KB page costs about a microsecond; reading its 500 tags costs tens (benches/RESULTS.md).
//!
//! How it stays exact:
//! - A recording is made by the engine itself, on a response it rewrote, and kept under the
//!   site's rules ([`PageRules`] instance), the page's host and path, and the number. The key
//!   only says which recording to try: nothing is assumed from it. Each chunk of the response is
//!   compared with the recording as it arrives.
//! - The recording keeps how its bytes were cut into the engine's writes (pieces of at most
//!   [`PIECE`] bytes) and *clean points*: offsets after a write where the engine had nothing held
//!   back (no tag cut by the edge, no candidate number pending), so its output up to there was
//!   final. A replay sends output only up to clean points.
//! - At the first chunk that differs (or a page longer or shorter than the recording), an engine
//!   is resumed at the last clean point sent, from the recording's snapshot of the engine's state
//!   there (`fast::Snapshot`: mode, open elements, namespaces, look-back bytes), and reads
//!   the recorded bytes that matched after it, cut into the recording's own pieces, then the rest
//!   of the response. From the same state and the same bytes the engine writes the same output,
//!   so its output follows on exactly from what was sent: the visitor gets the bytes of one
//!   engine run over their response, and only the part after the first difference is read.
//! - And not all of it: at each of the recording's clean points after the difference, if the
//!   engine stands in the recorded state (same mode, open elements, look-back bytes...), what it
//!   would write for the recorded bytes from there is the recorded output, so the replay takes
//!   over again, comparing as before. A token or timestamp of the same length that changes on
//!   every response costs the engine a kilobyte or so around it, not the rest of the page.
//! - A change of length (a counter that grew a digit, a banner that came or went) moves the rest
//!   of the page: where the response's next bytes are not the recording's at a clean point, they
//!   are looked for in the recording nearby ([`REALIGN_REACH`]), and the recording's clean points
//!   are then tried that far further on or back in the response. The same two conditions decide
//!   a rejoin, so a wrong guess costs time, never bytes.
//! - Bytes that matched past the last clean point are held only while the origin keeps sending:
//!   if it pauses ([`HOLD_WAIT`]), the engine takes over there and sends what it can, as it would
//!   have without the recording.
//! - A page that differs before its first clean point on the very next response, with nothing
//!   of it answered from the recording in the end, is marked volatile: the engine alone rewrites
//!   it, and every [`VOLATILE_RETRY`]th response records it again, so a page that changes
//!   throughout on every request costs a lookup, not a copy, per response. A page that differs
//!   in places (a timestamp, a form's token) is replayed around them every time and recorded
//!   again every [`VOLATILE_RETRY`]th time; one that was replayed whole and then differs has
//!   changed, and is recorded again from the difference at once.
//!
//! Memory: recordings are weighed by their bytes (snapshots included) in one bounded cache (LRU-like eviction,
//! moka); pages above [`MAX_PAGE`] (or the site's rewrite memory limit, so that a bail-out never
//! depends on the chunking) are never recorded. `telswap serve --replay-cache-mb` sets the
//! bound, 0 turns replays off.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::fast::{Exclude, FastRewriter, Snapshot};
use super::html::{PageRules, PageStats};
use super::matcher::{NumberMatcher, Replacement};

/// The cache's bound when `serve` does not set one, in bytes.
pub const DEFAULT_CAPACITY: u64 = 64 << 20;

/// Pages larger than this are not recorded: a recording holds the page twice (as it came and as
/// rewritten), and large pages are few.
pub const MAX_PAGE: usize = 1 << 20;

/// A volatile page is recorded again on every this-many-th response.
pub const VOLATILE_RETRY: u32 = 32;

/// A recording feeds the engine pieces of at most this many bytes, so that clean points (where a
/// replay can send up to) come often: a replay holds back about this much at most.
pub const PIECE: usize = 1024;

/// Clean points are kept at least this far apart (bounds the list).
const CLEAN_SPACING: usize = 512;

/// A recording's snapshots of the engine's state may weigh this much plus half its page; a clean
/// point past that is not kept. Each snapshot copies the open elements, so on a page that leaves
/// thousands of elements open (`<p>` after `<p>` never closed) they would otherwise cost
/// hundreds of times the page (a reviewer measured 450 MB for a 1 MB page).
const SNAPSHOT_ALLOWANCE: usize = 4096;

/// A recording weighing more than this share of the cache is not kept: it would push out many
/// others to be kept at all.
const MAX_SHARE: u64 = 4;

/// A recording cut into more writes than this (an origin trickling bytes) is not kept.
const MAX_PIECES: usize = 4096;

/// How long a replay holds matched bytes it cannot send yet when the origin pauses, before the
/// engine takes over.
pub const HOLD_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// How far from where a rejoin expected a recorded clean point the response's next bytes are
/// looked for in the recording, when a change of length has moved the rest of the page (a
/// counter grew a digit, a banner came or went): up to this many bytes either way.
const REALIGN_REACH: usize = 4096;

/// Response bytes looked for when realigning; fewer (a chunk ending) are not looked for.
const REALIGN_NEEDLE: usize = 64;

/// Keys longer than this (a huge query string) are not replayed.
const MAX_KEY: usize = 2048;

static CAPACITY: AtomicU64 = AtomicU64::new(DEFAULT_CAPACITY);
static REPLAYS: OnceLock<Option<Replays>> = OnceLock::new();

/// Sets the cache's bound in bytes (0: no replays). Takes effect only before the first page is
/// rewritten (`telswap serve` calls it at start-up, as [`super::set_engine`]).
pub fn set_capacity(bytes: u64) {
    CAPACITY.store(bytes, Ordering::Relaxed);
}

/// The process's recordings (`None`: replays are off).
pub fn replays() -> Option<&'static Replays> {
    REPLAYS
        .get_or_init(|| {
            let bytes = CAPACITY.load(Ordering::Relaxed);
            (bytes > 0).then(|| Replays::new(bytes))
        })
        .as_ref()
}

/// Which recording a response may replay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// [`PageRules::id`]: rules reloaded are other rules.
    rules: u64,
    /// Host and path with query, as the visitor asked.
    page: Box<str>,
    /// The number written in.
    number: Box<str>,
}

impl Key {
    /// `None` for a page name longer than [`MAX_KEY`].
    pub fn new(rules: &PageRules, page: Box<str>, to: &Replacement) -> Option<Key> {
        let n = to.number();
        (page.len() <= MAX_KEY).then(|| Key {
            rules: rules.id(),
            page,
            number: format!("+{}{}", n.cc, n.nsn).into(),
        })
    }

    fn weight(&self) -> usize {
        self.page.len() + self.number.len() + size_of::<Key>()
    }
}

/// An offset where the recording's engine held nothing back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clean {
    /// Page bytes read.
    input: usize,
    /// Output bytes written for them.
    output: usize,
    /// Numbers swapped in that output.
    swapped: usize,
}

const START: Clean = Clean {
    input: 0,
    output: 0,
    swapped: 0,
};

/// One rewritten page.
#[derive(Debug)]
pub struct Recording {
    input: Vec<u8>,
    output: Vec<u8>,
    /// Where each of the engine's writes ended, in `input`.
    pieces: Vec<u32>,
    /// Increasing; the first is [`START`], the last the page's end.
    clean: Vec<Clean>,
    /// The engine's state at each clean point (shared with the recordings made from this one's
    /// prefix).
    states: Vec<Arc<Snapshot>>,
    /// Responses answered from it whole.
    hits: AtomicU64,
    /// Responses that differed from it after some clean point and were resumed there (the count
    /// says when to record again, as for a volatile page).
    resumes: AtomicU32,
}

impl Recording {
    /// How many of its writes end at or before `input`.
    fn pieces_upto(&self, input: usize) -> usize {
        self.pieces.partition_point(|&end| end as usize <= input)
    }
}

#[derive(Debug)]
enum Entry {
    Page(Recording),
    /// Differed on the response after it was recorded; the count says when to record again.
    Volatile(AtomicU32),
}

impl Entry {
    fn weight(&self) -> usize {
        let bytes = match self {
            Entry::Page(r) => {
                r.input.len()
                    + r.output.len()
                    + r.pieces.len() * 4
                    + r.clean.len() * size_of::<Clean>()
                    + r.states
                        .iter()
                        .map(|s| s.bytes() + size_of::<Arc<Snapshot>>())
                        .sum::<usize>()
            }
            Entry::Volatile(_) => 0,
        };
        bytes + 128
    }
}

/// The recordings, bounded by their bytes.
pub struct Replays {
    cache: moka::sync::Cache<Key, Arc<Entry>>,
    capacity: u64,
}

impl std::fmt::Debug for Replays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replays({} entries)", self.cache.entry_count())
    }
}

/// What a response starts as.
enum Start {
    Replay(Arc<Entry>),
    Record,
    Engine,
}

impl Replays {
    pub fn new(capacity_bytes: u64) -> Replays {
        Replays {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|k: &Key, e: &Arc<Entry>| u32::try_from(k.weight() + e.weight()).unwrap_or(u32::MAX))
                .build(),
            capacity: capacity_bytes,
        }
    }

    fn start(&self, key: &Key) -> Start {
        match self.cache.get(key) {
            None => Start::Record,
            Some(e) => match &*e {
                Entry::Page(_) => Start::Replay(e),
                Entry::Volatile(n) if n.fetch_add(1, Ordering::Relaxed) % VOLATILE_RETRY == VOLATILE_RETRY - 1 => {
                    Start::Record
                }
                Entry::Volatile(_) => Start::Engine,
            },
        }
    }

    fn keep(&self, key: Key, rec: Recording) {
        let entry = Entry::Page(rec);
        if ((key.weight() + entry.weight()) as u64).saturating_mul(MAX_SHARE) > self.capacity {
            return;
        }
        self.cache.insert(key, Arc::new(entry));
    }

    fn mark_volatile(&self, key: Key) {
        self.cache.insert(key, Arc::new(Entry::Volatile(AtomicU32::new(0))));
    }
}

/// What the byte-level engine is built from (again, when a replay falls back).
#[derive(Clone)]
pub(crate) struct EngineArgs {
    pub matcher: Arc<NumberMatcher>,
    pub to: Arc<Replacement>,
    pub exclude: Arc<Exclude>,
    pub limit: usize,
    pub stats: Arc<PageStats>,
}

impl EngineArgs {
    fn engine(&self) -> FastRewriter {
        FastRewriter::new(
            self.matcher.clone(),
            self.to.clone(),
            self.exclude.clone(),
            self.limit,
            self.stats.clone(),
        )
    }
}

/// A recording being made.
struct Recorder {
    key: Key,
    input: Vec<u8>,
    output: Vec<u8>,
    pieces: Vec<u32>,
    clean: Vec<Clean>,
    states: Vec<Arc<Snapshot>>,
    /// What `states` weigh ([`SNAPSHOT_ALLOWANCE`]).
    state_bytes: usize,
}

/// A recording being replayed.
struct Replaying {
    entry: Arc<Entry>,
    key: Key,
    /// Page bytes that matched so far.
    matched: usize,
    /// The last clean point whose output was sent.
    sent: usize,
    /// Where in the page this stretch of replaying began (0, or where it rejoined the recording).
    from: usize,
    /// It began after a realignment: its bytes count as realigned ones.
    realigned: bool,
}

/// While the engine reads a response that differed from a recording: the recording, to go back
/// to at its next clean point where the engine stands in the recorded state (a token or a
/// timestamp of the same length changes a few bytes, and the rest of the page is the recording's
/// again).
struct Rejoin {
    entry: Arc<Entry>,
    key: Key,
    /// The next clean point to try.
    next: usize,
    /// Clean points in a row where the bytes ahead were not the recording's and no realignment
    /// was found: the search is made at the 1st, 2nd, 4th, 8th... of them, so a response whose
    /// rest is unlike the recording costs a few searches, not one per clean point.
    misses: u32,
    /// A realignment was found since this rejoin began.
    moved: bool,
}

/// Where `ahead` (the response's next bytes, expected at `q`) stands in `input`, nearest to `q`
/// within [`REALIGN_REACH`], other than at `q`; `None` for a needle too short to tell.
fn realign(input: &[u8], q: usize, ahead: &[u8]) -> Option<usize> {
    if ahead.len() < REALIGN_NEEDLE || q > input.len() {
        return None;
    }
    let finder = memchr::memmem::Finder::new(ahead);
    let after = (q + 1).min(input.len());
    let later = finder
        .find(&input[after..(q + REALIGN_REACH + ahead.len()).min(input.len())])
        .map(|k| after + k);
    // The last match before `q`: forward, where memchr's vectorised prefilter runs (its reverse
    // search has none, and cost most of the time on pages unlike their recording).
    let lo = q.saturating_sub(REALIGN_REACH);
    let earlier = finder
        .find_iter(&input[lo..(q + ahead.len() - 1).min(input.len())])
        .last()
        .map(|k| lo + k);
    match (earlier, later) {
        (Some(e), Some(l)) => Some(if q - e <= l - q { e } else { l }),
        (e, l) => e.or(l),
    }
}

/// Adds `bytes` answered from a recording to `from_recording`; a stretch that began after a
/// realignment (`realigned`) marks the response as realigned.
fn answered(from_recording: &mut usize, stats: &PageStats, bytes: usize, realigned: bool) {
    *from_recording += bytes;
    if realigned && bytes > 0 {
        stats.realigned.store(true, Ordering::Relaxed);
    }
}

/// How many bytes `a` and `b` have in common at their start (compared a block at a time: the
/// block compare is a `memcmp`).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 64;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn page_of(entry: &Entry) -> &Recording {
    match entry {
        Entry::Page(r) => r,
        Entry::Volatile(_) => unreachable!("only pages are replayed"),
    }
}

/// The byte-level engine of one response, with its recording or replay.
pub(crate) struct Run {
    args: EngineArgs,
    replays: Option<&'static Replays>,
    engine: Option<FastRewriter>,
    replay: Option<Replaying>,
    rejoin: Option<Rejoin>,
    recorder: Option<Recorder>,
    /// Replayed output (and the engine's, when it hands back to a replay) not yet taken.
    out: Vec<u8>,
    /// Response bytes read so far, replayed or by the engine.
    pos: usize,
    /// Where a recording's bytes stand in this response: response offset minus recording
    /// offset, for the stretch being replayed or rejoined. Zero until a change of length is
    /// realigned ([`Run::try_rejoin`]).
    shift: isize,
    /// Added to a recording's count of swapped numbers at a clean point to get this response's:
    /// what the engine swapped differs from the recording's once they have read different bytes.
    swapped_offset: isize,
    /// Page bytes answered from a recording so far (the stretches before each fall-back).
    from_recording: usize,
    /// An engine read part of this response: it was not a whole replay.
    diverged: bool,
    /// The response's bytes differed from a recording (not only the origin pausing).
    differed: bool,
    /// Differed at once from a recording never replayed whole: marked volatile at the end unless
    /// some of the response was answered from the recording after all.
    volatile: Option<Key>,
    ended: bool,
}

impl Run {
    /// The engine alone.
    pub(crate) fn engine(args: EngineArgs) -> Run {
        let engine = args.engine();
        Run {
            engine: Some(engine),
            ..Run::bare(args, None)
        }
    }

    /// Nothing started yet: the constructors set what this response starts as.
    fn bare(args: EngineArgs, replays: Option<&'static Replays>) -> Run {
        Run {
            args,
            replays,
            engine: None,
            replay: None,
            rejoin: None,
            recorder: None,
            out: Vec::new(),
            pos: 0,
            shift: 0,
            swapped_offset: 0,
            from_recording: 0,
            diverged: false,
            differed: false,
            volatile: None,
            ended: false,
        }
    }

    /// Replays `key`'s recording if there is one, else the engine, recording the page.
    pub(crate) fn keyed(args: EngineArgs, key: Key, replays: &'static Replays) -> Run {
        let mut run = Run::bare(args, Some(replays));
        match replays.start(&key) {
            Start::Replay(entry) => {
                run.replay = Some(Replaying {
                    entry,
                    key,
                    matched: 0,
                    sent: 0,
                    from: 0,
                    realigned: false,
                })
            }
            Start::Record => {
                let engine = run.args.engine();
                run.recorder = Some(Recorder::new(key, Arc::new(engine.snapshot())));
                run.engine = Some(engine);
            }
            Start::Engine => run.engine = Some(run.args.engine()),
        }
        run
    }

    pub(crate) fn write(&mut self, mut chunk: &[u8]) {
        if self.ended {
            return;
        }
        while !chunk.is_empty() {
            if let Some(r) = &mut self.replay {
                let (at, input) = (r.matched, &page_of(&r.entry).input);
                if input.get(at..at + chunk.len()) == Some(chunk) {
                    r.matched += chunk.len();
                    self.pos += chunk.len();
                    self.send_upto_matched();
                    return;
                }
                // The chunk's bytes before the difference still match: the engine resumes at
                // the last clean point before the difference, not before the chunk.
                let same = common_prefix(&input[at.min(input.len())..], chunk);
                r.matched += same;
                self.pos += same;
                self.send_upto_matched();
                self.fall_back(true);
                chunk = &chunk[same..];
                continue;
            }
            // Up to the recording's next clean point, where the engine may hand back to it.
            let Some(rj) = &self.rejoin else {
                break;
            };
            let rec = page_of(&rj.entry);
            let (j, q) = (rj.next, self.shifted(rec.clean[rj.next].input));
            let take = (q - self.pos).min(chunk.len());
            // The engine took over at an origin pause, not at a difference: one it reads here is
            // the response's first (the policy at a first difference, in `fall_back`, assumes the
            // bytes before it were the recording's). Until then `shift` is 0 (a realignment
            // follows a difference), so `pos` is also the recording's offset.
            self.differed = self.differed || rec.input.get(self.pos..self.pos + take) != Some(&chunk[..take]);
            self.write_piece(&chunk[..take]);
            self.pos += take;
            chunk = &chunk[take..];
            if self.pos == q {
                self.try_rejoin(j, chunk);
            }
        }
        if chunk.is_empty() {
            return;
        }
        self.pos += chunk.len();
        // Small pieces while recording, for clean points close together (see PIECE), each cut
        // after a tag's `>` where there is one in its second half: there the engine holds
        // nothing back (no tag cut open, no number pending), so nearly every piece ends on a
        // clean point. The rest in one write once the recording is given up, as the engine alone
        // would read it.
        while self.recorder.is_some() && chunk.len() > PIECE {
            let cut = memchr::memrchr(b'>', &chunk[PIECE / 2..PIECE]).map_or(PIECE, |k| PIECE / 2 + k + 1);
            self.write_piece(&chunk[..cut]);
            chunk = &chunk[cut..];
        }
        self.write_piece(chunk);
    }

    /// The engine stands at the recording's clean point `j`: if it is in the recorded state
    /// there, what it would write from here for the recorded bytes is the recorded output, so the
    /// replay takes over again (its output after the engine's). Else the next clean point is
    /// tried, and past the last one the engine reads the rest alone. `ahead`: the response's
    /// bytes after this point in the chunk at hand; when they already differ from the
    /// recording's, the replay would fall back at once, so it is not tried. If they are found in
    /// the recording nearby instead, a change of length has moved the rest of the page: the
    /// recording's clean points are looked for that much further on (or back) in the response.
    /// A wrong guess (the bytes repeat in the page) costs only a later try: a rejoin still needs
    /// the recorded state and the same bytes ahead, and the replay the same bytes after it.
    fn try_rejoin(&mut self, j: usize, ahead: &[u8]) {
        let rj = self.rejoin.as_mut().expect("rejoining");
        let rec = page_of(&rj.entry);
        let engine = self.engine.as_mut().expect("the engine reads while rejoining");
        let q = rec.clean[j].input;
        let ahead = &ahead[..ahead.len().min(REALIGN_NEEDLE)];
        let same_ahead = rec.input.get(q..q + ahead.len()) == Some(ahead);
        if !same_ahead || !engine.state_is(&rec.states[j]) {
            let search = !same_ahead && (rj.misses == 0 || rj.misses.is_power_of_two());
            if !same_ahead {
                // (After an origin pause the engine may be the first to see a difference.)
                self.differed = true;
            }
            match if search { realign(&rec.input, q, ahead) } else { None } {
                Some(h) => {
                    // The response is here (at `q` as things stood), the recording at `h`; a
                    // clean point at `h` itself is tried at once.
                    self.shift += q as isize - h as isize;
                    rj.moved = true;
                    rj.misses = 0;
                    rj.next = rec.clean.partition_point(|c| c.input < h);
                }
                None => {
                    rj.misses += u32::from(!same_ahead);
                    rj.next += 1;
                }
            }
            if rj.next + 1 >= rec.clean.len() {
                // The page's end is not a point to rejoin at: the engine ends the page itself.
                self.rejoin = None;
            }
            return;
        }
        let Rejoin { entry, key, moved, .. } = self.rejoin.take().expect("rejoining");
        let mut engine = self.engine.take().expect("the engine reads while rejoining");
        self.out.extend_from_slice(&engine.take_output());
        let rec = page_of(&entry);
        let swapped = self.args.stats.swapped.load(Ordering::Relaxed);
        self.swapped_offset = swapped as isize - rec.clean[j].swapped as isize;
        self.replay = Some(Replaying {
            entry,
            key,
            matched: q,
            sent: j,
            from: q,
            realigned: moved,
        });
    }

    pub(crate) fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if let Some(r) = &self.replay {
            let rec = page_of(&r.entry);
            if r.matched == rec.input.len() {
                let last = *rec.clean.last().expect("a recording ends with its end");
                let from = rec.clean[r.sent].output;
                self.out.extend_from_slice(&rec.output[from..]);
                answered(
                    &mut self.from_recording,
                    &self.args.stats,
                    rec.input.len() - r.from,
                    r.realigned,
                );
                let stats = &self.args.stats;
                stats.swapped.store(self.swapped_at(&last), Ordering::Relaxed);
                stats.replayed_bytes.store(self.from_recording, Ordering::Relaxed);
                if !self.diverged {
                    stats.replayed.store(true, Ordering::Relaxed);
                }
                if !self.differed {
                    // The same bytes as the recording (the origin may have paused on the way).
                    rec.hits.fetch_add(1, Ordering::Relaxed);
                }
                self.replay = None;
                self.settle_volatile();
                return;
            }
            self.fall_back(true);
        }
        self.rejoin = None;
        self.settle_volatile();
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        engine.end();
        if let Some(rec) = &mut self.recorder {
            rec.mark(engine, &self.args.stats, true);
        }
    }

    /// A page that differed at once from a recording never replayed whole, with nothing of it
    /// answered from the recording in the end, is most likely different every time.
    fn settle_volatile(&mut self) {
        if let Some(key) = self.volatile.take()
            && self.from_recording == 0
            && let Some(replays) = self.replays
        {
            replays.mark_volatile(key);
        }
    }

    /// A recording's offset as this response's.
    fn shifted(&self, input: usize) -> usize {
        usize::try_from(input as isize + self.shift).expect("a recording's bytes stand within the response")
    }

    /// A count of swapped numbers at a recording's clean point, as this response's.
    fn swapped_at(&self, c: &Clean) -> usize {
        usize::try_from(c.swapped as isize + self.swapped_offset).unwrap_or(0)
    }

    /// Whether a replay holds matched bytes it cannot send yet (past the last clean point): the
    /// caller gives the origin [`HOLD_WAIT`] to send more, then calls [`Run::settle`].
    pub(crate) fn holds(&self) -> bool {
        self.replay
            .as_ref()
            .is_some_and(|r| r.matched > page_of(&r.entry).clean[r.sent].input)
    }

    /// The origin paused while a replay held bytes: the engine takes over and sends what it can.
    pub(crate) fn settle(&mut self) {
        if self.holds() {
            self.fall_back(false);
        }
    }

    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        let Some(engine) = &mut self.engine else {
            return std::mem::take(&mut self.out);
        };
        let written = engine.take_output();
        if let Some(rec) = &mut self.recorder {
            rec.output.extend_from_slice(&written);
        }
        if self.ended {
            self.finish_recording();
        }
        if self.out.is_empty() {
            written
        } else {
            let mut out = std::mem::take(&mut self.out);
            out.extend_from_slice(&written);
            out
        }
    }

    /// Sends the recording's output up to the last clean point the matched bytes reach (the
    /// page's end is sent by [`Run::end`]: more bytes may still come).
    fn send_upto_matched(&mut self) {
        let r = self.replay.as_mut().expect("replaying");
        let rec = page_of(&r.entry);
        let before = r.sent;
        let last_mid = rec.clean.len() - 1;
        while r.sent + 1 < last_mid && rec.clean[r.sent + 1].input <= r.matched {
            r.sent += 1;
        }
        if r.sent > before {
            let sent = rec.clean[r.sent];
            self.out
                .extend_from_slice(&rec.output[rec.clean[before].output..sent.output]);
            self.args.stats.swapped.store(self.swapped_at(&sent), Ordering::Relaxed);
        }
    }

    /// The response differs from the recording (`differs`), or the origin paused where the
    /// recording cannot be sent: an engine resumed at the last clean point sent (from the
    /// recording's snapshot of its state there) reads the rest of what matched, in the
    /// recording's own pieces, and then what comes, until it can hand back to the recording
    /// ([`Run::try_rejoin`]). Nothing before that point is read again, and what the engine
    /// writes starts where the sent output ends.
    fn fall_back(&mut self, differs: bool) {
        let r = self.replay.take().expect("replaying");
        let rec = page_of(&r.entry);
        let sent = rec.clean[r.sent];
        answered(
            &mut self.from_recording,
            &self.args.stats,
            sent.input - r.from,
            r.realigned,
        );
        self.diverged = true;
        // The policy below is decided at a response's first difference (not again at each, nor
        // when the origin only paused).
        let first = differs && !std::mem::replace(&mut self.differed, true);
        if first && self.replays.is_some() {
            // (So far this response's bytes were the recording's: its counts are too.)
            debug_assert_eq!((self.shift, self.swapped_offset), (0, 0));
            if rec.hits.load(Ordering::Relaxed) > 0 {
                // It was the same for a while: the page changed. Record the new one, whose
                // bytes up to here are this one's.
                self.recorder = Some(Recorder::from_prefix(r.key.clone(), rec, r.sent));
            } else if rec.resumes.fetch_add(1, Ordering::Relaxed) % VOLATILE_RETRY == VOLATILE_RETRY - 1 {
                // Different on every response, maybe (a token, a timestamp): read from the
                // difference each time, and now and then recorded again in case the page has
                // changed for good.
                self.recorder = Some(Recorder::from_prefix(r.key.clone(), rec, r.sent));
            } else if self.from_recording == 0 && self.volatile.is_none() {
                // Different before its first clean point on the response right after it was
                // recorded: unless the rest is the recording's again, nothing of it to reuse.
                self.volatile = Some(r.key.clone());
            }
        }
        let mut engine = self.args.engine();
        engine.resume(&rec.states[r.sent]);
        self.engine = Some(engine);
        // What was sent counts; the engine adds what it swaps from here.
        self.args.stats.swapped.store(self.swapped_at(&sent), Ordering::Relaxed);
        self.args
            .stats
            .replayed_bytes
            .store(self.from_recording, Ordering::Relaxed);
        // Clean points fall where writes ended, so the pieces go on from this one.
        let first = rec.pieces_upto(sent.input);
        let mut at = sent.input;
        for &end in &rec.pieces[first..] {
            let end = end as usize;
            if end > r.matched {
                break;
            }
            self.write_piece(&rec.input[at..end]);
            at = end;
        }
        if at < r.matched {
            self.write_piece(&rec.input[at..r.matched]);
        }
        debug_assert_eq!(self.pos, self.shifted(r.matched));
        // A recording being made needs the engine to the end; else the first clean point past
        // what matched is where the recording may take over again.
        let next = rec.clean.partition_point(|c| c.input <= r.matched);
        if self.recorder.is_none() && next + 1 < rec.clean.len() {
            self.rejoin = Some(Rejoin {
                entry: r.entry.clone(),
                key: r.key,
                next,
                misses: 0,
                moved: false,
            });
        }
    }

    /// One write of the engine, recorded if a recording is being made.
    fn write_piece(&mut self, piece: &[u8]) {
        let engine = self.engine.as_mut().expect("an engine when not replaying");
        engine.write(piece);
        let Some(rec) = &mut self.recorder else {
            return;
        };
        rec.input.extend_from_slice(piece);
        rec.pieces.push(u32::try_from(rec.input.len()).unwrap_or(u32::MAX));
        let max_page = MAX_PAGE.min(self.args.limit);
        if rec.input.len() > max_page || rec.pieces.len() > MAX_PIECES {
            // Not worth keeping, nor copying again on every response: left to the engine.
            let rec = self.recorder.take().expect("recording");
            if let Some(replays) = self.replays {
                replays.mark_volatile(rec.key);
            }
        } else if engine.is_clean() {
            rec.mark(engine, &self.args.stats, false);
        }
    }

    fn finish_recording(&mut self) {
        let Some(rec) = self.recorder.take() else {
            return;
        };
        let engine = self.engine.as_ref().expect("recording with an engine");
        if self.args.stats.bailed_out.load(Ordering::Relaxed) || engine.output_len() > 0 {
            return;
        }
        let Some(&end) = rec.clean.last() else {
            return;
        };
        // Only a page read to its end, with all its output captured, is kept.
        if end.input != rec.input.len() || end.output != rec.output.len() {
            return;
        }
        if let Some(replays) = self.replays {
            let Recorder {
                key,
                mut input,
                mut output,
                mut pieces,
                mut clean,
                mut states,
                state_bytes: _,
            } = rec;
            // Kept for a while: no room left over from growing them (the cache weighs lengths).
            input.shrink_to_fit();
            output.shrink_to_fit();
            pieces.shrink_to_fit();
            clean.shrink_to_fit();
            states.shrink_to_fit();
            replays.keep(
                key,
                Recording {
                    input,
                    output,
                    pieces,
                    clean,
                    states,
                    hits: AtomicU64::new(0),
                    resumes: AtomicU32::new(0),
                },
            );
        }
    }
}

impl Recorder {
    /// A recording of a page read from its start, where the engine's state is `start`.
    fn new(key: Key, start: Arc<Snapshot>) -> Recorder {
        Recorder {
            key,
            input: Vec::new(),
            output: Vec::new(),
            pieces: Vec::new(),
            clean: vec![START],
            state_bytes: start.bytes(),
            states: vec![start],
        }
    }

    /// A recording that starts as `rec` up to its clean point `k`, for an engine resumed there.
    fn from_prefix(key: Key, rec: &Recording, k: usize) -> Recorder {
        let at = rec.clean[k];
        let pieces = rec.pieces_upto(at.input);
        Recorder {
            key,
            input: rec.input[..at.input].to_vec(),
            output: rec.output[..at.output].to_vec(),
            pieces: rec.pieces[..pieces].to_vec(),
            clean: rec.clean[..=k].to_vec(),
            states: rec.states[..=k].to_vec(),
            state_bytes: rec.states[..=k].iter().map(|s| s.bytes()).sum(),
        }
    }

    /// A clean point where the engine stands now (output taken so far plus what it holds): at
    /// least [`CLEAN_SPACING`] after the last, or the page's `end`.
    fn mark(&mut self, engine: &FastRewriter, stats: &PageStats, end: bool) {
        let point = Clean {
            input: self.input.len(),
            output: self.output.len() + engine.output_len(),
            swapped: stats.swapped.load(Ordering::Relaxed),
        };
        // A page's end after a bail-out is not clean; such a recording is not kept.
        let state = || engine.is_clean().then(|| Arc::new(engine.snapshot()));
        let last = self.clean.last_mut().expect("starts with START");
        if last.input == point.input {
            // The same offset again (an empty chunk, or the end after a clean last piece).
            *last = point;
            if let Some(state) = state() {
                *self.states.last_mut().expect("one per clean point") = state;
            }
        } else if end {
            self.clean.push(point);
            let state = state().unwrap_or_else(|| self.states.last().expect("one per clean point").clone());
            self.state_bytes += state.bytes();
            self.states.push(state);
        } else if point.input - last.input >= CLEAN_SPACING
            && self.state_bytes + engine.snapshot_bytes() <= self.input.len() / 2 + SNAPSHOT_ALLOWANCE
        {
            self.clean.push(point);
            let state = Arc::new(engine.snapshot());
            self.state_bytes += state.bytes();
            self.states.push(state);
        }
    }
}
