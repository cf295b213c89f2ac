//! Integration tests: one binary (linked once), the real server on port 0
//! and real mock providers on port 0.

mod cli;
mod gateway;
mod harness;
mod passthrough;
mod resilience;
mod streaming;
