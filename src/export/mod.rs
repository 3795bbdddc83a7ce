//! Everything between the SDK's processors and the collector: the span encoder, the direct span
//! exporters, and the reports of what could not be delivered.

pub(crate) mod direct;
pub(crate) mod encoding;
pub(crate) mod failures;
