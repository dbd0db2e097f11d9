//! Root package of the workspace: its `tests/` run the pipeline against real services.
