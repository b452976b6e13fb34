//! Assembling the whole product: store, pools, visitor sessions, webhooks, proxy listeners and
//! the admin listener, wired the same way for `serve`, `demo` and the end-to-end tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::Admin;
use crate::calls::{Calls, Secrets, StoreJournal};
use crate::clock::{Clock, Millis, TokioClock};
use crate::outbox::{Outbox, OutboxConfig};
use crate::pool::{LeaseRecord, Pools};
use crate::proxy::server::{self, Running, ServeConfig};
use crate::proxy::{Parts, Proxy};
use crate::rules::RuleSet;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::visitor::identity::CookieKey;
use crate::visitor::sessions::SessionLog;

pub struct AppConfig {
    pub serve: ServeConfig,
    /// The admin listener; it starts only with a token.
    pub admin: Option<SocketAddr>,
    pub admin_token: Option<String>,
    pub data: PathBuf,
    pub secrets: Secrets,
    pub clock: Option<Arc<dyn Clock>>,
}

pub struct App {
    pub running: Running,
    pub admin: Option<SocketAddr>,
    pub store: Arc<SqliteStore>,
    pub pools: Arc<Pools>,
    pub proxy: Arc<Proxy>,
    pub cfg: ServeConfig,
    /// The CRM webhook delivery worker.
    pub outbox: Outbox,
    admin_task: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    pub async fn start(set: RuleSet, cfg: AppConfig) -> Result<App, String> {
        std::fs::create_dir_all(&cfg.data).map_err(|e| format!("data folder {}: {e}", cfg.data.display()))?;
        let store =
            SqliteStore::open(&cfg.data).map_err(|e| format!("opening the store in {}: {e}", cfg.data.display()))?;
        let dyn_store: Arc<dyn Store> = store.clone();
        let clock = cfg.clock.clone().unwrap_or_else(|| TokioClock::new() as Arc<dyn Clock>);
        if store.unclean_start() {
            // Page views the last run had queued are gone, and which is not known: an audience
            // of a source number reaching back before now is not whole (a call's `shown_to`).
            store.note_views_lost_up_to(clock.now_ms() as i64);
        }
        let cookie_key = CookieKey::load_or_create(&cfg.data).map_err(|e| format!("cookie key: {e}"))?;
        let journal = Arc::new(StoreJournal {
            store: dyn_store.clone(),
        });
        let sessions = SessionLog::new(1_000_000).with_sink(journal.clone());
        let pools = Pools::new(&set, clock.clone(), journal);
        pools.ids_above(
            dyn_store
                .max_lease_id()
                .map_err(|e| format!("reading the store: {e}"))?,
        );
        restore_leases(&set, &*dyn_store, &pools, clock.now_ms());
        let s = sessions.clone();
        // Leases lapse on time even without traffic, and moka's housekeeping runs.
        pools.spawn_maintenance(Duration::from_secs(5), move || s.run_pending_tasks());
        for site in &set.sites {
            let env = site.telephony.secret_env();
            if (cfg.secrets)(env).is_none() {
                // Said now, not first at the first call (a 403 the provider retries, then drops).
                tracing::warn!(site = %site.name, env, "telephony secret is not set: this site's call webhooks are refused (403) until it is");
            }
        }
        let calls = Calls::new(dyn_store.clone(), pools.clone(), sessions.clone(), cfg.secrets.clone());
        let proxy = Proxy::with_parts(
            set,
            pools.clone(),
            Parts {
                cookie_key,
                clock,
                sessions,
                calls: Some(calls),
            },
        );
        let running = server::start(&cfg.serve, proxy.clone()).await?;
        let rules_proxy = proxy.clone();
        let outbox = Outbox::start(OutboxConfig::new(
            dyn_store.clone(),
            Arc::new(move || rules_proxy.rules()),
            pools.clock().clone(),
            cfg.secrets.clone(),
        ))?;
        let (admin, admin_task) = match (cfg.admin, cfg.admin_token) {
            (Some(addr), Some(token)) if !token.is_empty() => {
                let a = Admin::new(token, dyn_store, pools.clone(), proxy.clone());
                let (addr, task) = a
                    .serve(addr)
                    .await
                    .map_err(|e| format!("admin listener on {addr}: {e}"))?;
                (Some(addr), Some(task))
            }
            (Some(_), _) => {
                tracing::error!("TELSWAP_ADMIN_TOKEN is not set: the admin listener is not started");
                (None, None)
            }
            _ => (None, None),
        };
        Ok(App {
            running,
            admin,
            store,
            pools,
            proxy,
            cfg: cfg.serve,
            outbox,
            admin_task,
        })
    }

    /// Stops the listeners after in-flight requests and the webhook deliveries in flight, then
    /// commits every queued write.
    pub async fn stop(self) {
        if let Some(t) = self.admin_task {
            t.abort();
        }
        self.running.stop().await;
        self.outbox.stop().await;
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

/// Reinstates the leases that were live when the server stopped, so a restart never hands a
/// number a live visitor still holds to someone else.
fn restore_leases(set: &RuleSet, store: &dyn Store, pools: &Pools, now: Millis) {
    let rows = match store.live_leases() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading live leases");
            return;
        }
    };
    let mut restored = 0;
    // Newest first: should two open leases claim one number (a lease a reload ended before it
    // was journaled), the later is the one a visitor holds now.
    for r in rows.into_iter().rev() {
        let Some(site) = set.sites.iter().find(|s| s.name == r.site) else {
            continue;
        };
        let Some(pool) = site.pool(&r.pool) else {
            continue;
        };
        // The number must still be in the pool; its place may have moved (numbers added or
        // taken out since the lease was written).
        let Some(index) = pool.numbers.iter().position(|n| n.e164() == r.number) else {
            continue;
        };
        if (r.last_seen as Millis) + pool.idle_timeout.as_millis() as Millis <= now {
            continue;
        }
        let rec = crate::calls::lease_record(r, None);
        if pools.restore(&site.name, &pool.name, LeaseRecord { number: index, ..rec }) {
            restored += 1;
        }
    }
    if restored > 0 {
        tracing::info!(leases = restored, "live leases restored");
    }
    // The leases that ended within the match window: history for late calls and handovers, and
    // the order their numbers rested in.
    for site in &set.sites {
        for pool in site.pools.iter().filter(|p| p.mode == crate::rules::PoolMode::Session) {
            let mut ended = Vec::new();
            for (index, number) in pool.numbers.iter().enumerate() {
                let rows = match crate::calls::stored_leases(store, &site.name, pool, number, now) {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %e, "reading lease history");
                        return;
                    }
                };
                // Those that ended (a lease still held is restored above, or lost its number).
                for (r, released) in rows.into_iter().filter(|(r, _)| r.pool == pool.name) {
                    if let Some(at) = released {
                        ended.push(LeaseRecord {
                            number: index,
                            ..crate::calls::lease_record(r, Some(at))
                        });
                    }
                }
            }
            pools.rest(&site.name, &pool.name, ended);
        }
    }
}
