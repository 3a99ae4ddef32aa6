//! The one PyO3 glue file: argument conversion, GIL release, error mapping.
use pyo3::prelude::*;

#[pymodule]
fn _io(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
