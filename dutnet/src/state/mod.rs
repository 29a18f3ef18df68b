//! What dutnet keeps outside its own memory.
pub mod paths;
pub mod private;
pub mod runtime;
