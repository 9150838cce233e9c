//! The doors of `worldfleet serve`, driven through the router over the embedded store.

mod auth;
mod common;
mod events;
mod feeds;
mod ops;
mod rejections;
mod signer;
mod sqs;
mod stream;
mod subscribe;
