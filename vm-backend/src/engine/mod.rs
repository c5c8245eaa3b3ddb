//! VM engines.
