//! utils
