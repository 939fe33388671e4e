//! Runnable examples live beside this file; see README.md.
