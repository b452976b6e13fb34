//! CRM webhooks: events about calls (`call.completed`, `call.outcome`) POSTed, signed, to the
//! `[[webhook]]` URLs of the call's site, from a durable outbox in the store.
//!
//! The life of an event:
//!
//! 1. **Enqueue** ([`Subscribers`]): the change that causes the event (the status callback that
//!    first makes a call final, an outcome set from the admin API) is committed by the store
//!    *together with* one outbox row per subscribed destination
//!    ([`crate::store::Store::update_call_with_events`]), before the webhook or API answers. A
//!    crash therefore keeps both or neither. The payload is built then, as the call stood.
//! 2. **Deliver** ([`worker`]): a tokio task wakes when rows are committed (or when the next
//!    retry is due), POSTs each due row with [`signing`]'s `X-Telswap-Signature`, and records
//!    the outcome durably: 2xx is delivered; anything else is retried on [`backoff`]'s schedule
//!    (10 s, 30 s, 2 m, 10 m, 1 h, 3 h, then every 6 h, ±20 %), and given up (dead, logged)
//!    after 3 days.
//!
//! Every event reaches each destination at least once across restarts and receiver outages,
//! and exactly once as long as the server is not killed between a receiver's 2xx and the
//! store recording it; a graceful stop waits for deliveries in flight. Receivers dedupe on
//! `X-Telswap-Event-Id` (the payload's `id`) to turn that last window into exactly once too.
//!
//! Depends on `store` (the outbox), `rules` (the destinations), `admin::call_json` (the CALL
//! object of SPEC.md) and `clock`.

pub mod backoff;
pub mod signing;
pub mod worker;

use std::collections::HashMap;

use serde_json::json;

use crate::clock::{Millis, rfc3339};
use crate::rules::{RuleSet, WebhookEvent};
use crate::store::{CallRecord, NewDelivery};
use crate::visitor::identity::random_id;

pub use signing::verify_signature;
pub use worker::{Outbox, OutboxConfig};

/// The destinations subscribed to one kind of event, by site, snapshotted from the rules so
/// they can be used inside the store's transaction (off the async runtime).
#[derive(Debug, Clone, Default)]
pub struct Subscribers {
    event: Option<WebhookEvent>,
    by_site: HashMap<String, Vec<String>>,
}

impl Subscribers {
    pub fn new(rules: &RuleSet, event: WebhookEvent) -> Subscribers {
        let by_site = rules
            .sites
            .iter()
            .filter_map(|s| {
                let urls: Vec<String> = s
                    .webhooks
                    .iter()
                    .filter(|w| w.events.contains(&event))
                    .map(|w| w.url.clone())
                    .collect();
                (!urls.is_empty()).then(|| (s.name.clone(), urls))
            })
            .collect();
        Subscribers {
            event: Some(event),
            by_site,
        }
    }

    /// The outbox rows of this event about `call`, created at `now`: one per destination of
    /// the call's site, all with the same new event id and payload.
    pub fn deliveries(&self, call: &CallRecord, now: Millis) -> Vec<NewDelivery> {
        let (Some(event), Some(urls)) = (self.event, self.by_site.get(&call.site)) else {
            return Vec::new();
        };
        let event_id = format!("evt_{}", random_id(12));
        let payload = payload(&event_id, event, call, now);
        urls.iter()
            .map(|url| NewDelivery {
                event_id: event_id.clone(),
                event: event.as_str().to_string(),
                site: call.site.clone(),
                url: url.clone(),
                payload: payload.clone(),
                created_at: now as i64,
            })
            .collect()
    }
}

/// `{"id", "type", "created_at", "site", "call": CALL}`.
pub fn payload(event_id: &str, event: WebhookEvent, call: &CallRecord, now: Millis) -> String {
    json!({
        "id": event_id,
        "type": event.as_str(),
        "created_at": rfc3339(now),
        "site": call.site,
        "call": crate::admin::call_json(call),
    })
    .to_string()
}
