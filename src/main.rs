//! The `telswap` command: `serve`, `check`, `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use telswap::clock::TokioClock;
use telswap::pool::{NoJournal, Pools};
use telswap::proxy::server::{self, ServeConfig};
use telswap::proxy::{Parts, Proxy};
use telswap::rules;
use telswap::visitor::identity::CookieKey;
use telswap::visitor::sessions::SessionLog;

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
    },
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TELSWAP_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { rules } => check(&rules),
        Command::Serve(args) => run(serve(args)),
        Command::Demo { listen } => run(demo(listen)),
    }
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
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
            println!("{n} site{} ok", if n == 1 { "" } else { "s" });
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
    let _ = &args.admin;
    let cfg = ServeConfig {
        rules: args.rules,
        listen: args.listen,
        tls_listen: args.tls_listen,
        certs: args.certs,
    };
    let proxy = build_proxy(set, &args.data)?;
    let running = server::start(&cfg, proxy).await.map_err(anyhow::Error::msg)?;
    tracing::info!(http = %running.http, https = ?running.https, "telswap serving");
    signals(&cfg, running).await
}

/// The proxy with session pools, the cookie key kept in `data`, and the maintenance tick.
fn build_proxy(set: rules::RuleSet, data: &std::path::Path) -> anyhow::Result<Arc<Proxy>> {
    let clock = TokioClock::new();
    let cookie_key = CookieKey::load_or_create(data).with_context(|| format!("cookie key in {}", data.display()))?;
    let sessions = SessionLog::new(1_000_000);
    let pools = Pools::new(&set, clock.clone(), Arc::new(NoJournal));
    let s = sessions.clone();
    // Leases lapse on time even without traffic, and moka's housekeeping runs.
    pools.spawn_maintenance(std::time::Duration::from_secs(5), move || s.run_pending_tasks());
    Ok(Proxy::with_parts(
        set,
        pools,
        Parts {
            cookie_key,
            clock,
            sessions,
        },
    ))
}

/// `SIGHUP` reloads; `SIGTERM` / Ctrl-C stop after in-flight requests finish.
async fn signals(cfg: &ServeConfig, running: server::Running) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = hup.recv() => { server::reload(cfg, &running); }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn demo(listen: SocketAddr) -> anyhow::Result<()> {
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
    let proxy = build_proxy(set, data.path())?;
    let mut cfg = ServeConfig {
        rules: PathBuf::from("rules"),
        listen,
        tls_listen: None,
        certs: PathBuf::from("certs"),
    };
    let running = match server::start(&cfg, proxy.clone()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telswap: {e}; using a free port instead");
            cfg.listen = SocketAddr::new(listen.ip(), 0);
            server::start(&cfg, proxy).await.map_err(anyhow::Error::msg)?
        }
    };
    let base = format!("http://{}", running.http);
    println!("telswap demo is running.\n");
    println!("  origin (the real site, unswapped):  http://{origin}/");
    println!("  data folder:                        {}\n", data.path().display());
    println!("Open these in a browser (each is a different traffic source):\n");
    println!("  direct            {base}/");
    println!(
        "  Google Ads        {base}/?utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=emergency+plumber&gclid=EAIaIQobDemo"
    );
    println!("  organic search    {base}/?utm_source=google&utm_medium=organic");
    println!("  social            {base}/?utm_source=facebook&utm_medium=social&utm_campaign=reels");
    println!("  email             {base}/services?utm_source=newsletter&utm_medium=email&utm_campaign=november");
    println!("  referral          curl -H 'Referer: https://www.yelp.com/biz/acme' {base}/contact");
    println!(
        "  crawler           curl -A 'Mozilla/5.0 (compatible; Googlebot/2.1)' '{base}/?utm_source=google&utm_medium=organic'"
    );
    println!("\nThe site's own number is (555) 010-0000; each source shows its own tracking number.");
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    running.stop().await;
    drop(data);
    Ok(())
}
