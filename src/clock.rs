//! The crate's one clock reading.

use chrono::{DateTime, SubsecRound, Utc};

/// The current time, to the microsecond (what databases keep).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
