//! Shared pieces of prism's benchmark binaries.

pub mod op_profile;
pub mod stats;
