//! telswap: a streaming reverse proxy for Dynamic Number Insertion.
//!
//! # Layout
//!
//! A request's life, one module per room of the data flow:
//!
//! - [`proxy`]: listeners (HTTP, HTTPS with SNI), routing by host, the upstream client, header
//!   hygiene, and the response body pipeline (decode, rewrite, re-encode, stream).
//! - [`visitor`]: who is this visitor and where did they come from (classification).
//! - [`pool`]: which number this visitor sees (the [`pool::NumberChooser`] seam).
//! - [`rewrite`]: the engine that swaps numbers in HTML; knows nothing of HTTP.
//! - [`rules`]: the per-site rules files, their validation and hot reload.
//! - [`calls`]: telephony webhooks, the forwarding answer, call attribution.
//! - [`store`]: durable storage (SQLite behind a trait).
//! - [`outbox`]: CRM webhooks: call events delivered, signed, from the store's durable outbox.
//! - [`app`]: wiring all of it together for `serve`, `demo` and end-to-end tests.
//! - [`admin`]: the dashboard and admin API (calls, outcomes, pools, reports, exports, metrics)
//!   behind the admin token.
//! - [`demo`]: the bundled demo origin used by `telswap demo`.
//! - [`clock`]: injectable time, so leases and sessions are tested with paused time.
//! - [`simulate`]: `telswap simulate`, simulated traffic replayed against the real pool and
//!   attribution code to measure accuracy and size pools.
//!
//! Dependencies point one way: `proxy` → `visitor`, `pool`, `rewrite`, `rules`; `rules` →
//! `rewrite` (to compile numbers and selectors); `rewrite` and `visitor` depend on nothing else
//! here and are pure.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod calls;
pub mod clock;
pub mod demo;
pub mod outbox;
pub mod pool;
pub mod proxy;
pub mod rewrite;
pub mod rules;
pub mod simulate;
pub mod store;
pub mod visitor;
