//! `telswap check` and `telswap serve` as an operator runs them: every problem at once with its
//! file and line, and a running server that keeps its rules when a reload is invalid.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_telswap");

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn check(dir: &Path) -> (i32, String) {
    let out = Command::new(BIN).args(["check", "--rules"]).arg(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const GOOD: &str = r#"hosts = ["www.example.com", "example.com"]
upstream = "http://127.0.0.1:8000"
numbers = ["+1 555-010-0000"]

[[pool]]
name = "ads"
mode = "session"
when.channel = ["paid_search"]
numbers = ["+1 555-010-1001"]
"#;

#[test]
fn check_accepts_the_shipped_rules_and_a_valid_directory() {
    let (code, out) = check(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules")));
    assert_eq!((code, out.trim()), (0, "1 sites ok"));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", GOOD);
    write(
        dir.path(),
        "b.toml",
        &GOOD.replace("example.com", "example.org").replace("1001", "1002"),
    );
    let (code, out) = check(dir.path());
    assert_eq!((code, out.trim()), (0, "2 sites ok"));
    // Pools each with an overflow of their own, and one with none, are fine.
    let overflows = r#"
[[pool]]
name = "social"
when.channel = ["paid_social"]
numbers = ["+1 555-010-1003"]
exhausted = "overflow"
overflow = "+1 555-010-1998"

[[pool]]
name = "display"
when.channel = ["display"]
numbers = ["+1 555-010-1004"]
exhausted = "overflow"
overflow = "+1 555-010-1999"

[[pool]]
name = "email"
when.channel = ["email"]
numbers = ["+1 555-010-1005"]
"#;
    write(dir.path(), "a.toml", &format!("{GOOD}{overflows}"));
    let (code, out) = check(dir.path());
    assert_eq!((code, out.trim()), (0, "2 sites ok"));
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = r#"hosts = ["www.example.com"]
upstream = "ftp://example.com/path"
numbers = ["+1 555-010-0000", "call us", "+1 555-010-000"]
exclude = ["div[[broken"]
colour = "blue"

[[pool]]
name = "ads"
when.channel = ["paid_search", "carrier_pigeon"]
when.source = "(google"
numbers = ["+1 555-010-0000", "+1 555-010-1001"]
idle_timeout = "thirty minutes"

[[pool]]
name = "more"
numbers = ["+1 555-010-1001"]
exhausted = "panic"

[[pool]]
name = "email"
numbers = ["+1 555-010-4001"]
exhausted = "overflow"
overflow = "+1 555-010-1001"

[[pool]]
name = "social"
numbers = ["+1 555-010-4002"]
exhausted = "overflow"
overflow = "+1 555-010-4999"

[[pool]]
name = "display"
numbers = ["+1 555-010-4003"]
exhausted = "overflow"
overflow = "+1 555-010-4999"
"#;
    write(dir.path(), "bad.toml", bad);
    write(dir.path(), "other.toml", GOOD);
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    let bad_file = dir.path().join("bad.toml").display().to_string();
    let expected = [
        (2, "bad upstream URL"),
        (3, "malformed phone number \"call us\""),
        (3, "impossible phone number \"+1 555-010-000\""),
        (4, "bad CSS selector"),
        (5, "unknown key \"colour\""),
        (9, "unknown channel \"carrier_pigeon\""),
        (10, "bad regex"),
        (11, "pool number +15550100000 is one of the site's own numbers"),
        (12, "idle_timeout"),
        (
            16,
            "number +15550101001 of pool \"more\" is already listed in pool \"ads\"",
        ),
        (17, "exhausted must be one of"),
        (
            23,
            "overflow number +15550101001 of pool \"email\" is already a number of pool \"ads\" at line 11",
        ),
        (
            35,
            "overflow number +15550104999 of pool \"display\" is also the overflow of pool \"social\" at line 29",
        ),
    ];
    for (line, needle) in expected {
        let prefix = format!("{bad_file}:{line}: ");
        assert!(
            out.lines().any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "missing `{prefix}…{needle}…` in:\n{out}"
        );
    }
    // The host claimed by both files is reported too (against the later file).
    assert!(out.contains("host \"www.example.com\" is already claimed by"), "{out}");
}

/// Mistakes a reload used to take (or crash on): each is now a problem with its file and line.
#[test]
fn check_reports_absurd_durations_clashing_numbers_and_repeated_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = r#"hosts = ["a.example.com"]
upstream = "http://127.0.0.1:99999"
numbers = ["+1 555-010-0000", "(555) 010-0000"]

[[pool]]
name = "ads"
numbers = ["+1 555-010-1001"]
idle_timeout = "18446744073709551615s1s"

[[pool]]
name = "ads"
numbers = ["+1 555-010-1002"]
match_window = "9223372036854775807h"
"#;
    let b = r#"hosts = ["b.example.com"]
upstream = "http://127.0.0.1:8000"
numbers = ["+1 555-010-2000"]

[[pool]]
name = "ads"
numbers = ["+1 555-010-0000"]

[[pool]]
name = "email"
numbers = ["+1 555-010-2002"]
exhausted = "overflow"
overflow = "+1 555-010-1001"
"#;
    write(dir.path(), "a.toml", a);
    write(dir.path(), "b.toml", b);
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    let (a_file, b_file) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    let expected = [
        (&a_file, 2, "bad upstream URL"),
        (&a_file, 3, "number +15550100000 is listed twice"),
        (&a_file, 8, "longer than the most allowed, 365d"),
        (&a_file, 11, "pool name \"ads\" is used twice"),
        (&a_file, 13, "longer than the most allowed, 365d"),
        (&b_file, 7, "number +15550100000 of pool \"ads\" is a site's own number"),
        (
            &b_file,
            13,
            "number +15550101001 of the overflow of pool \"email\" is already listed in pool \"ads\"",
        ),
    ];
    for (file, line, needle) in expected {
        let prefix = format!("{}:{line}: ", file.display());
        assert!(
            out.lines().any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "missing `{prefix}…{needle}…` in:\n{out}"
        );
    }
    assert_eq!(out.lines().count(), expected.len(), "{out}");
}

#[test]
fn an_empty_rules_directory_is_an_error_and_a_short_cookie_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    // About the directory as a whole: line 0, in the one format scripts parse.
    assert_eq!(
        out.trim(),
        format!("{}:0: no site rules here (no *.toml file)", dir.path().display())
    );

    write(dir.path(), "a.toml", GOOD);
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--rules"])
        .arg(dir.path())
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("TELSWAP_COOKIE_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TELSWAP_COOKIE_KEY has 5 characters, fewer than 32"),
        "{stderr}"
    );
}

#[test]
fn check_reports_toml_syntax_errors_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "x.toml",
        "hosts = [\"a.test\"]\nupstream = \"http://127.0.0.1:1\"\nnumbers = [\"+1 555-010-0000\"\n",
    );
    let (code, out) = check(dir.path());
    assert_eq!(code, 1);
    assert!(out.contains("x.toml:3: TOML syntax"), "{out}");

    // Saved in another encoding: the line of the first byte that is not UTF-8.
    std::fs::write(
        dir.path().join("x.toml"),
        b"hosts = [\"a.test\"]\nupstream = \"http://127.0.0.1:1\"\n# Caf\xe9 du coin\n",
    )
    .unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 1);
    assert!(out.contains("x.toml:3: not UTF-8 text"), "{out}");

    // A `]` missing in the middle of a file: one problem, on the line that opened the array
    // (the parser notices only lines later, and its recovery reported every line after).
    write(
        dir.path(),
        "x.toml",
        "hosts = [\"a.test\"]\nupstream = \"http://127.0.0.1:1\"\nnumbers = [\"+1 555-010-0000\"\n\
         exclude = [\"[data-x]\"]  # a [ in a string, a comment\n\n[[pool]]\nname = \"ads\"\nnumbers = [\"+1 555-010-1001\"]\n",
    );
    let (code, out) = check(dir.path());
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("x.toml")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("x.toml:3: TOML syntax: this `[` is not closed (a missing `]`?)"),
        "{out}"
    );
}

/// A `telswap serve` child whose stderr lines arrive on a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: String,
    /// Its own data folder: without `--data` it would write to `data/` in the working directory.
    _data: tempfile::TempDir,
}

impl Server {
    fn start(rules: &Path) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--rules"])
            .arg(rules)
            .arg("--data")
            .arg(data.path())
            .env("TELSWAP_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            lines,
            addr: String::new(),
            _data: data,
        };
        let line = s.wait_for("telswap serving");
        let at = line.find("http=").expect("address in log") + 5;
        s.addr = line[at..].split_whitespace().next().unwrap().to_string();
        s
    }

    fn wait_for(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("server log line");
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// `GET path` with `Host: host` on a connection of its own: the response off the wire.
    fn get(&self, path: &str, host: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    }

    fn status_for_host(&self, host: &str) -> u16 {
        self.get("/_telswap/ping", host)[9..12].parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_reload_swaps_valid_rules_and_keeps_old_ones_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", GOOD);
    let server = Server::start(dir.path());
    // Reserved paths are answered by telswap itself (404), unknown hosts get 421.
    assert_eq!(server.status_for_host("www.example.com"), 404);
    assert_eq!(server.status_for_host("new.example.net"), 421);

    write(
        dir.path(),
        "a.toml",
        &GOOD.replace("upstream = \"http://127.0.0.1:8000\"", "upstream = 12"),
    );
    server.hup();
    server.wait_for("reload refused");
    assert_eq!(
        server.status_for_host("www.example.com"),
        404,
        "old rules must stay in force"
    );

    write(
        dir.path(),
        "a.toml",
        &GOOD.replace("\"example.com\"]", "\"example.com\", \"new.example.net\"]"),
    );
    server.hup();
    server.wait_for("rules reloaded");
    assert_eq!(server.status_for_host("new.example.net"), 404);
}

#[test]
fn serve_refuses_to_start_on_invalid_rules() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", "hosts = []\n");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--rules"])
        .arg(dir.path())
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("a.toml:1: missing hosts"), "{stdout}");
}

#[test]
fn a_pool_of_100_000_numbers_checks_quickly_and_duplicates_are_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut numbers: Vec<String> = (0..100_000)
        .map(|i| format!("\"+1 555{:07}\"", 2_000_000 + i))
        .collect();
    numbers.push("\"+1 5552000007\"".into());
    let text = format!(
        "hosts = [\"big.test\"]\nupstream = \"http://127.0.0.1:9\"\nnumbers = [\"+1 555-010-0000\"]\n\
         [[pool]]\nname = \"big\"\nnumbers = [\n{}\n]\n",
        numbers.join(",\n")
    );
    write(dir.path(), "big.toml", &text);
    let (code, out) = check(dir.path());
    assert_eq!(code, 1);
    assert_eq!(
        out.trim(),
        format!(
            "{}:100007: number +15552000007 is listed twice in pool \"big\"",
            dir.path().join("big.toml").display()
        )
    );
}

#[test]
fn the_access_log_has_one_line_per_request_and_leaves_out_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", GOOD);
    // `TELSWAP_LOG=info` includes the access log (the default filter leaves it out).
    let server = Server::start(dir.path());
    let health = server.get("/_telswap/health", "10.0.0.1");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok: 1 sites\n"),
        "{health}"
    );
    assert_eq!(server.status_for_host("nowhere.test"), 421);
    assert_eq!(server.status_for_host("www.example.com"), 404);
    let first = server.wait_for(" access: ");
    for field in [
        "method=GET",
        "host=\"nowhere.test\"",
        "target=\"/_telswap/ping\"",
        "status=421",
        "number=-",
    ] {
        assert!(first.contains(field), "{field} missing from {first}");
    }
    let second = server.wait_for(" access: ");
    assert!(
        second.contains("status=404") && second.contains("host=\"www.example.com\""),
        "{second}"
    );
    assert!(!first.contains("health") && !second.contains("health"));
}
