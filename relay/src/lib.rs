//! The aether relay.
