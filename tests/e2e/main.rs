//! End-to-end tests: the real `kiln` binary builds real contexts; skopeo,
//! umoci and (where an engine answers) docker check what it wrote.

mod attest;
mod cache;
mod checks;
mod ci_examples;
mod common;
mod debian;
use kiln_test_support as support;

mod docker;
mod dropin;
mod errors;
mod escapes;
mod faults;
mod features;
mod lazy;
mod mounts;
mod outputs;
mod parse;
mod platforms;
mod pod;
mod registry;
mod run;
mod semantics;
