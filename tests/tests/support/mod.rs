//! Helpers shared by the test files that include them (`mod support;`); each file uses some.

#![allow(dead_code)]

pub mod intake;
