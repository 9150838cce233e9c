//! Helpers shared by the test files that include them (`mod support;`).

pub mod aws;
