//! Shared pieces of prism's benchmark binaries.

pub mod stats;
