"""Import-only stand-in for the `onnxruntime` python package (not packaged in Debian 12), for
onnxruntime's python transformer optimizer (fetched source). The corpus runs that optimizer with
opt_level=0, i.e. its pure-python fusions only. It imports this module at load time (optimizer.py,
onnx_utils.py) and reads __version__ for the producer string; everything that would need the real
runtime (sessions, OrtValue for external data with opt_level > 0) refuses."""
__version__ = "0.0.0+corpus-stub"


def _refuse(name):
    raise RuntimeError(f"onnxruntime.{name}: not available here (corpus stub; opt_level=0 only)")


class OrtValue:
    @staticmethod
    def ortvalue_from_numpy(*args, **kwargs):
        _refuse("OrtValue.ortvalue_from_numpy")


def get_available_providers():
    return ["CPUExecutionProvider"]


def __getattr__(name):
    _refuse(name)
