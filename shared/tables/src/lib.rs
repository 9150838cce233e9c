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
