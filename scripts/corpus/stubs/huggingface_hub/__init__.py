"""Import-only stand-in for huggingface_hub (Debian 12 has no package for it).

diffusers imports these names at module load; the corpus export never downloads,
uploads or loads a checkpoint, so every callable here refuses loudly if reached.
"""
__version__ = "0.0.0+corpus-stub"


def _refuse(name):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"huggingface_hub.{name}: not available (corpus export stub, no hub access)")

    refuse.__name__ = name
    return refuse


class ModelCard:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("huggingface_hub.ModelCard: not available (corpus export stub)")


class ModelCardData(ModelCard):
    pass


create_repo = _refuse("create_repo")
create_commit = _refuse("create_commit")
hf_hub_download = _refuse("hf_hub_download")
model_info = _refuse("model_info")
snapshot_download = _refuse("snapshot_download")
upload_folder = _refuse("upload_folder")
split_torch_state_dict_into_shards = _refuse("split_torch_state_dict_into_shards")
