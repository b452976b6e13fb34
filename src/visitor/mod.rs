//! Who the visitor is and where they came from.
//!
//! - [`classify`] (pure): the GA4 default channel group, click ids, search keywords, device and
//!   crawler detection from the landing URL and request headers;
//! - [`identity`] (pure but for randomness): the signed `tsw` cookie, sessions and touches;
//! - [`sessions`]: the server-side page views of each session (a bounded moka cache).
//!
//! Depends only on `clock`.

pub mod classify;
pub mod identity;
pub mod sessions;
