//! Which number a visitor sees: the seam between "who is this visitor" ([`crate::visitor`]) and
//! "what does the page show" ([`crate::rewrite`]).
//!
//! [`NumberChooser`] is that seam. [`SourceChooser`] is the stateless policy: the first number of
//! the first `mode = "source"` pool whose `when` matches the visitor's touch. Session pools with
//! leases plug in behind the same trait. Knows nothing of HTML.

use crate::rewrite::PhoneNumber;
use crate::rules::{PoolMode, Site};
use crate::visitor::classify::Touch;

/// What the visitor's page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The site's own number: the page passes through unchanged.
    Original,
    /// A tracking number from the named pool.
    Tracking { number: PhoneNumber, pool: String },
}

/// Picks the number for one page view of one visitor.
pub trait NumberChooser: Send + Sync {
    /// `touch` is the touch that decides the pool (per the site's `attribution`); `None` means
    /// nothing is known (no consent, or a crawler the site keeps on its own number).
    fn choose(&self, site: &Site, touch: Option<&Touch>) -> Choice;
}

/// One number per source: stateless, shared by every visitor the pool's `when` matches.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceChooser;

/// The first pool whose `when` matches the touch, in file order.
pub fn matching_pool<'s>(site: &'s Site, touch: &Touch) -> Option<&'s crate::rules::Pool> {
    site.pools.iter().find(|p| {
        p.when
            .matches(touch.channel, &touch.source, &touch.medium, touch.campaign.as_deref())
    })
}

impl NumberChooser for SourceChooser {
    fn choose(&self, site: &Site, touch: Option<&Touch>) -> Choice {
        let Some(touch) = touch else { return Choice::Original };
        match matching_pool(site, touch) {
            Some(p) if p.mode == PoolMode::Source => match p.numbers.first() {
                Some(n) => Choice::Tracking {
                    number: n.clone(),
                    pool: p.name.clone(),
                },
                None => Choice::Original,
            },
            _ => Choice::Original,
        }
    }
}
