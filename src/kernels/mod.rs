//! Every `unsafe` block in the crate, fenced in one module (elsewhere
//! `unsafe_code` is denied by `Cargo.toml`'s lints):
//!
//! * [`qgemm`] and [`simd`]: the encoder's numeric kernels (int8 VNNI linear
//!   layers, vectorised layer norm / GELU / softmax), and [`bert`], the
//!   forward pass that drives them and the `gemm` crate's strided products.
//!   They are hand-written because they are measurably faster than candle's
//!   general BERT for one text (see docs/classifier.md and
//!   docs/performance.md).
//! * [`sched`]: the Linux calls that set a thread's priority by its id.
//!
//! Each `unsafe` block carries a `SAFETY:` comment with the invariant it
//! relies on, and each kernel is tested against a plain scalar version.
#![allow(unsafe_code)]

pub mod bert;
pub mod qgemm;
pub mod sched;
pub mod simd;
