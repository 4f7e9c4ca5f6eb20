//! Shared pieces of prism's benchmark binaries.

pub mod grpc_load;
pub mod op_profile;
pub mod stats;
pub mod timing;
