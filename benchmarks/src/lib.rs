//! Shared pieces of prism's benchmark binaries.

pub mod chart;
pub mod stats;
