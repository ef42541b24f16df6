//! What is not the product: the demo, the bench, the project's in-memory schema registry and the
//! example records they and the tests use. The product's own code never imports from here
//! (`tests/architecture.rs` holds that); only the command line (`main.rs`) and tests do.

pub mod bench;
pub mod demo;
pub mod registry;
pub mod samples;
