"""Import-only stand-in for safetensors.torch (see the package docstring)."""


def _refuse(name):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"safetensors.torch.{name}: not available (corpus export stub)")

    return refuse


load_file = _refuse("load_file")
save_file = _refuse("save_file")
load = _refuse("load")
