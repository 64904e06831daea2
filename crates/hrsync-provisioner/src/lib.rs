//! hrsync provisioner stage: makes every app's accounts match the desired
//! state the projector emits, over SCIM 2.0.
//!
//! - [`scim`]: the SCIM 2.0 client.

pub mod scim;
