//! The one integration test binary: every area's tests are modules of it.

mod suite;
