//! `plow-processor`: parses and enriches tracker hits. Not built yet.
fn main() {}
