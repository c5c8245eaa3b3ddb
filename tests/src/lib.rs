//! Shared helpers for vessel's integration tests.
