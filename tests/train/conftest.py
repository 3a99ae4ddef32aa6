import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "_vqfast_quantize_standin", pathlib.Path(__file__).resolve().parent.parent / "models" / "quantize_standin.py")
_standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_standin)
_standin.install()
