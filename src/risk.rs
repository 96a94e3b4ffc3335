//! Suicide and harm risk levels, shared by personas and the crisis detector.

use crate::choice::choice_enum;

choice_enum! {
    /// How much risk a person is at, from none to imminent.
    pub enum RiskLevel {
        None => "none",
        Low => "low",
        High => "high",
        Imminent => "imminent",
    }
}
