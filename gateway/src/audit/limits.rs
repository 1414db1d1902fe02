//! The access log's limits. Those an owner may change are `[log]` policy keys
//! ([`sekisho_policy::LogSettings`], read into [`super::Settings`]); the fixed ones live
//! beside them in `sekisho_policy::limits::log_fixed` and are re-exported here.

pub use sekisho_policy::log_fixed::*;
