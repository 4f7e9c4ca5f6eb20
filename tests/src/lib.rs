//! No library: this package holds the workspace's end-to-end test (`tests/flow.rs`), which
//! crosses every crate the way a user's pipeline does.
