//! The layouts of table rows that more than one stage reads or writes.
//!
//! compose writes canon and distribute, ecology, prune, replay and the audit read it;
//! distribute writes feed pages, plans and player memory and prune trims them, while the
//! doors and the CLI read feeds and move reader checkpoints. Each layout lives here once, so
//! a stage depends on the domain and these layouts, never on another stage's crate. The row
//! layouts are part of the published contract (`docs/` and each stage's README describe them);
//! how a page or an observation stores its entries is [`entries`]'s.
//!
//! This crate sits in the bottom layer beside `worldfleet-domain` (which stays free of I/O
//! ports): it knows items and keys, not queues or stages.

pub mod canon;
pub mod entries;
pub mod error;
pub mod feed;
pub mod memory;
pub mod plan;

pub use error::{Error, Result};
pub use feed::{FeedRead, read_feed};

/// The position of `value` in `list`, pushed at the end when it is not there yet: the lists of
/// distinct strings (and runs) a compact row stores once and its entries point into.
pub(crate) fn position_in<T, Q>(list: &mut Vec<T>, value: &Q) -> u32
where
    T: std::borrow::Borrow<Q>,
    Q: PartialEq + ToOwned<Owned = T> + ?Sized,
{
    match list.iter().position(|known| known.borrow() == value) {
        Some(index) => index as u32,
        None => {
            list.push(value.to_owned());
            (list.len() - 1) as u32
        }
    }
}
