//! The rewrite engine: find a site's phone numbers in HTML as it streams past and write the
//! visitor's tracking number in their place, in the same shape.
//!
//! Knows nothing of HTTP: the proxy hands it bytes, a [`Replacement`] and an optional charset,
//! and gets bytes back. Content codings (gzip, br, ...) are the proxy's business.
//!
//! - [`phone`]: parsing configured numbers and the digit forms they appear in;
//! - [`matcher`]: finding those forms in raw text, shape-preserving replacement, chunk buffering;
//! - [`html`]: choosing the engine per response, and the lol_html handlers (text, attributes,
//!   JSON-LD, exclusions, bail-out);
//! - [`fast`]: the byte-level engine, the same rewrites at a fraction of lol_html's cost;
//! - `implied`: elements closed by a later start tag, for exclusions (both engines);
//! - [`replay`]: a page rewritten once, answered again while the origin sends the same bytes.

pub mod fast;
pub mod html;
mod implied;
pub mod matcher;
pub mod phone;
pub mod replay;

pub use html::{
    Engine, PageRewriter, PageRules, PageStats, check_selector, rewrite_document, rewrite_document_with, set_engine,
};
pub use matcher::{NumberMatcher, Replacement, TextStream};
pub use phone::{PhoneError, PhoneNumber};
