//! Who the visitor is and where they came from.
//!
//! [`classify`] is pure: the GA4 default channel group, click ids, search keywords, device and
//! crawler detection from the landing URL and request headers. Depends on nothing else here.

pub mod classify;
