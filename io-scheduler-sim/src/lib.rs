//! Disk and IO-scheduler simulator (see README).
