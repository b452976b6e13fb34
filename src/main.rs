//! The `telswap` command: `serve`, `check`, `demo`, `call`, `simulate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use telswap::app::{App, AppConfig};
use telswap::calls::simulate::{CallOptions, place_call};
use telswap::proxy::server::{self, ServeConfig};
use telswap::rules;
use telswap::visitor::identity::random_id;

/// mimalloc rather than glibc's malloc: a proxied page makes about 130 small allocations
/// (headers, cookie, lease, engine buffers) that die within the request, and mimalloc's
/// thread-local free lists serve them for less. Alternating wrk runs on the small-business page
/// (1 thread, same machine): about 11 % more requests a second. Built with `no_thp`: with
/// transparent huge pages its arenas made 10,000 idle HTTP/2 connections cost 741 MiB instead
/// of glibc's 528; without them, 497 (benches/RESULTS.md, "the 2026-12-04 runs").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "telswap",
    version,
    about = "Server-side Dynamic Number Insertion: a streaming reverse proxy for call tracking"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, the webhooks and the admin listener.
    Serve(ServeArgs),
    /// Validate the rules: prints `N sites ok`, or `FILE:LINE: message` for every problem.
    Check {
        #[arg(long, env = "TELSWAP_RULES", default_value = "rules")]
        rules: PathBuf,
    },
    /// Start a bundled demo site with the proxy in front of it, on loopback.
    Demo {
        /// Public listener of the demo proxy (falls back to any free port if taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin listener of the demo (falls back to any free port if taken).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
    },
    /// Send a signed inbound-call webhook to a running server, as the telephony provider would.
    Call(CallArgs),
    /// Simulate traffic and calls against the real pool and attribution code: accuracy, sizing.
    Simulate(telswap::simulate::SimulateArgs),
}

#[derive(clap::Args)]
struct CallArgs {
    /// The tracking number that was dialled (E.164).
    #[arg(long)]
    to: String,
    /// The caller (E.164).
    #[arg(long, default_value = "+14155550123")]
    from: String,
    /// The public listener's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// With a duration the call also ends, answered, after this many seconds.
    #[arg(long)]
    duration: Option<u32>,
    /// The Host the provider would call (the site's host); defaults to the server's.
    #[arg(long)]
    host: Option<String>,
    /// The signing secret; else read from the variable named by --token-env.
    #[arg(long, env = "TELSWAP_CALL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The environment variable holding the site's auth token (the rules' auth_token_env).
    #[arg(long, default_value = "TWILIO_AUTH_TOKEN")]
    token_env: String,
    #[arg(long)]
    from_city: Option<String>,
    #[arg(long)]
    from_state: Option<String>,
    #[arg(long)]
    from_country: Option<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Site rule files (*.toml).
    #[arg(long, env = "TELSWAP_RULES", default_value = "rules")]
    rules: PathBuf,
    /// Public plain-HTTP listener.
    #[arg(long, env = "TELSWAP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Public HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN).
    #[arg(long, env = "TELSWAP_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// `<host>.crt` + `<host>.key` (PEM) per host, chosen by SNI.
    #[arg(long, env = "TELSWAP_CERTS", default_value = "certs")]
    certs: PathBuf,
    /// Admin API and dashboard.
    #[arg(long, env = "TELSWAP_ADMIN", default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
    /// Embedded storage and generated keys.
    #[arg(long, env = "TELSWAP_DATA", default_value = "data")]
    data: PathBuf,
    /// Worker threads of the async runtime (default: one per CPU; `1` serves everything from a
    /// single thread, on tokio's current-thread scheduler).
    #[arg(long, env = "TELSWAP_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Rewrite engine: `auto` (the byte-level engine for UTF-8 pages with simple `exclude`
    /// selectors, lol_html for the rest) or `lol_html` (lol_html for every page).
    #[arg(long, env = "TELSWAP_ENGINE", default_value = "auto", value_parser = ["auto", "lol_html"])]
    engine: String,
    /// Memory for recordings of rewritten pages, in MiB. A response whose bytes equal an earlier
    /// one's (same page, rules and number) is answered from that rewrite instead of being read
    /// again; a page that differs is rewritten as usual. 0 sends every response through the
    /// engine.
    #[arg(long, env = "TELSWAP_REPLAY_CACHE_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    replay_cache_mb: u64,
    /// Load balancers or CDNs in front of telswap, as addresses and networks separated by
    /// commas (`10.0.0.0/8,2001:db8::/32`). From them, `X-Forwarded-For` names the visitor and
    /// `X-Forwarded-Proto` the scheme the visitor used (for secure cookies, redirects and what
    /// the origin is told). Default: none; telswap is the edge.
    #[arg(long, env = "TELSWAP_TRUSTED_PROXIES", default_value = "", value_parser = parse_trusted)]
    trusted_proxies: telswap::proxy::headers::TrustedProxies,
}

fn parse_trusted(list: &str) -> Result<telswap::proxy::headers::TrustedProxies, String> {
    telswap::proxy::headers::TrustedProxies::parse(list)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // The access log (`proxy::ACCESS_LOG`) only when `TELSWAP_LOG` asks for it.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TELSWAP_LOG")
                .unwrap_or_else(|_| format!("info,{}=off", telswap::proxy::ACCESS_LOG).into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { rules } => check(&rules),
        Command::Serve(args) => {
            if args.engine == "lol_html" {
                telswap::rewrite::set_engine(telswap::rewrite::Engine::LolHtml);
            }
            telswap::rewrite::replay::set_capacity(args.replay_cache_mb << 20);
            run_on(args.threads, serve(args))
        }
        Command::Demo { listen, admin } => run(demo(listen, admin)),
        Command::Call(args) => run(call(args)),
        Command::Simulate(args) => telswap::simulate::cli(&args),
    }
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    run_on(None, fut)
}

/// Runs `fut` on a multi-threaded runtime with `threads` workers (default: one per CPU), or, for
/// one thread, on tokio's current-thread scheduler: with a single worker there is nothing to
/// steal from, and the multi-threaded scheduler's shared queues and cross-thread wake-ups are
/// pure cost on every task switch (benches/RESULTS.md, "the 2026-12-03 afternoon runs").
fn run_on(threads: Option<u16>, fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.into());
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = builder.enable_all().build().expect("tokio runtime");
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telswap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(dir: &std::path::Path) -> ExitCode {
    match rules::load_dir(dir) {
        Ok(set) => {
            let n = set.sites.len();
            // SPEC's wording for every N, "1 sites ok" included: scripts match this line.
            println!("{n} sites ok");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let set = match rules::load_dir(&args.rules) {
        Ok(set) => set,
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            anyhow::bail!("{} problem(s) in {}", problems.0.len(), args.rules.display());
        }
    };
    let cfg = ServeConfig {
        rules: args.rules,
        listen: args.listen,
        tls_listen: args.tls_listen,
        certs: args.certs,
        trusted_proxies: args.trusted_proxies,
    };
    let app = App::start(
        set,
        AppConfig {
            serve: cfg.clone(),
            admin: Some(args.admin),
            admin_token: std::env::var("TELSWAP_ADMIN_TOKEN").ok(),
            data: args.data,
            secrets: telswap::calls::env_secrets(),
            clock: None,
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    tracing::info!(http = %app.running.http, https = ?app.running.https, admin = ?app.admin, "telswap serving");
    signals(&cfg, app).await
}

/// `SIGHUP` reloads; `SIGTERM` / Ctrl-C stop after in-flight requests finish.
async fn signals(cfg: &ServeConfig, app: App) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = hup.recv() => { server::reload(cfg, &app.running); }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
}

async fn demo(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let origin = telswap::demo::start_origin("127.0.0.1:0".parse()?)
        .await
        .context("starting the demo origin")?;
    let data = tempfile::Builder::new()
        .prefix("telswap-demo-")
        .tempdir()
        .context("temporary data folder")?;
    let text = telswap::demo::RULES.replace("http://127.0.0.1:8000", &format!("http://{origin}"));
    let set = rules::load_sources(&[(PathBuf::from("rules/demo.toml"), text)])
        .map_err(|p| anyhow::anyhow!("embedded demo rules are invalid:\n{p}"))?;
    // The demo's own secrets: a telephony token for `telswap call` and an admin token.
    let phone_token = random_id(18);
    let admin_token = std::env::var("TELSWAP_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| random_id(18));
    let pt = phone_token.clone();
    let secrets: telswap::calls::Secrets = Arc::new(move |name: &str| {
        if name == "TELSWAP_DEMO_AUTH_TOKEN" {
            Some(pt.clone())
        } else {
            std::env::var(name).ok()
        }
    });
    let mut tries = [
        (listen, admin),
        (SocketAddr::new(listen.ip(), 0), SocketAddr::new(admin.ip(), 0)),
    ]
    .into_iter();
    let app = loop {
        let (l, a) = tries.next().expect("two tries");
        let cfg = ServeConfig {
            rules: PathBuf::from("rules"),
            listen: l,
            tls_listen: None,
            certs: PathBuf::from("certs"),
            trusted_proxies: Default::default(),
        };
        let started = App::start(
            set.clone(),
            AppConfig {
                serve: cfg,
                admin: Some(a),
                admin_token: Some(admin_token.clone()),
                data: data.path().to_path_buf(),
                secrets: secrets.clone(),
                clock: None,
            },
        )
        .await;
        match started {
            Ok(app) => break app,
            Err(e) if l.port() != 0 => eprintln!("telswap: {e}; using free ports instead"),
            Err(e) => anyhow::bail!(e),
        }
    };
    let base = format!("http://{}", app.running.http);
    let admin_url = format!("http://{}", app.admin.expect("demo admin listener"));
    println!("telswap demo is running.\n");
    println!("  origin (the real site, unswapped):  http://{origin}/");
    println!("  dashboard:                          {admin_url}/  (log in with the admin token)");
    println!("  admin API:                          {admin_url}/api/calls");
    println!("  admin token:                        {admin_token}");
    println!("  data folder:                        {}\n", data.path().display());
    println!("Open these in a browser (each is a different traffic source):\n");
    println!("  direct            {base}/");
    println!(
        "  Google Ads        {base}/?utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=emergency+plumber&gclid=EAIaIQobDemo"
    );
    println!("  organic search    {base}/?utm_source=google&utm_medium=organic");
    println!("  social            {base}/?utm_source=facebook&utm_medium=social&utm_campaign=reels");
    println!("  email             {base}/services?utm_source=newsletter&utm_medium=email&utm_campaign=november");
    println!("  referral          curl -H 'Referer: https://www.plumbing-guide.example/best-plumbers' {base}/contact");
    println!(
        "  crawler           curl -A 'Mozilla/5.0 (compatible; Googlebot/2.1)' '{base}/?utm_source=google&utm_medium=organic'"
    );
    println!("\nThe site's own number is (555) 010-0000; each source shows its own tracking number.");
    println!("Then call the number you saw (the first Google Ads visitor gets +1 555-010-1001):\n");
    println!(
        "  cargo run --release -- call --server {base} --to +15550101001 --from +14155550123 --duration 95 --token {phone_token}"
    );
    println!(
        "  cargo run --release -- call --server {base} --to +15550102001 --from +12125550188 --duration 40 --token {phone_token}"
    );
    println!("\nand see it attributed on the dashboard ({admin_url}/calls), or from the API:\n");
    println!("  curl -H 'Authorization: Bearer {admin_token}' {admin_url}/api/calls");
    println!("\nThe dashboard starts empty: nothing is seeded, every figure comes from what you do here.");
    println!("\nPress Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    app.stop().await;
    drop(data);
    Ok(())
}

async fn call(args: CallArgs) -> anyhow::Result<()> {
    let token = match args.token {
        Some(t) => t,
        None => std::env::var(&args.token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .with_context(|| format!("no signing secret: pass --token or set {}", args.token_env))?,
    };
    let opts = CallOptions {
        server: args.server,
        host: args.host,
        to: args.to,
        from: args.from,
        token,
        duration_s: args.duration,
        from_city: args.from_city,
        from_state: args.from_state,
        from_country: args.from_country,
    };
    let (sid, voice, ended) = place_call(&opts).await.map_err(anyhow::Error::msg)?;
    println!("{sid}: voice webhook answered {}", voice.status);
    println!("{}", voice.body.trim());
    if let Some(e) = ended {
        println!("{sid}: status callback answered {}", e.status);
    }
    match voice.status {
        200 => {}
        // The host of --server (an address, often) names no site; the webhook must name one.
        421 => match &opts.host {
            Some(host) => anyhow::bail!("the server refused the call (421: no site has the host {host:?})"),
            None => anyhow::bail!(
                "the server refused the call (421: no site has the --server URL's host); pass --host with one of the site's hosts"
            ),
        },
        403 => anyhow::bail!(
            "the server refused the call (403: bad signature); check --token against the site's telephony secret"
        ),
        s => anyhow::bail!("the server refused the call ({s})"),
    }
    Ok(())
}
